//! Configuration read once at cold start from the environment that template.yaml sets.

#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set: template.yaml wires it for every function; locally the devstack does")]
pub struct ConfigError(pub &'static str);

pub fn required_env(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError(name))
}
