//! Helpers for the ingest tests: the service in-process with a clean shutdown, JSON API calls,
//! polling, process resource figures and a gst-rtsp-server of our own (a camera server not ours).
//!
//! Used with `mod common;` declared next to it in the test file.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::common;

/// The service running in-process (see [`common::Service`]).
pub type Svc = common::Service;

/// Starts the service with `settings` (`[ingest]`/`[health]`/`[credentials.*]` tables) and
/// `cameras` (`[[cameras]]` tables) in a fresh data directory; `env` feeds `password_env`.
pub fn start_service(settings: &str, cameras: &str, env: &[(&str, &str)]) -> Svc {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        r#"
[node]
name = "ingest-test"
data_dir = "{data}"
[web]
listen = "127.0.0.1:0"
{settings}
{cameras}
{auth}
"#,
        data = dir.path().join("data").display(),
        auth = common::TEST_AUTH,
    );
    common::start_service(dir, &toml, env)
}

/// One `[[cameras]]` table.
pub fn camera_toml(id: &str, url: &str, area_path: &str, extra: &str) -> String {
    format!(
        "[[cameras]]\nid = \"{id}\"\nname = \"测试 {id}\"\nurl = \"{url}\"\narea_path = \"{area_path}\"\n{extra}\n"
    )
}

/// `GET path` → JSON, asserting 200.
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = common::api(addr, "GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `GET /api/cameras/{id}`.
pub fn camera(svc: &Svc, id: &str) -> Value {
    get_json(svc.addr, &format!("/api/cameras/{id}"))
}

/// `GET /api/health/summary`.
pub fn summary(svc: &Svc) -> Value {
    get_json(svc.addr, "/api/health/summary")
}

/// `GET /api/health/availability` over `[from, to)`.
pub fn availability(svc: &Svc, from: SystemTime, to: SystemTime, group_by: &str) -> Vec<Value> {
    let v = get_json(
        svc.addr,
        &format!(
            "/api/health/availability?from={}&to={}&group_by={group_by}",
            unix_ms(from),
            unix_ms(to)
        ),
    );
    v.as_array().expect("an array of rows").clone()
}

/// `GET /api/cameras/{id}/history` (newest first).
pub fn history(svc: &Svc, id: &str) -> Vec<Value> {
    get_json(svc.addr, &format!("/api/cameras/{id}/history?limit=1000"))
        .as_array()
        .expect("an array of transitions")
        .clone()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Polls camera `id` every 250 ms until `pred` holds; returns the seconds it took, or panics with
/// the last view.
pub fn wait_for(
    svc: &Svc,
    id: &str,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> f64 {
    let t0 = Instant::now();
    loop {
        let v = camera(svc, id);
        if pred(&v) {
            return t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < limit,
            "camera {id}: not {what} within {limit:?}; last seen {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The camera's state is `state`.
pub fn is_state(v: &Value, state: &str) -> bool {
    v["state"] == state
}

/// The camera's quality faults include `code`.
pub fn has_fault(v: &Value, code: &str) -> bool {
    v["faults"]
        .as_array()
        .is_some_and(|a| a.iter().any(|f| f["code"] == code))
}

/// Sum of a camera view's `counters.reconnects` over every reason.
pub fn reconnects_total(v: &Value) -> u64 {
    v["counters"]["reconnects"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Sets one fault on several camsim cameras at once through its control API (`POST /faults`).
pub fn set_faults(sim: &common::Sim, cameras: &[u32], kind: &str) {
    let ids: Vec<String> = cameras.iter().map(|c| format!("\"{c}\"")).collect();
    let body = format!(r#"{{"cameras":[{}],"kind":"{kind}"}}"#, ids.join(","));
    let (status, resp) = common::http(sim.running.control_addr, "POST", "/faults", &body);
    assert_eq!(status, 200, "camsim POST /faults {body}: {resp}");
}

/// The test process's own threads, open file descriptors and resident memory.
#[derive(Debug, Clone, Copy)]
pub struct Resources {
    /// `Threads:` in /proc/self/status.
    pub threads: i64,
    /// Entries in /proc/self/fd.
    pub fds: i64,
    /// `VmRSS:` in /proc/self/status, kB.
    pub rss_kb: i64,
}

impl Resources {
    /// Reads the figures now.
    pub fn now() -> Resources {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let field = |name: &str| -> i64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
        };
        let fds = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .count() as i64;
        Resources {
            threads: field("Threads:"),
            fds,
            rss_kb: field("VmRSS:"),
        }
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "threads {:>3}  fds {:>4}  rss {:>7.1} MB",
            self.threads,
            self.fds,
            self.rss_kb as f64 / 1024.0
        )
    }
}

/// A gst-rtsp-server (not camsim) on a free local port, its GLib main loop on its own thread.
pub struct GstRtspServer {
    /// The bound port.
    pub port: u16,
    main_loop: gstreamer::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GstRtspServer {
    /// Serves each `(mount, launch)` pair, e.g. `("/live", "( filesrc … ! rtph264pay name=pay0 pt=96 )")`;
    /// each client gets its own media (not shared), so clients never race on one pipeline.
    pub fn start(mounts: &[(&str, String)]) -> GstRtspServer {
        use gstreamer::glib;
        use gstreamer_rtsp_server as rtsp;
        use gstreamer_rtsp_server::prelude::*;

        gstreamer::init().expect("gst init");
        let mounts: Vec<(String, String)> = mounts
            .iter()
            .map(|(m, l)| (m.to_string(), l.clone()))
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gst-rtsp-server".into())
            .spawn(move || {
                // A context of our own, so nothing else in the process competes for it.
                let ctx = glib::MainContext::new();
                let main_loop = glib::MainLoop::new(Some(&ctx), false);
                let server = rtsp::RTSPServer::new();
                server.set_address("127.0.0.1");
                server.set_service("0");
                let points = server.mount_points().expect("mount points");
                for (mount, launch) in &mounts {
                    let factory = rtsp::RTSPMediaFactory::new();
                    factory.set_launch(launch);
                    factory.set_shared(false);
                    points.add_factory(mount, factory);
                }
                let source = server.attach(Some(&ctx)).expect("attach the RTSP server");
                tx.send((server.bound_port(), main_loop.clone()))
                    .expect("report the port");
                ctx.with_thread_default(|| main_loop.run())
                    .expect("own the main context");
                if let Some(s) = ctx.find_source_by_id(&source) {
                    s.destroy();
                }
                // Sessions and media go with the server when the thread ends.
                drop(server);
            })
            .expect("spawn the gst-rtsp-server thread");
        let (port, main_loop) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("gst-rtsp-server started");
        assert!(port > 0, "gst-rtsp-server bound no port");
        GstRtspServer {
            port: port as u16,
            main_loop,
            thread: Some(thread),
        }
    }

    /// `rtsp://127.0.0.1:PORT{mount}`.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}{mount}", self.port)
    }
}

impl Drop for GstRtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tiny HTTP server that answers every request with an HTML page (a URL that is no video).
pub struct HtmlServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HtmlServer {
    /// Starts serving on a free local port.
    pub fn start() -> HtmlServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let page = "<!doctype html><title>县局门户</title><p>not a camera</p>";
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                            page.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        HtmlServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HtmlServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server that accepts connections and never says a word (a hung camera).
pub struct SilentServer {
    /// Where it listens.
    pub addr: SocketAddr,
    _listener: std::net::TcpListener,
}

impl SilentServer {
    /// Listens on a free local port; the kernel completes handshakes into the backlog, nobody reads.
    pub fn start() -> SilentServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        SilentServer {
            addr: listener.local_addr().expect("addr"),
            _listener: listener,
        }
    }
}

/// A local address that drops every SYN, like a host behind a firewall that drops packets: a
/// listener with a one-connection backlog, filled by connections nobody accepts. (A routed
/// "blackhole" such as 10.255.255.1 is not one on every network: a transparent proxy may answer.)
pub struct Blackhole {
    /// Connecting here hangs until the client gives up.
    pub addr: SocketAddr,
    _fill: Vec<std::net::TcpStream>,
    _listener: tokio::net::TcpListener,
    _rt: tokio::runtime::Runtime,
}

impl Blackhole {
    /// Binds, fills the accept queue, and checks that a further connect hangs.
    pub fn start() -> Blackhole {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            socket.listen(0).expect("listen")
        });
        let addr = listener.local_addr().expect("addr");
        let mut fill = Vec::new();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fill.push(s),
                Err(_) => break,
            }
            assert!(fill.len() < 16, "the accept queue of {addr} never fills");
        }
        Blackhole {
            addr,
            _fill: fill,
            _listener: listener,
            _rt: rt,
        }
    }
}
