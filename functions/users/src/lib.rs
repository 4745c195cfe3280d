//! Users of the caller's tenant, for its admins: `GET /users`, `POST /users`,
//! `DELETE /users/{username}`. A user of another tenant does not exist here (404).

use cellbridge_core::validation::ValidationErrors;
use cellbridge_core::validation::{json_object, reject_unknown, required, BodyLimits};
use cellbridge_edge::http::body::json_body;
use cellbridge_edge::http::caller::Caller;
use cellbridge_edge::http::page_view::PageView;
use cellbridge_edge::http::paging::{allow_query, page_request};
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::http::{caller, json_response, route_key};
use cellbridge_identity::admin::AccountError;
use cellbridge_identity::password::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use cellbridge_identity::ports::AccountStore;
use cellbridge_identity::role::{Role, Roles};
use cellbridge_identity::tenant::TenantAccounts;
use cellbridge_identity::username::Username;
use cellbridge_identity::views::UserView;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use time::OffsetDateTime;

/// This function's configuration, read once at cold start: the table of tenants and users.
pub type Config = cellbridge_identity::wiring::AccountsConfig;

pub const MAX_BODY_BYTES: usize = 4 * 1024;

pub async fn handle(
    accounts: &dyn AccountStore,
    request: Request,
    now: OffsetDateTime,
) -> Response<Body> {
    match respond(accounts, &request, now).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn respond(
    accounts: &dyn AccountStore,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let caller = caller(request)?;
    caller.require(Role::Admin)?;
    let users = TenantAccounts::of(accounts, &caller);
    match route_key(request).as_str() {
        "GET /users" => {
            allow_query(request, &["limit", "cursor"])?;
            let page = users.list_users(&page_request(request)?).await?;
            Ok(json_response(
                StatusCode::OK,
                &PageView::from_page(&page, |user| UserView::new(user, now)),
            ))
        }
        "POST /users" => {
            allow_query(request, &[])?;
            create(&users, &caller, request, now).await
        }
        "DELETE /users/{username}" => {
            allow_query(request, &[])?;
            delete(&users, &caller, request).await
        }
        _ => Err(Problem::not_found("this route")),
    }
}

struct NewUserRequest {
    username: String,
    password: String,
    roles: Roles,
}

fn parse_new_user(body: &[u8]) -> Result<NewUserRequest, ValidationErrors> {
    let object = json_object(body, &BodyLimits::small())?;
    let mut errors = ValidationErrors::default();
    reject_unknown(&object, "", &["username", "password", "roles"], &mut errors);
    let text = |name: &str, errors: &mut ValidationErrors| match required(&object, "", name, errors)
    {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(name, "must be a string");
            None
        }
        None => None,
    };
    let username = text("username", &mut errors);
    let password = text("password", &mut errors);
    let roles = match required(&object, "", "roles", &mut errors) {
        Some(Value::Array(names)) if !names.is_empty() && names.len() <= Role::ALL.len() => {
            let mut roles = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match name.as_str().and_then(Role::parse) {
                    Some(role) => roles.push(role),
                    None => errors.push(
                        format!("roles[{i}]"),
                        "must be one of: viewer, operator, admin",
                    ),
                }
            }
            Some(Roles::new(roles))
        }
        Some(_) => {
            errors.push(
                "roles",
                "must be a list of 1 to 3 roles: viewer, operator, admin",
            );
            None
        }
        None => None,
    };
    match (username, password, roles) {
        (Some(username), Some(password), Some(roles)) if errors.is_empty() => Ok(NewUserRequest {
            username,
            password,
            roles,
        }),
        _ => Err(errors),
    }
}

async fn create(
    users: &TenantAccounts<'_>,
    caller: &Caller,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, Problem> {
    let body = json_body(
        request,
        MAX_BODY_BYTES,
        "send a username, a password and roles",
    )?;
    let new = parse_new_user(body).map_err(Problem::invalid)?;
    let username = users
        .add_user(&new.username, new.roles, &new.password, now)
        .await
        .map_err(problem_of)?;
    tracing::info!(%username, tenant = %caller.tenant(), by = %caller.principal(), "user created");
    let user = users
        .get_user(&username)
        .await?
        .ok_or_else(|| Problem::internal("a created user could not be read back"))?;
    let mut response = json_response(StatusCode::CREATED, &UserView::new(&user, now));
    if let Ok(location) = format!("/users/{username}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn problem_of(error: AccountError) -> Problem {
    let invalid =
        |field: &str, message: String| Problem::invalid(ValidationErrors::single(field, message));
    match error {
        AccountError::InvalidUsername(_) => invalid(
            "username",
            cellbridge_identity::username::USERNAME_RULE.to_owned(),
        ),
        AccountError::NoRoles => invalid("roles", "must name at least one role".to_owned()),
        AccountError::Password(cellbridge_identity::password::PasswordError::Length) => invalid(
            "password",
            format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"),
        ),
        AccountError::UserExists(_) => Problem::conflict(
            "username-taken",
            "The username is taken",
            "choose another username",
        ),
        AccountError::UnknownTenant(tenant) => Problem::conflict(
            "tenant-not-registered",
            "The tenant is not registered",
            format!("create tenant {tenant} first (cargo xtask admin create-tenant)"),
        ),
        AccountError::Store(e) => e.into(),
        other => Problem::internal(&other.to_string()),
    }
}

async fn delete(
    users: &TenantAccounts<'_>,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, Problem> {
    let params = request.path_parameters();
    let Some(username) = params.first("username").and_then(Username::parse) else {
        return Err(Problem::not_found("this user"));
    };
    if username.as_str() == caller.identity().subject {
        return Err(Problem::conflict(
            "own-account",
            "An admin cannot delete their own account",
            "ask another admin of your tenant",
        ));
    }
    if !users.delete_user(&username).await? {
        return Err(Problem::not_found("this user"));
    }
    tracing::info!(%username, tenant = %caller.tenant(), by = %caller.principal(), "user deleted");
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_identity::admin::{add_tenant, add_user, NewUser};
    use cellbridge_identity::memory::MemoryAccounts;
    use lambda_http::request::from_str;
    use serde_json::json;

    const LIST: &str = include_str!("../../../events/users/list.json");
    const CREATE: &str = include_str!("../../../events/users/create.json");
    const DELETE: &str = include_str!("../../../events/users/delete.json");
    const PASSWORD: &str = "a long enough password";

    async fn accounts() -> MemoryAccounts {
        let store = MemoryAccounts::default();
        let now = OffsetDateTime::now_utc();
        for (tenant, username, role) in [
            ("demo", "admin@demo.example", Role::Admin),
            ("demo", "viewer@demo.example", Role::Viewer),
            ("globex", "ops@globex.example", Role::Operator),
        ] {
            add_tenant(&store, tenant, "", now).await.expect("tenant");
            add_user(
                &store,
                NewUser {
                    username,
                    tenant,
                    roles: Roles::new([role]),
                    password: PASSWORD,
                },
                now,
            )
            .await
            .expect("user");
        }
        store
    }

    fn event(sample: &str, roles: &str, body: Option<Value>, username: Option<&str>) -> Request {
        let mut value: Value = serde_json::from_str(sample).expect("sample");
        cellbridge_core::testing::authorize_event(&mut value, "demo", roles);
        value["requestContext"]["authorizer"]["lambda"]["sub"] = json!("admin@demo.example");
        if let Some(body) = body {
            value["body"] = body.to_string().into();
        }
        if let Some(username) = username {
            value["pathParameters"]["username"] = json!(username);
        }
        from_str(&value.to_string()).expect("event")
    }

    async fn call(store: &MemoryAccounts, request: Request) -> (StatusCode, Value) {
        let response = handle(store, request, OffsetDateTime::now_utc()).await;
        let status = response.status();
        let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
        (status, body)
    }

    #[tokio::test]
    async fn an_admin_lists_creates_and_deletes_the_tenants_users() {
        let store = accounts().await;
        let (status, page) = call(&store, from_str(LIST).expect("sample")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let names: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|u| u["username"].as_str())
            .collect();
        assert_eq!(
            names,
            ["admin@demo.example", "viewer@demo.example"],
            "never globex's users"
        );
        assert!(
            !page.to_string().contains("argon2"),
            "no password hashes: {page}"
        );

        let (status, created) = call(&store, from_str(CREATE).expect("sample")).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["tenant"], "demo");
        assert_eq!(created["roles"], json!(["operator"]));
        assert!(!created.to_string().contains("password"), "{created}");

        let (status, _) = call(&store, from_str(DELETE).expect("sample")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = call(&store, from_str(DELETE).expect("sample")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "already gone");
    }

    #[tokio::test]
    async fn another_tenants_user_cannot_be_seen_deleted_or_taken_over() {
        let store = accounts().await;
        let (status, _) = call(
            &store,
            event(DELETE, "admin", None, Some("ops@globex.example")),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let globex = Username::parse("ops@globex.example").expect("username");
        assert!(
            store.get_user(&globex).await.expect("store").is_some(),
            "still there"
        );
        let body =
            json!({"username": "ops@globex.example", "password": PASSWORD, "roles": ["admin"]});
        let (status, problem) = call(&store, event(CREATE, "admin", Some(body), None)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        let user = store.get_user(&globex).await.expect("store").expect("user");
        assert_eq!(user.tenant.as_str(), "globex");
        assert_eq!(user.roles, Roles::new([Role::Operator]), "unchanged");
    }

    #[tokio::test]
    async fn only_admins_manage_users_and_not_their_own_account() {
        let store = accounts().await;
        for roles in ["viewer", "operator"] {
            for sample in [LIST, CREATE, DELETE] {
                let (status, problem) = call(&store, event(sample, roles, None, None)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{roles}: {problem}");
            }
        }
        let (status, problem) = call(
            &store,
            event(DELETE, "admin", None, Some("Admin@demo.example")),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    }

    #[tokio::test]
    async fn bad_new_users_name_the_field() {
        let store = accounts().await;
        let cases = [
            (
                json!({"username": "a b", "password": PASSWORD, "roles": ["viewer"]}),
                "username",
            ),
            (
                json!({"username": "new@demo.example", "password": "short", "roles": ["viewer"]}),
                "password",
            ),
            (
                json!({"username": "new@demo.example", "password": PASSWORD, "roles": []}),
                "roles",
            ),
            (
                json!({"username": "new@demo.example", "password": PASSWORD, "roles": ["root"]}),
                "roles[0]",
            ),
            (
                json!({"username": "new@demo.example", "password": PASSWORD, "roles": ["viewer"], "tenant": "globex"}),
                "tenant",
            ),
            (
                json!({"username": "new@demo.example", "roles": ["viewer"]}),
                "password",
            ),
        ];
        for (body, field) in cases {
            let (status, problem) =
                call(&store, event(CREATE, "admin", Some(body.clone()), None)).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body}: {problem}"
            );
            assert_eq!(problem["errors"][0]["field"], field, "{body}");
        }
        let (_, page) = call(&store, from_str(LIST).expect("sample")).await;
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(2),
            "nothing was created"
        );
    }
}
