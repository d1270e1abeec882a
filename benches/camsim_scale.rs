//! camsim scale bench: camsim and gst-rtsp-server serve the same file to the same receive-only
//! clients in the same run, at several camera counts; the bench measures each SERVER process.
//!
//! `cargo bench --bench camsim_scale -- [--cameras 100,500,1300] [--seconds 10] [--source PATH]
//! [--servers camsim,gst] [--warmup 3] [--ramp-timeout 45]`
//!
//! For each N and each server, one after the other: the server runs as a child process on free
//! ports; N `camsim::load::hold` clients (RTSP over TCP interleaved, counting bytes, never
//! decoding) connect from this process with at most [`MAX_HANDSHAKES`] handshakes in flight;
//! after a warm-up the bench samples the server's `/proc/<pid>` over the window: CPU (utime +
//! stime, in % of one core), RSS and threads at the window's end, and the bytes the clients
//! received (media must really flow). Results go to `target/bench/camsim_scale.{json,md}`.
//!
//! The gst-rtsp-server side is this same binary re-executed with a hidden first argument
//! ([`GST_MODE`]): one shared `RTSPMediaFactory` per camera, `filesrc ! qtdemux ! h264parse !
//! rtph264pay`, which is how such a camera farm is usually built with gst-rtsp-server.
//! `filesrc` does not loop, so ramp + warm-up + window must stay well under the clip's length.
//!
//! Both servers and the clients share the machine; the clients' own CPU is reported beside.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qianliyan::camsim::load::{LoadStats, hold};
use qianliyan::scenario::procfs;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Hidden first argument that turns this binary into the gst-rtsp-server child.
const GST_MODE: &str = "--serve-gst-rtsp-server";
/// Handshakes (DESCRIBE/SETUP/PLAY) in flight at once, so the ramp is gentle on both servers.
const MAX_HANDSHAKES: u64 = 64;
/// How long a server may take to accept connections (camsim encodes its fault clips first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Length of `assets/video/vtest_sub.mp4`, which `filesrc` in the gst child will not loop.
const CLIP_SECONDS: f64 = 79.5;
const DEFAULT_SOURCE: &str = "assets/video/vtest_sub.mp4";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(GST_MODE) {
        return match gst_server::serve(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gst-rtsp-server child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("camsim_scale: {e}");
            eprintln!(
                "usage: cargo bench --bench camsim_scale -- [--cameras 100,500,1300] [--seconds 10] \
                 [--source PATH] [--servers camsim,gst] [--warmup 3] [--ramp-timeout 45]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camsim_scale: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    Camsim,
    Gst,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            ServerKind::Camsim => "camsim",
            ServerKind::Gst => "gst-rtsp-server",
        }
    }
}

struct Opts {
    cameras: Vec<u32>,
    seconds: f64,
    warmup: f64,
    ramp_timeout: f64,
    source: PathBuf,
    servers: Vec<ServerKind>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut opts = Opts {
            cameras: vec![100, 500, 1300],
            seconds: 10.0,
            warmup: 3.0,
            ramp_timeout: 45.0,
            source: manifest.join(DEFAULT_SOURCE),
            servers: vec![ServerKind::Camsim, ServerKind::Gst],
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let secs = |name: &str, v: String| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
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
                "--seconds" => opts.seconds = secs("--seconds", value("--seconds")?)?,
                "--warmup" => opts.warmup = secs("--warmup", value("--warmup")?)?,
                "--ramp-timeout" => {
                    opts.ramp_timeout = secs("--ramp-timeout", value("--ramp-timeout")?)?
                }
                "--source" => opts.source = PathBuf::from(value("--source")?),
                "--servers" => {
                    let v = value("--servers")?;
                    opts.servers = v
                        .split(',')
                        .map(|s| match s.trim() {
                            "camsim" => Ok(ServerKind::Camsim),
                            "gst" | "gst-rtsp-server" => Ok(ServerKind::Gst),
                            other => {
                                Err(format!("--servers: unknown server {other:?} (camsim, gst)"))
                            }
                        })
                        .collect::<Result<_, _>>()?;
                }
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
        let budget = opts.ramp_timeout + opts.warmup + opts.seconds;
        if opts.servers.contains(&ServerKind::Gst) && budget > CLIP_SECONDS - 10.0 {
            eprintln!(
                "warning: ramp timeout + warm-up + window = {budget:.0} s; gst-rtsp-server's filesrc stops \
                 at the end of the {CLIP_SECONDS} s clip, so late windows may measure a server that has run dry"
            );
        }
        Ok(opts)
    }
}

/// One measured (server, N) pair.
struct Row {
    server: &'static str,
    cameras: u32,
    clients_playing: u64,
    clients_failed: u64,
    clients_ended: u64,
    ramp_seconds: f64,
    window_seconds: f64,
    cpu_percent: f64,
    rss_kb: u64,
    threads: u64,
    rx_mbit_s: f64,
    client_cpu_percent: f64,
    note: String,
}

impl Row {
    fn per_camera_divisor(&self) -> f64 {
        self.clients_playing.max(1) as f64
    }
    fn cpu_per_camera(&self) -> f64 {
        self.cpu_percent / self.per_camera_divisor()
    }
    fn rss_per_camera_kb(&self) -> f64 {
        self.rss_kb as f64 / self.per_camera_divisor()
    }
    fn json(&self) -> Value {
        json!({
            "server": self.server,
            "cameras": self.cameras,
            "clients_playing": self.clients_playing,
            "clients_failed": self.clients_failed,
            "clients_ended": self.clients_ended,
            "cpu_percent_of_one_core": round(self.cpu_percent, 2),
            "cpu_per_camera_percent": round(self.cpu_per_camera(), 4),
            "rss_mb": round(self.rss_kb as f64 / 1024.0, 1),
            "rss_per_camera_kb": round(self.rss_per_camera_kb(), 1),
            "threads": self.threads,
            "rx_mbit_s": round(self.rx_mbit_s, 1),
            "ramp_seconds": round(self.ramp_seconds, 2),
            "window_seconds": round(self.window_seconds, 2),
            "client_cpu_percent_of_one_core": round(self.client_cpu_percent, 1),
            "note": self.note,
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn run(opts: &Opts) -> Result<(), String> {
    let max_n = opts.cameras.iter().copied().max().unwrap_or(0) as u64;
    ensure_fd_limit(max_n * 2 + 256);
    let ticks = procfs::clock_ticks();
    let bin_dir = target_dir().join("bench");
    std::fs::create_dir_all(&bin_dir)
        .map_err(|e| format!("creating {}: {e}", bin_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-load")
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    println!(
        "camsim_scale: source {}, cameras {:?}, window {} s after {} s warm-up; CPU from /proc at {ticks} ticks/s",
        opts.source.display(),
        opts.cameras,
        opts.seconds,
        opts.warmup
    );
    let mut rows = Vec::new();
    for &n in &opts.cameras {
        for &kind in &opts.servers {
            println!("-- {} with {n} cameras", kind.name());
            match measure(&rt, opts, kind, n, ticks, &bin_dir) {
                Ok(row) => {
                    println!(
                        "   {} playing of {n} after {:.1} s ramp; CPU {:.1} % of a core, RSS {:.1} MB, {} threads, rx {:.1} Mbit/s{}",
                        row.clients_playing,
                        row.ramp_seconds,
                        row.cpu_percent,
                        row.rss_kb as f64 / 1024.0,
                        row.threads,
                        row.rx_mbit_s,
                        if row.note.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", row.note)
                        }
                    );
                    rows.push(row);
                }
                Err(e) => return Err(format!("{} with {n} cameras: {e}", kind.name())),
            }
        }
    }
    let machine = machine_info(ticks);
    let report = json!({
        "bench": "camsim_scale",
        "source": opts.source.display().to_string(),
        "window_seconds": opts.seconds,
        "warmup_seconds": opts.warmup,
        "max_handshakes_in_flight": MAX_HANDSHAKES,
        "machine": machine,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    let md = markdown(opts, &machine, &rows);
    println!("\n{md}");
    let json_path = bin_dir.join("camsim_scale.json");
    let md_path = bin_dir.join("camsim_scale.md");
    let pretty = serde_json::to_string_pretty(&report).map_err(|e| format!("JSON: {e}"))?;
    std::fs::write(&json_path, pretty + "\n")
        .map_err(|e| format!("writing {}: {e}", json_path.display()))?;
    std::fs::write(&md_path, md).map_err(|e| format!("writing {}: {e}", md_path.display()))?;
    println!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn markdown(opts: &Opts, machine: &Value, rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# camsim_scale\n");
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), kernel {}. Source `{}`; per row: ramp (≤ {MAX_HANDSHAKES} handshakes in \
         flight), {} s warm-up, {} s window. CPU = server utime+stime over the window in % of one core; \
         RSS and threads at the window's end; per-camera figures divide by the clients playing at the end. \
         Clients (receive-only, TCP interleaved) run in the bench process on the same machine.\n",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        opts.source
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        opts.warmup,
        opts.seconds,
    );
    let _ = writeln!(
        md,
        "| server | cameras | playing | CPU % (1 core) | CPU %/camera | RSS MB | RSS KB/camera | threads | rx Mbit/s | ramp s | clients' CPU % |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.3} | {:.1} | {:.0} | {} | {:.1} | {:.1} | {:.1} |",
            r.server,
            r.cameras,
            r.clients_playing,
            r.cpu_percent,
            r.cpu_per_camera(),
            r.rss_kb as f64 / 1024.0,
            r.rss_per_camera_kb(),
            r.threads,
            r.rx_mbit_s,
            r.ramp_seconds,
            r.client_cpu_percent,
        );
    }
    let _ = writeln!(md);
    let mut by_n: BTreeMap<u32, (Option<&Row>, Option<&Row>)> = BTreeMap::new();
    for r in rows {
        let e = by_n.entry(r.cameras).or_default();
        if r.server == ServerKind::Camsim.name() {
            e.0 = Some(r);
        } else {
            e.1 = Some(r);
        }
    }
    for (n, pair) in by_n {
        if let (Some(c), Some(g)) = pair {
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            let _ = write!(
                md,
                "- {n} cameras: camsim is {:.1}× cheaper per camera in CPU, {:.1}× in RSS ({} vs {} threads)",
                ratio(g.cpu_per_camera(), c.cpu_per_camera()),
                ratio(g.rss_per_camera_kb(), c.rss_per_camera_kb()),
                c.threads,
                g.threads,
            );
            if g.clients_playing < u64::from(n) || c.clients_playing < u64::from(n) {
                let _ = write!(
                    md,
                    " — not all clients playing (camsim {}, gst-rtsp-server {} of {n})",
                    c.clients_playing, g.clients_playing
                );
            }
            let _ = writeln!(md);
        }
    }
    // A fixed start-up cost (libraries, prepared clips) dominates RSS at small N; the slope
    // between the smallest and largest row shows what one more camera costs.
    for kind in [ServerKind::Camsim, ServerKind::Gst] {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.server == kind.name()).collect();
        let lo = mine.iter().min_by_key(|r| r.clients_playing);
        let hi = mine.iter().max_by_key(|r| r.clients_playing);
        if let (Some(lo), Some(hi)) = (lo, hi)
            && hi.clients_playing > lo.clients_playing
        {
            let d = (hi.clients_playing - lo.clients_playing) as f64;
            let _ = writeln!(
                md,
                "- {} marginal cost from {} to {} clients playing: {:.4} % CPU, {:.0} KB RSS, {:.2} threads per camera",
                kind.name(),
                lo.clients_playing,
                hi.clients_playing,
                (hi.cpu_percent - lo.cpu_percent) / d,
                (hi.rss_kb as f64 - lo.rss_kb as f64) / d,
                (hi.threads as f64 - lo.threads as f64) / d,
            );
        }
    }
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(md, "- note, {} at {}: {}", r.server, r.cameras, r.note);
    }
    md
}

/// Runs one server with `n` cameras and `n` clients and measures it.
fn measure(
    rt: &tokio::runtime::Runtime,
    opts: &Opts,
    kind: ServerKind,
    n: u32,
    ticks: f64,
    log_dir: &Path,
) -> Result<Row, String> {
    let rtsp_port = free_port()?;
    let log_path = log_dir.join(format!("camsim_scale.{}.{n}.stderr.log", kind.name()));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let mut cmd;
    let mut control_port = None;
    // Children get the hard open-file limit: a server with 1,300 clients needs > 1,024 descriptors.
    let raise = r#"ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#;
    match kind {
        ServerKind::Camsim => {
            let cport = free_port()?;
            control_port = Some(cport);
            cmd = Command::new("bash");
            cmd.args([
                "-c",
                raise,
                env!("CARGO_BIN_EXE_qianliyan"),
                "camsim",
                "--cameras",
            ])
            .arg(n.to_string())
            .arg("--source")
            .arg(&opts.source)
            .args(["--bind", "127.0.0.1", "--rtsp-port"])
            .arg(rtsp_port.to_string())
            .arg("--control-port")
            .arg(cport.to_string())
            .env("RUST_LOG", "warn")
            // No credentials here (the Makefile exports a password for the demo).
            .env_remove("QLY_CAMSIM_PASSWORD");
        }
        ServerKind::Gst => {
            let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            cmd = Command::new("bash");
            cmd.args(["-c", raise])
                .arg(me)
                .arg(GST_MODE)
                .arg(n.to_string())
                .arg(&opts.source)
                .arg(rtsp_port.to_string())
                .env("GST_DEBUG", "1");
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", kind.name()))?;
    let mut server = ServerChild {
        child,
        name: kind.name(),
        log: log_path,
    };
    let pid = server.child.id();
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "{} exited with {status} before it was ready{}",
                kind.name(),
                server.stderr_tail()
            ));
        }
        let ready = match control_port {
            Some(p) => http_get(p, "/stats").is_some_and(|(code, _)| code == 200),
            None => TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, rtsp_port)),
                Duration::from_secs(1),
            )
            .is_ok(),
        };
        if ready {
            break;
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{} not ready after {READY_TIMEOUT:?}{}",
                kind.name(),
                server.stderr_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "   {} ready (pid {pid}) in {:.1} s",
        kind.name(),
        started.elapsed().as_secs_f64()
    );

    let stats = Arc::new(LoadStats::default());
    let cancel = CancellationToken::new();
    let errors: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let width = n.to_string().len().max(4);
    let ramp_start = Instant::now();
    let ramp_deadline = ramp_start + Duration::from_secs_f64(opts.ramp_timeout);
    let mut tasks = tokio::task::JoinSet::new();
    let ramp_seconds = rt.block_on(async {
        let settled =
            |s: &LoadStats| s.playing.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed);
        for i in 1..=n {
            // Handshakes in flight = started − playing − failed (a client that ends after PLAY
            // moves from playing to failed, so it still counts as settled).
            while u64::from(i - 1).saturating_sub(settled(&stats)) >= MAX_HANDSHAKES {
                if Instant::now() > ramp_deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if Instant::now() > ramp_deadline {
                break;
            }
            let url = format!("rtsp://127.0.0.1:{rtsp_port}/cam/{i:0width$}");
            let (stats, cancel, errors) = (stats.clone(), cancel.clone(), errors.clone());
            tasks.spawn(async move {
                if let Err(e) = hold(url, stats, cancel).await {
                    // Group by message without the URL so one failure mode is one line.
                    let msg = e.to_string();
                    let key = msg
                        .split_once(": ")
                        .map(|(_, m)| m.to_owned())
                        .unwrap_or(msg);
                    if let Ok(mut m) = errors.lock() {
                        *m.entry(key).or_default() += 1;
                    }
                }
            });
        }
        while stats.playing.load(Ordering::Relaxed) < u64::from(n) && Instant::now() < ramp_deadline
        {
            if settled(&stats) >= u64::from(n) {
                break; // every client either plays or has failed
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ramp = ramp_start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs_f64(opts.warmup)).await;
        ramp
    });

    let cpu0 = procfs::sample(pid).map(|p| p.ticks);
    let self0 = procfs::sample(std::process::id()).map(|p| p.ticks);
    let bytes0 = stats.bytes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(opts.seconds));
    let cpu1 = procfs::sample(pid).map(|p| p.ticks);
    let self1 = procfs::sample(std::process::id()).map(|p| p.ticks);
    let bytes1 = stats.bytes.load(Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let status = procfs::sample(pid).map(|p| (p.rss_kb, p.threads));
    let playing = stats.playing.load(Ordering::Relaxed);
    let camsim_stats = control_port
        .and_then(|p| http_get(p, "/stats"))
        .map(|(_, body)| body);

    cancel.cancel();
    rt.block_on(async {
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    });
    let (cpu0, cpu1, (rss_kb, threads)) = match (cpu0, cpu1, status) {
        (Some(a), Some(b), Some(s)) => (a, b, s),
        _ => {
            return Err(format!(
                "{} (pid {pid}) vanished during the window{}",
                kind.name(),
                server.stderr_tail()
            ));
        }
    };
    server.stop();

    let mut notes = Vec::new();
    if let Ok(errs) = errors.lock()
        && !errs.is_empty()
    {
        let list: Vec<String> = errs.iter().map(|(m, c)| format!("{c}× {m}")).collect();
        notes.push(format!("client errors: {}", list.join("; ")));
    }
    if let Some(body) = camsim_stats.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
        let resyncs = body["late_resyncs"].as_u64().unwrap_or(0);
        if resyncs > 0 {
            notes.push(format!("camsim late_resyncs {resyncs}"));
        }
    }
    let cpu = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / ticks / window * 100.0;
    Ok(Row {
        server: kind.name(),
        cameras: n,
        clients_playing: playing,
        clients_failed: stats.failed.load(Ordering::Relaxed),
        clients_ended: stats.ended.load(Ordering::Relaxed),
        ramp_seconds,
        window_seconds: window,
        cpu_percent: cpu(cpu0, cpu1),
        rss_kb,
        threads,
        rx_mbit_s: bytes1.saturating_sub(bytes0) as f64 * 8.0 / 1e6 / window,
        client_cpu_percent: match (self0, self1) {
            (Some(a), Some(b)) => cpu(a, b),
            _ => f64::NAN,
        },
        note: notes.join("; "),
    })
}

/// A server child that is stopped (SIGTERM, then SIGKILL) however `measure` returns.
struct ServerChild {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ServerChild {
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        if tail.is_empty() {
            format!(" (stderr empty: {})", self.log.display())
        } else {
            format!("; stderr tail ({}):\n{tail}", self.log.display())
        }
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "   {} did not exit {STOP_TIMEOUT:?} after SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.stop();
    }
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
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Raises this process's soft open-file limit to `need` (up to the hard limit) with util-linux
/// `prlimit`, as std has no setrlimit; warns when that is not enough.
fn ensure_fd_limit(need: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some((soft, hard)) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| {
            let v: Vec<&str> = l.split_whitespace().collect();
            let num = |s: &str| {
                if s == "unlimited" {
                    Some(u64::MAX)
                } else {
                    s.parse().ok()
                }
            };
            Some((num(v.get(3)?)?, num(v.get(4)?)?))
        })
    else {
        return;
    };
    if soft >= need {
        return;
    }
    let target = hard.min(need.max(65_536));
    let target_s = if target == u64::MAX {
        "unlimited".to_owned()
    } else {
        target.to_string()
    };
    let ok = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={target_s}:"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok || target < need {
        eprintln!(
            "warning: open-file limit is {soft} and {need} are needed; run `ulimit -n 65536` (or \
             `prlimit --pid $$ --nofile=65536`) before `cargo bench`"
        );
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn machine_info(ticks: f64) -> Value {
    let m = procfs::machine();
    let gst = gstreamer::init()
        .map(|_| gstreamer::version_string().to_string())
        .unwrap_or_else(|_| "unavailable".into());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": m.cpu_model,
        "kernel": m.kernel,
        "mem_total_mb": m.mem_total_mb,
        "clock_ticks_per_s": ticks,
        "gstreamer": gst,
    })
}

/// The gst-rtsp-server child: `GST_MODE N FILE PORT`.
mod gst_server {
    use gstreamer as gst;
    use gstreamer::glib;
    use gstreamer_rtsp_server as rtsp;
    use gstreamer_rtsp_server::prelude::*;

    pub fn serve(args: &[String]) -> Result<(), String> {
        let [n, file, port] = args else {
            return Err("expected: N FILE PORT".into());
        };
        let n: u32 = n.parse().map_err(|_| format!("bad camera count {n:?}"))?;
        gst::init().map_err(|e| format!("gst::init: {e}"))?;
        let main_loop = glib::MainLoop::new(None, false);
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(port);
        // The default backlog of 5 drops SYNs under a 64-wide ramp; camsim (tokio) listens with 1,024.
        server.set_backlog(1024);
        let mounts = server.mount_points().ok_or("server has no mount points")?;
        let launch = format!(
            "( filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
            file.replace('"', "\\\"")
        );
        let width = n.to_string().len().max(4);
        for i in 1..=n {
            let factory = rtsp::RTSPMediaFactory::new();
            factory.set_launch(&launch);
            factory.set_shared(true);
            // camsim's load client sets up `<url>/trackID=0` (camsim's SDP control) instead of
            // reading a=control from the SDP; gst-rtsp-server names its tracks `stream=0`.
            factory.connect_media_configure(|_, media| {
                for idx in 0..media.n_streams() {
                    if let Some(stream) = media.stream(idx) {
                        stream.set_control(Some(&format!("trackID={idx}")));
                    }
                }
            });
            mounts.add_factory(&format!("/cam/{i:0width$}"), factory);
        }
        let _source = server
            .attach(None)
            .map_err(|e| format!("attach on port {port}: {e}"))?;
        main_loop.run();
        Ok(())
    }
}
