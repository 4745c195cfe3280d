//! Signing in through an identity provider (OIDC mode): the sign-in page, the way to the
//! provider and back, and every answer that must sign nobody in. The provider is a fake token
//! endpoint and an RSA key that signs ID tokens; requests are the sample events of
//! `events/console`.

use super::*;
use crate::api::{ApiError, ApiRequest};
use crate::oidc::{
    discover, endpoints_from_discovery, CodeExchange, HttpOidcProvider, OidcClient, OidcProvider,
    OidcSettings, OidcSignIn, PendingSignIn, ProviderError, OIDC_COOKIE,
};
use crate::session::SIGN_IN_COOKIE;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cellbridge_identity::test_provider::TestIdentityProvider;
use cellbridge_identity::token::{ClaimNames, SigningSecret, TokenAudience, TokenVerifier};
use lambda_http::http::header::{COOKIE, LOCATION, SET_COOKIE};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::from_str;
use reqwest::Url;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use time::macros::datetime;
use time::Duration;

const SIGN_IN_FORM: &str = include_str!("../../../events/console/sign-in-form.json");
const SIGN_IN: &str = include_str!("../../../events/console/sign-in.json");
const START: &str = include_str!("../../../events/console/oidc-start.json");
const CALLBACK: &str = include_str!("../../../events/console/oidc-callback.json");
const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example";
const CLIENT_ID: &str = "4example0console0client";
const AUTHORIZE: &str = "https://fleet.auth.eu-west-1.amazoncognito.com/oauth2/authorize";
/// The callback on the console's address in the sample events: CloudFront's, while the requests'
/// host is API Gateway's.
const CALLBACK_URL: &str = "https://d111111abcdef8.cloudfront.net/console/sign-in/callback";

/// One RSA key for the whole file: generating it takes a while in a debug build.
static PROVIDER: LazyLock<TestIdentityProvider> =
    LazyLock::new(|| TestIdentityProvider::new("idp-key-1"));

/// The provider's token endpoint: answers what the test says, recording every exchange.
struct FakeTokenEndpoint {
    answer: Mutex<Result<String, ProviderError>>,
    exchanges: Mutex<Vec<CodeExchange>>,
}

impl FakeTokenEndpoint {
    fn answering(answer: Result<String, ProviderError>) -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(answer),
            exchanges: Mutex::default(),
        })
    }

    fn exchanges(&self) -> Vec<CodeExchange> {
        self.exchanges.lock().expect("exchanges").clone()
    }
}

#[async_trait]
impl OidcProvider for FakeTokenEndpoint {
    async fn exchange_code(&self, exchange: &CodeExchange) -> Result<String, ProviderError> {
        self.exchanges
            .lock()
            .expect("exchanges")
            .push(exchange.clone());
        self.answer.lock().expect("answer").clone()
    }
}

/// Signing in through the provider asks the API for nothing.
struct NoApi;

#[async_trait]
impl PortalApi for NoApi {
    async fn call(&self, request: ApiRequest) -> Result<Value, ApiError> {
        panic!(
            "signing in through the provider called the API: {}",
            request.path_and_query
        )
    }
}

fn client() -> OidcClient {
    OidcClient {
        authorization_url: Url::parse(AUTHORIZE).expect("URL"),
        client_id: CLIENT_ID.to_owned(),
        redirect_url: None,
        provider_name: Some("Fleet SSO".to_owned()),
    }
}

fn oidc_ports_with(client: OidcClient, endpoint: Arc<FakeTokenEndpoint>) -> ConsolePorts {
    let verifier = TokenVerifier::oidc(
        PROVIDER.jwks(),
        TokenAudience {
            issuer: ISSUER.to_owned(),
            audience: CLIENT_ID.to_owned(),
        },
        ClaimNames::cognito(),
    );
    ConsolePorts {
        api: Arc::new(NoApi),
        authenticator: Arc::new(Authenticator::new(verifier, None)),
        tickets: Arc::new(LiveTickets::new(
            &SigningSecret::new([9u8; 32]).expect("secret"),
        )),
        live_url: "wss://live.cellbridge.local/live".to_owned(),
        oidc: Some(OidcSignIn {
            client,
            provider: endpoint,
        }),
    }
}

fn oidc_ports(endpoint: Arc<FakeTokenEndpoint>) -> ConsolePorts {
    oidc_ports_with(client(), endpoint)
}

/// A token endpoint that must not be asked.
fn unused_endpoint() -> Arc<FakeTokenEndpoint> {
    FakeTokenEndpoint::answering(Err(ProviderError::Unreachable("not expected".into())))
}

fn claims(nonce: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT_ID, "sub": "7d1f-ops", "email": "ops@demo.example",
        "custom:tenant": "demo", "cognito:groups": ["operator"], "token_use": "id",
        "nonce": nonce,
        "iat": NOW.unix_timestamp(), "exp": (NOW + Duration::hours(1)).unix_timestamp(),
    })
}

/// A sample event with another query and other cookies.
fn event(sample: &str, query: Option<&str>, cookies: &[String]) -> Request {
    let mut json: Value = serde_json::from_str(sample).expect("a sample event");
    if let Some(query) = query {
        json["rawQueryString"] = query.into();
        json.as_object_mut()
            .expect("an event")
            .remove("queryStringParameters");
    }
    json.as_object_mut().expect("an event").remove("cookies");
    let mut request = from_str(&json.to_string()).expect("an event");
    if !cookies.is_empty() {
        let value = HeaderValue::from_str(&cookies.join("; ")).expect("cookie header");
        request.headers_mut().insert(COOKIE, value);
    }
    request
}

/// The sample callback as it is, its cookie included.
fn sample_callback() -> (Request, PendingSignIn) {
    let request = from_str(CALLBACK).expect("the sample callback");
    let pending = session::cookie(&request, OIDC_COOKIE)
        .and_then(PendingSignIn::from_cookie_value)
        .expect("the sample's sign-in");
    (request, pending)
}

fn pending_cookie(pending: &PendingSignIn) -> String {
    format!("{OIDC_COOKIE}={}", pending.cookie_value())
}

fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect()
}

fn set_cookie_named(response: &Response<Body>, name: &str) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, value)| value)
        .unwrap_or("")
}

fn location(response: &Response<Body>) -> &str {
    response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .expect("an absolute URL")
        .query_pairs()
        .into_owned()
        .collect()
}

fn assert_no_session(response: &Response<Body>, case: &str) {
    assert!(
        set_cookie_named(response, SESSION_COOKIE).is_none(),
        "{case}: signed in"
    );
    let cleared = set_cookie_named(response, OIDC_COOKIE).unwrap_or_default();
    assert!(
        cleared.contains("Max-Age=0"),
        "{case}: the waiting sign-in stays: {cleared}"
    );
}

/// `/console/sign-in/start` through the sample event: the provider's URL and the cookie's sign-in.
async fn started(ports: &ConsolePorts, request: Request) -> (String, PendingSignIn, String) {
    let response = handle(ports, request, NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie_named(&response, OIDC_COOKIE).expect("the OIDC cookie");
    let pending = PendingSignIn::from_cookie_value(cookie_value(&cookie)).expect("a sign-in");
    (location(&response).to_owned(), pending, cookie)
}

#[tokio::test]
async fn the_sign_in_page_offers_the_provider_and_no_password_form() {
    let ports = oidc_ports(unused_endpoint());
    let response = handle(&ports, event(SIGN_IN_FORM, None, &[]), NOW).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(&response);
    assert!(
        page.contains(r#"href="/console/sign-in/start?next=%2Fconsole%2Fsims""#),
        "{page}"
    );
    assert!(page.contains("Sign in with Fleet SSO"), "{page}");
    assert!(!page.contains("password"), "{page}");
    assert!(!page.contains("<form"), "{page}");
    assert!(set_cookie_named(&response, SIGN_IN_COOKIE).is_none());

    let unnamed = OidcClient {
        provider_name: None,
        ..client()
    };
    let page = text(
        &handle(
            &oidc_ports_with(unnamed, unused_endpoint()),
            event(SIGN_IN_FORM, None, &[]),
            NOW,
        )
        .await,
    );
    assert!(
        page.contains("Sign in with your identity provider"),
        "{page}"
    );
}

#[tokio::test]
async fn a_password_posted_in_oidc_mode_reaches_no_api_and_shows_the_provider() {
    let ports = oidc_ports(unused_endpoint());
    let request = event(
        SIGN_IN,
        None,
        &[format!("{SIGN_IN_COOKIE}=3f0c1e5a9b7d4c2e8a6f1b0d9c8e7a6b")],
    );
    let response = handle(&ports, request, NOW).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = text(&response);
    assert!(page.contains("Sign in with Fleet SSO"), "{page}");
    assert!(set_cookie_named(&response, SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn start_sends_the_browser_to_the_provider_with_pkce_and_a_fresh_state() {
    let ports = oidc_ports(unused_endpoint());
    let (url, pending, cookie) = started(&ports, event(START, None, &[])).await;

    assert!(url.starts_with(&format!("{AUTHORIZE}?")), "{url}");
    let asked = query_of(&url);
    assert_eq!(asked["response_type"], "code");
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert_eq!(asked["redirect_uri"], CALLBACK_URL);
    assert_eq!(asked["scope"], "openid email");
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["state"], pending.state);
    assert_eq!(asked["nonce"], pending.nonce);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    assert_eq!(asked["code_challenge"], challenge);
    assert!(!url.contains(&pending.verifier), "the verifier stays here");
    // 64 hex digits each: far more than 128 bits, and a valid PKCE verifier (43 to 128).
    for secret in [&pending.state, &pending.nonce, &pending.verifier] {
        assert_eq!(secret.len(), 64, "{secret}");
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    }
    assert_ne!(pending.state, pending.nonce);
    assert_eq!(pending.next, "/console/sims");
    assert_eq!(pending.redirect_uri, CALLBACK_URL);

    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");

    let (_, again, _) = started(&ports, event(START, None, &[])).await;
    assert_ne!(again.state, pending.state);
    assert_ne!(again.nonce, pending.nonce);
    assert_ne!(again.verifier, pending.verifier);
}

#[tokio::test]
async fn the_callback_url_is_on_the_browsers_origin_or_the_configured_one() {
    let ports = oidc_ports(unused_endpoint());
    // Without a same-origin Referer, the request's own host: API Gateway's here.
    let mut request = event(START, None, &[]);
    request.headers_mut().remove("sec-fetch-site");
    let (_, pending, _) = started(&ports, request).await;
    assert_eq!(
        pending.redirect_uri,
        "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/console/sign-in/callback"
    );
    // Locally, plain HTTP on a port.
    let mut request = event(START, None, &[]);
    for name in ["sec-fetch-site", "referer"] {
        request.headers_mut().remove(name);
    }
    let headers = request.headers_mut();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:3000"));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let (_, pending, _) = started(&ports, request).await;
    assert_eq!(
        pending.redirect_uri,
        "http://127.0.0.1:3000/console/sign-in/callback"
    );

    let configured = OidcClient {
        redirect_url: Some(
            Url::parse("https://console.fleet.example/console/sign-in/callback").expect("URL"),
        ),
        ..client()
    };
    let ports = oidc_ports_with(configured, unused_endpoint());
    let (url, pending, _) = started(&ports, event(START, None, &[])).await;
    assert_eq!(
        pending.redirect_uri,
        "https://console.fleet.example/console/sign-in/callback"
    );
    assert_eq!(query_of(&url)["redirect_uri"], pending.redirect_uri);
}

#[tokio::test]
async fn the_callback_exchanges_the_code_signs_in_and_goes_on() {
    let (request, pending) = sample_callback();
    let id_token = PROVIDER.id_token(&claims(&pending.nonce));
    let endpoint = FakeTokenEndpoint::answering(Ok(id_token.clone()));
    let ports = oidc_ports(endpoint.clone());

    let response = handle(&ports, request, NOW).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        text(&response)
    );
    assert_eq!(location(&response), "/console/sims");
    assert_eq!(
        endpoint.exchanges(),
        vec![CodeExchange {
            code: "2b7e1a6c-4d3f-4e8a-9b1c-0d2e3f4a5b6c".into(),
            redirect_uri: CALLBACK_URL.into(),
            client_id: CLIENT_ID.into(),
            code_verifier: pending.verifier.clone(),
        }]
    );
    let session = set_cookie_named(&response, SESSION_COOKIE).expect("the session cookie");
    assert_eq!(cookie_value(&session), id_token);
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    let cleared = set_cookie_named(&response, OIDC_COOKIE).expect("the OIDC cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // A session like any other: the console's authenticator (the authorizer's) takes it.
    let who = ports
        .authenticator
        .identify(&id_token, NOW)
        .await
        .expect("a session");
    assert_eq!(who.tenant.as_str(), "demo");
}

#[tokio::test]
async fn from_start_to_callback_the_same_sign_in_goes_through() {
    let endpoint = FakeTokenEndpoint::answering(Err(ProviderError::Unreachable("not yet".into())));
    let ports = oidc_ports(endpoint.clone());
    let (url, pending, cookie) = started(&ports, event(START, None, &[])).await;
    *endpoint.answer.lock().expect("answer") = Ok(PROVIDER.id_token(&claims(&pending.nonce)));

    let state = &query_of(&url)["state"];
    let sent_back = format!("{OIDC_COOKIE}={}", cookie_value(&cookie));
    let request = event(
        CALLBACK,
        Some(&format!("code=abc&state={state}")),
        &[sent_back],
    );
    let response = handle(&ports, request, NOW).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        text(&response)
    );
    assert_eq!(location(&response), "/console/sims");
    assert!(set_cookie_named(&response, SESSION_COOKIE).is_some());
    assert_eq!(endpoint.exchanges()[0].code_verifier, pending.verifier);
}

#[tokio::test]
async fn answers_that_are_not_for_this_sign_in_exchange_nothing() {
    let (_, pending) = sample_callback();
    let cookie = pending_cookie(&pending);
    let cases = [
        (
            "wrong state",
            format!("code=abc&state={}", "0".repeat(64)),
            vec![cookie.clone()],
            "not for the sign-in this browser started",
        ),
        (
            "no state",
            "code=abc".to_owned(),
            vec![cookie.clone()],
            "not for the sign-in this browser started",
        ),
        (
            "no cookie",
            format!("code=abc&state={}", pending.state),
            vec![],
            "not started in this browser",
        ),
        (
            "a cookie that is no sign-in",
            format!("code=abc&state={}", pending.state),
            vec![format!("{OIDC_COOKIE}=bm90IGpzb24")],
            "not started in this browser",
        ),
        (
            "no code",
            format!("state={}", pending.state),
            vec![cookie.clone()],
            "no authorization code",
        ),
    ];
    for (case, query, cookies, says) in cases {
        let endpoint = unused_endpoint();
        let ports = oidc_ports(endpoint.clone());
        let response = handle(&ports, event(CALLBACK, Some(&query), &cookies), NOW).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        assert!(
            text(&response).contains(says),
            "{case}: {}",
            text(&response)
        );
        assert!(text(&response).contains("Sign in with Fleet SSO"), "{case}");
        assert!(endpoint.exchanges().is_empty(), "{case}: exchanged");
        assert_no_session(&response, case);
    }
}

#[tokio::test]
async fn a_provider_error_is_shown_escaped_and_exchanges_nothing() {
    let (_, pending) = sample_callback();
    let endpoint = unused_endpoint();
    let ports = oidc_ports(endpoint.clone());
    let query = format!(
        "error=access_denied&error_description=%3Cb%3EUser%3C%2Fb%3E+is+disabled&state={}",
        pending.state
    );
    let response = handle(
        &ports,
        event(CALLBACK, Some(&query), &[pending_cookie(&pending)]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = text(&response);
    assert!(
        page.contains("&lt;b&gt;User&lt;/b&gt; is disabled"),
        "{page}"
    );
    assert!(!page.contains("<b>User"), "{page}");
    assert!(endpoint.exchanges().is_empty());
    assert_no_session(&response, "provider error");

    // The same words with another browser's state are not shown: anyone can write a link.
    let forged = query.replace(&pending.state, &"1".repeat(64));
    let response = handle(
        &ports,
        event(CALLBACK, Some(&forged), &[pending_cookie(&pending)]),
        NOW,
    )
    .await;
    assert!(!text(&response).contains("is disabled"));
    assert_no_session(&response, "forged provider error");
}

fn without(claims: &mut Value, name: &str) {
    if let Some(claims) = claims.as_object_mut() {
        claims.remove(name);
    }
}

#[tokio::test]
async fn id_tokens_that_are_not_this_sign_ins_or_do_not_verify_sign_nobody_in() {
    let (_, pending) = sample_callback();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims(&pending.nonce);
        change(&mut claims);
        claims
    };
    let impostor = TestIdentityProvider::new("idp-key-1");
    let cases = [
        (
            "another sign-in's nonce",
            PROVIDER.id_token(&claims(&"5".repeat(64))),
            "not issued for this sign-in",
        ),
        (
            "no nonce",
            PROVIDER.id_token(&with(&|c| without(c, "nonce"))),
            "not issued for this sign-in",
        ),
        (
            "another key",
            impostor.id_token(&claims(&pending.nonce)),
            "signature does not verify",
        ),
        (
            "another issuer",
            PROVIDER.id_token(&with(&|c| c["iss"] = "https://elsewhere.example".into())),
            "another issuer",
        ),
        (
            "another client",
            PROVIDER.id_token(&with(&|c| c["aud"] = "another-client".into())),
            "another audience",
        ),
        (
            "expired",
            PROVIDER.id_token(&with(&|c| {
                c["exp"] = (NOW - Duration::hours(1)).unix_timestamp().into()
            })),
            "expired",
        ),
        (
            "no tenant",
            PROVIDER.id_token(&with(&|c| without(c, "custom:tenant"))),
            "lacks a valid custom:tenant",
        ),
    ];
    for (case, id_token, says) in cases {
        let endpoint = FakeTokenEndpoint::answering(Ok(id_token));
        let ports = oidc_ports(endpoint.clone());
        let query = format!("code=abc&state={}", pending.state);
        let response = handle(
            &ports,
            event(CALLBACK, Some(&query), &[pending_cookie(&pending)]),
            NOW,
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            text(&response).contains(says),
            "{case}: {}",
            text(&response)
        );
        assert_eq!(endpoint.exchanges().len(), 1, "{case}");
        assert_no_session(&response, case);
    }
}

#[tokio::test]
async fn a_failing_provider_says_what_happened_and_what_to_do() {
    let (_, pending) = sample_callback();
    let cases = [
        (
            ProviderError::Refused {
                error: "invalid_grant".into(),
                description: Some("Authorization code expired".into()),
            },
            StatusCode::BAD_GATEWAY,
            "Authorization code expired. Sign in again",
        ),
        (
            ProviderError::Unreachable("connection refused".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "did not answer. Try again in a minute",
        ),
        (
            ProviderError::NoIdToken("no id_token".into()),
            StatusCode::BAD_GATEWAY,
            "allowed the openid scope",
        ),
    ];
    for (error, status, says) in cases {
        let case = error.to_string();
        let ports = oidc_ports(FakeTokenEndpoint::answering(Err(error)));
        let query = format!("code=abc&state={}", pending.state);
        let response = handle(
            &ports,
            event(CALLBACK, Some(&query), &[pending_cookie(&pending)]),
            NOW,
        )
        .await;
        assert_eq!(response.status(), status, "{case}");
        let page = text(&response);
        assert!(page.contains(says), "{case}: {page}");
        assert!(
            page.to_lowercase().contains("tell your administrator"),
            "{case}: {page}"
        );
        assert_no_session(&response, &case);
    }
}

#[tokio::test]
async fn a_next_page_off_the_console_is_ignored() {
    let ports = oidc_ports(unused_endpoint());
    for elsewhere in [
        "https://evil.example/console",
        "//evil.example",
        "/auth/login",
    ] {
        let query = serde_urlencoded::to_string([("next", elsewhere)]).expect("a query");
        let (_, pending, _) = started(&ports, event(START, Some(&query), &[])).await;
        assert_eq!(pending.next, "/console", "{elsewhere}");
    }

    // Even a sign-in cookie naming another site goes to the console.
    let (_, mut pending) = sample_callback();
    pending.next = "https://evil.example/console".into();
    let endpoint = FakeTokenEndpoint::answering(Ok(PROVIDER.id_token(&claims(&pending.nonce))));
    let query = format!("code=abc&state={}", pending.state);
    let response = handle(
        &oidc_ports(endpoint),
        event(CALLBACK, Some(&query), &[pending_cookie(&pending)]),
        NOW,
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console");
}

#[tokio::test]
async fn signing_out_ends_the_console_session() {
    let sign_out = include_str!("../../../events/console/sign-out.json");
    let (_, pending) = sample_callback();
    let id_token = PROVIDER.id_token(&claims(&pending.nonce));
    let ports = oidc_ports(unused_endpoint());
    let mut request = from_str(sign_out).expect("the sample sign-out");
    let cookie = HeaderValue::from_str(&format!("{SESSION_COOKIE}={id_token}")).expect("cookie");
    request.headers_mut().insert(COOKIE, cookie);
    *request.body_mut() = Body::Text(format!("csrf={}", session::csrf_for(&id_token)));
    let response = handle(&ports, request, NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/sign-in?signed-out=1");
    let cleared = set_cookie_named(&response, SESSION_COOKIE).expect("the session cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn in_cellbridge_mode_the_provider_pages_are_not_there() {
    let mut ports = oidc_ports(unused_endpoint());
    ports.oidc = None;
    let response = handle(&ports, event(START, None, &[]), NOW).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&response).starts_with("/console/sign-in?next=%2Fconsole%2Fsign-in%2Fstart"),
        "{}",
        location(&response)
    );
    assert!(set_cookie_named(&response, OIDC_COOKIE).is_none());
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn the_settings_are_optional_urls_and_a_bad_one_names_its_variable() {
    assert_eq!(
        OidcSettings::from_env(&env(&[])),
        Ok(OidcSettings::default())
    );
    let settings = OidcSettings::from_env(&env(&[
        ("OIDC_TOKEN_URL", "https://idp.example/token"),
        ("OIDC_PROVIDER_NAME", " Fleet SSO "),
        (
            "OIDC_REDIRECT_URL",
            "https://console.fleet.example/console/sign-in/callback",
        ),
    ]))
    .expect("settings");
    assert_eq!(
        settings.token_url.map(String::from).as_deref(),
        Some("https://idp.example/token")
    );
    assert_eq!(settings.provider_name.as_deref(), Some("Fleet SSO"));
    for (name, value) in [
        ("OIDC_AUTHORIZATION_URL", "idp.example/authorize"),
        ("OIDC_TOKEN_URL", "ftp://idp.example/token"),
        (
            "OIDC_REDIRECT_URL",
            "https://console.fleet.example/callback",
        ),
    ] {
        let error = OidcSettings::from_env(&env(&[(name, value)])).expect_err(value);
        assert_eq!(error.variable(), name);
    }
}

#[test]
fn discovery_finds_the_endpoints_and_says_what_to_set_when_it_cannot() {
    let url = format!("{ISSUER}/.well-known/openid-configuration");
    let document = json!({
        "issuer": ISSUER,
        "authorization_endpoint": AUTHORIZE,
        "token_endpoint": "https://fleet.auth.eu-west-1.amazoncognito.com/oauth2/token",
        "jwks_uri": format!("{ISSUER}/.well-known/jwks.json"),
    });
    let found = endpoints_from_discovery(&url, &document, ISSUER, &OidcSettings::default())
        .expect("endpoints");
    assert_eq!(found.authorization_url.as_str(), AUTHORIZE);
    assert!(found.token_url.as_str().ends_with("/oauth2/token"));

    let overridden = OidcSettings {
        token_url: Some(Url::parse("https://proxy.example/token").expect("URL")),
        ..OidcSettings::default()
    };
    let found = endpoints_from_discovery(&url, &document, ISSUER, &overridden).expect("endpoints");
    assert_eq!(found.token_url.as_str(), "https://proxy.example/token");
    assert_eq!(found.authorization_url.as_str(), AUTHORIZE);

    let without = json!({"issuer": ISSUER, "token_endpoint": "https://idp.example/token"});
    let error = endpoints_from_discovery(&url, &without, ISSUER, &OidcSettings::default())
        .expect_err("no authorization endpoint")
        .to_string();
    assert!(error.contains("set OIDC_AUTHORIZATION_URL"), "{error}");

    let error = endpoints_from_discovery(
        &url,
        &document,
        &format!("{ISSUER}/"),
        &OidcSettings::default(),
    )
    .expect_err("another issuer")
    .to_string();
    assert!(error.contains("set OIDC_ISSUER to it exactly"), "{error}");
}

#[tokio::test]
async fn both_endpoints_configured_need_no_discovery() {
    let settings = OidcSettings {
        authorization_url: Some(Url::parse(AUTHORIZE).expect("URL")),
        token_url: Some(Url::parse("https://idp.example/token").expect("URL")),
        ..OidcSettings::default()
    };
    // Nothing listens there: a fetch would fail.
    let found = discover(&reqwest::Client::new(), "http://127.0.0.1:9", &settings)
        .await
        .expect("the configured endpoints");
    assert_eq!(found.token_url.as_str(), "https://idp.example/token");

    let error = discover(
        &reqwest::Client::new(),
        "http://127.0.0.1:9",
        &OidcSettings::default(),
    )
    .await
    .expect_err("no provider")
    .to_string();
    assert!(
        error.contains("http://127.0.0.1:9/.well-known/openid-configuration"),
        "{error}"
    );
    assert!(
        error.contains("OIDC_AUTHORIZATION_URL and OIDC_TOKEN_URL"),
        "{error}"
    );
}

/// Answers one HTTP request on a local port with `status` and `body`; gives the URL, and the
/// request as received.
async fn serve_once(status: u16, body: &'static str) -> (Url, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = Url::parse(&format!(
        "http://{}/oauth2/token",
        listener.local_addr().expect("an address")
    ))
    .expect("URL");
    let received = tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return String::new();
        };
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        // Until the headers and the body they announce are in.
        while let Ok(read) = socket.read(&mut chunk).await {
            request.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&request).into_owned();
            let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|n| n.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                body.len() >= length
            });
            if read == 0 || complete {
                break;
            }
        }
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, received)
}

fn exchange() -> CodeExchange {
    CodeExchange {
        code: "c0de".into(),
        redirect_uri: CALLBACK_URL.into(),
        client_id: CLIENT_ID.into(),
        code_verifier: "v".repeat(64),
    }
}

#[tokio::test]
async fn the_token_endpoint_gets_a_form_and_its_answers_are_told_apart() {
    let http = reqwest::Client::new();
    let (url, received) = serve_once(
        200,
        r#"{"id_token": "h.p.s", "access_token": "a", "token_type": "Bearer"}"#,
    )
    .await;
    let id_token = HttpOidcProvider::new(http.clone(), url)
        .exchange_code(&exchange())
        .await
        .expect("an ID token");
    assert_eq!(id_token, "h.p.s");
    let request = received.await.expect("the request");
    assert!(request.starts_with("POST /oauth2/token "), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"),
        "{request}"
    );
    let form = request
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    let fields: HashMap<String, String> = serde_urlencoded::from_str(form).expect("a form");
    assert_eq!(fields["grant_type"], "authorization_code");
    assert_eq!(fields["code"], "c0de");
    assert_eq!(fields["redirect_uri"], CALLBACK_URL);
    assert_eq!(fields["client_id"], CLIENT_ID);
    assert_eq!(fields["code_verifier"], "v".repeat(64));
    assert!(!fields.contains_key("client_secret"));

    let (url, _) = serve_once(
        400,
        r#"{"error": "invalid_grant", "error_description": "Code expired"}"#,
    )
    .await;
    assert_eq!(
        HttpOidcProvider::new(http.clone(), url)
            .exchange_code(&exchange())
            .await,
        Err(ProviderError::Refused {
            error: "invalid_grant".into(),
            description: Some("Code expired".into())
        })
    );
    let (url, _) = serve_once(503, "{}").await;
    assert!(matches!(
        HttpOidcProvider::new(http.clone(), url)
            .exchange_code(&exchange())
            .await,
        Err(ProviderError::Unreachable(_))
    ));
    let (url, _) = serve_once(200, r#"{"access_token": "a"}"#).await;
    assert!(matches!(
        HttpOidcProvider::new(http.clone(), url)
            .exchange_code(&exchange())
            .await,
        Err(ProviderError::NoIdToken(_))
    ));
    let closed = Url::parse("http://127.0.0.1:9/oauth2/token").expect("URL");
    assert!(matches!(
        HttpOidcProvider::new(http, closed)
            .exchange_code(&exchange())
            .await,
        Err(ProviderError::Unreachable(_))
    ));
}
