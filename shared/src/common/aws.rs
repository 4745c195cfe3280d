//! SDK clients, built once per cold start. Endpoints come from the standard `AWS_ENDPOINT_URL`
//! variables, so the same binary talks to AWS or to a local moto server.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The roots AWS service endpoints chain to (see shared/certs/README.md).
const AWS_SERVICE_ROOTS: &[u8] = include_bytes!("../../certs/aws-service-roots.pem");

/// An HTTPS client trusting the AWS service roots (plus `AWS_CA_BUNDLE` when set) instead of the
/// host's whole certificate store, whose parsing dominated init time in the cold-start benchmark.
fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{
        rustls_provider::CryptoMode, Provider, TlsContext, TrustStore,
    };
    let mut trust = TrustStore::empty().with_pem_certificate(AWS_SERVICE_ROOTS);
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE") {
        match std::fs::read(&path) {
            Ok(bundle) => trust = trust.with_pem_certificate(bundle),
            Err(e) => {
                tracing::error!(path = %path.to_string_lossy(), error = %e, "AWS_CA_BUNDLE unreadable; ignored")
            }
        }
    }
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(e) => {
            tracing::error!(error = %e, "custom trust store rejected; using the host's certificate store");
            builder.build_https()
        }
    }
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn secrets_manager(config: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(config)
}

/// Tenants and users, on the table template.yaml names.
pub fn account_store(
    config: &SdkConfig,
) -> Result<
    std::sync::Arc<dyn crate::identity::ports::AccountStore>,
    crate::common::config::ConfigError,
> {
    Ok(std::sync::Arc::new(
        crate::identity::dynamodb::DynamoAccounts::from_env(dynamodb(config))?,
    ))
}

/// The device registry and telemetry, on the tables template.yaml names.
pub fn device_store(
    config: &SdkConfig,
) -> Result<crate::devices::dynamodb::DynamoDevices, crate::common::config::ConfigError> {
    crate::devices::dynamodb::DynamoDevices::from_env(dynamodb(config))
}

/// Device commands, on the table template.yaml names (and the idempotency table for keys).
pub fn command_store(
    config: &SdkConfig,
) -> Result<crate::devices::commands_dynamodb::DynamoCommands, crate::common::config::ConfigError> {
    crate::devices::commands_dynamodb::DynamoCommands::from_env(dynamodb(config))
}

/// Variable naming the account's IoT data endpoint (`iot:Data-ATS`), locally the devstack's.
pub const IOT_DATA_ENDPOINT_ENV: &str = "IOT_DATA_ENDPOINT";

pub fn iot(config: &SdkConfig) -> aws_sdk_iot::Client {
    aws_sdk_iot::Client::new(config)
}

/// The IoT data-plane client. Its endpoint is per account: `IOT_DATA_ENDPOINT` when set,
/// otherwise asked of IoT (`DescribeEndpoint`, once per cold start).
pub async fn iot_data(
    config: &SdkConfig,
) -> Result<aws_sdk_iotdataplane::Client, Box<dyn std::error::Error + Send + Sync>> {
    let endpoint = match std::env::var(IOT_DATA_ENDPOINT_ENV)
        .ok()
        .filter(|e| !e.is_empty())
    {
        Some(endpoint) => endpoint,
        None => {
            let described = iot(config)
                .describe_endpoint()
                .endpoint_type("iot:Data-ATS")
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "finding the IoT data endpoint failed ({}); set {IOT_DATA_ENDPOINT_ENV} or allow iot:DescribeEndpoint",
                        crate::common::dynamodb::sdk_message(e)
                    )
                })?;
            let address = described
                .endpoint_address()
                .ok_or("DescribeEndpoint answered without an address")?;
            format!("https://{address}")
        }
    };
    let conf = aws_sdk_iotdataplane::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    Ok(aws_sdk_iotdataplane::Client::from_conf(conf))
}

/// Publishing to device topics through the IoT data plane.
pub async fn device_publisher(
    config: &SdkConfig,
) -> Result<crate::devices::iot::IotDataPublisher, Box<dyn std::error::Error + Send + Sync>> {
    Ok(crate::devices::iot::IotDataPublisher::new(
        iot_data(config).await?,
    ))
}

/// The IoT thing registry, registering things with template.yaml's thing type.
pub fn thing_registry(
    config: &SdkConfig,
) -> Result<crate::devices::iot::IotThings, crate::common::config::ConfigError> {
    crate::devices::iot::IotThings::from_env(iot(config))
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
) -> Result<crate::bulk_changes::ports::BulkChangePorts, crate::common::config::ConfigError> {
    use crate::bulk_changes::s3::S3Payloads;
    use std::sync::Arc;
    Ok(crate::bulk_changes::ports::BulkChangePorts {
        store: bulk_change_store(config)?,
        queues: work_queues(config)?,
        payloads: Arc::new(S3Payloads::from_env(s3(config))?),
    })
}

/// The SQS work queues alone, for the worker that requeues.
pub fn work_queues(
    config: &SdkConfig,
) -> Result<
    std::sync::Arc<dyn crate::bulk_changes::ports::WorkQueues>,
    crate::common::config::ConfigError,
> {
    use crate::bulk_changes::sqs;
    Ok(std::sync::Arc::new(sqs::SqsQueues::new(
        sqs(config),
        sqs::QueueUrls::from_env()?,
    )))
}

/// The account gate every worker instance shares, on the idempotency table.
pub fn account_gate(
    config: &SdkConfig,
) -> Result<
    std::sync::Arc<dyn crate::carriers::port::AccountGate>,
    crate::common::config::ConfigError,
> {
    use crate::bulk_changes::dynamodb::TableNames;
    use crate::carriers::pacing::dynamodb::DynamoGate;
    Ok(std::sync::Arc::new(DynamoGate::new(
        dynamodb(config),
        &TableNames::from_env()?,
    )))
}

/// The account gate on a named table (for tools and tests outside a function's environment).
pub fn account_gate_for(
    config: &SdkConfig,
    idempotency_table: &str,
) -> std::sync::Arc<dyn crate::carriers::port::AccountGate> {
    std::sync::Arc::new(crate::carriers::pacing::dynamodb::DynamoGate::on_table(
        dynamodb(config),
        idempotency_table,
    ))
}

/// The DynamoDB bulk-change store alone, for the functions that only read.
pub fn bulk_change_store(
    config: &SdkConfig,
) -> Result<
    std::sync::Arc<dyn crate::bulk_changes::ports::BulkChangeStore>,
    crate::common::config::ConfigError,
> {
    use crate::bulk_changes::dynamodb::{DynamoStore, TableNames};
    Ok(std::sync::Arc::new(DynamoStore::new(
        dynamodb(config),
        TableNames::from_env()?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_roots_are_the_five_aws_service_roots() {
        let pem = String::from_utf8_lossy(AWS_SERVICE_ROOTS);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert_eq!(pem.matches("-----END CERTIFICATE-----").count(), 5);
    }
}

/// What an AWS SDK call's failure means for trying it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkFailure {
    /// Throttled, timed out, unreachable, or a 5xx: the same call may succeed later.
    Transient(String),
    /// Refused for good (validation, access denied, a missing resource, a request that could not
    /// be built): only a fix to the code or the deployment helps.
    Permanent(String),
}

/// Error codes AWS services use for throttling and their own faults, returned with a 4xx status
/// by some services (DynamoDB answers `ThrottlingException` with a 400).
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "AWS.SimpleQueueService.RequestThrottled",
    "KMSThrottlingException",
];

/// Sorts an SDK error into [`SdkFailure`], keeping the whole cause chain as its message.
pub fn classify<E>(error: SdkError<E, HttpResponse>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            status >= 500
                || status == 429
                || context
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        // A request that could not be built fails the same way every time.
        _ => false,
    };
    let message = crate::common::dynamodb::sdk_message(error);
    if transient {
        SdkFailure::Transient(message)
    } else {
        SdkFailure::Permanent(message)
    }
}

/// An SDK error as a port's error: `transient` or `permanent` applied to its message.
pub fn sdk_failure<T, E>(
    error: SdkError<E, HttpResponse>,
    transient: fn(String) -> T,
    permanent: fn(String) -> T,
) -> T
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(error) {
        SdkFailure::Transient(message) => transient(message),
        SdkFailure::Permanent(message) => permanent(message),
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_smithy_types::body::SdkBody;

    fn service_error(status: u16, code: &str) -> SdkError<PutItemError, HttpResponse> {
        let error = PutItemError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(
            status.try_into().expect("valid status"),
            SdkBody::from("{}"),
        );
        SdkError::service_error(error, raw)
    }

    fn transient(failure: &SdkFailure) -> bool {
        matches!(failure, SdkFailure::Transient(_))
    }

    #[test]
    fn throttling_timeouts_and_5xx_are_transient_refusals_are_permanent() {
        assert!(transient(&classify(service_error(
            400,
            "ThrottlingException"
        ))));
        assert!(transient(&classify(service_error(
            400,
            "ProvisionedThroughputExceededException"
        ))));
        assert!(transient(&classify(service_error(
            400,
            "TransactionConflictException"
        ))));
        assert!(transient(&classify(service_error(
            500,
            "InternalServerError"
        ))));
        assert!(transient(&classify(service_error(503, "Anything"))));
        assert!(transient(&classify(service_error(429, "Anything"))));
        assert!(transient(&classify(
            SdkError::<PutItemError, HttpResponse>::timeout_error("slow")
        )));

        for code in [
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "ConditionalCheckFailedException",
        ] {
            let failure = classify(service_error(400, code));
            assert!(!transient(&failure), "{code}");
            let SdkFailure::Permanent(message) = failure else {
                unreachable!()
            };
            assert!(
                message.contains(code),
                "the message names the code: {message}"
            );
        }
        assert!(!transient(&classify(
            SdkError::<PutItemError, HttpResponse>::construction_failure("no table name")
        )));
    }
}
