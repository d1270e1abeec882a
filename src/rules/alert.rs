//! What the rules stage emits: the [`Alert`] (one type from here to the store), its types
//! (GA/T 2000.254 codes) and severities.

use serde::{Deserialize, Serialize};

use super::lifecycle::AlertState;
use crate::config::Camera;

/// Alert type; rule kinds are the same names except `video_fault`, which camera health raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// 区域入侵: a person/vehicle inside a forbidden zone.
    Intrusion,
    /// 绊线: crossing a line in a given direction.
    Tripwire,
    /// 徘徊: the same track in a zone longer than N seconds.
    Loitering,
    /// 聚集: at least N people in a zone for at least T seconds.
    Gathering,
    /// 快速奔跑: track speed above a threshold.
    Running,
    /// 打架斗殴: needs an action-recognition model.
    Fighting,
    /// 跌倒: a person in the fallen state for at least T seconds.
    Fall,
    /// 场景异常: a frame-level anomaly score above threshold for K samples.
    SceneAnomaly,
    /// 视频故障: offline, frozen, black, blur, occlusion (raised by camera health).
    VideoFault,
    /// 遗留物: an object left behind (a GB/T 28181 device's own video analysis).
    LeftObject,
    /// 物品移除: an object taken away (a device's own analysis).
    ObjectRemoved,
    /// 逆行: movement against the allowed direction (a device's own analysis).
    Retrograde,
    /// 设备报警: a device alarm with no alert type of its own (motion, people counting, manual,
    /// phone, GPS …); low severity, not dispatched.
    DeviceAlarm,
}

/// Who raised an alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSource {
    /// One of this platform's rules, on an analysed frame.
    #[default]
    Rule,
    /// A device's own alarm (GB/T 28181 `Notify/Alarm`): no boxes; its rule id is `device:…`.
    Device,
}

impl AlertSource {
    /// The source of an alert with `rule_id` (device alarms' rule ids start with `device:`).
    pub fn of_rule(rule_id: &str) -> AlertSource {
        if rule_id.starts_with("device:") {
            AlertSource::Device
        } else {
            AlertSource::Rule
        }
    }
}

impl AlertType {
    /// All types, in declaration order.
    pub const ALL: [AlertType; 13] = [
        AlertType::Intrusion,
        AlertType::Tripwire,
        AlertType::Loitering,
        AlertType::Gathering,
        AlertType::Running,
        AlertType::Fighting,
        AlertType::Fall,
        AlertType::SceneAnomaly,
        AlertType::VideoFault,
        AlertType::LeftObject,
        AlertType::ObjectRemoved,
        AlertType::Retrograde,
        AlertType::DeviceAlarm,
    ];

    /// GA/T 2000.254 behaviour code, where the standard has one.
    pub fn code(self) -> Option<&'static str> {
        match self {
            AlertType::Intrusion => Some("06"),
            AlertType::Tripwire => Some("05"),
            AlertType::Loitering => Some("08"),
            AlertType::Gathering => Some("11"),
            AlertType::Running => Some("04"),
            AlertType::Fighting => Some("03"),
            AlertType::Fall
            | AlertType::SceneAnomaly
            | AlertType::VideoFault
            | AlertType::LeftObject
            | AlertType::ObjectRemoved
            | AlertType::Retrograde
            | AlertType::DeviceAlarm => None,
        }
    }

    /// Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            AlertType::Intrusion => "区域入侵",
            AlertType::Tripwire => "绊线",
            AlertType::Loitering => "徘徊",
            AlertType::Gathering => "聚集",
            AlertType::Running => "快速奔跑",
            AlertType::Fighting => "打架斗殴",
            AlertType::Fall => "跌倒",
            AlertType::SceneAnomaly => "场景异常",
            AlertType::VideoFault => "视频故障",
            AlertType::LeftObject => "遗留物",
            AlertType::ObjectRemoved => "物品移除",
            AlertType::Retrograde => "逆行",
            AlertType::DeviceAlarm => "设备报警",
        }
    }

    /// English name.
    pub fn en(self) -> &'static str {
        match self {
            AlertType::Intrusion => "Intrusion",
            AlertType::Tripwire => "Tripwire",
            AlertType::Loitering => "Loitering",
            AlertType::Gathering => "Gathering",
            AlertType::Running => "Running",
            AlertType::Fighting => "Fighting",
            AlertType::Fall => "Fall",
            AlertType::SceneAnomaly => "Scene anomaly",
            AlertType::VideoFault => "Video fault",
            AlertType::LeftObject => "Left object",
            AlertType::ObjectRemoved => "Object removed",
            AlertType::Retrograde => "Wrong-way movement",
            AlertType::DeviceAlarm => "Device alarm",
        }
    }

    /// The snake_case name used in configuration and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Intrusion => "intrusion",
            AlertType::Tripwire => "tripwire",
            AlertType::Loitering => "loitering",
            AlertType::Gathering => "gathering",
            AlertType::Running => "running",
            AlertType::Fighting => "fighting",
            AlertType::Fall => "fall",
            AlertType::SceneAnomaly => "scene_anomaly",
            AlertType::VideoFault => "video_fault",
            AlertType::LeftObject => "left_object",
            AlertType::ObjectRemoved => "object_removed",
            AlertType::Retrograde => "retrograde",
            AlertType::DeviceAlarm => "device_alarm",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<AlertType> {
        AlertType::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// How urgent an alert is; ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Low,
    /// Look when free.
    Medium,
    /// Look now.
    High,
    /// Look now and dispatch.
    Critical,
}

impl Severity {
    /// All severities, least first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lower-case name used in configuration and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where an alert's evidence clip is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipState {
    /// Still recording the seconds after the alert (or being written).
    Recording,
    /// Written: served at `/api/alerts/{id}/clip.mp4`.
    Ready,
    /// Not written; `error` says why.
    Failed,
    /// Deleted by retention (the alert stays).
    Deleted,
}

impl ClipState {
    /// The state's name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ClipState::Recording => "recording",
            ClipState::Ready => "ready",
            ClipState::Failed => "failed",
            ClipState::Deleted => "deleted",
        }
    }
}

/// An alert's evidence clip: the camera's stream as received from `pre` seconds before the alert's
/// frame (from a keyframe) to `post` seconds after it, in an MP4 file. Alerts of one camera close
/// together share one clip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertClip {
    /// File name under the clip folder (`<first alert id>.mp4`).
    pub name: String,
    /// Recording, ready, failed or deleted.
    pub state: ClipState,
    /// Time of the clip's first frame (its arrival), unix milliseconds; 0 when unknown.
    #[serde(default)]
    pub start_ms: i64,
    /// Duration, milliseconds (0 until ready).
    #[serde(default)]
    pub duration_ms: u64,
    /// File size, bytes (0 until ready).
    #[serde(default)]
    pub bytes: u64,
    /// SHA-256 of the file, lower-case hex (once ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why there is no clip (state `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An alert: the ONE type from the rules stage to the store. The rules stage raises it
/// ([`Alert::raised`]: rule, camera, type, severity, frame time, score, boxes, messages); the alert
/// stage enriches it (id, camera name and place, snapshot or why there is none, latency); the store
/// keeps it and gives it its `seq`; the lifecycle moves its `state`. Its JSON is the API's, the feed's
/// and the webhooks' (field names fixed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Store order (insertion sequence; 0 until stored); the feed cursor resolves to it.
    pub seq: i64,
    /// ULID (empty until the alert stage gives it one).
    pub id: String,
    /// Camera id.
    pub camera: String,
    /// Camera name (the id until the alert stage looks the camera up).
    pub camera_name: String,
    /// Rule that raised it (`device:<method>.<type>` for a device's own alarm).
    pub rule_id: String,
    /// A rule of this platform or a device's own alarm (follows `rule_id`).
    #[serde(default)]
    pub source: AlertSource,
    /// Type (`intrusion` …).
    pub alert_type: AlertType,
    /// Chinese type name (区域入侵 …).
    pub type_zh: String,
    /// English type name.
    pub type_en: String,
    /// GA/T 2000.254 code where one exists.
    pub code: Option<String>,
    /// Severity (from the rule; raised by escalation).
    pub severity: Severity,
    /// Frame time, unix milliseconds.
    pub time_ms: i64,
    /// Detection score of the track (mean over tracks for gathering; anomaly score for scene anomaly).
    pub score: f32,
    /// Boxes (x1, y1, x2, y2) in camera pixels, one per track id.
    pub boxes: Vec<[f32; 4]>,
    /// Track ids, matching `boxes`.
    pub track_ids: Vec<u64>,
    /// Message, Chinese (for the feed and snapshot).
    pub message_zh: String,
    /// Message, English.
    pub message_en: String,
    /// Whether the rule asks for police dispatch.
    pub dispatch: bool,
    /// Snapshot file name under the snapshot folder, if it was written.
    pub snapshot: Option<String>,
    /// Why the alert has no snapshot, when one was due and could not be made (disk full, renderer
    /// unavailable): the alert is stored without it and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_error: Option<String>,
    /// The evidence clip: `None` when the camera keeps no pre-event buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<AlertClip>,
    /// The incident it folded into (alerts of one camera and rule close together in time); set
    /// when stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// Frame arrival → alert recorded, milliseconds.
    pub latency_ms: u64,
    /// Administrative-division code of the camera.
    pub area_code: Option<String>,
    /// County/township/village.
    pub area_path: Vec<String>,
    /// Police station responsible.
    pub jurisdiction: Option<String>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Lifecycle state.
    pub state: AlertState,
    /// Case id set by the case system's callback.
    pub case_id: Option<String>,
    /// Whether escalation has raised it.
    pub escalated: bool,
}

impl Alert {
    /// A `new` alert as a rule raises it on a frame at `time_ms`; what only later stages know
    /// (id, camera name and place, snapshot, latency, `seq`) is left empty.
    pub fn raised(
        rule_id: &str,
        camera: &str,
        alert_type: AlertType,
        severity: Severity,
        time_ms: i64,
        score: f32,
        dispatch: bool,
    ) -> Alert {
        Alert {
            seq: 0,
            id: String::new(),
            camera: camera.to_owned(),
            camera_name: camera.to_owned(),
            rule_id: rule_id.to_owned(),
            source: AlertSource::of_rule(rule_id),
            alert_type,
            type_zh: alert_type.zh().to_owned(),
            type_en: alert_type.en().to_owned(),
            code: alert_type.code().map(str::to_owned),
            severity,
            time_ms,
            score,
            boxes: Vec::new(),
            track_ids: Vec::new(),
            message_zh: String::new(),
            message_en: String::new(),
            dispatch,
            snapshot: None,
            snapshot_error: None,
            clip: None,
            latency_ms: 0,
            area_code: None,
            area_path: Vec::new(),
            jurisdiction: None,
            lat: None,
            lon: None,
            state: AlertState::New,
            case_id: None,
            escalated: false,
            incident_id: None,
        }
    }

    /// Sets the camera's name and place (area code and path, jurisdiction, location) from its
    /// configuration.
    pub fn place_at(&mut self, camera: &Camera) {
        self.camera_name = camera.name.clone();
        self.area_code = camera.area_code.clone();
        self.area_path = camera
            .area_path
            .as_ref()
            .map(|p| p.segments().to_vec())
            .unwrap_or_default();
        self.jurisdiction = camera.jurisdiction.clone();
        self.lat = camera.location.as_ref().map(|p| p.lat);
        self.lon = camera.location.as_ref().map(|p| p.lon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        let codes: Vec<_> = AlertType::ALL.iter().map(|a| a.code()).collect();
        assert_eq!(
            codes,
            [
                Some("06"),
                Some("05"),
                Some("08"),
                Some("11"),
                Some("04"),
                Some("03"),
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ]
        );
        for a in AlertType::ALL {
            assert_eq!(AlertType::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).ok(),
                Some(serde_json::Value::String(a.as_str().into()))
            );
        }
        assert_eq!(AlertType::Running.zh(), "快速奔跑");
        assert_eq!(AlertType::VideoFault.zh(), "视频故障");
        assert!(Severity::Critical > Severity::High);
    }
}
