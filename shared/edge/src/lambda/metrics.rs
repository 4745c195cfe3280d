//! CloudWatch embedded metric format: a metric is a JSON line on stdout, which CloudWatch Logs
//! turns into a metric without any API call from the function.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub const NAMESPACE: &str = "cellbridge";

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The EMF document for `metrics` under one set of dimensions.
pub fn document(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) -> Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), Value::from(*value));
    }
    for (name, value, _) in metrics {
        root.insert((*name).into(), Value::from(*value));
    }
    Value::Object(root)
}

/// Writes the metrics as one EMF line.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) {
    println!("{}", document(dimensions, metrics));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_declare_every_metric_and_dimension() {
        let doc = document(
            &[("Carrier", "jasper")],
            &[("DevicesAccepted", 1000.0, Unit::Count)],
        );
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        assert_eq!(declared["Dimensions"], json!([["Carrier"]]));
        assert_eq!(
            declared["Metrics"],
            json!([{"Name": "DevicesAccepted", "Unit": "Count"}])
        );
        assert_eq!(doc["Carrier"], "jasper");
        assert_eq!(doc["DevicesAccepted"], 1000.0);
    }
}
