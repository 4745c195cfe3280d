//! AWS IoT Core: the thing registry (aws-sdk-iot) and publishing to device topics
//! (aws-sdk-iotdataplane), plus in-memory stand-ins for handler tests.

use super::{memory::locked, sdk_message};
use crate::devices::registration::ThingName;
use crate::ports::{
    DevicePublisher, PublishError, ThingAttributes, ThingRegistry, ThingRegistryError,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Thing type every registered device gets (template.yaml's `DeviceThingType`).
pub const THING_TYPE_ENV: &str = "THING_TYPE_NAME";

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

    pub fn from_env(client: aws_sdk_iot::Client) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(
            client,
            crate::config::required_env(THING_TYPE_ENV)?,
        ))
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
                    .map_err(|e| ThingRegistryError(sdk_message(e)))
            }
            Err(e) => Err(ThingRegistryError(sdk_message(e))),
        }
    }
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

/// Records what was published; `fail_topics` makes chosen publishes fail.
#[derive(Default)]
pub struct RecordingPublisher {
    published: Mutex<Vec<(String, serde_json::Value)>>,
    failing: Mutex<Vec<String>>,
}

impl RecordingPublisher {
    /// Every publish to `topic` fails from now on.
    pub fn fail_topic(&self, topic: &str) {
        locked(&self.failing).push(topic.to_owned());
    }

    /// Topic and JSON payload of every publish so far (non-JSON payloads as a string).
    pub fn published(&self) -> Vec<(String, serde_json::Value)> {
        locked(&self.published).clone()
    }

    pub fn published_to(&self, topic: &str) -> Vec<serde_json::Value> {
        self.published()
            .into_iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p)
            .collect()
    }
}

#[async_trait]
impl DevicePublisher for RecordingPublisher {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        if locked(&self.failing).iter().any(|t| t == topic) {
            return Err(PublishError {
                topic: topic.to_owned(),
                reason: "failing on purpose".to_owned(),
            });
        }
        let value = serde_json::from_slice(&payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&payload).into_owned())
        });
        locked(&self.published).push((topic.to_owned(), value));
        Ok(())
    }
}

/// Things by name.
#[derive(Default)]
pub struct MemoryThings {
    things: Mutex<BTreeMap<String, ThingAttributes>>,
}

impl MemoryThings {
    pub fn get(&self, thing_name: &str) -> Option<ThingAttributes> {
        locked(&self.things).get(thing_name).cloned()
    }

    pub fn len(&self) -> usize {
        locked(&self.things).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ThingRegistry for MemoryThings {
    async fn upsert_thing(
        &self,
        thing_name: &ThingName,
        attributes: &ThingAttributes,
    ) -> Result<(), ThingRegistryError> {
        locked(&self.things).insert(thing_name.as_str().to_owned(), attributes.clone());
        Ok(())
    }
}
