//! `GET /metrics`: Prometheus text exposition, rendered from the fleet's counters on each scrape.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::camera::{REASONS, lock};
use crate::health::{self, CameraState};
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
    let mut drops = st.decode_drops();
    for e in &cameras {
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
        drops.gate += c.skipped_by_gate.load(Ordering::Relaxed);
        statuses.push(status);
    }
    let summary = health::summarize(statuses.iter());
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
    let _ = writeln!(out, "# TYPE {} counter", m::FRAMES_DROPPED);
    for (reason, n) in [
        ("gate", drops.gate),
        ("decode_queue_full", drops.queue_full),
        ("decode_error", drops.decode_error),
        (
            "analysis_queue_full",
            st.analysis_dropped.load(Ordering::Relaxed),
        ),
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
    if let Some(r) = &st.rules_stats {
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
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// A family with one unlabelled sample.
fn sample(out: &mut String, name: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
}
