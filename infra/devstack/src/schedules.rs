//! Schedule events, locally: a timer per `rate(...)` schedule that invokes its function with the
//! event EventBridge would send. Cron schedules run only in AWS.

use crate::lambda_watch::Invoker;
use crate::local_aws::{ACCOUNT_ID, REGION};
use crate::template::FunctionSpec;
use serde_json::json;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Schedules {
    tasks: Vec<JoinHandle<()>>,
    summary: Vec<String>,
}

/// The event EventBridge's scheduler delivers to a function.
pub fn scheduled_event(rule: &str) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc();
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": cellbridge::common::clock::rfc3339(now.replace_nanosecond(0).unwrap_or(now)),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}")],
        "detail": {}
    })
}

impl Schedules {
    /// Starts a timer per rate schedule; `period_override` shortens every period (a five-minute
    /// schedule is slow to watch on a laptop), to no less than a fifteenth of the template's:
    /// the 15-minute carrier sync runs every minute, since its work (full listings, a day's usage)
    /// takes longer than 15 s on the few invocations the local stack runs at once.
    pub fn start(
        functions: &[FunctionSpec],
        invoker: Invoker,
        period_override: Option<Duration>,
    ) -> Self {
        let mut tasks = Vec::new();
        let mut summary = Vec::new();
        for function in functions {
            for schedule in &function.schedules {
                let local =
                    |short: Duration| schedule.every.map_or(short, |every| short.max(every / 15));
                let Some(period) = period_override.map(local).or(schedule.every) else {
                    summary.push(format!(
                        "{} -> {} (not run locally: only rate expressions are)",
                        schedule.expression, function.binary
                    ));
                    continue;
                };
                summary.push(format!(
                    "{} -> {} (every {period:?} locally)",
                    schedule.expression, function.binary
                ));
                let invoker = invoker.clone();
                let binary = function.binary.clone();
                let rule = format!("{}-{}", function.logical_id, schedule.event_id);
                let timeout = function.timeout;
                tasks.push(tokio::spawn(async move {
                    let mut timer = tokio::time::interval(period);
                    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    // The first tick is immediate: skip it, as EventBridge waits a period too.
                    timer.tick().await;
                    loop {
                        timer.tick().await;
                        if let Err(error) = invoker
                            .invoke(&binary, &scheduled_event(&rule), timeout)
                            .await
                        {
                            tracing::warn!(%binary, %error, "scheduled invocation failed");
                        }
                    }
                }));
            }
        }
        Self { tasks, summary }
    }

    pub fn summary(&self) -> &[String] {
        &self.summary
    }

    pub fn shutdown(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
