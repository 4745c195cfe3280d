//! ThingSpace simulator (being written).

use crate::RequestLog;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingSpaceConfig {}

pub struct ThingSpace {
    _config: ThingSpaceConfig,
    _log: Arc<RequestLog>,
}

impl ThingSpace {
    pub fn new(config: ThingSpaceConfig, log: Arc<RequestLog>) -> Self {
        Self {
            _config: config,
            _log: log,
        }
    }
}

pub fn router(_sim: Arc<ThingSpace>) -> Router {
    Router::new()
}
