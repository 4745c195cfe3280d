//! What an admin sees of a user.

use serde::Serialize;
use time::OffsetDateTime;

/// A user as an admin of its tenant sees it: never the password hash.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub username: &'a str,
    pub tenant: &'a str,
    pub roles: Vec<&'static str>,
    /// True while wrong passwords keep it locked.
    pub locked: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl<'a> UserView<'a> {
    pub fn new(user: &'a crate::identity::ports::UserRecord, now: OffsetDateTime) -> Self {
        Self {
            username: user.username.as_str(),
            tenant: user.tenant.as_str(),
            roles: user.roles.iter().map(|r| r.as_str()).collect(),
            locked: crate::identity::lockout::is_locked(user.locked_until, now),
            created_at: user.created_at,
        }
    }
}
