//! ThingSpace's per-device callbacks: `POST /carriers/thingspace/callbacks` takes the
//! CarrierService ones (a device change's result), `POST /carriers/thingspace/usage-callbacks`
//! the DeviceUsage ones (a SIM's usage over the span an aggregate usage request asked).
//!
//! Authenticated by the username and password registered with the listener (ThingSpace echoes
//! them in the body), idempotent (a repeated callback finds its device change finished, or its
//! usage recorded, and changes nothing), and always answered 2xx once understood, so ThingSpace
//! stops resending.

use cellbridge_bulk_changes::bulk_change::AuditEntry;
use cellbridge_bulk_changes::completion;
use cellbridge_bulk_changes::completion::Finished;
use cellbridge_bulk_changes::ports::{BulkChangeStore, DeviceOutcome};
use cellbridge_carriers::config::CallbackCredentials;
use cellbridge_carriers::port::RequestProgress;
use cellbridge_carriers::thingspace::{parse_callback, CallbackReport};
use cellbridge_core::redact::redact;
use cellbridge_edge::http::json_response;
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use cellbridge_sims::ports::{SimStore, UsageStore};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use tracing::Instrument;

pub mod usage;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start: the bulk-change tables, and the
    /// callback credentials from the carrier accounts.
    pub struct Config {
        pub tables: cellbridge_bulk_changes::dynamodb::TableNames,
        pub carriers: cellbridge_carriers::config::CarrierAccountsConfig,
    }
}

/// A CarrierService callback is a few hundred bytes; anything near this is not one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const PROCESSED_BY: &str = "carrier-callbacks";

pub struct CallbackPorts {
    pub store: Arc<dyn BulkChangeStore>,
    pub sims: Arc<dyn SimStore>,
    pub usage: Arc<dyn UsageStore>,
    pub usage_requests: usage::UsageRequestMemo,
    /// `None`: no callback credentials configured, so every callback is refused.
    pub credentials: Option<CallbackCredentials>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    /// `recorded`, `duplicate`, `failed` (the carrier reports it could not tell a SIM's usage)
    /// or `unknown` (a request this platform does not track).
    pub result: &'static str,
}

/// The path of the DeviceUsage listener.
pub const USAGE_CALLBACK_PATH: &str = "/carriers/thingspace/usage-callbacks";

pub async fn handle(
    ports: &CallbackPorts,
    request: Request,
    now: OffsetDateTime,
) -> Response<Body> {
    let answer = match authenticated(ports, &request) {
        Ok(report) if request.uri().path().ends_with(USAGE_CALLBACK_PATH) => {
            usage::receive(ports, report).await
        }
        Ok(report) => receive(ports, request.body().as_ref(), report, now).await,
        Err(problem) => Err(problem),
    };
    match answer {
        Ok(ack) => json_response(StatusCode::OK, &ack),
        Err(problem) => problem.into_response(),
    }
}

/// The callback in `request`, once its listener credentials are checked.
fn authenticated(ports: &CallbackPorts, request: &Request) -> Result<CallbackReport, Problem> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::payload_too_large(
            MAX_BODY_BYTES,
            "a callback reports one device",
        ));
    }
    let report = parse_callback(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-callback",
            "Not a ThingSpace callback",
            e.to_string(),
        )
    })?;
    authenticate(ports.credentials.as_ref(), &report)?;
    Ok(report)
}

async fn receive(
    ports: &CallbackPorts,
    body: &[u8],
    report: CallbackReport,
    now: OffsetDateTime,
) -> Result<Acknowledgement, Problem> {
    let span = tracing::info_span!("callback", request_id = %report.request_id);
    async {
        let Some(found) = ports
            .store
            .find_submitted(&report.request_id, &report.iccid)
            .await?
        else {
            tracing::warn!("callback for a request or device this platform did not submit");
            return Ok(Acknowledgement { result: "unknown" });
        };
        let (succeeded, reason) = match &report.progress {
            RequestProgress::Succeeded => (true, None),
            RequestProgress::Failed(error) => (false, Some(error.to_string())),
            // A callback reports an end state; a pending one carries nothing to record.
            RequestProgress::Pending => return Ok(Acknowledgement { result: "recorded" }),
        };
        let sim = if succeeded {
            completion::sim_change_of(
                ports.store.as_ref(),
                &found.tenant,
                &found.bulk_change_id,
                found.seq,
            )
            .await?
        } else {
            None
        };
        let outcome = DeviceOutcome {
            succeeded,
            reason: reason.clone(),
            attempts: 1,
            sim,
        };
        let finished = completion::finish_device_change(
            ports.store.as_ref(),
            &found.tenant,
            &found.bulk_change_id,
            found.seq,
            &outcome,
            PROCESSED_BY,
            now,
        )
        .await?;
        if finished == Finished::AlreadyFinished {
            tracing::info!(seq = found.seq, "repeated callback; nothing changed");
            return Ok(Acknowledgement {
                result: "duplicate",
            });
        }
        let secrets: Vec<&str> = ports
            .credentials
            .iter()
            .map(|c| c.password.expose_secret())
            .collect();
        let entry = AuditEntry {
            bulk_change_id: found.bulk_change_id.clone(),
            device_seq: Some(found.seq),
            description: format!(
                "thingSpace callback for request {}: {}",
                report.request_id,
                if succeeded { "succeeded" } else { "failed" }
            ),
            processed_by: PROCESSED_BY.to_owned(),
            request_text: Some(redact(&String::from_utf8_lossy(body), &secrets)),
            response_text: reason,
            has_errors: !succeeded,
            http_status: None,
            duration_ms: None,
            created_at: now,
        };
        ports.store.append_audit(&found.tenant, &entry).await?;
        metrics::emit(
            &[("Carrier", "thingSpace")],
            &[("CallbacksRecorded", 1.0, Unit::Count)],
        );
        Ok(Acknowledgement { result: "recorded" })
    }
    .instrument(span)
    .await
}

fn authenticate(
    expected: Option<&CallbackCredentials>,
    report: &CallbackReport,
) -> Result<(), Problem> {
    let matches = expected.is_some_and(|expected| {
        // Both compared in full whatever the first says, so timing tells nothing.
        let user = same(
            report.username.as_deref().unwrap_or_default(),
            &expected.username,
        );
        let password = same(
            report
                .password
                .as_ref()
                .map(|p| p.expose_secret())
                .unwrap_or_default(),
            expected.password.expose_secret(),
        );
        user & password
    });
    if matches {
        Ok(())
    } else {
        tracing::warn!("callback with wrong or missing credentials refused");
        Err(Problem::unauthorized())
    }
}

/// Compares in time that depends only on the lengths.
fn same(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut difference = u8::from(given.len() != expected.len());
    for (i, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(i).copied().unwrap_or(!byte);
    }
    difference == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cellbridge_bulk_changes::bulk_change::{
        BulkChangeStatus, DeviceChange, DeviceChangeStatus,
    };
    use cellbridge_bulk_changes::memory::MemoryPorts;
    use cellbridge_bulk_changes::ports::CreateOutcome;
    use cellbridge_bulk_changes::testing::sample_bulk_change;
    use cellbridge_core::tenant::TenantId;

    const SUCCESS: &str = include_str!("../../../events/carrier-callbacks/success.json");
    const FAILURE: &str = include_str!("../../../events/carrier-callbacks/failure.json");
    const REQUEST_ID: &str = "5f0c7a3e-8d2b-4c1a-9e6f-0a1b2c3d4e5f";
    const SAMPLE_ID: &str = "019aa8e4-6f2a-7c3d-9b1e-2f4a5c6d7e80";

    pub(crate) fn credentials() -> CallbackCredentials {
        CallbackCredentials {
            username: "cellbridge-callbacks".into(),
            password: "local-callback-password".into(),
        }
    }

    /// Two device changes of a processing bulk change, both submitted as `REQUEST_ID`.
    async fn submitted() -> (MemoryPorts, CallbackPorts) {
        let memory = MemoryPorts::default();
        let tenant = TenantId::parse("demo").unwrap();
        let (mut bulk, requests) = sample_bulk_change("demo", SAMPLE_ID, 2, true);
        bulk.status = BulkChangeStatus::Processing;
        assert_eq!(
            memory.store.create_bulk_change(&bulk, None).await.unwrap(),
            CreateOutcome::Created
        );
        let now = OffsetDateTime::now_utc();
        let changes: Vec<DeviceChange> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| DeviceChange::pending(SAMPLE_ID, i as u32, r, now))
            .collect();
        memory
            .store
            .insert_device_changes(&tenant, &changes)
            .await
            .unwrap();
        for change in &changes {
            memory
                .store
                .record_submitted(
                    &tenant,
                    SAMPLE_ID,
                    change.seq,
                    change.request.device.iccid.as_str(),
                    REQUEST_ID,
                )
                .await
                .unwrap();
        }
        let ports = CallbackPorts {
            store: memory.store.clone(),
            sims: memory.store.sims.clone(),
            usage: memory.store.sims.clone(),
            usage_requests: Default::default(),
            credentials: Some(credentials()),
        };
        (memory, ports)
    }

    pub(crate) async fn post(ports: &CallbackPorts, event: &str) -> Response<Body> {
        let request = lambda_http::request::from_str(event).expect("sample event parses");
        handle(ports, request, OffsetDateTime::now_utc()).await
    }

    pub(crate) fn body_text(response: &Response<Body>) -> String {
        String::from_utf8_lossy(response.body().as_ref()).into_owned()
    }

    #[tokio::test]
    async fn callbacks_complete_device_changes_once() {
        let (memory, ports) = submitted().await;
        let first = post(&ports, SUCCESS).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert!(body_text(&first).contains("recorded"));
        let again = post(&ports, SUCCESS).await;
        assert!(body_text(&again).contains("duplicate"));
        assert_eq!(post(&ports, FAILURE).await.status(), StatusCode::OK);

        let tenant = TenantId::parse("demo").unwrap();
        let bulk = memory
            .store
            .get_bulk_change(&tenant, SAMPLE_ID)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((bulk.counts.succeeded, bulk.counts.failed), (1, 1));
        assert_eq!(bulk.status, BulkChangeStatus::CompletedWithErrors);
        let devices = memory
            .store
            .get_device_changes(&tenant, SAMPLE_ID, 0..2)
            .await
            .unwrap();
        assert_eq!(devices[1].status, DeviceChangeStatus::Failed);
        // Only the success reached the inventory, once despite the repeated callback.
        let sims = memory.store.sims.all(&tenant);
        assert_eq!(sims.len(), 1, "{sims:?}");
        assert_eq!(sims[0].iccid, devices[0].request.device.iccid.as_str());
        assert_eq!(sims[0].version, 1);
        assert!(devices[1]
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("DeviceState.Invalid") || r.contains("cannot go")));
        let audit = memory.store.list_audit(&tenant, SAMPLE_ID).await.unwrap();
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("local-callback-password"), "{text}");
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.description.contains("callback"))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn wrong_credentials_and_garbage_are_refused_without_changes() {
        let (memory, mut ports) = submitted().await;
        ports.credentials = Some(CallbackCredentials {
            password: "something-else".into(),
            ..credentials()
        });
        let refused = post(&ports, SUCCESS).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        ports.credentials = None;
        assert_eq!(
            post(&ports, SUCCESS).await.status(),
            StatusCode::UNAUTHORIZED
        );

        let garbage = SUCCESS.replace("\\\"requestId\\\"", "\\\"nothing\\\"");
        ports.credentials = Some(credentials());
        assert_eq!(
            post(&ports, &garbage).await.status(),
            StatusCode::BAD_REQUEST
        );
        let tenant = TenantId::parse("demo").unwrap();
        let bulk = memory
            .store
            .get_bulk_change(&tenant, SAMPLE_ID)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bulk.counts.pending(), 2);
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
        assert!(!same("abcd", "abc"));
        assert!(!same("", "abc"));
    }
}
