use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (tables, sdk) = cellbridge_edge::lambda::cold_start::<bulk_status::Config>().await?;
    let store = cellbridge_bulk_changes::wiring::store(&sdk, &tables);
    lambda_http::run(service_fn(|request: Request| {
        let store = &store;
        async move { Ok::<_, Error>(bulk_status::handle(store.as_ref(), request).await) }
    }))
    .await
}
