//! camsim's control API (HTTP/JSON): list cameras and inject faults, one camera or a list at a time.
//!
//! `GET /cameras`, `POST /cameras/{id}/fault {"kind": …}`, `POST /faults {"cameras": […], "kind": …}`,
//! `GET /stats`. Kinds: down, stall, freeze, black, cover, restore. `GET /cameras` also says each
//! camera's scene (busy, quiet, burst) and a burst camera's burst onsets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{CamsimError, Fault, Shared};

/// Binds the control port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, CamsimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CamsimError::Bind {
            what: "control",
            addr,
            source,
        })
}

/// The control API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/cameras", get(list))
        .route("/cameras/{id}/fault", post(set_one))
        .route("/faults", post(set_many))
        .route("/stats", get(stats))
        .with_state(shared)
}

/// Serves the control API until cancelled.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let app = router(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "control API stopped");
    }
}

#[derive(Serialize)]
struct CameraView {
    id: String,
    path: String,
    fault: Fault,
    sessions: u64,
    scene: super::Scene,
    /// Burst cameras: when each scripted burst began (unix ms), from camsim's start up to one
    /// burst period ahead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    burst_onsets_unix_ms: Vec<i64>,
}

async fn list(State(shared): State<Arc<Shared>>) -> Json<Vec<CameraView>> {
    Json(
        shared
            .cameras
            .iter()
            .map(|c| CameraView {
                id: format!("{:0w$}", c.number, w = shared.id_width),
                path: shared.path_of(c.number),
                fault: c.fault(),
                sessions: c.sessions(),
                scene: c.scene,
                burst_onsets_unix_ms: if c.scene == super::Scene::Burst {
                    super::scene::onsets(
                        c.offset_duration(),
                        shared.epoch.elapsed() + super::scene::BURST_PERIOD,
                    )
                    .into_iter()
                    .map(|o| {
                        (shared.epoch_wall + o)
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64)
                    })
                    .collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    kind: Fault,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    cameras: Vec<String>,
    kind: Fault,
}

#[derive(Serialize)]
struct Applied {
    cameras: Vec<String>,
    fault: Fault,
}

/// An error answer: `{"error": "..."}` with a status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn body_error(rejection: JsonRejection) -> ApiError {
    ApiError(
        rejection.status(),
        format!(
            "{}; expected {{\"kind\": \"down\"|\"stall\"|\"freeze\"|\"black\"|\"cover\"|\"restore\"}}",
            rejection.body_text()
        ),
    )
}

/// Checks every id first so that a list with one bad id changes nothing.
fn apply(shared: &Shared, ids: &[String], kind: Fault) -> Result<Applied, ApiError> {
    if ids.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cameras: the list is empty".into(),
        ));
    }
    let mut cams = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let cam = shared.camera(id).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "cameras[{i}]: no camera {id:?}; ids are 1..{} (zero-padded like 0001 or not)",
                    shared.cameras.len()
                ),
            )
        })?;
        cams.push(cam);
    }
    for cam in &cams {
        cam.set_fault(kind);
        tracing::info!(camera = cam.number, fault = kind.as_str(), "fault injected");
    }
    Ok(Applied {
        cameras: cams
            .iter()
            .map(|c| format!("{:0w$}", c.number, w = shared.id_width))
            .collect(),
        fault: kind,
    })
}

async fn set_one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Result<Json<FaultBody>, JsonRejection>,
) -> Result<Json<Applied>, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    apply(&shared, &[id], body.kind).map(Json)
}

async fn set_many(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<FaultsBody>, JsonRejection>,
) -> Result<Json<Applied>, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    apply(&shared, &body.cameras, body.kind).map(Json)
}

#[derive(Serialize)]
struct StatsView {
    cameras: usize,
    connections_total: u64,
    sessions_total: u64,
    sessions_active: u64,
    packets_sent: u64,
    bytes_sent: u64,
    late_resyncs: u64,
    bad_requests: u64,
    auth_failures: u64,
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<StatsView> {
    let s = &shared.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Json(StatsView {
        cameras: shared.cameras.len(),
        connections_total: get(&s.connections_total),
        sessions_total: get(&s.sessions_total),
        sessions_active: get(&s.sessions_active),
        packets_sent: get(&s.packets_sent),
        bytes_sent: get(&s.bytes_sent),
        late_resyncs: get(&s.late_resyncs),
        bad_requests: get(&s.bad_requests),
        auth_failures: get(&s.auth_failures),
    })
}
