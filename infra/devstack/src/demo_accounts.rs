//! The accounts every local stack starts with, so that signing in works out of the box. They
//! exist only in the local emulators; the password is public on purpose.

use anyhow::{Context, Result};
use cellbridge::identity::admin::{add_tenant, add_user, AccountError, NewUser};
use cellbridge::identity::ports::AccountStore;
use cellbridge::identity::role::{Role, Roles};

/// The password of every demo user.
pub const DEMO_PASSWORD: &str = "demo-password-1234";

/// A demo tenant: id, name, and its users with their roles.
pub type DemoTenant = (&'static str, &'static str, &'static [(&'static str, Role)]);

pub const DEMO_TENANTS: &[DemoTenant] = &[
    (
        "demo",
        "Demo Fleet Inc.",
        &[
            ("admin@demo.example", Role::Admin),
            ("ops@demo.example", Role::Operator),
            ("viewer@demo.example", Role::Viewer),
        ],
    ),
    // A second tenant, to see that tenants do not see each other.
    (
        "globex",
        "Globex Logistics",
        &[
            ("admin@globex.example", Role::Admin),
            ("ops@globex.example", Role::Operator),
        ],
    ),
];

/// Creates the demo tenants and users that do not exist yet.
pub async fn seed(store: &dyn AccountStore) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    for (tenant, name, users) in DEMO_TENANTS {
        add_tenant(store, tenant, name, now)
            .await
            .with_context(|| format!("creating the demo tenant {tenant}"))?;
        for (username, role) in *users {
            let user = NewUser {
                username,
                tenant,
                roles: Roles::new([*role]),
                password: DEMO_PASSWORD,
            };
            match add_user(store, user, now).await {
                Ok(_) | Err(AccountError::UserExists(_)) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("creating the demo user {username}"))
                }
            }
        }
    }
    Ok(())
}
