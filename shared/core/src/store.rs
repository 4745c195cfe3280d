//! What every store port shares: its error and pages of results.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the pagination cursor is not one this API issued")]
    InvalidCursor,
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
    /// Throttled, timed out, unreachable or a 5xx: the same call may succeed later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (a validation error, access denied, a missing table): trying again
    /// cannot help; the deployment or the code needs fixing.
    #[error("the store refused the request: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A page of results and the opaque cursor of the next one, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

/// How long an idempotency key keeps returning what it first created.
pub const IDEMPOTENCY_WINDOW: time::Duration = time::Duration::hours(24);

/// Binds an idempotency key to the request it first came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    /// Digest of the request body, to tell a retry from a different request reusing the key.
    pub request_digest: String,
}
