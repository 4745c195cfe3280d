use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let store = cellbridge::common::aws::bulk_change_store(&config)?;
    lambda_http::run(service_fn(|request: Request| {
        let store = &store;
        async move { Ok::<_, Error>(bulk_status::handle(store.as_ref(), request).await) }
    }))
    .await
}
