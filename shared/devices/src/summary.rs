//! Hourly summaries of each device's numeric telemetry: per metric, the lowest, highest, sum
//! and count of an hour's samples. A chart of 90 days of one-second samples (7.8 million of
//! them) reads 2,160 of these instead.
//!
//! Ingest folds every chunk it writes into the summaries of the hours the chunk touches. Each
//! summary remembers the chunks folded into it (by their first sample time, the chunk's key),
//! so a message delivered twice, which makes the same chunks again, is not counted twice.

use crate::series::{Chunk, Samples};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::Duration;

/// What one summary covers.
pub const SUMMARY_SPAN: Duration = Duration::hours(1);
const SPAN_MS: i64 = 3_600_000;
/// Summaries are kept for a year and a month, so a year can be compared with the one before
/// long after its one-second samples expired.
pub const SUMMARY_RETENTION: Duration = Duration::days(400);

/// The hour a time (unix ms) falls in, by its start.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(SPAN_MS) * SPAN_MS
}

/// One metric's samples in an hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl MetricSummary {
    fn of(value: f64) -> Self {
        Self {
            min: value,
            max: value,
            sum: value,
            count: 1,
        }
    }

    fn merge(&mut self, other: &MetricSummary) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// A device's numeric metrics over one hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HourSummary {
    /// The hour's start, unix ms.
    pub hour_ms: i64,
    pub metrics: BTreeMap<String, MetricSummary>,
    /// The chunks folded in, by their first sample time.
    pub chunks: BTreeSet<i64>,
}

impl HourSummary {
    /// Folds `part` in unless its chunks were folded in before; true when it changed anything.
    pub fn fold(&mut self, part: &HourSummary) -> bool {
        if part.chunks.is_subset(&self.chunks) {
            return false;
        }
        for (name, summary) in &part.metrics {
            self.metrics
                .entry(name.clone())
                .and_modify(|mine| mine.merge(summary))
                .or_insert(*summary);
        }
        self.chunks.extend(&part.chunks);
        true
    }
}

/// One chunk's numeric samples summarised by hour, each part naming the chunk. Text and flags
/// have no lowest or highest: they are left out.
pub fn summarise(chunk_first_ms: i64, samples: &Samples) -> Vec<HourSummary> {
    let mut hours: BTreeMap<i64, HourSummary> = BTreeMap::new();
    for (at, metrics) in samples {
        for (name, value) in metrics {
            let Some(value) = value.as_f64().filter(|v| v.is_finite()) else {
                continue;
            };
            let hour = hours.entry(hour_of(*at)).or_insert_with(|| HourSummary {
                hour_ms: hour_of(*at),
                metrics: BTreeMap::new(),
                chunks: BTreeSet::from([chunk_first_ms]),
            });
            hour.metrics
                .entry(name.clone())
                .and_modify(|summary| summary.merge(&MetricSummary::of(value)))
                .or_insert(MetricSummary::of(value));
        }
    }
    hours.into_values().collect()
}

/// The parts each chunk adds to its hours, by device name and hour. A chunk whose samples cannot
/// be read back adds nothing (its items are written as they are; reading them reports it).
pub fn parts_of<'a, D: Ord + Clone + 'a>(
    chunks: impl IntoIterator<Item = (&'a D, &'a Chunk)>,
) -> BTreeMap<(D, i64), Vec<HourSummary>> {
    let mut parts: BTreeMap<(D, i64), Vec<HourSummary>> = BTreeMap::new();
    for (device, chunk) in chunks {
        let Ok(samples) = crate::series::decode(chunk.first_ms, &chunk.encoded) else {
            continue;
        };
        for part in summarise(chunk.first_ms, &samples) {
            parts
                .entry((device.clone(), part.hour_ms))
                .or_default()
                .push(part);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn sample(at: i64, metrics: Value) -> (i64, Map<String, Value>) {
        (at, metrics.as_object().cloned().unwrap_or_default())
    }

    const HOUR: i64 = 1_796_547_600_000; // 2026-12-06 09:00 UTC

    #[test]
    fn a_chunk_across_an_hour_summarises_each_hour_apart() {
        let samples = vec![
            sample(HOUR - 2_000, json!({"temp": 20.0, "state": "idle"})),
            sample(HOUR - 1_000, json!({"temp": 22.0})),
            sample(HOUR, json!({"temp": 19.5, "moving": true})),
        ];
        let parts = summarise(HOUR - 2_000, &samples);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].hour_ms, HOUR - 3_600_000);
        assert_eq!(
            parts[0].metrics["temp"],
            MetricSummary {
                min: 20.0,
                max: 22.0,
                sum: 42.0,
                count: 2
            }
        );
        assert!(!parts[0].metrics.contains_key("state"), "text has no range");
        assert_eq!(parts[1].metrics.keys().collect::<Vec<_>>(), ["temp"]);
        assert!(parts
            .iter()
            .all(|p| p.chunks == BTreeSet::from([HOUR - 2_000])));
    }

    #[test]
    fn a_chunk_folded_twice_counts_once() {
        let first = summarise(HOUR, &vec![sample(HOUR, json!({"rssi": -70}))]);
        let second = summarise(
            HOUR + 60_000,
            &vec![sample(HOUR + 60_000, json!({"rssi": -90}))],
        );
        let mut hour = HourSummary {
            hour_ms: HOUR,
            ..HourSummary::default()
        };
        assert!(hour.fold(&first[0]));
        assert!(hour.fold(&second[0]));
        assert!(!hour.fold(&first[0]), "the same chunk again");
        let rssi = hour.metrics["rssi"];
        assert_eq!((rssi.min, rssi.max, rssi.count), (-90.0, -70.0, 2));
        assert_eq!(rssi.mean(), -80.0);
    }

    #[test]
    fn hours_start_on_the_hour_before_1970_too() {
        assert_eq!(hour_of(HOUR + 3_599_999), HOUR);
        assert_eq!(hour_of(-1), -3_600_000);
    }
}
