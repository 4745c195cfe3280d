//! Carrier API simulators for local runs and tests: one HTTP server, a path prefix per carrier.
//!
//! Jasper (Cisco Control Center, developer.cisco.com/docs/control-center) is modelled with what a
//! client must survive: Basic auth, a per-account rate limit with one call in flight, transient faults and slow answers
//! at a configurable rate, unknown ICCIDs, a transition matrix, and a request log for tests.

pub mod jasper;
mod random;
pub mod telegence;
pub mod thingspace;
pub mod usage;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the simulator saw it. Credentials are never recorded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    pub carrier: &'static str,
    pub method: String,
    pub path: String,
    /// The account the credentials named, when they were valid.
    pub account: Option<String>,
    pub status: u16,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
}

pub(crate) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RequestLog {
    pub fn push(&self, entry: LoggedRequest) {
        locked(&self.entries).push(entry);
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        locked(&self.entries).clone()
    }
}

/// How each simulated carrier behaves. As JSON (`carrier-sim --config`), every field may be left
/// out and keeps its default; durations are `{"secs": 1, "nanos": 0}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub jasper: jasper::JasperConfig,
    pub thingspace: thingspace::ThingSpaceConfig,
    pub telegence: telegence::TelegenceConfig,
}

impl From<jasper::JasperConfig> for SimConfig {
    fn from(jasper: jasper::JasperConfig) -> Self {
        Self {
            jasper,
            ..Self::default()
        }
    }
}

pub struct Simulators {
    pub jasper: Arc<jasper::Jasper>,
    pub thingspace: Arc<thingspace::ThingSpace>,
    pub telegence: Arc<telegence::Telegence>,
    pub log: Arc<RequestLog>,
}

impl Simulators {
    pub fn new(config: SimConfig) -> Self {
        let log = Arc::new(RequestLog::default());
        Self {
            jasper: Arc::new(jasper::Jasper::new(config.jasper, log.clone())),
            thingspace: Arc::new(thingspace::ThingSpace::new(config.thingspace, log.clone())),
            telegence: Arc::new(telegence::Telegence::new(config.telegence, log.clone())),
            log,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .nest("/jasper", jasper::router(self.jasper.clone()))
            .nest("/thingspace", thingspace::router(self.thingspace.clone()))
            .nest("/telegence", telegence::router(self.telegence.clone()))
            .route("/_sim/requests", get(requests).with_state(self.log.clone()))
            .route(
                "/_sim/usage-day",
                axum::routing::post(fix_usage_day).with_state(self.usage_days()),
            )
    }

    /// Fixes the day the simulators take as today for usage (`None`: the real date again).
    pub fn fix_usage_day(&self, today: Option<time::Date>) {
        for day in self.usage_days().iter() {
            day.fix(today);
        }
    }

    fn usage_days(&self) -> UsageDays {
        UsageDays(vec![
            self.jasper.clone(),
            self.thingspace.clone(),
            self.telegence.clone(),
        ])
    }
}

/// The simulators that rate usage, for the route that fixes their day.
#[derive(Clone)]
struct UsageDays(Vec<Arc<dyn RatesUsage>>);

impl UsageDays {
    fn iter(&self) -> impl Iterator<Item = &usage::UsageDay> {
        self.0.iter().map(|sim| sim.usage_day())
    }
}

trait RatesUsage: Send + Sync {
    fn usage_day(&self) -> &usage::UsageDay;
}

impl RatesUsage for jasper::Jasper {
    fn usage_day(&self) -> &usage::UsageDay {
        &self.usage_day
    }
}

impl RatesUsage for thingspace::ThingSpace {
    fn usage_day(&self) -> &usage::UsageDay {
        &self.usage_day
    }
}

impl RatesUsage for telegence::Telegence {
    fn usage_day(&self) -> &usage::UsageDay {
        &self.usage_day
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageDayRequest {
    /// `YYYY-MM-DD`, or null for the real date.
    today: Option<String>,
}

/// Test and demo hook: `{"today": "2026-12-05"}` fixes the simulators' usage day.
async fn fix_usage_day(
    State(days): State<UsageDays>,
    Json(request): Json<UsageDayRequest>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let today = match request.today.as_deref() {
        None => None,
        Some(text) => match time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        ) {
            Ok(day) => Some(day),
            Err(_) => {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    "today must be YYYY-MM-DD or null",
                )
                    .into_response()
            }
        },
    };
    for day in days.iter() {
        day.fix(today);
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(log): State<Arc<RequestLog>>) -> Json<Vec<LoggedRequest>> {
    Json(log.entries())
}

/// A running simulator server.
pub struct SimServer {
    pub addr: SocketAddr,
    pub sims: Simulators,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Serves the simulators on `addr` (port 0 picks a free one).
    pub async fn start(addr: SocketAddr, config: impl Into<SimConfig>) -> anyhow::Result<Self> {
        let sims = Simulators::new(config.into());
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = sims.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "carrier simulator stopped");
            }
        });
        Ok(Self { addr, sims, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL of the Jasper REST API, as an adapter is configured with it.
    pub fn jasper_url(&self) -> String {
        format!("{}/jasper/rws/api/v1", self.url())
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
