//! What AWS would bill for the traffic the local stand-ins carry, counted as AWS meters it, so
//! the cost benchmark prices what happened rather than what the emulators happen to do: IoT
//! Core's messages in 5 KB units and connected minutes (here), the topic rules' executions and
//! actions ([`crate::iot::RulesStats`]), Lambda invocations and their billed milliseconds
//! ([`crate::lambda_watch::Invoker::usage`]), and DynamoDB units and SQS requests (metered inside
//! each MiniStack, [`crate::ministack`]).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The SDK app name (`app/<name>` in the user agent) of the rules engine's clients: the emulators'
/// meters tell its batched sends from the calls AWS would bill (one per rule execution).
pub const RULES_ENGINE_CALLER: &str = "devstack-iot-rules";
/// The SDK app name of the stack's own calls (provisioning, seeding, probes): billed to no one.
pub const DEVSTACK_CALLER: &str = "devstack";
/// The SDK app name of the SQS event sources' pollers (their requests are billed on AWS too).
pub const EVENT_SOURCE_CALLER: &str = "devstack-event-source";

/// IoT Core meters a message (its payload and topic) in 5 KB units: a 12 KB publish is three
/// messages, an empty one is one.
pub fn iot_message_units(metered_bytes: u64) -> u64 {
    metered_bytes.div_ceil(5 * 1024).max(1)
}

/// SQS bills each started 64 KB chunk of a request's payload as one request.
pub fn sqs_request_units(payload_bytes: u64) -> u64 {
    payload_bytes.div_ceil(64 * 1024).max(1)
}

/// The messages of one topic pattern (device ids replaced by `+`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicUsage {
    pub pattern: String,
    /// Publishes to the broker: by devices, by the cloud (data plane), and lifecycle events.
    pub published: u64,
    /// The billed 5 KB units of those publishes. AWS's own lifecycle events bill none.
    pub published_units: u64,
    /// Copies delivered to subscribers.
    pub delivered: u64,
    pub delivered_units: u64,
}

/// What the broker carried: messages per topic pattern and connected time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BrokerUsage {
    pub topics: Vec<TopicUsage>,
    /// Time connected, summed over every connection, closed or open, in milliseconds.
    pub connected_ms: u64,
}

impl BrokerUsage {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &BrokerUsage) -> BrokerUsage {
        let before: HashMap<&str, &TopicUsage> = earlier
            .topics
            .iter()
            .map(|t| (t.pattern.as_str(), t))
            .collect();
        let topics = self
            .topics
            .iter()
            .map(|t| match before.get(t.pattern.as_str()) {
                Some(b) => TopicUsage {
                    pattern: t.pattern.clone(),
                    published: t.published.saturating_sub(b.published),
                    published_units: t.published_units.saturating_sub(b.published_units),
                    delivered: t.delivered.saturating_sub(b.delivered),
                    delivered_units: t.delivered_units.saturating_sub(b.delivered_units),
                },
                None => t.clone(),
            })
            .filter(|t| t.published + t.delivered > 0)
            .collect();
        BrokerUsage {
            topics,
            connected_ms: self.connected_ms.saturating_sub(earlier.connected_ms),
        }
    }

    pub fn connection_minutes(&self) -> f64 {
        self.connected_ms as f64 / 60_000.0
    }
}

/// Who published a message, which decides whether AWS bills its publish.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Publisher<'a> {
    Device(&'a str),
    /// The data plane (an HTTP publish, billed as a message).
    Cloud,
    /// AWS's own lifecycle event about this client (not billed).
    Lifecycle(&'a str),
}

/// The broker's meter: cheap enough to count every message of a fleet.
#[derive(Default)]
pub(crate) struct BrokerMeter {
    topics: Mutex<HashMap<String, TopicUsage>>,
    closed_connections_ms: AtomicU64,
}

impl BrokerMeter {
    /// Counts one accepted message and its `deliveries` copies. `is_client` says whether a topic
    /// level names a connected client, so that one device's topic is counted with every other's.
    pub(crate) fn count(
        &self,
        topic: &str,
        payload_bytes: usize,
        publisher: Publisher<'_>,
        deliveries: u64,
        is_client: impl Fn(&str) -> bool,
    ) {
        let subject = match publisher {
            Publisher::Device(id) | Publisher::Lifecycle(id) => Some(id),
            Publisher::Cloud => None,
        };
        let pattern = topic
            .split('/')
            .map(|level| {
                if Some(level) == subject || is_client(level) {
                    "+"
                } else {
                    level
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let units = iot_message_units((topic.len() + payload_bytes) as u64);
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let usage = topics
            .entry(pattern)
            .or_insert_with_key(|pattern| TopicUsage {
                pattern: pattern.clone(),
                ..TopicUsage::default()
            });
        usage.published += 1;
        if !matches!(publisher, Publisher::Lifecycle(_)) {
            usage.published_units += units;
        }
        usage.delivered += deliveries;
        usage.delivered_units += deliveries * units;
    }

    pub(crate) fn connection_closed(&self, connected_ms: u64) {
        self.closed_connections_ms
            .fetch_add(connected_ms, Ordering::Relaxed);
    }

    /// The counts so far; `open_connections_ms` is the time of the connections still open.
    pub(crate) fn usage(&self, open_connections_ms: u64) -> BrokerUsage {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let sorted: BTreeMap<&String, &TopicUsage> = topics.iter().collect();
        BrokerUsage {
            topics: sorted.into_values().cloned().collect(),
            connected_ms: self.closed_connections_ms.load(Ordering::Relaxed) + open_connections_ms,
        }
    }
}

/// The invocations of one function and the milliseconds AWS would bill for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FunctionUsage {
    pub function: String,
    pub invocations: u64,
    /// Each invocation's round trip through `cargo lambda watch`, rounded up to the millisecond
    /// as Lambda rounds its billed duration: an upper bound of what the function ran (it
    /// includes the local runtime's routing and, when the function was busy, its wait).
    pub billed_ms: u64,
    /// The median invocation, in milliseconds: what one invocation costs when none waits.
    pub median_ms: u64,
    /// Invocations that ended in an error (still billed).
    pub errors: u64,
}

/// Milliseconds kept one by one for the median; longer invocations share the last bucket.
const DURATION_BUCKETS: usize = 2_000;

#[derive(Clone)]
struct FunctionMeter {
    invocations: u64,
    billed_ms: u64,
    errors: u64,
    histogram: Vec<u64>,
}

impl Default for FunctionMeter {
    fn default() -> Self {
        Self {
            invocations: 0,
            billed_ms: 0,
            errors: 0,
            histogram: vec![0; DURATION_BUCKETS],
        }
    }
}

/// The invoker's meter, bounded in memory however long the stack runs.
#[derive(Default)]
pub(crate) struct LambdaMeter {
    functions: Mutex<BTreeMap<String, FunctionMeter>>,
}

impl LambdaMeter {
    pub(crate) fn count(&self, function: &str, elapsed: std::time::Duration, failed: bool) {
        let ms = u64::try_from(elapsed.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let meter = functions.entry(function.to_owned()).or_default();
        meter.invocations += 1;
        meter.billed_ms += ms;
        meter.errors += u64::from(failed);
        let bucket = usize::try_from(ms).unwrap_or(usize::MAX);
        meter.histogram[bucket.min(DURATION_BUCKETS - 1)] += 1;
    }

    /// The counts so far, to subtract an earlier snapshot from.
    pub(crate) fn snapshot(&self) -> LambdaSnapshot {
        LambdaSnapshot(
            self.functions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The invoker's counts at one moment, to subtract an earlier one from.
#[derive(Clone, Default)]
pub struct LambdaSnapshot(BTreeMap<String, FunctionMeter>);

impl LambdaSnapshot {
    /// Per function, what happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &LambdaSnapshot) -> Vec<FunctionUsage> {
        self.0
            .iter()
            .filter_map(|(function, now)| {
                let before = earlier.0.get(function).cloned().unwrap_or_default();
                let invocations = now.invocations - before.invocations.min(now.invocations);
                if invocations == 0 {
                    return None;
                }
                let histogram: Vec<u64> = now
                    .histogram
                    .iter()
                    .zip(&before.histogram)
                    .map(|(n, b)| n.saturating_sub(*b))
                    .collect();
                let half = invocations.div_ceil(2);
                let mut seen = 0;
                let median_ms = histogram
                    .iter()
                    .position(|count| {
                        seen += count;
                        seen >= half
                    })
                    .unwrap_or(0) as u64;
                Some(FunctionUsage {
                    function: function.clone(),
                    invocations,
                    billed_ms: now.billed_ms.saturating_sub(before.billed_ms),
                    median_ms,
                    errors: now.errors.saturating_sub(before.errors),
                })
            })
            .collect()
    }

    /// Everything since the stack started.
    pub fn totals(&self) -> Vec<FunctionUsage> {
        self.since(&LambdaSnapshot::default())
    }
}

/// An HTTP API meters each request in 512 KB units of its payload.
pub fn api_request_units(payload_bytes: u64) -> u64 {
    payload_bytes.div_ceil(512 * 1024).max(1)
}

/// The requests of one route (`GET /devices/{id}`) of the HTTP API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteUsage {
    pub route: String,
    /// Requests that reached the route's function: what AWS bills.
    pub requests: u64,
    /// Those requests in billed 512 KB units.
    pub billed_units: u64,
    /// Requests the route's authorizer refused (401 or 403): not billed by AWS.
    pub refused: u64,
}

/// What the HTTP API served, per route, sorted by route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiUsage {
    pub routes: Vec<RouteUsage>,
}

impl ApiUsage {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &ApiUsage) -> ApiUsage {
        let before: HashMap<&str, &RouteUsage> = earlier
            .routes
            .iter()
            .map(|r| (r.route.as_str(), r))
            .collect();
        let routes = self
            .routes
            .iter()
            .map(|r| match before.get(r.route.as_str()) {
                Some(b) => RouteUsage {
                    route: r.route.clone(),
                    requests: r.requests.saturating_sub(b.requests),
                    billed_units: r.billed_units.saturating_sub(b.billed_units),
                    refused: r.refused.saturating_sub(b.refused),
                },
                None => r.clone(),
            })
            .filter(|r| r.requests + r.refused > 0)
            .collect();
        ApiUsage { routes }
    }
}

/// The HTTP API's meter.
#[derive(Default)]
pub(crate) struct ApiMeter {
    routes: Mutex<HashMap<String, RouteUsage>>,
}

impl ApiMeter {
    /// Counts one request to `route`: billed when it reached the function, else refused.
    pub(crate) fn count(&self, route: &str, payload_bytes: usize, authorized: bool) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let usage = routes
            .entry(route.to_owned())
            .or_insert_with_key(|route| RouteUsage {
                route: route.clone(),
                ..RouteUsage::default()
            });
        if authorized {
            usage.requests += 1;
            usage.billed_units += api_request_units(payload_bytes as u64);
        } else {
            usage.refused += 1;
        }
    }

    pub(crate) fn usage(&self) -> ApiUsage {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let sorted: BTreeMap<&String, &RouteUsage> = routes.iter().collect();
        ApiUsage {
            routes: sorted.into_values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn messages_are_metered_in_5_kb_units_of_topic_and_payload() {
        assert_eq!(iot_message_units(0), 1);
        assert_eq!(iot_message_units(5 * 1024), 1);
        assert_eq!(iot_message_units(5 * 1024 + 1), 2);
        assert_eq!(iot_message_units(12 * 1024), 3);
    }

    #[test]
    fn sqs_requests_are_billed_per_64_kb_chunk() {
        assert_eq!(sqs_request_units(0), 1);
        assert_eq!(sqs_request_units(64 * 1024), 1);
        assert_eq!(sqs_request_units(100 * 1024), 2);
    }

    #[test]
    fn api_requests_are_billed_per_512_kb_and_refused_ones_not_at_all() {
        assert_eq!(api_request_units(0), 1);
        assert_eq!(api_request_units(512 * 1024), 1);
        assert_eq!(api_request_units(512 * 1024 + 1), 2);
        let meter = ApiMeter::default();
        meter.count("GET /devices", 0, true);
        let before = meter.usage();
        meter.count("GET /devices", 0, true);
        meter.count("POST /bulk-changes", 600 * 1024, true);
        meter.count("POST /bulk-changes", 10, false);
        let since = meter.usage().since(&before);
        assert_eq!(
            since.routes,
            vec![
                RouteUsage {
                    route: "GET /devices".to_owned(),
                    requests: 1,
                    billed_units: 1,
                    refused: 0,
                },
                RouteUsage {
                    route: "POST /bulk-changes".to_owned(),
                    requests: 1,
                    billed_units: 2,
                    refused: 1,
                },
            ]
        );
    }

    #[test]
    fn topics_are_counted_by_pattern_and_lifecycle_publishes_bill_nothing() {
        let meter = BrokerMeter::default();
        let connected = |level: &str| level == "d2";
        meter.count(
            "devices/d1/telemetry",
            100,
            Publisher::Device("d1"),
            0,
            connected,
        );
        meter.count(
            "devices/d2/telemetry",
            6_000,
            Publisher::Device("d2"),
            0,
            connected,
        );
        meter.count("devices/d2/commands", 50, Publisher::Cloud, 1, connected);
        meter.count(
            "$aws/events/presence/connected/d3",
            300,
            Publisher::Lifecycle("d3"),
            1,
            connected,
        );
        let usage = meter.usage(0);
        let find = |p: &str| usage.topics.iter().find(|t| t.pattern == p).cloned();
        let telemetry = find("devices/+/telemetry").expect("one pattern for both devices");
        assert_eq!((telemetry.published, telemetry.published_units), (2, 3));
        let commands = find("devices/+/commands").expect("commands");
        assert_eq!((commands.published_units, commands.delivered_units), (1, 1));
        let lifecycle = find("$aws/events/presence/connected/+").expect("lifecycle");
        assert_eq!(
            (
                lifecycle.published,
                lifecycle.published_units,
                lifecycle.delivered_units
            ),
            (1, 0, 1)
        );
    }

    #[test]
    fn usage_since_a_snapshot_subtracts_it() {
        let meter = BrokerMeter::default();
        meter.count(
            "devices/d1/telemetry",
            10,
            Publisher::Device("d1"),
            0,
            |_| false,
        );
        let before = meter.usage(1_000);
        meter.count(
            "devices/d1/telemetry",
            10,
            Publisher::Device("d1"),
            0,
            |_| false,
        );
        meter.connection_closed(5_000);
        let after = meter.usage(60_000);
        let window = after.since(&before);
        assert_eq!(window.topics.len(), 1);
        assert_eq!(window.topics[0].published, 1);
        assert_eq!(window.connected_ms, 64_000);
    }

    #[test]
    fn lambda_usage_rounds_each_invocation_up_to_the_millisecond_and_finds_the_median() {
        let meter = LambdaMeter::default();
        meter.count("f", Duration::from_micros(1_200), false);
        let before = meter.snapshot();
        for ms in [3, 4, 4, 50] {
            meter.count("f", Duration::from_millis(ms), ms == 50);
        }
        meter.count("f", Duration::from_micros(3_001), false);
        let usage = meter.snapshot().since(&before);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].invocations, 5);
        assert_eq!(usage[0].billed_ms, 3 + 4 + 4 + 50 + 4);
        assert_eq!(usage[0].median_ms, 4);
        assert_eq!(usage[0].errors, 1);
        assert_eq!(meter.snapshot().totals()[0].billed_ms, 2 + 65);
    }
}
