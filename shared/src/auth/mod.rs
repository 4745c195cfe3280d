//! Who may call the API: roles, verified identities, tokens, password hashes and the lockout
//! rule. Pure logic: the secret and the JWKS arrive as values, loaded by adapters at cold start.

pub mod identity;
pub mod lockout;
pub mod password;
pub mod role;
pub mod token;
pub mod username;

pub use identity::Identity;
pub use lockout::LockoutPolicy;
pub use role::{Role, Roles};
pub use token::{TokenError, TokenSigner, TokenVerifier};
pub use username::Username;
