//! The command-hall UI in a real browser: camsim cameras through the real service with the real
//! person detector (YOLOX-nano, the fall model as its second pass) and demo-like rules, driven by
//! `tests/browser/ui.spec.mjs` (playwright-core and Debian's chromium, both installed by
//! `scripts/setup-browser`).
//!
//! The script logs in as an operator, sees an intrusion alert arrive live, acknowledges and
//! dispatches it; the dispatcher of that jurisdiction sees it and the dispatcher of another does
//! not; a camera taken `down` through camsim's control API turns offline on the camera wall and the
//! online rate drops; an administrator draws a zone that is still there after a reload. It saves a
//! screenshot of every page under `target/screenshots/`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::asset;
use qianliyan::camsim::{self, TransportPolicy};

/// The demo's rules on cam-0001, a little quicker to fire again (docs/rules.md).
/// The GB/T 28181 device registered to the service, and its password (a test value).
const GB_DEVICE: &str = "34020000001180000001";
const GB_PASSWORD: &str = "gb-browser-test";

const RULES: &str = r#"
[[zones]]
id = "road"
camera = "cam-0001"
name = "校园主干道"
polygon = [[0.0, 0.33], [1.0, 0.18], [1.0, 0.85], [0.0, 0.45]]

[[rules]]
id = "road-intrusion"
name = "主干道禁入（演示）"
camera = "cam-0001"
kind = "intrusion"
zone = "road"
severity = "high"
cooldown = "5s"
rearm = "10s"
dispatch = true

[[rules]]
id = "lawn-fall"
name = "草坪跌倒"
camera = "cam-0001"
kind = "fall"
hold = "3s"
masks = [[[0.03, 0.80], [0.30, 0.80], [0.30, 0.99], [0.03, 0.99]]]
"#;

/// Demo cameras in three townships and two police jurisdictions; camsim camera n serves the n-th.
const CAMERAS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "cam-0001",
        "城关镇人民路与解放路交叉口",
        "341199100001",
        "示范县/城关镇/东街社区",
        "示范县公安局城关派出所",
    ),
    (
        "cam-0002",
        "城关镇人民广场东侧",
        "341199100001",
        "示范县/城关镇/东街社区",
        "示范县公安局城关派出所",
    ),
    (
        "cam-0005",
        "桃源镇汽车站出站口",
        "341199101001",
        "示范县/桃源镇/桃源社区",
        "示范县公安局桃源派出所",
    ),
    (
        "cam-0007",
        "青山乡卫生院门口",
        "341199200001",
        "示范县/青山乡/青山社区",
        "示范县公安局青山派出所",
    ),
];

/// (key for the script, username, display name, role, area)
const USERS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    ("operator", "op-zhang", "值班员 张伟", "operator", None),
    (
        "dispatcher",
        "pcs-chengguan",
        "城关派出所",
        "dispatcher",
        Some("示范县/城关镇"),
    ),
    (
        "other_dispatcher",
        "pcs-taoyuan",
        "桃源派出所",
        "dispatcher",
        Some("示范县/桃源镇"),
    ),
    ("engineer", "eng-li", "运维 李工", "engineer", None),
    ("admin", "admin", "系统管理员", "admin", None),
];

/// A password made at run time (nothing secret-looking is committed).
fn password(user: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(user.as_bytes());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("ui-{:016x}", h.finish())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What `scripts/setup-browser` installs; a missing piece fails the test with the fix.
fn browser_tools() -> PathBuf {
    let script = repo().join("tests/browser/ui.spec.mjs");
    let module = repo().join("tests/browser/node_modules/playwright-core/package.json");
    for (p, what) in [
        (Path::new("/usr/bin/chromium"), "Debian chromium"),
        (
            module.as_path(),
            "playwright-core (npm ci in tests/browser)",
        ),
    ] {
        assert!(
            p.exists(),
            "{} is missing ({what}): run `scripts/setup-browser` (scripts/setup runs it)",
            p.display()
        );
    }
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing: run `scripts/setup-browser`"
    );
    script
}

#[test]
fn the_command_hall_ui_works_end_to_end_in_a_browser() {
    let script = browser_tools();
    let _ = asset("video/vtest_main.mp4");
    let t0 = Instant::now();

    // camsim: the main stream (768×576), where people are large enough for the detector.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim_cancel = tokio_util::sync::CancellationToken::new();
    let sim = rt
        .block_on(camsim::start(
            camsim::Options {
                cameras: CAMERAS.len() as u32,
                source: asset("video/vtest_main.mp4"),
                sub_source: None,
                rtsp_listen: "127.0.0.1:0".parse().expect("addr"),
                control_listen: "127.0.0.1:0".parse().expect("addr"),
                udp_port: 0,
                auth: None,
                transports: TransportPolicy::Both,
                scenes: Default::default(),
            },
            sim_cancel.clone(),
        ))
        .expect("camsim starts");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), RULES).expect("rules file");
    let mut env = BTreeMap::new();
    let mut users_toml = String::new();
    let mut users_json = serde_json::Map::new();
    for (key, username, display, role, area) in USERS {
        let var = format!("QLY_TEST_PW_{}", key.to_uppercase());
        let pw = password(username);
        env.insert(var.clone(), pw.clone());
        users_toml.push_str(&format!(
            "[[auth.users]]\nusername = \"{username}\"\ndisplay_name = \"{display}\"\nrole = \"{role}\"\npassword_env = \"{var}\"\n{}\n",
            area.map(|a| format!("area = \"{a}\"")).unwrap_or_default()
        ));
        users_json.insert(
            (*key).to_owned(),
            serde_json::json!({ "username": username, "password": pw, "display_name": display, "role": role, "area": area }),
        );
    }
    let mut cameras_toml = String::new();
    for (n, (id, name, code, area, station)) in CAMERAS.iter().enumerate() {
        // cam-0001 is analysed at 2 frames a second (tracking needs more than keyframes), like the demo.
        let extra = if n == 0 {
            "keyframe_only = false\nanalysis_fps = 2.0\n"
        } else {
            ""
        };
        cameras_toml.push_str(&format!(
            "[[cameras]]\nid = \"{id}\"\nname = \"{name}\"\nurl = \"{url}\"\narea_code = \"{code}\"\narea_path = \"{area}\"\njurisdiction = \"{station}\"\n{extra}\n",
            url = sim.url(n as u32 + 1),
        ));
    }
    // A free port for the SIP listener (UDP and TCP on the same number).
    let gb_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    let toml = format!(
        r#"
rules = "rules.toml"
[node]
name = "browser-test"
data_dir = "{data}"
assets_dir = "{repo}/assets"
[web]
listen = "127.0.0.1:0"
[ingest]
transport = "tcp"
stall_after = "10s"
backoff_initial = "1s"
backoff_max = "5s"
keyframe_only = true
analysis_fps = 1.0
[health]
grace = "3s"
[inference]
models = ["{repo}/models/yolox_nano.toml"]
fall_model = "{repo}/models/person_fall.toml"
threads = 1
# Short clips, so the alert's clip is written while the test looks at the alert.
[clip]
pre = "4s"
post = "4s"
[gb28181]
sip_id = "34020000002000000001"
listen = "127.0.0.1:{gb_port}"
password_env = "QLY_GB_BROWSER_PASSWORD"
auto_accept = true
[auth]
{users_toml}
{cameras_toml}
"#,
        data = dir.path().join("data").display(),
        repo = repo().display(),
    );
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("QLY_GB_BROWSER_PASSWORD", GB_PASSWORD));
    let service = common::start_service(dir, &toml, &env);
    // One GB/T 28181 device (no channels: the camera wall stays the eight RTSP cameras).
    let gb_device = rt
        .block_on(camsim::gb::GbDevice::start(
            camsim::gb::GbDeviceOptions {
                platform: format!("127.0.0.1:{gb_port}").parse().expect("addr"),
                platform_id: "34020000002000000001".into(),
                id: GB_DEVICE.into(),
                password: GB_PASSWORD.into(),
                transport: camsim::gb::GbTransport::Udp,
                keepalive: Duration::from_secs(5),
                expires: 3600,
                channels: 0,
                page_size: 2,
                media: None,
            },
            sim_cancel.clone(),
        ))
        .expect("the GB device starts");
    assert_eq!(
        gb_device
            .stats
            .last_status
            .load(std::sync::atomic::Ordering::Relaxed),
        200,
        "the GB device registers"
    );
    eprintln!(
        "service on http://{} after {:.1} s",
        service.addr,
        t0.elapsed().as_secs_f64()
    );

    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("target/screenshots");
    let down_number = CAMERAS
        .iter()
        .position(|c| c.0 == "cam-0005")
        .expect("cam-0005")
        + 1;
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .current_dir(repo().join("tests/browser"))
        .env("QLY_UI_URL", format!("http://{}", service.addr))
        .env("QLY_UI_CAMSIM", format!("http://{}", sim.control_addr))
        .env(
            "QLY_UI_USERS",
            serde_json::Value::Object(users_json).to_string(),
        )
        .env("QLY_UI_SCREENSHOTS", &shots)
        .env("QLY_UI_ALERT_CAMERA", "cam-0001")
        .env("QLY_UI_RULES_CAMERA", "cam-0002")
        .env("QLY_UI_DOWN_CAMERA", "cam-0005")
        .env("QLY_UI_DOWN_SIM", format!("{down_number:04}"))
        .env("QLY_UI_GB_DEVICE", GB_DEVICE);
    let started = Instant::now();
    let (ok, out, err) = common::run_with_timeout(&mut cmd, Duration::from_secs(480));
    eprintln!(
        "browser script: {} in {:.1} s\n{out}{err}",
        if ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );

    service.stop();
    sim_cancel.cancel();
    assert!(
        ok,
        "the browser script failed (screenshots in {}):\n--- stdout\n{out}\n--- stderr\n{err}",
        shots.display()
    );
    eprintln!("whole test {:.1} s", t0.elapsed().as_secs_f64());
}
