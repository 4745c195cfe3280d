//! Helpers every function's `main` and handler share.

pub mod metrics;
pub mod sqs_batch;

use cellbridge_core::config::{ConfigError, FromEnvironment, ProcessEnvironment};

/// What every function's `main` does first: JSON logs, then its configuration `C` from the
/// process environment, then the SDK configuration. A configuration error is logged with the
/// variable's name and ends the cold start, before any client is built or event taken.
pub async fn cold_start<C: FromEnvironment>() -> Result<(C, aws_config::SdkConfig), ConfigError> {
    init_tracing();
    let started = async {
        let config = C::from_env(&ProcessEnvironment)?;
        let sdk = cellbridge_core::aws::load_config().await?;
        Ok::<_, ConfigError>((config, sdk))
    }
    .await;
    if let Err(error) = &started {
        tracing::error!(variable = error.variable(), "cold start failed: {error}");
    }
    started
}

/// JSON logs to stdout, level from `RUST_LOG` (default info). Called once at cold start.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second initialisation (tests calling main helpers) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(true)
        .with_target(false)
        .without_time()
        .try_init();
}
