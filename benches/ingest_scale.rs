//! ingest_scale bench: `qianliyan serve` ingesting N camsim sub-streams (keyframe-only decode, 1
//! analysed fps per camera, health and VQD on) against the same N streams received by bare
//! `gst-launch-1.0 rtspsrc … ! rtph264depay ! h264parse ! fakesink` pipelines, in the same run.
//!
//! `cargo bench --bench ingest_scale -- [--cameras 100,500,1300] [--seconds 30] [--warmup 10]
//! [--stagger 10] [--online-timeout 120] [--per-process 50] [--no-baseline] [--hold 0]
//! [--source PATH]`
//!
//! For each N, one after the other:
//! 1. camsim (`qianliyan camsim --cameras N --source vtest_sub.mp4`) starts as a child process and
//!    stays up for both halves of the row, so both receivers get the very same streams.
//! 2. The service starts as a separate child (`qianliyan serve --config <generated TOML>`) with N
//!    cameras on camsim's streams, `keyframe_only = true`, `analysis_fps = 1.0`, `stall_after = 10s`.
//!    camsim starts a session's GOP at its PLAY, so cameras that connect together send their keyframes
//!    together (real cameras' GOPs free-run): with `--stagger S` (default 10 s) the service starts with
//!    no camera and the bench adds the N cameras through `POST /api/cameras` evenly over S seconds, so
//!    their keyframe phases spread as a real fleet's do; `--stagger 0` puts all N in the config instead
//!    (the start-up path, every keyframe of the fleet in one burst per GOP).
//!    The bench polls `GET /api/health/summary` until every camera is online (or the online timeout),
//!    warms up, and over the window samples the SERVICE's `/proc/<pid>`: CPU (utime + stime, in % of
//!    one core; per thread, grouped by thread name), RSS and PSS, threads and fds at the window's end;
//!    `GET /api/cameras` before and after the window gives the frames received, keyframes received and
//!    frames analysed (decoded + VQD) per second; the summary after the window gives the online rate.
//!    camsim's keyframe interval is 2 s, so 1 analysed fps per camera means a decode target of
//!    N × 0.5 keyframes/s. The service is then stopped (SIGTERM).
//! 3. The baseline: ⌈N / K⌉ `gst-launch-1.0` processes, each with K cameras as K independent
//!    `rtspsrc location=… protocols=tcp ! rtph264depay ! h264parse ! fakesink` branches of one
//!    pipeline description (K = `--per-process`, default 50). Once camsim reports N active sessions,
//!    after the same warm-up, the bench samples the SUM over those processes over a window of the same
//!    length.
//!
//! The machine is shared (camsim, the bench, and whatever else runs): absolute numbers move from run
//! to run, so compare within one run. The machine's total busy CPU (`/proc/stat`) and camsim's CPU are
//! reported beside each window so saturation is visible. Results go to
//! `target/bench/ingest_scale.{json,md}` (rewritten after every row); the service's config and logs
//! stay under `target/bench/ingest_scale/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use qianliyan::scenario::child::Child;
use qianliyan::scenario::procfs;
use serde_json::{Value, json};

const DEFAULT_SOURCE: &str = "assets/video/vtest_sub.mp4";
/// camsim's keyframe interval on the sample clips (GOP of 20 frames at 10 fps).
const KEYFRAME_INTERVAL_S: f64 = 2.0;
/// Analysis rate configured for every camera.
const ANALYSIS_FPS: f64 = 1.0;
/// How long camsim may take to prepare its clips and accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Goal of the issue: online rate held.
const ONLINE_GOAL: f64 = 0.99;
/// The service and camsim above this share of all cores count as saturated.
const SATURATED: f64 = 0.95;
/// One thread above this (in % of one core) is at its ceiling.
const SINGLE_THREAD_CEILING: f64 = 90.0;
/// HTTP timeout for the service's API (a 1,300-camera list on a loaded machine takes a while).
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ingest_scale: {e}");
            eprintln!(
                "usage: cargo bench --bench ingest_scale -- [--cameras 100,500,1300] [--seconds 30] \
                 [--warmup 10] [--stagger 10] [--online-timeout 120] [--per-process 50] [--no-baseline] \
                 [--hold 0] [--source PATH]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest_scale: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Opts {
    cameras: Vec<u32>,
    seconds: f64,
    warmup: f64,
    online_timeout: f64,
    per_process: u32,
    baseline: bool,
    hold: f64,
    stagger: f64,
    source: PathBuf,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut opts = Opts {
            cameras: vec![100, 500, 1300],
            seconds: 30.0,
            warmup: 10.0,
            online_timeout: 120.0,
            per_process: 50,
            baseline: true,
            hold: 0.0,
            stagger: 10.0,
            source: manifest.join(DEFAULT_SOURCE),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let secs = |name: &str, v: String, zero_ok: bool| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| (*s > 0.0 || (zero_ok && *s == 0.0)) && s.is_finite())
                    .ok_or_else(|| format!("{name}: {v:?} is not a positive number of seconds"))
            };
            match arg.as_str() {
                // cargo passes --bench to harness = false benches.
                "--bench" => {}
                "--cameras" => {
                    let v = value("--cameras")?;
                    opts.cameras = v
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .parse::<u32>()
                                .ok()
                                .filter(|n| (1..=9999).contains(n))
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            format!("--cameras: {v:?} is not a comma-separated list of 1..=9999")
                        })?;
                }
                "--seconds" => opts.seconds = secs("--seconds", value("--seconds")?, false)?,
                "--warmup" => opts.warmup = secs("--warmup", value("--warmup")?, true)?,
                "--online-timeout" => {
                    opts.online_timeout =
                        secs("--online-timeout", value("--online-timeout")?, false)?
                }
                "--hold" => opts.hold = secs("--hold", value("--hold")?, true)?,
                "--stagger" => opts.stagger = secs("--stagger", value("--stagger")?, true)?,
                "--per-process" => {
                    let v = value("--per-process")?;
                    opts.per_process =
                        v.parse::<u32>().ok().filter(|k| *k >= 1).ok_or_else(|| {
                            format!("--per-process: {v:?} is not a positive count")
                        })?;
                }
                "--no-baseline" => opts.baseline = false,
                "--source" => opts.source = PathBuf::from(value("--source")?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if !opts.source.is_file() {
            return Err(format!(
                "source {} not found; run scripts/setup to fetch and encode the test videos, or pass --source",
                opts.source.display()
            ));
        }
        opts.source = opts
            .source
            .canonicalize()
            .map_err(|e| format!("source {}: {e}", opts.source.display()))?;
        Ok(opts)
    }
}

// ───────────────────────────── /proc sampling ─────────────────────────────

/// One process's counters at one instant.
#[derive(Clone, Default)]
struct ProcSample {
    /// utime + stime of the whole process, clock ticks.
    ticks: u64,
    /// Per thread: tid → (name, utime + stime).
    tasks: BTreeMap<u32, (String, u64)>,
}

/// Memory and handles of a process at one instant.
#[derive(Clone, Copy, Default)]
struct ProcFootprint {
    rss_kb: u64,
    pss_kb: u64,
    threads: u64,
    fds: u64,
}

impl ProcFootprint {
    fn add(&mut self, o: &ProcFootprint) {
        self.rss_kb += o.rss_kb;
        self.pss_kb += o.pss_kb;
        self.threads += o.threads;
        self.fds += o.fds;
    }
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    Some(ProcSample {
        ticks: procfs::sample(pid)?.ticks,
        tasks: procfs::threads(pid),
    })
}

fn proc_footprint(pid: u32) -> Option<ProcFootprint> {
    let p = procfs::sample(pid)?;
    Some(ProcFootprint {
        rss_kb: p.rss_kb,
        pss_kb: procfs::pss_kb(pid).unwrap_or(0),
        threads: p.threads,
        fds: p.fds,
    })
}

/// The single busiest thread between two samples: (name, % of one core).
fn busiest_thread(
    before: &[ProcSample],
    after: &[ProcSample],
    ticks: f64,
    window: f64,
) -> (String, f64) {
    let mut best = (String::new(), 0u64);
    for (b, a) in before.iter().zip(after) {
        for (tid, (name, t1)) in &a.tasks {
            let d = t1.saturating_sub(b.tasks.get(tid).map(|(_, t)| *t).unwrap_or(0));
            if d > best.1 {
                best = (name.clone(), d);
            }
        }
    }
    (best.0, best.1 as f64 / ticks / window * 100.0)
}

/// CPU by thread name between two samples of the same processes, in % of one core, busiest first.
fn thread_groups(
    before: &[ProcSample],
    after: &[ProcSample],
    ticks: f64,
    window: f64,
) -> Vec<(String, u64, f64)> {
    let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        for (tid, (name, t1)) in &a.tasks {
            let t0 = b.tasks.get(tid).map(|(_, t)| *t).unwrap_or(0);
            let g = groups.entry(name.clone()).or_default();
            g.0 += 1;
            g.1 += t1.saturating_sub(t0);
        }
    }
    let mut v: Vec<(String, u64, f64)> = groups
        .into_iter()
        .map(|(name, (n, t))| (name, n, t as f64 / ticks / window * 100.0))
        .collect();
    v.sort_by(|x, y| y.2.total_cmp(&x.2));
    v
}

// ───────────────────────────── children and HTTP ─────────────────────────────

/// A child stopped (SIGTERM, then SIGKILL) however the bench leaves its scope: the scenario runner's.
type Kid = Child;

/// Spawns `program args…` (see [`Child::spawn`]: open-file limit raised, stderr to `log`).
fn spawn(
    name: String,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: PathBuf,
) -> Result<Kid, String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Child::spawn(&name, program, args, &env, &log).map_err(|e| e.to_string())
}

/// A port that was free a moment ago (the child binds it right away).
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// A minimal HTTP/1.0 GET on 127.0.0.1: (status, body), or `None` if nothing sensible came back.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, "")
}

/// The environment variable the service reads the bench user's password from.
const BENCH_PASSWORD_ENV: &str = "QLY_BENCH_PASSWORD";

/// The bench user's password: made up per run, never stored.
fn bench_password() -> String {
    static PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PASSWORD
        .get_or_init(|| {
            format!(
                "bench-{}-{}",
                std::process::id(),
                Instant::now().elapsed().as_nanos()
            )
        })
        .clone()
}

/// A session token for the service on `port` (logs in once per port); `Some("")` for a server that
/// has no login (camsim's control API).
fn token(port: u16) -> Option<String> {
    static TOKENS: std::sync::Mutex<Vec<(u16, String)>> = std::sync::Mutex::new(Vec::new());
    let mut t = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, tok)) = t.iter().find(|(p, _)| *p == port) {
        return Some(tok.clone());
    }
    let body = json!({"username": "bench", "password": bench_password()}).to_string();
    let (code, answer) = raw_request(port, "POST", "/api/auth/login", &body, None)?;
    if code == 404 {
        t.push((port, String::new()));
        return Some(String::new());
    }
    if code != 200 {
        return None;
    }
    let tok = serde_json::from_str::<Value>(&answer).ok()?["token"]
        .as_str()?
        .to_owned();
    t.push((port, tok.clone()));
    Some(tok)
}

/// A minimal HTTP/1.0 request on 127.0.0.1 with a JSON body (if any), logged in: (status, body).
fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let tok = token(port)?;
    raw_request(
        port,
        method,
        path,
        body,
        Some(tok.as_str()).filter(|t| !t.is_empty()),
    )
}

fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}{content}\r\n{body}"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

fn http_json(port: u16, path: &str) -> Option<Value> {
    http_get(port, path)
        .filter(|(code, _)| *code == 200)
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
}

/// Fleet counters from `GET /api/cameras`, summed.
#[derive(Clone, Copy, Default)]
struct FleetCounters {
    frames_in: u64,
    keyframes_in: u64,
    analysed: u64,
    reconnects: u64,
    /// When the answer arrived (middle of the request).
    at: Option<Instant>,
}

fn fleet_counters(port: u16) -> Option<FleetCounters> {
    let t0 = Instant::now();
    let v = http_json(port, "/api/cameras")?;
    let t1 = Instant::now();
    let mut c = FleetCounters {
        at: Some(t0 + (t1 - t0) / 2),
        ..Default::default()
    };
    for cam in v.as_array()? {
        let k = &cam["counters"];
        let get = |name: &str| k[name].as_u64().unwrap_or(0);
        c.frames_in += get("frames_in");
        c.keyframes_in += get("keyframes_in");
        c.analysed += get("analysed");
        c.reconnects += k["reconnects"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or(0);
    }
    Some(c)
}

/// `qly_frames_dropped_total{reason="…"}` from the service's /metrics.
fn dropped(port: u16) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some((200, body)) = http_get(port, "/metrics") {
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("qly_frames_dropped_total{reason=\"")
                && let Some((reason, n)) = rest.split_once("\"} ")
                && let Ok(n) = n.trim().parse::<u64>()
            {
                out.insert(reason.to_owned(), n);
            }
        }
    }
    out
}

/// camsim's `/stats` counters.
#[derive(Clone, Copy, Default)]
struct SimStats {
    sessions_active: u64,
    bytes_sent: u64,
    late_resyncs: u64,
}

fn sim_stats(port: u16) -> Option<SimStats> {
    let v = http_json(port, "/stats")?;
    let get = |k: &str| v[k].as_u64().unwrap_or(0);
    Some(SimStats {
        sessions_active: get("sessions_active"),
        bytes_sent: get("bytes_sent"),
        late_resyncs: get("late_resyncs"),
    })
}

// ───────────────────────────── rows ─────────────────────────────

/// What one window measured on one receiver (the service, or the sum of the gst-launch processes).
#[derive(Clone, Default)]
struct Window {
    seconds: f64,
    cpu_percent: f64,
    mem: ProcFootprint,
    groups: Vec<(String, u64, f64)>,
    /// The busiest single thread: a thread near 100 % is a ceiling more cores do not lift.
    busiest: (String, f64),
    camsim_cpu_percent: f64,
    machine_busy_percent: f64,
    camsim_mbit_s: f64,
    late_resyncs: u64,
}

#[derive(Default)]
struct ServiceResult {
    ramp_99_s: Option<f64>,
    ramp_all_s: Option<f64>,
    w: Window,
    summary: Value,
    online: u64,
    online_rate: f64,
    analysed_fps: f64,
    fps_in: f64,
    keyframes_fps: f64,
    reconnects: u64,
    drops: BTreeMap<String, u64>,
    stop_s: f64,
}

#[derive(Default)]
struct BaselineResult {
    processes: u32,
    per_process: u32,
    sessions: u64,
    ramp_s: Option<f64>,
    exited: u32,
    w: Window,
}

struct Row {
    cameras: u32,
    service: ServiceResult,
    baseline: Option<BaselineResult>,
    notes: Vec<String>,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

impl Row {
    fn target_fps(&self) -> f64 {
        f64::from(self.cameras) * ANALYSIS_FPS.min(1.0 / KEYFRAME_INTERVAL_S)
    }
    fn per_cam(&self) -> f64 {
        // Per-camera figures divide by the cameras the service holds online (at least 1).
        (self.service.online.max(1)) as f64
    }
    fn svc_cpu_per_cam(&self) -> f64 {
        self.service.w.cpu_percent / self.per_cam()
    }
    fn svc_rss_per_cam_kb(&self) -> f64 {
        self.service.w.mem.rss_kb as f64 / self.per_cam()
    }
    fn svc_ingest_cpu(&self) -> f64 {
        ingest_cpu(&self.service.w.groups)
    }
    fn base_per_cam(&self) -> f64 {
        self.baseline
            .as_ref()
            .map(|b| b.sessions.min(u64::from(self.cameras)).max(1) as f64)
            .unwrap_or(1.0)
    }
    fn base_cpu_per_cam(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .map(|b| b.w.cpu_percent / self.base_per_cam())
    }
    fn base_rss_per_cam_kb(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .map(|b| b.w.mem.rss_kb as f64 / self.base_per_cam())
    }
    fn cpu_ratio(&self) -> Option<f64> {
        self.base_cpu_per_cam()
            .map(|b| ratio(self.svc_cpu_per_cam(), b))
    }
    fn ingest_cpu_ratio(&self) -> Option<f64> {
        self.base_cpu_per_cam()
            .map(|b| ratio(self.svc_ingest_cpu() / self.per_cam(), b))
    }
    fn rss_ratio(&self) -> Option<f64> {
        self.base_rss_per_cam_kb()
            .map(|b| ratio(self.svc_rss_per_cam_kb(), b))
    }
    fn pss_ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|b| {
            ratio(
                self.service.w.mem.pss_kb as f64 / self.per_cam(),
                b.w.mem.pss_kb as f64 / self.base_per_cam(),
            )
        })
    }
    /// CPU of the machine not used by the service, camsim or this bench's own sampling (other work
    /// on a shared machine), in % of one core.
    fn other_load(&self) -> f64 {
        let w = &self.service.w;
        (w.machine_busy_percent - w.cpu_percent - w.camsim_cpu_percent).max(0.0)
    }
    /// The service and camsim together use (nearly) every core.
    fn saturated(&self) -> bool {
        let w = &self.service.w;
        (w.cpu_percent + w.camsim_cpu_percent) / 100.0 >= SATURATED * nproc() as f64
    }
    fn decoded_share(&self) -> f64 {
        ratio(self.service.analysed_fps, self.target_fps())
    }
    /// Whether this N is held: ≥ 99 % online, decode keeping up (≥ 95 % of target) and the machine
    /// not saturated.
    fn verdict(&self) -> (bool, Vec<String>) {
        let mut why = Vec::new();
        if self.service.online_rate < ONLINE_GOAL {
            why.push(format!(
                "online {:.1} % < {:.0} %",
                self.service.online_rate * 100.0,
                ONLINE_GOAL * 100.0
            ));
        }
        if self.decoded_share() < 0.95 {
            why.push(format!(
                "decoded {:.0} % of target",
                self.decoded_share() * 100.0
            ));
        }
        if self.saturated() {
            why.push(format!(
                "service + camsim use {:.0} % of {} cores",
                self.service.w.cpu_percent + self.service.w.camsim_cpu_percent,
                nproc()
            ));
        }
        let (name, cpu) = &self.service.w.busiest;
        if *cpu >= SINGLE_THREAD_CEILING {
            why.push(format!("thread `{name}` at {cpu:.0} % of one core"));
        }
        (why.is_empty(), why)
    }

    fn json(&self) -> Value {
        let s = &self.service;
        let groups = |g: &[(String, u64, f64)]| {
            g.iter()
                .take(12)
                .map(|(name, n, cpu)| json!({"thread": name, "count": n, "cpu_percent": round(*cpu, 2)}))
                .collect::<Vec<_>>()
        };
        let window = |w: &Window| {
            json!({
                "seconds": round(w.seconds, 2),
                "cpu_percent_of_one_core": round(w.cpu_percent, 2),
                "rss_mb": round(w.mem.rss_kb as f64 / 1024.0, 1),
                "pss_mb": round(w.mem.pss_kb as f64 / 1024.0, 1),
                "threads": w.mem.threads,
                "fds": w.mem.fds,
                "threads_by_name": groups(&w.groups),
                "busiest_thread": {"thread": w.busiest.0, "cpu_percent": round(w.busiest.1, 1)},
                "camsim_cpu_percent": round(w.camsim_cpu_percent, 1),
                "machine_busy_percent": round(w.machine_busy_percent, 1),
                "camsim_mbit_s": round(w.camsim_mbit_s, 1),
                "camsim_late_resyncs": w.late_resyncs,
            })
        };
        let (fits, why) = self.verdict();
        json!({
            "cameras": self.cameras,
            "service": {
                "window": window(&s.w),
                "cpu_per_camera_percent": round(self.svc_cpu_per_cam(), 4),
                "ingest_cpu_percent": round(self.svc_ingest_cpu(), 2),
                "rss_per_camera_kb": round(self.svc_rss_per_cam_kb(), 1),
                "other_load_on_machine_percent": round(self.other_load(), 1),
                "online": s.online,
                "online_rate": s.online_rate,
                "summary": s.summary,
                "ramp_to_99_percent_online_s": s.ramp_99_s.map(|x| round(x, 1)),
                "ramp_to_all_online_s": s.ramp_all_s.map(|x| round(x, 1)),
                "decoded_fps": round(s.analysed_fps, 2),
                "decoded_fps_target": round(self.target_fps(), 2),
                "decoded_share": round(self.decoded_share(), 4),
                "frames_in_fps": round(s.fps_in, 1),
                "keyframes_in_fps": round(s.keyframes_fps, 2),
                "reconnects_in_window": s.reconnects,
                "frames_dropped_in_window": s.drops,
                "stop_seconds": round(s.stop_s, 1),
            },
            "baseline": self.baseline.as_ref().map(|b| json!({
                "command": "gst-launch-1.0 rtspsrc location=… protocols=tcp ! rtph264depay ! h264parse ! fakesink",
                "processes": b.processes,
                "cameras_per_process": b.per_process,
                "camsim_sessions_active": b.sessions,
                "processes_exited_early": b.exited,
                "ramp_s": b.ramp_s.map(|x| round(x, 1)),
                "window": window(&b.w),
                "cpu_per_camera_percent": self.base_cpu_per_cam().map(|x| round(x, 4)),
                "rss_per_camera_kb": self.base_rss_per_cam_kb().map(|x| round(x, 1)),
            })),
            "ratios": {
                "cpu_per_camera_service_over_baseline": self.cpu_ratio().map(|x| round(x, 3)),
                "ingest_cpu_per_camera_over_baseline": self.ingest_cpu_ratio().map(|x| round(x, 3)),
                "rss_per_camera_service_over_baseline": self.rss_ratio().map(|x| round(x, 3)),
                "pss_per_camera_service_over_baseline": self.pss_ratio().map(|x| round(x, 3)),
                "goal_cpu": 1.0 / 3.0,
                "goal_memory": 0.2,
            },
            "fits": fits,
            "not_fitting_because": why,
            "notes": self.notes,
        })
    }
}

/// CPU of the threads that do ingest (tokio runtime workers: retina, health poller, API), as opposed
/// to decode (pool workers, GStreamer streaming threads), the VQD dispatcher and the ledger.
fn ingest_cpu(groups: &[(String, u64, f64)]) -> f64 {
    groups
        .iter()
        .filter(|(name, _, _)| name.starts_with("qly-rt") || name == "qianliyan")
        .map(|(_, _, c)| c)
        .sum()
}

fn nproc() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

// ───────────────────────────── the run ─────────────────────────────

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn run(opts: &Opts) -> Result<(), String> {
    let ticks = procfs::clock_ticks();
    let out_dir = target_dir().join("bench");
    let work = out_dir.join("ingest_scale");
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let gst = which("gst-launch-1.0");
    if opts.baseline && gst.is_none() {
        return Err(
            "gst-launch-1.0 not found (apt-get install gstreamer1.0-tools), or pass --no-baseline"
                .into(),
        );
    }
    println!(
        "ingest_scale: source {}, cameras {:?}, {} s window after {} s warm-up; baseline {}; CPU from /proc at {ticks} ticks/s; {} CPUs",
        opts.source.display(),
        opts.cameras,
        opts.seconds,
        opts.warmup,
        if opts.baseline {
            format!("{} cameras per gst-launch process", opts.per_process)
        } else {
            "off".into()
        },
        nproc(),
    );
    let machine = machine_info(ticks);
    let mut rows = Vec::new();
    for &n in &opts.cameras {
        println!("-- {n} cameras");
        let row = measure(opts, n, ticks, &work, gst.as_deref())?;
        rows.push(row);
        write_reports(opts, &machine, &rows, &out_dir)?;
    }
    let md = markdown(opts, &machine, &rows);
    println!("\n{md}");
    println!(
        "wrote {} and {}",
        out_dir.join("ingest_scale.json").display(),
        out_dir.join("ingest_scale.md").display()
    );
    Ok(())
}

fn write_reports(opts: &Opts, machine: &Value, rows: &[Row], out_dir: &Path) -> Result<(), String> {
    let report = json!({
        "bench": "ingest_scale",
        "source": opts.source.display().to_string(),
        "window_seconds": opts.seconds,
        "warmup_seconds": opts.warmup,
        "analysis_fps": ANALYSIS_FPS,
        "keyframe_interval_s": KEYFRAME_INTERVAL_S,
        "keyframe_only": true,
        "stagger_seconds": opts.stagger,
        "baseline_cameras_per_process": opts.per_process,
        "machine": machine,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    let json_path = out_dir.join("ingest_scale.json");
    let md_path = out_dir.join("ingest_scale.md");
    let pretty = serde_json::to_string_pretty(&report).map_err(|e| format!("JSON: {e}"))?;
    std::fs::write(&json_path, pretty + "\n")
        .map_err(|e| format!("writing {}: {e}", json_path.display()))?;
    std::fs::write(&md_path, markdown(opts, machine, rows))
        .map_err(|e| format!("writing {}: {e}", md_path.display()))?;
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The service's config; the cameras are in it unless they are added through the API (`in_config`).
fn service_toml(n: u32, rtsp_port: u16, data_dir: &Path, in_config: bool) -> String {
    let mut toml = format!(
        r#"# Generated by benches/ingest_scale.rs: {n} cameras on camsim's streams.
[node]
name = "ingest-scale"
data_dir = "{data}"

[web]
listen = "127.0.0.1:0"

[ingest]
transport = "tcp"
stall_after = "10s"
backoff_initial = "1s"
backoff_max = "30s"
decoder = "cpu"
keyframe_only = true
analysis_fps = {ANALYSIS_FPS:.1}
stream = "sub"

[health]
grace = "5s"

# The API needs a login: one engineer, password from the environment (set by the bench).
[auth]
[[auth.users]]
username = "bench"
role = "admin"
password_env = "{BENCH_PASSWORD_ENV}"
"#,
        data = data_dir.display()
    );
    if in_config {
        for i in 1..=n {
            let c = camera_fields(i, n, rtsp_port);
            let _ = write!(
                toml,
                "\n[[cameras]]\nid = \"{}\"\nname = \"{}\"\nurl = \"{}\"\narea_path = \"{}\"\n\
                 keyframe_only = true\nanalysis_fps = {ANALYSIS_FPS:.1}\n",
                c.id, c.name, c.url, c.area_path
            );
        }
    }
    toml
}

struct CameraFields {
    id: String,
    name: String,
    url: String,
    area_path: String,
}

/// Camera `i` of `n`: camsim's `/cam/NNNN`, spread over a few townships and villages.
fn camera_fields(i: u32, n: u32, rtsp_port: u16) -> CameraFields {
    let width = n.to_string().len().max(4);
    CameraFields {
        id: format!("cam-{i:05}"),
        name: format!("bench camera {i}"),
        url: format!("rtsp://127.0.0.1:{rtsp_port}/cam/{i:0width$}"),
        area_path: format!("示范县/镇{}/村{}", i % 13, i % 97),
    }
}

/// Adds cameras 1..=n through `POST /api/cameras`, evenly over `seconds`; returns how many the
/// service accepted (201).
fn add_cameras(port: u16, n: u32, rtsp_port: u16, seconds: f64) -> u32 {
    let t0 = Instant::now();
    let mut added = 0;
    for i in 1..=n {
        let due = t0 + Duration::from_secs_f64(seconds * f64::from(i - 1) / f64::from(n));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let c = camera_fields(i, n, rtsp_port);
        let body = json!({
            "id": c.id,
            "name": c.name,
            "url": c.url,
            "area_path": c.area_path,
            "keyframe_only": true,
            "analysis_fps": ANALYSIS_FPS,
        })
        .to_string();
        match http_request(port, "POST", "/api/cameras", &body) {
            Some((201, _)) => added += 1,
            Some((code, body)) => {
                eprintln!(
                    "   POST camera {i}: {code} {}",
                    body.chars().take(200).collect::<String>()
                )
            }
            None => eprintln!("   POST camera {i}: no answer"),
        }
    }
    added
}

/// Samples the given processes (and camsim, and the machine) over `seconds`.
fn window(
    pids: &[u32],
    camsim: (u32, u16),
    seconds: f64,
    ticks: f64,
) -> Result<(Window, Vec<ProcSample>), String> {
    let sim0 = sim_stats(camsim.1).unwrap_or_default();
    let m0 = procfs::machine_ticks();
    let c0 = proc_sample(camsim.0);
    let s0: Vec<ProcSample> = pids
        .iter()
        .map(|p| proc_sample(*p).unwrap_or_default())
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let s1: Vec<ProcSample> = pids
        .iter()
        .map(|p| proc_sample(*p).unwrap_or_default())
        .collect();
    let c1 = proc_sample(camsim.0);
    let m1 = procfs::machine_ticks();
    let secs = t0.elapsed().as_secs_f64();
    let sim1 = sim_stats(camsim.1).unwrap_or_default();
    let mut mem = ProcFootprint::default();
    for p in pids {
        if let Some(f) = proc_footprint(*p) {
            mem.add(&f);
        }
    }
    let cpu = |a: u64, b: u64| b.saturating_sub(a) as f64 / ticks / secs * 100.0;
    let sum0: u64 = s0.iter().map(|s| s.ticks).sum();
    let sum1: u64 = s1.iter().map(|s| s.ticks).sum();
    let w = Window {
        seconds: secs,
        cpu_percent: cpu(sum0, sum1),
        mem,
        groups: thread_groups(&s0, &s1, ticks, secs),
        busiest: busiest_thread(&s0, &s1, ticks, secs),
        camsim_cpu_percent: match (c0, c1) {
            (Some(a), Some(b)) => cpu(a.ticks, b.ticks),
            _ => f64::NAN,
        },
        machine_busy_percent: match (m0, m1) {
            (Some((b0, t0)), Some((b1, t1))) => {
                ratio((b1 - b0) as f64, (t1 - t0) as f64) * 100.0 * nproc() as f64
            }
            _ => f64::NAN,
        },
        camsim_mbit_s: sim1.bytes_sent.saturating_sub(sim0.bytes_sent) as f64 * 8.0 / 1e6 / secs,
        late_resyncs: sim1.late_resyncs.saturating_sub(sim0.late_resyncs),
    };
    Ok((w, s1))
}

fn measure(
    opts: &Opts,
    n: u32,
    ticks: f64,
    work: &Path,
    gst: Option<&Path>,
) -> Result<Row, String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_qianliyan"));
    let mut notes = Vec::new();

    // camsim, for both halves of the row.
    let rtsp_port = free_port()?;
    let cport = free_port()?;
    let mut camsim = spawn(
        "camsim".into(),
        bin,
        &[
            "camsim".into(),
            "--cameras".into(),
            n.to_string(),
            "--source".into(),
            opts.source.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--rtsp-port".into(),
            rtsp_port.to_string(),
            "--control-port".into(),
            cport.to_string(),
        ],
        &[("RUST_LOG", "warn")],
        work.join(format!("camsim.{n}.log")),
    )?;
    let started = Instant::now();
    while sim_stats(cport).is_none() {
        if camsim.exited().is_some() {
            return Err(camsim.failure("exited before it was ready").to_string());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(camsim
                .failure(&format!("not ready after {READY_TIMEOUT:?}"))
                .to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "   camsim ready (pid {}) in {:.1} s on port {rtsp_port}",
        camsim.pid(),
        started.elapsed().as_secs_f64()
    );
    let sim = (camsim.pid(), cport);

    let service = measure_service(opts, n, ticks, work, bin, rtsp_port, sim, &mut notes)?;
    // Sessions must be gone before the baseline connects, or camsim's session count lies.
    let t0 = Instant::now();
    while sim_stats(cport).is_some_and(|s| s.sessions_active > 0)
        && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(left) = sim_stats(cport)
        .map(|s| s.sessions_active)
        .filter(|s| *s > 0)
    {
        notes.push(format!(
            "{left} camsim sessions still active 30 s after the service stopped"
        ));
    }
    let baseline = match gst {
        Some(gst) if opts.baseline => Some(measure_baseline(
            opts, n, ticks, work, gst, rtsp_port, sim, &mut notes,
        )?),
        _ => None,
    };
    camsim.stop();
    let row = Row {
        cameras: n,
        service,
        baseline,
        notes,
    };
    print_row(&row);
    Ok(row)
}

#[allow(clippy::too_many_arguments)]
fn measure_service(
    opts: &Opts,
    n: u32,
    ticks: f64,
    work: &Path,
    bin: &Path,
    rtsp_port: u16,
    sim: (u32, u16),
    notes: &mut Vec<String>,
) -> Result<ServiceResult, String> {
    let dir = work.join(format!("n{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let data = tempfile::Builder::new()
        .prefix("ingest_scale.")
        .tempdir()
        .map_err(|e| format!("temp data dir: {e}"))?;
    let config = dir.join("service.toml");
    let in_config = opts.stagger == 0.0;
    std::fs::write(&config, service_toml(n, rtsp_port, data.path(), in_config))
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let port = free_port()?;
    let mut svc = spawn(
        "service".into(),
        bin,
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data.path().display().to_string(),
        ],
        &[
            ("RUST_LOG", "info"),
            (BENCH_PASSWORD_ENV, &bench_password()),
        ],
        dir.join("service.log"),
    )?;
    let pid = svc.pid();
    let t0 = Instant::now();
    if !in_config {
        while http_get(port, "/healthz").is_none_or(|(code, _)| code != 200) {
            if svc.exited().is_some() {
                return Err(svc.failure("exited during start-up").to_string());
            }
            if t0.elapsed() > READY_TIMEOUT {
                return Err(svc
                    .failure(&format!("not answering after {READY_TIMEOUT:?}"))
                    .to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let added = add_cameras(port, n, rtsp_port, opts.stagger);
        println!(
            "   service (pid {pid}): {added} cameras added through the API over {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        if added < n {
            notes.push(format!("service: only {added} of {n} cameras added"));
        }
    }
    let (mut ramp_99, mut ramp_all) = (None, None);
    let mut last = Value::Null;
    let timeout = Duration::from_secs_f64(opts.online_timeout);
    loop {
        if svc.exited().is_some() {
            return Err(svc.failure("exited during start-up").to_string());
        }
        if let Some(s) = http_json(port, "/api/health/summary") {
            let up = s["online"].as_u64().unwrap_or(0) + s["degraded"].as_u64().unwrap_or(0);
            let rate = up as f64 / f64::from(n);
            if rate >= ONLINE_GOAL && ramp_99.is_none() {
                ramp_99 = Some(t0.elapsed().as_secs_f64());
            }
            if up >= u64::from(n) {
                ramp_all = Some(t0.elapsed().as_secs_f64());
                last = s;
                break;
            }
            last = s;
        }
        if t0.elapsed() > timeout {
            notes.push(format!(
                "service: not all cameras online after {:.0} s: {last}",
                opts.online_timeout
            ));
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "   service (pid {pid}): 99 % online after {}, all after {}; last summary {last}",
        ramp_99.map_or("—".into(), |x| format!("{x:.1} s")),
        ramp_all.map_or("—".into(), |x| format!("{x:.1} s")),
    );
    std::thread::sleep(Duration::from_secs_f64(opts.warmup));
    let f0 = fleet_counters(port);
    let d0 = dropped(port);
    let (w, _) = window(&[pid], sim, opts.seconds, ticks)?;
    let f1 = fleet_counters(port);
    let d1 = dropped(port);
    let summary = http_json(port, "/api/health/summary").unwrap_or(Value::Null);
    if svc.exited().is_some() {
        return Err(svc.failure("exited during the window").to_string());
    }
    let online =
        summary["online"].as_u64().unwrap_or(0) + summary["degraded"].as_u64().unwrap_or(0);
    let mut r = ServiceResult {
        ramp_99_s: ramp_99,
        ramp_all_s: ramp_all,
        w,
        online,
        online_rate: online as f64 / f64::from(n),
        summary,
        ..Default::default()
    };
    match (f0, f1) {
        (Some(a), Some(b)) => {
            let secs = match (a.at, b.at) {
                (Some(x), Some(y)) => (y - x).as_secs_f64(),
                _ => opts.seconds,
            };
            r.analysed_fps = b.analysed.saturating_sub(a.analysed) as f64 / secs;
            r.fps_in = b.frames_in.saturating_sub(a.frames_in) as f64 / secs;
            r.keyframes_fps = b.keyframes_in.saturating_sub(a.keyframes_in) as f64 / secs;
            r.reconnects = b.reconnects.saturating_sub(a.reconnects);
        }
        _ => notes.push("service: GET /api/cameras failed around the window".into()),
    }
    r.drops = d1
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(d0.get(k).copied().unwrap_or(0))))
        .collect();
    if opts.hold > 0.0 {
        println!(
            "   holding {} s for profiling: service pid {pid}, camsim pid {}",
            opts.hold, sim.0
        );
        std::thread::sleep(Duration::from_secs_f64(opts.hold));
    }
    r.stop_s = svc.stop().0;
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn measure_baseline(
    opts: &Opts,
    n: u32,
    ticks: f64,
    work: &Path,
    gst: &Path,
    rtsp_port: u16,
    sim: (u32, u16),
    notes: &mut Vec<String>,
) -> Result<BaselineResult, String> {
    let k = opts.per_process.min(n);
    let width = n.to_string().len().max(4);
    let mut kids = Vec::new();
    let mut i = 1;
    while i <= n {
        let last = (i + k - 1).min(n);
        let mut args = vec!["-q".to_owned()];
        for cam in i..=last {
            args.extend([
                "rtspsrc".to_owned(),
                format!("location=rtsp://127.0.0.1:{rtsp_port}/cam/{cam:0width$}"),
                "protocols=tcp".to_owned(),
                "!".to_owned(),
                "rtph264depay".to_owned(),
                "!".to_owned(),
                "h264parse".to_owned(),
                "!".to_owned(),
                "fakesink".to_owned(),
            ]);
        }
        kids.push(spawn(
            format!("gst-launch {i}-{last}"),
            gst,
            &args,
            &[("GST_DEBUG", "1")],
            work.join(format!("n{n}/gst-launch.{i}.log")),
        )?);
        i = last + 1;
    }
    let t0 = Instant::now();
    let timeout = Duration::from_secs_f64(opts.online_timeout);
    let mut ramp = None;
    let mut sessions = 0;
    while t0.elapsed() < timeout {
        sessions = sim_stats(sim.1).map_or(0, |s| s.sessions_active);
        if sessions >= u64::from(n) {
            ramp = Some(t0.elapsed().as_secs_f64());
            break;
        }
        if kids.iter_mut().all(|k| k.exited().is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "   baseline: {} gst-launch processes × ≤ {k} cameras, {sessions} camsim sessions after {:.1} s",
        kids.len(),
        t0.elapsed().as_secs_f64()
    );
    if ramp.is_none() {
        notes.push(format!(
            "baseline: only {sessions} of {n} camsim sessions active after {:.0} s",
            opts.online_timeout
        ));
    }
    std::thread::sleep(Duration::from_secs_f64(opts.warmup));
    let pids: Vec<u32> = kids.iter().map(Kid::pid).collect();
    let (w, _) = window(&pids, sim, opts.seconds, ticks)?;
    let sessions = sim_stats(sim.1).map_or(sessions, |s| s.sessions_active);
    let mut exited = 0;
    for kid in &mut kids {
        if kid.exited().is_some() {
            exited += 1;
            notes.push(format!("baseline: {}", kid.failure("exited")));
        }
    }
    for kid in &mut kids {
        kid.signal("-TERM");
    }
    for mut kid in kids {
        kid.stop();
    }
    Ok(BaselineResult {
        processes: n.div_ceil(k),
        per_process: k,
        sessions,
        ramp_s: ramp,
        exited,
        w,
    })
}

// ───────────────────────────── reporting ─────────────────────────────

fn print_row(r: &Row) {
    let s = &r.service;
    println!(
        "   service: CPU {:.1} % ({:.3} %/camera; ingest threads {:.1} %), RSS {:.1} MB ({:.0} KB/camera), {} threads, {} fds; \
         online {:.1} %; decoded {:.1}/{:.1} fps; in {:.0} fps; camsim {:.1} %, machine {:.0} %",
        s.w.cpu_percent,
        r.svc_cpu_per_cam(),
        r.svc_ingest_cpu(),
        s.w.mem.rss_kb as f64 / 1024.0,
        r.svc_rss_per_cam_kb(),
        s.w.mem.threads,
        s.w.mem.fds,
        s.online_rate * 100.0,
        s.analysed_fps,
        r.target_fps(),
        s.fps_in,
        s.w.camsim_cpu_percent,
        s.w.machine_busy_percent,
    );
    let top: Vec<String> =
        s.w.groups
            .iter()
            .take(8)
            .map(|(name, c, cpu)| format!("{name}×{c} {cpu:.1} %"))
            .collect();
    println!("   service threads: {}", top.join(", "));
    if let Some(b) = &r.baseline {
        println!(
            "   baseline: CPU {:.1} % ({:.3} %/camera), RSS {:.1} MB ({:.0} KB/camera), PSS {:.1} MB, {} threads, {} fds; \
             camsim {:.1} %, machine {:.0} %",
            b.w.cpu_percent,
            r.base_cpu_per_cam().unwrap_or(f64::NAN),
            b.w.mem.rss_kb as f64 / 1024.0,
            r.base_rss_per_cam_kb().unwrap_or(f64::NAN),
            b.w.mem.pss_kb as f64 / 1024.0,
            b.w.mem.threads,
            b.w.mem.fds,
            b.w.camsim_cpu_percent,
            b.w.machine_busy_percent,
        );
    }
    for n in &r.notes {
        println!("   note: {n}");
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "—".into(),
    }
}

fn markdown(opts: &Opts, machine: &Value, rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# ingest_scale\n");
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), kernel {}, GStreamer {}. camsim serves `{}` (384×288, 10 fps, keyframe every \
         {KEYFRAME_INTERVAL_S} s) on the same machine. The service: keyframe-only, {ANALYSIS_FPS} analysed fps per \
         camera → decode target N × {:.1} keyframes/s, health + VQD on, TCP; {}. Baseline: \
         `gst-launch-1.0 rtspsrc location=… protocols=tcp ! rtph264depay ! h264parse ! fakesink`, {} cameras per \
         process as parallel branches of one pipeline, CPU/RSS/threads SUMMED over the processes. Per row: {} s \
         warm-up after all cameras are online, {} s window; CPU = utime+stime over the window in % of one core; \
         RSS, threads, fds at the window's end; per-camera figures divide by cameras online (service) or camsim \
         sessions (baseline).\n",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["gstreamer"].as_str().unwrap_or("?"),
        opts.source
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        ANALYSIS_FPS.min(1.0 / KEYFRAME_INTERVAL_S),
        if opts.stagger > 0.0 {
            format!(
                "cameras added through `POST /api/cameras` evenly over {} s so that camsim's GOP phases \
                 (set by each session's PLAY) spread as a real fleet's",
                opts.stagger
            )
        } else {
            "all cameras in the config (start-up path: camsim aligns every camera's GOP to the \
             simultaneous PLAYs, so the fleet's keyframes arrive in one burst per GOP)"
                .to_owned()
        },
        opts.per_process,
        opts.warmup,
        opts.seconds,
    );
    let _ = writeln!(
        md,
        "| N | service CPU % | CPU %/camera | RSS MB | RSS KB/camera | threads | fds | online % | decoded fps (achieved / target) | baseline CPU % | baseline RSS MB | baseline threads | CPU ratio (goal ≤ 0.33) | ingest-only CPU ratio | RSS ratio (goal ≤ 0.20) | PSS ratio | fits |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let s = &r.service;
        let b = r.baseline.as_ref();
        let (fits, why) = r.verdict();
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.3} | {:.1} | {:.0} | {} | {} | {:.1} | {:.1} / {:.1} ({:.0} %) | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.cameras,
            s.w.cpu_percent,
            r.svc_cpu_per_cam(),
            s.w.mem.rss_kb as f64 / 1024.0,
            r.svc_rss_per_cam_kb(),
            s.w.mem.threads,
            s.w.mem.fds,
            s.online_rate * 100.0,
            s.analysed_fps,
            r.target_fps(),
            r.decoded_share() * 100.0,
            opt(b.map(|b| b.w.cpu_percent), 1),
            opt(b.map(|b| b.w.mem.rss_kb as f64 / 1024.0), 1),
            b.map_or("—".into(), |b| b.w.mem.threads.to_string()),
            opt(r.cpu_ratio(), 2),
            opt(r.ingest_cpu_ratio(), 2),
            opt(r.rss_ratio(), 3),
            opt(r.pss_ratio(), 3),
            if fits {
                "yes".to_owned()
            } else {
                format!("no: {}", why.join(", "))
            },
        );
    }
    let _ = writeln!(md, "\nContext (same windows):\n");
    let _ = writeln!(
        md,
        "| N | ramp to 99 % / all online s | frames in fps (per camera) | keyframes in fps | reconnects in window | dropped (queue_full / decode_error) | service ingest-thread CPU % | service PSS MB | baseline CPU %/camera | baseline RSS KB/camera | baseline PSS MB | baseline sessions | camsim CPU % (service / baseline) | camsim Mbit/s (service / baseline) | camsim late resyncs (service / baseline) | machine busy % of {} (service / baseline) | other work on the machine % | busiest service thread % |",
        nproc() * 100
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let s = &r.service;
        let b = r.baseline.as_ref();
        let _ = writeln!(
            md,
            "| {} | {} / {} | {:.0} ({:.2}) | {:.1} | {} | {} / {} | {:.1} | {:.1} | {} | {} | {} | {} | {:.1} / {} | {:.1} / {} | {} / {} | {:.0} / {} | {:.0} | `{}` {:.1} |",
            r.cameras,
            opt(s.ramp_99_s, 1),
            opt(s.ramp_all_s, 1),
            s.fps_in,
            s.fps_in / r.per_cam(),
            s.keyframes_fps,
            s.reconnects,
            s.drops.get("decode_queue_full").copied().unwrap_or(0),
            s.drops.get("decode_error").copied().unwrap_or(0),
            r.svc_ingest_cpu(),
            s.w.mem.pss_kb as f64 / 1024.0,
            opt(r.base_cpu_per_cam(), 3),
            opt(r.base_rss_per_cam_kb(), 0),
            opt(b.map(|b| b.w.mem.pss_kb as f64 / 1024.0), 1),
            b.map_or("—".into(), |b| b.sessions.to_string()),
            s.w.camsim_cpu_percent,
            opt(b.map(|b| b.w.camsim_cpu_percent), 1),
            s.w.camsim_mbit_s,
            opt(b.map(|b| b.w.camsim_mbit_s), 1),
            s.w.late_resyncs,
            b.map_or("—".into(), |b| b.w.late_resyncs.to_string()),
            s.w.machine_busy_percent,
            opt(b.map(|b| b.w.machine_busy_percent), 0),
            r.other_load(),
            s.w.busiest.0,
            s.w.busiest.1,
        );
    }
    let _ = writeln!(
        md,
        "\nService CPU by thread (% of one core, threads of that name):\n"
    );
    for r in rows {
        let top: Vec<String> = r
            .service
            .w
            .groups
            .iter()
            .take(10)
            .map(|(name, c, cpu)| format!("`{name}`×{c} {cpu:.1}"))
            .collect();
        let _ = writeln!(md, "- {}: {}", r.cameras, top.join(", "));
    }
    if rows.iter().any(|r| r.baseline.is_some()) {
        let _ = writeln!(md, "\nBaseline CPU by thread (summed over processes):\n");
        for r in rows {
            if let Some(b) = &r.baseline {
                let top: Vec<String> =
                    b.w.groups
                        .iter()
                        .take(8)
                        .map(|(name, c, cpu)| format!("`{name}`×{c} {cpu:.1}"))
                        .collect();
                let _ = writeln!(md, "- {}: {}", r.cameras, top.join(", "));
            }
        }
    }
    // Fixed start-up cost dominates RSS at small N; the slope between rows is what one camera costs.
    let _ = writeln!(md);
    if let (Some(lo), Some(hi)) = (
        rows.iter().min_by_key(|r| r.service.online),
        rows.iter().max_by_key(|r| r.service.online),
    ) && hi.service.online > lo.service.online
    {
        let d = (hi.service.online - lo.service.online) as f64;
        let _ = writeln!(
            md,
            "- service marginal cost from {} to {} cameras online: {:.4} % CPU, {:.0} KB RSS, {:.3} threads per camera",
            lo.service.online,
            hi.service.online,
            (hi.service.w.cpu_percent - lo.service.w.cpu_percent) / d,
            (hi.service.w.mem.rss_kb as f64 - lo.service.w.mem.rss_kb as f64) / d,
            (hi.service.w.mem.threads as f64 - lo.service.w.mem.threads as f64) / d,
        );
        if let (Some(bl), Some(bh)) = (&lo.baseline, &hi.baseline)
            && bh.sessions > bl.sessions
        {
            let d = (bh.sessions - bl.sessions) as f64;
            let _ = writeln!(
                md,
                "- baseline marginal cost from {} to {} sessions: {:.4} % CPU, {:.0} KB RSS, {:.2} threads per camera",
                bl.sessions,
                bh.sessions,
                (bh.w.cpu_percent - bl.w.cpu_percent) / d,
                (bh.w.mem.rss_kb as f64 - bl.w.mem.rss_kb as f64) / d,
                (bh.w.mem.threads as f64 - bl.w.mem.threads as f64) / d,
            );
        }
    }
    let _ = writeln!(
        md,
        "- context: the service also DECODES one keyframe per camera every {KEYFRAME_INTERVAL_S} s (avdec_h264 → BGR), runs VQD \
         on it and the health state machine, and serves the API; the baseline only depayloads and parses. \
         \"ingest-only\" counts the service's tokio threads (`qly-rt`: retina sessions, health poller, API) against \
         the whole baseline."
    );
    for r in rows {
        for n in &r.notes {
            let _ = writeln!(md, "- note, {}: {n}", r.cameras);
        }
    }
    md
}

fn machine_info(ticks: f64) -> Value {
    let m = procfs::machine();
    let gst = Command::new("gst-launch-1.0")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().nth(1).map(|l| l.trim().to_owned()))
        .unwrap_or_else(|| "unavailable".into());
    json!({
        "nproc": nproc(),
        "cpu_model": m.cpu_model,
        "kernel": m.kernel,
        "mem_total_mb": m.mem_total_mb,
        "clock_ticks_per_s": ticks,
        "gstreamer": gst,
    })
}
