//! Telegence simulator (being written).

use crate::RequestLog;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelegenceConfig {}

pub struct Telegence {
    _config: TelegenceConfig,
    _log: Arc<RequestLog>,
}

impl Telegence {
    pub fn new(config: TelegenceConfig, log: Arc<RequestLog>) -> Self {
        Self {
            _config: config,
            _log: log,
        }
    }
}

pub fn router(_sim: Arc<Telegence>) -> Router {
    Router::new()
}
