//! Where each service provider's carrier sync stands: the run in progress (resumed from its last
//! page after a crash or a timeout), the watermark of incremental listings, the last run's
//! summary, who holds the run, and whether the carrier refused the provider's credentials.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a run did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    /// Listing calls made.
    pub calls: u64,
    /// SIMs the carrier listed.
    pub listed: u64,
    pub imported: u64,
    /// SIMs whose carrier view changed outside cellbridge.
    pub changed: u64,
    pub unchanged: u64,
    pub vanished: u64,
    pub reappeared: u64,
    /// SIMs another writer changed while the run compared them, left for the next run.
    pub conflicts: u64,
}

impl SyncCounts {
    pub fn written(&self) -> u64 {
        self.imported + self.changed + self.vanished + self.reappeared
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRun {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// A full listing (the first import, and every run where the carrier lists no changes).
    pub full: bool,
    /// An incremental run lists the changes since this instant.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub since: Option<OffsetDateTime>,
    /// Where the listing goes on (the adapter's position); `None` before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// The newest change the carrier's listing showed so far: the next watermark.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub newest_change: Option<OffsetDateTime>,
    /// Whether the run was taken over from an earlier invocation: it then no longer knows
    /// every SIM it has seen, and does not mark the unseen ones vanished.
    pub resumed: bool,
    pub counts: SyncCounts,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub full: bool,
    pub counts: SyncCounts,
    /// Whether SIMs the listing no longer shows were looked for.
    pub vanish_checked: bool,
    /// Why the run stopped early, for the provider's admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncLease {
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    pub service_provider_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<SyncRun>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub watermark: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<SyncSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<SyncLease>,
    /// The provider version whose credentials the carrier refused: no run logs in with them
    /// again (ThingSpace locks an account after 5 failed logins) until they are changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_provider_version: Option<u64>,
    /// Counts the writes to this record; every write is conditional on it.
    pub version: u64,
}

impl SyncState {
    pub fn new(service_provider_id: &str) -> Self {
        Self {
            service_provider_id: service_provider_id.to_owned(),
            run: None,
            watermark: None,
            last_run: None,
            lease: None,
            refused_provider_version: None,
            version: 0,
        }
    }
}

/// What a usage run did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCounts {
    /// Usage calls made.
    pub calls: u64,
    /// SIMs whose usage the carrier told.
    pub read: u64,
    /// Days of usage recorded.
    pub days: u64,
    /// SIMs whose usage could not be read (the carrier does not know them, a lasting error).
    pub failed: u64,
    /// SIMs whose usage was asked to come by callback.
    #[serde(default)]
    pub requested: u64,
}

/// A usage collection under way: the provider's SIMs read in inventory order, for one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRun {
    pub id: String,
    /// The day whose usage the run records (readings cover through its end).
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub day: time::Date,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The inventory cursor of the next page; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    pub counts: UsageCounts,
    /// The carrier is asked for many SIMs at once and answers by callback (see the carriers'
    /// `request_usage`), rather than SIM by SIM.
    #[serde(default)]
    pub by_callback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSummary {
    pub run_id: String,
    #[serde(with = "cellbridge_core::clock::iso_date")]
    pub day: time::Date,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub counts: UsageCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where each service provider's usage collection stands; held apart from the inventory sync's
/// state, so a collection that takes hours (one call per SIM) never holds the listing up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageState {
    pub service_provider_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<UsageRun>,
    /// The last day whose usage was collected.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "cellbridge_core::clock::iso_date::option"
    )]
    pub collected_through: Option<time::Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<UsageSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<SyncLease>,
    /// Counts the writes to this record; every write is conditional on it.
    pub version: u64,
}

impl UsageState {
    pub fn new(service_provider_id: &str) -> Self {
        Self {
            service_provider_id: service_provider_id.to_owned(),
            run: None,
            collected_through: None,
            last_run: None,
            lease: None,
            version: 0,
        }
    }
}

/// What a reading of SIM details did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsCounts {
    /// Carrier calls made.
    pub calls: u64,
    /// SIMs whose details the carrier told.
    pub read: u64,
    /// SIMs whose record the details changed (the others were only marked read).
    pub changed: u64,
    /// SIMs the carrier could not describe (it no longer knows them, a lasting error).
    pub failed: u64,
    /// SIMs another writer changed meanwhile, left due for the next run.
    pub conflicts: u64,
}

/// A reading of details under way: the SIMs due, in ICCID order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsRun {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The last ICCID done; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Steps paused on the SIM after `position` so far.
    #[serde(default)]
    pub pauses_here: u32,
    pub counts: DetailsCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsSummary {
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub counts: DetailsCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where each service provider's reading of SIM details stands; apart from the inventory sync's
/// state, so a first import's hours of one call per SIM never hold the listing up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsState {
    pub service_provider_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<DetailsRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DetailsSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<SyncLease>,
    /// Counts the writes to this record; every write is conditional on it.
    pub version: u64,
}

impl DetailsState {
    pub fn new(service_provider_id: &str) -> Self {
        Self {
            service_provider_id: service_provider_id.to_owned(),
            run: None,
            last_run: None,
            lease: None,
            version: 0,
        }
    }
}
