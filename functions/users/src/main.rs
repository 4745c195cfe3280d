use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<users::Config>().await?;
    let accounts = cellbridge_identity::wiring::account_store(&sdk, &config);
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
