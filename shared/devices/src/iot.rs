//! AWS IoT Core: the thing registry (aws-sdk-iot) and publishing to device topics
//! (aws-sdk-iotdataplane), plus in-memory stand-ins for handler tests.

use crate::ports::{
    DevicePublisher, PublishError, ThingAttributes, ThingRegistry, ThingRegistryError,
};
use crate::registration::ThingName;
use async_trait::async_trait;
use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use cellbridge_core::aws::sdk_failure;
use cellbridge_core::dynamodb::sdk_message;
use std::collections::BTreeMap;

pub struct IotThings {
    client: aws_sdk_iot::Client,
    thing_type: String,
}

impl IotThings {
    pub fn new(client: aws_sdk_iot::Client, thing_type: impl Into<String>) -> Self {
        Self {
            client,
            thing_type: thing_type.into(),
        }
    }

    fn payload(attributes: &ThingAttributes) -> aws_sdk_iot::types::AttributePayload {
        let mut values = BTreeMap::new();
        values.insert("tenant", attributes.tenant.as_str().to_owned());
        values.insert("iccid", attributes.iccid.clone());
        if let Some(imei) = &attributes.imei {
            values.insert("imei", imei.clone());
        }
        aws_sdk_iot::types::AttributePayload::builder()
            .set_attributes(Some(
                values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ))
            // An IMEI that went away (SIM moved to another modem) must not linger.
            .merge(false)
            .build()
    }
}

#[async_trait]
impl ThingRegistry for IotThings {
    async fn upsert_thing(
        &self,
        thing_name: &ThingName,
        attributes: &ThingAttributes,
    ) -> Result<(), ThingRegistryError> {
        let created = self
            .client
            .create_thing()
            .thing_name(thing_name.as_str())
            .thing_type_name(&self.thing_type)
            .attribute_payload(Self::payload(attributes))
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // CreateThing is idempotent for equal attributes only; otherwise the thing exists
            // with older ones and is updated.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                self.client
                    .update_thing()
                    .thing_name(thing_name.as_str())
                    .thing_type_name(&self.thing_type)
                    .attribute_payload(Self::payload(attributes))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(registry_failure)
            }
            Err(e) => Err(registry_failure(e)),
        }
    }
}

/// A failed IoT call as a [`ThingRegistryError`] that says whether trying again can help.
fn registry_failure<E>(error: SdkError<E, HttpResponse>) -> ThingRegistryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(
        error,
        ThingRegistryError::Unavailable,
        ThingRegistryError::Rejected,
    )
}

pub struct IotDataPublisher {
    client: aws_sdk_iotdataplane::Client,
}

impl IotDataPublisher {
    pub fn new(client: aws_sdk_iotdataplane::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl DevicePublisher for IotDataPublisher {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        self.client
            .publish()
            .topic(topic)
            .qos(1)
            .payload(aws_sdk_iotdataplane::primitives::Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| PublishError {
                topic: topic.to_owned(),
                reason: sdk_message(e),
            })
    }
}
