//! What a caller sees of a user and of its own sign-in. The handlers serialize views that
//! borrow from the records; API clients deserialize the same types as owned values.

use crate::role::Role;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use time::OffsetDateTime;

/// A user as an admin of its tenant sees it: never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub username: Cow<'a, str>,
    pub tenant: Cow<'a, str>,
    pub roles: Vec<Role>,
    /// True while wrong passwords keep it locked.
    pub locked: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl<'a> UserView<'a> {
    pub fn new(user: &'a crate::ports::UserRecord, now: OffsetDateTime) -> Self {
        Self {
            username: Cow::Borrowed(user.username.as_str()),
            tenant: Cow::Borrowed(user.tenant.as_str()),
            roles: user.roles.iter().collect(),
            locked: crate::lockout::is_locked(user.locked_until, now),
            created_at: user.created_at,
        }
    }
}

/// The answer to a successful sign-in. No `Debug`: it holds the bearer token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginView {
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub tenant: String,
    pub roles: Vec<Role>,
}
