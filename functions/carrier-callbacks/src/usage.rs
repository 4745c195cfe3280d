//! DeviceUsage callbacks: one SIM's usage over the span an aggregate usage request asked (the
//! usage collection in `carrier-sync` sends the requests and keeps each one for its callbacks).

use crate::{Acknowledgement, CallbackPorts};
use cellbridge_carriers::port::RequestProgress;
use cellbridge_carriers::thingspace::CallbackReport;
use cellbridge_core::memory::locked;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use cellbridge_edge::http::problem::Problem;
use cellbridge_edge::lambda::metrics;
use cellbridge_edge::lambda::metrics::Unit;
use cellbridge_sims::usage::{record_span, UsageRequest};
use lambda_http::http::StatusCode;
use std::collections::VecDeque;
use std::sync::Mutex;
use tracing::Instrument;

/// The usage requests this instance looked up last: a request's callbacks (hundreds, one per
/// SIM) mostly reach the same instance, and a request never changes once kept.
#[derive(Default)]
pub struct UsageRequestMemo {
    recent: Mutex<VecDeque<UsageRequest>>,
}

/// Requests remembered per instance.
const REMEMBERED_REQUESTS: usize = 32;

impl UsageRequestMemo {
    async fn find(
        &self,
        ports: &CallbackPorts,
        request_id: &str,
    ) -> Result<Option<UsageRequest>, StoreError> {
        let remembered = locked(&self.recent)
            .iter()
            .find(|r| r.request_id == request_id)
            .cloned();
        if remembered.is_some() {
            return Ok(remembered);
        }
        let found = ports.usage.get_usage_request(request_id).await?;
        if let Some(request) = &found {
            let mut recent = locked(&self.recent);
            if recent.len() == REMEMBERED_REQUESTS {
                recent.pop_front();
            }
            recent.push_back(request.clone());
        }
        Ok(found)
    }
}

/// Records the SIM's usage the callback reports: its day (or, for a longer span, its cycle
/// total) once; a repeated callback finds the span recorded and changes nothing.
pub(crate) async fn receive(
    ports: &CallbackPorts,
    report: CallbackReport,
) -> Result<Acknowledgement, Problem> {
    let span = tracing::info_span!(
        "usage_callback",
        request_id = %report.request_id,
        iccid = %report.iccid
    );
    async {
        let Some(asked) = ports.usage_requests.find(ports, &report.request_id).await? else {
            tracing::warn!("usage callback for a request this platform did not send");
            return Ok(Acknowledgement { result: "unknown" });
        };
        let usage = match (&report.progress, report.usage) {
            (RequestProgress::Succeeded, Some(usage)) => usage,
            (RequestProgress::Succeeded, None) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-callback",
                    "Not a DeviceUsage callback",
                    "a successful usage callback carries deviceResponse.usage",
                ))
            }
            (RequestProgress::Failed(error), _) => {
                // Asked again with the next collection, for every day since its last one.
                tracing::info!(%error, "the carrier could not tell this SIM's usage");
                return Ok(Acknowledgement { result: "failed" });
            }
            (RequestProgress::Pending, _) => return Ok(Acknowledgement { result: "recorded" }),
        };
        let tenant = TenantId::parse(&asked.tenant_id)
            .ok_or_else(|| Problem::internal("a usage request names an invalid tenant"))?;
        let Some(sim) = ports.sims.get_sim(&tenant, &report.iccid).await? else {
            tracing::warn!("usage callback for a SIM the inventory does not have");
            return Ok(Acknowledgement { result: "unknown" });
        };
        let Some(record) = record_span(
            &sim.iccid,
            &sim.usage,
            asked.span,
            usage.data_bytes,
            usage.sms,
        ) else {
            tracing::info!("usage recorded already; nothing changed");
            return Ok(Acknowledgement {
                result: "duplicate",
            });
        };
        ports
            .usage
            .record_usage(&tenant, &[record], asked.keep_days_until)
            .await?;
        metrics::emit(
            &[("Carrier", "thingSpace")],
            &[("UsageCallbacksRecorded", 1.0, Unit::Count)],
        );
        Ok(Acknowledgement { result: "recorded" })
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use crate::tests::{body_text, credentials, post};
    use crate::CallbackPorts;
    use cellbridge_bulk_changes::change::Carrier;
    use cellbridge_core::tenant::TenantId;
    use cellbridge_sims::memory::MemorySims;
    use cellbridge_sims::ports::{SimStore, UsageStore};
    use cellbridge_sims::sim::{CycleUsage, Sim, SimSource};
    use cellbridge_sims::usage::{UsageRecord, UsageRequest, UsageSpan};
    use lambda_http::http::StatusCode;
    use std::sync::Arc;
    use time::macros::{date, datetime};
    use time::OffsetDateTime;

    const USAGE: &str = include_str!("../../../events/carrier-callbacks/usage.json");
    const REQUEST_ID: &str = "2b7d9c41-6e0f-4a8b-b3d5-7c9e1f2a4b60";
    const ICCID: &str = "8901260000000000014";

    /// The sample's SIM in tenant `demo`, read through 3 December, and the one-day request
    /// for 4 December its callback answers.
    async fn asked() -> (Arc<MemorySims>, CallbackPorts) {
        let sims = Arc::new(MemorySims::default());
        let tenant = TenantId::parse("demo").expect("tenant");
        let sim = Sim::unknown(
            ICCID,
            Carrier::ThingSpace,
            Some("sp-ts".into()),
            SimSource::CarrierSync {
                service_provider_id: "sp-ts".into(),
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        cellbridge_sims::testing::put_imported(sims.as_ref(), "demo", &sim).await;
        let through_third = UsageRecord {
            iccid: ICCID.into(),
            day: None,
            cycle: CycleUsage {
                cycle_start: Some(date!(2026 - 12 - 01)),
                through: Some(date!(2026 - 12 - 03)),
                data_bytes: 1_000,
                sms: 1,
            },
        };
        let keep = datetime!(2027-12-01 00:00 UTC);
        sims.record_usage(&tenant, &[through_third], keep)
            .await
            .expect("recorded");
        let request = UsageRequest {
            request_id: REQUEST_ID.into(),
            tenant_id: "demo".into(),
            service_provider_id: "sp-ts".into(),
            span: UsageSpan {
                from: date!(2026 - 12 - 04),
                through: date!(2026 - 12 - 04),
            },
            requested_at: datetime!(2026-12-05 01:00 UTC),
            keep_days_until: keep,
        };
        sims.put_usage_request(&request, keep).await.expect("kept");
        let ports = CallbackPorts {
            store: cellbridge_bulk_changes::memory::MemoryPorts::default().store,
            sims: sims.clone(),
            usage: sims.clone(),
            usage_requests: Default::default(),
            credentials: Some(credentials()),
        };
        (sims, ports)
    }

    #[tokio::test]
    async fn a_usage_callback_records_the_day_once() {
        let (sims, ports) = asked().await;
        let first = post(&ports, USAGE).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert!(
            body_text(&first).contains("recorded"),
            "{}",
            body_text(&first)
        );
        let again = post(&ports, USAGE).await;
        assert!(
            body_text(&again).contains("duplicate"),
            "{}",
            body_text(&again)
        );

        let tenant = TenantId::parse("demo").expect("tenant");
        let days = sims
            .daily_usage(&tenant, ICCID, date!(2026 - 12 - 01), date!(2026 - 12 - 04))
            .await
            .expect("read");
        assert_eq!(days.len(), 1);
        assert_eq!(
            (days[0].day, days[0].data_bytes, days[0].sms),
            (date!(2026 - 12 - 04), 73_400_320, 12)
        );
        let sim = sims
            .get_sim(&tenant, ICCID)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(sim.usage.through, Some(date!(2026 - 12 - 04)));
        assert_eq!((sim.usage.data_bytes, sim.usage.sms), (73_401_320, 13));
    }

    #[tokio::test]
    async fn unknown_requests_failures_and_wrong_credentials_record_nothing() {
        let (sims, mut ports) = asked().await;
        let unknown = USAGE.replace(REQUEST_ID, "00000000-0000-0000-0000-000000000000");
        assert!(body_text(&post(&ports, &unknown).await).contains("unknown"));
        let failed = USAGE.replace(
            "\\\"status\\\": \\\"Success\\\"",
            "\\\"status\\\": \\\"Failed\\\", \\\"faultResponse\\\": {\\\"faultcode\\\": \\\"REQUEST_FAILED.DeviceNotFound\\\"}",
        );
        assert_ne!(failed, USAGE, "the sample has a success status to replace");
        assert!(body_text(&post(&ports, &failed).await).contains("failed"));
        let no_usage = USAGE.replace("\\\"usage\\\"", "\\\"other\\\"");
        assert_eq!(
            post(&ports, &no_usage).await.status(),
            StatusCode::BAD_REQUEST
        );
        ports.credentials = None;
        assert_eq!(post(&ports, USAGE).await.status(), StatusCode::UNAUTHORIZED);

        let tenant = TenantId::parse("demo").expect("tenant");
        let sim = sims
            .get_sim(&tenant, ICCID)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(
            sim.usage.through,
            Some(date!(2026 - 12 - 03)),
            "nothing recorded"
        );
    }
}
