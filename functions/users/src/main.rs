use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let accounts = cellbridge::common::aws::account_store(&config)?;
    lambda_http::run(service_fn(|request: Request| {
        let accounts = &accounts;
        async move {
            Ok::<_, Error>(
                users::handle(accounts.as_ref(), request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
