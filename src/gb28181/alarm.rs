//! What a device's alarm (`Notify/Alarm`) means here (issue 16 step d): an alert of this
//! platform's types, a low-severity `device_alarm`, or a health event of the device.
//!
//! Video alarms (method 5) of the kinds this platform's rules also raise become those alerts,
//! dispatched by the channel's jurisdiction: 3 遗留物, 4 物品移除, 5 绊线, 6 区域入侵, 7 逆行,
//! 8 徘徊, 10 聚集, 12 快速奔跑. Motion (2), people counting (9), manual (1) and the alarms of
//! methods 1, 3, 4 and 7 (phone, SMS, GPS, other) are a `device_alarm`: low severity, not
//! dispatched. A video anomaly (11) and every alarm of methods 2 (device alarm: video lost,
//! tampering, storage, temperature) and 6 (device fault) describe the device's health, not an
//! event in the picture: they are recorded on the device, not raised.

use std::time::SystemTime;

use super::manscdp::Alarm;
use crate::rules::{Alert, AlertType, Severity};

/// What an alarm becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmMeaning {
    /// An alert of this type, dispatched or not.
    Alert {
        /// The type.
        alert_type: AlertType,
        /// Sent to the police station of the camera's jurisdiction.
        dispatch: bool,
    },
    /// The device's health (a fault, a lost or tampered picture).
    Health,
}

/// The meaning of an alarm by its method and type.
pub fn meaning(alarm: &Alarm) -> AlarmMeaning {
    let video = |t| AlarmMeaning::Alert {
        alert_type: t,
        dispatch: true,
    };
    let device_alarm = AlarmMeaning::Alert {
        alert_type: AlertType::DeviceAlarm,
        dispatch: false,
    };
    match (alarm.method, alarm.alarm_type) {
        (Some(5), Some(3)) => video(AlertType::LeftObject),
        (Some(5), Some(4)) => video(AlertType::ObjectRemoved),
        (Some(5), Some(5)) => video(AlertType::Tripwire),
        (Some(5), Some(6)) => video(AlertType::Intrusion),
        (Some(5), Some(7)) => video(AlertType::Retrograde),
        (Some(5), Some(8)) => video(AlertType::Loitering),
        (Some(5), Some(10)) => video(AlertType::Gathering),
        (Some(5), Some(12)) => video(AlertType::Running),
        // Method 2 without a type is the default device alarm: an alarm input (a PIR sensor, a
        // door contact) — an event, not the device's health.
        (Some(2), None) => device_alarm,
        (Some(5), Some(11)) | (Some(2) | Some(6), _) => AlarmMeaning::Health,
        _ => device_alarm,
    }
}

/// Severity from `AlarmPriority` (1 is the most urgent); a `device_alarm` is low, except an
/// alarm input's (method 2), which has its priority.
pub fn severity(alarm: &Alarm, alert_type: AlertType) -> Severity {
    if alert_type == AlertType::DeviceAlarm && alarm.method != Some(2) {
        return Severity::Low;
    }
    match alarm.priority {
        Some(1) => Severity::Critical,
        Some(3) => Severity::Medium,
        Some(4) => Severity::Low,
        _ => Severity::High,
    }
}

/// The rule id of a device alarm: `device:<method>.<type>` (the incident key with the camera).
pub fn rule_id(alarm: &Alarm) -> String {
    format!(
        "device:{}.{}",
        alarm.method.unwrap_or(0),
        alarm.alarm_type.unwrap_or(0)
    )
}

/// The method and type in words, Chinese and English.
pub fn describe(alarm: &Alarm) -> (&'static str, &'static str) {
    match (alarm.method, alarm.alarm_type) {
        (Some(5), Some(1)) => ("人工视频报警", "manual video alarm"),
        (Some(5), Some(2)) => ("运动目标检测", "motion detected"),
        (Some(5), Some(9)) => ("客流量统计", "people counting"),
        (Some(5), Some(11)) => ("视频异常", "video anomaly"),
        (Some(5), _) => ("视频报警", "video alarm"),
        (Some(1), _) => ("电话报警", "phone alarm"),
        (Some(2), None) => ("报警输入", "alarm input"),
        (Some(2), Some(1)) => ("视频丢失", "video lost"),
        (Some(2), Some(2)) => ("设备防拆", "device tampered with"),
        (Some(2), Some(3)) => ("存储设备磁盘满", "storage full"),
        (Some(2), Some(4)) => ("设备高温", "device too hot"),
        (Some(2), Some(5)) => ("设备低温", "device too cold"),
        (Some(2), _) => ("设备报警", "device alarm"),
        (Some(3), _) => ("短信报警", "SMS alarm"),
        (Some(4), _) => ("GPS报警", "GPS alarm"),
        (Some(6), Some(1)) => ("存储设备磁盘故障", "disk fault"),
        (Some(6), Some(2)) => ("风扇故障", "fan fault"),
        (Some(6), _) => ("设备故障", "device fault"),
        _ => ("其他报警", "other alarm"),
    }
}

/// The alert an alarm of `device` raises on `camera` (its place filled in; without one, on the id
/// `on`, with no place), at `now` (the platform's time: devices' clocks drift), with the device's
/// own description in the messages. `None` for a health alarm.
pub fn to_alert(
    device: &str,
    alarm: &Alarm,
    camera: Option<&crate::config::Camera>,
    on: &str,
    now: SystemTime,
) -> Option<Alert> {
    let AlarmMeaning::Alert {
        alert_type,
        dispatch,
    } = meaning(alarm)
    else {
        return None;
    };
    let mut alert = Alert::raised(
        &rule_id(alarm),
        camera.map_or(on, |c| c.id.as_str()),
        alert_type,
        severity(alarm, alert_type),
        crate::time::unix_ms(now),
        1.0,
        dispatch,
    );
    if let Some(camera) = camera {
        alert.place_at(camera);
    }
    let (what_zh, what_en) = describe(alarm);
    let said = alarm
        .description
        .as_deref()
        .map(|d| d.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|d| !d.trim().is_empty());
    let (zh, en) = if alert_type == AlertType::DeviceAlarm {
        (what_zh, what_en)
    } else {
        (alert_type.zh(), alert_type.en())
    };
    alert.message_zh = match &said {
        Some(d) => format!("设备 {device} 报警：{zh}（{d}）"),
        None => format!("设备 {device} 报警：{zh}"),
    };
    alert.message_en = match &said {
        Some(d) => format!("Device {device} alarm: {en} ({d})"),
        None => format!("Device {device} alarm: {en}"),
    };
    if alert.lat.is_none()
        && let (Some(lat), Some(lon)) = (alarm.latitude, alarm.longitude)
        && lat.abs() <= 90.0
        && lon.abs() <= 180.0
        && (lat, lon) != (0.0, 0.0)
    {
        alert.lat = Some(lat);
        alert.lon = Some(lon);
    }
    Some(alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(method: u8, kind: u16, priority: u8) -> Alarm {
        Alarm {
            sn: 1,
            device_id: "34020000001310000001".into(),
            priority: Some(priority),
            method: Some(method),
            alarm_type: Some(kind),
            description: Some("东门\r\n".into()),
            ..Alarm::default()
        }
    }

    #[test]
    fn video_alarms_map_to_alert_types_and_the_rest_to_device_alarms_or_health() {
        let t = |m, k| meaning(&alarm(m, k, 2));
        let alert = |alert_type, dispatch| AlarmMeaning::Alert {
            alert_type,
            dispatch,
        };
        assert_eq!(t(5, 3), alert(AlertType::LeftObject, true));
        assert_eq!(t(5, 4), alert(AlertType::ObjectRemoved, true));
        assert_eq!(t(5, 5), alert(AlertType::Tripwire, true));
        assert_eq!(t(5, 6), alert(AlertType::Intrusion, true));
        assert_eq!(t(5, 7), alert(AlertType::Retrograde, true));
        assert_eq!(t(5, 8), alert(AlertType::Loitering, true));
        assert_eq!(t(5, 10), alert(AlertType::Gathering, true));
        assert_eq!(t(5, 12), alert(AlertType::Running, true));
        for (m, k) in [
            (5, 1),
            (5, 2),
            (5, 9),
            (1, 0),
            (3, 1),
            (4, 1),
            (7, 1),
            (5, 99),
        ] {
            assert_eq!(t(m, k), alert(AlertType::DeviceAlarm, false), "{m}.{k}");
        }
        for (m, k) in [(5, 11), (2, 1), (2, 2), (6, 1), (6, 2)] {
            assert_eq!(t(m, k), AlarmMeaning::Health, "{m}.{k}");
        }
        let none = Alarm::default();
        assert_eq!(meaning(&none), alert(AlertType::DeviceAlarm, false));
    }

    #[test]
    fn alerts_carry_priority_place_and_the_devices_words() {
        use crate::config::{Camera, CameraOrigin, SourceKind, Transport};
        let camera = Camera {
            id: "34020000001310000001".into(),
            gb_code: Some("34020000001310000001".into()),
            name: "东门".into(),
            url: url::Url::parse("gb28181://34020000001180000001/34020000001310000001").unwrap(),
            sub_url: None,
            source: SourceKind::Gb28181,
            credentials: None,
            location: None,
            area_code: None,
            area_path: None,
            jurisdiction: Some("chengguan".into()),
            priority: 3,
            tags: vec![],
            enabled: true,
            transport: Transport::Tcp,
            analysis_fps: 1.0,
            keyframe_only: true,
            maintenance: vec![],
            origin: CameraOrigin::Api,
            definition: String::new(),
        };
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let a = to_alert(
            "34020000001180000001",
            &alarm(5, 6, 1),
            Some(&camera),
            "x",
            now,
        )
        .unwrap();
        assert_eq!(a.alert_type, AlertType::Intrusion);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.source, crate::rules::AlertSource::Device);
        assert_eq!(a.rule_id, "device:5.6");
        assert!(a.dispatch && a.boxes.is_empty());
        assert_eq!(a.jurisdiction.as_deref(), Some("chengguan"));
        assert_eq!(a.camera_name, "东门");
        assert_eq!(a.time_ms, 1_800_000_000_000);
        assert_eq!(
            a.message_zh,
            "设备 34020000001180000001 报警：区域入侵（东门）"
        );
        let m = to_alert("d", &alarm(5, 2, 1), Some(&camera), "x", now).unwrap();
        assert_eq!(
            (m.alert_type, m.severity, m.dispatch),
            (AlertType::DeviceAlarm, Severity::Low, false)
        );
        assert!(m.message_en.contains("motion detected"), "{}", m.message_en);
        assert!(to_alert("d", &alarm(6, 1, 1), Some(&camera), "x", now).is_none());
        // No camera for what alarmed: the alert is still raised, on the id given.
        let loose = to_alert("d", &alarm(5, 5, 2), None, "d", now).unwrap();
        assert_eq!(loose.camera, "d");
        // An alarm input (method 2, no type): an alert with its priority.
        let mut input = alarm(2, 0, 1);
        input.alarm_type = None;
        let i = to_alert("d", &input, None, "d", now).unwrap();
        assert_eq!(
            (i.alert_type, i.severity),
            (AlertType::DeviceAlarm, Severity::Critical)
        );
        assert_eq!(loose.jurisdiction, None);
        assert_eq!(
            severity(&alarm(5, 6, 3), AlertType::Intrusion),
            Severity::Medium
        );
        assert_eq!(
            severity(&alarm(5, 6, 4), AlertType::Intrusion),
            Severity::Low
        );
    }
}
