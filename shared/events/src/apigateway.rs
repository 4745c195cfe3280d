//! Posting frames through API Gateway's management API (`@connections`), in AWS and locally.

use crate::ports::{ConnectionPoster, PostError};
use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;

#[derive(Debug, Clone)]
pub struct ApiGatewayPoster {
    client: Client,
}

impl ApiGatewayPoster {
    /// `endpoint`: the stage's URL (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`);
    /// the management API has no endpoint of its own to discover.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

#[async_trait]
impl ConnectionPoster for ApiGatewayPoster {
    async fn post(&self, connection_id: &str, frame: &[u8]) -> Result<(), PostError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(match error.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => PostError::Gone,
                Some(PostToConnectionError::PayloadTooLargeException(e)) => {
                    PostError::Rejected(e.message().unwrap_or("payload too large").to_owned())
                }
                Some(PostToConnectionError::ForbiddenException(e)) => {
                    PostError::Rejected(e.message().unwrap_or("forbidden").to_owned())
                }
                _ => PostError::Unavailable(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&error).to_string(),
                ),
            }),
        }
    }
}
