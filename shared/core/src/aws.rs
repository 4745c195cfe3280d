//! SDK clients, built once per cold start. Endpoints come from the standard `AWS_ENDPOINT_URL`
//! variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), so the same binary talks to AWS or
//! to local emulators.

use crate::config::ConfigError;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// The SDK configuration every client is built from. An `AWS_CA_BUNDLE` that cannot be read
/// or parsed fails here, at cold start, rather than every call failing later.
pub async fn load_config() -> Result<SdkConfig, ConfigError> {
    let ca_bundle = match std::env::var_os("AWS_CA_BUNDLE") {
        Some(path) => Some(std::fs::read(&path).map_err(|e| ConfigError::Invalid {
            name: "AWS_CA_BUNDLE",
            reason: format!(
                "{} cannot be read ({e}); point it at a PEM file or unset it",
                path.to_string_lossy()
            ),
        })?),
        None => None,
    };
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(https_client(ca_bundle)?);
    // The function's name in the user agent of its requests tells its calls from other
    // functions' in CloudTrail and in the local emulators' billing meters.
    if let Some(name) = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .and_then(|name| aws_config::AppName::new(name).ok())
    {
        loader = loader.app_name(name);
    }
    Ok(loader.load().await)
}

/// The roots AWS service endpoints chain to (see shared/certs/README.md).
const AWS_SERVICE_ROOTS: &[u8] = include_bytes!("../../certs/aws-service-roots.pem");

/// An HTTPS client trusting the AWS service roots (plus `ca_bundle`) instead of the host's whole
/// certificate store, whose parsing dominated init time in the cold-start benchmark.
fn https_client(
    ca_bundle: Option<Vec<u8>>,
) -> Result<aws_sdk_dynamodb::config::SharedHttpClient, ConfigError> {
    use aws_smithy_http_client::tls::{
        rustls_provider::CryptoMode, Provider, TlsContext, TrustStore,
    };
    let mut trust = TrustStore::empty().with_pem_certificate(AWS_SERVICE_ROOTS);
    let bundled = ca_bundle.is_some();
    if let Some(bundle) = ca_bundle {
        trust = trust.with_pem_certificate(bundle);
    }
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => Ok(builder.tls_context(context).build_https()),
        Err(e) if bundled => Err(ConfigError::Invalid {
            name: "AWS_CA_BUNDLE",
            reason: format!(
                "its certificates were rejected ({e}); point it at a PEM file of CA certificates"
            ),
        }),
        Err(e) => {
            tracing::error!(error = %e, "the embedded AWS roots were rejected; using the host's certificate store");
            Ok(builder.build_https())
        }
    }
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn secrets_manager(config: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(config)
}

pub fn iot(config: &SdkConfig) -> aws_sdk_iot::Client {
    aws_sdk_iot::Client::new(config)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// Emulators serve S3 on one host, so path-style addressing is needed there, and they reject the
/// default flexible checksums; against AWS itself the defaults stay.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if s3_endpoint_is_set(config) {
        builder = builder
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Whether S3 is sent to an endpoint of the configuration's choosing (an emulator) rather than
/// AWS's: one set for every service, or one for S3 (`AWS_ENDPOINT_URL_S3`, the profile's
/// `services` section, or a service configuration of the caller's).
fn s3_endpoint_is_set(config: &SdkConfig) -> bool {
    use aws_types::service_config::ServiceConfigKey;
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    config.endpoint_url().is_some()
        || config
            .service_config()
            .zip(key.ok())
            .and_then(|(services, key)| services.load_config(key))
            .is_some()
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
    let message = crate::dynamodb::sdk_message(error);
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
