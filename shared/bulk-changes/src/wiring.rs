//! The bulk-change configuration and the adapters built from it: the one place the functions'
//! `main.rs` and the local stack get their bulk-change ports.

use crate::dynamodb::{DynamoStore, TableNames};
use crate::ports::{BulkChangePorts, BulkChangeStore, WorkQueues};
use crate::s3::S3Payloads;
use crate::sqs::{QueueUrls, SqsQueues};
use aws_config::SdkConfig;
use cellbridge_core::aws;
use cellbridge_core::config::{required, ConfigError, Environment, FromEnvironment};
use std::sync::Arc;

/// Where bulk changes live: their tables, the plan and work queues, and the payload bucket.
#[derive(Debug, Clone)]
pub struct BulkChangeConfig {
    pub tables: TableNames,
    pub queues: QueueUrls,
    pub payload_bucket: String,
}

impl FromEnvironment for BulkChangeConfig {
    fn from_env(env: &dyn Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            tables: TableNames::from_env(env)?,
            queues: QueueUrls::from_env(env)?,
            payload_bucket: required(env, "PAYLOAD_BUCKET")?,
        })
    }
}

/// Store, queues and payloads on DynamoDB, SQS and S3.
pub fn ports(sdk: &SdkConfig, config: &BulkChangeConfig) -> BulkChangePorts {
    BulkChangePorts {
        store: store(sdk, &config.tables),
        queues: queues(sdk, &config.queues),
        payloads: Arc::new(S3Payloads::new(aws::s3(sdk), config.payload_bucket.clone())),
    }
}

/// The store alone, for the functions that only read and record outcomes.
pub fn store(sdk: &SdkConfig, tables: &TableNames) -> Arc<dyn BulkChangeStore> {
    Arc::new(DynamoStore::new(aws::dynamodb(sdk), tables.clone()))
}

/// The work queues alone, for the worker that requeues.
pub fn queues(sdk: &SdkConfig, urls: &QueueUrls) -> Arc<dyn WorkQueues> {
    Arc::new(SqsQueues::new(aws::sqs(sdk), urls.clone()))
}
