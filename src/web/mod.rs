//! Web: the HTTP API (axum, JSON) and Prometheus `/metrics`.
//!
//! In: requests. Out: views of the fleet and the ledger, and camera changes applied to the fleet.
//! Handlers never block the runtime: ledger queries go to the ledger thread and await its answer.

pub mod alert_api;
#[cfg(test)]
mod auth_tests;
mod cameras;
mod gb_api;
pub use cameras::publish_views;
pub mod edge;
pub mod guard;
mod metrics;
pub mod routes;
mod rules_api;
mod system;
pub mod ui;
pub mod users_api;

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Serialize;

use crate::camera::Fleet;
use crate::config::{Config, ConfigError};
use crate::decode::DecodeDrops;
use crate::health::LedgerHandle;

/// What handlers share.
pub struct AppState {
    /// The live inventory.
    pub fleet: Arc<Fleet>,
    /// The online-rate ledger (on its own thread).
    pub ledger: LedgerHandle,
    /// Where camera definitions are kept: what the API adds, changes and removes survives a restart.
    pub inventory: Arc<dyn crate::config::inventory::CameraStore>,
    /// The configuration the service started with (defaults for cameras added at run time).
    pub config: Config,
    /// Start time, for /api/system.
    pub started: SystemTime,
    /// Loaded models and the execution provider each runs on.
    pub models: Vec<(String, &'static str)>,
    /// Decoded frames not handed to analysis because its queue was full.
    pub analysis_dropped: Arc<std::sync::atomic::AtomicU64>,
    /// Every queue between stages: capacity, full-policy and drops by reason.
    pub queues: Arc<Vec<crate::queue::QueueInfo>>,
    /// Frames not handed to analysis while alerts waited for a failing store.
    pub store_blocked: Arc<std::sync::atomic::AtomicU64>,
    /// Alert store, outbox and feed.
    pub delivery: Arc<crate::delivery::Delivery>,
    /// Rules-stage counters, when analysis runs.
    pub rules_stats: Option<Arc<crate::rules::runner::RulesStats>>,
    /// The rules document the editor reads and replaces.
    pub live_rules: Arc<crate::rules::live::LiveRules>,
    /// Users, sessions, roles and the audit log.
    pub auth: Arc<crate::auth::Auth>,
    /// Reads the decoders' drop counters (`/metrics` adds the cameras' gate counts to them).
    pub decode_drops: Arc<dyn Fn() -> DecodeDrops + Send + Sync>,
    /// Reads each model's batcher and inference counters.
    pub model_stats: Arc<dyn Fn() -> Vec<ModelStats> + Send + Sync>,
    /// Frames waiting in each decoder worker's queue now.
    pub decode_queue: Arc<dyn Fn() -> Vec<usize> + Send + Sync>,
    /// The clip stage (`None` when `[clip] enabled = false`).
    pub clips: Option<Arc<crate::clip::Recorder>>,
    /// This node's place in a cluster (`None`: one node on SQLite).
    pub cluster: Option<ClusterView>,
    /// The GB/T 28181 platform (`None`: no `[gb28181]` section).
    pub gb28181: Option<crate::gb28181::Gb28181>,
}

/// What the web stage sees of the cluster stage.
#[derive(Clone)]
pub struct ClusterView {
    /// This node's id.
    pub node: String,
    /// The keeper's counters.
    pub stats: Arc<crate::cluster::ClusterStats>,
    /// The epochs writes are checked against (and its refusals).
    pub fence: Arc<crate::db::lease::Fence>,
    /// Asks the keeper for a pass now (a camera changed through the API).
    pub nudge: crate::cluster::Nudge,
    /// Every node's camera views (this node writes its own).
    pub views: crate::store::views::FleetViews,
    /// Passes per-camera requests to the camera's holder.
    pub http: reqwest::Client,
}

/// One model's pipeline counters, for `/metrics`.
#[derive(Debug, Clone)]
pub struct ModelStats {
    /// Model name.
    pub model: String,
    /// Batcher counters (pending = its queue depth now).
    pub batch: crate::batch::BatchStats,
    /// Inference counters and histograms.
    pub infer: crate::infer::InferStats,
    /// The admission budget's capacity, demand and cuts.
    pub budget: crate::batch::BudgetSnapshot,
}

/// The API's routes, each behind the guard its entry in [`routes::ENDPOINTS`] names, plus the
/// login/users API and the UI.
pub fn router(state: Arc<AppState>) -> Router {
    let st = || state.clone();
    routes::Routes::new(state.auth.clone())
        .add("GET", "/api/cameras", get(cameras::list).with_state(st()))
        .add(
            "POST",
            "/api/cameras",
            post(cameras::create).with_state(st()),
        )
        .add(
            "POST",
            "/api/cameras/import",
            post(cameras::import)
                .with_state(st())
                .layer(axum::extract::DefaultBodyLimit::max(
                    cameras::MAX_IMPORT_BYTES,
                )),
        )
        .add(
            "GET",
            "/api/cameras/{id}",
            get(cameras::one).with_state(st()),
        )
        .add(
            "PUT",
            "/api/cameras/{id}",
            put(cameras::replace).with_state(st()),
        )
        .add(
            "DELETE",
            "/api/cameras/{id}",
            delete(cameras::delete).with_state(st()),
        )
        .add(
            "GET",
            "/api/cameras/{id}/history",
            get(cameras::history).with_state(st()),
        )
        .add(
            "GET",
            "/api/cameras/{id}/activity",
            get(cameras::activity).with_state(st()),
        )
        .add(
            "GET",
            "/api/cameras/{id}/frame.jpg",
            get(cameras::frame).with_state(st()),
        )
        .add(
            "GET",
            "/api/health/summary",
            get(cameras::summary).with_state(st()),
        )
        .add(
            "GET",
            "/api/health/availability",
            get(cameras::availability).with_state(st()),
        )
        .add("GET", "/api/system", get(system::system).with_state(st()))
        .add(
            "GET",
            "/api/gb28181/devices",
            get(gb_api::list).with_state(st()),
        )
        .add(
            "GET",
            "/api/gb28181/devices/{id}",
            get(gb_api::one).with_state(st()),
        )
        .add(
            "POST",
            "/api/gb28181/devices/{id}/catalog",
            post(gb_api::query_catalog).with_state(st()),
        )
        .add(
            "GET",
            "/api/rules",
            get(rules_api::get_rules).with_state(st()),
        )
        .add(
            "PUT",
            "/api/rules",
            put(rules_api::put_rules).with_state(st()),
        )
        .add(
            "GET",
            "/api/openapi.json",
            get(|| async { Json(routes::openapi()) }),
        )
        .add("GET", "/metrics", get(metrics::render).with_state(st()))
        .add("GET", "/healthz", get(|| async { "ok" }))
        .add("GET", "/readyz", get(system::ready).with_state(st()))
        .into_router()
        .merge(alert_api::router(
            alert_api::AlertApi::new(state.delivery.clone()),
            state.auth.clone(),
        ))
        .merge(users_api::router(state.auth.clone()))
        .merge(ui::router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(edge::Edge {
                public_url: state.config.web.public_url.clone(),
                trusted_proxies: state.config.web.trusted_proxies.clone(),
            }),
            edge::edge,
        ))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Every answer: `X-Content-Type-Options: nosniff` (a browser never guesses a type from the bytes);
/// API answers, snapshots and metrics also `Cache-Control: no-store` (alerts and pictures of a police
/// system do not belong in shared or browser caches). A handler's own `Cache-Control` (the UI's
/// revalidated files) stays.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let private = path.starts_with("/api/") || path == "/metrics";
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    if private {
        h.entry(axum::http::header::CACHE_CONTROL)
            .or_insert(axum::http::HeaderValue::from_static("no-store"));
    }
    res
}

/// Test seam: serves `app` on a free loopback port with the peer address known to handlers.
#[cfg(test)]
pub(crate) async fn serve_for_test(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

#[cfg(test)]
mod header_tests {
    use axum::Router;
    use axum::http::header;
    use axum::routing::get;

    /// Served over a real socket: API answers are not cached and never sniffed; a handler's own
    /// Cache-Control stays.
    #[tokio::test]
    async fn api_answers_are_not_cached_and_never_sniffed() {
        let app = Router::new()
            .route("/api/alerts", get(|| async { "[]" }))
            .route(
                "/app.js",
                get(|| async { ([(header::CACHE_CONTROL, "no-cache")], "x") }),
            )
            .layer(axum::middleware::from_fn(super::security_headers));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let api = client
            .get(format!("http://{addr}/api/alerts"))
            .send()
            .await
            .unwrap();
        assert_eq!(api.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(api.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let missing = client
            .get(format!("http://{addr}/api/nothing"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()[header::CACHE_CONTROL], "no-store");
        let ui = client
            .get(format!("http://{addr}/app.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(ui.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(ui.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}

/// An API error: status, a message naming the problem, and the field errors if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    fields: Vec<FieldError>,
}

/// One invalid field.
#[derive(Debug, Serialize)]
pub struct FieldError {
    /// Field path (`url`, `cameras.csv line 4 column lat`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    /// An error without field details.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 422 with every field error.
    pub fn invalid(message: impl Into<String>, errors: Vec<ConfigError>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            fields: errors
                .into_iter()
                .map(|e| FieldError {
                    field: e.path,
                    message: e.message,
                })
                .collect(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "fields": self.fields });
        (self.status, Json(body)).into_response()
    }
}
