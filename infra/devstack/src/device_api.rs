//! The device side of the platform as a portal user sees it through the API: which devices are
//! online, what telemetry landed, and commands sent and followed to their final status. Used by
//! `cargo xtask dev` (the demonstration), `cargo xtask bench devices` and the end-to-end test.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An API client signed in as one user.
pub struct DeviceApi {
    client: reqwest::Client,
    api: String,
}

impl DeviceApi {
    pub fn new(api: &str, token: &str) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Ok(Self {
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
            api: api.trim_end_matches('/').to_owned(),
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.api))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET {path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// Every device of the caller's tenant, all pages.
    pub async fn devices(&self) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/devices?limit=1000&cursor={c}"),
                None => "/devices?limit=1000".to_owned(),
            };
            let page = self.get(&path).await?;
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(all),
            }
        }
    }

    /// How many of `things` the API shows online.
    pub async fn online(&self, things: &HashSet<String>) -> Result<usize> {
        Ok(self
            .devices()
            .await?
            .iter()
            .filter(|d| d["status"] == "online")
            .filter(|d| d["id"].as_str().is_some_and(|id| things.contains(id)))
            .count())
    }

    /// Waits until every one of `things` is online; returns how many are, at the end.
    pub async fn wait_online(
        &self,
        things: &HashSet<String>,
        timeout: Duration,
        mut progress: impl FnMut(usize),
    ) -> Result<usize> {
        let started = Instant::now();
        loop {
            let online = self.online(things).await?;
            progress(online);
            if online == things.len() || started.elapsed() > timeout {
                return Ok(online);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Telemetry points of `thing` in the last hour.
    pub async fn telemetry_points(&self, thing: &str) -> Result<usize> {
        let from = (OffsetDateTime::now_utc() - time::Duration::hours(1)).format(&Rfc3339)?;
        let page = self
            .get(&format!(
                "/devices/{thing}/telemetry?limit=1000&from={}",
                from.replace('+', "%2B")
            ))
            .await?;
        Ok(page["items"].as_array().map_or(0, Vec::len))
    }

    /// Sends a command; returns its id.
    pub async fn send_command(&self, thing: &str, name: &str) -> Result<String> {
        let response = self
            .client
            .post(format!("{}/devices/{thing}/commands", self.api))
            .header("content-type", "application/json")
            .body(serde_json::json!({"name": name}).to_string())
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if status.as_u16() != 202 {
            bail!("POST /devices/{thing}/commands answered {status}: {body}");
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no command id in {body}"))
    }

    /// The command's view as it is now.
    pub async fn command(&self, thing: &str, id: &str) -> Result<Value> {
        self.get(&format!("/devices/{thing}/commands/{id}")).await
    }

    /// Polls the command until its status is final; returns its view.
    pub async fn wait_final(&self, thing: &str, id: &str, timeout: Duration) -> Result<Value> {
        let started = Instant::now();
        loop {
            let view = self.get(&format!("/devices/{thing}/commands/{id}")).await?;
            if matches!(
                view["status"].as_str(),
                Some("SUCCESSFUL" | "FAILED" | "TIMEOUT" | "EXPIRED")
            ) {
                return Ok(view);
            }
            if started.elapsed() > timeout {
                bail!("command {id} still {} after {timeout:?}", view["status"]);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// From the API call (the command's creation) to the recorded final acknowledgement, as the
/// command's own history has it, so polling does not add to it.
pub fn round_trip(view: &Value) -> Option<Duration> {
    let at = |v: &Value| OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok();
    let created = at(&view["createdAt"])?;
    let acked = view["history"]
        .as_array()?
        .iter()
        .filter(|h| matches!(h["status"].as_str(), Some("SUCCESSFUL" | "FAILED")))
        .find_map(|h| at(&h["at"]))?;
    (acked - created).try_into().ok()
}

/// The value at `q` (0..=1) of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_trip_runs_from_creation_to_the_final_ack() {
        let view = serde_json::json!({
            "createdAt": "2026-11-22T10:00:00.000Z",
            "history": [
                {"status": "QUEUED", "at": "2026-11-22T10:00:00.000Z"},
                {"status": "SENT", "at": "2026-11-22T10:00:00.010Z"},
                {"status": "DELIVERED", "at": "2026-11-22T10:00:00.030Z"},
                {"status": "SUCCESSFUL", "at": "2026-11-22T10:00:00.045Z"},
            ],
        });
        assert_eq!(round_trip(&view), Some(Duration::from_millis(45)));
        assert_eq!(
            round_trip(&serde_json::json!({"createdAt": "2026-11-22T10:00:00Z", "history": []})),
            None
        );
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
