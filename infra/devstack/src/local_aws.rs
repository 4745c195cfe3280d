//! The local AWS: emulators behind the endpoints the SDK already reads.
//!
//! - MiniStack serves DynamoDB (with its streams) and SQS, the services the functions call on
//!   every message, in one process each (see [`crate::ministack`]). moto spends tens of
//!   milliseconds of CPU on one Query against a 10,000-item table and more on each SQS receive
//!   as a queue fills; MiniStack answers both in about a millisecond, whatever the table's size
//!   (numbers in docs/benchmarks.md).
//! - moto serves everything else cellbridge uses: the IoT registry, Secrets Manager and S3.
//!
//! Functions find them through `AWS_ENDPOINT_URL` (moto) and `AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_ENDPOINT_URL_DYNAMODB_STREAMS` and `AWS_ENDPOINT_URL_SQS` (MiniStack): the SDK honours
//! them, so no function knows it runs locally. Every emulator is given the same account and
//! region, so an ARN one of them makes (a queue's, a table's) means the same in the others.

use crate::ministack::MiniStackServices;
use crate::python_server::PythonServer;
use crate::tools::Tools;
use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// Region of every local resource: emulators accept any, the SDK insists on one.
pub const REGION: &str = "us-east-1";
/// The account every emulator puts in its ARNs and queue URLs.
pub const ACCOUNT_ID: &str = "123456789012";

/// The services taken from moto: the SDK's service id, the variable naming the service's own
/// endpoint, and the MiniStack process that serves it.
const MINISTACK_SERVICES: &[(&str, &str, MiniStackServices)] = &[
    (
        "DynamoDB",
        "AWS_ENDPOINT_URL_DYNAMODB",
        MiniStackServices::DynamoDb,
    ),
    (
        "DynamoDB Streams",
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
        MiniStackServices::DynamoDb,
    ),
    ("SQS", "AWS_ENDPOINT_URL_SQS", MiniStackServices::Sqs),
];

/// Ports to listen on; 0 picks a free one.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAwsPorts {
    pub moto: u16,
    pub dynamodb: u16,
    pub sqs: u16,
}

pub struct LocalAws {
    moto: PythonServer,
    dynamodb: PythonServer,
    sqs: PythonServer,
}

impl LocalAws {
    /// Starts the emulators, side by side, and waits until all of them answer.
    pub async fn start(tools: &Tools, ports: LocalAwsPorts) -> Result<Self> {
        let moto = async {
            crate::moto::start(tools, ports.moto)
                .await
                .context("starting moto (IoT registry, Secrets Manager, S3)")
        };
        let ministack = |services: MiniStackServices, port| async move {
            crate::ministack::start(tools, services, port)
                .await
                .with_context(|| format!("starting {}", services.name()))
        };
        let (moto, dynamodb, sqs) = tokio::try_join!(
            moto,
            ministack(MiniStackServices::DynamoDb, ports.dynamodb),
            ministack(MiniStackServices::Sqs, ports.sqs),
        )?;
        Ok(Self {
            moto,
            dynamodb,
            sqs,
        })
    }

    pub fn moto(&self) -> &PythonServer {
        &self.moto
    }

    /// The MiniStack serving DynamoDB and its streams.
    pub fn dynamodb(&self) -> &PythonServer {
        &self.dynamodb
    }

    /// The MiniStack serving SQS.
    pub fn sqs(&self) -> &PythonServer {
        &self.sqs
    }

    fn ministack(&self, services: MiniStackServices) -> &PythonServer {
        match services {
            MiniStackServices::DynamoDb => &self.dynamodb,
            MiniStackServices::Sqs => &self.sqs,
        }
    }

    /// What a process needs in its environment to reach them through the AWS SDK.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", self.moto.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(MINISTACK_SERVICES.iter().map(|(_, variable, services)| {
            ((*variable).to_owned(), self.ministack(*services).endpoint())
        }));
        env
    }

    /// An SDK configuration that reaches them, without touching the process environment: each
    /// client finds its service's endpoint as it would find `AWS_ENDPOINT_URL_<SERVICE>` and
    /// `AWS_ENDPOINT_URL` in the environment. (An endpoint set on the configuration itself would
    /// override every service's.)
    pub async fn sdk_config(&self) -> SdkConfig {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "local",
            ))
            .load()
            .await;
        config
            .into_builder()
            .service_config(ServiceEndpoints {
                dynamodb: self.dynamodb.endpoint(),
                sqs: self.sqs.endpoint(),
                moto: self.moto.endpoint(),
            })
            .build()
    }

    /// One line per emulator, for the stack's summary.
    pub fn summary(&self) -> Vec<String> {
        vec![
            format!(
                "MiniStack    {}  (AWS_ENDPOINT_URL_DYNAMODB, _DYNAMODB_STREAMS)",
                self.dynamodb.endpoint()
            ),
            format!(
                "MiniStack    {}  (AWS_ENDPOINT_URL_SQS)",
                self.sqs.endpoint()
            ),
            format!(
                "moto         {}  (AWS_ENDPOINT_URL: IoT registry, Secrets Manager, S3)",
                self.moto.endpoint()
            ),
            format!("Account      {ACCOUNT_ID} in {REGION}; any credentials"),
        ]
    }

    pub async fn stop(self) {
        tokio::join!(self.moto.stop(), self.dynamodb.stop(), self.sqs.stop());
    }
}

/// `sdk` with an app name in its user agent, by which the emulators' meters tell its requests
/// from those of the functions.
pub fn for_caller(sdk: &SdkConfig, caller: &'static str) -> SdkConfig {
    match aws_config::AppName::new(caller) {
        Ok(name) => sdk.to_builder().app_name(name).build(),
        Err(_) => sdk.clone(),
    }
}

/// Each service's endpoint, for clients built from an [`SdkConfig`]: MiniStack's services go to
/// their MiniStack, every other one to moto.
#[derive(Debug)]
struct ServiceEndpoints {
    dynamodb: String,
    sqs: String,
    moto: String,
}

impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        let ministack = MINISTACK_SERVICES
            .iter()
            .find(|(service_id, _, _)| service_id.eq_ignore_ascii_case(key.service_id()))
            .map(|(_, _, services)| *services);
        Some(match ministack {
            Some(MiniStackServices::DynamoDb) => self.dynamodb.clone(),
            Some(MiniStackServices::Sqs) => self.sqs.clone(),
            None => self.moto.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint_of(service_id: &str) -> Option<String> {
        let endpoints = ServiceEndpoints {
            dynamodb: "http://dynamodb".into(),
            sqs: "http://sqs".into(),
            moto: "http://moto".into(),
        };
        let key = ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("a complete key");
        endpoints.load_config(key)
    }

    #[test]
    fn dynamodb_its_streams_and_sqs_go_to_their_ministack_and_the_rest_to_moto() {
        // The service ids the generated clients ask with.
        for (service, endpoint) in [
            ("DynamoDB", "http://dynamodb"),
            ("DynamoDB Streams", "http://dynamodb"),
            ("SQS", "http://sqs"),
        ] {
            assert_eq!(endpoint_of(service).as_deref(), Some(endpoint), "{service}");
        }
        for service in ["S3", "IoT", "Secrets Manager", "IoT Data Plane"] {
            assert_eq!(
                endpoint_of(service).as_deref(),
                Some("http://moto"),
                "{service}"
            );
        }
    }

    #[test]
    fn settings_other_than_the_endpoint_are_left_to_the_sdk() {
        let endpoints = ServiceEndpoints {
            dynamodb: "http://dynamodb".into(),
            sqs: "http://sqs".into(),
            moto: "http://moto".into(),
        };
        let key = ServiceConfigKey::builder()
            .service_id("DynamoDB")
            .env("AWS_ACCOUNT_ID_ENDPOINT_MODE")
            .profile("account_id_endpoint_mode")
            .build()
            .expect("a complete key");
        assert_eq!(endpoints.load_config(key), None);
    }
}
