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
    /// Evidence clips: `null` when off.
    clips: Option<ClipInfo>,
    /// This node in a cluster: `null` on a single node.
    cluster: Option<ClusterInfo>,
    /// GB/T 28181: `null` without a `[gb28181]` section.
    gb28181: Option<GbInfo>,
}

/// The GB/T 28181 platform.
#[derive(Serialize)]
struct GbInfo {
    /// The SIP port (UDP and TCP).
    sip_port: u16,
    /// Devices registered since start.
    devices: usize,
    /// Devices online now.
    online: usize,
}

/// This node's place in the cluster.
#[derive(Serialize)]
struct ClusterInfo {
    /// Its id.
    node_id: String,
    /// Live nodes at the last beat, this one included.
    nodes: u64,
    /// Cameras it holds and runs.
    cameras_held: u64,
    /// True while it cannot renew its leases and runs no camera.
    fenced: bool,
}

/// The clip stage at a glance.
#[derive(Serialize)]
struct ClipInfo {
    cameras: &'static str,
    pre_s: f64,
    post_s: f64,
    buffered_cameras: usize,
    buffer_bytes: u64,
    buffer_budget_bytes: u64,
    ready: u64,
    failed: u64,
}

#[derive(Serialize)]
struct ModelInfo {
    name: String,
    execution_provider: &'static str,
}

/// `GET /readyz`: 200 `ready` when this node takes cameras; 503 with the reason while a cluster
/// node cannot renew its leases (it fenced itself) or has not beaten yet. For Kubernetes'
/// readiness probe.
pub async fn ready(State(st): State<Arc<AppState>>) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    use std::sync::atomic::Ordering::Relaxed;
    match &st.cluster {
        None => (StatusCode::OK, "ready"),
        Some(c) if c.stats.fenced.load(Relaxed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: camera leases cannot be renewed (the database is unreachable); this node runs no camera",
        ),
        Some(c) if c.stats.nodes_live.load(Relaxed) == 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not yet registered in the cluster",
        ),
        Some(_) => (StatusCode::OK, "ready"),
    }
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
        gb28181: st.gb28181.as_ref().map(|g| {
            let s = g.summary();
            GbInfo {
                sip_port: g.local_addr().port(),
                devices: s.devices,
                online: s.online,
            }
        }),
        cluster: st.cluster.as_ref().map(|c| {
            use std::sync::atomic::Ordering::Relaxed;
            ClusterInfo {
                node_id: c.node.clone(),
                nodes: c.stats.nodes_live.load(Relaxed),
                cameras_held: c.stats.held.load(Relaxed),
                fenced: c.stats.fenced.load(Relaxed),
            }
        }),
        clips: st.clips.as_ref().map(|c| {
            use std::sync::atomic::Ordering::Relaxed;
            let cfg = c.config();
            ClipInfo {
                cameras: match cfg.cameras {
                    crate::clip::Buffered::Rules => "rules",
                    crate::clip::Buffered::All => "all",
                    crate::clip::Buffered::None => "none",
                },
                pre_s: cfg.pre.as_secs_f64(),
                post_s: cfg.post.as_secs_f64(),
                buffered_cameras: c.buffered_cameras(),
                buffer_bytes: c.stats.held.load(Relaxed),
                buffer_budget_bytes: cfg.memory_budget,
                ready: c.stats.ready.load(Relaxed),
                failed: c.stats.failed.load(Relaxed),
            }
        }),
    })
}
