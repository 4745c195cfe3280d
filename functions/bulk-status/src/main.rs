use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::lambda::init_tracing();
    let config = cellbridge::aws::load_config().await;
    let store = cellbridge::aws::bulk_change_store(&config)?;
    lambda_http::run(service_fn(|request: Request| {
        let store = &store;
        async move { Ok::<_, Error>(bulk_status::handle(store.as_ref(), request).await) }
    }))
    .await
}
