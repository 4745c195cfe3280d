//! The thing registry and the device publisher in memory, for unit tests.

use crate::ports::{
    DevicePublisher, PublishError, ThingAttributes, ThingRegistry, ThingRegistryError,
};
use crate::registration::ThingName;
use async_trait::async_trait;
use cellbridge_core::memory::locked;
use std::collections::BTreeMap;
use std::sync::Mutex;

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
