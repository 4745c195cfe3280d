//! Helpers every function's `main` and handler share.

pub mod metrics;
pub mod sqs_batch;

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
