use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<sim_api::Config>().await?;
    let sims = cellbridge_sims::wiring::sim_store(&sdk, &config.sims);
    lambda_http::run(service_fn(|request: Request| {
        let sims = &sims;
        async move { Ok::<_, Error>(sim_api::handle(sims, request).await) }
    }))
    .await
}
