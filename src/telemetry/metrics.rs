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
/// Frames not analysed, by reason (`gate`: the keyframe/analysis-rate gate; `decode_queue_full`; `decode_error`).
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
