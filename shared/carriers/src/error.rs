//! The one error type every carrier adapter maps its carrier's answers to.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Timeouts, connection failures, 5xx: worth another try.
    #[error("transient carrier failure: {0}")]
    Transient(String),
    /// Over the carrier's rate limit; `retry_after` when the carrier said how long to wait.
    #[error("rate limited by the carrier")]
    RateLimited { retry_after: Option<Duration> },
    /// The carrier refused the request for good.
    #[error("carrier refused ({code}): {message}")]
    Permanent { code: String, message: String },
    /// The device is not in a state the change can start from.
    #[error("the device cannot go from {from} to {to}")]
    InvalidTransition { from: String, to: String },
    #[error("the carrier does not know this device")]
    NotFound,
    /// Credentials rejected; every other call on the account will fail the same way.
    #[error("the carrier rejected the account's credentials")]
    AuthFailed,
}

impl CarrierError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CarrierError::Transient(_) | CarrierError::RateLimited { .. }
        )
    }

    /// The wait the carrier asked for, to honour before any retry.
    pub fn carrier_wait(&self) -> Option<Duration> {
        match self {
            CarrierError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_and_rate_limits_are_retried() {
        let retryable: Vec<bool> = [
            CarrierError::Transient("timeout".into()),
            CarrierError::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
            CarrierError::Permanent {
                code: "10000003".into(),
                message: "bad request".into(),
            },
            CarrierError::InvalidTransition {
                from: "PURGED".into(),
                to: "ACTIVATED".into(),
            },
            CarrierError::NotFound,
            CarrierError::AuthFailed,
        ]
        .iter()
        .map(CarrierError::is_retryable)
        .collect();
        assert_eq!(retryable, vec![true, true, false, false, false, false]);
        assert_eq!(
            CarrierError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
            .carrier_wait(),
            Some(Duration::from_secs(3))
        );
    }
}
