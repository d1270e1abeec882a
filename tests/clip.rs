//! Evidence clips end to end: camsim's sample video over RTSP → the real detector → an intrusion
//! alert → its clip, an MP4 of the stream as received from `pre` before the alert's frame to `post`
//! after it, served with byte ranges and only within the alert's jurisdiction.

mod common;

use std::time::{Duration, Instant};

use common::{api, asset};
use qianliyan::camsim::TransportPolicy;
use serde_json::Value;
use sha2::Digest;

const RULES: &str = r#"
[[zones]]
id = "road"
camera = "c1"
polygon = [[0.0, 0.33], [1.0, 0.18], [1.0, 0.85], [0.0, 0.45]]

[[rules]]
id = "road-intrusion"
camera = "c1"
kind = "intrusion"
zone = "road"
cooldown = "1s"
"#;

const PRE_S: f64 = 4.0;
const POST_S: f64 = 4.0;

/// GET with the token and extra headers: (status, headers in lower case, body).
fn get(
    addr: std::net::SocketAddr,
    token: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer");
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// Collects the feed's messages (a WebSocket as the command hall opens it) on a thread of its own.
fn listen_to_feed(
    addr: std::net::SocketAddr,
    token: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<Value>>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (out, token) = (seen.clone(), token.to_owned());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut req = format!("ws://{addr}/api/alerts/feed")
                .into_client_request()
                .unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .expect("feed connects");
            let _ = ready_tx.send(());
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m
                    && let Ok(v) = serde_json::from_str::<Value>(&t)
                {
                    out.lock().unwrap().push(v);
                }
            }
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the feed accepts the connection");
    seen
}

/// (codec, duration s, first frame a keyframe).
fn probe(path: &std::path::Path) -> (String, f64, bool) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(args)
            .arg(path)
            .output()
            .expect("ffprobe (scripts/setup installs ffmpeg)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let codec = run(&["-show_entries", "stream=codec_name", "-of", "csv=p=0"]);
    let duration = run(&["-show_entries", "format=duration", "-of", "csv=p=0"]);
    let key = run(&[
        "-read_intervals",
        "%+#1",
        "-show_entries",
        "frame=key_frame",
        "-of",
        "csv=p=0",
    ]);
    (codec, duration.parse().unwrap_or(0.0), key.starts_with('1'))
}

#[test]
fn an_intrusion_gets_a_clip_served_with_ranges_and_only_within_its_jurisdiction() {
    let _ = asset("video/vtest_main.mp4");
    let sim = common::start_sim_with(1, "video/vtest_main.mp4", None, TransportPolicy::Both);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), RULES).expect("rules file");
    let repo = env!("CARGO_MANIFEST_DIR");
    let toml = format!(
        r#"
rules = "rules.toml"
[node]
data_dir = "{data}"
assets_dir = "{repo}/assets"
[web]
listen = "127.0.0.1:0"
[ingest]
analysis_fps = 2.0
[inference]
models = ["{repo}/models/yolox_nano.toml"]
threads = 1
[clip]
pre = "{PRE_S}s"
post = "{POST_S}s"
latency_allowance = "6s"
[[cameras]]
id = "c1"
name = "校园道路"
url = "{url}"
area_path = "示范县/城关镇/东街社区"
[[cameras]]
id = "c2"
name = "无规则"
url = "{url}"
{auth}
[[auth.users]]
username = "west"
role = "dispatcher"
area = "示范县/西城镇"
password_env = "{pw_env}"
[[auth.users]]
username = "east"
role = "dispatcher"
area = "示范县/城关镇"
password_env = "{pw_env}"
"#,
        data = dir.path().join("data").display(),
        url = sim.running.url(1),
        auth = common::TEST_AUTH,
        pw_env = common::TEST_PASSWORD_ENV,
    );
    let service = common::start_service(dir, &toml, &[]);
    let addr = service.addr;
    let feed = listen_to_feed(
        addr,
        &common::login(addr, "qa-admin", &common::test_password()),
    );

    // The first intrusion whose clip is written (people walk on the road all the time).
    let t0 = Instant::now();
    let alert = loop {
        let (status, body) = api(addr, "GET", "/api/alerts?limit=100", "");
        assert_eq!(status, 200, "{body}");
        let alerts: Vec<Value> = serde_json::from_str(&body).expect("json");
        for a in &alerts {
            assert_eq!(a["camera"], "c1", "{a}");
            assert!(
                a["clip"].is_object(),
                "every alert of a camera with rules has a clip: {a}"
            );
            assert_ne!(a["clip"]["state"], "failed", "{a}");
        }
        if let Some(a) = alerts.iter().find(|a| a["clip"]["state"] == "ready") {
            break a.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no clip ready 120 s after start: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "clip after {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        alert["clip"]
    );
    let id = alert["id"].as_str().expect("id");
    let clip = &alert["clip"];
    let admin = common::login(addr, "qa-admin", &common::test_password());
    let path = format!("/api/alerts/{id}/clip.mp4");

    let (status, head, mp4) = get(addr, &admin, &path, &[]);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: video/mp4"), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    assert_eq!(mp4.len() as u64, clip["bytes"].as_u64().unwrap());
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&mp4)),
        clip["sha256"].as_str().unwrap(),
        "the file is what the alert's digest says"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &mp4).unwrap();
    let (codec, secs, key) = probe(file.path());
    assert_eq!(codec, "h264");
    assert!(key, "the clip starts on a keyframe");
    // camsim's GOP is at most 2 s.
    assert!(secs >= PRE_S + POST_S - 2.0, "{secs} s");
    let start = clip["start_ms"].as_i64().unwrap();
    let t = alert["time_ms"].as_i64().unwrap();
    assert!(
        start <= t && t <= start + (secs * 1000.0) as i64,
        "the alert's frame at {t} lies in the clip from {start} for {secs} s"
    );
    assert!(
        t - start >= ((PRE_S - 0.2) * 1000.0) as i64,
        "pre: {} ms",
        t - start
    );

    // Byte ranges: a player asks for parts of the file.
    let (status, head, part) = get(addr, &admin, &path, &[("Range", "bytes=100-199")]);
    assert_eq!(status, 206, "{head}");
    assert!(
        head.contains(&format!("content-range: bytes 100-199/{}", mp4.len())),
        "{head}"
    );
    assert_eq!(part, mp4[100..200]);
    let (status, head, _) = get(
        addr,
        &admin,
        &path,
        &[("Range", &format!("bytes={}-", mp4.len() + 10))],
    );
    assert_eq!(status, 416, "{head}");

    // A police station sees its own area's clip, another station is told it does not exist.
    let east = common::login(addr, "east", &common::test_password());
    assert_eq!(get(addr, &east, &path, &[("Range", "bytes=0-9")]).0, 206);
    let west = common::login(addr, "west", &common::test_password());
    let (status, _, body) = get(addr, &west, &path, &[]);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(get(addr, &west, &format!("/api/alerts/{id}"), &[]).0, 404);

    // Intrusions on c1 within two minutes of each other are one incident in the hall: its card
    // counts them, it lists them, and another station is told it does not exist.
    let incident = alert["incident_id"]
        .as_str()
        .expect("folded into an incident");
    let (status, body) = api(addr, "GET", "/api/incidents", "");
    assert_eq!(status, 200, "{body}");
    let cards: Vec<Value> = serde_json::from_str(&body).expect("json");
    assert!(cards.iter().any(|c| c["id"] == incident), "{body}");
    let (status, body) = api(addr, "GET", &format!("/api/incidents/{incident}"), "");
    assert_eq!(status, 200, "{body}");
    let full: Value = serde_json::from_str(&body).expect("json");
    let members = full["alerts"].as_array().expect("alerts");
    assert_eq!(
        members.len() as i64,
        full["count"].as_i64().unwrap(),
        "{body}"
    );
    assert!(
        members.iter().all(|a| a["incident_id"] == incident),
        "{body}"
    );
    assert_eq!(full["type_zh"], "区域入侵", "{body}");
    let (status, _, _) = get(addr, &west, &format!("/api/incidents/{incident}"), &[]);
    assert_eq!(status, 404);

    // The command hall's feed announced the clip ready on the alert, after the alert itself.
    let t1 = Instant::now();
    loop {
        let seen = feed.lock().unwrap().clone();
        let raised = seen
            .iter()
            .position(|m| m["kind"] == "alert" && m["id"] == id);
        let ready = seen.iter().position(|m| {
            m["kind"] == "alert_update" && m["id"] == id && m["clip"]["state"] == "ready"
        });
        if let (Some(r), Some(u)) = (raised, ready) {
            assert!(r < u);
            assert_eq!(seen[r]["clip"]["state"], "recording", "{}", seen[r]);
            assert_eq!(seen[u]["clip"]["sha256"], clip["sha256"]);
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "the feed did not announce the clip: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Only the camera with rules keeps a buffer; the metrics say so.
    let (_, metrics) = api(addr, "GET", "/metrics", "");
    assert!(
        metrics.contains("qly_clip_buffered_cameras 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("qly_clips_total{result=\"ready\"}"),
        "{metrics}"
    );
    let held = metrics
        .lines()
        .find_map(|l| l.strip_prefix("qly_clip_buffer_bytes "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(held > 0, "{metrics}");
    eprintln!(
        "buffer of the 768×576 camera: {held} bytes ({PRE_S} + 6 s and the GOP in progress); clip {} bytes for {secs:.1} s",
        mp4.len()
    );
    let (_, system) = api(addr, "GET", "/api/system", "");
    let system: Value = serde_json::from_str(&system).unwrap();
    assert_eq!(system["clips"]["buffered_cameras"], 1, "{system}");
    service.stop();
}
