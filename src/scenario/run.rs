//! One run: receiver, camsim, the service, the ramp, the warm-up, the window with its script and
//! samples, the drain, the ledger, the stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::api::{self, Api, Camsim, Metrics};
use super::child::{Child, free_port};
use super::plan::{self, Action, Applied, Cam};
use super::procfs::{self, ProcSample};
use super::receiver::{CaseReceiver, ReceiverStats};
use super::{Kind, Resolved, ScenarioError, report};

/// How long camsim may take to prepare its clips, and the service to load the model.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// After the window: how long deliveries may take to catch up (the outbox retries every ≤ 10 s).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The ledger is read this long after the window at the earliest (transitions are written by the
/// ledger thread, restores show within the backoff cap).
const LEDGER_SETTLE: Duration = Duration::from_secs(6);
/// The warm-up lasts until the service's RSS grew less than PLATEAU_GROWTH over PLATEAU_SPAN …
const PLATEAU_SPAN: Duration = Duration::from_secs(30);
const PLATEAU_GROWTH: f64 = 0.01;
/// … but no more than this beyond `--warmup`.
const PLATEAU_MAX: Duration = Duration::from_secs(180);
/// API probes: one round (summary, then the camera list) per this period.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Everything a run measured, for [`report::run_report`].
pub struct RunData {
    /// Fleet size.
    pub n: u32,
    /// The fleet.
    pub cams: Vec<Cam>,
    /// Seconds from the service's start to 99 % online and to all online.
    pub ramp_99_s: Option<f64>,
    /// All online.
    pub ramp_all_s: Option<f64>,
    /// Seconds the cameras were added over.
    pub stagger_s: f64,
    /// The warm-up as it ran, seconds.
    pub warmup_s: f64,
    /// Samples (t < 0 during the warm-up).
    pub samples: Vec<Sample>,
    /// API probes.
    pub probes: Vec<Probe>,
    /// At the window's start and end.
    pub w0: Raw,
    /// At the window's end.
    pub w1: Raw,
    /// Per camera `counters.analysed` at the window's start and end.
    pub analysed0: HashMap<String, u64>,
    /// At the end.
    pub analysed1: HashMap<String, u64>,
    /// Every stored alert after the drain.
    pub alerts: Vec<Value>,
    /// Alerts raised while the case system was down.
    pub alerts_during_outage: usize,
    /// The receiver's counters.
    pub receiver: ReceiverStats,
    /// Stored alerts the receiver never accepted.
    pub missing: Vec<String>,
    /// Seconds after the window until every stored alert was received.
    pub drain_s: Option<f64>,
    /// The script as applied.
    pub applied: Vec<Applied>,
    /// `/api/health/availability?group_by=camera` over the window.
    pub ledger: Option<Vec<Value>>,
    /// What the service's log said in the window.
    pub log: LogFacts,
    /// Seconds the service took to stop after SIGTERM, and whether it exited by itself.
    pub stop: (f64, bool),
    /// `/api/health/summary` at the window's end.
    pub final_summary: Value,
    /// Clock ticks per second.
    pub ticks: f64,
    /// The window in unix milliseconds.
    pub window_unix_ms: (i64, i64),
    /// Things worth knowing.
    pub notes: Vec<String>,
    /// Scripted bursts (camsim's onsets) inside the window and when the detector first analysed a
    /// frame of each (that arrived after the onset).
    pub bursts: Vec<BurstSeen>,
}

/// Per camera, the detector's frames seen so far: (arrival, answer) in unix ms.
type DetectorLog = BTreeMap<String, std::collections::BTreeSet<(i64, i64)>>;

/// One scripted burst and the detector's first look at it.
#[derive(Debug, Clone, Serialize)]
pub struct BurstSeen {
    /// The service's camera id.
    pub camera: String,
    /// The burst's onset, unix ms (camsim's script).
    pub onset_ms: i64,
    /// Seconds from the onset to the detector's answer on the first frame that arrived after it;
    /// `None` when none was analysed before the window ended.
    pub delay_s: Option<f64>,
}

/// Counters at one instant.
#[derive(Clone)]
pub struct Raw {
    /// When.
    pub at: Instant,
    /// `/metrics`.
    pub metrics: Option<Metrics>,
    /// The service's process.
    pub svc: Option<ProcSample>,
    /// camsim's process.
    pub sim: Option<ProcSample>,
    /// The machine's (busy, total) jiffies.
    pub machine: Option<(u64, u64)>,
    /// The service's threads: tid → (name, ticks).
    pub tasks: BTreeMap<u32, (String, u64)>,
}

/// One sample of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds into the window (negative: warm-up).
    pub t: f64,
    /// When it was taken.
    #[serde(skip)]
    pub at: Option<Instant>,
    /// `online_rate` of the summary.
    pub online_rate: Option<f64>,
    /// Cameras offline now.
    pub offline: u64,
    /// Cameras connecting now.
    pub connecting: u64,
    /// Service CPU since the previous sample, % of one core.
    pub cpu_percent: f64,
    /// Service RSS, MB.
    pub rss_mb: f64,
    /// Service threads.
    pub threads: u64,
    /// Service open descriptors.
    pub fds: u64,
    /// camsim CPU, % of one core.
    pub camsim_cpu_percent: f64,
    /// Whole machine busy, % of one core.
    pub machine_busy_percent: f64,
    /// Frames decoded for analysis (VQD) per second.
    pub decoded_fps: f64,
    /// Frames inferred per second.
    pub inferred_fps: f64,
    /// Mean inference batch size since the previous sample.
    pub batch_mean: Option<f64>,
    /// Frames waiting in the batcher.
    pub batch_pending: f64,
    /// Frames waiting in the decoders' queues.
    pub decode_queue: f64,
    /// Case deliveries pending in the outbox.
    pub outbox_pending: f64,
    /// Seconds the sample took (a slow `/metrics` is a symptom too).
    pub took_s: f64,
}

/// One timed API call.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Seconds into the window.
    pub t: f64,
    /// When it was sent.
    #[serde(skip)]
    pub at: Option<Instant>,
    /// The path.
    pub endpoint: &'static str,
    /// Milliseconds to the last byte (the timeout when it failed).
    pub ms: f64,
    /// 200 with a body.
    pub ok: bool,
}

/// Facts from the service's JSON log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogFacts {
    /// WARN lines, by message (first 80 characters).
    pub warnings: BTreeMap<String, u64>,
    /// ERROR lines, by message.
    pub errors: BTreeMap<String, u64>,
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> Result<(), ScenarioError> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = cancel.cancelled() => Err(ScenarioError::Cancelled),
    }
}

async fn raw(api: &Api, svc: u32, sim: u32) -> Raw {
    let metrics = api.metrics().await.ok();
    Raw {
        at: Instant::now(),
        metrics,
        svc: procfs::sample(svc),
        sim: procfs::sample(sim),
        machine: procfs::machine_ticks(),
        tasks: procfs::threads(svc),
    }
}

fn rate(a: f64, b: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        (b - a).max(0.0) / secs
    } else {
        0.0
    }
}

/// The sample between two instants (`t` is set once the window's start is known).
fn sample(prev: &Raw, cur: &Raw, summary: Option<&Value>, ticks: f64, took: f64) -> Sample {
    let secs = cur.at.duration_since(prev.at).as_secs_f64();
    let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
        (Some(a), Some(b)) => rate(a.ticks as f64, b.ticks as f64, secs) / ticks * 100.0,
        _ => f64::NAN,
    };
    let m = |r: &Raw, name: &str| r.metrics.as_ref().map_or(0.0, |m| m.sum(name, &[]));
    let mf = |name: &str| rate(m(prev, name), m(cur, name), secs);
    let batches =
        m(cur, "qly_inference_batch_size_count") - m(prev, "qly_inference_batch_size_count");
    let frames = m(cur, "qly_inference_batch_size_sum") - m(prev, "qly_inference_batch_size_sum");
    let busy = match (prev.machine, cur.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            (b1 - b0) as f64 / (t1 - t0) as f64 * 100.0 * procfs::cores() as f64
        }
        _ => f64::NAN,
    };
    let svc = cur.svc.unwrap_or_default();
    Sample {
        t: f64::NAN,
        at: Some(cur.at),
        online_rate: summary.and_then(|s| s["online_rate"].as_f64()),
        offline: summary.map_or(0, |s| num(s, "offline")),
        connecting: summary.map_or(0, |s| num(s, "connecting")),
        cpu_percent: cpu(prev.svc, cur.svc),
        rss_mb: svc.rss_kb as f64 / 1024.0,
        threads: svc.threads,
        fds: svc.fds,
        camsim_cpu_percent: cpu(prev.sim, cur.sim),
        machine_busy_percent: busy,
        decoded_fps: mf("qly_frames_analysed_total"),
        inferred_fps: mf("qly_inference_frames_total"),
        batch_mean: (batches > 0.0).then(|| frames / batches),
        batch_pending: m(cur, "qly_batch_pending"),
        decode_queue: m(cur, "qly_decode_queue_depth"),
        outbox_pending: cur.metrics.as_ref().map_or(0.0, |m| {
            m.sum("qly_outbox", &[("sink", "case"), ("state", "pending")])
        }),
        took_s: took,
    }
}

/// Per camera `counters.analysed` from `/api/cameras`.
async fn analysed_by_camera(api: &Api) -> HashMap<String, u64> {
    let Ok(v) = api.get_json("/api/cameras").await else {
        return HashMap::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_owned(),
                c["counters"]["analysed"].as_u64().unwrap_or(0),
            ))
        })
        .collect()
}

fn log_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Reads the JSON log between two byte offsets.
fn log_facts(path: &std::path::Path, from: u64, to: u64) -> LogFacts {
    let mut f = LogFacts::default();
    let Ok(bytes) = std::fs::read(path) else {
        return f;
    };
    let end = (to as usize).min(bytes.len());
    let start = (from as usize).min(end);
    for line in String::from_utf8_lossy(&bytes[start..end]).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let msg = v["message"].as_str().unwrap_or("");
        match (v["level"].as_str().unwrap_or(""), msg) {
            ("WARN", m) => *f.warnings.entry(m.chars().take(80).collect()).or_default() += 1,
            ("ERROR", m) => *f.errors.entry(m.chars().take(80).collect()).or_default() += 1,
            _ => {}
        }
    }
    f
}

/// Runs one fleet size through the scenario and returns its report section.
pub(super) async fn run_one(
    s: &Resolved,
    n: u32,
    cancel: &CancellationToken,
) -> Result<Value, ScenarioError> {
    let ticks = procfs::clock_ticks();
    let mut notes = Vec::new();
    let dir = s.work.join(format!("n{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(|e| ScenarioError::io(&data_dir, e))?;
    let dir = dir.canonicalize().map_err(|e| ScenarioError::io(&dir, e))?;
    let data_dir = dir.join("data");
    let password = hex::encode(rand::random::<[u8; 12]>());
    let secret = hex::encode(rand::random::<[u8; 16]>());
    let receiver = CaseReceiver::start(&secret).await?;

    // camsim.
    let rtsp_port = free_port()?;
    let control_port = free_port()?;
    let camsim_args: Vec<String> = [
        "camsim",
        "--cameras",
        &n.to_string(),
        "--source",
        &s.source.display().to_string(),
        "--bind",
        "127.0.0.1",
        "--rtsp-port",
        &rtsp_port.to_string(),
        "--control-port",
        &control_port.to_string(),
        "--quiet-share",
        &s.quiet_share.to_string(),
        "--bursts",
        &s.bursts.to_string(),
        "--scene-rate-control",
        match s.scene_rate_control {
            crate::camsim::RateControl::Vbr => "vbr",
            crate::camsim::RateControl::Cbr => "cbr",
        },
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let mut camsim = Child::spawn(
        "camsim",
        &s.bin,
        &camsim_args,
        &[("RUST_LOG".into(), "warn".into())],
        &dir.join("camsim.log"),
    )?;
    let sim = Camsim::new(control_port)?;
    let t_start = Instant::now();
    while sim.stats().await.is_err() {
        if camsim.exited().is_some() {
            return Err(camsim.failure("exited before it was ready"));
        }
        if t_start.elapsed() > READY_TIMEOUT {
            return Err(camsim.failure("not ready in time"));
        }
        sleep_or_cancel(Duration::from_millis(200), cancel).await?;
    }
    tracing::info!(
        cameras = n,
        secs = t_start.elapsed().as_secs_f64(),
        "camsim ready"
    );

    // The service.
    let cams = plan::fleet(s.kind, n, &s.fleet);
    let stagger_s = s
        .stagger_s
        .unwrap_or_else(|| (f64::from(n) / 100.0).clamp(5.0, 20.0));
    // Cameras with rules are in the config (rules name them); with no stagger, all are.
    let in_config: Vec<&Cam> = cams
        .iter()
        .filter(|c| c.alerts || stagger_s == 0.0)
        .collect();
    let port = free_port()?;
    let spec = plan::ServiceSpec {
        name: format!("scenario-{}", s.kind.as_str()),
        port,
        data_dir: data_dir.display().to_string(),
        assets_dir: s.assets.display().to_string(),
        model: s.model.display().to_string(),
        fall_model: s.fall_model.display().to_string(),
        intra_op_threads: s.intra_op_threads,
        min_fps: s.min_fps,
        case_url: receiver.url.clone(),
    };
    let config = dir.join("service.toml");
    std::fs::write(&config, plan::service_toml(&spec, &in_config, rtsp_port, n))
        .map_err(|e| ScenarioError::io(&config, e))?;
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, plan::rules_toml(&s.rules, &cams)?)
        .map_err(|e| ScenarioError::io(&rules, e))?;
    let filter = "info";
    let log_path = dir.join("service.log");
    let mut svc = Child::spawn(
        "service",
        &s.bin,
        &[
            "--log-format".into(),
            "json".into(),
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[
            (plan::PASSWORD_ENV.into(), password.clone()),
            (plan::CASE_SECRET_ENV.into(), secret.clone()),
            ("RUST_LOG".into(), filter.into()),
        ],
        &log_path,
    )?;
    let svc_started = Instant::now();
    let plain = api::client(Duration::from_secs(5))?;
    loop {
        let up = plain
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        if svc.exited().is_some() {
            return Err(svc.failure("exited during start-up"));
        }
        if svc_started.elapsed() > READY_TIMEOUT {
            return Err(svc.failure("not answering in time"));
        }
        sleep_or_cancel(Duration::from_millis(200), cancel).await?;
    }
    let api = Api::login(port, plan::ADMIN, &password).await?;
    let rest: Vec<&Cam> = cams
        .iter()
        .filter(|c| !in_config.iter().any(|x| x.id == c.id))
        .collect();
    let t_add = Instant::now();
    let mut added = 0usize;
    for (i, c) in rest.iter().enumerate() {
        let due = t_add + Duration::from_secs_f64(stagger_s * i as f64 / rest.len().max(1) as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            sleep_or_cancel(wait, cancel).await?;
        }
        match api
            .post_json("/api/cameras", &c.api_body(rtsp_port, n))
            .await
        {
            Ok((201, _)) => added += 1,
            Ok((code, body)) => notes.push(format!(
                "POST camera {}: {code} {}",
                c.id,
                body.chars().take(160).collect::<String>()
            )),
            Err(e) => notes.push(format!("POST camera {}: {e}", c.id)),
        }
    }
    if added < rest.len() {
        notes.truncate(5);
        notes.push(format!(
            "only {added} of {} cameras added through the API",
            rest.len()
        ));
    }
    tracing::info!(added, secs = t_add.elapsed().as_secs_f64(), "cameras added");

    // Ramp.
    let (mut ramp_99, mut ramp_all) = (None, None);
    let ramp_limit = Duration::from_secs_f64(s.online_timeout_s);
    loop {
        if svc.exited().is_some() {
            return Err(svc.failure("exited during the ramp"));
        }
        if let Ok(sum) = api.get_json("/api/health/summary").await {
            let up = num(&sum, "online") + num(&sum, "degraded");
            let t = svc_started.elapsed().as_secs_f64();
            if up as f64 >= 0.99 * f64::from(n) && ramp_99.is_none() {
                ramp_99 = Some(t);
            }
            if up >= u64::from(n) {
                ramp_all = Some(t);
                break;
            }
        }
        if svc_started.elapsed() > ramp_limit {
            notes.push(format!(
                "not every camera online {:.0} s after the start",
                s.online_timeout_s
            ));
            break;
        }
        sleep_or_cancel(Duration::from_secs(1), cancel).await?;
    }
    tracing::info!(?ramp_99, ?ramp_all, "ramp done; warming up");

    // Sampler and prober run from now (the warm-up) to the window's end.
    let stop = CancellationToken::new();
    // However this function returns, the sampler and the prober stop.
    let _stop_guard = stop.clone().drop_guard();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let probes: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let (svc_pid, sim_pid) = (svc.pid(), camsim.pid());
    let sampler = {
        let (api, stop, samples) = (api.clone(), stop.clone(), samples.clone());
        let every = Duration::from_secs_f64(s.sample_every_s);
        tokio::spawn(async move {
            let mut prev = raw(&api, svc_pid, sim_pid).await;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let began = Instant::now();
                let summary = api.get_json("/api/health/summary").await.ok();
                let cur = raw(&api, svc_pid, sim_pid).await;
                let took = began.elapsed().as_secs_f64();
                let smp = sample(&prev, &cur, summary.as_ref(), ticks, took);
                samples.lock().unwrap_or_else(|p| p.into_inner()).push(smp);
                prev = cur;
            }
        })
    };
    // Burst cameras: the detector's latest frames, gathered every 20 s (the service keeps 64).
    let burst_ids: Vec<String> = match sim.cameras().await {
        Ok(v) => v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["scene"] == "burst")
            .filter_map(|c| c["id"].as_str()?.parse::<u32>().ok())
            .filter_map(|n| cams.iter().find(|c| c.number == n).map(|c| c.id.clone()))
            .collect(),
        Err(e) => {
            notes.push(format!("camsim /cameras: {e}"));
            Vec::new()
        }
    };
    let seen: Arc<Mutex<DetectorLog>> = Arc::default();
    let burst_watch = {
        let (api, stop, seen, ids) = (api.clone(), stop.clone(), seen.clone(), burst_ids.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_round = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => last_round = true,
                }
                for id in &ids {
                    let Ok(v) = api.get_json(&format!("/api/cameras/{id}/activity")).await else {
                        continue;
                    };
                    let entries = v["analysed"].as_array().cloned().unwrap_or_default();
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    let set = seen.entry(id.clone()).or_default();
                    for e in entries {
                        if let (Some(a), Some(b)) =
                            (e["arrival_ms"].as_i64(), e["analysed_ms"].as_i64())
                        {
                            set.insert((a, b));
                        }
                    }
                }
                if last_round {
                    break;
                }
            }
        })
    };
    let prober = {
        let (api, stop, probes) = (api.clone(), stop.clone(), probes.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                for endpoint in ["/api/health/summary", "/api/cameras"] {
                    let at = Instant::now();
                    let (ms, ok) = match api.get_timed(endpoint).await {
                        Ok((200, body, secs)) => (secs * 1000.0, !body.is_empty()),
                        Ok((_, _, secs)) => (secs * 1000.0, false),
                        Err(_) => (at.elapsed().as_secs_f64() * 1000.0, false),
                    };
                    probes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Probe {
                            t: f64::NAN,
                            at: Some(at),
                            endpoint,
                            ms,
                            ok,
                        });
                }
            }
        })
    };

    // Warm-up: at least `warmup`, and until the service's RSS has settled (ONNX Runtime's arena
    // grows in steps until the largest batch has run), at most PLATEAU_MAX longer.
    let warm_start = Instant::now();
    let warm_min = warm_start + Duration::from_secs_f64(s.warmup_s);
    let warm_max = warm_min + PLATEAU_MAX;
    let mut rss_seen: Vec<(Instant, u64)> = Vec::new();
    loop {
        if svc.exited().is_some() {
            return Err(svc.failure("exited during the warm-up"));
        }
        let now = Instant::now();
        let rss = procfs::sample(svc_pid).map_or(0, |p| p.rss_kb);
        rss_seen.push((now, rss));
        // The oldest reading within the last PLATEAU_SPAN, once the warm-up is that long.
        let settled = now.duration_since(warm_start) >= PLATEAU_SPAN
            && rss_seen
                .iter()
                .find(|(at, _)| now.duration_since(*at) <= PLATEAU_SPAN)
                .is_some_and(|(_, before)| rss as f64 <= *before as f64 * (1.0 + PLATEAU_GROWTH));
        if now >= warm_min && settled {
            break;
        }
        if now >= warm_max {
            notes.push(format!(
                "RSS still growing at the end of the warm-up ({:.0} s)",
                now.duration_since(warm_start).as_secs_f64()
            ));
            break;
        }
        sleep_or_cancel(Duration::from_secs(1), cancel).await?;
    }
    let t0 = Instant::now();
    let warmup_s = t0.duration_since(warm_start).as_secs_f64();
    tracing::info!(warmup_s, "warm-up done; window starts");
    let since = move |at: Instant| -> f64 {
        if at >= t0 {
            at.duration_since(t0).as_secs_f64()
        } else {
            -t0.duration_since(at).as_secs_f64()
        }
    };
    let wall0 = SystemTime::now();
    let log0 = log_len(&log_path);
    let w0 = raw(&api, svc_pid, sim_pid).await;
    let analysed0 = analysed_by_camera(&api).await;
    let script = match s.kind {
        Kind::Soak => plan::soak_script(&cams, s.duration_s, s.flap_share, s.case_down_s),
        Kind::Scale | Kind::Overload => Vec::new(),
    };
    std::fs::write(
        dir.join("script.json"),
        serde_json::to_string_pretty(&script).unwrap_or_default(),
    )
    .map_err(|e| ScenarioError::io(&dir.join("script.json"), e))?;
    let mut applied = Vec::new();
    let mut outage: Option<(f64, f64)> = None;
    let mut next = 0usize;
    let window = Duration::from_secs_f64(s.duration_s);
    let mut died = None;
    loop {
        let now = since(Instant::now());
        while next < script.len() && script[next].at <= now {
            let step = &script[next];
            let before = since(Instant::now());
            match &step.action {
                Action::Down { cameras } => {
                    if let Err(e) = sim.faults(cameras, "down").await {
                        notes.push(e);
                    }
                }
                Action::Restore { cameras } => {
                    if let Err(e) = sim.faults(cameras, "restore").await {
                        notes.push(e);
                    }
                }
                Action::CaseDown => {
                    receiver.set_down(true);
                    outage = Some((before, f64::INFINITY));
                }
                Action::CaseUp => {
                    receiver.set_down(false);
                    if let Some(o) = &mut outage {
                        o.1 = before;
                    }
                }
            }
            let after = since(Instant::now());
            applied.push(Applied {
                scheduled: step.at,
                at: (before + after) / 2.0,
                action: step.action.clone(),
            });
            next += 1;
        }
        if t0.elapsed() >= window {
            break;
        }
        if let Some(status) = svc.exited() {
            died = Some(status);
            break;
        }
        let until_next = script
            .get(next)
            .map_or(s.duration_s, |st| st.at)
            .min(s.duration_s)
            - since(Instant::now());
        sleep_or_cancel(Duration::from_secs_f64(until_next.clamp(0.0, 1.0)), cancel).await?;
    }
    let w1 = raw(&api, svc_pid, sim_pid).await;
    let wall1 = wall0 + w1.at.duration_since(w0.at);
    let analysed1 = analysed_by_camera(&api).await;
    let log1 = log_len(&log_path);
    let final_summary = api
        .get_json("/api/health/summary")
        .await
        .unwrap_or(Value::Null);
    stop.cancel();
    let _ = sampler.await;
    let _ = prober.await;
    let _ = burst_watch.await;
    // Each burst in the window (with 30 s left after it) against the detector's first look.
    let bursts = {
        let (u0, u1) = (
            crate::time::unix_ms(wall0),
            crate::time::unix_ms(wall1) - 30_000,
        );
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let onsets = sim.cameras().await.unwrap_or(Value::Null);
        let mut out = Vec::new();
        for c in onsets.as_array().into_iter().flatten() {
            let Some(n) = c["id"].as_str().and_then(|x| x.parse::<u32>().ok()) else {
                continue;
            };
            let Some(cam) = cams.iter().find(|x| x.number == n) else {
                continue;
            };
            for onset in c["burst_onsets_unix_ms"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .filter(|t| *t >= u0 && *t <= u1)
            {
                let first = seen.get(&cam.id).and_then(|set| {
                    set.iter()
                        .filter(|(arrival, _)| *arrival >= onset)
                        .map(|(_, analysed)| *analysed)
                        .min()
                });
                out.push(BurstSeen {
                    camera: cam.id.clone(),
                    onset_ms: onset,
                    delay_s: first.map(|t| (t - onset) as f64 / 1000.0),
                });
            }
        }
        out
    };
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    for x in &mut samples {
        x.t = x.at.map_or(f64::NAN, since);
    }
    let mut probes = std::mem::take(&mut *probes.lock().unwrap_or_else(|p| p.into_inner()));
    for x in &mut probes {
        x.t = x.at.map_or(f64::NAN, since);
    }
    receiver.set_down(false);
    if died.is_some() {
        return Err(svc.failure("exited during the window"));
    }
    tracing::info!("window done; draining deliveries");

    // Drain: every stored alert reaches the case system.
    let t_drain = Instant::now();
    let drain_limit = if s.kind == Kind::Soak {
        DRAIN_TIMEOUT
    } else {
        DRAIN_TIMEOUT / 4
    };
    let (alerts, missing, drain_s) = loop {
        let alerts: Vec<Value> = api
            .get_json("/api/alerts?limit=10000")
            .await
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let got = receiver.deliveries();
        let missing: Vec<String> = alerts
            .iter()
            .filter_map(|a| a["id"].as_str())
            .filter(|id| !got.contains_key(*id))
            .map(str::to_owned)
            .collect();
        if missing.is_empty() {
            break (alerts, missing, Some(t_drain.elapsed().as_secs_f64()));
        }
        if t_drain.elapsed() > drain_limit {
            break (alerts, missing, None);
        }
        sleep_or_cancel(Duration::from_secs(1), cancel).await?;
    };
    // The receiver's counters as the drain ended (later alerts are not in the list above).
    let receiver_stats = receiver.stats();
    let unix0 = crate::time::unix_ms(wall0);
    let alerts_during_outage = outage.map_or(0, |(a, b)| {
        let (a, b) = (
            unix0 + (a * 1000.0) as i64,
            unix0 + (b.min(1e9) * 1000.0) as i64,
        );
        alerts
            .iter()
            .filter(|x| x["time_ms"].as_i64().is_some_and(|t| t >= a && t < b))
            .count()
    });

    // The ledger over the window.
    let ledger = if s.kind == Kind::Soak {
        let settle = w1.at + LEDGER_SETTLE;
        if let Some(wait) = settle.checked_duration_since(Instant::now()) {
            sleep_or_cancel(wait, cancel).await?;
        }
        // In pages of 500 rows (the API's largest).
        let mut rows = Vec::new();
        loop {
            let path = format!(
                "/api/health/availability?from={}&to={}&group_by=camera&limit=500&offset={}",
                unix0,
                crate::time::unix_ms(wall1),
                rows.len()
            );
            match api.get_json(&path).await {
                Ok(v) => {
                    let page = v.as_array().cloned().unwrap_or_default();
                    let last = page.len() < 500;
                    rows.extend(page);
                    if last {
                        break Some(rows);
                    }
                }
                Err(e) => {
                    notes.push(format!("ledger: {e}"));
                    break None;
                }
            }
        }
    } else {
        None
    };

    let stop_result = tokio::task::spawn_blocking(move || {
        let r = svc.stop();
        camsim.stop();
        r
    })
    .await
    .unwrap_or((f64::NAN, false));
    let log = log_facts(&log_path, log0, log1);
    let data = RunData {
        n,
        cams,
        ramp_99_s: ramp_99,
        ramp_all_s: ramp_all,
        stagger_s,
        samples,
        probes,
        warmup_s,
        w0,
        w1,
        analysed0,
        analysed1,
        alerts,
        alerts_during_outage,
        receiver: receiver_stats,
        missing,
        drain_s,
        applied,
        ledger,
        log,
        stop: stop_result,
        final_summary,
        ticks,
        window_unix_ms: (unix0, crate::time::unix_ms(wall1)),
        notes,
        bursts,
    };
    let mut row = report::run_report(s, &data);
    row["files"] = serde_json::json!({
        "dir": dir.display().to_string(),
        "service_config": config.display().to_string(),
        "service_log": log_path.display().to_string(),
    });
    Ok(row)
}
