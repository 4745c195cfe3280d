//! The payload store on S3.

use crate::ports::{PayloadError, PayloadStore};
use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use cellbridge_core::aws::sdk_failure;

#[derive(Debug, Clone)]
pub struct S3Payloads {
    client: Client,
    bucket: String,
}

impl S3Payloads {
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }
}

#[async_trait]
impl PayloadStore for S3Payloads {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PayloadError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(payload_failure)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error)
                if matches!(error.as_service_error(), Some(GetObjectError::NoSuchKey(_))) =>
            {
                return Err(PayloadError::Missing(key.to_owned()))
            }
            Err(error) => return Err(payload_failure(error)),
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| PayloadError::Unavailable(e.to_string()))?;
        Ok(bytes.into_bytes().to_vec())
    }
}

/// A failed S3 call as a [`PayloadError`] that says whether trying again can help.
fn payload_failure<E>(error: SdkError<E, HttpResponse>) -> PayloadError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(error, PayloadError::Unavailable, PayloadError::Rejected)
}
