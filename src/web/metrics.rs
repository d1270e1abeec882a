//! `GET /metrics`: Prometheus text exposition, rendered from the fleet's counters on each scrape.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{AppState, ModelStats};
use crate::camera::REASONS;
use crate::health::{self, CameraState};
use crate::infer::{BATCH_BOUNDS, LATENCY_BOUNDS_MS};
use crate::sync::lock;
use crate::telemetry::metrics as m;

const STATES: [CameraState; 6] = [
    CameraState::Connecting,
    CameraState::Online,
    CameraState::Degraded,
    CameraState::Offline,
    CameraState::Disabled,
    CameraState::Maintenance,
];

/// Label values are camera ids (validated `[A-Za-z0-9_-]`) or fixed names, so no escaping is needed.
pub async fn render(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let cameras = st.fleet.list();
    let mut statuses = Vec::with_capacity(cameras.len());
    let mut out = String::with_capacity(256 * cameras.len() + 1024);
    // One body per family: the exposition format wants a family's samples together.
    let (mut f_in, mut f_an, mut f_fps_in, mut f_fps_an, mut f_rc) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let decode = (st.decode_drops)();
    // Frames the keyframe / analysis-rate gate did not let through, over every camera.
    let mut gate = 0;
    let (mut idle, mut vqd_only) = (0, 0);
    let now = std::time::Instant::now();
    let mut by_activity = [0usize; crate::activity::State::ALL.len()];
    for e in &cameras {
        let a = lock(&e.activity).state(now);
        if let Some(i) = crate::activity::State::ALL.iter().position(|s| *s == a) {
            by_activity[i] += 1;
        }
        let (status, fps_in, fps_an) = {
            let t = lock(&e.tracker);
            (t.status(), t.fps_in(), t.fps_analysed())
        };
        let id = &e.id;
        let c = &e.counters;
        let _ = writeln!(
            f_in,
            "{}{{camera=\"{id}\"}} {}",
            m::FRAMES_IN,
            c.frames_in.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            f_an,
            "{}{{camera=\"{id}\"}} {}",
            m::FRAMES_ANALYSED,
            c.analysed.load(Ordering::Relaxed)
        );
        let _ = writeln!(f_fps_in, "{}{{camera=\"{id}\"}} {fps_in:.3}", m::FPS_IN);
        let _ = writeln!(
            f_fps_an,
            "{}{{camera=\"{id}\"}} {fps_an:.3}",
            m::FPS_ANALYSED
        );
        for (r, n) in REASONS.iter().zip(&c.reconnects) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    f_rc,
                    "{}{{camera=\"{id}\",reason=\"{}\"}} {n}",
                    m::RECONNECTS,
                    r.as_str()
                );
            }
        }
        gate += c.skipped_by_gate.load(Ordering::Relaxed);
        idle += c.skipped_idle.load(Ordering::Relaxed);
        vqd_only += c.vqd_only.load(Ordering::Relaxed);
        statuses.push(status);
    }
    let summary = health::summarize(statuses.iter());
    fleet_families(&mut out, &st, &statuses).await;
    let _ = writeln!(out, "# TYPE {} gauge", m::CAMERAS_BY_STATE);
    for s in STATES {
        let n = statuses.iter().filter(|x| x.state == s).count();
        let _ = writeln!(
            out,
            "{}{{state=\"{}\"}} {n}",
            m::CAMERAS_BY_STATE,
            s.as_str()
        );
    }
    sample(
        &mut out,
        m::ONLINE_RATE,
        "gauge",
        summary.online_rate.unwrap_or(f64::NAN),
    );
    sample(
        &mut out,
        m::INTACT_RATE,
        "gauge",
        summary.intact_rate.unwrap_or(f64::NAN),
    );
    let _ = writeln!(out, "# TYPE {} gauge", m::CAMERAS_BY_ACTIVITY);
    for (s, n) in crate::activity::State::ALL.iter().zip(by_activity) {
        let _ = writeln!(
            out,
            "{}{{state=\"{}\"}} {n}",
            m::CAMERAS_BY_ACTIVITY,
            s.as_str()
        );
    }
    let _ = writeln!(out, "# TYPE {} counter", m::FRAMES_DROPPED);
    for (reason, n) in [
        ("gate", gate),
        ("idle", idle),
        ("vqd_only", vqd_only),
        ("decode_queue_full", decode.queue_full),
        ("decode_error", decode.decode_error),
        (
            "analysis_queue_full",
            st.analysis_dropped.load(Ordering::Relaxed),
        ),
        ("store_blocked", st.store_blocked.load(Ordering::Relaxed)),
    ] {
        let _ = writeln!(out, "{}{{reason=\"{reason}\"}} {n}", m::FRAMES_DROPPED);
    }
    for (name, kind, body) in [
        (m::FRAMES_IN, "counter", f_in),
        (m::FRAMES_ANALYSED, "counter", f_an),
        (m::FPS_IN, "gauge", f_fps_in),
        (m::FPS_ANALYSED, "gauge", f_fps_an),
        (m::RECONNECTS, "counter", f_rc),
    ] {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        out.push_str(&body);
    }
    clip_families(&mut out, st.clips.as_deref());
    cluster_families(&mut out, st.cluster.as_ref());
    gb_families(&mut out, st.gb28181.as_ref());
    let store_status = st.delivery.status.view();
    sample(
        &mut out,
        m::ALERT_STORE_FAILING,
        "gauge",
        u8::from(store_status.state == "failing"),
    );
    sample(
        &mut out,
        m::ALERT_STORE_FAILURES,
        "counter",
        store_status.failures_total,
    );
    sample(&mut out, m::ALERTS_WAITING, "gauge", store_status.waiting);
    let _ = writeln!(out, "# TYPE {} gauge", m::QUEUE_CAPACITY);
    for q in st.queues.iter() {
        let _ = writeln!(
            out,
            "{}{{queue=\"{}\",from=\"{}\",to=\"{}\",policy=\"{}\"}} {}",
            m::QUEUE_CAPACITY,
            q.name,
            q.from,
            q.to,
            q.policy.as_str(),
            q.capacity
        );
    }
    let _ = writeln!(out, "# TYPE {} counter", m::QUEUE_DROPPED);
    for q in st.queues.iter() {
        for (reason, n) in (q.dropped)() {
            let _ = writeln!(
                out,
                "{}{{queue=\"{}\",policy=\"{}\",reason=\"{reason}\"}} {n}",
                m::QUEUE_DROPPED,
                q.name,
                q.policy.as_str()
            );
        }
    }
    render_pipeline(&mut out, &st);
    let store = st.delivery.store.clone();
    match tokio::task::spawn_blocking(move || store.metric_counts()).await {
        Ok(Ok(counts)) => render_store(&mut out, &counts),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: alert store counts unavailable"),
        Err(e) => tracing::warn!(error = %e, "metrics: alert store counts unavailable"),
    }
    if let Some(r) = &st.rules_stats {
        sample(
            &mut out,
            m::RULES_REPLACED,
            "counter",
            r.replaced.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            m::ANALYSED_FRAMES,
            "counter",
            r.frames.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            m::ALERT_CANDIDATES,
            "counter",
            r.candidates.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            m::ALERTS_RESUMED,
            "counter",
            r.resumed.load(Ordering::Relaxed),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The clip stage's buffers and clips (zeros when clips are off).
fn clip_families(out: &mut String, clips: Option<&crate::clip::Recorder>) {
    let n = |f: fn(&crate::clip::ClipStats) -> &std::sync::atomic::AtomicU64| {
        clips.map_or(0, |c| f(&c.stats).load(Ordering::Relaxed))
    };
    sample(
        out,
        m::CLIP_CAMERAS,
        "gauge",
        clips.map_or(0, |c| c.buffered_cameras()),
    );
    sample(out, m::CLIP_BUFFER_BYTES, "gauge", n(|s| &s.held));
    sample(
        out,
        m::CLIP_BUFFER_BUDGET,
        "gauge",
        clips.map_or(0, |c| c.config().memory_budget),
    );
    let _ = writeln!(out, "# TYPE {} counter", m::CLIPS);
    for (result, v) in [
        ("started", n(|s| &s.started)),
        ("joined", n(|s| &s.joined)),
        ("ready", n(|s| &s.ready)),
        ("failed", n(|s| &s.failed)),
        ("expired", n(|s| &s.expired)),
    ] {
        let _ = writeln!(out, "{}{{result=\"{result}\"}} {v}", m::CLIPS);
    }
    let _ = writeln!(out, "# TYPE {} counter", m::CLIP_DROPPED);
    for (reason, v) in [
        ("camera_budget", n(|s| &s.over_camera_budget)),
        ("pressure", n(|s| &s.pressure)),
    ] {
        let _ = writeln!(out, "{}{{reason=\"{reason}\"}} {v}", m::CLIP_DROPPED);
    }
}

/// GB/T 28181 devices and requests (zeros without a `[gb28181]` section).
fn gb_families(out: &mut String, gb: Option<&crate::gb28181::Gb28181>) {
    let summary = gb.map(|g| g.summary());
    let _ = writeln!(out, "# TYPE {} gauge", m::GB_DEVICES);
    let online = summary.map_or(0, |s| s.online);
    let offline = summary.map_or(0, |s| s.devices - s.online);
    for (state, v) in [("online", online), ("offline", offline)] {
        let _ = writeln!(out, "{}{{state=\"{state}\"}} {v}", m::GB_DEVICES);
    }
    let _ = writeln!(out, "# TYPE {} counter", m::GB_REQUESTS);
    let counters = gb.map(|g| g.counters()).unwrap_or_else(|| {
        crate::gb28181::COUNTER_KINDS
            .iter()
            .map(|k| (*k, 0))
            .collect()
    });
    for (kind, v) in counters {
        let _ = writeln!(out, "{}{{kind=\"{kind}\"}} {v}", m::GB_REQUESTS);
    }
}

/// How long the node exporting the fleet gauges keeps that job without a scrape (then another
/// node's next scrape takes it).
const FLEET_GAUGES_LEASE_MS: i64 = 60_000;

/// The whole fleet's cameras by state and its rates. One node: its own cameras. A cluster: every
/// node's (as they last wrote them), from the node that holds the `fleet_gauges` job only; the
/// others export none (a sum over nodes would count each camera once per node).
async fn fleet_families(out: &mut String, st: &AppState, local: &[health::Status]) {
    let fleet: Vec<health::Status> = match &st.cluster {
        None => local.to_vec(),
        Some(cluster) => {
            let node = cluster.node.clone();
            let now = crate::time::unix_ms(std::time::SystemTime::now());
            let held = st
                .delivery
                .store
                .blocking(move |s| s.hold_job("fleet_gauges", &node, now, FLEET_GAUGES_LEASE_MS))
                .await;
            match held {
                Ok(true) => match super::cameras::every_view(st).await {
                    Ok(views) => views.into_iter().map(|(_, s)| s).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e.message(), "metrics: the fleet's cameras cannot be read; no fleet gauges this scrape");
                        return;
                    }
                },
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: the fleet gauges job cannot be held; none this scrape");
                    return;
                }
            }
        }
    };
    let summary = health::summarize(fleet.iter());
    let _ = writeln!(out, "# TYPE {} gauge", m::FLEET_CAMERAS);
    for s in STATES {
        let n = fleet.iter().filter(|x| x.state == s).count();
        let _ = writeln!(out, "{}{{state=\"{}\"}} {n}", m::FLEET_CAMERAS, s.as_str());
    }
    sample(
        out,
        m::FLEET_ONLINE_RATE,
        "gauge",
        summary.online_rate.unwrap_or(f64::NAN),
    );
    sample(
        out,
        m::FLEET_INTACT_RATE,
        "gauge",
        summary.intact_rate.unwrap_or(f64::NAN),
    );
}

/// The cluster stage's leases and the fence's refusals (zeros on a single node).
fn cluster_families(out: &mut String, cluster: Option<&super::ClusterView>) {
    let n = |f: fn(&crate::cluster::ClusterStats) -> &std::sync::atomic::AtomicU64| {
        cluster.map_or(0, |c| f(&c.stats).load(Ordering::Relaxed))
    };
    sample(out, m::CLUSTER_NODES, "gauge", n(|s| &s.nodes_live));
    sample(out, m::CLUSTER_HELD, "gauge", n(|s| &s.held));
    let _ = writeln!(out, "# TYPE {} counter", m::CLUSTER_LEASE_CHANGES);
    for (kind, v) in [
        ("taken", n(|s| &s.taken)),
        ("given", n(|s| &s.given)),
        ("lost", n(|s| &s.lost)),
    ] {
        let _ = writeln!(out, "{}{{kind=\"{kind}\"}} {v}", m::CLUSTER_LEASE_CHANGES);
    }
    sample(
        out,
        m::CLUSTER_SELF_FENCED,
        "counter",
        n(|s| &s.self_fenced),
    );
    sample(
        out,
        m::CLUSTER_FAILED_BEATS,
        "counter",
        n(|s| &s.failed_beats),
    );
    let _ = writeln!(out, "# TYPE {} counter", m::FENCED_WRITES);
    let refused = cluster.map(|c| c.fence.refused());
    for reason in [
        crate::db::lease::Refusal::NotHeld,
        crate::db::lease::Refusal::StaleEpoch,
    ] {
        let v = refused
            .iter()
            .flatten()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, v)| *v);
        let _ = writeln!(
            out,
            "{}{{reason=\"{}\"}} {v}",
            m::FENCED_WRITES,
            reason.as_str()
        );
    }
}

/// A family with one unlabelled sample.
fn sample(out: &mut String, name: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
}

/// Queue depths, batcher drops and inference histograms.
fn render_pipeline(out: &mut String, st: &AppState) {
    let _ = writeln!(out, "# TYPE {} gauge", m::DECODE_QUEUE);
    for (i, n) in (st.decode_queue)().iter().enumerate() {
        let _ = writeln!(out, "{}{{worker=\"{i}\"}} {n}", m::DECODE_QUEUE);
    }
    let models = (st.model_stats)();
    if models.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {} gauge", m::BATCH_PENDING);
    for s in &models {
        let _ = writeln!(
            out,
            "{}{{model=\"{}\"}} {}",
            m::BATCH_PENDING,
            s.model,
            s.batch.pending
        );
    }
    for (name, kind, value) in [
        (
            m::ADMISSION_CAPACITY,
            "gauge",
            (|b: &crate::batch::BudgetSnapshot| b.capacity_fps.unwrap_or(f64::NAN))
                as fn(&crate::batch::BudgetSnapshot) -> f64,
        ),
        (m::ADMISSION_DEMAND, "gauge", |b| b.demand_fps),
        (m::ADMISSION_ADMITTED, "gauge", |b| b.admitted_fps),
        (m::ADMISSION_CHANGES, "counter", |b| b.changes as f64),
    ] {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in &models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", s.model, value(&s.budget));
        }
    }
    for (name, by_priority) in [
        (
            m::ADMISSION_KEEP,
            (|b: &crate::batch::BudgetSnapshot| &b.keep_by_priority)
                as fn(&crate::batch::BudgetSnapshot) -> &std::collections::BTreeMap<u8, f64>,
        ),
        (m::ADMISSION_FLOOR_KEEP, |b| &b.floor_kept_by_priority),
    ] {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in &models {
            for (p, k) in by_priority(&s.budget) {
                let _ = writeln!(out, "{name}{{model=\"{}\",priority=\"{p}\"}} {k}", s.model);
            }
        }
    }
    let _ = writeln!(out, "# TYPE {} counter", m::ANALYSIS_DROPPED);
    for s in &models {
        for (reason, n) in s.batch.dropped.by_reason() {
            let _ = writeln!(
                out,
                "{}{{model=\"{}\",reason=\"{reason}\"}} {n}",
                m::ANALYSIS_DROPPED,
                s.model
            );
        }
    }
    // Per camera: what reached the model and what did not, so a dashboard (or the scenario runner) sees
    // which cameras the budget cut.
    let _ = writeln!(out, "# TYPE {} counter", m::CAMERA_BATCHED);
    for s in &models {
        for (camera, c) in &s.batch.by_camera {
            let _ = writeln!(
                out,
                "{}{{model=\"{}\",camera=\"{}\"}} {}",
                m::CAMERA_BATCHED,
                s.model,
                label(camera),
                c.batched
            );
        }
    }
    let _ = writeln!(out, "# TYPE {} counter", m::CAMERA_ANALYSIS_DROPPED);
    for s in &models {
        for (camera, c) in &s.batch.by_camera {
            for (reason, n) in c.dropped.by_reason() {
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "{}{{model=\"{}\",camera=\"{}\",reason=\"{reason}\"}} {n}",
                        m::CAMERA_ANALYSIS_DROPPED,
                        s.model,
                        label(camera),
                    );
                }
            }
        }
    }
    for (name, read) in [
        (
            m::INFER_BATCHES,
            (|s: &ModelStats| s.infer.batches) as fn(&ModelStats) -> u64,
        ),
        (m::INFER_FRAMES, |s| s.infer.frames),
        (m::INFER_FAILED, |s| s.infer.failed),
        (m::FALL_CHECKS, |s| s.infer.fall_checks),
        (m::FALL_CONFIRMED, |s| s.infer.fall_confirmed),
    ] {
        let _ = writeln!(out, "# TYPE {name} counter");
        for s in &models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", s.model, read(s));
        }
    }
    let _ = writeln!(out, "# TYPE {} counter", m::FALL_SECONDS);
    for s in &models {
        let _ = writeln!(
            out,
            "{}{{model=\"{}\"}} {}",
            m::FALL_SECONDS,
            s.model,
            s.infer.fall_ms / 1000.0
        );
    }
    let _ = writeln!(out, "# TYPE {} histogram", m::INFER_LATENCY);
    for s in &models {
        let bounds: Vec<f64> = LATENCY_BOUNDS_MS.iter().map(|ms| ms / 1000.0).collect();
        histogram(
            out,
            m::INFER_LATENCY,
            &s.model,
            &bounds,
            &s.infer.latency_le,
            s.infer.busy_ms / 1000.0,
        );
    }
    let _ = writeln!(out, "# TYPE {} histogram", m::INFER_BATCH_SIZE);
    for s in &models {
        let sum = (s.infer.frames + s.infer.failed) as f64;
        histogram(
            out,
            m::INFER_BATCH_SIZE,
            &s.model,
            &BATCH_BOUNDS,
            &s.infer.batch_le,
            sum,
        );
    }
}

/// One labelled histogram series: cumulative buckets, +Inf, sum and count.
fn histogram(out: &mut String, name: &str, model: &str, bounds: &[f64], le: &[u64], sum: f64) {
    for (b, n) in bounds.iter().zip(le) {
        let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{b}\"}} {n}");
    }
    let count = le.last().copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {sum}");
    let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {count}");
}

/// Alerts by type and state, the outbox by sink and state, failed deliveries by sink.
fn render_store(out: &mut String, c: &crate::store::MetricCounts) {
    let _ = writeln!(out, "# TYPE {} gauge", m::ALERTS);
    for (t, state, n) in &c.alerts {
        let _ = writeln!(
            out,
            "{}{{type=\"{}\",state=\"{}\"}} {n}",
            m::ALERTS,
            label(t),
            label(state)
        );
    }
    let _ = writeln!(out, "# TYPE {} gauge", m::OUTBOX);
    let mut failures: std::collections::BTreeMap<&str, i64> = Default::default();
    for (sink, state, n, failed) in &c.outbox {
        let _ = writeln!(
            out,
            "{}{{sink=\"{}\",state=\"{}\"}} {n}",
            m::OUTBOX,
            label(sink),
            label(state)
        );
        *failures.entry(sink.as_str()).or_default() += failed;
    }
    let _ = writeln!(out, "# TYPE {} counter", m::DELIVERY_FAILURES);
    for (sink, n) in failures {
        let _ = writeln!(
            out,
            "{}{{sink=\"{}\"}} {n}",
            m::DELIVERY_FAILURES,
            label(sink)
        );
    }
}

/// Escapes a label value read from the store (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
