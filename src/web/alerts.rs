//! Alert endpoints (recent alerts with their snapshots) and system information.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::alert::board::AlertRecord;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only this camera's alerts.
    camera: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

pub async fn list(
    State(st): State<Arc<AppState>>,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AlertRecord>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(Json(st.alerts.list(q.camera.as_deref(), limit)))
}

pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<AlertRecord>, ApiError> {
    st.alerts.get(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("alert {id:?} does not exist"),
        )
    })
}

pub async fn snapshot(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = st.alerts.get(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("alert {id:?} does not exist"),
        )
    })?;
    let name = record.snapshot.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("alert {id:?} has no snapshot"),
        )
    })?;
    let path = st.alerts.snapshot_dir.join(name);
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("snapshot of alert {id:?}: {e}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], bytes))
}

#[derive(Serialize)]
pub struct SystemInfo {
    version: &'static str,
    node: String,
    started_ms: i64,
    cameras: usize,
    models: Vec<ModelInfo>,
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
        started_ms: crate::camera::unix_ms(st.started),
        cameras: st.fleet.list().len(),
        models: st
            .models
            .iter()
            .map(|(name, ep)| ModelInfo {
                name: name.clone(),
                execution_provider: ep,
            })
            .collect(),
    })
}
