use cellbridge_identity::keys::signing_secret;
use cellbridge_identity::lockout::LockoutPolicy;
use cellbridge_identity::token::TokenSigner;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = cellbridge_edge::lambda::cold_start::<auth_login::Config>().await?;
    let tokens = config.tokens;
    let secret = signing_secret(
        &cellbridge_core::aws::secrets_manager(&sdk),
        &tokens.signing_secret_id,
    )
    .await?;
    let ports = auth_login::LoginPorts {
        accounts: cellbridge_identity::wiring::account_store(&sdk, &config.accounts),
        signer: TokenSigner::new(&secret, tokens.audience, tokens.lifetime),
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
