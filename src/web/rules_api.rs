//! `GET/PUT /api/rules`: the zones-and-rules document the rule editor reads and saves.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;

use super::{ApiError, AppState};
use crate::rules::live::LiveRulesError;

fn api_error(e: LiveRulesError) -> ApiError {
    match e {
        LiveRulesError::Invalid(errors) => ApiError::invalid("the rules are not valid", errors),
        LiveRulesError::BadDocument(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
        // The store (or the seed file) cannot be read or written: nothing was changed.
        e @ LiveRulesError::Io { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// The document: `{"zones": [...], "rules": [...]}` in the rules file's shape (docs/rules.md).
pub async fn get_rules(
    State(st): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let live = st.live_rules.clone();
    tokio::task::spawn_blocking(move || live.document())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(Json)
        .map_err(api_error)
}

/// Replaces the whole document. 422 names every invalid field (`rules[2].zone`); nothing is saved
/// or applied then. On success the rules run from the next frame on and the saved document is
/// returned.
pub async fn put_rules(
    State(st): State<Arc<AppState>>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(doc) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let cameras = st.fleet.list().iter().map(|e| e.id.to_string()).collect();
    let live = st.live_rules.clone();
    tokio::task::spawn_blocking(move || {
        live.replace(doc, cameras)?;
        live.document()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map(Json)
    .map_err(api_error)
}
