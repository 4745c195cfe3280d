//! `POST /auth/login`: a username and password for a signed token (JWT, HS256) that names the
//! user's tenant and roles. Wrong passwords are counted; the fifth in a row locks the account
//! for 15 minutes. Every refusal looks the same, so the answer never tells which usernames
//! exist or which accounts are locked.

use cellbridge_core::validation::ValidationErrors;
use cellbridge_core::validation::{json_object, reject_unknown, required, BodyLimits};
use cellbridge_edge::http::body::json_body;
use cellbridge_edge::http::json_response;
use cellbridge_edge::http::paging::allow_query;
use cellbridge_edge::http::problem::Problem;
use cellbridge_identity::lockout::is_locked;
use cellbridge_identity::lockout::LockoutPolicy;
use cellbridge_identity::password::{verify_against_nobody, verify_password, MAX_PASSWORD_LEN};
use cellbridge_identity::ports::AccountStore;
use cellbridge_identity::principal::Identity;
use cellbridge_identity::token::TokenSigner;
use cellbridge_identity::username::Username;
use cellbridge_identity::views::LoginView;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;

use std::sync::Arc;
use time::OffsetDateTime;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    #[derive(Debug, Clone)]
    pub struct Config {
        pub accounts: cellbridge_identity::wiring::AccountsConfig,
        pub tokens: cellbridge_identity::wiring::TokenIssuing,
    }
}

/// A username and a password fit in far less.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

pub struct LoginPorts {
    pub accounts: Arc<dyn AccountStore>,
    pub signer: TokenSigner,
    pub lockout: LockoutPolicy,
}

pub async fn handle(ports: &LoginPorts, request: Request, now: OffsetDateTime) -> Response<Body> {
    let mut response = match login(ports, &request, now).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    };
    // A token must not be kept by caches between the client and us.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

struct Credentials {
    username: String,
    password: String,
}

fn credentials(body: &[u8]) -> Result<Credentials, ValidationErrors> {
    let object = json_object(body, &BodyLimits::small())?;
    let mut errors = ValidationErrors::default();
    reject_unknown(&object, "", &["username", "password"], &mut errors);
    let mut field = |name: &str, max_len: usize| match required(&object, "", name, &mut errors) {
        Some(serde_json::Value::String(s)) if s.chars().count() <= max_len => Some(s.clone()),
        Some(serde_json::Value::String(_)) => {
            errors.push(name, format!("must be at most {max_len} characters"));
            None
        }
        Some(_) => {
            errors.push(name, "must be a string");
            None
        }
        None => None,
    };
    let username = field("username", 128);
    let password = field("password", MAX_PASSWORD_LEN);
    match (username, password) {
        (Some(username), Some(password)) if errors.is_empty() => {
            Ok(Credentials { username, password })
        }
        _ => Err(errors),
    }
}

async fn login(
    ports: &LoginPorts,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    allow_query(request, &[])?;
    let body = json_body(
        request,
        MAX_BODY_BYTES,
        "send only a username and a password",
    )?;
    let credentials = credentials(body).map_err(Problem::invalid)?;
    let Some(username) = Username::parse(&credentials.username) else {
        verify_against_nobody(&credentials.password);
        return Err(Problem::login_failed());
    };
    let Some(user) = ports.accounts.get_user(&username).await? else {
        verify_against_nobody(&credentials.password);
        tracing::info!(%username, "login refused: no such user");
        return Err(Problem::login_failed());
    };
    let password_ok = verify_password(&credentials.password, user.password_hash.expose_secret());
    if is_locked(user.locked_until, now) {
        tracing::warn!(%username, tenant = %user.tenant, "login refused: account locked");
        return Err(Problem::login_failed());
    }
    if !password_ok {
        let locked = ports
            .accounts
            .record_failed_login(&username, &ports.lockout, now)
            .await?;
        match locked {
            Some(until) => {
                tracing::warn!(%username, tenant = %user.tenant, until = %until, "account locked after repeated wrong passwords")
            }
            None => {
                tracing::info!(%username, tenant = %user.tenant, "login refused: wrong password")
            }
        }
        return Err(Problem::login_failed());
    }
    if user.failed_logins > 0 || user.locked_until.is_some() {
        ports.accounts.clear_failed_logins(&username).await?;
    }
    let identity = Identity {
        subject: username.to_string(),
        tenant: user.tenant.clone(),
        roles: user.roles.clone(),
    };
    let issued = ports
        .signer
        .issue(&identity, now)
        .map_err(|e| Problem::internal(&e.to_string()))?;
    tracing::info!(%username, tenant = %user.tenant, "login");
    Ok(json_response(
        StatusCode::OK,
        &LoginView {
            token: issued.token,
            token_type: "Bearer".to_owned(),
            expires_at: issued.expires_at,
            tenant: user.tenant.to_string(),
            roles: user.roles.iter().collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_identity::memory::MemoryAccounts;
    use cellbridge_identity::password::hash_password;
    use cellbridge_identity::ports::UserRecord;
    use cellbridge_identity::role::{Role, Roles};
    use cellbridge_identity::token::TokenVerifier;
    use cellbridge_identity::token::{SigningSecret, TokenAudience, DEFAULT_LIFETIME};
    use lambda_http::request::from_str;
    use serde_json::{json, Value};
    use time::macros::datetime;
    use time::Duration;

    const LOGIN: &str = include_str!("../../../events/auth-login/login.json");
    const NOW: OffsetDateTime = datetime!(2026-11-22 09:00 UTC);
    const PASSWORD: &str = "demo-password-1234";

    fn secret() -> SigningSecret {
        SigningSecret::new(vec![42; 32]).expect("secret")
    }

    async fn ports() -> LoginPorts {
        let accounts = MemoryAccounts::default();
        accounts
            .create_user(&UserRecord {
                username: Username::parse("ops@demo.example").expect("username"),
                tenant: TenantId::parse("demo").expect("tenant"),
                roles: Roles::new([Role::Operator]),
                password_hash: hash_password(PASSWORD).expect("hash").into(),
                failed_logins: 0,
                locked_until: None,
                created_at: NOW,
            })
            .await
            .expect("user");
        LoginPorts {
            accounts: Arc::new(accounts),
            signer: TokenSigner::new(&secret(), TokenAudience::default(), DEFAULT_LIFETIME),
            lockout: LockoutPolicy::default(),
        }
    }

    fn with_body(body: &Value) -> Request {
        let mut event: Value = serde_json::from_str(LOGIN).expect("sample event");
        event["body"] = body.to_string().into();
        from_str(&event.to_string()).expect("event")
    }

    fn attempt(username: &str, password: &str) -> Request {
        with_body(&json!({"username": username, "password": password}))
    }

    async fn call(
        ports: &LoginPorts,
        request: Request,
        now: OffsetDateTime,
    ) -> (StatusCode, Value) {
        let response = handle(ports, request, now).await;
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body = serde_json::from_slice(response.body().as_ref()).expect("JSON");
        (response.status(), body)
    }

    #[tokio::test]
    async fn the_sample_login_gets_a_72_hour_token_for_its_tenant_and_roles() {
        let ports = ports().await;
        let (status, body) = call(&ports, from_str(LOGIN).expect("event"), NOW).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["tokenType"], "Bearer");
        assert_eq!(body["tenant"], "demo");
        assert_eq!(body["roles"], json!(["operator"]));
        assert_eq!(body["expiresAt"], "2026-11-25T09:00:00Z");
        let verifier = TokenVerifier::shared_secret(&secret(), TokenAudience::default());
        let identity = verifier
            .verify(body["token"].as_str().expect("token"), NOW)
            .expect("a valid token");
        assert_eq!(identity.subject, "ops@demo.example");
        assert_eq!(identity.tenant.as_str(), "demo");
        assert!(identity.roles.allows(Role::Operator) && !identity.roles.allows(Role::Admin));
    }

    #[tokio::test]
    async fn wrong_passwords_and_unknown_users_get_the_same_answer() {
        let ports = ports().await;
        let (wrong_status, wrong) =
            call(&ports, attempt("ops@demo.example", "not-the-password"), NOW).await;
        let (unknown_status, unknown) =
            call(&ports, attempt("nobody@demo.example", PASSWORD), NOW).await;
        let (bad_name_status, bad_name) =
            call(&ports, attempt("no spaces allowed", PASSWORD), NOW).await;
        assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            (unknown_status, bad_name_status),
            (wrong_status, wrong_status)
        );
        assert_eq!(unknown, wrong);
        assert_eq!(bad_name, wrong);
        assert!(wrong.get("token").is_none());
    }

    #[tokio::test]
    async fn five_wrong_passwords_lock_the_account_for_fifteen_minutes() {
        let ports = ports().await;
        let username = Username::parse("ops@demo.example").expect("username");
        for _ in 0..5 {
            let (status, _) = call(
                &ports,
                attempt("ops@demo.example", "guess-guess-guess"),
                NOW,
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let user = ports
            .accounts
            .get_user(&username)
            .await
            .expect("store")
            .expect("user");
        assert_eq!(user.locked_until, Some(NOW + Duration::minutes(15)));
        // The right password is refused while the lock holds, alike to a wrong one...
        let (status, body) = call(
            &ports,
            attempt("OPS@demo.example", PASSWORD),
            NOW + Duration::minutes(14),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["type"], "https://cellbridge.dev/problems/login-failed");
        // ...and works once it ends, clearing the lock.
        let (status, _) = call(
            &ports,
            attempt("ops@demo.example", PASSWORD),
            NOW + Duration::minutes(15),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let user = ports
            .accounts
            .get_user(&username)
            .await
            .expect("store")
            .expect("user");
        assert_eq!((user.failed_logins, user.locked_until), (0, None));
    }

    #[tokio::test]
    async fn a_good_password_resets_the_count_of_wrong_ones() {
        let ports = ports().await;
        for round in 0..3 {
            for _ in 0..4 {
                call(
                    &ports,
                    attempt("ops@demo.example", "guess-guess-guess"),
                    NOW,
                )
                .await;
            }
            let (status, _) = call(&ports, attempt("ops@demo.example", PASSWORD), NOW).await;
            assert_eq!(status, StatusCode::OK, "round {round}");
        }
    }

    #[tokio::test]
    async fn malformed_logins_are_client_errors_naming_the_field() {
        let ports = ports().await;
        let cases: [(Value, StatusCode, &str); 5] = [
            (
                json!({"username": "ops@demo.example"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "password",
            ),
            (
                json!({"username": "ops@demo.example", "password": PASSWORD, "tenant": "other"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "tenant",
            ),
            (
                json!({"username": 7, "password": PASSWORD}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "username",
            ),
            (
                json!({"username": "ops@demo.example", "password": "x".repeat(MAX_PASSWORD_LEN + 1)}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "password",
            ),
            (
                json!(["ops@demo.example", PASSWORD]),
                StatusCode::BAD_REQUEST,
                "",
            ),
        ];
        for (body, expected, field) in cases {
            let (status, problem) = call(&ports, with_body(&body), NOW).await;
            assert_eq!(status, expected, "{body}");
            assert_eq!(problem["errors"][0]["field"], field, "{body}");
        }
        let huge =
            with_body(&json!({"username": "a".repeat(MAX_BODY_BYTES), "password": PASSWORD}));
        let (status, _) = call(&ports, huge, NOW).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let user = ports
            .accounts
            .get_user(&Username::parse("ops@demo.example").expect("username"))
            .await
            .expect("store")
            .expect("user");
        assert_eq!(
            user.failed_logins, 0,
            "malformed requests count as no attempt"
        );
    }
}
