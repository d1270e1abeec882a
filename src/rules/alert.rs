//! What the rules stage emits: candidate alerts, their types (GA/T 2000.254 codes) and severities.

use serde::{Deserialize, Serialize};

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
}

impl AlertType {
    /// All types, in declaration order.
    pub const ALL: [AlertType; 9] = [
        AlertType::Intrusion,
        AlertType::Tripwire,
        AlertType::Loitering,
        AlertType::Gathering,
        AlertType::Running,
        AlertType::Fighting,
        AlertType::Fall,
        AlertType::SceneAnomaly,
        AlertType::VideoFault,
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
            AlertType::Fall | AlertType::SceneAnomaly | AlertType::VideoFault => None,
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

/// One event found by one rule: becomes an alert (with id, snapshot, camera metadata) downstream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateAlert {
    /// The rule that fired.
    pub rule_id: String,
    /// Camera id.
    pub camera: String,
    /// Alert type.
    pub alert_type: AlertType,
    /// GA/T 2000.254 code, where one exists.
    pub code: Option<&'static str>,
    /// Severity from the rule.
    pub severity: Severity,
    /// Frame time, seconds since the Unix epoch.
    pub frame_time: f64,
    /// Detection score of the track (mean over tracks for gathering; anomaly score for scene anomaly).
    pub score: f32,
    /// Boxes (x1, y1, x2, y2) in camera pixels, one per track id.
    pub boxes: Vec<[f32; 4]>,
    /// Track ids, matching `boxes`.
    pub track_ids: Vec<u64>,
    /// The rule's zone polygon (or a tripwire's two points), normalised 0..1, for drawing.
    pub zone: Option<Vec<[f32; 2]>>,
    /// Whether the rule asks for police dispatch.
    pub dispatch: bool,
    /// Chinese description for the feed and snapshot.
    pub message_zh: String,
    /// English description for the feed and snapshot.
    pub message_en: String,
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
