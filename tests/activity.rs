//! Looking only where something moves, against camsim's scenes over real RTSP: quiet cameras go
//! idle and are decoded once per VQD interval, scripted bursts make their cameras active, and
//! picture faults on idle cameras are still reported within the VQD bound.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{api, set_fault, start_sim_scenes};
use qianliyan::camsim::{self, Scene, TransportPolicy};
use serde_json::Value;

const CAMERAS: u32 = 8;

fn camera(svc: &common::Service, id: &str) -> Value {
    let (status, body) = api(svc.addr, "GET", &format!("/api/cameras/{id}"), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn activity(v: &Value) -> &str {
    v["activity"]["state"].as_str().unwrap_or("")
}

fn has_fault(v: &Value, fault: &str) -> bool {
    v["faults"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["code"] == fault))
}

#[test]
fn quiet_cameras_idle_bursts_wake_them_and_faults_are_still_found() {
    // Every camera quiet; the first four have a scripted burst each minute.
    let sim = start_sim_scenes(
        CAMERAS,
        "video/vtest_sub.mp4",
        None,
        TransportPolicy::Both,
        camsim::Scenes {
            quiet_share: 1.0,
            bursts: 4,
            rate_control: camsim::RateControl::Vbr,
        },
    );
    let shared = sim.running.shared.clone();
    let scenes: Vec<Scene> = shared.cameras.iter().map(|c| c.scene).collect();
    assert_eq!(
        scenes.iter().filter(|s| **s == Scene::Burst).count(),
        4,
        "{scenes:?}"
    );
    let cameras: String = (1..=CAMERAS)
        .map(|i| {
            format!(
                "[[cameras]]\nid = \"c{i}\"\nname = \"静{i}\"\nurl = \"{}\"\narea_path = \"示范县/城关镇/东街村\"\n",
                sim.running.url(i)
            )
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        r#"
[node]
name = "test"
data_dir = "{data}"
[web]
listen = "127.0.0.1:0"
[ingest]
stall_after = "10s"
backoff_initial = "500ms"
backoff_max = "4s"
[health]
grace = "3s"
[activity]
warmup = "5s"
vqd_interval = "10s"
active_hold = "5s"
suspect_hold = "20s"
{cameras}
{auth}
"#,
        data = dir.path().join("data").display(),
        auth = common::TEST_AUTH,
    );
    let svc = common::start_service(dir, &toml, &[]);
    let t0 = Instant::now();

    // Quiet cameras without a burst go idle after the warm-up and stay online: the OSD clock keeps
    // the still picture from looking frozen.
    let quiet: Vec<String> = (1..=CAMERAS)
        .filter(|i| scenes[*i as usize - 1] == Scene::Quiet)
        .map(|i| format!("c{i}"))
        .collect();
    let bursty: Vec<(String, usize)> = (1..=CAMERAS)
        .filter(|i| scenes[*i as usize - 1] == Scene::Burst)
        .map(|i| (format!("c{i}"), i as usize - 1))
        .collect();
    loop {
        let idle = quiet
            .iter()
            .filter(|id| activity(&camera(&svc, id)) == "idle")
            .count();
        if idle == quiet.len() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "quiet cameras not idle 40 s after start: {:?}",
            quiet
                .iter()
                .map(|id| camera(&svc, id)["activity"].clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "quiet cameras idle after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Idle: about one decoded picture per 10 s, the other keyframes skipped as `idle`.
    let before: Vec<(u64, u64)> = quiet
        .iter()
        .map(|id| {
            let c = &camera(&svc, id)["counters"];
            (
                c["submitted"].as_u64().unwrap_or(0),
                c["skipped_idle"].as_u64().unwrap_or(0),
            )
        })
        .collect();

    // Meanwhile watch the burst cameras: each burst whose onset falls in the watch must make its
    // camera active (the bitstream or the picture says so) within 30 s.
    let watch_from = SystemTime::now() + Duration::from_secs(2);
    let watch = Duration::from_secs(65);
    let watch_start = Instant::now();
    let mut pending: Vec<(String, SystemTime)> = Vec::new();
    for (id, idx) in &bursty {
        let cam = &shared.cameras[*idx];
        let since_epoch = |t: SystemTime| t.duration_since(shared.epoch_wall).unwrap_or_default();
        for onset in camsim::scene::onsets(cam.offset_duration(), since_epoch(watch_from) + watch) {
            let at = shared.epoch_wall + onset;
            if at >= watch_from && at + Duration::from_secs(30) <= watch_from + watch {
                pending.push((id.clone(), at));
            }
        }
    }
    assert!(!pending.is_empty(), "no burst in the watch window");
    let mut found = Vec::new();
    while !pending.is_empty() {
        let now = SystemTime::now();
        pending.retain(|(id, at)| {
            if now < *at {
                return true;
            }
            let v = camera(&svc, id);
            let state = activity(&v);
            if state == "active" || state == "suspect" {
                let delay = now.duration_since(*at).unwrap_or_default().as_secs_f64();
                eprintln!(
                    "{id}: burst found {delay:.1} s after its onset ({state}, {})",
                    v["activity"]["evidence"]
                );
                found.push(delay);
                return false;
            }
            assert!(
                now.duration_since(*at).unwrap_or_default() < Duration::from_secs(30),
                "{id}: burst at {at:?} not found within 30 s: {}",
                v["activity"]
            );
            true
        });
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("bursts found: {found:?}");

    let watched = watch_start.elapsed().as_secs_f64();
    for (id, (sub0, idle0)) in quiet.iter().zip(&before) {
        let v = camera(&svc, id);
        let c = &v["counters"];
        let decoded = c["submitted"].as_u64().unwrap_or(0) - sub0;
        let skipped = c["skipped_idle"].as_u64().unwrap_or(0) - idle0;
        eprintln!("{id}: {decoded} decoded, {skipped} skipped as idle in {watched:.0} s");
        // One per 10 s, and a margin for a suspect stretch.
        assert!(
            (decoded as f64) <= watched / 10.0 + 3.0,
            "{id}: {decoded} pictures decoded in {watched:.0} s while idle: {v}"
        );
        assert!(skipped > 0, "{id}: nothing skipped as idle: {v}");
        assert_eq!(
            v["state"], "online",
            "{id}: a quiet picture is no fault: {v}"
        );
    }

    // Faults on idle cameras: the stream changes, the camera is decoded at once, VQD decides within
    // its bound.
    let faults = [
        ("freeze", "frozen"),
        ("black", "dark"),
        ("cover", "occlusion"),
    ];
    for ((kind, _), id) in faults.iter().zip(&quiet) {
        // A quiet camera may be active for a moment (one picture difference holds `active_hold`,
        // 10 s): wait for it to be idle again, and say what made it active.
        let t = Instant::now();
        let mut v = camera(&svc, id);
        while activity(&v) != "idle" && t.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(250));
            v = camera(&svc, id);
        }
        if t.elapsed() > Duration::from_millis(300) {
            let (_, why) = api(svc.addr, "GET", &format!("/api/cameras/{id}/activity"), "");
            eprintln!(
                "{id}: idle again after {:.1} s; its activity: {why}",
                t.elapsed().as_secs_f64()
            );
        }
        assert_eq!(activity(&v), "idle", "{id} idle before its fault: {v}");
        let number = id.trim_start_matches('c');
        assert_eq!(set_fault(&sim, &format!("{number:0>4}"), kind).0, 200);
    }
    let injected = Instant::now();
    for ((_, fault), id) in faults.iter().zip(&quiet) {
        loop {
            let v = camera(&svc, id);
            if v["state"] == "degraded" && has_fault(&v, fault) {
                eprintln!(
                    "{id}: {fault} after {:.1} s (stream change: {})",
                    injected.elapsed().as_secs_f64(),
                    v["activity"]["last_change"]
                );
                break;
            }
            assert!(
                injected.elapsed() < Duration::from_secs(15),
                "{id}: {fault} not reported within 15 s: {v}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let (_, metrics) = api(svc.addr, "GET", "/metrics", "");
    assert!(
        metrics.contains("qly_frames_dropped_total{reason=\"idle\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("qly_cameras_activity{state=\"idle\"}"));
    svc.stop();
}
