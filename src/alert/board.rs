//! The alert stage: the rules stage's [`Alert`] → annotated JPEG snapshot on disk → the alert,
//! enriched (id, camera name and place, snapshot or why there is none, latency), stored with its
//! outbox rows through [`crate::delivery::Delivery`] → the ZeroMQ publisher (best effort).
//!
//! In: [`Candidate`]s (bounded; the rules thread waits when full, so nothing seen is lost).
//! Out: each [`Alert`] stored with its outbox rows (the store feeds the command hall), JPEG files
//! under `<data_dir>/snapshots/`, and each alert's clip started in the clip stage.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::snapshot::{Overlay, OverlayBox, Renderer};
use crate::clock::Clock;
use crate::rules::Alert;
use crate::rules::runner::Candidate;

/// A ULID (time-ordered, 26 Crockford base-32 characters): sorts by creation time across restarts.
pub fn ulid(at: SystemTime) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        & ((1u128 << 48) - 1);
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    let mut v = (ms << 80) | random;
    let mut out = [0u8; 26];
    for c in out.iter_mut().rev() {
        *c = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the alert stage writes snapshots (alerts themselves live in the store).
pub struct AlertBoard {
    /// Where snapshots are written.
    pub snapshot_dir: PathBuf,
    /// The clip stage, which starts each alert's evidence clip (`None`: snapshots only).
    pub clips: Option<Arc<crate::clip::Recorder>>,
}

impl AlertBoard {
    /// Writes snapshots into `snapshot_dir`; `clips` starts each alert's clip.
    pub fn new(
        snapshot_dir: PathBuf,
        clips: Option<Arc<crate::clip::Recorder>>,
    ) -> Arc<AlertBoard> {
        Arc::new(AlertBoard {
            snapshot_dir,
            clips,
        })
    }
}

fn time_text(t: SystemTime) -> String {
    crate::time::format_cst(t)
}

/// Looks a camera's configuration up by id.
pub type CameraLookup = Arc<dyn Fn(&str) -> Option<crate::config::Camera> + Send + Sync>;

/// Fills in what the alert stage adds to the rules stage's alert: its `id`, the camera's place, the
/// time the frame arrived, the snapshot (or why there is none) and the latency from that arrival to
/// `now` (the stage's [`Clock`]; 0 when `now` is earlier).
fn enrich(
    alert: &mut Alert,
    id: String,
    arrival: SystemTime,
    camera: Option<&crate::config::Camera>,
    snapshot: Result<String, String>,
    now: SystemTime,
) {
    if let Some(camera) = camera {
        alert.place_at(camera);
    }
    alert.id = id;
    alert.time_ms = crate::time::unix_ms(arrival);
    alert.snapshot_error = snapshot.as_ref().err().cloned();
    alert.snapshot = snapshot.ok();
    alert.latency_ms = now
        .duration_since(arrival)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
}

/// Runs the stage on a named thread until `rx` closes. `cameras` looks a camera's configuration up;
/// `delivery` stores each alert with its outbox rows (one transaction) and feeds the command hall;
/// `clock` gives the wall time an alert's latency is measured to.
/// When the store fails the alert waits here (and the candidates behind it in `rx`, whose sender then
/// waits) until the store takes it; once `stop` is set, a store still failing after a grace period
/// gets the waiting alerts written to the log instead, so shutdown ends.
pub fn spawn(
    rx: Receiver<Candidate>,
    board: Arc<AlertBoard>,
    cameras: CameraLookup,
    delivery: Option<Arc<crate::delivery::Delivery>>,
    zmq: Option<Arc<crate::delivery::zmq_pub::ZmqPublisher>>,
    stop: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("alerts".into()).spawn(move || {
        let mut shutdown_deadline: Option<Instant> = None;
        let mut renderer = match Renderer::new(None) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "snapshot renderer unavailable; alerts will have no snapshot");
                None
            }
        };
        if let Err(e) = std::fs::create_dir_all(&board.snapshot_dir) {
            tracing::error!(dir = %board.snapshot_dir.display(), error = %e, "cannot create the snapshot directory");
        }
        for c in rx.iter() {
            let mut alert = c.alert;
            let a = &alert;
            let id = ulid(c.arrival);
            let camera = cameras(&a.camera);
            let camera_name = camera.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| a.camera.clone());
            let snapshot: Result<String, String> = match renderer.as_mut() {
                None => Err("snapshot renderer unavailable (see the log at start)".to_owned()),
                Some(r) => {
                // Tracks the detector missed on this frame would be drawn where they were, not are.
                let boxes = c
                    .tracks
                    .iter()
                    .filter(|t| t.missed == 0 || a.track_ids.contains(&t.id))
                    .map(|t| OverlayBox {
                        bbox: t.bbox,
                        label_zh: t.kind.zh().to_owned(),
                        label_en: t.kind.en().to_owned(),
                        track_id: Some(t.id),
                        score: Some(t.score),
                        highlight: a.track_ids.contains(&t.id),
                    })
                    .collect();
                let overlay = Overlay {
                    title_zh: format!("{} · {camera_name}", a.alert_type.zh()),
                    title_en: a.alert_type.en().to_owned(),
                    time_text: time_text(c.arrival),
                    zone: c.zone.clone(),
                    boxes,
                    severity: a.severity,
                    direction: None,
                };
                match r.render(&c.frame, &overlay) {
                    Ok(jpeg) => {
                        let name = format!("{id}.jpg");
                        match std::fs::write(board.snapshot_dir.join(&name), jpeg) {
                            Ok(()) => Ok(name),
                            Err(e) => {
                                tracing::error!(camera_id = %a.camera, error = %e, "snapshot not written; the alert is stored without it");
                                Err(format!("snapshot not written: {e}"))
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(camera_id = %a.camera, error = %e, "snapshot not rendered; the alert is stored without it");
                        Err(format!("snapshot not rendered: {e}"))
                    }
                }
                }
            };
            // The clip starts (or joins one recording) before the alert is stored, so the stored
            // alert already says `recording`.
            alert.clip = board
                .clips
                .as_ref()
                .and_then(|r| r.begin(&alert.camera, &id, c.arrival));
            enrich(&mut alert, id, c.arrival, camera.as_ref(), snapshot, clock.wall());
            if let Some(d) = &delivery {
                // An alert that was seen is never dropped: it waits here until the store takes it.
                store_until_stored(d, &alert, &rx, &stop, &mut shutdown_deadline, zmq.as_deref());
            }
        }
    })
}

/// How long a stopping service keeps retrying a failing store before it writes the alerts still
/// waiting to the log (the last place left for them).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Longest wait between store attempts.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Stores `alert`, retrying until the store takes it (disk full, database locked …), then publishes
/// it on ZeroMQ. The failing period is visible in [`crate::delivery::StoreStatus`] (one log line when it
/// starts and one when it ends). Gives up only when the service is stopping and the store still fails
/// after [`SHUTDOWN_GRACE`]: the alert is then logged whole at ERROR.
fn store_until_stored(
    d: &crate::delivery::Delivery,
    record: &Alert,
    queue: &Receiver<Candidate>,
    stop: &AtomicBool,
    shutdown_deadline: &mut Option<Instant>,
    zmq: Option<&crate::delivery::zmq_pub::ZmqPublisher>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match d.insert(record) {
            Ok(stored) => {
                if d.status.succeeded() {
                    tracing::info!(alert = %record.id, "alert store recovered: alerts are stored again and analysis resumes");
                }
                d.status.set_waiting(queue.len() as u64);
                tracing::info!(camera_id = %record.camera, alert = %record.id,
                    kind = record.alert_type.as_str(), severity = ?record.severity, "alert stored");
                if let (Some(z), Ok(json)) = (zmq, serde_json::to_string(&stored)) {
                    // Best effort by design: a full queue or HWM is counted, never waited on.
                    z.publish_alert(
                        record.alert_type.as_str(),
                        stored.area_code.as_deref(),
                        json,
                    );
                }
                return;
            }
            Err(e @ crate::delivery::store::StoreError::Fenced { .. }) => {
                // Not a failing store: another node holds the camera for this time and raises what
                // happens there. Counted by the fence (qly_fenced_writes_total).
                let json = serde_json::to_string(record).unwrap_or_default();
                tracing::warn!(camera_id = %record.camera, alert = %record.id, error = %e, alert_json = %json,
                    "alert not stored: this node no longer held the camera at the alert's time");
                d.status.set_waiting(queue.len() as u64);
                return;
            }
            Err(e) => {
                d.status.set_waiting(queue.len() as u64 + 1);
                let now_ms = crate::time::unix_ms(d.clock.wall());
                if d.status.failed(&e.to_string(), now_ms) {
                    tracing::error!(camera_id = %record.camera, alert = %record.id, error = %e,
                        "alert store failing: alerts wait until it takes them, and frames are not analysed meanwhile (store_blocked)");
                } else {
                    tracing::debug!(camera_id = %record.camera, alert = %record.id, error = %e, "alert store still failing");
                }
                if stop.load(Ordering::SeqCst) {
                    // Real time, not the stage's clock: the retries between checks sleep for real.
                    let deadline =
                        *shutdown_deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                    if Instant::now() >= deadline {
                        let json = serde_json::to_string(record).unwrap_or_default();
                        tracing::error!(camera_id = %record.camera, alert = %record.id, error = %e, alert_json = %json,
                            "stopping with the alert store failing: the alert is written here instead");
                        return;
                    }
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latency is measured to the stage's clock, not the machine's: with a clock an hour ahead of the
    /// machine and a frame that arrived 1,234 ms before that clock's now, the alert says 1,234 ms
    /// (the machine's clock would say 0: the arrival is in its future).
    #[test]
    fn latency_is_measured_to_the_injected_clock() {
        use crate::clock::ManualClock;
        let clock = ManualClock::default();
        clock.advance(Duration::from_secs(3600));
        let arrival = clock.wall() - Duration::from_millis(1234);
        let mut alert = Alert::raised(
            "zone-a",
            "cam-1",
            crate::rules::AlertType::Intrusion,
            crate::rules::Severity::High,
            0,
            0.9,
            false,
        );
        enrich(
            &mut alert,
            ulid(arrival),
            arrival,
            None,
            Err("no renderer".into()),
            clock.wall(),
        );
        assert_eq!(alert.latency_ms, 1234);
        assert_eq!(alert.time_ms, crate::time::unix_ms(arrival));
        assert_eq!(alert.snapshot, None);
        assert_eq!(alert.snapshot_error.as_deref(), Some("no renderer"));

        // A clock behind the arrival gives 0, never a wrapped-around figure.
        enrich(
            &mut alert,
            ulid(arrival),
            arrival,
            None,
            Ok("a.jpg".into()),
            arrival - Duration::from_secs(1),
        );
        assert_eq!(alert.latency_ms, 0);
        assert_eq!(alert.snapshot.as_deref(), Some("a.jpg"));
    }

    #[test]
    fn ulids_are_26_chars_and_sort_by_time() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_000);
        let a = ulid(t0);
        let b = ulid(t0 + std::time::Duration::from_millis(1));
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} < {b}");
    }
}
