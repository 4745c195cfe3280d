//! SDK clients, built once per cold start. Endpoints come from the standard `AWS_ENDPOINT_URL`
//! variables, so the same binary talks to AWS or to a local moto server.

use aws_config::{BehaviorVersion, SdkConfig};

pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// Emulators serve S3 on one host, so path-style addressing is needed there, and they reject the
/// default flexible checksums; against AWS itself the defaults stay.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder = builder
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The AWS-backed bulk-change ports, configured from the environment template.yaml sets.
pub fn bulk_change_ports(
    config: &SdkConfig,
) -> Result<crate::ports::BulkChangePorts, crate::config::ConfigError> {
    use crate::adapters::{s3::S3Payloads, sqs};
    use std::sync::Arc;
    Ok(crate::ports::BulkChangePorts {
        store: bulk_change_store(config)?,
        queues: Arc::new(sqs::SqsQueues::new(
            sqs(config),
            sqs::QueueUrls::from_env()?,
        )),
        payloads: Arc::new(S3Payloads::from_env(s3(config))?),
    })
}

/// The DynamoDB bulk-change store alone, for the functions that only read.
pub fn bulk_change_store(
    config: &SdkConfig,
) -> Result<std::sync::Arc<dyn crate::ports::BulkChangeStore>, crate::config::ConfigError> {
    use crate::adapters::dynamodb::{DynamoStore, TableNames};
    Ok(std::sync::Arc::new(DynamoStore::new(
        dynamodb(config),
        TableNames::from_env()?,
    )))
}
