//! The cost model: billable units, priced from the dated table in `infra/bench/aws-prices.yaml`
//! into dollars per device per month, itemized by flow and by what AWS bills.
//!
//! The units come counted as AWS would bill them (the local stack's meters: `devstack::billing`
//! and MiniStack's DynamoDB and SQS meters): an IoT message in 5 KB units, an SQS request in 64 KB
//! chunks, DynamoDB units by item size. The units measured over a window of a fleet are scaled to
//! one device and one month (AWS prices by the 730-hour month).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Hours in the month AWS prices by.
const HOURS_PER_MONTH: f64 = 730.0;
/// The price table, from the workspace root.
pub const PRICE_TABLE: &str = "infra/bench/aws-prices.yaml";
/// The region whose prices the others start from.
pub const BASE_REGION: &str = "us-east-1";

/// What AWS bills, one price each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Billed {
    /// A device connected for a minute.
    IotConnectionMinutes,
    /// An MQTT message to or from IoT Core, in 5 KB units.
    IotMessages,
    /// A topic rule whose SQL matched a message.
    IotRulesTriggered,
    /// One action of a triggered rule.
    IotRuleActions,
    /// A registry call (CreateThing, DescribeThing, ...).
    IotRegistryOperations,
    /// An SQS request, in 64 KB chunks of its payload.
    SqsRequests,
    LambdaRequests,
    /// Lambda duration at the function's memory, on arm64 (Graviton).
    LambdaGbSecondsArm,
    /// Lambda duration at the function's memory, on x86_64.
    LambdaGbSecondsX86,
    /// On-demand write request units (1 KB each; twice for a transaction).
    DynamodbWriteUnits,
    /// On-demand read request units (4 KB each, strongly consistent; half eventually consistent).
    DynamodbReadUnits,
    S3PutRequests,
    S3GetRequests,
    /// HTTP API requests, in 512 KB units.
    ApiRequests,
    SecretsManagerApiCalls,
}

impl Billed {
    /// The unit of one count, for the table's heading.
    pub fn unit(self) -> &'static str {
        match self {
            Billed::IotConnectionMinutes => "connection-minutes",
            Billed::IotMessages => "messages (5 KB units)",
            Billed::IotRulesTriggered => "rules triggered",
            Billed::IotRuleActions => "rule actions",
            Billed::IotRegistryOperations => "registry operations",
            Billed::SqsRequests => "requests (64 KB chunks)",
            Billed::LambdaRequests => "invocations",
            Billed::LambdaGbSecondsArm | Billed::LambdaGbSecondsX86 => "GB-seconds",
            Billed::DynamodbWriteUnits => "write request units",
            Billed::DynamodbReadUnits => "read request units",
            Billed::S3PutRequests => "PUT requests",
            Billed::S3GetRequests => "GET requests",
            Billed::ApiRequests => "requests",
            Billed::SecretsManagerApiCalls => "API calls",
        }
    }

    /// The service it appears under on the bill.
    pub fn service(self) -> &'static str {
        match self {
            Billed::IotConnectionMinutes
            | Billed::IotMessages
            | Billed::IotRulesTriggered
            | Billed::IotRuleActions
            | Billed::IotRegistryOperations => "IoT Core",
            Billed::SqsRequests => "SQS",
            Billed::LambdaRequests | Billed::LambdaGbSecondsArm | Billed::LambdaGbSecondsX86 => {
                "Lambda"
            }
            Billed::DynamodbWriteUnits | Billed::DynamodbReadUnits => "DynamoDB",
            Billed::S3PutRequests | Billed::S3GetRequests => "S3",
            Billed::ApiRequests => "API Gateway",
            Billed::SecretsManagerApiCalls => "Secrets Manager",
        }
    }
}

/// One price: dollars for `per` units.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub price: f64,
    pub per: f64,
    /// The public page the price was read from.
    pub source: String,
    /// How sure the figure is, when it could not be read straight from the source.
    #[serde(default)]
    pub note: Option<String>,
}

impl Price {
    fn of(&self, units: f64) -> f64 {
        units * self.price / self.per
    }
}

/// The price table: dated, one set of prices per region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// When the prices were last checked against their sources.
    pub checked: String,
    pub regions: BTreeMap<String, BTreeMap<Billed, Price>>,
}

impl PriceTable {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the price table {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the price table {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let table: PriceTable = serde_norway::from_str(text)?;
        table.prices(BASE_REGION)?;
        Ok(table)
    }

    /// The prices of `region`: its own entries, and the base region's for what it does not list.
    pub fn prices(&self, region: &str) -> Result<BTreeMap<Billed, Price>> {
        let Some(base) = self.regions.get(BASE_REGION) else {
            bail!("the price table has no {BASE_REGION}, which every other region starts from");
        };
        let mut prices = base.clone();
        if region != BASE_REGION {
            let Some(own) = self.regions.get(region) else {
                bail!(
                    "the price table has no prices for {region}; add them under regions (only \
                     what differs from {BASE_REGION}) or choose one of: {}",
                    self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            };
            prices.extend(own.iter().map(|(billed, price)| (*billed, price.clone())));
        }
        for (billed, price) in &prices {
            if !(price.price >= 0.0 && price.per > 0.0) {
                bail!("{billed:?} in {region}: the price must be 0 or more and `per` more than 0");
            }
        }
        Ok(prices)
    }
}

/// Units of one billed item that one flow used during the measured window.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// What caused them: "telemetry", "presence", "commands", ...
    pub flow: String,
    pub billed: Billed,
    pub units: f64,
}

/// What a fleet of `devices` used over `window`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub devices: u64,
    pub duration: Duration,
}

impl Window {
    /// Multiplier from the window's total to one device for one month.
    fn per_device_month(self) -> Result<f64> {
        if self.devices == 0 || self.duration.is_zero() {
            bail!("a cost needs at least one device and a window longer than zero");
        }
        let months = self.duration.as_secs_f64() / 3600.0 / HOURS_PER_MONTH;
        Ok(1.0 / (self.devices as f64 * months))
    }
}

/// One line of the bill, for one device and one month.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub flow: String,
    pub billed: Billed,
    pub units: f64,
    pub dollars: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bill {
    pub lines: Vec<Line>,
    /// What each line's units and dollars are for: `device-month`, `bulk change`, ...
    pub per: String,
}

impl Bill {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.dollars).sum()
    }

    /// Dollars per [`Bill::per`] by flow, most expensive first.
    pub fn by_flow(&self) -> Vec<(String, f64)> {
        let mut flows: BTreeMap<&str, f64> = BTreeMap::new();
        for line in &self.lines {
            *flows.entry(&line.flow).or_default() += line.dollars;
        }
        let mut flows: Vec<(String, f64)> =
            flows.into_iter().map(|(f, d)| (f.to_owned(), d)).collect();
        flows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        flows
    }

    /// The itemized table, in markdown.
    pub fn markdown(&self) -> String {
        let per = &self.per;
        let mut out = format!(
            "| flow | service | billed | units per {per} | $ per {per} |\n|---|---|---|---:|---:|\n"
        );
        for line in &self.lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.4} |",
                line.flow,
                line.billed.service(),
                line.billed.unit(),
                line.units,
                line.dollars
            );
        }
        let _ = writeln!(out, "| **total** | | | | **{:.4}** |", self.total());
        out
    }
}

/// Prices what a fleet used over a window, per device per month, one line per flow and item
/// (most expensive first). An item without a price is an error, not a free line.
pub fn price(usage: &[Usage], window: Window, prices: &BTreeMap<Billed, Price>) -> Result<Bill> {
    price_scaled(usage, window.per_device_month()?, "device-month", prices)
}

/// Prices `usage` times `scale`, for one `per` (a piece of work: `bulk change of 10,000
/// devices`), one line per flow and item (most expensive first).
pub fn price_scaled(
    usage: &[Usage],
    scale: f64,
    per: &str,
    prices: &BTreeMap<Billed, Price>,
) -> Result<Bill> {
    let mut summed: BTreeMap<(&str, Billed), f64> = BTreeMap::new();
    for u in usage {
        *summed.entry((&u.flow, u.billed)).or_default() += u.units;
    }
    let mut lines = Vec::new();
    for ((flow, billed), units) in summed {
        let price = prices
            .get(&billed)
            .with_context(|| format!("the price table has no price for {billed:?}"))?;
        let units = units * scale;
        lines.push(Line {
            flow: flow.to_owned(),
            billed,
            units,
            dollars: price.of(units),
        });
    }
    lines.sort_by(|a, b| b.dollars.total_cmp(&a.dollars));
    Ok(Bill {
        lines,
        per: per.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("aws-prices.yaml"))
            .expect("the committed price table parses")
    }

    #[test]
    fn the_committed_table_prices_everything_the_model_bills_in_the_base_region() {
        let table = table();
        let prices = table.prices(BASE_REGION).expect("base prices");
        for billed in [
            Billed::IotConnectionMinutes,
            Billed::IotMessages,
            Billed::IotRulesTriggered,
            Billed::IotRuleActions,
            Billed::IotRegistryOperations,
            Billed::SqsRequests,
            Billed::LambdaRequests,
            Billed::LambdaGbSecondsArm,
            Billed::LambdaGbSecondsX86,
            Billed::DynamodbWriteUnits,
            Billed::DynamodbReadUnits,
            Billed::S3PutRequests,
            Billed::S3GetRequests,
            Billed::ApiRequests,
            Billed::SecretsManagerApiCalls,
        ] {
            let price = prices.get(&billed).unwrap_or_else(|| panic!("{billed:?}"));
            assert!(price.source.starts_with("https://"), "{billed:?}");
        }
    }

    #[test]
    fn a_region_overrides_only_what_it_lists() {
        let table = PriceTable::parse(
            "checked: 2026-12-05\n\
             regions:\n  \
               us-east-1:\n    \
                 sqs-requests: {price: 0.40, per: 1000000, source: https://a}\n    \
                 lambda-requests: {price: 0.20, per: 1000000, source: https://b}\n  \
               eu-west-1:\n    \
                 sqs-requests: {price: 0.50, per: 1000000, source: https://c}\n",
        )
        .expect("parses");
        let eu = table.prices("eu-west-1").expect("eu prices");
        assert_eq!(eu[&Billed::SqsRequests].price, 0.50);
        assert_eq!(eu[&Billed::LambdaRequests].price, 0.20);
        let missing = table.prices("ap-south-1").expect_err("no such region");
        assert!(
            missing.to_string().contains("eu-west-1, us-east-1"),
            "{missing}"
        );
    }

    #[test]
    fn an_unknown_item_or_a_negative_price_is_refused() {
        assert!(PriceTable::parse(
            "checked: x\nregions:\n  us-east-1:\n    free-lunch: {price: 1, per: 1, source: s}\n"
        )
        .is_err());
        assert!(PriceTable::parse(
            "checked: x\nregions:\n  us-east-1:\n    sqs-requests: {price: -1, per: 1, source: s}\n"
        )
        .is_err());
    }

    #[test]
    fn a_window_scales_to_one_device_for_one_month() {
        let prices = BTreeMap::from([(
            Billed::SqsRequests,
            Price {
                price: 0.40,
                per: 1_000_000.0,
                source: "https://example".into(),
                note: None,
            },
        )]);
        // 10 devices, one request a second each, for an hour: 36,000 requests. One device for a
        // month: 3,600 an hour for 730 hours = 2,628,000 requests = $1.0512.
        let usage = [Usage {
            flow: "telemetry".into(),
            billed: Billed::SqsRequests,
            units: 36_000.0,
        }];
        let window = Window {
            devices: 10,
            duration: Duration::from_secs(3600),
        };
        let bill = price(&usage, window, &prices).expect("priced");
        assert_eq!(bill.lines.len(), 1);
        assert!((bill.lines[0].units - 2_628_000.0).abs() < 1e-6);
        assert!((bill.total() - 1.0512).abs() < 1e-9, "{}", bill.total());
    }

    #[test]
    fn lines_of_one_flow_and_item_are_summed_and_flows_ranked() {
        let prices = table().prices(BASE_REGION).expect("prices");
        let usage = [
            Usage {
                flow: "presence".into(),
                billed: Billed::LambdaRequests,
                units: 10.0,
            },
            Usage {
                flow: "presence".into(),
                billed: Billed::LambdaRequests,
                units: 10.0,
            },
            Usage {
                flow: "telemetry".into(),
                billed: Billed::LambdaRequests,
                units: 1.0,
            },
        ];
        let window = Window {
            devices: 1,
            duration: Duration::from_secs(3600 * 730),
        };
        let bill = price(&usage, window, &prices).expect("priced");
        assert_eq!(bill.lines.len(), 2);
        assert_eq!(bill.lines[0].units, 20.0);
        let flows: Vec<String> = bill.by_flow().into_iter().map(|(f, _)| f).collect();
        assert_eq!(flows, ["presence", "telemetry"]);
        assert!(bill
            .markdown()
            .contains("| presence | Lambda | invocations | 20 |"));
    }

    #[test]
    fn an_item_without_a_price_is_an_error() {
        let usage = [Usage {
            flow: "telemetry".into(),
            billed: Billed::IotMessages,
            units: 1.0,
        }];
        let window = Window {
            devices: 1,
            duration: Duration::from_secs(60),
        };
        assert!(price(&usage, window, &BTreeMap::new()).is_err());
        let no_devices = Window {
            devices: 0,
            duration: Duration::from_secs(60),
        };
        let prices = table().prices(BASE_REGION).expect("prices");
        assert!(price(&usage, no_devices, &prices).is_err());
    }
}
