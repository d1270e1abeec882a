//! Figures and verdicts of a run (JSON), and the Markdown tables of a whole report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{self, KEYFRAME_INTERVAL_S};
use super::run::{RunData, Sample};
use super::{Kind, Report, Resolved};

/// camsim's clips run at 10 fps; a camera that decodes every frame decodes this many.
const SOURCE_FPS: f64 = 10.0;
/// The bounds.
const ONLINE_GOAL: f64 = 0.99;
const DECODE_GOAL: f64 = 0.95;
/// Every camera's picture checked at least this often (mean interval over the window, seconds).
const VQD_INTERVAL_GOAL_S: f64 = 10.0;
/// A movement in a burst camera's picture analysed by the detector within this (p95, seconds).
const BURST_DELAY_GOAL_S: f64 = 5.0;
const API_P99_MS: f64 = 200.0;
const RSS_GROWTH_SOAK: f64 = 0.05;
const RSS_GROWTH_OVERLOAD: f64 = 0.10;
const LEDGER_TOLERANCE: f64 = 0.02;
const OVERLOAD_FACTOR: f64 = 5.0;
/// Threads may come and go with tokio's blocking pool (idle threads leave after 10 s).
const THREAD_SLACK: u64 = 4;

/// One verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Criterion {
    /// Short name.
    pub name: &'static str,
    /// Passed.
    pub pass: bool,
    /// Measured.
    pub value: Value,
    /// Bound.
    pub limit: Value,
    /// In words.
    pub detail: String,
}

fn crit(
    name: &'static str,
    pass: bool,
    value: impl Into<Value>,
    limit: impl Into<Value>,
    detail: String,
) -> Criterion {
    Criterion {
        name,
        pass,
        value: value.into(),
        limit: limit.into(),
        detail,
    }
}

/// `x` rounded to `d` decimals (NaN and infinities become null in JSON anyway).
pub fn r(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}

/// Nearest-rank percentile of unsorted values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

fn in_window(samples: &[Sample], lo: f64, hi: f64) -> Vec<&Sample> {
    samples.iter().filter(|s| s.t >= lo && s.t <= hi).collect()
}

fn latency_stats(ms: &[f64], failures: usize) -> Value {
    json!({
        "n": ms.len(),
        "p50_ms": percentile(ms, 50.0).map(|x| r(x, 1)),
        "p99_ms": percentile(ms, 99.0).map(|x| r(x, 1)),
        "max_ms": percentile(ms, 100.0).map(|x| r(x, 1)),
        "failures": failures,
    })
}

/// The report section of one run: figures, time series, criteria.
pub fn run_report(s: &Resolved, d: &RunData) -> Value {
    let w = d.w1.at.duration_since(d.w0.at).as_secs_f64().max(1e-3);
    let delta = |name: &str, filter: &[(&str, &str)]| {
        let get = |raw: &super::run::Raw| raw.metrics.as_ref().map_or(0.0, |m| m.sum(name, filter));
        get(&d.w1) - get(&d.w0)
    };
    let by = |name: &str, label: &str| -> BTreeMap<String, f64> {
        let (Some(m0), Some(m1)) = (&d.w0.metrics, &d.w1.metrics) else {
            return BTreeMap::new();
        };
        let before = m0.by(name, label);
        m1.by(name, label)
            .into_iter()
            .map(|(k, v)| {
                let x = v - before.get(&k).copied().unwrap_or(0.0);
                (k, x)
            })
            .collect()
    };
    let total = |name: &str, filter: &[(&str, &str)]| {
        d.w1.metrics.as_ref().map_or(0.0, |m| m.sum(name, filter))
    };
    let win = in_window(&d.samples, 0.0, w + 1.0);
    let online_mean = mean(win.iter().filter_map(|x| x.online_rate));
    let online_min = win
        .iter()
        .filter_map(|x| x.online_rate)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));

    // Decode (VQD on every analysed frame) and inference.
    let decoded_fps = delta("qly_frames_analysed_total", &[]) / w;
    let decode_target: f64 = d
        .cams
        .iter()
        .map(|c| {
            if c.keyframe_only {
                c.target_fps()
            } else {
                SOURCE_FPS
            }
        })
        .sum::<f64>()
        * online_mean.unwrap_or(1.0);
    let inferred = delta("qly_inference_frames_total", &[]);
    let busy_s = delta("qly_inference_latency_seconds_sum", &[]);
    let batches = delta("qly_inference_batch_size_count", &[]);
    let capacity_fps = (busy_s > 0.0).then(|| inferred / busy_s);
    let demand_fps: f64 = d.cams.iter().map(|c| c.analysis_fps).sum();
    let queue_full = delta(
        "qly_frames_dropped_total",
        &[("reason", "analysis_queue_full")],
    );
    let offered_fps = (delta("qly_frames_analysed_total", &[]) - queue_full) / w;
    let frames_dropped = by("qly_frames_dropped_total", "reason");
    let analysis_dropped = by("qly_analysis_dropped_total", "reason");

    // The service's process.
    let cpu =
        |a: Option<super::procfs::ProcSample>, b: Option<super::procfs::ProcSample>| match (a, b) {
            (Some(a), Some(b)) => b.ticks.saturating_sub(a.ticks) as f64 / d.ticks / w * 100.0,
            _ => f64::NAN,
        };
    let svc_cpu = cpu(d.w0.svc, d.w1.svc);
    let sim_cpu = cpu(d.w0.sim, d.w1.sim);
    let machine_busy = match (d.w0.machine, d.w1.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            (b1 - b0) as f64 / (t1 - t0) as f64 * 100.0 * super::procfs::cores() as f64
        }
        _ => f64::NAN,
    };
    // CPU by stage (thread names), and what one frame costs in each.
    let stages = super::procfs::cpu_by_stage(&d.w0.tasks, &d.w1.tasks, d.ticks);
    let stage_cpu = |names: &[&str]| -> f64 {
        names
            .iter()
            .filter_map(|n| stages.get(*n))
            .map(|(_, secs)| secs)
            .sum()
    };
    let decoded = delta("qly_frames_analysed_total", &[]);
    let decode_cpu = stage_cpu(&["src:src", "decode-N", "decode-cam-*"]);
    let infer_cpu = stage_cpu(&["infer-N"]);
    let per_frame_ms = |cpu: f64, frames: f64| (frames > 0.0).then(|| r(cpu / frames * 1000.0, 2));
    let cpu_by_stage: BTreeMap<&String, Value> = stages
        .iter()
        .map(|(k, (threads, secs))| {
            (
                k,
                json!({"threads": threads, "cpu_percent_of_one_core": r(secs / w * 100.0, 1)}),
            )
        })
        .collect();
    let rss: Vec<f64> = win.iter().map(|x| x.rss_mb).collect();
    let threads: Vec<u64> = win.iter().map(|x| x.threads).collect();
    let fds: Vec<u64> = win.iter().map(|x| x.fds).collect();
    let cpu_max = win
        .iter()
        .map(|x| x.cpu_percent)
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);

    // Alerts inside the window.
    let (u0, u1) = d.window_unix_ms;
    let latencies: Vec<f64> = d
        .alerts
        .iter()
        .filter(|a| a["time_ms"].as_i64().is_some_and(|t| t >= u0 && t <= u1))
        .filter_map(|a| a["latency_ms"].as_f64())
        .collect();
    let deliveries_failed = delta("qly_delivery_failures_total", &[("sink", "case")]);

    // The API.
    let mut api = serde_json::Map::new();
    let mut all_ms = Vec::new();
    let mut all_fail = 0;
    for endpoint in ["/api/health/summary", "/api/cameras"] {
        let p: Vec<&super::run::Probe> = d
            .probes
            .iter()
            .filter(|p| p.endpoint == endpoint && p.t >= 0.0 && p.t <= w)
            .collect();
        let ms: Vec<f64> = p.iter().filter(|p| p.ok).map(|p| p.ms).collect();
        let fail = p.iter().filter(|p| !p.ok).count();
        all_ms.extend(&ms);
        all_fail += fail;
        api.insert(endpoint.into(), latency_stats(&ms, fail));
    }
    let api_p99 = percentile(&all_ms, 99.0);
    api.insert("all".into(), latency_stats(&all_ms, all_fail));

    // Looking only where something moves: pictures per camera over the window, cameras by activity.
    let intervals: Vec<f64> = d
        .cams
        .iter()
        .map(|c| {
            let n = d.analysed1.get(&c.id).copied().unwrap_or(0) as f64
                - d.analysed0.get(&c.id).copied().unwrap_or(0) as f64;
            if n > 0.0 { w / n } else { f64::INFINITY }
        })
        .collect();
    let interval_max = intervals.iter().copied().fold(0.0, f64::max);
    let activity_end: BTreeMap<String, f64> =
        d.w1.metrics
            .as_ref()
            .map(|m| m.by("qly_cameras_activity", "state"))
            .unwrap_or_default();
    let delays: Vec<f64> = d.bursts.iter().filter_map(|b| b.delay_s).collect();
    let bursts_missed = d.bursts.iter().filter(|b| b.delay_s.is_none()).count();
    let delay_p95 = percentile(&delays, 95.0);
    let mut out = json!({
        "cameras": d.n,
        "window_s": r(w, 1),
        "warmup_s": r(d.warmup_s, 1),
        "fleet": {
            "with_rules": d.cams.iter().filter(|c| c.alerts).count(),
            "keyframe_only": d.cams.iter().filter(|c| c.keyframe_only).count(),
            "by_priority": d.cams.iter().fold(BTreeMap::<u8, usize>::new(), |mut m, c| {
                *m.entry(c.priority).or_default() += 1; m
            }),
            "added_over_s": r(d.stagger_s, 1),
        },
        "ramp": {
            "online_99_percent_s": d.ramp_99_s.map(|x| r(x, 1)),
            "all_online_s": d.ramp_all_s.map(|x| r(x, 1)),
        },
        "online_rate": {
            "mean": online_mean.map(|x| r(x, 4)),
            "min": online_min.map(|x| r(x, 4)),
            "end": d.final_summary["online_rate"],
            "summary_at_end": d.final_summary,
        },
        "activity": {
            "scenes": {"quiet_share": s.quiet_share, "bursts": s.bursts,
                       "rate_control": s.scene_rate_control},
            "cameras_at_end": activity_end,
            "skipped_idle_fps": r(frames_dropped.get("idle").copied().unwrap_or(0.0) / w, 2),
            "vqd_only_fps": r(frames_dropped.get("vqd_only").copied().unwrap_or(0.0) / w, 2),
            "bursts": {
                "in_window": d.bursts.len(),
                "not_analysed": bursts_missed,
                "delay_s_p50": percentile(&delays, 50.0).map(|x| r(x, 2)),
                "delay_s_p95": delay_p95.map(|x| r(x, 2)),
                "delay_s_max": delays.iter().copied().reduce(f64::max).map(|x| r(x, 2)),
                "note": "from camsim's scripted onset to the detector's answer on the first frame that arrived after it",
                "each": d.bursts,
            },
            "picture_interval_s": {
                "p50": percentile(&intervals, 50.0).map(|x| r(x, 2)),
                "p99": percentile(&intervals, 99.0).map(|x| r(x, 2)),
                "max": r(interval_max, 2),
            },
        },
        "decode": {
            "achieved_fps": r(decoded_fps, 2),
            "target_fps": r(decode_target, 2),
            "share": r(decoded_fps / decode_target.max(1e-9), 4),
            "note": format!("keyframe-only cameras: min(analysis_fps, 1/{KEYFRAME_INTERVAL_S} s); \
                     the others decode every frame ({SOURCE_FPS} fps); times the mean online rate"),
        },
        "inference": {
            "fps": r(inferred / w, 2),
            "failed_frames": delta("qly_inference_failed_total", &[]),
            "batches": batches,
            "batch_mean": (batches > 0.0).then(|| r(inferred / batches, 2)),
            "batch_size_cumulative": by("qly_inference_batch_size_bucket", "le"),
            "busy_share": r(busy_s / w, 3),
            "capacity_fps_at_full_busy": capacity_fps.map(|x| r(x, 2)),
            "ms_per_frame": capacity_fps.map(|x| r(1000.0 / x, 1)),
            "demand_fps_configured": r(demand_fps, 2),
            "offered_fps": r(offered_fps, 2),
            "demand_over_capacity": capacity_fps.map(|c| r(demand_fps / c, 2)),
            // From the service's metrics (not its log text): the budget at the window's end and how
            // often a priority started or stopped being cut within it.
            "budget_at_end": d.w1.metrics.as_ref().map(|m| serde_json::json!({
                "capacity_fps": m.sum("qly_admission_capacity_fps", &[]),
                "demand_fps": m.sum("qly_admission_demand_fps", &[]),
                "admitted_fps": m.sum("qly_admission_admitted_fps", &[]),
                "keep_by_priority": m.by("qly_admission_keep", "priority"),
                "floor_kept_by_priority": m.by("qly_admission_floor_keep", "priority"),
            })),
            "budget_changes": delta("qly_admission_changes_total", &[]),
        },
        "service": {
            "cpu_percent_of_one_core": r(svc_cpu, 1),
            "cpu_percent_max_sample": r(cpu_max, 1),
            "rss_mb": {
                "start": rss.first().map(|x| r(*x, 1)),
                "end": rss.last().map(|x| r(*x, 1)),
                "max": rss.iter().copied().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))).map(|x| r(x, 1)),
            },
            "threads": {"start": threads.first(), "end": threads.last(),
                        "min": threads.iter().min(), "max": threads.iter().max()},
            "fds": {"start": fds.first(), "end": fds.last(),
                    "min": fds.iter().min(), "max": fds.iter().max()},
            "stop_s": r(d.stop.0, 1),
            "stopped_by_itself": d.stop.1,
            "log_warnings": d.log.warnings,
            "log_errors": d.log.errors,
        },
        "cpu_by_stage": cpu_by_stage,
        "cost_per_frame": {
            "decode_cpu_ms": per_frame_ms(decode_cpu, decoded),
            "vqd_cpu_ms": per_frame_ms(stage_cpu(&["decode-dispatch"]), decoded),
            "inference_cpu_ms": per_frame_ms(infer_cpu, inferred),
            "ingest_api_cpu_percent_per_camera": r(stage_cpu(&["qly-rt"]) / w * 100.0 / f64::from(d.n), 4),
            "note": "CPU seconds of the stage's threads over the window divided by the frames it handled: decode = GStreamer streaming threads (src:src) + decoder workers; VQD = decode-dispatch; inference = infer-N (ONNX Runtime runs its intra-op work on them); ingest/API = qly-rt (tokio)",
        },
        "camsim_cpu_percent_of_one_core": r(sim_cpu, 1),
        "machine_busy_percent_of_one_core": r(machine_busy, 1),
        "machine_cores": super::procfs::cores(),
        "alerts": {
            "in_window": latencies.len(),
            "stored_total": d.alerts.len(),
            "latency_ms": {
                "p50": percentile(&latencies, 50.0),
                "p99": percentile(&latencies, 99.0),
                "max": percentile(&latencies, 100.0),
            },
        },
        "api": api,
        "drops_in_window": {
            "frames_dropped_total": frames_dropped,
            "analysis_dropped_total": analysis_dropped,
        },
        "delivery": {
            "receiver": d.receiver,
            "lost": d.missing.len(),
            "lost_ids": d.missing.iter().take(20).collect::<Vec<_>>(),
            "duplicated": d.receiver.duplicates,
            "drain_s": d.drain_s.map(|x| r(x, 1)),
            "failed_attempts_in_window": deliveries_failed,
            "alerts_during_outage": d.alerts_during_outage,
            "outbox_pending_at_window_end": total("qly_outbox", &[("sink", "case"), ("state", "pending")]),
        },
        "script": d.applied,
        "notes": d.notes,
        "samples": d.samples,
    });

    let mut criteria = Vec::new();
    let api_crit = || {
        crit(
            "api_p99",
            api_p99.is_some_and(|p| p < API_P99_MS) && all_fail == 0,
            api_p99.map(|x| r(x, 1)),
            API_P99_MS,
            format!(
                "GET /api/health/summary and /api/cameras once a second: p99 {} ms over {} calls, {all_fail} failed (bound < {API_P99_MS} ms)",
                api_p99.map_or("—".into(), |x| format!("{x:.0}")),
                all_ms.len() + all_fail
            ),
        )
    };
    match s.kind {
        Kind::Scale => {
            let online = online_mean.unwrap_or(0.0);
            criteria.push(crit(
                "online",
                online >= ONLINE_GOAL,
                r(online, 4),
                ONLINE_GOAL,
                format!(
                    "mean online rate {:.2} % over the window (min {:.2} %)",
                    online * 100.0,
                    online_min.unwrap_or(0.0) * 100.0
                ),
            ));
            // The window's edges make `w / n` up to one interval in n too long: 5 % allowed.
            let bound = VQD_INTERVAL_GOAL_S * 1.05;
            criteria.push(crit(
                "vqd_interval",
                interval_max <= bound,
                r(interval_max, 2),
                bound,
                format!(
                    "every camera's pictures checked at least every {VQD_INTERVAL_GOAL_S} s (window \
                     edges: 5 % allowed): mean interval per camera over the window p50 {} s, p99 {} s, \
                     max {interval_max:.2} s",
                    percentile(&intervals, 50.0).map_or("—".into(), |x| format!("{x:.1}")),
                    percentile(&intervals, 99.0).map_or("—".into(), |x| format!("{x:.1}")),
                ),
            ));
            if !d.bursts.is_empty() {
                criteria.push(crit(
                    "burst_delay_p95",
                    delay_p95.is_some_and(|x| x <= BURST_DELAY_GOAL_S) && bursts_missed == 0,
                    delay_p95.map(|x| r(x, 2)),
                    BURST_DELAY_GOAL_S,
                    format!(
                        "{} scripted bursts in the window, {bursts_missed} not analysed: from onset to the \
                         detector's first look p50 {} s, p95 {} s",
                        d.bursts.len(),
                        percentile(&delays, 50.0).map_or("—".into(), |x| format!("{x:.1}")),
                        delay_p95.map_or("—".into(), |x| format!("{x:.1}")),
                    ),
                ));
            }
            // Without quiet scenes every camera is busy, and every keyframe at its rate is decoded.
            if s.quiet_share == 0.0 {
                let share = decoded_fps / decode_target.max(1e-9);
                criteria.push(crit(
                    "decode_keeps_up",
                    share >= DECODE_GOAL,
                    r(share, 3),
                    DECODE_GOAL,
                    format!(
                        "decoded {decoded_fps:.1} of {decode_target:.1} frames/s ({:.0} %)",
                        share * 100.0
                    ),
                ));
            }
            criteria.push(api_crit());
        }
        Kind::Soak => soak_criteria(s, d, w, &win, &mut criteria, &mut out),
        Kind::Overload => {
            let factor = capacity_fps.map_or(0.0, |c| demand_fps / c);
            criteria.push(crit(
                "overload_factor",
                factor >= OVERLOAD_FACTOR,
                r(factor, 2),
                OVERLOAD_FACTOR,
                format!(
                    "configured analysis demand {demand_fps:.1} fps over inference capacity {:.2} fps \
                     (frames per busy second of {} inference thread(s)); offered {offered_fps:.1} fps",
                    capacity_fps.unwrap_or(0.0),
                    1
                ),
            ));
            let n = win.len();
            let head = mean(win.iter().take((n / 5).max(1)).map(|x| x.rss_mb)).unwrap_or(0.0);
            let tail =
                mean(win.iter().skip(n - (n / 5).max(1).min(n)).map(|x| x.rss_mb)).unwrap_or(0.0);
            let growth = if head > 0.0 {
                tail / head - 1.0
            } else {
                f64::NAN
            };
            let pending_max = win.iter().map(|x| x.batch_pending).fold(0.0, f64::max);
            criteria.push(crit(
                "memory_bounded",
                growth < RSS_GROWTH_OVERLOAD && pending_max <= f64::from(d.n),
                r(growth, 4),
                RSS_GROWTH_OVERLOAD,
                format!(
                    "RSS {head:.1} MB (first fifth of the window) → {tail:.1} MB (last fifth): {:+.1} % (bound {:.0} %); \
                     batcher pending ≤ {pending_max:.0} frames (bound: one per camera, {})",
                    growth * 100.0,
                    RSS_GROWTH_OVERLOAD * 100.0,
                    d.n
                ),
            ));
            criteria.push(api_crit());
            let (c, prio) = priority_criterion(d, w, s.min_fps);
            out["priorities"] = prio;
            criteria.push(c);
            criteria.push(accounting_criterion(
                d,
                &analysis_dropped,
                offered_fps,
                &mut out,
            ));
        }
    }
    let pass = criteria.iter().all(|c| c.pass);
    out["criteria"] = serde_json::to_value(&criteria).unwrap_or(Value::Null);
    out["pass"] = Value::Bool(pass);
    out
}

fn soak_criteria(
    s: &Resolved,
    d: &RunData,
    w: f64,
    win: &[&Sample],
    criteria: &mut Vec<Criterion>,
    out: &mut Value,
) {
    // Baseline: the quiet first 10 % of the window; end: the quiet last 10 % (everything restored
    // at 85 %, reconnected within seconds).
    let base: Vec<&&Sample> = win.iter().filter(|x| x.t <= 0.10 * w + 1.0).collect();
    let end: Vec<&&Sample> = win.iter().filter(|x| x.t >= 0.90 * w).collect();
    let rss0 = mean(base.iter().map(|x| x.rss_mb)).unwrap_or(f64::NAN);
    let rss1 = mean(end.iter().map(|x| x.rss_mb)).unwrap_or(f64::NAN);
    let growth = rss1 / rss0 - 1.0;
    criteria.push(crit(
        "rss_growth",
        growth < RSS_GROWTH_SOAK,
        r(growth, 4),
        RSS_GROWTH_SOAK,
        format!(
            "RSS {rss0:.1} MB (after the warm-up, first 10 % of the window) → {rss1:.1} MB (last 10 %): {:+.2} % (bound {:.0} %)",
            growth * 100.0,
            RSS_GROWTH_SOAK * 100.0
        ),
    ));
    let max = |v: &[&&Sample], f: fn(&Sample) -> u64| v.iter().map(|x| f(x)).max().unwrap_or(0);
    let (t0, t1) = (max(&base, |x| x.threads), max(&end, |x| x.threads));
    criteria.push(crit(
        "threads_flat",
        !base.is_empty() && !end.is_empty() && t1 <= t0 + THREAD_SLACK,
        t1,
        t0 + THREAD_SLACK,
        format!("threads: at most {t0} at the start, {t1} at the end (slack {THREAD_SLACK} for tokio's blocking pool)"),
    ));
    let fd_slack = 4 + u64::from(d.n) / 100;
    let (f0, f1) = (max(&base, |x| x.fds), max(&end, |x| x.fds));
    criteria.push(crit(
        "fds_flat",
        !base.is_empty() && !end.is_empty() && f1 <= f0 + fd_slack,
        f1,
        f0 + fd_slack,
        format!("open descriptors: at most {f0} at the start, {f1} at the end (slack {fd_slack})"),
    ));
    let lost = d.missing.len();
    let dup = d.receiver.duplicates;
    criteria.push(crit(
        "alerts_delivered_once",
        lost == 0 && dup == 0 && !d.alerts.is_empty(),
        json!({"alerts": d.alerts.len(), "lost": lost, "duplicated": dup}),
        json!({"lost": 0, "duplicated": 0}),
        format!(
            "{} alerts stored, {} distinct keys accepted by the case receiver, {lost} never delivered, {dup} delivered twice{}",
            d.alerts.len(),
            d.receiver.unique,
            d.drain_s
                .map_or(String::new(), |x| format!("; all delivered {x:.0} s after the window")),
        ),
    ));
    let refused = d.receiver.refused_while_down + d.receiver.connections_closed_while_down;
    criteria.push(crit(
        "case_outage_exercised",
        refused > 0 && s.case_down_s > 0.0,
        refused,
        json!("> 0"),
        format!(
            "the case system was down {:.0} s; {} alerts raised meanwhile; {refused} delivery attempts refused or cut",
            s.case_down_s, d.alerts_during_outage
        ),
    ));
    // The ledger against the script.
    let truth = plan::expected_offline(&d.applied, w);
    let Some(rows) = &d.ledger else {
        criteria.push(crit(
            "ledger_matches_script",
            false,
            Value::Null,
            LEDGER_TOLERANCE,
            "no availability rows".into(),
        ));
        return;
    };
    let by_id: BTreeMap<&str, &Value> = rows
        .iter()
        .filter_map(|r| Some((r["key"].as_str()?, r)))
        .collect();
    let (mut sched, mut online, mut truth_off) = (0.0, 0.0, 0.0);
    let mut worst = (String::new(), 0.0f64, 0.0f64, 0.0f64);
    let mut per_camera = Vec::new();
    let mut missing = 0;
    for c in &d.cams {
        let Some(row) = by_id.get(c.id.as_str()) else {
            missing += 1;
            continue;
        };
        let sc = row["scheduled_s"].as_f64().unwrap_or(0.0);
        let on = row["online_s"].as_f64().unwrap_or(0.0);
        let t = truth.get(&c.number).copied().unwrap_or(0.0);
        sched += sc;
        online += on;
        truth_off += t;
        let err = ((sc - on) - t).abs() / w;
        if truth.contains_key(&c.number) || err > LEDGER_TOLERANCE / 2.0 {
            per_camera.push(json!({"camera": c.id, "offline_s": r(sc - on, 2),
                                   "script_offline_s": r(t, 2), "error_share": r(err, 4)}));
        }
        if err >= worst.1 {
            worst = (c.id.clone(), err, sc - on, t);
        }
    }
    let measured = online / sched.max(1e-9);
    let expected = 1.0 - truth_off / sched.max(1e-9);
    let fleet_err = (measured - expected).abs();
    out["ledger"] = json!({
        "window_s": r(w, 1),
        "restore_lag_s": plan::RESTORE_LAG_S,
        "fleet_online_rate": r(measured, 5),
        "script_online_rate": r(expected, 5),
        "per_camera": per_camera,
        "cameras_without_row": missing,
    });
    criteria.push(crit(
        "ledger_online_rate",
        missing == 0 && fleet_err <= LEDGER_TOLERANCE,
        r(fleet_err, 5),
        LEDGER_TOLERANCE,
        format!(
            "ledger online rate {:.3} % vs the script's {:.3} % over the window (difference {:.3} points; bound 2)",
            measured * 100.0,
            expected * 100.0,
            fleet_err * 100.0
        ),
    ));
    criteria.push(crit(
        "ledger_per_camera",
        missing == 0 && worst.1 <= LEDGER_TOLERANCE,
        r(worst.1, 4),
        LEDGER_TOLERANCE,
        format!(
            "worst camera {}: offline {:.1} s in the ledger vs {:.1} s by the script ({:.2} % of the window; bound 2 %); {missing} cameras without a row",
            worst.0,
            worst.2,
            worst.3,
            worst.1 * 100.0
        ),
    ));
}

/// Inferred rate per priority from the service's per-camera counters (`qly_camera_batched_total`,
/// `qly_camera_analysis_dropped_total`) over the window: the share of the configured rate each
/// priority kept. Rates must not rise from priority 1 down to 5, priority 1 must clearly keep more
/// than 5, and while the floors fit beside priority 1 no level may fall below half its floor.
fn priority_criterion(d: &RunData, w: f64, min_fps: f64) -> (Criterion, Value) {
    let delta = |name: &str, filter: &[(&str, &str)]| {
        let at = |m: &Option<super::api::Metrics>| m.as_ref().map_or(0.0, |m| m.sum(name, filter));
        (at(&d.w1.metrics) - at(&d.w0.metrics)).max(0.0)
    };
    #[derive(Default)]
    struct Level {
        cams: usize,
        configured: f64,
        floors: f64,
        offered: f64,
        inferred: f64,
        dropped: BTreeMap<&'static str, f64>,
    }
    let mut levels: BTreeMap<u8, Level> = BTreeMap::new();
    for c in &d.cams {
        let offered = d.analysed1.get(&c.id).copied().unwrap_or(0) as f64
            - d.analysed0.get(&c.id).copied().unwrap_or(0) as f64;
        let e = levels.entry(c.priority).or_default();
        e.cams += 1;
        e.configured += c.analysis_fps;
        e.floors += c.analysis_fps.min(min_fps);
        e.offered += offered.max(0.0);
        e.inferred += delta("qly_camera_batched_total", &[("camera", c.id.as_str())]);
        for reason in ["rate", "budget", "superseded"] {
            *e.dropped.entry(reason).or_default() += delta(
                "qly_camera_analysis_dropped_total",
                &[("camera", c.id.as_str()), ("reason", reason)],
            );
        }
    }
    let inferred_total: f64 = levels.values().map(|l| l.inferred).sum::<f64>() / w;
    // Floors fit when priority 1's rate and every other level's floors are within what was inferred.
    let needed: f64 = levels
        .iter()
        .map(|(p, l)| if *p <= 1 { l.configured } else { l.floors })
        .sum();
    let floors_fit = needed <= inferred_total;
    let mut rows = Vec::new();
    let mut shares = Vec::new();
    let mut starved = Vec::new();
    for (p, l) in &levels {
        let share = l.inferred / w / l.configured.max(1e-9);
        shares.push((*p, share));
        let per_camera = l.inferred / w / l.cams as f64;
        let floor = l.floors / l.cams as f64;
        if per_camera < 0.5 * floor {
            starved.push(format!("p{p} {per_camera:.3} fps per camera"));
        }
        rows.push(json!({
            "priority": p, "cameras": l.cams, "configured_fps": r(l.configured, 2),
            "offered_fps": r(l.offered / w, 2), "dropped": l.dropped,
            "inferred_fps": r(l.inferred / w, 3),
            "inferred_fps_per_camera": r(per_camera, 3),
            "share_of_configured": r(share, 3),
        }));
    }
    // Each level keeps no more than the one above it (small slack for counting noise), and the
    // top level clearly more than the bottom one.
    let monotone = shares
        .windows(2)
        .all(|x| x[1].1 <= x[0].1 + (0.1 * x[0].1).max(0.02));
    let separated = match (shares.first(), shares.last()) {
        (Some(hi), Some(lo)) => hi.1 >= 2.0 * lo.1 && hi.1 - lo.1 >= 0.05,
        _ => false,
    };
    let counted =
        d.w1.metrics
            .as_ref()
            .is_some_and(|m| m.has("qly_camera_batched_total"));
    let text: Vec<String> = shares
        .iter()
        .map(|(p, s)| format!("p{p} {:.1} %", s * 100.0))
        .collect();
    (
        crit(
            "rates_fall_by_priority",
            counted
                && monotone
                && separated
                && levels.len() >= 2
                && (starved.is_empty() || !floors_fit),
            json!(
                shares
                    .iter()
                    .map(|(p, s)| json!({"priority": p, "share": r(*s, 3)}))
                    .collect::<Vec<_>>()
            ),
            json!(
                "non-increasing from 1 to 5 (slack 10 %), priority 1 ≥ 2× and ≥ 0.05 above 5; \
                 no level under half its floor while priority 1 and the floors fit"
            ),
            format!(
                "share of the configured rate each priority was inferred at: {}; {}{}",
                text.join(", "),
                if floors_fit {
                    format!(
                        "the floors fit ({needed:.2} fps needed of {inferred_total:.2} inferred)"
                    )
                } else {
                    format!(
                        "the floors do not fit ({needed:.2} fps needed of {inferred_total:.2} inferred), \
                         so the lowest priorities may lose them"
                    )
                },
                if starved.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; below half the budget floor ({min_fps} fps): {}",
                        starved.join(", ")
                    )
                }
            ),
        ),
        Value::Array(rows),
    )
}

/// Every frame offered to analysis is inferred, dropped with a reason, or still waiting.
fn accounting_criterion(
    d: &RunData,
    analysis_dropped: &BTreeMap<String, f64>,
    offered_fps: f64,
    out: &mut Value,
) -> Criterion {
    let total = |name: &str, filter: &[(&str, &str)]| {
        d.w1.metrics.as_ref().map_or(0.0, |m| m.sum(name, filter))
    };
    let offered = total("qly_frames_analysed_total", &[])
        - total(
            "qly_frames_dropped_total",
            &[("reason", "analysis_queue_full")],
        );
    let inferred =
        total("qly_inference_frames_total", &[]) + total("qly_inference_failed_total", &[]);
    let dropped = total("qly_analysis_dropped_total", &[]);
    let pending = total("qly_batch_pending", &[]);
    let gap = offered - inferred - dropped - pending;
    // In flight: a batch being inferred, one in the channel, the hand-over queue (about a second
    // of frames), and counters read a moment apart.
    let slack = 32.0 + offered_fps;
    let budget = analysis_dropped.get("budget").copied().unwrap_or(0.0);
    out["accounting"] = json!({
        "offered_since_start": offered, "inferred_or_failed": inferred, "dropped_by_reason_total": dropped,
        "pending": pending, "unaccounted": gap, "slack": r(slack, 1),
    });
    crit(
        "drops_counted_by_reason",
        budget > 0.0 && gap.abs() <= slack,
        gap,
        r(slack, 1),
        format!(
            "since start: {offered:.0} frames offered = {inferred:.0} inferred + {dropped:.0} dropped \
             (in the window: {}) + {pending:.0} waiting, {gap:+.0} unaccounted (in flight ≤ {slack:.0})",
            analysis_dropped
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn f(v: &Value, d: usize) -> String {
    match v.as_f64() {
        // + 0.0 turns an empty sum's -0 into 0.
        Some(x) => format!("{:.d$}", x + 0.0),
        None => "—".into(),
    }
}

fn drops_text(row: &Value) -> String {
    let mut parts = Vec::new();
    for fam in ["frames_dropped_total", "analysis_dropped_total"] {
        if let Some(m) = row["drops_in_window"][fam].as_object() {
            for (k, v) in m {
                let n = v.as_f64().unwrap_or(0.0);
                if n > 0.0 {
                    parts.push(format!("{k} {n:.0}"));
                }
            }
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The Markdown of a whole report.
pub fn markdown(rep: &Report) -> String {
    let s = &rep.settings;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Scenario: {} — {}\n",
        rep.scenario.as_str(),
        if rep.pass { "PASS" } else { "FAIL" }
    );
    let m = &rep.machine;
    let _ = writeln!(
        md,
        "Machine: {} × {} ({} MB RAM, kernel {}{}), load average {} at the start; camsim, the service and the runner \
         share it. Command: `{}`.\n",
        m.cores,
        m.cpu_model,
        m.mem_total_mb,
        m.kernel,
        m.gpu
            .as_deref()
            .map_or(String::new(), |g| format!(", GPU {g}")),
        m.loadavg_at_start.map_or("—".into(), |l| format!("{l:.2}")),
        rep.command
    );
    let _ = writeln!(
        md,
        "Settings: window {:.0} s after a {:.0} s warm-up; {}; inference on the CPU, 1 thread × {} intra-op, budget \
         floor {} fps; reconnect backoff 0.5 s → {} s; grace 5 s; deliveries retried 0.5 s → 10 s.\n",
        s.duration_s,
        s.warmup_s,
        if rep.scenario == Kind::Overload {
            format!(
                "every camera {} at {} fps, priorities 1–5 at about 5/10/20/30/35 % of the cameras, \
                 rules on the priority-1 cameras (at most {})",
                if s.fleet.keyframe_only {
                    "keyframe-only"
                } else {
                    "decoding every frame"
                },
                s.fleet.analysis_fps,
                s.fleet.alert_cameras,
            )
        } else {
            format!(
                "cameras with rules {} at {} fps (every frame decoded, priority 1); the others {} at {} fps, \
                 priority 3",
                s.fleet.alert_cameras,
                s.fleet.alert_fps,
                if s.fleet.keyframe_only {
                    "keyframe-only"
                } else {
                    "decoding every frame"
                },
                s.fleet.analysis_fps,
            )
        },
        s.intra_op_threads,
        s.min_fps,
        plan::BACKOFF_MAX_S,
    );
    let _ = writeln!(
        md,
        "| N | online % mean (min) | service CPU % of one core | RSS MB start → end | threads | fds | decoded fps (target) | \
         inferred fps (batch, busy %) | alert latency p50 / p99 ms (alerts) | API p99 ms summary / cameras | dropped in window | camsim CPU % | machine busy % of {} | verdict |",
        100 * m.cores
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"
    );
    for row in &rep.runs {
        if let Some(e) = row["error"].as_str() {
            let _ = writeln!(
                md,
                "| {} | — | — | — | — | — | — | — | — | — | — | — | — | broke: {} |",
                row["cameras"],
                e.lines().next().unwrap_or("")
            );
            continue;
        }
        let fails: Vec<String> = row["criteria"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["pass"] == false)
            .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {} | {} → {} | {} | {} | {} ({}) | {} ({}, {} %) | {} / {} ({}) | {} / {} | {} | {} | {} | {} |",
            row["cameras"],
            f(
                &(row["online_rate"]["mean"]
                    .as_f64()
                    .map(|x| x * 100.0)
                    .into()),
                2
            ),
            f(
                &(row["online_rate"]["min"].as_f64().map(|x| x * 100.0).into()),
                1
            ),
            f(&row["service"]["cpu_percent_of_one_core"], 0),
            f(&row["service"]["rss_mb"]["start"], 0),
            f(&row["service"]["rss_mb"]["end"], 0),
            row["service"]["threads"]["end"],
            row["service"]["fds"]["end"],
            f(&row["decode"]["achieved_fps"], 1),
            f(&row["decode"]["target_fps"], 1),
            f(&row["inference"]["fps"], 2),
            f(&row["inference"]["batch_mean"], 2),
            f(
                &(row["inference"]["busy_share"]
                    .as_f64()
                    .map(|x| x * 100.0)
                    .into()),
                0
            ),
            f(&row["alerts"]["latency_ms"]["p50"], 0),
            f(&row["alerts"]["latency_ms"]["p99"], 0),
            row["alerts"]["in_window"],
            f(&row["api"]["/api/health/summary"]["p99_ms"], 0),
            f(&row["api"]["/api/cameras"]["p99_ms"], 0),
            drops_text(row),
            f(&row["camsim_cpu_percent_of_one_core"], 0),
            f(&row["machine_busy_percent_of_one_core"], 0),
            if fails.is_empty() {
                "holds".to_owned()
            } else {
                format!("fails: {}", fails.join(", "))
            },
        );
    }
    if let Some(b) = &rep.breaks {
        let _ = writeln!(
            md,
            "\nFirst size that did not hold: {} — {}.",
            b["cameras"],
            b["why"]
                .as_array()
                .map(|w| w
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        );
    }
    for row in &rep.runs {
        let Some(criteria) = row["criteria"].as_array() else {
            continue;
        };
        let _ = writeln!(md, "\n## N = {}: criteria\n", row["cameras"]);
        let _ = writeln!(
            md,
            "| criterion | pass | value | bound | detail |\n|---|---|---:|---:|---|"
        );
        for c in criteria {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                c["name"].as_str().unwrap_or("?"),
                if c["pass"] == true {
                    "✅ pass"
                } else {
                    "❌ FAIL"
                },
                compact(&c["value"]),
                compact(&c["limit"]),
                c["detail"].as_str().unwrap_or("")
            );
        }
        if let Some(stages) = row["cpu_by_stage"].as_object() {
            let mut v: Vec<(&String, f64, &Value)> = stages
                .iter()
                .map(|(k, x)| {
                    (
                        k,
                        x["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0),
                        &x["threads"],
                    )
                })
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            let text: Vec<String> = v
                .iter()
                .filter(|x| x.1 >= 0.5)
                .map(|(k, c, n)| format!("`{k}`×{n} {c:.0} %"))
                .collect();
            let c = &row["cost_per_frame"];
            let _ = writeln!(
                md,
                "
Service CPU by stage (% of one core): {}. Per frame: decode {} ms, VQD {} ms, inference {} ms of CPU; ingest + API {} % of one core per camera.",
                text.join(", "),
                f(&c["decode_cpu_ms"], 2),
                f(&c["vqd_cpu_ms"], 2),
                f(&c["inference_cpu_ms"], 0),
                f(&c["ingest_api_cpu_percent_per_camera"], 4),
            );
        }
        if let Some(p) = row["priorities"].as_array() {
            let _ = writeln!(
                md,
                "\nInference by camera priority (window):\n\n| priority | cameras | configured fps | offered fps | dropped (rate / budget / superseded) | inferred fps | per camera | share of configured |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for x in p {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} / {} / {} | {} | {} | {} |",
                    x["priority"],
                    x["cameras"],
                    f(&x["configured_fps"], 1),
                    f(&x["offered_fps"], 1),
                    f(&x["dropped"]["rate"], 0),
                    f(&x["dropped"]["budget"], 0),
                    f(&x["dropped"]["superseded"], 0),
                    f(&x["inferred_fps"], 2),
                    f(&x["inferred_fps_per_camera"], 3),
                    f(&x["share_of_configured"], 3)
                );
            }
        }
        if let Some(samples) = row["samples"].as_array() {
            let inside: Vec<&Value> = samples
                .iter()
                .filter(|x| x["t"].as_f64().is_some_and(|t| t >= 0.0))
                .collect();
            let step = (inside.len() / 12).max(1);
            let _ = writeln!(
                md,
                "\nOver time (one sample in {} of the window, and the last):\n\n| t s | online % | offline | service CPU % | RSS MB | threads | fds | decoded fps | inferred fps | batcher pending | case outbox pending |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                step
            );
            for x in inside.iter().step_by(step).chain(
                inside
                    .last()
                    .filter(|_| !(inside.len() - 1).is_multiple_of(step)),
            ) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    f(&x["t"], 0),
                    f(&(x["online_rate"].as_f64().map(|v| v * 100.0).into()), 2),
                    x["offline"],
                    f(&x["cpu_percent"], 0),
                    f(&x["rss_mb"], 1),
                    x["threads"],
                    x["fds"],
                    f(&x["decoded_fps"], 1),
                    f(&x["inferred_fps"], 2),
                    f(&x["batch_pending"], 0),
                    f(&x["outbox_pending"], 0)
                );
            }
        }
    }
    md
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
