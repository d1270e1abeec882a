//! Metric names, in one place so dashboards and code agree.

/// Cameras by health state (`state` label).
pub const CAMERAS_BY_STATE: &str = "qly_cameras";
/// Online rate now (0..1), as DOMAIN.md defines it.
pub const ONLINE_RATE: &str = "qly_online_rate";
/// Intact rate now (0..1).
pub const INTACT_RATE: &str = "qly_intact_rate";
/// Access units received per camera.
pub const FRAMES_IN: &str = "qly_frames_in_total";
/// Frames decoded and analysed per camera.
pub const FRAMES_ANALYSED: &str = "qly_frames_analysed_total";
/// Cameras by activity (`state`: warming, active, suspect, idle; see `[activity]`).
pub const CAMERAS_BY_ACTIVITY: &str = "qly_cameras_activity";
/// Frames not analysed, by reason (`gate`: the keyframe/analysis-rate gate; `idle`: keyframes of idle
/// cameras not decoded; `vqd_only`: pictures of idle cameras decoded for VQD and not offered to the
/// detector; `decode_queue_full`; `decode_error`; `analysis_queue_full`; `store_blocked`).
pub const FRAMES_DROPPED: &str = "qly_frames_dropped_total";
/// Sessions ended, by camera and reason.
pub const RECONNECTS: &str = "qly_reconnects_total";
/// Measured input frame rate per camera.
pub const FPS_IN: &str = "qly_fps_in";
/// Measured analysed frame rate per camera.
pub const FPS_ANALYSED: &str = "qly_fps_analysed";
/// Model outputs processed by the rules stage.
pub const ANALYSED_FRAMES: &str = "qly_rules_frames_total";
/// Candidate alerts raised by the rules.
pub const ALERT_CANDIDATES: &str = "qly_alert_candidates_total";
/// Alerts not raised again: the store had one of the rule on the camera within its cooldown
/// (an event going on across a takeover or a restart).
pub const ALERTS_RESUMED: &str = "qly_alerts_resumed_total";
/// Rule sets swapped in through the API.
pub const RULES_REPLACED: &str = "qly_rules_replaced_total";
/// 1 while the alert store fails writes (alerts then wait and analysis pauses), else 0.
pub const ALERT_STORE_FAILING: &str = "qly_alert_store_failing";
/// Failed alert-store attempts (each is retried until it succeeds).
pub const ALERT_STORE_FAILURES: &str = "qly_alert_store_failures_total";
/// Alerts detected and not yet stored.
pub const ALERTS_WAITING: &str = "qly_alerts_waiting";
/// Each queue between stages: its capacity (`queue`, `from`, `to`, `policy`).
pub const QUEUE_CAPACITY: &str = "qly_queue_capacity";
/// Items a queue between stages dropped, by reason (`queue`, `policy`, `reason`).
pub const QUEUE_DROPPED: &str = "qly_queue_dropped_total";
/// Frames waiting in each decoder worker's queue (`worker` label).
pub const DECODE_QUEUE: &str = "qly_decode_queue_depth";
/// The admission budget's measured capacity, frames per second (`model`).
pub const ADMISSION_CAPACITY: &str = "qly_admission_capacity_fps";
/// What the cameras ask of the model, frames per second (`model`).
pub const ADMISSION_DEMAND: &str = "qly_admission_demand_fps";
/// What the budget lets through, frames per second (`model`).
pub const ADMISSION_ADMITTED: &str = "qly_admission_admitted_fps";
/// Share of the rate above the floor a camera keeps, 0..1 (`model`, `priority`).
pub const ADMISSION_KEEP: &str = "qly_admission_keep";
/// Share of its floor a camera keeps, 0..1 (`model`, `priority`).
pub const ADMISSION_FLOOR_KEEP: &str = "qly_admission_floor_keep";
/// Times a priority started or stopped being cut, or was cut entirely (`model`).
pub const ADMISSION_CHANGES: &str = "qly_admission_changes_total";
/// Frames waiting in each model's batcher (`model` label).
pub const BATCH_PENDING: &str = "qly_batch_pending";
/// Frames the batcher did not infer, by model and reason (`rate`: above the camera's own analysis_fps,
/// over the admission `budget`, `superseded` by a newer frame of the camera, left at `shutdown`).
pub const ANALYSIS_DROPPED: &str = "qly_analysis_dropped_total";
/// Frames sent to the model, by model and camera.
pub const CAMERA_BATCHED: &str = "qly_camera_batched_total";
/// Frames the batcher did not send, by model, camera and reason (only reasons that happened).
pub const CAMERA_ANALYSIS_DROPPED: &str = "qly_camera_analysis_dropped_total";
/// Inference batches run, by model.
pub const INFER_BATCHES: &str = "qly_inference_batches_total";
/// Frames inferred, by model.
pub const INFER_FRAMES: &str = "qly_inference_frames_total";
/// Frames in failed batches, by model.
pub const INFER_FAILED: &str = "qly_inference_failed_total";
/// Batch latency (preprocess + run + postprocess), histogram by model.
pub const INFER_LATENCY: &str = "qly_inference_latency_seconds";
/// Frames per batch, histogram by model.
pub const INFER_BATCH_SIZE: &str = "qly_inference_batch_size";
/// Fall checks run by a detector's fall pass (a person lying, the camera due), by model.
pub const FALL_CHECKS: &str = "qly_fall_checks_total";
/// Lying people the fall pass confirmed as fallen, by model.
pub const FALL_CONFIRMED: &str = "qly_fall_confirmed_total";
/// Time spent in fall checks, seconds, by model.
pub const FALL_SECONDS: &str = "qly_fall_check_seconds_total";
/// Stored alerts by `type` and lifecycle `state`.
pub const ALERTS: &str = "qly_alerts";
/// Outbox rows by `sink` (case, dispatch) and `state` (pending = the backlog, dead).
pub const OUTBOX: &str = "qly_outbox";
/// Failed delivery attempts by `sink`.
pub const DELIVERY_FAILURES: &str = "qly_delivery_failures_total";
/// Cameras keeping a pre-event clip buffer.
pub const CLIP_CAMERAS: &str = "qly_clip_buffered_cameras";
/// Bytes held by all clip buffers.
pub const CLIP_BUFFER_BYTES: &str = "qly_clip_buffer_bytes";
/// The clip buffers' memory budget, bytes.
pub const CLIP_BUFFER_BUDGET: &str = "qly_clip_buffer_budget_bytes";
/// Clips by `result`: started, joined (an alert joined a clip recording), ready, failed, expired.
pub const CLIPS: &str = "qly_clips_total";
/// Bytes dropped from clip buffers by `reason`: camera_budget, pressure (the budget of all).
pub const CLIP_DROPPED: &str = "qly_clip_buffer_dropped_bytes_total";
/// Live nodes of the cluster this node saw at its last beat (0 on a single node).
pub const CLUSTER_NODES: &str = "qly_cluster_nodes";
/// Cameras this node holds by lease and runs.
pub const CLUSTER_HELD: &str = "qly_cluster_cameras_held";
/// Camera leases by `kind`: taken, given (to the node that should hold them, or removed), lost.
pub const CLUSTER_LEASE_CHANGES: &str = "qly_cluster_lease_changes_total";
/// Times this node stopped every camera because it could not renew its leases.
pub const CLUSTER_SELF_FENCED: &str = "qly_cluster_self_fenced_total";
/// Heartbeats that failed (the database unreachable).
pub const CLUSTER_FAILED_BEATS: &str = "qly_cluster_failed_beats_total";
/// Alert and health writes refused by `reason`: not_held (this node has no lease on the camera),
/// stale_epoch (another node took the camera before the time written about).
pub const FENCED_WRITES: &str = "qly_fenced_writes_total";
/// GB/T 28181 devices registered since start, by `state`: online, offline.
pub const GB_DEVICES: &str = "qly_gb28181_devices";
/// GB/T 28181 requests by `kind`: registered, challenged, wrong_password, not_allowed, keepalive,
/// bad_message, not_registered, query_sent, query_failed.
pub const GB_REQUESTS: &str = "qly_gb28181_requests_total";

/// The whole fleet's cameras by `state` (every node's, in a cluster): exported by one node only,
/// the holder of the `fleet_gauges` job, so sums over nodes do not count a camera twice.
pub const FLEET_CAMERAS: &str = "qly_fleet_cameras";
/// The whole fleet's online rate (one node exports it, see [`FLEET_CAMERAS`]).
pub const FLEET_ONLINE_RATE: &str = "qly_fleet_online_rate";
/// The whole fleet's intact rate (one node exports it, see [`FLEET_CAMERAS`]).
pub const FLEET_INTACT_RATE: &str = "qly_fleet_intact_rate";

/// Every family `/metrics` exports.
pub const ALL: &[&str] = &[
    CAMERAS_BY_STATE,
    CAMERAS_BY_ACTIVITY,
    ONLINE_RATE,
    INTACT_RATE,
    FRAMES_IN,
    FRAMES_ANALYSED,
    FRAMES_DROPPED,
    RECONNECTS,
    FPS_IN,
    FPS_ANALYSED,
    ANALYSED_FRAMES,
    ALERT_CANDIDATES,
    ALERTS_RESUMED,
    FLEET_CAMERAS,
    FLEET_ONLINE_RATE,
    FLEET_INTACT_RATE,
    RULES_REPLACED,
    ALERT_STORE_FAILING,
    ALERT_STORE_FAILURES,
    ALERTS_WAITING,
    QUEUE_CAPACITY,
    QUEUE_DROPPED,
    DECODE_QUEUE,
    ADMISSION_CAPACITY,
    ADMISSION_DEMAND,
    ADMISSION_ADMITTED,
    ADMISSION_KEEP,
    ADMISSION_FLOOR_KEEP,
    ADMISSION_CHANGES,
    BATCH_PENDING,
    ANALYSIS_DROPPED,
    CAMERA_BATCHED,
    CAMERA_ANALYSIS_DROPPED,
    INFER_BATCHES,
    INFER_FRAMES,
    INFER_FAILED,
    INFER_LATENCY,
    INFER_BATCH_SIZE,
    FALL_CHECKS,
    FALL_CONFIRMED,
    FALL_SECONDS,
    ALERTS,
    OUTBOX,
    DELIVERY_FAILURES,
    CLIP_CAMERAS,
    CLIP_BUFFER_BYTES,
    CLIP_BUFFER_BUDGET,
    CLIPS,
    CLIP_DROPPED,
    CLUSTER_NODES,
    CLUSTER_HELD,
    CLUSTER_LEASE_CHANGES,
    CLUSTER_SELF_FENCED,
    CLUSTER_FAILED_BEATS,
    FENCED_WRITES,
    GB_DEVICES,
    GB_REQUESTS,
];

#[cfg(test)]
mod tests {
    /// The Grafana dashboard in the repository queries only metrics the service exports.
    #[test]
    fn grafana_dashboard_uses_only_exported_metrics() {
        let text = include_str!("../../docs/grafana/qianliyan.json");
        let dash: serde_json::Value = serde_json::from_str(text).expect("dashboard is JSON");
        let mut used = std::collections::BTreeSet::new();
        for panel in dash["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let mut rest = expr;
                while let Some(i) = rest.find("qly_") {
                    let name: String = rest[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[i + name.len()..];
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(&name)
                        .to_owned();
                    used.insert(family);
                }
            }
        }
        assert!(used.len() >= 10, "{used:?}");
        for name in &used {
            assert!(
                super::ALL.contains(&name.as_str()),
                "{name} is not exported"
            );
        }
    }
}
