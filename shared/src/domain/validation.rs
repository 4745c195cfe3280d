//! Collecting every problem with a request, so the caller fixes them all in one round trip.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path to the field at fault, e.g. `devices[3].iccid`; empty for the document itself.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} field(s) invalid", .errors.len())]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

/// Beyond this many errors a client learns nothing new; the cap keeps error bodies small.
pub const MAX_REPORTED_ERRORS: usize = 100;

impl ValidationErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(FieldError {
                field: field.into(),
                message: message.into(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(field, message);
        errors
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}
