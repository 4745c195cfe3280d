//! RFC 9457 problem details: every error the API returns has this shape.

use cellbridge_core::store::StoreError;
use cellbridge_core::validation::{FieldError, ValidationErrors};
use lambda_http::{http::StatusCode, Body, Response};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://cellbridge.dev/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 400 for a body that is not JSON at all, 422 for JSON that breaks the rules.
    pub fn invalid(errors: ValidationErrors) -> Self {
        let malformed = errors.errors.iter().any(|e| e.field.is_empty());
        let (status, kind, title) = if malformed {
            (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "The request body could not be read",
            )
        } else {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request has invalid fields",
            )
        };
        let detail = match errors.errors.as_slice() {
            [only] if only.field.is_empty() => only.message.clone(),
            [only] => format!("{}: {}", only.field, only.message),
            many => format!("{} fields are invalid; see errors", many.len()),
        };
        Self {
            errors: errors.errors,
            ..Self::new(status, kind, title, detail)
        }
    }

    pub fn bad_parameter(field: &str, message: &str) -> Self {
        Self::invalid_field(
            StatusCode::BAD_REQUEST,
            "bad-parameter",
            "A query or header parameter is invalid",
            field,
            message,
        )
    }

    fn invalid_field(
        status: StatusCode,
        kind: &str,
        title: &str,
        field: &str,
        message: &str,
    ) -> Self {
        Self {
            errors: vec![FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            }],
            ..Self::new(status, kind, title, format!("{field}: {message}"))
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{what} does not exist"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Not authenticated",
            "the request carries no verified identity; sign in with POST /auth/login and send the token as 'Authorization: Bearer <token>'",
        )
    }

    pub fn conflict(kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, title, detail)
    }

    /// The one answer to every failed sign-in, whatever the reason.
    pub fn login_failed() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "login-failed",
            "Sign-in failed",
            "the username or password is wrong, or the account is locked for 15 minutes after 5 wrong passwords in a row",
        )
    }

    pub fn forbidden(needed: cellbridge_identity::role::Role) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            format!("this needs the {needed} role; ask an admin of your tenant for it"),
        )
    }

    /// `advice` tells the caller how to stay under the limit.
    pub fn payload_too_large(limit: usize, advice: &str) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "The request body is too large",
            format!("bodies are limited to {limit} bytes; {advice}"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported content type",
            "send the body as application/json",
        )
    }

    /// `created` names what the key made first: "a bulk change from a different body".
    pub fn idempotency_key_reused(created: &str) -> Self {
        Self::invalid_field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key already used for a different request",
            "Idempotency-Key",
            &format!("this key created {created}; use a new key for a new request"),
        )
    }

    /// A failure on our side. The detail goes to the log, not to the caller.
    pub fn internal(log_detail: &str) -> Self {
        tracing::error!(detail = log_detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; retry with the same Idempotency-Key",
        )
    }

    pub fn unavailable(log_detail: &str) -> Self {
        tracing::error!(detail = log_detail, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            "a backing service did not answer; retry with the same Idempotency-Key",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        Response::builder()
            .status(status)
            .header("content-type", "application/problem+json")
            .body(Body::Text(body))
            .unwrap_or_default()
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidCursor => Self::bad_parameter(
                "cursor",
                "not a cursor this API issued; start from the first page",
            ),
            StoreError::Corrupt(detail) => Self::internal(&detail),
            StoreError::Unavailable(detail) => Self::unavailable(&detail),
            StoreError::Rejected(detail) => Self::internal(&detail),
        }
    }
}
