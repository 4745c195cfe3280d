use cellbridge::adapters::auth_keys::{cellbridge_audience, signing_secret, SIGNING_SECRET_ENV};
use cellbridge::auth::token::DEFAULT_LIFETIME;
use cellbridge::auth::{LockoutPolicy, TokenSigner};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cellbridge::lambda::init_tracing();
    let config = cellbridge::aws::load_config().await;
    let secret_id = cellbridge::config::required_env(SIGNING_SECRET_ENV)?;
    let secret = signing_secret(&cellbridge::aws::secrets_manager(&config), &secret_id).await?;
    let lifetime =
        match std::env::var("AUTH_TOKEN_HOURS") {
            Ok(hours) => time::Duration::hours(hours.parse().map_err(|_| {
                format!("AUTH_TOKEN_HOURS={hours:?} is not a whole number of hours")
            })?),
            Err(_) => DEFAULT_LIFETIME,
        };
    let ports = auth_login::LoginPorts {
        accounts: cellbridge::aws::account_store(&config)?,
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
