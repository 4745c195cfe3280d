//! API Gateway HTTP API, locally: the template's `HttpApi` routes, each request passed through
//! the route's Lambda authorizer, turned into a payload format 2.0 event for the function, and
//! its answer back into an HTTP response.

use crate::billing::{ApiMeter, ApiUsage};
use crate::lambda_watch::{InvokeError, Invoker};
use crate::local_aws::ACCOUNT_ID;
use crate::server_task::ServerTask;
use crate::template::{ApiAuth, FunctionSpec, LOCAL_API_ID};
use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Lambda's limit on a synchronous invocation's payload.
pub const BODY_LIMIT: usize = 6 * 1024 * 1024;

/// One route: which function answers `method path`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRoute {
    /// Upper case, or `ANY`.
    pub method: String,
    /// API Gateway syntax (`/bulk-changes/{id}`, `/files/{proxy+}`); `None` is `$default`.
    pub path: Option<String>,
    /// The function's binary.
    pub function: String,
    pub timeout: Duration,
    /// The Lambda authorizer in front of the function; `None` for an open route.
    pub authorizer: Option<RouteAuthorizer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteAuthorizer {
    /// The authorizer function's binary.
    pub function: String,
    /// Lower-case header names; a request missing one gets 401 without the authorizer.
    pub identity_headers: Vec<String>,
    pub timeout: Duration,
}

impl ApiRoute {
    pub fn route_key(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {path}", self.method),
            None => "$default".to_owned(),
        }
    }
}

/// The routes of every function's `HttpApi` events, each with the authorizer `auth` gives it.
pub fn routes_of(functions: &[FunctionSpec], auth: &ApiAuth) -> Result<Vec<ApiRoute>> {
    let mut routes = Vec::new();
    for f in functions {
        for r in &f.http_routes {
            let authorizer = match auth.for_route(&r.auth) {
                None => None,
                Some(spec) => {
                    let function = functions
                        .iter()
                        .find(|g| g.logical_id == spec.function_logical_id)
                        .with_context(|| format!("authorizer {} names no function", spec.name))?;
                    if !spec.simple_responses {
                        bail!("authorizer {}: the local stack emulates simple responses only (EnableSimpleResponses: true)", spec.name);
                    }
                    Some(RouteAuthorizer {
                        function: function.binary.clone(),
                        identity_headers: spec.identity_headers.clone(),
                        timeout: function.timeout,
                    })
                }
            };
            routes.push(ApiRoute {
                method: r.method.clone(),
                path: r.path.clone(),
                function: f.binary.clone(),
                timeout: f.timeout,
                authorizer,
            });
        }
    }
    Ok(routes)
}

#[derive(Debug, Clone, Default)]
pub struct ApiGatewayOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// Files served beside the routes, as CloudFront serves them from S3 in AWS.
    pub static_files: Vec<StaticFiles>,
}

/// A folder served under a path: `GET <url_path>/<file>` answers `<dir>/<file>`.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// Starts with `/`, no trailing slash (`/console/assets`).
    pub url_path: String,
    pub dir: std::path::PathBuf,
}

struct ApiState {
    invoker: Invoker,
    meter: ApiMeter,
}

pub struct ApiGateway {
    addr: SocketAddr,
    server: ServerTask,
    state: Arc<ApiState>,
}

/// The API's port, taken before the functions start so their environment can name it.
pub struct BoundApiGateway {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    opts: ApiGatewayOptions,
}

impl BoundApiGateway {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts serving `routes` on `invoker`; requests that arrived meanwhile waited in the
    /// listen queue.
    pub fn serve(self, routes: Vec<ApiRoute>, invoker: Invoker) -> Result<ApiGateway> {
        let state = Arc::new(ApiState {
            invoker,
            meter: ApiMeter::default(),
        });
        let router = build_router(&routes, &state, &self.opts.static_files)?;
        let listener = self.listener;
        let server = ServerTask::spawn("the local API", |stopped| async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopped)
            .await
        });
        Ok(ApiGateway {
            addr: self.addr,
            server,
            state,
        })
    }
}

impl ApiGateway {
    /// Takes the port; [`BoundApiGateway::serve`] starts answering.
    pub async fn bind(opts: ApiGatewayOptions) -> Result<BoundApiGateway> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await.with_context(|| {
            format!("the API cannot listen on 127.0.0.1:{}; is it in use? Choose another port (0 = any free one)", opts.port)
        })?;
        let addr = listener.local_addr()?;
        Ok(BoundApiGateway {
            listener,
            addr,
            opts,
        })
    }

    pub async fn start(
        routes: Vec<ApiRoute>,
        invoker: Invoker,
        opts: ApiGatewayOptions,
    ) -> Result<Self> {
        Self::bind(opts).await?.serve(routes, invoker)
    }

    /// The requests served so far, per route, as AWS bills them.
    pub fn usage(&self) -> ApiUsage {
        self.state.meter.usage()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking connections; requests in flight get a moment to finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn build_router(
    routes: &[ApiRoute],
    state: &Arc<ApiState>,
    static_files: &[StaticFiles],
) -> Result<Router> {
    let mut by_path: BTreeMap<&str, Vec<&ApiRoute>> = BTreeMap::new();
    let mut default_route = None;
    for r in routes {
        match &r.path {
            Some(p) => by_path.entry(p.as_str()).or_default().push(r),
            None => default_route = Some(r),
        }
    }
    let mut router = Router::new();
    for (path, routes) in by_path {
        if !path.starts_with('/') {
            bail!("route path {path:?} must start with /");
        }
        let mut methods: MethodRouter = MethodRouter::new();
        let mut allowed = Vec::new();
        let mut any = false;
        for r in routes {
            let handler = route_handler(r, state);
            if r.method == "ANY" {
                // Specific methods on the same path win over ANY, as in API Gateway.
                methods = methods.fallback(handler);
                any = true;
            } else {
                let method = Method::from_bytes(r.method.as_bytes())
                    .with_context(|| format!("route {}: bad method", r.route_key()))?;
                let filter = MethodFilter::try_from(method)
                    .map_err(|e| anyhow::anyhow!("route {}: {e}", r.route_key()))?;
                methods = methods.on(filter, handler);
                allowed.push(r.method.clone());
            }
        }
        if !any {
            methods = methods
                .fallback(move |req: Request| async move { method_not_allowed(&req, &allowed) });
        }
        let axum_path = axum_path(path);
        // axum panics on conflicting or malformed routes; turn that into an error naming the route.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            router.clone().route(&axum_path, methods)
        }));
        router = attempt.map_err(|_| {
            anyhow::anyhow!("route {path} conflicts with another route of the template")
        })?;
    }
    for files in static_files {
        let dir = Arc::new(files.dir.clone());
        let path = format!("{}/{{file}}", files.url_path);
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            router.clone().route(
                &path,
                axum::routing::get(
                    move |axum::extract::Path(file): axum::extract::Path<String>| {
                        let dir = dir.clone();
                        async move { static_file(&dir, &file).await }
                    },
                ),
            )
        }));
        router = attempt.map_err(|_| {
            anyhow::anyhow!("the static files at {path} conflict with a route of the template")
        })?;
    }
    router = match default_route {
        Some(r) => router.fallback(route_handler(r, state)),
        None => router.fallback(|req: Request| async move { not_found(&req) }),
    };
    Ok(router)
}

/// One file of a static folder, cached for a year: its name changes with its content.
async fn static_file(dir: &std::path::Path, file: &str) -> Response {
    let plain_name = !file.is_empty()
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain_name {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(dir.join(file)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `{proxy+}` (API Gateway's greedy parameter) is `{*proxy}` for axum.
fn axum_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                Some(name) => format!("{{*{name}}}"),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn route_handler(
    route: &ApiRoute,
    state: &Arc<ApiState>,
) -> impl Fn(ConnectInfo<SocketAddr>, Request) -> futures::future::BoxFuture<'static, Response>
       + Clone
       + Send
       + Sync
       + 'static {
    let route = Arc::new(route.clone());
    let state = state.clone();
    move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
        let route = route.clone();
        let state = state.clone();
        Box::pin(async move { handle(&route, &state, peer, req).await })
    }
}

async fn handle(route: &ApiRoute, state: &ApiState, peer: SocketAddr, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut event = http_event(
        route,
        &parts,
        &body,
        peer,
        &request_id,
        time::OffsetDateTime::now_utc(),
    );
    if let Some(authorizer) = &route.authorizer {
        match authorize(state, route, authorizer, &parts, &event).await {
            Ok(context) => event["requestContext"]["authorizer"] = json!({ "lambda": context }),
            Err(mut refused) => {
                state.meter.count(&route.route_key(), body.len(), false);
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    refused.headers_mut().insert("apigw-requestid", v);
                }
                return refused;
            }
        }
    }
    state.meter.count(&route.route_key(), body.len(), true);
    let mut response = match state
        .invoker
        .invoke(&route.function, &event, route.timeout)
        .await
    {
        Ok(output) => http_response(output).unwrap_or_else(|e| {
            tracing::warn!(function = %route.function, "malformed Lambda response: {e:#}");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }),
        Err(InvokeError::Timeout { .. }) => {
            tracing::warn!(function = %route.function, route = %route.route_key(), "function timed out");
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(e) => {
            tracing::warn!(route = %route.route_key(), "{e}");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", v);
    }
    response
}

/// Runs the route's authorizer as API Gateway does: 401 without asking it when an identity
/// header is missing or empty, 401 when it fails with `Unauthorized`, 403 when it answers
/// `isAuthorized: false`, 500 for anything else; otherwise its context for the function.
async fn authorize(
    state: &ApiState,
    route: &ApiRoute,
    authorizer: &RouteAuthorizer,
    parts: &Parts,
    request_event: &Json,
) -> Result<Json, Response> {
    let unauthorized = || message(StatusCode::UNAUTHORIZED, "Unauthorized");
    let mut identity = Vec::new();
    for name in &authorizer.identity_headers {
        let values: Vec<&str> = parts
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() || values.iter().all(|v| v.trim().is_empty()) {
            return Err(unauthorized());
        }
        identity.push(values.join(","));
    }
    let event = authorizer_event(route, request_event, identity);
    match state
        .invoker
        .invoke(&authorizer.function, &event, authorizer.timeout)
        .await
    {
        Ok(output) => match output.get("isAuthorized").and_then(Json::as_bool) {
            Some(true) => Ok(output.get("context").cloned().unwrap_or_else(|| json!({}))),
            Some(false) => Err(message(StatusCode::FORBIDDEN, "Forbidden")),
            None => {
                tracing::warn!(function = %authorizer.function, "the authorizer's answer has no isAuthorized: {output}");
                Err(message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                ))
            }
        },
        Err(InvokeError::Function { message: text, .. }) if text == "Unauthorized" => {
            Err(unauthorized())
        }
        Err(e) => {
            tracing::warn!(route = %route.route_key(), "authorizer failed: {e}");
            Err(message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ))
        }
    }
}

/// The payload format 2.0 authorizer event: the request's event without its body, plus the
/// route's ARN and the identity source values.
pub fn authorizer_event(route: &ApiRoute, request_event: &Json, identity: Vec<String>) -> Json {
    let mut event = request_event.clone();
    if let Some(fields) = event.as_object_mut() {
        fields.remove("body");
        fields.remove("isBase64Encoded");
        let method = route.method.as_str();
        let path = route.path.as_deref().unwrap_or("$default");
        fields.insert("type".into(), json!("REQUEST"));
        fields.insert(
            "routeArn".into(),
            json!(format!(
                "arn:aws:execute-api:{}:{ACCOUNT_ID}:{LOCAL_API_ID}/$default/{method}{path}",
                crate::local_aws::REGION
            )),
        );
        fields.insert("identitySource".into(), json!(identity));
    }
    event
}

/// The payload format 2.0 event API Gateway would send for this request.
pub fn http_event(
    route: &ApiRoute,
    parts: &Parts,
    body: &[u8],
    peer: SocketAddr,
    request_id: &str,
    now: time::OffsetDateTime,
) -> Json {
    let raw_path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == header::COOKIE {
            // Format 2.0 moves cookies out of the headers into their own list.
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| *v = format!("{v},{value}"))
            .or_insert(value);
    }
    let host = headers
        .get("host")
        .cloned()
        .unwrap_or_else(|| "localhost".to_owned());
    let domain_name = host.split(':').next().unwrap_or("localhost").to_owned();
    headers
        .entry("x-forwarded-for".into())
        .or_insert_with(|| peer.ip().to_string());
    headers
        .entry("x-forwarded-proto".into())
        .or_insert_with(|| "http".into());
    if let Some(port) = host.split(':').nth(1) {
        headers
            .entry("x-forwarded-port".into())
            .or_insert_with(|| port.to_owned());
    }

    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k, true), percent_decode(v, true));
        query
            .entry(k)
            .and_modify(|old| *old = format!("{old},{v}"))
            .or_insert(v);
    }

    let path_parameters = route
        .path
        .as_deref()
        .map(|p| path_parameters(p, &raw_path))
        .unwrap_or_default();

    let protocol = match parts.version {
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        axum::http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let time_format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let route_key = route.route_key();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": LOCAL_API_ID,
            "domainName": domain_name,
            "domainPrefix": domain_name.split('.').next().unwrap_or(&domain_name),
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format(time_format).unwrap_or_default(),
            "timeEpoch": now.unix_timestamp_nanos() / 1_000_000,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = json!(path_parameters);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// Values of the template's `{name}` segments in `path` (greedy `{name+}` takes the rest).
fn path_parameters(template: &str, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut actual = path.trim_start_matches('/').split('/');
    for seg in template.trim_start_matches('/').split('/') {
        let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            actual.next();
            continue;
        };
        if let Some(greedy) = name.strip_suffix('+') {
            let rest: Vec<&str> = actual.by_ref().collect();
            out.insert(greedy.to_owned(), percent_decode(&rest.join("/"), false));
            break;
        }
        if let Some(value) = actual.next() {
            out.insert(name.to_owned(), percent_decode(value, false));
        }
    }
    out
}

/// Decodes `%XX` (a `%` without two hex digits stays as it is); `+` is a space in query strings
/// when `plus_is_space`.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            if let Some(v) = hex
                .and_then(|h| std::str::from_utf8(h).ok())
                // `from_str_radix` would take a sign (`%+1`): two hex digits only.
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        // A '%' not followed by two hex digits stays as it is.
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP response API Gateway makes of a function's payload format 2.0 output.
pub fn http_response(output: Json) -> Result<Response> {
    let Some(status) = output.get("statusCode") else {
        // Without statusCode API Gateway assumes 200 and JSON; a bare string is the body itself.
        let body = match output {
            Json::String(s) => s,
            other => other.to_string(),
        };
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    };
    let status = status
        .as_u64()
        .or_else(|| status.as_str().and_then(|s| s.parse().ok()))
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .with_context(|| format!("statusCode {status} is not an HTTP status"))?;
    let mut builder = Response::builder().status(status);
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let multi = output.get("multiValueHeaders").and_then(Json::as_object);
    if let Some(multi) = multi {
        for (name, values) in multi {
            for v in values.as_array().into_iter().flatten() {
                builder = builder.header(name.as_str(), text(v));
            }
        }
    }
    if let Some(headers) = output.get("headers").and_then(Json::as_object) {
        for (name, v) in headers {
            // lambda_http fills both maps; a header given in both is sent once.
            let dup = multi.is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(name)));
            if !dup {
                builder = builder.header(name.as_str(), text(v));
            }
        }
    }
    for cookie in output
        .get("cookies")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        builder = builder.header(header::SET_COOKIE, text(cookie));
    }
    let body = match output.get("body") {
        None | Some(Json::Null) => Vec::new(),
        Some(b) => {
            let b = text(b);
            if output
                .get("isBase64Encoded")
                .and_then(Json::as_bool)
                .unwrap_or(false)
            {
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .context("body is not valid base64")?
            } else {
                b.into_bytes()
            }
        }
    };
    builder
        .body(Body::from(body))
        .context("the function's headers are not valid HTTP")
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, detail: String) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(req: &Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("no route matches {} {}", req.method(), req.uri().path()),
    )
}

fn method_not_allowed(req: &Request, allowed: &[String]) -> Response {
    let mut response = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {}; it takes {}",
            req.uri().path(),
            req.method(),
            allowed.join(", ")
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> ApiRoute {
        ApiRoute {
            method: method.into(),
            path: Some(path.into()),
            function: "f".into(),
            timeout: Duration::from_secs(3),
            authorizer: None,
        }
    }

    #[test]
    fn event_follows_payload_format_2() {
        let req = axum::http::Request::builder()
            .method("GET")
            .uri("/bulk-changes/bc%2F1/devices?limit=10&state=a&state=b&q=x+y")
            .header("Host", "127.0.0.1:3000")
            .header("User-Agent", "test")
            .header("X-Multi", "1")
            .header("X-Multi", "2")
            .header("Cookie", "a=1; b=2")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let now = time::macros::datetime!(2026-03-12 19:03:58 UTC);
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let e = http_event(
            &route("GET", "/bulk-changes/{id}/devices"),
            &parts,
            b"",
            peer,
            "rid",
            now,
        );
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "GET /bulk-changes/{id}/devices");
        assert_eq!(e["rawPath"], "/bulk-changes/bc%2F1/devices");
        assert_eq!(e["rawQueryString"], "limit=10&state=a&state=b&q=x+y");
        assert_eq!(e["pathParameters"], json!({"id": "bc/1"}));
        assert_eq!(
            e["queryStringParameters"],
            json!({"limit": "10", "state": "a,b", "q": "x y"})
        );
        assert_eq!(e["headers"]["x-multi"], "1,2");
        assert_eq!(e["headers"]["user-agent"], "test");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        let ctx = &e["requestContext"];
        assert_eq!(ctx["http"]["method"], "GET");
        assert_eq!(ctx["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(ctx["http"]["userAgent"], "test");
        assert_eq!(ctx["http"]["protocol"], "HTTP/1.1");
        assert_eq!(ctx["stage"], "$default");
        assert_eq!(ctx["apiId"], "local");
        assert_eq!(ctx["domainName"], "127.0.0.1");
        assert_eq!(ctx["time"], "12/Mar/2026:19:03:58 +0000");
        assert_eq!(ctx["timeEpoch"], 1_773_342_238_000_i64);
        assert!(e.get("body").is_none());
        assert_eq!(e["isBase64Encoded"], false);

        // The event is what lambda_http's HTTP API type reads.
        let typed: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
            serde_json::from_value(e).expect("aws_lambda_events accepts the event");
        assert_eq!(
            typed.path_parameters.get("id").map(String::as_str),
            Some("bc/1")
        );
    }

    #[test]
    fn binary_bodies_are_base64() {
        let (parts, ()) = axum::http::Request::builder()
            .method("POST")
            .uri("/x")
            .body(())
            .expect("req")
            .into_parts();
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let now = time::OffsetDateTime::now_utc();
        let e = http_event(&route("POST", "/x"), &parts, &[0xff, 0x00], peer, "r", now);
        assert_eq!(e["body"], "/wA=");
        assert_eq!(e["isBase64Encoded"], true);
        let e = http_event(&route("POST", "/x"), &parts, b"{\"a\":1}", peer, "r", now);
        assert_eq!(e["body"], "{\"a\":1}");
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn greedy_paths_and_decoding() {
        assert_eq!(axum_path("/files/{proxy+}"), "/files/{*proxy}");
        assert_eq!(
            path_parameters("/files/{proxy+}", "/files/a/b%20c"),
            BTreeMap::from([("proxy".into(), "a/b c".into())])
        );
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%41%+1", false), "%zzA%+1");
    }

    async fn parts_of(r: Response) -> (StatusCode, axum::http::HeaderMap, String) {
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn function_output_becomes_the_response() {
        let out = json!({
            "statusCode": 202,
            "headers": {"content-type": "application/json", "location": "/bulk-changes/1"},
            "multiValueHeaders": {"location": ["/bulk-changes/1"], "x-a": ["1", "2"]},
            "cookies": ["s=1; Path=/"],
            "body": "{\"id\":\"1\"}",
            "isBase64Encoded": false
        });
        let (status, headers, body) = parts_of(http_response(out).expect("valid")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(headers.get_all("location").iter().count(), 1);
        assert_eq!(headers.get_all("x-a").iter().count(), 2);
        assert_eq!(headers["set-cookie"], "s=1; Path=/");
        assert_eq!(body, "{\"id\":\"1\"}");

        let (status, headers, body) = parts_of(http_response(json!({"a": 1})).expect("bare")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "{\"a\":1}"));
        assert_eq!(headers["content-type"], "application/json");

        let out = json!({"statusCode": 200, "body": "/wA=", "isBase64Encoded": true});
        let (_, _, body) = parts_of(http_response(out).expect("binary")).await;
        assert_eq!(body.as_bytes(), "\u{fffd}\0".as_bytes());
        assert!(http_response(json!({"statusCode": 1000})).is_err());
    }
}
