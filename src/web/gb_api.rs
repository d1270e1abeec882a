//! GB/T 28181 devices for engineers: which devices are registered, from where, whether they keep
//! alive, and what their catalogs hold.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::gb28181::Gb28181;

fn stage(st: &AppState) -> Result<&Gb28181, ApiError> {
    st.gb28181.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "GB/T 28181 is not configured on this node: add a [gb28181] section",
        )
    })
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("GB/T 28181 device {id:?} has not registered since this node started"),
    )
}

/// `GET /api/gb28181/devices`.
pub async fn list(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let gb = stage(&st)?;
    let summary = gb.summary();
    Ok(Json(json!({
        "sip_port": gb.local_addr().port(),
        "devices": summary.devices,
        "online": summary.online,
        "items": gb.devices(),
    })))
}

/// `GET /api/gb28181/devices/{id}`.
pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (device, catalog) = stage(&st)?.device(&id).ok_or_else(|| unknown(&id))?;
    let mut v = serde_json::to_value(device).unwrap_or_default();
    v["catalog"] = serde_json::to_value(catalog).unwrap_or_default();
    Ok(Json(v))
}

/// `POST /api/gb28181/devices/{id}/catalog`: ask the device for its catalog again.
pub async fn query_catalog(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gb = stage(&st)?;
    if gb.device(&id).is_none() {
        return Err(unknown(&id));
    }
    gb.query_catalog(&id).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("GB/T 28181 device {id}: the catalog query failed: {e}"),
        )
    })?;
    Ok(StatusCode::ACCEPTED)
}
