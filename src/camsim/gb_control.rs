//! camsim's control API for its GB/T 28181 devices (HTTP/JSON, `--gb-control ADDR`):
//!
//! - `GET /gb/devices`: each device's id, last REGISTER status, streams sent now, INVITEs, alarms;
//! - `POST /gb/devices/{id}/fault {"kind": "down"|"stall"|"restore"}`: `down` stops keepalives,
//!   answers and video; `stall` keeps signalling and stops video; `restore` undoes both;
//! - `POST /gb/devices/{id}/alarm {"channel"?, "method"?, "type"?, "priority"?, "description"?}`:
//!   the device sends `Notify/Alarm` (default: its first channel, a video alarm (5) of type 6,
//!   intrusion, priority 1) and the answer says the platform's status.

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

use super::gb::{GbDevice, cameras_of};
use crate::gb28181::manscdp::Alarm;

type Devices = Arc<Vec<GbDevice>>;

/// The routes.
pub fn router(devices: Devices) -> Router {
    Router::new()
        .route("/gb/devices", get(list))
        .route("/gb/devices/{id}/fault", post(fault))
        .route("/gb/devices/{id}/alarm", post(alarm))
        .with_state(devices)
}

/// Binds `addr` and serves until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    devices: Devices,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--gb-control {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = router(devices);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "camsim GB control API stopped");
        }
    });
    tracing::info!(%bound, "camsim GB control API");
    Ok(bound)
}

/// An error answer: `{"error": "..."}` with a status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Serialize)]
struct DeviceView {
    id: String,
    last_register_status: u64,
    streams: usize,
    invites: u64,
    alarms_sent: u64,
    alarms_acknowledged: u64,
    channels: Vec<String>,
}

async fn list(State(devices): State<Devices>) -> Json<Vec<DeviceView>> {
    Json(
        devices
            .iter()
            .map(|d| DeviceView {
                id: d.options.id.clone(),
                last_register_status: d.stats.last_status.load(Ordering::Relaxed),
                streams: d.streams(),
                invites: d.stats.invites.load(Ordering::Relaxed),
                alarms_sent: d.stats.alarms_sent.load(Ordering::Relaxed),
                alarms_acknowledged: d.stats.alarms_acknowledged.load(Ordering::Relaxed),
                channels: cameras_of(&d.options.id, d.options.channels)
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
            })
            .collect(),
    )
}

fn find<'a>(devices: &'a Devices, id: &str) -> Result<&'a GbDevice, ApiError> {
    devices.iter().find(|d| d.options.id == id).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no simulated device {id:?} (GET /gb/devices lists them)"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    kind: String,
}

async fn fault(
    State(devices): State<Devices>,
    Path(id): Path<String>,
    body: Result<Json<FaultBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|r| {
        ApiError(
            r.status(),
            format!(
                "{}; expected {{\"kind\": \"down\"|\"stall\"|\"restore\"}}",
                r.body_text()
            ),
        )
    })?;
    let device = find(&devices, &id)?;
    match body.kind.as_str() {
        "down" => device.set_down(true),
        "stall" => device.set_stall(true),
        "restore" => {
            device.set_down(false);
            device.set_stall(false);
        }
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("kind: {other:?} is not down, stall or restore"),
            ));
        }
    }
    Ok(Json(
        serde_json::json!({ "device": id, "fault": body.kind }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmBody {
    channel: Option<String>,
    method: Option<u8>,
    #[serde(rename = "type")]
    kind: Option<u16>,
    priority: Option<u8>,
    description: Option<String>,
}

async fn alarm(
    State(devices): State<Devices>,
    Path(id): Path<String>,
    body: Result<Json<AlarmBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|r| {
        ApiError(
            r.status(),
            format!(
                "{}; expected {{\"channel\", \"method\" (1-7), \"type\", \"priority\" (1-4), \"description\"}}, all optional",
                r.body_text()
            ),
        )
    })?;
    let device = find(&devices, &id)?;
    let method = body.method.unwrap_or(5);
    if !(1..=7).contains(&method) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("method: {method} is not 1 to 7"),
        ));
    }
    let priority = body.priority.unwrap_or(1);
    if !(1..=4).contains(&priority) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("priority: {priority} is not 1 to 4"),
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 200)
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "description: more than 200 characters".into(),
        ));
    }
    let channel = match body.channel {
        Some(c) => c,
        None => cameras_of(&device.options.id, device.options.channels)
            .into_iter()
            .next()
            .map_or_else(|| device.options.id.clone(), |c| c.id),
    };
    let alarm = Alarm {
        device_id: channel.clone(),
        priority: Some(priority),
        method: Some(method),
        alarm_type: body.kind.or((method == 5).then_some(6)),
        time: Some(crate::time::format_cst(std::time::SystemTime::now()).replace(' ', "T")),
        description: body.description,
        ..Alarm::default()
    };
    device.send_alarm(alarm).await.map_err(|e| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            format!("the platform did not take the alarm: {e}"),
        )
    })?;
    Ok(Json(
        serde_json::json!({ "device": id, "channel": channel, "sent": true }),
    ))
}
