//! The carrier port: what the worker asks of a carrier and what it learns back, the call
//! journal every exchange is recorded in, and the account gate that paces calls.

use crate::error::CarrierError;
use async_trait::async_trait;
use cellbridge_bulk_changes::change::{Carrier, ChangeSpec, DeviceRef, DeviceRequest};
use cellbridge_core::store::StoreError;
use time::OffsetDateTime;

/// What a carrier says about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierDevice {
    pub iccid: String,
    /// The carrier's own status name (e.g. Jasper's `ACTIVATED`).
    pub status: String,
    pub rate_plan: Option<String>,
}

/// A SIM as a carrier's inventory listing shows it; `None` where the listing does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarrierSim {
    pub iccid: String,
    /// The carrier's own status name.
    pub status: String,
    pub rate_plan: Option<String>,
    pub communication_plan: Option<String>,
    pub msisdn: Option<String>,
    pub imsi: Option<String>,
    pub imei: Option<String>,
    pub customer: Option<String>,
    pub cost_center: Option<String>,
    pub username: Option<String>,
    /// When the carrier last changed anything about it, when the listing says.
    pub updated_at: Option<OffsetDateTime>,
}

/// One page of a carrier's inventory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPage {
    pub sims: Vec<CarrierSim>,
    /// Whether a next page follows.
    pub more: bool,
}

/// A listed MSISDN in E.164: kept when it has its `+`, a 10-digit North American number gets
/// `+1`, anything else is taken to start with its country code.
pub fn listed_msisdn(raw: &str) -> Option<String> {
    let digits = raw.trim().trim_start_matches('+');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(if digits.len() == 10 {
        format!("+1{digits}")
    } else {
        format!("+{digits}")
    })
}

/// One page of an account's SIMs and where the listing goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSims {
    pub sims: Vec<CarrierSim>,
    /// The position of the next page, `None` after the last. Opaque: only the adapter that
    /// gave it reads it.
    pub next: Option<String>,
}

/// How a carrier took a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierOutcome {
    /// Done when the call returned.
    Completed,
    /// Accepted for later (a future effective date, or an asynchronous carrier); `request_id`
    /// tracks it when the carrier gives one, and [`CarrierPort::check`] follows it up.
    Accepted { request_id: Option<String> },
}

/// Where an accepted request stands for one of its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestProgress {
    Pending,
    Succeeded,
    Failed(CarrierError),
}

/// One HTTP exchange with a carrier, with secrets already removed: it becomes an audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierExchange {
    pub method: String,
    pub url: String,
    pub request_body: Option<String>,
    /// `None` when no answer came (timeout, connection failure).
    pub status: Option<u16>,
    pub response_body: Option<String>,
    pub duration: std::time::Duration,
}

/// Collects the exchanges of one operation, so the caller can audit every carrier call, including
/// the ones an adapter makes on its own (token renewals, retries of a stale session).
#[derive(Debug, Default)]
pub struct CallJournal {
    exchanges: std::sync::Mutex<Vec<CarrierExchange>>,
}

impl CallJournal {
    pub fn record(&self, exchange: CarrierExchange) {
        self.exchanges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(exchange);
    }

    pub fn take(&self) -> Vec<CarrierExchange> {
        std::mem::take(
            &mut *self
                .exchanges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Admission to call one carrier account, shared by every worker instance: Jasper allows one call
/// in flight per account, and Lambda runs at least two instances of a queue's consumer.
#[async_trait]
pub trait AccountGate: Send + Sync {
    /// Waits until no other caller holds `account` and `spacing` has passed since the last call
    /// began, then holds it for at most `hold` (a holder that dies frees it by then).
    async fn enter(
        &self,
        account: &str,
        spacing: std::time::Duration,
        hold: std::time::Duration,
    ) -> Result<GateTicket, StoreError>;

    /// Frees the account after a call that went out at `started` (entering can take a while)
    /// and ended now; the next call may begin as [`crate::pacing::after_gated_call`] says.
    async fn leave(
        &self,
        ticket: &GateTicket,
        started: OffsetDateTime,
        spacing: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// Takes the next `calls` start slots of `account`, `spacing` apart, at or after `now` and
    /// after every slot any caller took before, and returns when the first begins: the pace of
    /// accounts that allow several calls in flight but one rate over all of them (Telegence).
    async fn reserve(
        &self,
        account: &str,
        calls: u32,
        spacing: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, StoreError>;
}

/// Proof of holding an account's gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateTicket {
    pub account: String,
    pub holder: String,
    /// When the calls before this one ended, oldest first (a second's worth of calls at most).
    pub recent_ends: Vec<OffsetDateTime>,
}

/// One carrier account, as a bulk change needs it.
#[async_trait]
pub trait CarrierPort: Send + Sync {
    fn carrier(&self) -> Carrier;

    /// Devices one [`CarrierPort::apply`] call may carry for this change: 1 for per-device APIs,
    /// up to 10,000 for ThingSpace's batch actions.
    fn batch_limit(&self, _change: &ChangeSpec) -> usize {
        1
    }

    /// Carrier calls one [`CarrierPort::apply`] of `requests` makes, a lookup before the change
    /// included: the account's pace reserves that many slots for it.
    fn calls_to_apply(&self, _change: &ChangeSpec, _requests: &[DeviceRequest]) -> u32 {
        1
    }

    /// Carrier calls one [`CarrierPort::check`] of `request` makes.
    fn calls_to_check(&self, _change: &ChangeSpec, _request: &DeviceRequest) -> u32 {
        1
    }

    async fn read_device(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<CarrierDevice, CarrierError>;

    /// Applies `change` to `requests` (at most [`CarrierPort::batch_limit`] of them) in one
    /// carrier request.
    async fn apply(
        &self,
        change: &ChangeSpec,
        requests: &[DeviceRequest],
        journal: &CallJournal,
    ) -> Result<CarrierOutcome, CarrierError>;

    /// Whether `device`, as the carrier reports it, already shows `change` done: lets a worker
    /// that resumes after a crash skip a call that had reached the carrier.
    fn already_applied(&self, change: &ChangeSpec, device: &CarrierDevice) -> bool {
        let _ = (change, device);
        false
    }

    /// Whether [`CarrierPort::list_sims`] can list only the SIMs changed since a time.
    fn lists_changes_since(&self) -> bool {
        false
    }

    /// Whether [`CarrierPort::list_sims`] tells all a SIM's details; if not (Jasper's search
    /// gives no numbers), each SIM it shows new or changed is read with
    /// [`CarrierPort::describe_sim`] afterwards.
    fn listing_is_complete(&self) -> bool {
        true
    }

    /// One SIM with all the details the carrier keeps of it.
    async fn describe_sim(
        &self,
        iccid: &str,
        journal: &CallJournal,
    ) -> Result<CarrierSim, CarrierError> {
        let _ = (iccid, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!("{} SIMs are not read one by one", self.carrier().as_str()),
        })
    }

    /// One page of the account's SIMs from `position` (`None`: the first page); with `since`,
    /// where the carrier allows it, only the SIMs changed since then.
    async fn list_sims(
        &self,
        position: Option<&str>,
        since: Option<OffsetDateTime>,
        journal: &CallJournal,
    ) -> Result<ListedSims, CarrierError> {
        let _ = (position, since, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!("{} SIMs cannot be listed", self.carrier().as_str()),
        })
    }

    /// Whether [`CarrierPort::cycle_usage`] tells a SIM's cycle-to-date usage.
    fn reads_cycle_usage(&self) -> bool {
        false
    }

    /// Carrier calls one [`CarrierPort::cycle_usage`] of `device` makes.
    fn calls_to_read_usage(&self, _device: &DeviceRef) -> u32 {
        1
    }

    /// The SIM's cycle-to-date usage, rated through the end of yesterday (the carrier's day).
    async fn cycle_usage(
        &self,
        device: &DeviceRef,
        journal: &CallJournal,
    ) -> Result<cellbridge_sims::usage::CycleReading, CarrierError> {
        let _ = (device, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!(
                "{} tells no cycle-to-date usage per SIM",
                self.carrier().as_str()
            ),
        })
    }

    /// Whether [`CarrierPort::daily_usage`] tells a SIM's usage day by day.
    fn reads_daily_usage(&self) -> bool {
        false
    }

    /// The SIM's usage on each day from `from` through `through` (UTC) that the carrier has a
    /// record of: (day, bytes, SMS), oldest first.
    async fn daily_usage(
        &self,
        device: &DeviceRef,
        from: time::Date,
        through: time::Date,
        journal: &CallJournal,
    ) -> Result<Vec<(time::Date, u64, u64)>, CarrierError> {
        let _ = (device, from, through, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!("{} tells no daily usage per SIM", self.carrier().as_str()),
        })
    }

    /// Most SIMs one [`CarrierPort::request_usage`] names; 0 when the carrier has no such request.
    fn usage_request_size(&self) -> u32 {
        0
    }

    /// Whether the account has a listener registered for the callbacks that answer
    /// [`CarrierPort::request_usage`]: without one, the answers would go nowhere.
    async fn usage_listener_registered(&self, journal: &CallJournal) -> Result<bool, CarrierError> {
        let _ = journal;
        Ok(false)
    }

    /// Asks the usage of `devices` (at most [`CarrierPort::usage_request_size`]) over `span`,
    /// answered later by one callback per SIM; returns the carrier's request id.
    async fn request_usage(
        &self,
        devices: &[DeviceRef],
        span: cellbridge_sims::usage::UsageSpan,
        journal: &CallJournal,
    ) -> Result<String, CarrierError> {
        let _ = (devices, span, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!("{} has no usage request", self.carrier().as_str()),
        })
    }

    /// Follows up an accepted request for one of its devices (polling, for when a callback never
    /// comes or the carrier has none).
    async fn check(
        &self,
        change: &ChangeSpec,
        request_id: &str,
        request: &DeviceRequest,
        journal: &CallJournal,
    ) -> Result<RequestProgress, CarrierError> {
        let _ = (change, request, journal);
        Err(CarrierError::Permanent {
            code: "unsupported".into(),
            message: format!(
                "{} requests cannot be polled (request {request_id})",
                self.carrier().as_str()
            ),
        })
    }
}
