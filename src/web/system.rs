//! System information: version, node, models and the execution provider each runs on.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;

#[derive(Serialize)]
pub struct SystemInfo {
    version: &'static str,
    node: String,
    started_ms: i64,
    cameras: usize,
    models: Vec<ModelInfo>,
    /// The alert store: `ok`, or `failing` with since when, the error and how many alerts wait.
    store: crate::delivery::StoreStatusView,
}

#[derive(Serialize)]
struct ModelInfo {
    name: String,
    execution_provider: &'static str,
}

pub async fn system(State(st): State<Arc<AppState>>) -> Json<SystemInfo> {
    Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        node: st.config.node.name.clone(),
        started_ms: crate::time::unix_ms(st.started),
        cameras: st.fleet.list().len(),
        models: st
            .models
            .iter()
            .map(|(name, ep)| ModelInfo {
                name: name.clone(),
                execution_provider: ep,
            })
            .collect(),
        store: st.delivery.status.view(),
    })
}
