//! Login names: compared without case, so `Ops@Acme.example` and `ops@acme.example` are one user.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

pub const USERNAME_RULE: &str =
    "must be 3 to 128 characters: letters, digits and . _ @ + - (an email address works)";

impl Username {
    pub fn parse(value: &str) -> Option<Self> {
        let valid = (3..=128).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
        valid.then(|| Self(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_insensitive_and_key_safe() {
        assert_eq!(
            Username::parse("Ops@Acme.example"),
            Username::parse("ops@acme.example")
        );
        for bad in ["ab", "a#b@c", "user name", "ü@x.y", &"a".repeat(129)] {
            assert_eq!(Username::parse(bad), None, "{bad}");
        }
    }
}
