//! Who may call the API: roles, verified identities, tokens, password hashes and the lockout
//! rule. Pure logic: the secret and the JWKS arrive as values, loaded by adapters at cold start.

pub mod admin;
pub mod authenticator;
pub mod caller;
pub mod dynamodb;
pub mod keys;
pub mod live_ticket;
pub mod lockout;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod password;
pub mod ports;
pub mod principal;
pub mod role;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod test_provider;
pub mod token;
pub mod username;
pub mod views;
pub mod wiring;

pub use lockout::LockoutPolicy;
pub use principal::Identity;
pub use role::{Role, Roles};
pub use token::{TokenError, TokenSigner, TokenVerifier};
pub use username::Username;
