//! Configuration, read once at cold start into typed structs.
//!
//! Every function has one `Config` (in its crate) made of the areas' configuration types
//! (`bulk_changes::wiring::BulkChangeConfig`, `devices::wiring::DeviceTables`, ...). It is read
//! from an [`Environment`]: the process environment that template.yaml sets in a function, or the
//! template's environment resolved against a local stack's resources in the devstack, so both go
//! through the same parsing and the same wiring. A missing or malformed value fails the cold start
//! with a [`ConfigError`] naming the variable; nothing falls back silently.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Where configuration values come from. Empty values count as unset, as they do for the
/// template's optional parameters.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment: what Lambda gives the function from template.yaml.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// A resolved environment held in memory (the devstack's view of a function, or a test's).
impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is not set: template.yaml sets it for this function (locally the devstack does); set it and start again")]
    Missing { name: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl ConfigError {
    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Missing { name } | Self::Invalid { name, .. } => name,
        }
    }
}

/// A configuration type read from an [`Environment`].
pub trait FromEnvironment: Sized {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError>;
}

/// Declares a configuration made of other configurations, each read from the same environment
/// (a function's `Config` is usually this: its areas' tables, queues and settings).
#[macro_export]
macro_rules! composite_config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        impl $crate::config::FromEnvironment for $name {
            fn from_env(
                env: &dyn $crate::config::Environment,
            ) -> Result<Self, $crate::config::ConfigError> {
                Ok(Self {
                    $($field: <$ty as $crate::config::FromEnvironment>::from_env(env)?),*
                })
            }
        }
    };
}

/// The value of `name`, which must be set.
pub fn required(env: &dyn Environment, name: &'static str) -> Result<String, ConfigError> {
    env.var(name).ok_or(ConfigError::Missing { name })
}

/// The value of `name`, or `default` when it is unset.
pub fn or_default(env: &dyn Environment, name: &'static str, default: &str) -> String {
    env.var(name).unwrap_or_else(|| default.to_owned())
}

/// A number in `range`, `default` when unset; anything else is an error naming the variable and
/// the range, so a typo never silently becomes the default.
pub fn number_in<T>(
    env: &dyn Environment,
    name: &'static str,
    range: RangeInclusive<T>,
    default: T,
    unit: &str,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let Some(text) = env.var(name) else {
        return Ok(default);
    };
    text.trim()
        .parse::<T>()
        .ok()
        .filter(|value| range.contains(value))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!(
                "{text:?} is not a whole number of {unit} from {} to {}",
                range.start(),
                range.end()
            ),
        })
}

/// One of `choices`, `default` when unset.
pub fn one_of(
    env: &dyn Environment,
    name: &'static str,
    choices: &[&'static str],
    default: &'static str,
) -> Result<&'static str, ConfigError> {
    let Some(text) = env.var(name) else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|choice| **choice == text)
        .copied()
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("{text:?} is not one of {}", choices.join(", ")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_missing_value_names_its_variable_and_an_empty_one_counts_as_missing() {
        let error = required(&env(&[("OTHER", "x")]), "DEVICES_TABLE").expect_err("unset");
        assert_eq!(error.variable(), "DEVICES_TABLE");
        assert!(error.to_string().contains("DEVICES_TABLE is not set"));
        assert_eq!(
            required(&env(&[("DEVICES_TABLE", "")]), "DEVICES_TABLE"),
            Err(ConfigError::Missing {
                name: "DEVICES_TABLE"
            })
        );
        assert_eq!(
            required(&env(&[("DEVICES_TABLE", "devices")]), "DEVICES_TABLE").as_deref(),
            Ok("devices")
        );
    }

    #[test]
    fn numbers_outside_their_range_or_unparsable_fail_instead_of_falling_back() {
        let read = |value: &str| number_in(&env(&[("N", value)]), "N", 1..=3650_i64, 30, "days");
        assert_eq!(read("90"), Ok(90));
        assert_eq!(read(" 7 "), Ok(7));
        assert_eq!(number_in(&env(&[]), "N", 1..=3650_i64, 30, "days"), Ok(30));
        for bad in ["0", "3651", "ten", "1.5"] {
            let error = read(bad).expect_err(bad);
            assert_eq!(error.variable(), "N");
            let message = error.to_string();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
            assert!(message.contains("from 1 to 3650"), "{message}");
        }
    }

    #[test]
    fn a_choice_must_be_one_of_the_listed_values() {
        let modes = ["cellbridge", "oidc"];
        assert_eq!(
            one_of(&env(&[]), "M", &modes, "cellbridge"),
            Ok("cellbridge")
        );
        assert_eq!(
            one_of(&env(&[("M", "oidc")]), "M", &modes, "cellbridge"),
            Ok("oidc")
        );
        let error = one_of(&env(&[("M", "OIDC")]), "M", &modes, "cellbridge").expect_err("case");
        assert!(error.to_string().contains("cellbridge, oidc"), "{error}");
    }
}
