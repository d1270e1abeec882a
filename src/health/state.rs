//! Health vocabulary shared by the tracker, the ledger and the JSON API, and the fleet summary.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What a camera is doing now, as engineers and the rates see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// First connection (or first after being re-enabled) not settled yet.
    Connecting,
    /// Media flowing, no quality fault.
    Online,
    /// Media flowing with at least one quality fault.
    Degraded,
    /// No usable media; see the [`OfflineReason`].
    Offline,
    /// Switched off in the inventory; excluded from rates.
    Disabled,
    /// Inside a planned maintenance window; excluded from rates.
    Maintenance,
}

impl CameraState {
    /// Every state, in declaration order.
    pub const ALL: [CameraState; 6] = [
        Self::Connecting,
        Self::Online,
        Self::Degraded,
        Self::Offline,
        Self::Disabled,
        Self::Maintenance,
    ];

    /// The JSON and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Online => "online",
            Self::Degraded => "degraded",
            Self::Offline => "offline",
            Self::Disabled => "disabled",
            Self::Maintenance => "maintenance",
        }
    }

    /// Parses [`CameraState::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Chinese label for the command-hall UI.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Connecting => "连接中",
            Self::Online => "在线",
            Self::Degraded => "在线(质量异常)",
            Self::Offline => "离线",
            Self::Disabled => "已停用",
            Self::Maintenance => "维护中",
        }
    }

    /// True when the camera delivers video (counts towards the online rate).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Online | Self::Degraded)
    }

    /// True for states excluded from every rate (not scheduled).
    pub fn is_excluded(self) -> bool {
        matches!(self, Self::Disabled | Self::Maintenance)
    }
}

impl fmt::Display for CameraState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a camera is offline, classified by ingest (or by the tracker's own watchdog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// No route / host down / DNS failure.
    Unreachable,
    /// TCP connection refused (device up, service not).
    Refused,
    /// The camera rejected our credentials.
    AuthFailed,
    /// The stream path does not exist (RTSP 404).
    NotFound,
    /// Connecting or a request timed out.
    Timeout,
    /// The session is up but no media arrived for `stall_after`.
    Stalled,
    /// Media arrived but could not be decoded.
    DecodeError,
    /// The source ended the stream.
    Eos,
    /// The camera answered, but not in RTSP/RTP we can follow: an unparseable answer or session
    /// description, a malformed packet or payload.
    ProtocolError,
    /// GB/T 28181: the device is not registered (it unregistered, or its registration ran out).
    Unregistered,
    /// GB/T 28181: no keepalive for `keepalive_misses` intervals.
    KeepaliveTimeout,
    /// GB/T 28181: the channel's device is offline.
    DeviceOffline,
    /// GB/T 28181: the device refused or did not answer the INVITE for the channel's video.
    InviteFailed,
    /// GB/T 28181: the INVITE was answered but no media arrived.
    NoMedia,
}

impl OfflineReason {
    /// Every reason, in declaration order.
    pub const ALL: [OfflineReason; 14] = [
        Self::Unreachable,
        Self::Refused,
        Self::AuthFailed,
        Self::NotFound,
        Self::Timeout,
        Self::Stalled,
        Self::DecodeError,
        Self::Eos,
        Self::ProtocolError,
        Self::Unregistered,
        Self::KeepaliveTimeout,
        Self::DeviceOffline,
        Self::InviteFailed,
        Self::NoMedia,
    ];

    /// The JSON and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Refused => "refused",
            Self::AuthFailed => "auth_failed",
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::Stalled => "stalled",
            Self::DecodeError => "decode_error",
            Self::ProtocolError => "protocol_error",
            Self::Eos => "eos",
            Self::Unregistered => "unregistered",
            Self::KeepaliveTimeout => "keepalive_timeout",
            Self::DeviceOffline => "device_offline",
            Self::InviteFailed => "invite_failed",
            Self::NoMedia => "no_media",
        }
    }

    /// A reason GB/T 28181 signalling gives (the device's registration and keepalives, or a
    /// channel it reports OFF), as opposed to one its video gives.
    pub fn is_signalling(self) -> bool {
        matches!(
            self,
            Self::Unregistered | Self::KeepaliveTimeout | Self::DeviceOffline | Self::Unreachable
        )
    }

    /// Parses [`OfflineReason::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Chinese label for the command-hall UI.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Unreachable => "网络不可达",
            Self::Refused => "连接被拒绝",
            Self::AuthFailed => "认证失败",
            Self::NotFound => "码流不存在",
            Self::Timeout => "连接超时",
            Self::Stalled => "视频信号丢失",
            Self::DecodeError => "解码失败",
            Self::ProtocolError => "协议错误",
            Self::Eos => "码流结束",
            Self::Unregistered => "设备未注册",
            Self::KeepaliveTimeout => "心跳超时",
            Self::DeviceOffline => "设备离线",
            Self::InviteFailed => "点播失败",
            Self::NoMedia => "无码流",
        }
    }

    /// English label.
    pub fn en(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Refused => "connection refused",
            Self::AuthFailed => "authentication failed",
            Self::NotFound => "stream not found",
            Self::Timeout => "timed out",
            Self::Stalled => "no media (signal lost)",
            Self::DecodeError => "decode error",
            Self::ProtocolError => "protocol error",
            Self::Eos => "end of stream",
            Self::Unregistered => "device not registered",
            Self::KeepaliveTimeout => "keepalive timeout",
            Self::DeviceOffline => "device offline",
            Self::InviteFailed => "video request failed",
            Self::NoMedia => "no media after video request",
        }
    }
}

impl fmt::Display for OfflineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A video-quality fault (视频质量诊断) that makes an online camera `degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityFault {
    /// The picture does not change.
    Frozen,
    /// Black or too dark.
    Dark,
    /// Washed out.
    Overexposed,
    /// Out of focus / smeared.
    Blur,
    /// A large low-texture area appeared (covered or turned away).
    Occlusion,
    /// Strong colour cast.
    ColorCast,
    /// Frames arrive at less than half the expected rate.
    LowFps,
}

impl QualityFault {
    /// Every fault, in declaration (and sort) order.
    pub const ALL: [QualityFault; 7] = [
        Self::Frozen,
        Self::Dark,
        Self::Overexposed,
        Self::Blur,
        Self::Occlusion,
        Self::ColorCast,
        Self::LowFps,
    ];

    /// The JSON and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frozen => "frozen",
            Self::Dark => "dark",
            Self::Overexposed => "overexposed",
            Self::Blur => "blur",
            Self::Occlusion => "occlusion",
            Self::ColorCast => "color_cast",
            Self::LowFps => "low_fps",
        }
    }

    /// Parses [`QualityFault::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Chinese label for the command-hall UI.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Frozen => "画面冻结",
            Self::Dark => "黑屏/过暗",
            Self::Overexposed => "过曝",
            Self::Blur => "模糊",
            Self::Occlusion => "遮挡",
            Self::ColorCast => "偏色",
            Self::LowFps => "帧率过低",
        }
    }

    /// English label.
    pub fn en(self) -> &'static str {
        match self {
            Self::Frozen => "frozen picture",
            Self::Dark => "black / too dark",
            Self::Overexposed => "overexposed",
            Self::Blur => "blurred",
            Self::Occlusion => "occluded",
            Self::ColorCast => "colour cast",
            Self::LowFps => "low frame rate",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for QualityFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A camera's health at a moment. JSON: `{"state","reason","faults","since_ms"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The state.
    pub state: CameraState,
    /// Set only when `state` is `offline`.
    pub reason: Option<OfflineReason>,
    /// Sorted, without duplicates; non-empty only when `state` is `degraded`.
    pub faults: Vec<QualityFault>,
    /// When this status began (unix milliseconds in JSON).
    #[serde(rename = "since_ms", with = "crate::time::serde_unix_ms")]
    pub since: SystemTime,
}

impl Status {
    /// A status with no reason and no faults.
    pub fn new(state: CameraState, since: SystemTime) -> Self {
        Self {
            state,
            reason: None,
            faults: Vec::new(),
            since,
        }
    }

    /// True when online (or degraded): counts towards the online rate.
    pub fn is_up(&self) -> bool {
        self.state.is_up()
    }

    /// True when online without any quality fault: counts towards the intact rate.
    pub fn is_intact(&self) -> bool {
        self.state == CameraState::Online && self.faults.is_empty()
    }

    /// Same state, reason and faults (ignores `since`).
    pub fn same_as(&self, other: &Status) -> bool {
        self.state == other.state && self.reason == other.reason && self.faults == other.faults
    }
}

/// One change of a camera's status, reported once by [`crate::health::CameraTracker::poll`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Camera id.
    pub camera: String,
    /// When the new status began; equals `to.since` (unix milliseconds in JSON).
    #[serde(rename = "at_ms", with = "crate::time::serde_unix_ms")]
    pub at: SystemTime,
    /// The status before.
    pub from: Status,
    /// The status after.
    pub to: Status,
}

/// Current fleet counts and rates (DOMAIN.md "Camera health").
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Cameras not disabled (maintenance included).
    pub enabled: usize,
    /// Online without faults.
    pub online: usize,
    /// Online with at least one quality fault.
    pub degraded: usize,
    /// Offline, any reason.
    pub offline: usize,
    /// Still connecting.
    pub connecting: usize,
    /// Enabled but in a maintenance window.
    pub maintenance: usize,
    /// Disabled.
    pub disabled: usize,
    /// 在线率: (online + degraded) / (enabled − maintenance); `None` (JSON null) when that is 0.
    pub online_rate: Option<f64>,
    /// 完好率: online without faults / (enabled − maintenance); `None` (JSON null) when that is 0.
    pub intact_rate: Option<f64>,
}

/// Counts and rates over the current statuses of a fleet.
///
/// Connecting cameras count in the denominator (they are scheduled but deliver nothing yet).
pub fn summarize<'a>(statuses: impl IntoIterator<Item = &'a Status>) -> Summary {
    let mut s = Summary::default();
    let mut intact = 0usize;
    for st in statuses {
        match st.state {
            CameraState::Connecting => s.connecting += 1,
            CameraState::Online => s.online += 1,
            CameraState::Degraded => s.degraded += 1,
            CameraState::Offline => s.offline += 1,
            CameraState::Disabled => s.disabled += 1,
            CameraState::Maintenance => s.maintenance += 1,
        }
        if st.is_intact() {
            intact += 1;
        }
    }
    s.enabled = s.connecting + s.online + s.degraded + s.offline + s.maintenance;
    let scheduled = s.enabled - s.maintenance;
    s.online_rate = ratio(s.online + s.degraded, scheduled);
    s.intact_rate = ratio(intact, scheduled);
    s
}

fn ratio(n: usize, d: usize) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn st(state: CameraState, faults: &[QualityFault]) -> Status {
        Status {
            state,
            reason: None,
            faults: faults.to_vec(),
            since: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in CameraState::ALL {
            assert_eq!(CameraState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).ok(),
                Some(format!("\"{}\"", s.as_str()))
            );
        }
        for r in OfflineReason::ALL {
            assert_eq!(OfflineReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).ok(),
                Some(format!("\"{}\"", r.as_str()))
            );
        }
        for (i, f) in QualityFault::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(QualityFault::parse(f.as_str()), Some(f));
            assert_eq!(
                serde_json::to_string(&f).ok(),
                Some(format!("\"{}\"", f.as_str()))
            );
            assert!(!f.zh().is_empty() && !f.en().is_empty());
        }
        assert_eq!(QualityFault::Dark.zh(), "黑屏/过暗");
    }

    #[test]
    fn status_json_shape() {
        let s = Status {
            state: CameraState::Offline,
            reason: Some(OfflineReason::AuthFailed),
            faults: vec![],
            since: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        };
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"state":"offline","reason":"auth_failed","faults":[],"since_ms":1_700_000_000_123i64})
        );
        let back: Status = serde_json::from_value(j).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn summary_excludes_disabled_and_maintenance() {
        use CameraState::*;
        let all = [
            st(Online, &[]),
            st(Online, &[]),
            st(Degraded, &[QualityFault::Blur]),
            st(Offline, &[]),
            st(Connecting, &[]),
            st(Maintenance, &[]),
            st(Disabled, &[]),
            st(Disabled, &[]),
        ];
        let s = summarize(&all);
        assert_eq!(
            (s.enabled, s.online, s.degraded, s.offline, s.connecting),
            (6, 2, 1, 1, 1)
        );
        assert_eq!((s.maintenance, s.disabled), (1, 2));
        assert_eq!(s.online_rate, Some(3.0 / 5.0));
        assert_eq!(s.intact_rate, Some(2.0 / 5.0));

        let none = summarize(&[st(Maintenance, &[]), st(Disabled, &[])]);
        assert_eq!((none.online_rate, none.intact_rate), (None, None));
        let j = serde_json::to_value(none).unwrap();
        assert!(j["online_rate"].is_null());
    }
}
