//! Identity, roles, tenant isolation and bad input, through the local API exactly as a client
//! sees it: the authorizer in front of every route, the functions behind it.

use super::{client_with, signed_in, valid_request, DEMO_PASSWORD};
use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cellbridge::common::tenant::TenantId;
use cellbridge::identity::principal::Identity;
use cellbridge::identity::role::{Role, Roles};
use cellbridge::identity::token::TokenSigner;
use cellbridge::identity::token::{SigningSecret, TokenAudience, DEFAULT_LIFETIME};
use devstack::api_client::{ApiClient, ApiError};
use devstack::Devstack;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", part(header), part(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

async fn status_of(response: reqwest::Response) -> Result<(u16, String)> {
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

pub async fn every_route_needs_a_valid_token(stack: &Devstack) -> Result<()> {
    let api = stack.api_url();
    let key = secret_bytes(stack).await?;
    let secret = SigningSecret::new(key.clone())?;
    let now = OffsetDateTime::now_utc();
    let operator = Identity {
        subject: "ops@demo.example".into(),
        tenant: TenantId::parse("demo").context("tenant")?,
        roles: Roles::new([Role::Operator]),
    };
    let sign = |audience: TokenAudience, at: OffsetDateTime| {
        TokenSigner::new(&secret, audience, DEFAULT_LIFETIME)
            .issue(&operator, at)
            .map(|t| t.token)
    };
    let valid = sign(TokenAudience::default(), now)?;
    let expired = sign(
        TokenAudience::default(),
        now - DEFAULT_LIFETIME - Duration::minutes(5),
    )?;
    let wrong_issuer = sign(
        TokenAudience {
            issuer: "https://evil.example".into(),
            ..TokenAudience::default()
        },
        now,
    )?;
    let wrong_audience = sign(
        TokenAudience {
            audience: "another-api".into(),
            ..TokenAudience::default()
        },
        now,
    )?;
    let parts: Vec<&str> = valid.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    claims["tenant"] = json!("globex");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        parts[1]
    );
    let mut tenantless: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    tenantless
        .as_object_mut()
        .context("claims")?
        .remove("tenant");
    // Signed with the right key: only the missing tenant is wrong.
    let missing_tenant = hs256(&json!({"alg": "HS256", "typ": "JWT"}), &tenantless, &key);

    let cases = [
        ("expired", expired),
        ("tampered", tampered),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("alg none", unsigned),
        ("missing tenant", missing_tenant),
        ("garbage", "not-a-token".to_owned()),
    ];
    let routes = [
        ("GET", "/bulk-changes"),
        ("GET", "/bulk-changes/019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80"),
        (
            "GET",
            "/bulk-changes/019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80/devices",
        ),
        ("POST", "/bulk-changes"),
        ("GET", "/devices"),
        ("GET", "/devices/trk-1/telemetry"),
        ("GET", "/users"),
    ];
    let plain = reqwest::Client::new();
    for (method, path) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let (status, _) = status_of(
            plain
                .request(method.clone(), format!("{api}{path}"))
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, 401, "{method} {path} without a token");
        for (name, token) in &cases {
            let response = client_with(token)?
                .request(method.clone(), format!("{api}{path}"))
                .header("content-type", "application/json")
                .body(valid_request().to_string())
                .send()
                .await?;
            let (status, body) = status_of(response).await?;
            assert_eq!(status, 401, "{method} {path} with a {name} token: {body}");
        }
    }
    let (status, body) = status_of(
        client_with(&valid)?
            .get(format!("{api}/bulk-changes"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "the valid token: {body}");
    // Open routes stay open.
    let (status, _) = status_of(
        plain
            .post(format!("{api}/auth/login"))
            .json(&json!({}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 422);
    Ok(())
}

/// The signing secret the devstack generated in moto, read as the functions read it.
async fn secret_bytes(stack: &Devstack) -> Result<Vec<u8>> {
    let arn = stack
        .resources()
        .arn("AuthSigningSecret")
        .context("secret")?;
    let out = cellbridge::common::aws::secrets_manager(stack.sdk_config())
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)?;
    Ok(out.secret_string.unwrap_or_default().into_bytes())
}

pub async fn roles_limit_what_a_user_may_do(stack: &Devstack) -> Result<()> {
    let api = stack.api_url();
    let before = table_counts(stack).await?;
    let viewer = client_with(&stack.login("viewer@demo.example", DEMO_PASSWORD).await?)?;
    let response = viewer
        .post(format!("{api}/bulk-changes"))
        .header("content-type", "application/json")
        .body(valid_request().to_string())
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await?;
    assert_eq!(problem["type"], "https://cellbridge.dev/problems/forbidden");
    assert_eq!(
        table_counts(stack).await?,
        before,
        "a refused request writes nothing"
    );
    let (status, _) = status_of(viewer.get(format!("{api}/bulk-changes")).send().await?).await?;
    assert_eq!(status, 200, "viewers read");
    let admin = client_with(&stack.login("admin@demo.example", DEMO_PASSWORD).await?)?;
    let (status, _) = status_of(admin.get(format!("{api}/bulk-changes")).send().await?).await?;
    assert_eq!(status, 200, "admins include the lower roles");
    Ok(())
}

/// Creates a record-only bulk change (no carrier calls) and returns its id.
async fn create_recorded(client: &ApiClient, key: &str) -> Result<String> {
    let mut request = valid_request();
    request["processChanges"] = json!(false);
    let created = client.create_bulk_change(&request, Some(key)).await?;
    Ok(created.id.into_owned())
}

fn status_code(outcome: Result<impl std::fmt::Debug, ApiError>) -> Option<u16> {
    outcome
        .err()
        .as_ref()
        .and_then(ApiError::status)
        .map(|s| s.as_u16())
}

pub async fn tenants_never_see_each_other(stack: &Devstack) -> Result<()> {
    let api = stack.api_url();
    let globex = signed_in(stack, "ops@globex.example").await?;
    let demo = signed_in(stack, "ops@demo.example").await?;
    let key = format!("isolation-{}", uuid::Uuid::new_v4());
    let globex_ids = [
        create_recorded(&globex, &key).await?,
        create_recorded(&globex, &format!("{key}-2")).await?,
    ];

    for id in &globex_ids {
        for refused in [
            demo.bulk_change(id).await.map(|_| ()),
            demo.bulk_change_devices(id).await.map(|_| ()),
        ] {
            let problem = refused.as_ref().err().and_then(ApiError::problem);
            assert_eq!(
                problem.map(|p| (p.status, p.kind.as_str())),
                Some((404, "https://cellbridge.dev/problems/not-found")),
                "{refused:?}"
            );
        }
        assert_eq!(
            globex.bulk_change(id).await?.id,
            id.as_str(),
            "its own tenant reads it"
        );
    }
    // Lists, filtered or not, and pages continued with the other tenant's cursor.
    let globex_page = globex.bulk_changes_page("limit=1").await?;
    let cursor = globex_page.next_cursor.context("a second page")?;
    for query in ["", "status=recorded", &format!("limit=1&cursor={cursor}")] {
        let seen: Vec<String> = demo
            .bulk_changes_page(query)
            .await?
            .items
            .into_iter()
            .map(|c| c.id.into_owned())
            .collect();
        assert!(
            globex_ids.iter().all(|id| !seen.contains(id)),
            "demo's list {query:?} shows globex's {seen:?}"
        );
    }
    // The same idempotency key from another tenant is another key: a new bulk change of its own,
    // not a replay of globex's.
    let mine = create_recorded(&demo, &key).await?;
    assert!(!globex_ids.contains(&mine));
    // Nothing changes another tenant's bulk change: there is no route for it to take.
    let (status, _) = status_of(
        reqwest::Client::new()
            .delete(format!("{api}/bulk-changes/{}", globex_ids[0]))
            .bearer_auth(demo.token().unwrap_or_default())
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 405);
    let after = globex.bulk_change(&globex_ids[0]).await?;
    assert_eq!(after.created_by, "user:ops@globex.example", "{after:?}");

    // Users: demo's admin sees and deletes only demo's.
    let admin = signed_in(stack, "admin@demo.example").await?;
    let users = admin.users().await?;
    let names: Vec<&str> = users.iter().map(|u| u.username.as_ref()).collect();
    assert!(
        names.contains(&"ops@demo.example") && !names.contains(&"ops@globex.example"),
        "{names:?}"
    );
    let deleted = reqwest::Client::new()
        .delete(format!("{api}/users/ops@globex.example"))
        .bearer_auth(admin.token().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(deleted.status().as_u16(), 404, "another tenant's user");
    assert_eq!(
        status_code(globex.users().await),
        Some(403),
        "operators do not manage users"
    );
    stack
        .login("ops@globex.example", DEMO_PASSWORD)
        .await
        .context("globex's user is still there")?;

    // Devices: each tenant sees its own, and another's is a 404 on every device route.
    let registry = cellbridge::devices::dynamodb::DynamoDevices::new(
        cellbridge::common::aws::dynamodb(stack.sdk_config()),
        stack
            .resources()
            .table_name("DevicesTable")
            .context("devices table")?,
        stack
            .resources()
            .table_name("TelemetryTable")
            .context("telemetry table")?,
    );
    for (thing, tenant) in [("demo-trk-1", "demo"), ("globex-trk-1", "globex")] {
        let body = json!({"tenant": tenant, "iccid": cellbridge::testing::iccid(1), "model": "TRK-200", "firmware": "2.4.1"});
        let announcement = cellbridge::devices::registration::parse_announcement(
            thing,
            body.to_string().as_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        cellbridge::devices::ports::DeviceStore::register(
            &registry,
            &announcement,
            OffsetDateTime::now_utc(),
        )
        .await?;
    }
    let listed = demo.devices().await?;
    let things: Vec<&str> = listed.iter().map(|d| d.id.as_ref()).collect();
    assert_eq!(things, ["demo-trk-1"], "{listed:?}");
    assert_eq!(status_code(demo.device("globex-trk-1").await), Some(404));
    assert_eq!(
        status_code(
            demo.telemetry_since("globex-trk-1", OffsetDateTime::now_utc())
                .await
        ),
        Some(404)
    );
    assert_eq!(
        globex.device("globex-trk-1").await?.id,
        "globex-trk-1",
        "its own tenant reads it"
    );
    Ok(())
}

pub async fn repeated_wrong_passwords_lock_the_account(stack: &Devstack) -> Result<()> {
    use cellbridge::identity::admin::{add_user, NewUser};
    let table = stack
        .resources()
        .table_name(devstack::stack::ACCOUNTS_TABLE)
        .context("accounts table")?;
    let store = cellbridge::identity::dynamodb::DynamoAccounts::new(
        cellbridge::common::aws::dynamodb(stack.sdk_config()),
        table,
    );
    let username = format!("lockout-{}@demo.example", uuid::Uuid::new_v4().simple());
    add_user(
        &store,
        NewUser {
            username: &username,
            tenant: "demo",
            roles: Roles::new([Role::Viewer]),
            password: DEMO_PASSWORD,
        },
        OffsetDateTime::now_utc(),
    )
    .await?;
    let api = stack.api_url();
    let plain = reqwest::Client::new();
    let attempt = |password: &'static str| {
        plain
            .post(format!("{api}/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("wrong-password-guess").await?.status().as_u16(),
            401
        );
    }
    let locked = attempt(DEMO_PASSWORD).await?;
    assert_eq!(
        locked.status().as_u16(),
        401,
        "the right password while locked"
    );
    let problem: Value = locked.json().await?;
    assert_eq!(
        problem["type"],
        "https://cellbridge.dev/problems/login-failed"
    );
    let user = store
        .get_user(&cellbridge::identity::username::Username::parse(&username).context("username")?)
        .await?
        .context("the user")?;
    let until = user.locked_until.context("locked")?;
    assert!(
        until > OffsetDateTime::now_utc() + Duration::minutes(14),
        "{until}"
    );
    Ok(())
}

use cellbridge::identity::ports::AccountStore as _;

/// Items in each table of the bulk-change flow.
async fn table_counts(stack: &Devstack) -> Result<Vec<(String, i32)>> {
    let dynamodb = cellbridge::common::aws::dynamodb(stack.sdk_config());
    let mut counts = Vec::new();
    for id in [
        "BulkChangesTable",
        "DeviceChangesTable",
        "AuditLogTable",
        "IdempotencyTable",
    ] {
        let table = stack.resources().table_name(id).context("table")?;
        // The account gate shares the idempotency table (`gate#<account>`, and `pace#<account>`
        // for shared paces), and the carrier sync passes it on its own schedule: only
        // idempotency claims count here.
        let out = dynamodb
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .filter_expression(
                "attribute_not_exists(idempotencyKey) OR NOT (begins_with(idempotencyKey, :gate) OR begins_with(idempotencyKey, :pace))",
            )
            .expression_attribute_values(
                ":gate",
                aws_sdk_dynamodb::types::AttributeValue::S("gate#".into()),
            )
            .expression_attribute_values(
                ":pace",
                aws_sdk_dynamodb::types::AttributeValue::S("pace#".into()),
            )
            .send()
            .await?;
        counts.push((id.to_owned(), out.count));
    }
    Ok(counts)
}

pub async fn malformed_requests_get_their_4xx_and_change_nothing(stack: &Devstack) -> Result<()> {
    let api = stack.api_url();
    let operator = client_with(&stack.login("ops@demo.example", DEMO_PASSWORD).await?)?;
    let before = table_counts(stack).await?;
    let deep = format!(
        "{{\"carrier\": \"jasper\", \"change\": {}1{}}}",
        "{\"a\":".repeat(40),
        "}".repeat(40)
    );
    let mut unknown = valid_request();
    unknown["tenantId"] = json!("globex");
    let mut unknown_nested = valid_request();
    unknown_nested["devices"][0]["tenant"] = json!("globex");
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"iccid": cellbridge::testing::iccid(i)}))
        .collect();
    let mut too_many = valid_request();
    too_many["devices"] = json!(many);
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        String,
        u16,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "not JSON",
            "/bulk-changes",
            None,
            "{\"carrier\": ".into(),
            400,
            Some(""),
        ),
        (
            "an array",
            "/bulk-changes",
            None,
            "[1, 2]".into(),
            400,
            Some(""),
        ),
        ("too deep", "/bulk-changes", None, deep, 400, Some("")),
        (
            "an unknown field",
            "/bulk-changes",
            None,
            unknown.to_string(),
            422,
            Some("tenantId"),
        ),
        (
            "an unknown device field",
            "/bulk-changes",
            None,
            unknown_nested.to_string(),
            422,
            Some("devices[0].tenant"),
        ),
        (
            "too many devices",
            "/bulk-changes",
            None,
            too_many.to_string(),
            422,
            Some("devices"),
        ),
        (
            "text",
            "/bulk-changes",
            Some("text/plain"),
            valid_request().to_string(),
            415,
            None,
        ),
        (
            "an empty body",
            "/bulk-changes",
            None,
            String::new(),
            400,
            Some(""),
        ),
        (
            "a login with extra fields",
            "/auth/login",
            None,
            json!({"username": "a@b.c", "password": "x", "admin": true}).to_string(),
            422,
            Some("admin"),
        ),
        (
            "a login that is not JSON",
            "/auth/login",
            None,
            "username=a&password=b".into(),
            400,
            Some(""),
        ),
    ];
    for (name, path, content_type, body, expected, field) in cases {
        let response = operator
            .post(format!("{api}{path}"))
            .header("content-type", content_type.unwrap_or("application/json"))
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let media = response.headers()["content-type"].to_str()?.to_owned();
        let problem: Value = response.json().await?;
        assert_eq!(status, expected, "{name}: {problem}");
        assert_eq!(media, "application/problem+json", "{name}");
        assert_eq!(problem["status"], expected, "{name}");
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{name}: {problem}");
        }
    }
    for (name, query) in [
        ("an unknown status", "status=done"),
        ("a zero limit", "limit=0"),
        ("a forged cursor", "cursor=eyJhZnRlciI6IngjeSJ9"),
        ("an unknown parameter", "tenant=globex"),
    ] {
        let response = operator
            .get(format!("{api}/bulk-changes?{query}"))
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 400, "{name}");
    }
    let response = operator
        .get(format!("{api}/bulk-changes/not-a-uuid"))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        table_counts(stack).await?,
        before,
        "malformed requests wrote something"
    );
    Ok(())
}

/// Everything secret this run used: the demo password, the token signing key, every token the
/// tests signed in with, and the carrier credentials the workers were given.
async fn secrets_of_the_run(stack: &Devstack) -> Result<Vec<(String, String)>> {
    let mut secrets = vec![
        ("the demo password".to_owned(), DEMO_PASSWORD.to_owned()),
        (
            "the token signing key".to_owned(),
            String::from_utf8(secret_bytes(stack).await?)?,
        ),
    ];
    secrets.push((
        "the wrong Jasper key of the providers scenario".to_owned(),
        super::providers::WRONG_JASPER_KEY.to_owned(),
    ));
    for (i, token) in super::issued_tokens().into_iter().enumerate() {
        secrets.push((format!("token #{i}"), token));
    }
    let accounts = stack.carriers().context("carriers")?.accounts_document()?;
    for (carrier, fields) in accounts.as_object().context("accounts")? {
        for (name, value) in fields.as_object().into_iter().flatten() {
            let lower = name.to_ascii_lowercase();
            let secret =
                lower.contains("key") || lower.contains("secret") || lower.contains("password");
            if let (true, Some(value)) = (secret, value.as_str()) {
                secrets.push((format!("{carrier} {name}"), value.to_owned()));
            }
        }
    }
    assert!(
        secrets.len() >= 8,
        "the run's secrets were not all found: {}",
        secrets.len()
    );
    Ok(secrets)
}

/// After a full run (logins, refused tokens, bulk changes through all three carriers), neither
/// the functions' logs nor the audit log hold any secret.
pub async fn secrets_stay_out_of_logs_and_audit(
    stack: &Devstack,
    function_log: &std::path::Path,
) -> Result<()> {
    let secrets = secrets_of_the_run(stack).await?;
    let log = std::fs::read_to_string(function_log)
        .with_context(|| format!("reading {}", function_log.display()))?;
    // The log is the real thing: the authorizer, the login and the worker all wrote to it.
    for expected in ["request authorized", "request refused", "login", "carrier"] {
        assert!(
            log.contains(expected),
            "the function log lacks {expected:?}: is it the right file?"
        );
    }
    let dynamodb = cellbridge::common::aws::dynamodb(stack.sdk_config());
    let table = stack
        .resources()
        .table_name("AuditLogTable")
        .context("audit table")?;
    let mut audit = String::new();
    let mut start: Option<
        std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    > = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in page.items() {
            audit.push_str(&format!("{item:?}\n"));
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    assert!(
        audit.contains("request_text") || audit.contains("requestText"),
        "the audit log holds carrier exchanges"
    );
    for (name, secret) in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{name} is in the function log"
        );
        assert!(
            !audit.contains(secret.as_str()),
            "{name} is in the audit log"
        );
    }
    Ok(())
}
