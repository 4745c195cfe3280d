//! The cellbridge bulk-change ports wired to a local stack's resources, for `cargo xtask dev` and
//! the tests, which talk to the stack from outside the functions' environment.

use crate::template::Resources;
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use cellbridge::bulk_changes::dynamodb::{DynamoStore, TableNames};
use cellbridge::bulk_changes::ports::BulkChangePorts;
use cellbridge::bulk_changes::s3::S3Payloads;
use cellbridge::bulk_changes::sqs::{QueueUrls, SqsQueues};
use std::sync::Arc;

fn named(found: Option<&str>, logical_id: &str) -> Result<String> {
    found
        .map(str::to_owned)
        .with_context(|| format!("template.yaml declares no {logical_id}"))
}

pub fn bulk_change_ports(config: &SdkConfig, resources: &Resources) -> Result<BulkChangePorts> {
    let table = |id: &str| named(resources.table_name(id), id);
    let tables = TableNames {
        bulk_changes: table("BulkChangesTable")?,
        device_changes: table("DeviceChangesTable")?,
        audit_log: table("AuditLogTable")?,
        idempotency: table("IdempotencyTable")?,
    };
    let queues = QueueUrls {
        plan: named(resources.queue_url("PlanQueue"), "PlanQueue")?,
        jasper_work: named(resources.queue_url("JasperWorkQueue"), "JasperWorkQueue")?,
        thingspace_work: named(
            resources.queue_url("ThingSpaceWorkQueue"),
            "ThingSpaceWorkQueue",
        )?,
        telegence_work: named(
            resources.queue_url("TelegenceWorkQueue"),
            "TelegenceWorkQueue",
        )?,
    };
    Ok(BulkChangePorts {
        store: Arc::new(DynamoStore::new(
            cellbridge::common::aws::dynamodb(config),
            tables,
        )),
        queues: Arc::new(SqsQueues::new(cellbridge::common::aws::sqs(config), queues)),
        payloads: Arc::new(S3Payloads::new(
            cellbridge::common::aws::s3(config),
            named(resources.bucket_name("PayloadBucket"), "PayloadBucket")?,
        )),
    })
}
