//! Camera inventory and health endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::camera::{CameraEntry, REASONS, codec_name};
use crate::config::{self, CameraOrigin, raw::RawCamera};
use crate::health::{self, GroupBy, QualityFault};
use crate::sync::lock;
use crate::time::unix_ms;

/// A camera as the API shows it.
#[derive(Serialize)]
pub struct CameraView {
    id: String,
    /// How its video or state arrives: rtsp, rtsps, rtmp, http, file, gb28181.
    source: &'static str,
    gb_code: Option<String>,
    name: String,
    area_code: Option<String>,
    area_path: Option<String>,
    jurisdiction: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    priority: u8,
    tags: Vec<String>,
    enabled: bool,
    state: health::CameraState,
    reason: Option<health::OfflineReason>,
    faults: Vec<FaultView>,
    since_ms: i64,
    fps_in: f64,
    fps_analysed: f64,
    stream: Option<StreamView>,
    last_error: Option<String>,
    activity: ActivityView,
    counters: CountersView,
}

#[derive(Serialize)]
struct FaultView {
    code: QualityFault,
    zh: &'static str,
    en: &'static str,
}

#[derive(Serialize)]
struct StreamView {
    codec: &'static str,
    width: u32,
    height: u32,
    transport: &'static str,
}

/// Whether anything moves in front of the camera (`[activity]`).
#[derive(Serialize)]
struct ActivityView {
    /// warming, active, suspect or idle.
    state: &'static str,
    /// What keeps it active: bitstream, picture or people.
    evidence: Option<&'static str>,
    /// The last change in the stream that made it suspect.
    last_change: Option<&'static str>,
    /// Learned P-frame bytes per second of the quiet scene.
    quiet_bytes_per_s: Option<f64>,
    /// Decoded pictures compared with the one before.
    pictures_compared: u64,
    /// Of those, how many moved.
    pictures_moved: u64,
    /// Share of those comparisons the bitstream signal agreed with.
    bitstream_agreement: Option<f64>,
}

#[derive(Serialize)]
struct CountersView {
    frames_in: u64,
    keyframes_in: u64,
    bytes_in: u64,
    submitted: u64,
    analysed: u64,
    skipped_by_gate: u64,
    skipped_idle: u64,
    vqd_only: u64,
    reconnects: BTreeMap<&'static str, u64>,
}

/// Builds the view of one camera.
pub fn view(entry: &CameraEntry) -> CameraView {
    let cam = entry.camera();
    let (status, fps_in, fps_analysed) = {
        let t = lock(&entry.tracker);
        (t.status(), t.fps_in(), t.fps_analysed())
    };
    let c = &entry.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    CameraView {
        id: cam.id.clone(),
        source: cam.source.as_str(),
        gb_code: cam.gb_code.clone(),
        name: cam.name.clone(),
        area_code: cam.area_code.clone(),
        area_path: cam.area_path.as_ref().map(|a| a.to_string()),
        jurisdiction: cam.jurisdiction.clone(),
        lat: cam.location.as_ref().map(|g| g.lat),
        lon: cam.location.as_ref().map(|g| g.lon),
        priority: cam.priority,
        tags: cam.tags.clone(),
        enabled: cam.enabled,
        state: status.state,
        reason: status.reason,
        faults: status
            .faults
            .iter()
            .map(|f| FaultView {
                code: *f,
                zh: f.zh(),
                en: f.en(),
            })
            .collect(),
        since_ms: unix_ms(status.since),
        fps_in,
        fps_analysed,
        stream: lock(&entry.stream).as_ref().map(|s| StreamView {
            codec: codec_name(s.codec),
            width: s.width,
            height: s.height,
            transport: s.transport,
        }),
        last_error: lock(&entry.last_error).clone(),
        activity: activity_view(&lock(&entry.activity)),
        counters: CountersView {
            frames_in: get(&c.frames_in),
            keyframes_in: get(&c.keyframes_in),
            bytes_in: get(&c.bytes_in),
            submitted: get(&c.submitted),
            analysed: get(&c.analysed),
            skipped_by_gate: get(&c.skipped_by_gate),
            skipped_idle: get(&c.skipped_idle),
            vqd_only: get(&c.vqd_only),
            reconnects: REASONS
                .iter()
                .zip(&c.reconnects)
                .map(|(r, n)| (r.as_str(), get(n)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        },
    }
}

/// Filters for `GET /api/cameras`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only cameras whose area path starts with this (`示范县/城关镇`).
    area: Option<String>,
    /// Only cameras in this state.
    state: Option<String>,
}

pub async fn list(
    State(st): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let views = every_view(&st)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .filter(|v| {
            q.area.as_deref().is_none_or(|a| {
                v["area_path"]
                    .as_str()
                    .is_some_and(|p| crate::config::area_contains(a, p))
            })
        })
        .filter(|v| q.state.as_deref().is_none_or(|s| v["state"] == s))
        .collect();
    Ok(Json(views))
}

/// A camera view written by another node longer ago than this is marked `stale` (its holder
/// stopped writing: it died, or the camera is between holders).
const VIEW_STALE_MS: i64 = 15_000;

/// Every camera this node answers for, as JSON views with their health status, sorted by id: on a
/// single node its fleet; in a cluster every camera of the store: the ones this node runs (live),
/// the others as their holders last wrote them, each with `node` (the node holding its lease now,
/// `null` between holders), `updated_ms` and `stale` (written by another node than the holder, or
/// not lately).
pub(super) async fn every_view(
    st: &AppState,
) -> Result<Vec<(serde_json::Value, health::Status)>, ApiError> {
    let local: Vec<(String, serde_json::Value, health::Status)> = st
        .fleet
        .list()
        .iter()
        .map(|e| {
            (
                e.id.to_string(),
                serde_json::to_value(view(e)).unwrap_or_default(),
                lock(&e.tracker).status(),
            )
        })
        .collect();
    let Some(cluster) = &st.cluster else {
        return Ok(local.into_iter().map(|(_, v, s)| (v, s)).collect());
    };
    let ids = stored_ids(st).await?;
    let views = cluster.views.clone();
    let (stored, now) = tokio::task::spawn_blocking(move || views.all())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the cameras of the other nodes cannot be read: {e}"),
            )
        })?;
    let mut out: BTreeMap<String, (serde_json::Value, health::Status)> = BTreeMap::new();
    for row in stored {
        if !ids.contains(&row.camera) {
            continue;
        }
        let (Ok(mut v), Ok(status)) = (
            serde_json::from_str::<serde_json::Value>(&row.view),
            serde_json::from_str::<health::Status>(&row.status),
        ) else {
            continue;
        };
        // Written by a node that no longer holds the camera (a hand-over under way), or not
        // rewritten lately (its holder died): stale.
        let stale = row.holder.as_deref() != Some(row.node.as_str())
            || now - row.updated_ms > VIEW_STALE_MS;
        v["node"] = row.holder.into();
        v["updated_ms"] = row.updated_ms.into();
        v["stale"] = stale.into();
        out.insert(row.camera, (v, status));
    }
    let now = unix_ms(SystemTime::now());
    for (id, mut v, status) in local {
        v["node"] = cluster.node.clone().into();
        v["updated_ms"] = now.into();
        v["stale"] = false.into();
        out.insert(id, (v, status));
    }
    Ok(out.into_values().collect())
}

/// Writes the views of the cameras this node runs every 3 s, for the other nodes' lists (in a
/// cluster), until `cancel` fires.
pub async fn publish_views(
    fleet: Arc<crate::camera::Fleet>,
    views: crate::store::views::FleetViews,
    node: String,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rows: Vec<(String, String, String)> = fleet
            .list()
            .iter()
            .map(|e| {
                (
                    e.id.to_string(),
                    serde_json::to_string(&view(e)).unwrap_or_default(),
                    serde_json::to_string(&lock(&e.tracker).status()).unwrap_or_default(),
                )
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let (views, node) = (views.clone(), node.clone());
        match tokio::task::spawn_blocking(move || views.put(&node, &rows)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "camera views not written for the other nodes")
            }
            Err(e) => tracing::warn!(error = %e, "camera views not written for the other nodes"),
        }
    }
}

/// The camera's live entry, or 404 naming it.
fn live_camera(st: &AppState, id: &str) -> Result<Arc<CameraEntry>, ApiError> {
    st.fleet.get(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("camera {id:?} does not exist"),
        )
    })
}

pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if st.cluster.is_none() || st.fleet.get(&id).is_some() {
        let entry = live_camera(&st, &id)?;
        let mut v = serde_json::to_value(view(&entry)).unwrap_or_default();
        if let Some(c) = &st.cluster {
            v["node"] = c.node.clone().into();
            v["stale"] = false.into();
        }
        return Ok(Json(v));
    }
    every_view(&st)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .find(|v| v["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("camera {id:?} does not exist"),
            )
        })
}

/// `GET /api/cameras/{id}/activity`: the camera's activity with the detector's latest frames.
#[derive(Serialize)]
pub struct ActivityDetail {
    #[serde(flatten)]
    summary: ActivityView,
    /// The camera's usual keyframe interval, seconds.
    keyframe_interval_s: Option<f64>,
    /// The latest frames the detector analysed (arrival and answer, unix ms), oldest first.
    analysed: Vec<crate::activity::Analysed>,
}

pub async fn activity(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ActivityDetail>, ApiError> {
    let entry = live_camera(&st, &id)?;
    let a = lock(&entry.activity);
    Ok(Json(ActivityDetail {
        summary: activity_view(&a),
        keyframe_interval_s: a.keyframe_interval().map(|d| d.as_secs_f64()),
        analysed: a.analysed.iter().copied().collect(),
    }))
}

fn activity_view(a: &crate::activity::CameraActivity) -> ActivityView {
    let now = std::time::Instant::now();
    ActivityView {
        state: a.state(now).as_str(),
        evidence: a.evidence(now).map(|e| e.as_str()),
        last_change: a.last_change().map(|c| c.as_str()),
        quiet_bytes_per_s: a.quiet_level().map(|q| q.round()),
        pictures_compared: a.pictures_compared,
        pictures_moved: a.pictures_moved,
        bitstream_agreement: (a.pictures_compared > 0)
            .then(|| a.pictures_agreed as f64 / a.pictures_compared as f64),
    }
}

fn parse_camera(
    body: Result<Json<serde_json::Value>, JsonRejection>,
    st: &AppState,
) -> Result<config::Camera, ApiError> {
    // The rejection's own status: 413 for a body over the limit, 415 without JSON, 400 otherwise.
    let Json(value) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut raw: RawCamera = serde_json::from_value(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("camera: {e}")))?;
    raw.origin = Some(CameraOrigin::Api);
    let (mut cameras, errors) = config::validate_runtime_cameras(vec![raw], &st.config);
    if !errors.is_empty() {
        return Err(ApiError::invalid("the camera is not valid", errors));
    }
    cameras
        .pop()
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "the camera is not valid"))
}

fn fleet_error(e: crate::camera::FleetError) -> ApiError {
    use crate::camera::FleetError::*;
    let status = match e {
        Exists(_) => StatusCode::CONFLICT,
        Missing(_) => StatusCode::NOT_FOUND,
        UnknownCredentials { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// A change of the inventory, saved in the store.
enum Saving<'a> {
    Save(&'a config::Camera),
    /// The id, and whether to remember the removal (a GB/T 28181 channel).
    Remove(&'a str, bool),
}

/// Saves a change the fleet has just taken; 503 when the store refuses it (the caller then
/// undoes the fleet's change, so what runs is what a restart would run).
async fn persist(st: &AppState, change: Saving<'_>) -> Result<(), ApiError> {
    let inventory = st.inventory.clone();
    let now = unix_ms(SystemTime::now());
    let (id, definition) = match change {
        Saving::Save(c) => (c.id.clone(), Ok(c.definition.clone())),
        Saving::Remove(id, remember) => (id.to_owned(), Err(remember)),
    };
    let result = tokio::task::spawn_blocking(move || match definition {
        Ok(d) => inventory.save(&id, &d, now),
        Err(remember) => inventory.remove(&id, now, remember),
    })
    .await;
    let error = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(error = %error, "the camera inventory could not be saved; the change is undone");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the change could not be saved, so it was not made: {error}"),
    ))
}

/// The ids of the cameras in the store (a cluster node answers for every camera, held here or
/// not); 503 when the store cannot be read.
async fn stored_ids(st: &AppState) -> Result<std::collections::HashSet<String>, ApiError> {
    let inventory = st.inventory.clone();
    match tokio::task::spawn_blocking(move || inventory.cameras()).await {
        Ok(Ok(rows)) => Ok(rows
            .into_iter()
            .filter(|r| !r.removed)
            .map(|r| r.id)
            .collect()),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the camera inventory cannot be read: {e}"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the camera inventory cannot be read: {e}"),
        )),
    }
}

/// In a cluster a change goes to the store only: the node that should hold the camera starts it
/// (or restarts, or stops it) on its next pass; this node's keeper is asked for a pass at once.
/// Answers with the camera as it will start. `stored` is the store's ids (read once per request;
/// a saved camera joins it, so an import's repeated id is refused).
async fn save_in_cluster(
    st: &AppState,
    cluster: &super::ClusterView,
    stored: &mut std::collections::HashSet<String>,
    camera: config::Camera,
    exists: bool,
) -> Result<Arc<CameraEntry>, ApiError> {
    let known = stored.contains(&camera.id);
    if known != exists {
        return Err(fleet_error(if known {
            crate::camera::FleetError::Exists(camera.id)
        } else {
            crate::camera::FleetError::Missing(camera.id)
        }));
    }
    let entry = st.fleet.preview(camera).map_err(fleet_error)?;
    persist(st, Saving::Save(&entry.camera())).await?;
    stored.insert(entry.camera().id.clone());
    st.ledger.upsert_camera(&entry.camera()).await;
    cluster.nudge.nudge();
    Ok(entry)
}

pub async fn create(
    State(st): State<Arc<AppState>>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<CameraView>), ApiError> {
    let camera = parse_camera(body, &st)?;
    if let Some(cluster) = &st.cluster {
        let entry =
            save_in_cluster(&st, cluster, &mut stored_ids(&st).await?, camera, false).await?;
        return Ok((StatusCode::CREATED, Json(view(&entry))));
    }
    let entry = st.fleet.add(camera).map_err(fleet_error)?;
    if let Err(e) = persist(&st, Saving::Save(&entry.camera())).await {
        let _ = st.fleet.remove(&entry.camera().id);
        return Err(e);
    }
    st.ledger.upsert_camera(&entry.camera()).await;
    Ok((StatusCode::CREATED, Json(view(&entry))))
}

pub async fn replace(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<CameraView>, ApiError> {
    let camera = parse_camera(body, &st)?;
    if camera.id != id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("id: the body says {:?} but the URL says {id:?}", camera.id),
        ));
    }
    if let Some(cluster) = &st.cluster {
        let entry =
            save_in_cluster(&st, cluster, &mut stored_ids(&st).await?, camera, true).await?;
        return Ok(Json(view(&entry)));
    }
    let before = live_camera(&st, &id)?.camera();
    let entry = st.fleet.update(camera).map_err(fleet_error)?;
    if let Err(e) = persist(&st, Saving::Save(&entry.camera())).await {
        let _ = st.fleet.update(before);
        return Err(e);
    }
    st.ledger.upsert_camera(&entry.camera()).await;
    Ok(Json(view(&entry)))
}

pub async fn delete(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if let Some(cluster) = &st.cluster {
        let inventory = st.inventory.clone();
        let rows = tokio::task::spawn_blocking(move || inventory.cameras())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the camera inventory cannot be read: {e}"),
                )
            })?;
        let Some(row) = rows.iter().find(|r| r.id == id && !r.removed) else {
            return Err(fleet_error(crate::camera::FleetError::Missing(id)));
        };
        let remember = config::inventory::is_gb_channel(row);
        persist(&st, Saving::Remove(&id, remember)).await?;
        st.ledger.remove_camera(&id).await;
        cluster.nudge.nudge();
        return Ok(StatusCode::NO_CONTENT);
    }
    let removed = st.fleet.remove(&id).map_err(fleet_error)?;
    // A GB/T 28181 channel's removal is remembered: its device's catalogs do not add it again.
    let remember = removed.camera().source == config::SourceKind::Gb28181;
    if let Err(e) = persist(&st, Saving::Remove(&id, remember)).await {
        let _ = st.fleet.add(removed.camera());
        return Err(e);
    }
    st.ledger.remove_camera(&id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct ImportResult {
    imported: Vec<String>,
    errors: Vec<super::FieldError>,
}

/// `POST /api/cameras/import`: a CSV body; valid rows are added, every bad row is reported by line and column.
/// Largest CSV inventory one import takes, bytes (413 above).
pub const MAX_IMPORT_BYTES: usize = 5 << 20;
/// Most cameras one import takes (413 above): a county's inventory, in one or a few files.
pub const MAX_IMPORT_ROWS: usize = 10_000;

pub async fn import(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<ImportResult>, ApiError> {
    // Lines after the header (a quoted field spanning lines counts each of its lines).
    let rows = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count()
        .saturating_sub(1);
    if rows > MAX_IMPORT_ROWS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the CSV has {rows} rows; at most {MAX_IMPORT_ROWS} cameras per import"),
        ));
    }
    let (cameras, errors) = config::import_csv_cameras("upload.csv", &body, &st.config);
    let mut errors: Vec<super::FieldError> = errors
        .into_iter()
        .map(|e| super::FieldError {
            field: e.path,
            message: e.message,
        })
        .collect();
    let mut imported = Vec::new();
    if let Some(cluster) = &st.cluster {
        let mut stored = stored_ids(&st).await?;
        for camera in cameras {
            let id = camera.id.clone();
            let field = camera.origin.field_path("id");
            match save_in_cluster(&st, cluster, &mut stored, camera, false).await {
                Ok(_) => imported.push(id),
                Err(e) => errors.push(super::FieldError {
                    field,
                    message: e.message().to_owned(),
                }),
            }
        }
        return Ok(Json(ImportResult { imported, errors }));
    }
    for camera in cameras {
        let id = camera.id.clone();
        let field = camera.origin.field_path("id");
        match st.fleet.add(camera) {
            Ok(entry) => {
                if let Err(e) = persist(&st, Saving::Save(&entry.camera())).await {
                    let _ = st.fleet.remove(&id);
                    errors.push(super::FieldError {
                        field,
                        message: e.message().to_owned(),
                    });
                    continue;
                }
                st.ledger.upsert_camera(&entry.camera()).await;
                imported.push(id);
            }
            Err(e) => errors.push(super::FieldError {
                field,
                message: e.to_string(),
            }),
        }
    }
    Ok(Json(ImportResult { imported, errors }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// Only cameras in this area or under it (`示范县/城关镇`).
    area: Option<String>,
}

pub async fn summary(
    State(st): State<Arc<AppState>>,
    query: Result<Query<SummaryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<health::Summary>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let statuses: Vec<health::Status> = every_view(&st)
        .await?
        .into_iter()
        .filter(|(v, _)| {
            q.area.as_deref().is_none_or(|a| {
                v["area_path"]
                    .as_str()
                    .is_some_and(|p| crate::config::area_contains(a, p))
            })
        })
        .map(|(_, s)| s)
        .collect();
    Ok(Json(health::summarize(statuses.iter())))
}

/// `GET /api/cameras/{id}/frame.jpg`: the camera's latest picture (plain, ≤ 640 px wide). The first
/// request starts refreshing it from decoded frames and waits up to 5 s for one; later ones within a
/// minute get the cached picture, at most 5 s old while frames flow. Header `X-Frame-Age-Ms`.
pub async fn frame(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if let Some(cluster) = &st.cluster
        && st.fleet.get(&id).is_none()
    {
        return from_holder(
            cluster,
            &id,
            &format!("/api/cameras/{id}/frame.jpg"),
            &headers,
        )
        .await;
    }
    let entry = live_camera(&st, &id)?;
    let watch = || {
        let mut t = lock(&entry.thumbnail);
        t.wanted_until = Some(std::time::Instant::now() + crate::camera::Thumbnail::WATCH);
        t.jpeg.clone()
    };
    let fresh = |at: SystemTime| {
        SystemTime::now()
            .duration_since(at)
            .is_ok_and(|age| age < Duration::from_secs(15))
    };
    let mut got = watch();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !got.as_ref().is_some_and(|(_, at)| fresh(*at)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = lock(&entry.thumbnail).jpeg.clone();
    }
    let Some((jpeg, at)) = got else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "camera {id:?} has no decoded picture yet (offline, or no frame in the last 5 s)"
            ),
        ));
    };
    let age = SystemTime::now()
        .duration_since(at)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/jpeg".to_owned()),
            (axum::http::header::CACHE_CONTROL, "no-store".to_owned()),
            (axum::http::HeaderName::from_static("x-frame-age-ms"), age),
        ],
        jpeg,
    )
        .into_response())
}

/// A per-camera request for a camera another node of the cluster holds: passed to that node with
/// the caller's credentials (sessions and tokens are in the shared database), its answer passed
/// back with `X-Served-By`.
async fn from_holder(
    cluster: &super::ClusterView,
    id: &str,
    path: &str,
    headers: &axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let views = cluster.views.clone();
    let camera = id.to_owned();
    let holder = tokio::task::spawn_blocking(move || views.holder(&camera))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("camera {id:?}: its holder cannot be read: {e}"),
            )
        })?;
    let Some((node, address)) = holder else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("camera {id:?} does not exist, or no node runs it now"),
        ));
    };
    if node == cluster.node {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("camera {id:?} is starting on this node; try again"),
        ));
    }
    let Some(address) = address else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "camera {id:?} runs on node {node}, whose address is unknown ([cluster] advertise_url)"
            ),
        ));
    };
    let mut req = cluster.http.get(format!("{address}{path}"));
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::COOKIE,
    ] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name.as_str(), v.as_bytes());
        }
    }
    let answer = req.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("camera {id:?} runs on node {node}, which did not answer: {e}"),
        )
    })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = axum::http::HeaderMap::new();
    for name in ["content-type", "cache-control", "x-frame-age-ms"] {
        if let Some(v) = answer.headers().get(name)
            && let Ok(v) = axum::http::HeaderValue::from_bytes(v.as_bytes())
        {
            out.insert(axum::http::HeaderName::from_static(name), v);
        }
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&node) {
        out.insert(axum::http::HeaderName::from_static("x-served-by"), v);
    }
    let body = answer.bytes().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("camera {id:?}: node {node}'s answer broke off: {e}"),
        )
    })?;
    Ok((status, out, body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    /// Start, unix milliseconds (default: 24 h ago).
    from: Option<i64>,
    /// End, unix milliseconds (default: now).
    to: Option<i64>,
    /// camera | area | day | month (default camera).
    group_by: Option<String>,
    /// json (default) | csv (a table to download, e.g. the monthly report).
    format: Option<String>,
    /// Only this camera's row (`group_by=camera`).
    camera: Option<String>,
    /// JSON rows per page (default and at most [`AVAILABILITY_PAGE`]); the CSV is one whole file.
    limit: Option<usize>,
    /// Rows skipped before the page (default 0); `X-Total-Count` says how many there are.
    offset: Option<usize>,
}

/// Most rows one JSON page of `GET /api/health/availability` holds.
pub const AVAILABILITY_PAGE: usize = 500;

pub async fn availability(
    State(st): State<Arc<AppState>>,
    query: Result<Query<AvailabilityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let now = SystemTime::now();
    let at = |ms: i64, field: &str| {
        u64::try_from(ms)
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{field}: must be unix milliseconds ≥ 0"),
                )
            })
    };
    let to = q.to.map(|ms| at(ms, "to")).transpose()?.unwrap_or(now);
    let from = q
        .from
        .map(|ms| at(ms, "from"))
        .transpose()?
        .unwrap_or(to - Duration::from_secs(86_400));
    if from >= to {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "from: must be before to",
        ));
    }
    let group_by = match q.group_by.as_deref().unwrap_or("camera") {
        "camera" => GroupBy::Camera,
        "area" => GroupBy::Area,
        "day" => GroupBy::Day,
        "month" => GroupBy::Month,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("group_by: {other:?} is not one of camera, area, day, month"),
            ));
        }
    };
    let csv = match q.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format: {other:?} is not one of json, csv"),
            ));
        }
    };
    let limit = match q.limit {
        None => AVAILABILITY_PAGE,
        Some(n) if (1..=AVAILABILITY_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit: {n} must be 1 to {AVAILABILITY_PAGE} (page with offset)"),
            ));
        }
    };
    if q.camera.is_some() && group_by != GroupBy::Camera {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "camera: only with group_by=camera",
        ));
    }
    let mut rows = st
        .ledger
        .availability(from, to, group_by)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    if let Some(c) = &q.camera {
        rows.retain(|r| &r.key == c);
    }
    if !csv {
        let total = rows.len();
        let page: Vec<_> = rows
            .into_iter()
            .skip(q.offset.unwrap_or(0))
            .take(limit)
            .collect();
        let mut res = Json(page).into_response();
        res.headers_mut()
            .insert("x-total-count", axum::http::HeaderValue::from(total as u64));
        return Ok(res);
    }
    let names: BTreeMap<String, (String, String)> = st
        .fleet
        .list()
        .iter()
        .map(|e| {
            let c = e.camera();
            (
                c.id.clone(),
                (
                    c.name.clone(),
                    c.area_path
                        .as_ref()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                ),
            )
        })
        .collect();
    let body = availability_csv(&rows, group_by, &names, from, to);
    let file = format!(
        "availability-{}-{}.csv",
        unix_ms(from) / 1000,
        unix_ms(to) / 1000
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The availability table as CSV (UTF-8 with a BOM so spreadsheet software shows Chinese properly).
fn availability_csv(
    rows: &[health::AvailabilityRow],
    group_by: GroupBy,
    names: &BTreeMap<String, (String, String)>,
    from: SystemTime,
    to: SystemTime,
) -> String {
    fn cell(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    }
    let pct = |v: Option<f64>| v.map(|x| format!("{:.2}", 100.0 * x)).unwrap_or_default();
    let mut out = String::from("\u{feff}");
    out.push_str(&format!(
        "# availability from {} to {} (unix ms)\n",
        unix_ms(from),
        unix_ms(to)
    ));
    let key = match group_by {
        GroupBy::Camera => "camera_id,camera_name,area",
        GroupBy::Area => "area",
        GroupBy::Day => "day",
        GroupBy::Month => "month",
    };
    out.push_str(&format!(
        "{key},scheduled_hours,online_hours,intact_hours,availability_pct,intact_pct\n"
    ));
    for r in rows {
        let k = match group_by {
            GroupBy::Camera => {
                let (name, area) = names.get(&r.key).cloned().unwrap_or_default();
                format!("{},{},{}", cell(&r.key), cell(&name), cell(&area))
            }
            _ => cell(&r.key),
        };
        out.push_str(&format!(
            "{k},{:.3},{:.3},{:.3},{},{}\n",
            r.scheduled_s / 3600.0,
            r.online_s / 3600.0,
            r.intact_s / 3600.0,
            pct(r.availability),
            pct(r.intact_rate)
        ));
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<usize>,
}

pub async fn history(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<health::Transition>>, ApiError> {
    let history = st
        .ledger
        .history(&id, q.limit.unwrap_or(100).min(10_000))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    // A removed camera keeps its history (its removal is a transition); an id never known is 404.
    if history.is_empty() {
        live_camera(&st, &id)?;
    }
    Ok(Json(history))
}
