use cellbridge::identity::keys::{cellbridge_audience, signing_secret, SIGNING_SECRET_ENV};
use cellbridge::identity::lockout::LockoutPolicy;
use cellbridge::identity::token::TokenSigner;
use cellbridge::identity::token::DEFAULT_LIFETIME;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::edge::lambda::init_tracing();
    let config = cellbridge::common::aws::load_config().await;
    let secret_id = cellbridge::common::config::required_env(SIGNING_SECRET_ENV)?;
    let secret = signing_secret(
        &cellbridge::common::aws::secrets_manager(&config),
        &secret_id,
    )
    .await?;
    let lifetime =
        match std::env::var("AUTH_TOKEN_HOURS") {
            Ok(hours) => time::Duration::hours(hours.parse().map_err(|_| {
                format!("AUTH_TOKEN_HOURS={hours:?} is not a whole number of hours")
            })?),
            Err(_) => DEFAULT_LIFETIME,
        };
    let ports = auth_login::LoginPorts {
        accounts: cellbridge::common::aws::account_store(&config)?,
        signer: TokenSigner::new(&secret, cellbridge_audience(), lifetime),
        lockout: LockoutPolicy::default(),
    };
    lambda_http::run(service_fn(|request: Request| {
        let ports = &ports;
        async move {
            Ok::<_, Error>(
                auth_login::handle(ports, request, time::OffsetDateTime::now_utc()).await,
            )
        }
    }))
    .await
}
