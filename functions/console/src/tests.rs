//! The console's pages against a recorded API, with the sample events of `events/console`.

use super::*;
use crate::api::{ApiError, ApiProblem, ApiRequest, FieldError};
use crate::session::{csrf_for, SIGN_IN_COOKIE};
use async_trait::async_trait;
use cellbridge_core::tenant::TenantId;
use cellbridge_identity::principal::Identity;
use cellbridge_identity::role::{Role, Roles};
use cellbridge_identity::token::{SigningSecret, TokenAudience, TokenSigner, TokenVerifier};
use lambda_http::http::header::{COOKIE, LOCATION, SET_COOKIE};
use lambda_http::http::Method;
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::from_str;
use lambda_http::RequestExt;
use serde_json::{json, Value};
use std::sync::Mutex;
use time::macros::datetime;
use time::Duration;

const SIGN_IN_FORM: &str = include_str!("../../../events/console/sign-in-form.json");
const SIGN_IN: &str = include_str!("../../../events/console/sign-in.json");
const SIMS: &str = include_str!("../../../events/console/sims.json");
const OVERVIEW: &str = include_str!("../../../events/console/overview.json");
const SIGN_OUT: &str = include_str!("../../../events/console/sign-out.json");
const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);
const LIVE_URL: &str = "wss://live.cellbridge.local/live";

/// The API as a list of answers by path prefix, recording every request.
#[derive(Default)]
struct RecordedApi {
    answers: Vec<(&'static str, Result<Value, ApiError>)>,
    requests: Mutex<Vec<ApiRequest>>,
}

impl RecordedApi {
    fn answering(answers: Vec<(&'static str, Result<Value, ApiError>)>) -> Self {
        Self {
            answers,
            requests: Mutex::default(),
        }
    }

    fn requests(&self) -> Vec<ApiRequest> {
        self.requests.lock().expect("requests").clone()
    }
}

#[async_trait]
impl PortalApi for RecordedApi {
    async fn call(&self, request: ApiRequest) -> Result<Value, ApiError> {
        let path = request.path_and_query.clone();
        self.requests.lock().expect("requests").push(request);
        self.answers
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, answer)| answer.clone())
            .unwrap_or_else(|| panic!("the test API has no answer for {path}"))
    }
}

fn secret() -> SigningSecret {
    SigningSecret::new([7u8; 32]).expect("secret")
}

fn token_for(role: Role, issued: OffsetDateTime, lifetime: Duration) -> String {
    let identity = Identity {
        subject: "ops@demo.example".into(),
        tenant: TenantId::parse("demo").expect("tenant"),
        roles: Roles::new([role]),
    };
    TokenSigner::new(&secret(), TokenAudience::default(), lifetime)
        .issue(&identity, issued)
        .expect("token")
        .token
}

fn valid_token() -> String {
    token_for(Role::Operator, NOW, Duration::hours(1))
}

fn ports(api: Arc<RecordedApi>) -> ConsolePorts {
    let verifier = TokenVerifier::shared_secret(&secret(), TokenAudience::default());
    ConsolePorts {
        api,
        authenticator: Arc::new(Authenticator::new(verifier, None)),
        tickets: Arc::new(LiveTickets::new(&secret())),
        live_url: LIVE_URL.to_owned(),
        oidc: None,
    }
}

/// A sample event with its cookies replaced.
fn event(sample: &str, cookies: &[String]) -> Request {
    let mut request = from_str(sample).expect("a sample event");
    request.headers_mut().remove(COOKIE);
    if !cookies.is_empty() {
        let value = HeaderValue::from_str(&cookies.join("; ")).expect("cookie header");
        request.headers_mut().insert(COOKIE, value);
    }
    request
}

fn with_body(mut request: Request, body: &str) -> Request {
    *request.body_mut() = Body::Text(body.to_owned());
    request
}

/// The sign-out sample (a form post) sent to `path` instead.
fn post_sample(path: &str) -> String {
    SIGN_OUT.replace("/console/sign-out", path)
}

fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}")
}

fn text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}

fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn location(response: &Response<Body>) -> &str {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn sims_page() -> Value {
    json!({
        "items": [
            {"iccid": "89010000000000000011", "msisdn": "15550000011", "carrier": "jasper", "status": "active",
             "usage": {"dataBytes": 0, "sms": 0}, "lastChange": {"source": {"kind": "carrierSync"}, "at": "2026-12-06T08:00:00Z"}, "version": 1},
            {"iccid": "89010000000000000012", "carrier": "jasper", "status": "active", "deviceId": "tracker-12",
             "usage": {"dataBytes": 0, "sms": 0}, "lastChange": {"source": {"kind": "carrierSync"}, "at": "2026-12-06T08:00:00Z"}, "version": 1}
        ],
        "nextCursor": "c2ltcy0y"
    })
}

#[tokio::test]
async fn the_sign_in_form_carries_the_value_of_its_own_cookie() {
    let api = Arc::new(RecordedApi::default());
    let response = handle(&ports(api.clone()), event(SIGN_IN_FORM, &[]), NOW).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with(SIGN_IN_COOKIE))
        .expect("the sign-in cookie");
    let nonce = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("a value");
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"));
    let page = text(&response);
    assert!(
        page.contains(&format!(r#"name="csrf" value="{nonce}""#)),
        "{page}"
    );
    assert!(
        page.contains(r#"name="next" value="/console/sims""#),
        "{page}"
    );
    assert!(api.requests().is_empty(), "no API call to show a form");
}

#[tokio::test]
async fn signing_in_puts_the_token_in_an_http_only_cookie_and_goes_on() {
    let token = valid_token();
    let api = Arc::new(RecordedApi::answering(vec![(
        "/auth/login",
        Ok(
            json!({"token": token, "tokenType": "Bearer", "expiresAt": "2026-12-06T10:00:00Z", "tenant": "demo", "roles": ["operator"]}),
        ),
    )]));
    let request = event(
        SIGN_IN,
        &[format!("{SIGN_IN_COOKIE}=3f0c1e5a9b7d4c2e8a6f1b0d9c8e7a6b")],
    );
    let response = handle(&ports(api.clone()), request, NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/sims");
    let cookies = set_cookies(&response);
    let session = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}={token};")))
        .expect("the session cookie");
    assert!(session.contains("Max-Age=3600"), "{session}");
    assert!(session.contains("HttpOnly"), "{session}");
    let calls = api.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path_and_query, "/auth/login");
    assert_eq!(
        calls[0].body,
        Some(json!({"username": "ops@demo.example", "password": "demo-password-1234"}))
    );
    assert_eq!(calls[0].token, None);
}

#[tokio::test]
async fn a_sign_in_without_the_forms_cookie_is_refused_before_the_api() {
    let api = Arc::new(RecordedApi::default());
    for cookies in [
        vec![],
        vec![format!("{SIGN_IN_COOKIE}=someone-elses-value-000000000000")],
    ] {
        let response = handle(&ports(api.clone()), event(SIGN_IN, &cookies), NOW).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!set_cookies(&response)
            .iter()
            .any(|c| c.starts_with(SESSION_COOKIE)));
    }
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn a_refused_sign_in_says_why_and_sets_no_session() {
    let refusal = ApiProblem {
        title: "Sign-in failed".into(),
        status: 401,
        detail: "the username or password is wrong".into(),
        errors: vec![],
    };
    let api = Arc::new(RecordedApi::answering(vec![(
        "/auth/login",
        Err(ApiError::Unauthorized(refusal)),
    )]));
    let request = event(
        SIGN_IN,
        &[format!("{SIGN_IN_COOKIE}=3f0c1e5a9b7d4c2e8a6f1b0d9c8e7a6b")],
    );
    let response = handle(&ports(api), request, NOW).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(text(&response).contains("The username or password is wrong."));
    assert!(text(&response).contains(r#"value="ops@demo.example""#));
    assert!(!set_cookies(&response)
        .iter()
        .any(|c| c.starts_with(SESSION_COOKIE)));
}

#[tokio::test]
async fn pages_without_a_session_go_to_sign_in_and_come_back() {
    let api = Arc::new(RecordedApi::default());
    let response = handle(&ports(api.clone()), event(SIMS, &[]), NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&response),
        "/console/sign-in?next=%2Fconsole%2Fsims%3Fstatus%3Dactive%26carrier%3Djasper"
    );

    let expired = token_for(Role::Operator, NOW - Duration::hours(3), Duration::hours(1));
    let response = handle(
        &ports(api.clone()),
        event(SIMS, &[session_cookie(&expired)]),
        NOW,
    )
    .await;
    assert!(location(&response).ends_with("&expired=1"));
    assert!(set_cookies(&response)
        .iter()
        .any(|c| c.starts_with(&format!("{SESSION_COOKIE}=;")) && c.contains("Max-Age=0")));

    let forged = format!("{}x", valid_token());
    let response = handle(
        &ports(api.clone()),
        event(OVERVIEW, &[session_cookie(&forged)]),
        NOW,
    )
    .await;
    assert_eq!(location(&response), "/console/sign-in?next=%2Fconsole");
    assert!(
        api.requests().is_empty(),
        "the API is not asked without a session"
    );
}

#[tokio::test]
async fn the_sim_table_asks_the_api_with_the_users_token_and_pages_on() {
    let token = valid_token();
    let api = Arc::new(RecordedApi::answering(vec![("/sims", Ok(sims_page()))]));
    let response = handle(
        &ports(api.clone()),
        event(SIMS, &[session_cookie(&token)]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(page.contains("89010000000000000011") && page.contains("89010000000000000012"));
    assert!(page.contains(r#"href="/console/devices/tracker-12""#));
    assert!(
        page.contains(
            r#"href="/console/sims?status=active&amp;carrier=jasper&amp;cursor=c2ltcy0y""#
        ),
        "{page}"
    );
    assert!(
        page.contains(&csrf_for(&token)),
        "the sign-out form's CSRF token"
    );
    let calls = api.requests();
    assert_eq!(
        calls[0].path_and_query,
        "/sims?status=active&carrier=jasper&limit=50"
    );
    assert_eq!(calls[0].token.as_deref(), Some(token.as_str()));
    let headers = response.headers();
    assert_eq!(headers["cache-control"], "no-store");
    let timing = headers["server-timing"].to_str().expect("server-timing");
    assert!(
        timing.starts_with("api;dur=") && timing.contains(", console;dur="),
        "{timing}"
    );
    assert!(headers["content-security-policy"]
        .to_str()
        .is_ok_and(
            |csp| csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'")
        ));
}

#[tokio::test]
async fn the_apis_complaint_about_a_filter_is_shown_next_to_it() {
    let refusal = ApiProblem {
        title: "Bad parameter".into(),
        status: 400,
        detail: "iccidPrefix: must be digits".into(),
        errors: vec![FieldError {
            field: "iccidPrefix".into(),
            message: "must be 1 to 22 digits".into(),
        }],
    };
    let api = Arc::new(RecordedApi::answering(vec![(
        "/sims",
        Err(ApiError::Refused(refusal)),
    )]));
    let mut request = event(SIMS, &[session_cookie(&valid_token())]);
    *request.uri_mut() = "/console/sims?q=89x".parse().expect("uri");
    let request = request.with_query_string_parameters(
        [("q".to_owned(), "89x".to_owned())]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    );
    let response = handle(&ports(api.clone()), request, NOW).await;
    let page = text(&response);
    assert!(
        page.contains(r#"<span class="field-error" id="q-error">must be 1 to 22 digits</span>"#),
        "{page}"
    );
    assert!(page.contains(r#"aria-describedby="q-error""#));
    assert_eq!(
        api.requests()[0].path_and_query,
        "/sims?iccidPrefix=89x&limit=50"
    );
}

#[tokio::test]
async fn the_api_ending_the_session_sends_the_user_to_sign_in() {
    let api = Arc::new(RecordedApi::answering(vec![(
        // Every call the overview makes.
        "/",
        Err(ApiError::Unauthorized(ApiProblem::default())),
    )]));
    let response = handle(
        &ports(api),
        event(OVERVIEW, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/sign-in?expired=1");
}

#[tokio::test]
async fn an_unavailable_api_is_shown_in_place_with_what_to_do() {
    let api = Arc::new(RecordedApi::answering(vec![(
        // Every call the overview makes.
        "/",
        Err(ApiError::Unavailable("the API answered 503".into())),
    )]));
    let response = handle(
        &ports(api),
        event(OVERVIEW, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(page.contains(r#"role="alert""#) && page.contains("Reload the page to try again"));
}

#[tokio::test]
async fn the_overview_shows_the_fleets_numbers_with_links_to_their_sims() {
    let summary = json!({
        "sims": {"total": 12, "byStatus": {"active": 9, "suspended": 3},
                 "byCarrier": {"jasper": {"active": 7, "suspended": 3}, "thingSpace": {"active": 2}}},
        "devices": {"registered": 5, "online": 4, "offline": 1}
    });
    let api = Arc::new(RecordedApi::answering(vec![
        ("/fleet/summary", Ok(summary)),
        ("/bulk-changes", Ok(json!({"items": []}))),
    ]));
    let response = handle(
        &ports(api.clone()),
        event(OVERVIEW, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(
        page.contains(r#"<strong data-count="devices-online">4</strong> online"#),
        "{page}"
    );
    assert!(page.contains(r#"<caption>SIMs by carrier and status</caption>"#));
    assert!(page.contains(r#"<a href="/console/sims?carrier=jasper&amp;status=suspended">3</a>"#));
    assert!(page.contains(r#"<th scope="row">ThingSpace</th>"#));
    assert!(page.contains(r#"<td class="numeric" data-count="sims-suspended"><a href="/console/sims?status=suspended">3</a></td>"#));
    assert!(page.contains(r#"data-refresh-on="sim.status device.presence device.registered""#));
    let asked: Vec<String> = api
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(asked.contains(&"/fleet/summary".to_owned()), "{asked:?}");
}

#[tokio::test]
async fn the_overview_keeps_its_bulk_changes_when_the_numbers_fail() {
    let api = Arc::new(RecordedApi::answering(vec![
        (
            "/fleet/summary",
            Err(ApiError::Unavailable("the API answered 503".into())),
        ),
        ("/bulk-changes", Ok(json!({"items": []}))),
    ]));
    let response = handle(
        &ports(api),
        event(OVERVIEW, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    let page = text(&response);
    assert!(
        page.contains(r#"role="alert""#),
        "the numbers' error in place"
    );
    assert!(
        page.contains("No bulk change is running."),
        "the rest still shown"
    );
}

/// The API as the device page of `tracker-12` asks it: the device, no commands, and `telemetry`.
fn device_page_api(telemetry: Vec<Value>) -> Arc<RecordedApi> {
    Arc::new(RecordedApi::answering(vec![
        (
            "/devices/tracker-12/telemetry",
            Ok(json!({"items": telemetry})),
        ),
        ("/devices/tracker-12/commands", Ok(json!({"items": []}))),
        (
            "/devices/tracker-12",
            Ok(
                json!({"id": "tracker-12", "tenant": "demo", "iccid": "89010000000000000012",
                      "model": "TRK-200", "firmware": "2.4.1", "status": "online",
                      "registeredAt": "2026-09-01T00:00:00Z"}),
            ),
        ),
    ]))
}

#[tokio::test]
async fn a_90_day_chart_is_drawn_from_the_apis_hourly_summaries() {
    let sample = include_str!("../../../events/console/device-90-days.json");
    let hours: Vec<Value> = (0..3)
        .map(|h| {
            json!({"at": format!("2026-12-0{}T08:00:00Z", h + 3),
                   "metrics": {"temp": {"min": 18.0 + h as f64, "max": 25.5, "mean": 21.0, "count": 3600}}})
        })
        .collect();
    let api = device_page_api(hours);
    let response = handle(
        &ports(api.clone()),
        event(sample, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(
        page.contains("temp: from 18 to 25.5 in this range, drawn from 3 hourly summaries"),
        "{page}"
    );
    assert!(
        !page.contains("data-redraw-on"),
        "90 days are not drawn again on every sample"
    );
    let asked: Vec<String> = api
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(
        asked.iter().any(|path| path.starts_with(
            "/devices/tracker-12/telemetry?resolution=hour&from=2026-09-07T09%3A00%3A00Z&to=2026-12-06T09%3A00%3A00Z"
        )),
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_short_range_is_drawn_again_as_samples_arrive() {
    let sample = include_str!("../../../events/console/device-90-days.json").replace("90d", "15m");
    let samples: Vec<Value> = (0..5)
        .map(|s| json!({"at": format!("2026-12-06T08:5{s}:00Z"), "metrics": {"temp": 20 + s}}))
        .collect();
    let api = device_page_api(samples);
    let response = handle(
        &ports(api),
        event(&sample, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    let page = text(&response);
    assert!(
        page.contains(
            r#"<div id="telemetry-region" data-live-region data-redraw-on="telemetry.latest">"#
        ),
        "{page}"
    );
    assert!(page.contains("drawn from 5 samples"), "{page}");
}

#[tokio::test]
async fn signing_out_needs_the_pages_csrf_token() {
    let token = valid_token();
    let api = Arc::new(RecordedApi::default());
    let forged = handle(
        &ports(api.clone()),
        event(SIGN_OUT, &[session_cookie(&token)]),
        NOW,
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(set_cookies(&forged).is_empty(), "the session stays");

    let request = with_body(
        event(SIGN_OUT, &[session_cookie(&token)]),
        &format!("csrf={}", csrf_for(&token)),
    );
    let response = handle(&ports(api.clone()), request, NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/sign-in?signed-out=1");
    assert!(set_cookies(&response)
        .iter()
        .any(|c| c.starts_with(&format!("{SESSION_COOKIE}=;"))));
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn an_admins_recount_asks_the_api_and_shows_the_overview() {
    let token = token_for(Role::Admin, NOW, Duration::hours(1));
    let recount = post_sample("/console/admin/recount");
    let api = Arc::new(RecordedApi::answering(vec![(
        "/fleet/summary/recount",
        Ok(json!({"sims": {"total": 0}})),
    )]));
    let forged = handle(
        &ports(api.clone()),
        event(&recount, &[session_cookie(&token)]),
        NOW,
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no CSRF token");
    assert!(api.requests().is_empty());

    let request = with_body(
        event(&recount, &[session_cookie(&token)]),
        &format!("csrf={}", csrf_for(&token)),
    );
    let response = handle(&ports(api.clone()), request, NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console");
    let asked = api.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].method, Method::POST);
    assert_eq!(asked[0].path_and_query, "/fleet/summary/recount");
}

#[tokio::test]
async fn a_rate_plan_change_is_previewed_with_the_plan_named_and_carried_to_the_confirmation() {
    let token = valid_token();
    let preview = post_sample("/console/bulk-changes/preview");
    let api = Arc::new(RecordedApi::answering(vec![(
        "/bulk-changes/preview",
        Ok(
            json!({"matched": 2, "accepted": 2, "accounts": [{"carrier": "jasper", "sims": 2}],
                  "refused": {"count": 0}}),
        ),
    )]));
    let form = |plan: &str| {
        format!(
            "csrf={}&action=ratePlan&ratePlan={plan}&scope=selected&iccid=8901260000000000001&iccid=8901260000000000002",
            csrf_for(&token)
        )
    };
    let unnamed = with_body(event(&preview, &[session_cookie(&token)]), &form("+"));
    let response = handle(&ports(api.clone()), unnamed, NOW).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&response).contains("Name the rate plan"));
    assert!(api.requests().is_empty(), "nothing asked of the API");

    let named = with_body(event(&preview, &[session_cookie(&token)]), &form("IOT-5GB"));
    let response = handle(&ports(api.clone()), named, NOW).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(
        page.contains("Move the 2 selected SIMs to rate plan IOT-5GB?"),
        "{page}"
    );
    assert!(page.contains("Move 2 SIMs to IOT-5GB"), "{page}");
    assert!(
        page.contains(r#"<input type="hidden" name="ratePlan" value="IOT-5GB">"#),
        "the confirmation carries the plan: {page}"
    );
    let asked = api.requests();
    assert_eq!(
        asked[0].body,
        Some(json!({
            "change": {"type": "carrierRatePlanChange", "ratePlan": "IOT-5GB"},
            "filter": {"iccids": ["8901260000000000001", "8901260000000000002"]}
        }))
    );
}

#[tokio::test]
async fn a_page_gets_a_live_ticket_with_its_csrf_token_only() {
    let token = valid_token();
    let api = Arc::new(RecordedApi::default());
    let ports = ports(api.clone());
    let request = |csrf: &str| {
        let mut request = event(SIGN_OUT, &[session_cookie(&token)]);
        *request.uri_mut() = "/console/live-ticket".parse().expect("uri");
        request
            .headers_mut()
            .insert("x-csrf-token", HeaderValue::from_str(csrf).expect("header"));
        request
    };
    let refused = handle(&ports, request("forged"), NOW).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let response = handle(&ports, request(&csrf_for(&token)), NOW).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = serde_json::from_str(&text(&response)).expect("json");
    let ticket = body["ticket"].as_str().expect("a ticket");
    let identity = ports.tickets.verify(ticket, NOW).expect("a valid ticket");
    assert_eq!(identity.subject, "ops@demo.example");
    assert!(
        ports.authenticator.identify(ticket, NOW).await.is_err(),
        "a ticket is no API token"
    );

    let mut anonymous = request(&csrf_for(&token));
    anonymous.headers_mut().remove(COOKIE);
    assert_eq!(
        handle(&ports, anonymous, NOW).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn pages_tell_their_script_where_the_live_stream_is_and_what_to_follow() {
    let token = valid_token();
    let api = Arc::new(RecordedApi::answering(vec![("/sims", Ok(sims_page()))]));
    let response = handle(&ports(api), event(SIMS, &[session_cookie(&token)]), NOW).await;
    let page = text(&response);
    assert!(
        page.contains(&format!(r#"data-live-url="{LIVE_URL}""#)),
        "{page}"
    );
    assert!(
        page.contains(r#"data-live-filter="{&quot;types&quot;:[&quot;sim.status&quot;]}""#),
        "{page}"
    );
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("connect-src 'self' wss://live.cellbridge.local;"),
        "{csp}"
    );
}

const BULK_CHANGE: &str = include_str!("../../../events/console/bulk-change.json");
const AUDIT: &str = include_str!("../../../events/console/bulk-change-audit.json");
const BULK_CHANGE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";
/// The cursor the sample audit event pages on from.
const AUDIT_CURSOR: &str = "eyJhZnRlciI6IjAxOWFhOGU1LTFjMDAtNzAwMC04MDAwLTAwMDAwMDAwMDAxMCJ9";

fn audit_page() -> Value {
    json!({
        "items": [
            {"entryId": "019aa8e5-1c00-7000-8000-000000000011", "bulkChangeId": BULK_CHANGE_ID, "deviceSeq": 2,
             "description": "jasper PUT https://jasper.example/api/v1/devices/89010000000000000013: 400",
             "processedBy": "carrier-worker", "requestText": "{\"status\":\"<script>alert(1)</script>\"}",
             "responseText": "x".repeat(9000), "hasErrors": true, "httpStatus": 400, "durationMs": 184,
             "createdAt": "2026-12-06T08:59:00Z"}
        ],
        "nextCursor": "bmV4dC1hdWRpdC1wYWdl"
    })
}

#[tokio::test]
async fn the_audit_page_asks_the_api_for_the_devices_entries_from_the_cursor_on() {
    let token = valid_token();
    let api = Arc::new(RecordedApi::answering(vec![(
        "/bulk-changes/",
        Ok(audit_page()),
    )]));
    let response = handle(
        &ports(api.clone()),
        event(AUDIT, &[session_cookie(&token)]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let calls = api.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].path_and_query,
        format!("/bulk-changes/{BULK_CHANGE_ID}/audit?device=2&limit=50&cursor={AUDIT_CURSOR}")
    );
    assert_eq!(calls[0].token.as_deref(), Some(token.as_str()));
    let page = text(&response);
    assert!(
        page.contains(
            "<pre>{&quot;status&quot;:&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;}</pre>"
        ),
        "the request text, escaped: {page}"
    );
    assert!(!page.contains("<script>alert(1)"));
    assert!(page.contains("<details class=\"exchange\"><summary>Response"));
    assert!(
        page.contains(&format!("<pre>{}</pre>", "x".repeat(8 * 1024))),
        "8 KB of the response"
    );
    assert!(!page.contains(&"x".repeat(8 * 1024 + 1)));
    assert!(page.contains("Only the first 8 KB of 9000 bytes are shown."));
    assert!(page.contains(r#"<span class="badge" data-status="failed">400 error</span>"#));
    assert!(page.contains(&format!(
        r##"href="/console/bulk-changes/{BULK_CHANGE_ID}#device-2""##
    )));
    assert!(page.contains("<caption"), "{page}");
    assert!(
        page.contains(&format!(
            r#"href="/console/bulk-changes/{BULK_CHANGE_ID}/audit?device=2&amp;cursor=bmV4dC1hdWRpdC1wYWdl""#
        )),
        "the next page keeps the device: {page}"
    );
}

#[tokio::test]
async fn an_audit_trail_the_api_does_not_know_is_not_found_and_an_empty_one_says_so() {
    let token = valid_token();
    let missing = ApiProblem {
        title: "Not found".into(),
        status: 404,
        detail: "this bulk change does not exist".into(),
        errors: vec![],
    };
    let api = Arc::new(RecordedApi::answering(vec![(
        "/bulk-changes/",
        Err(ApiError::Refused(missing)),
    )]));
    let response = handle(&ports(api), event(AUDIT, &[session_cookie(&token)]), NOW).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(text(&response).contains("There is no such page in the console."));

    let api = Arc::new(RecordedApi::answering(vec![(
        "/bulk-changes/",
        Ok(json!({"items": []})),
    )]));
    let mut request = event(AUDIT, &[session_cookie(&token)]);
    *request.uri_mut() = format!("/console/bulk-changes/{BULK_CHANGE_ID}/audit")
        .parse()
        .expect("uri");
    let request =
        request.with_query_string_parameters(std::collections::HashMap::<String, String>::new());
    let response = handle(&ports(api.clone()), request, NOW).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(text(&response).contains("No audit entries yet."));
    assert_eq!(
        api.requests()[0].path_and_query,
        format!("/bulk-changes/{BULK_CHANGE_ID}/audit?limit=50")
    );
}

#[tokio::test]
async fn each_device_outcome_leads_to_its_carrier_calls() {
    let api = Arc::new(RecordedApi::answering(vec![
        (
            "/bulk-changes/019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80/devices",
            Ok(json!({"items": [
                {"seq": 0, "iccid": "89010000000000000011", "status": "failed", "statusReason": "invalid transition",
                 "attempts": 1, "updatedAt": "2026-12-06T08:59:00Z"}
            ]})),
        ),
        (
            "/bulk-changes/019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80",
            Ok(json!({"id": BULK_CHANGE_ID, "carrier": "jasper",
                      "change": {"type": "statusUpdate", "action": "suspend"}, "status": "completedWithErrors",
                      "counts": {"total": 1, "pending": 0, "succeeded": 0, "failed": 1},
                      "createdBy": "user:ops@demo.example", "createdAt": "2026-12-06T08:58:00Z"})),
        ),
    ]));
    let response = handle(
        &ports(api),
        event(BULK_CHANGE, &[session_cookie(&valid_token())]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(
        page.contains(&format!(
            r#"href="/console/bulk-changes/{BULK_CHANGE_ID}/audit?device=0">Calls<span class="visually-hidden"> of device 0</span></a>"#
        )),
        "{page}"
    );
    assert!(page.contains(r#"<tr id="device-0">"#));
    assert!(page.contains(&format!(
        r#"href="/console/bulk-changes/{BULK_CHANGE_ID}/audit">Audit trail</a>"#
    )));
}
