//! How telemetry is stored: a device's samples in chunks, one stored item per chunk, keyed by
//! the device and the chunk's first sample time. A message's samples make its own chunks (split
//! only where they would grow past [`CHUNK_TARGET_BYTES`] or span more than [`MAX_CHUNK_SPAN`]),
//! so a message delivered twice makes the same items again: nothing is stored or counted twice.
//! A minute of one-second samples is one item of a few KB instead of sixty.
//!
//! The samples of a chunk are encoded by column, offsets from the first sample's time and each
//! metric's values in order (`null` where a sample lacks it), so a metric's name is stored once
//! per chunk rather than once per sample: `{"t":[0,1000,...],"m":{"temp":[21.5,21.6,...]}}`.
//!
//! Reading a time range reads the chunks that may hold samples in it (those starting up to
//! [`MAX_CHUNK_SPAN`] before it), keeps the samples in range, one per time, oldest first: the
//! [`RangeCollector`] does that for both stores.

use crate::ports::StoredPoint;
use crate::telemetry::{Sample, TelemetryBatch};
use cellbridge_core::clock::{epoch_ms, from_epoch_ms as from_ms};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// The longest time one chunk covers; reads look back this far before a range.
pub const MAX_CHUNK_SPAN: Duration = Duration::minutes(15);
/// A chunk grows to about this many encoded bytes: with the item's other attributes, under the
/// 4 KB that one read unit covers.
pub const CHUNK_TARGET_BYTES: usize = 3_500;

/// A chunk's samples as read back: each one's time in ms and its metrics, in stored order.
pub type Samples = Vec<(i64, Map<String, Value>)>;

/// One stored item's worth of a device's samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The first sample's time: the item's sort key.
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: usize,
    pub received_at: OffsetDateTime,
    /// The columns, as JSON text.
    pub encoded: String,
}

/// A message's samples as chunks, oldest first.
pub fn chunks(batch: &TelemetryBatch) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    let mut names: Vec<&str> = Vec::new();
    for (index, sample) in batch.samples.iter().enumerate() {
        // An estimate: the offset and each value, plus each name the chunk has not seen yet.
        let mut sample_bytes = 8;
        for (name, metric) in &sample.metrics {
            sample_bytes += metric.to_json().to_string().len() + 1;
            if !names.contains(&name.as_str()) {
                sample_bytes += name.len() + 8;
            }
        }
        let too_long = sample.at - batch.samples[start].at > MAX_CHUNK_SPAN;
        if index > start && (too_long || bytes + sample_bytes > CHUNK_TARGET_BYTES) {
            out.push(chunk_of(&batch.samples[start..index], batch.received_at));
            start = index;
            bytes = 0;
            names.clear();
        }
        bytes += sample_bytes;
        names.extend(sample.metrics.keys().map(String::as_str));
    }
    if start < batch.samples.len() {
        out.push(chunk_of(&batch.samples[start..], batch.received_at));
    }
    out
}

fn chunk_of(samples: &[Sample], received_at: OffsetDateTime) -> Chunk {
    let first_ms = samples.first().map_or(0, |s| epoch_ms(s.at));
    let last_ms = samples.last().map_or(first_ms, |s| epoch_ms(s.at));
    Chunk {
        first_ms,
        last_ms,
        count: samples.len(),
        received_at,
        encoded: encode(first_ms, samples),
    }
}

fn encode(first_ms: i64, samples: &[Sample]) -> String {
    let offsets: Vec<Value> = samples
        .iter()
        .map(|s| Value::from(epoch_ms(s.at) - first_ms))
        .collect();
    let mut columns: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (row, sample) in samples.iter().enumerate() {
        for (name, metric) in &sample.metrics {
            let column = columns
                .entry(name)
                .or_insert_with(|| vec![Value::Null; samples.len()]);
            column[row] = metric.to_json();
        }
    }
    let metrics: Map<String, Value> = columns
        .into_iter()
        .map(|(name, values)| (name.to_owned(), Value::Array(values)))
        .collect();
    serde_json::json!({"t": offsets, "m": metrics}).to_string()
}

/// A stored chunk's samples: `(time in ms, metrics)`, in stored order.
pub fn decode(first_ms: i64, encoded: &str) -> Result<Samples, String> {
    let value: Value =
        serde_json::from_str(encoded).map_err(|e| format!("samples are not JSON: {e}"))?;
    let offsets = value["t"]
        .as_array()
        .ok_or("samples have no offsets (`t`)")?;
    let mut rows: Vec<(i64, Map<String, Value>)> = offsets
        .iter()
        .map(|offset| {
            offset
                .as_i64()
                .map(|o| (first_ms + o, Map::new()))
                .ok_or_else(|| format!("offset {offset} is not a whole number"))
        })
        .collect::<Result<_, _>>()?;
    if let Some(metrics) = value["m"].as_object() {
        for (name, column) in metrics {
            let column = column
                .as_array()
                .filter(|c| c.len() == rows.len())
                .ok_or_else(|| format!("metric {name} does not have one value per sample"))?;
            for ((_, row), value) in rows.iter_mut().zip(column) {
                if !value.is_null() {
                    row.insert(name.clone(), value.clone());
                }
            }
        }
    }
    Ok(rows)
}

/// Builds one page of a range read from the chunks that may hold it, read in key order:
/// samples in `[from, to]` after the cursor's time, one per time, oldest first.
#[derive(Debug)]
pub struct RangeCollector {
    from_ms: i64,
    to_ms: i64,
    limit: usize,
    samples: BTreeMap<i64, StoredPoint>,
}

impl RangeCollector {
    /// `after_ms`: the last time of the previous page.
    pub fn new(
        from: OffsetDateTime,
        to: OffsetDateTime,
        after_ms: Option<i64>,
        limit: usize,
    ) -> Self {
        let from_ms = epoch_ms(from).max(after_ms.map_or(i64::MIN, |a| a.saturating_add(1)));
        Self {
            from_ms,
            to_ms: epoch_ms(to),
            limit: limit.max(1),
            samples: BTreeMap::new(),
        }
    }

    /// The first chunk key worth reading: a chunk starting earlier cannot reach the range.
    pub fn first_key_ms(&self) -> i64 {
        self.from_ms
            .saturating_sub(i64::try_from(MAX_CHUNK_SPAN.whole_milliseconds()).unwrap_or(0))
    }

    pub fn last_key_ms(&self) -> i64 {
        self.to_ms
    }

    /// Adds a chunk's samples (the first chunk of a duplicate time wins: they are the same
    /// sample, sent twice).
    pub fn add(&mut self, samples: Samples, received_at: OffsetDateTime) {
        for (at_ms, metrics) in samples {
            if at_ms < self.from_ms || at_ms > self.to_ms {
                continue;
            }
            self.samples.entry(at_ms).or_insert_with(|| StoredPoint {
                at: from_ms(at_ms),
                received_at,
                metrics,
            });
        }
        // Only the oldest limit + 1 can be on this page or tell that another follows.
        while self.samples.len() > self.limit + 1 {
            self.samples.pop_last();
        }
    }

    /// Whether chunks starting at `next_first_ms` or later can no longer change the page: it
    /// is full, and they start after its last sample.
    pub fn is_settled_before(&self, next_first_ms: i64) -> bool {
        self.samples.len() > self.limit
            && self
                .samples
                .keys()
                .nth(self.limit)
                .is_some_and(|&beyond| next_first_ms > beyond)
    }

    /// The page, and the time to continue after when more samples follow.
    pub fn page(mut self) -> (Vec<StoredPoint>, Option<i64>) {
        let more = self.samples.len() > self.limit;
        if more {
            self.samples.pop_last();
        }
        let next = more
            .then(|| self.samples.keys().next_back().copied())
            .flatten();
        (self.samples.into_values().collect(), next)
    }
}

/// The newest sample of chunks read newest first.
pub fn newest(chunks: impl IntoIterator<Item = (Samples, OffsetDateTime)>) -> Option<StoredPoint> {
    chunks
        .into_iter()
        .flat_map(|(samples, received_at)| {
            samples
                .into_iter()
                .map(move |(at_ms, metrics)| (at_ms, metrics, received_at))
        })
        .max_by_key(|(at_ms, _, _)| *at_ms)
        .map(|(at_ms, metrics, received_at)| StoredPoint {
            at: from_ms(at_ms),
            received_at,
            metrics,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::ThingName;
    use crate::telemetry::Metric;
    use proptest::prelude::*;

    const T0: i64 = 1_795_338_000_000;

    fn sample(ms: i64, temp: f64) -> Sample {
        Sample {
            at: from_ms(ms),
            metrics: BTreeMap::from([
                ("temp".to_owned(), Metric::Number(temp)),
                ("fw".to_owned(), Metric::Text("2.4.1".into())),
            ]),
        }
    }

    fn batch(samples: Vec<Sample>) -> TelemetryBatch {
        TelemetryBatch {
            device: ThingName::parse("d1").expect("name"),
            received_at: from_ms(T0 + 60_000),
            samples,
        }
    }

    fn read_all(chunks: &[Chunk], from: i64, to: i64, limit: usize) -> Vec<Vec<i64>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let mut collector = RangeCollector::new(from_ms(from), from_ms(to), after, limit);
            let mut sorted: Vec<&Chunk> = chunks
                .iter()
                .filter(|c| {
                    c.first_ms >= collector.first_key_ms() && c.first_ms <= collector.last_key_ms()
                })
                .collect();
            sorted.sort_by_key(|c| c.first_ms);
            for chunk in sorted {
                if collector.is_settled_before(chunk.first_ms) {
                    break;
                }
                collector.add(
                    decode(chunk.first_ms, &chunk.encoded).expect("decodes"),
                    chunk.received_at,
                );
            }
            let (page, next) = collector.page();
            pages.push(page.iter().map(|p| epoch_ms(p.at)).collect());
            match next {
                Some(n) => after = Some(n),
                None => return pages,
            }
        }
    }

    #[test]
    fn a_minute_of_samples_is_one_small_chunk_and_reads_back_whole() {
        let samples: Vec<Sample> = (0..60)
            .map(|s| sample(T0 + s * 1_000, 20.0 + s as f64 / 10.0))
            .collect();
        let chunks = chunks(&batch(samples));
        let [chunk] = chunks.as_slice() else {
            panic!("one chunk: {chunks:?}")
        };
        assert_eq!(
            (chunk.first_ms, chunk.last_ms, chunk.count),
            (T0, T0 + 59_000, 60)
        );
        assert!(chunk.encoded.len() < 1_500, "{} bytes", chunk.encoded.len());
        let rows = decode(chunk.first_ms, &chunk.encoded).expect("decodes");
        assert_eq!(rows.len(), 60);
        assert_eq!(rows[1].0, T0 + 1_000);
        assert_eq!(rows[1].1["temp"], serde_json::json!(20.1));
        assert_eq!(rows[1].1["fw"], serde_json::json!("2.4.1"));
    }

    #[test]
    fn chunks_split_on_size_and_span() {
        let wide: Vec<Sample> = (0..400)
            .map(|s| sample(T0 + s * 1_000, s as f64 + 0.123))
            .collect();
        let by_size = chunks(&batch(wide));
        assert!(by_size.len() > 1);
        assert!(
            by_size
                .iter()
                .all(|c| c.encoded.len() <= CHUNK_TARGET_BYTES + 100),
            "{:?}",
            by_size.iter().map(|c| c.encoded.len()).collect::<Vec<_>>()
        );
        assert_eq!(by_size.iter().map(|c| c.count).sum::<usize>(), 400);
        let sparse = vec![sample(T0, 1.0), sample(T0 + 20 * 60_000, 2.0)];
        assert_eq!(chunks(&batch(sparse)).len(), 2, "20 minutes apart");
    }

    #[test]
    fn a_sample_missing_a_metric_reads_back_without_it() {
        let mut second = sample(T0 + 1_000, 2.0);
        second.metrics.remove("fw");
        let chunk = &chunks(&batch(vec![sample(T0, 1.0), second]))[0];
        let rows = decode(chunk.first_ms, &chunk.encoded).expect("decodes");
        assert!(!rows[1].1.contains_key("fw"));
        assert!(decode(T0, "{\"t\":[0,1],\"m\":{\"x\":[1]}}").is_err());
        assert!(decode(T0, "nope").is_err());
    }

    #[test]
    fn the_newest_sample_wins_whatever_the_chunk_order() {
        let old = chunks(&batch(vec![sample(T0, 1.0), sample(T0 + 5_000, 2.0)]));
        let new = chunks(&batch(vec![sample(T0 + 3_000, 3.0)]));
        let decoded = |c: &Chunk| {
            (
                decode(c.first_ms, &c.encoded).expect("decodes"),
                c.received_at,
            )
        };
        let latest = newest([decoded(&new[0]), decoded(&old[0])]).expect("a sample");
        assert_eq!(epoch_ms(latest.at), T0 + 5_000);
    }

    proptest! {
        /// Pages of any size, over messages that overlap and repeat, read every sample in range
        /// exactly once, in order.
        #[test]
        fn paging_reads_each_sample_once_in_order(
            messages in proptest::collection::vec((0i64..3_000, 1usize..120), 1..12),
            repeat in any::<bool>(),
            limit in 1usize..50,
            from in 0i64..1_000,
            len in 0i64..3_000,
        ) {
            let mut all_chunks = Vec::new();
            let mut expected = std::collections::BTreeSet::new();
            for (start, count) in &messages {
                let samples: Vec<Sample> = (0..*count as i64).map(|i| sample(T0 + (start + i * 7) * 1_000, i as f64)).collect();
                for s in &samples {
                    let ms = epoch_ms(s.at);
                    if ms >= T0 + from * 1_000 && ms <= T0 + (from + len) * 1_000 {
                        expected.insert(ms);
                    }
                }
                let made = chunks(&batch(samples));
                if repeat {
                    all_chunks.extend(made.clone());
                }
                all_chunks.extend(made);
            }
            let pages = read_all(&all_chunks, T0 + from * 1_000, T0 + (from + len) * 1_000, limit);
            let read: Vec<i64> = pages.iter().flatten().copied().collect();
            prop_assert_eq!(read, expected.into_iter().collect::<Vec<_>>());
            prop_assert!(pages.iter().all(|p| p.len() <= limit));
        }
    }
}
