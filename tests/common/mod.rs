//! Shared helpers for integration tests: assets from scripts/setup, a camsim per test binary,
//! and a GStreamer decoder that hands back grey frames.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use qianliyan::camsim;
use tokio_util::sync::CancellationToken;

/// A file made by `scripts/setup`; a missing one fails the test with the fix in the message.
pub fn asset(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/setup` (or `make test`, which runs it) first",
        p.display()
    );
    p
}

/// A camsim running on a background runtime for the whole test binary.
pub struct Sim {
    /// Bound addresses and state.
    pub running: camsim::Running,
    _rt: tokio::runtime::Runtime,
    _cancel: CancellationToken,
}

/// Starts camsim with `cameras` cameras on free ports, serving the sub-stream file.
pub fn start_sim(
    cameras: u32,
    auth: Option<camsim::Auth>,
    transports: camsim::TransportPolicy,
) -> Sim {
    start_sim_with(cameras, "video/vtest_sub.mp4", auth, transports)
}

/// Starts camsim serving `source` (relative to assets/) as every camera's main stream.
pub fn start_sim_with(
    cameras: u32,
    source: &str,
    auth: Option<camsim::Auth>,
    transports: camsim::TransportPolicy,
) -> Sim {
    start_sim_scenes(cameras, source, auth, transports, camsim::Scenes::default())
}

/// [`start_sim_with`] with scenes (quiet cameras, scripted bursts).
pub fn start_sim_scenes(
    cameras: u32,
    source: &str,
    auth: Option<camsim::Auth>,
    transports: camsim::TransportPolicy,
    scenes: camsim::Scenes,
) -> Sim {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    let opts = camsim::Options {
        cameras,
        source: asset(source),
        sub_source: None,
        rtsp_listen: "127.0.0.1:0".parse().expect("addr"),
        control_listen: "127.0.0.1:0".parse().expect("addr"),
        udp_port: 0,
        auth,
        transports,
        scenes,
    };
    let running = rt
        .block_on(camsim::start(opts, cancel.clone()))
        .expect("camsim starts");
    Sim {
        running,
        _rt: rt,
        _cancel: cancel,
    }
}

/// The plain camsim shared by the tests of one binary (8 cameras, no auth).
pub fn shared_sim() -> &'static Sim {
    static SIM: OnceLock<Sim> = OnceLock::new();
    SIM.get_or_init(|| start_sim(8, None, camsim::TransportPolicy::Both))
}

/// Runs a command with a deadline; returns (success, stdout, stderr).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.is_some_and(|s| s.success()), out, err)
}

/// A small grey picture decoded from a stream.
pub struct Gray {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major luma, no padding.
    pub data: Vec<u8>,
}

impl Gray {
    /// Mean luma.
    pub fn mean(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len().max(1) as f64
    }

    /// Mean absolute difference to another picture of the same size.
    pub fn diff(&self, other: &Gray) -> f64 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / self.data.len().max(1) as f64
    }

    /// Fraction of 8×8 blocks whose luma range is at most 4 (flat, untextured).
    pub fn flat_fraction(&self) -> f64 {
        let (bw, bh) = (self.width / 8, self.height / 8);
        let mut flat = 0;
        for by in 0..bh {
            for bx in 0..bw {
                let (mut lo, mut hi) = (255u8, 0u8);
                for y in 0..8 {
                    for x in 0..8 {
                        let v = self.data[(by * 8 + y) * self.width + bx * 8 + x];
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
                if hi - lo <= 4 {
                    flat += 1;
                }
            }
        }
        flat as f64 / (bw * bh).max(1) as f64
    }
}

/// Opens `url` with GStreamer's `rtspsrc` and decodes frames to GRAY8.
pub struct Decoder {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Decoder {
    /// Starts decoding; `protocols` is "tcp" or "udp".
    pub fn open(url: &str, protocols: &str) -> Decoder {
        Self::open_auth(url, protocols, None)
    }

    /// Like [`Decoder::open`], answering authentication challenges with `(user, password)`.
    pub fn open_auth(url: &str, protocols: &str, credentials: Option<(&str, &str)>) -> Decoder {
        gst::init().expect("gst init");
        let desc = format!(
            "rtspsrc name=src protocols={protocols} latency=100 ! rtph264depay ! h264parse ! avdec_h264 ! \
             videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sink sync=false max-buffers=200"
        );
        let pipeline = gst::parse::launch(&desc)
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        pipeline
            .by_name("src")
            .expect("src")
            .set_property("location", url);
        if let Some((user, password)) = credentials {
            let src = pipeline.by_name("src").expect("src");
            src.set_property("user-id", user);
            src.set_property("user-pw", password);
        }
        let sink = pipeline
            .by_name("sink")
            .expect("sink")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        pipeline.set_state(gst::State::Playing).expect("playing");
        Decoder { pipeline, sink }
    }

    /// The next decoded frame, or `None` if none arrives within `limit`.
    pub fn next(&self, limit: Duration) -> Option<Gray> {
        let sample = self
            .sink
            .try_pull_sample(gst::ClockTime::from_mseconds(limit.as_millis() as u64))?;
        let caps = sample.caps()?;
        let s = caps.structure(0)?;
        let width = s.get::<i32>("width").ok()? as usize;
        let height = s.get::<i32>("height").ok()? as usize;
        let buffer = sample.buffer()?;
        let map = buffer.map_readable().ok()?;
        // GRAY8 rows are padded to 4 bytes.
        let stride = (width + 3) & !3;
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            data.extend_from_slice(map.get(y * stride..y * stride + width)?);
        }
        Some(Gray {
            width,
            height,
            data,
        })
    }

    /// Discards frames already queued, so the next one reflects the stream now.
    pub fn drain(&self) {
        while self.sink.try_pull_sample(gst::ClockTime::ZERO).is_some() {}
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Sets a fault through camsim's real control API (HTTP over a socket).
pub fn set_fault(sim: &Sim, camera: &str, kind: &str) -> (u16, String) {
    http(
        sim.running.control_addr,
        "POST",
        &format!("/cameras/{camera}/fault"),
        &format!("{{\"kind\":\"{kind}\"}}"),
    )
}

/// A minimal HTTP/1.1 request without credentials; returns (status, body).
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, body, &[])
}

/// An in-memory environment for configs in tests (edition 2024 makes `set_var` unsafe).
pub struct MapEnv(pub std::collections::BTreeMap<String, String>);

impl qianliyan::config::Environment for MapEnv {
    fn var(&self, name: &str) -> Result<String, std::env::VarError> {
        self.0
            .get(name)
            .cloned()
            .ok_or(std::env::VarError::NotPresent)
    }
    fn read_file(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// The `[auth]` section every test service gets: one admin whose password comes from the
/// environment entry [`TEST_PASSWORD_ENV`] (see [`test_env`]).
pub const TEST_AUTH: &str = r#"
[auth]
[[auth.users]]
username = "qa-admin"
display_name = "测试管理员"
role = "admin"
password_env = "QLY_TEST_PASSWORD"
"#;

/// The environment variable holding the test admin's password.
pub const TEST_PASSWORD_ENV: &str = "QLY_TEST_PASSWORD";

/// The test admin's password (built at run time; not a secret of anything real).
pub fn test_password() -> String {
    format!("qa-{}-pass", 20 * 3 + 1)
}

/// Environment entries a test service needs for [`TEST_AUTH`].
pub fn test_env() -> Vec<(String, String)> {
    vec![(TEST_PASSWORD_ENV.to_owned(), test_password())]
}

/// Logs in as `username` and returns the session token (panics with the answer when refused).
pub fn login(addr: std::net::SocketAddr, username: &str, password: &str) -> String {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let (status, answer) = http(addr, "POST", "/api/auth/login", &body);
    assert_eq!(status, 200, "login as {username}: {answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("login answer is JSON");
    v["token"].as_str().expect("token").to_owned()
}

/// [`http`] with a bearer token.
pub fn http_as(
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    http_with(
        addr,
        method,
        path,
        body,
        &[("Authorization", &format!("Bearer {token}"))],
    )
}

/// [`http`] as the test admin of [`TEST_AUTH`] (logs in once per service address).
pub fn api(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static TOKENS: Mutex<Option<HashMap<std::net::SocketAddr, String>>> = Mutex::new(None);
    let token = |fresh: bool| {
        let mut t = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
        let map = t.get_or_insert_with(HashMap::new);
        if fresh {
            map.remove(&addr);
        }
        map.entry(addr)
            .or_insert_with(|| login(addr, "qa-admin", &test_password()))
            .clone()
    };
    let (status, body_out) = http_as(addr, &token(false), method, path, body);
    if status == 401 {
        // A port reused by a later service in the same test binary: log in again.
        return http_as(addr, &token(true), method, path, body);
    }
    (status, body_out)
}

/// A minimal HTTP/1.1 request with extra headers; returns (status, body).
pub fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    // Lossy: a JPEG body must not hide the status line.
    let resp = String::from_utf8_lossy(&raw);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// `qianliyan serve` running in-process on its own runtime; dropping it cancels and drains it (camera
/// tasks, decoder, ledger thread), so a test leaves no threads behind.
pub struct Service {
    /// Where the API listens.
    pub addr: std::net::SocketAddr,
    /// The live inventory, for counters read in-process. Weak: the service's shutdown drains the
    /// decoders only once it holds the last reference.
    fleet: std::sync::Weak<qianliyan::camera::Fleet>,
    service: Option<qianliyan::app::Service>,
    cancel: CancellationToken,
    rt: tokio::runtime::Runtime,
    /// What it was started with, for [`Service::restart`].
    toml: String,
    env: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
}

impl Service {
    /// A camera's live entry (its counters), read in-process.
    pub fn entry(&self, id: &str) -> std::sync::Arc<qianliyan::camera::CameraEntry> {
        self.fleet
            .upgrade()
            .and_then(|f| f.get(id))
            .unwrap_or_else(|| panic!("camera {id} is not in the fleet"))
    }

    /// Cancels and waits (up to 30 s) for every stage to stop.
    pub fn stop(self) {
        drop(self);
    }

    /// Stops the service and starts it again on the same configuration and data directory.
    pub fn restart(mut self) -> Service {
        let dir = self.dir.take().expect("the service keeps its directory");
        let (toml, env) = (
            std::mem::take(&mut self.toml),
            std::mem::take(&mut self.env),
        );
        drop(self);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        start_service(dir, &toml, &env)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(service) = self.service.take() {
            let t0 = Instant::now();
            let stopped = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), service.stop()).await
            });
            eprintln!(
                "service stop: {:?} after {:.1} s",
                stopped.is_ok(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

/// Starts the service from `toml` (relative paths resolve in `dir`, which the service keeps), with
/// [`test_env`] plus `env` as its environment.
pub fn start_service(dir: tempfile::TempDir, toml: &str, env: &[(&str, &str)]) -> Service {
    let given: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env: std::collections::BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(test_env())
        .collect();
    let config = qianliyan::settings::parse_str_with(toml, dir.path(), &MapEnv(env))
        .unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let cancel = CancellationToken::new();
    let service = rt
        .block_on(qianliyan::app::start(
            config,
            Default::default(),
            cancel.clone(),
        ))
        .expect("service starts");
    Service {
        addr: service.addr,
        fleet: std::sync::Arc::downgrade(&service.fleet),
        service: Some(service),
        cancel,
        rt,
        toml: toml.to_owned(),
        env: given,
        dir: Some(dir),
    }
}
