//! Telemetry charts drawn on the server as SVG: a page shows them before (and without) any
//! script. A range holds far more samples than a chart has pixels, so each series is cut into
//! buckets and each bucket drawn by its lowest and highest value: spikes stay visible, and the
//! SVG stays the same size whatever the range.

use maud::{html, Markup};

/// Buckets across a chart (two points each).
pub const BUCKETS: usize = 240;
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 80.0;

/// One sample: unix milliseconds and the value.
pub type Sample = (i64, f64);
/// One numeric series, oldest first.
pub type Series = Vec<Sample>;
/// A bucket's lowest and highest samples.
type Extremes = Option<(Sample, Sample)>;

/// The series' points reduced to each bucket's lowest and highest, in time order.
pub fn downsample(series: &[(i64, f64)], from_ms: i64, to_ms: i64, buckets: usize) -> Series {
    let span = (to_ms - from_ms).max(1);
    let buckets = buckets.max(1);
    let mut extremes: Vec<Extremes> = vec![None; buckets];
    for &(at, value) in series {
        if !value.is_finite() || at < from_ms || at > to_ms {
            continue;
        }
        let index = usize::try_from((at - from_ms) * (buckets as i64 - 1) / span).unwrap_or(0);
        let slot = &mut extremes[index.min(buckets - 1)];
        *slot = Some(match *slot {
            None => ((at, value), (at, value)),
            Some((low, high)) => (
                if value < low.1 { (at, value) } else { low },
                if value > high.1 { (at, value) } else { high },
            ),
        });
    }
    let mut out = Vec::with_capacity(buckets * 2);
    for (low, high) in extremes.into_iter().flatten() {
        if low.0 == high.0 {
            out.push(low);
        } else if low.0 < high.0 {
            out.extend([low, high]);
        } else {
            out.extend([high, low]);
        }
    }
    out
}

/// A line chart of `series` between `from_ms` and `to_ms`, described for screen readers;
/// `drawn_from` says what the series was made of ("3,600 samples").
pub fn line_chart(
    metric: &str,
    series: &[(i64, f64)],
    from_ms: i64,
    to_ms: i64,
    drawn_from: &str,
) -> Markup {
    let points = downsample(series, from_ms, to_ms, BUCKETS);
    let (low, high) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let span_ms = (to_ms - from_ms).max(1) as f64;
    let range = if high > low { high - low } else { 1.0 };
    let path: String = points
        .iter()
        .map(|(at, value)| {
            let x = (*at - from_ms) as f64 / span_ms * WIDTH;
            let y = HEIGHT - (value - low) / range * (HEIGHT - 4.0) - 2.0;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let label = if points.is_empty() {
        format!("{metric}: no samples in this range")
    } else {
        format!("{metric}: from {low} to {high} in this range, drawn from {drawn_from}")
    };
    html! {
        figure.chart data-metric=(metric) {
            figcaption { strong { (metric) } @if !points.is_empty() { span.muted { " " (low) " – " (high) } } }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none" role="img" aria-label=(label) {
                @if !points.is_empty() {
                    polyline points=(path) fill="none" stroke="currentColor" stroke-width="1.5" vector-effect="non-scaling-stroke" {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_seconds_becomes_two_points_a_bucket_and_keeps_its_spike() {
        let from = 0;
        let to = 86_400_000;
        let mut series: Series = (0..86_400).map(|s| (s * 1000, 10.0)).collect();
        series[43_200].1 = 99.0;
        let points = downsample(&series, from, to, 240);
        assert!(points.len() <= 480, "{}", points.len());
        assert!(points.iter().any(|(_, v)| *v == 99.0), "the spike survives");
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    }

    #[test]
    fn samples_outside_the_range_or_not_numbers_are_left_out() {
        let points = downsample(&[(-5, 1.0), (5, f64::NAN), (6, 2.0), (99, 3.0)], 0, 10, 4);
        assert_eq!(points, vec![(6, 2.0)]);
    }
}
