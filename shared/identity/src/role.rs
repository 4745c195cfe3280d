//! Roles, from least to most: a viewer reads, an operator also changes devices (bulk changes,
//! commands), an admin also manages users and policies. A higher role includes the lower ones.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles a user holds. Names that are not roles (an identity provider's other groups) are
/// ignored, so a token from a shared provider grants nothing it does not name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Self {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        Self(roles)
    }

    /// From role names, separated by commas or spaces, or given one by one.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(
            names
                .into_iter()
                .flat_map(|n| n.split([',', ' ']))
                .filter_map(|n| Role::parse(n.trim())),
        )
    }

    /// True when one of the roles is `role` or above it.
    pub fn allows(&self, role: Role) -> bool {
        self.0.iter().any(|held| *held >= role)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// Space-separated names, the form the authorizer context carries.
    pub fn to_names(&self) -> String {
        self.0
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_roles_include_lower_ones() {
        let admin = Roles::new([Role::Admin]);
        assert!(admin.allows(Role::Viewer) && admin.allows(Role::Operator));
        let viewer = Roles::new([Role::Viewer]);
        assert!(viewer.allows(Role::Viewer));
        assert!(!viewer.allows(Role::Operator));
        assert!(!Roles::default().allows(Role::Viewer));
    }

    #[test]
    fn names_round_trip_and_unknown_names_grant_nothing() {
        let roles = Roles::from_names(["operator,viewer", "us-east-admins", "operator"]);
        assert_eq!(roles.to_names(), "viewer operator");
        assert_eq!(Roles::from_names([roles.to_names().as_str()]), roles);
        assert!(Roles::from_names(["Admin", "root"]).is_empty());
    }
}
