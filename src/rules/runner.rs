//! The rules stage thread: model outputs → per-camera tracker → rules → candidate alerts.
//!
//! In: [`Analysed`] frames from every model (bounded; the inference threads wait when it is full).
//! Out: [`Candidate`]s: each [`Alert`] with the frame it was seen on; the alert stage must keep up — candidates are
//! never dropped here (the send blocks), because an alert that was seen must not be lost.
//!
//! Cooldowns outlive this process's state: the first alert of each rule on a camera since this
//! process began running it is checked against the store's latest alert of that rule and camera
//! ([`LastAlert`]); within the rule's `cooldown` of it (raised by another node before a takeover,
//! or by this node's previous run), the ongoing event is not raised again (counted as `resumed`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};

use super::{Alert, RuleSet, RulesConfig};
use crate::decode::DecodedFrame;
use crate::infer::Analysed;
use crate::track::{Detection, Track, Tracker, TrackerConfig};

/// An alert as the rules stage raised it, with the picture it was raised on (what the alert stage
/// draws the snapshot from; only the alert itself goes on to the store).
#[derive(Clone)]
pub struct Candidate {
    /// What the rule saw (enriched by the alert stage, then stored as it is).
    pub alert: Alert,
    /// The rule's zone (or a tripwire's two points), normalised 0..1, for the snapshot.
    pub zone: Option<Vec<[f32; 2]>>,
    /// The analysed frame (for the snapshot).
    pub frame: Arc<DecodedFrame>,
    /// Every confirmed track on that frame (drawn in the snapshot).
    pub tracks: Vec<Track>,
    /// When the frame arrived.
    pub arrival: SystemTime,
}

/// Counters of the rules stage.
#[derive(Debug, Default)]
pub struct RulesStats {
    /// Model outputs processed.
    pub frames: AtomicU64,
    /// Candidate alerts raised.
    pub candidates: AtomicU64,
    /// Model outputs older than one already evaluated for the camera (skipped).
    pub stale: AtomicU64,
    /// Rule sets swapped in from the API.
    pub replaced: AtomicU64,
    /// Alerts not raised because the store already has one of the rule on the camera within its
    /// cooldown (an event going on across a takeover or a restart).
    pub resumed: AtomicU64,
}

/// Frames of a camera this far apart (seconds) mean it was not run here in between.
const RESUME_GAP_S: f64 = 30.0;

/// The latest stored alert of `(camera, rule id)`, unix ms (`None`: none, or the store cannot say).
pub type LastAlert = Arc<dyn Fn(&str, &str) -> Option<i64> + Send + Sync>;

struct CameraState {
    tracker: Tracker,
    last_tracks: Vec<Track>,
    /// Newest frame time seen; model outputs arrive per model, so a late one can be older.
    last_t: f64,
    /// A frame-level score waiting to ride along with the next detector frame.
    pending_anomaly: Option<f32>,
    /// Rules whose first alert here was checked against the store.
    resumed: std::collections::HashSet<String>,
}

/// Runs the stage on a named thread until `rx` closes. `has_detector` says whether a detector model
/// runs: then frame-level anomaly scores are held and evaluated with the next detector frame, so the
/// rules see each moment once, in time order; without one, anomaly scores are evaluated alone.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    rx: Receiver<Analysed>,
    rules: &RulesConfig,
    tracker_config: TrackerConfig,
    has_detector: bool,
    out: Sender<Candidate>,
    stats: Arc<RulesStats>,
    updates: Option<Arc<super::live::PendingRules>>,
    last_alert: Option<LastAlert>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut set = match RuleSet::new(rules) {
        Ok(s) => s,
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    std::thread::Builder::new().name("rules".into()).spawn(move || {
        let mut cameras: HashMap<Arc<str>, CameraState> = HashMap::new();
        for analysed in rx.iter() {
            // A document saved through the API: swap between two frames.
            if let Some(new) = updates.as_ref().and_then(|u| u.take()) {
                match RuleSet::new(&new) {
                    Ok(s) => {
                        set = s;
                        stats.replaced.fetch_add(1, Ordering::Relaxed);
                        // New engines: their first alerts are checked against the store again.
                        for state in cameras.values_mut() {
                            state.resumed.clear();
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "saved rules could not be applied; the previous ones keep running"),
                }
            }
            stats.frames.fetch_add(1, Ordering::Relaxed);
            let d = &analysed.detections;
            let (w, h) = d.frame_size;
            let t = crate::time::unix_seconds(d.arrival);
            let state = match cameras.get_mut(&d.camera) {
                Some(s) => s,
                None => match Tracker::new(tracker_config.clone()) {
                    Ok(tracker) => cameras.entry(d.camera.clone()).or_insert(CameraState {
                        tracker,
                        last_tracks: Vec::new(),
                        last_t: f64::MIN,
                        pending_anomaly: None,
                        resumed: Default::default(),
                    }),
                    Err(e) => {
                        tracing::error!(camera_id = %d.camera, errors = ?e, "tracker config invalid");
                        continue;
                    }
                },
            };
            // A camera back after a gap (run by another node meanwhile, or its stream down):
            // its first alerts are checked against the store again.
            if state.last_t != f64::MIN && t - state.last_t > RESUME_GAP_S {
                state.resumed.clear();
            }
            let alerts = match d.anomaly {
                Some(score) if has_detector => {
                    // Keep the worst score until the detector's frame comes.
                    state.pending_anomaly = Some(state.pending_anomaly.map_or(score, |p| p.max(score)));
                    continue;
                }
                Some(score) => {
                    if t < state.last_t {
                        stats.stale.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    state.last_t = t;
                    set.observe(&d.camera, t, w, h, &[], Some(score))
                }
                None => {
                    if t < state.last_t {
                        stats.stale.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    state.last_t = t;
                    let detections: Vec<Detection> = d
                        .objects
                        .iter()
                        .map(|o| Detection {
                            bbox: o.bbox,
                            score: o.score,
                            kind: o.kind,
                        })
                        .collect();
                    state.last_tracks = state.tracker.update(t, w, h, &detections);
                    let anomaly = state.pending_anomaly.take();
                    set.observe(&d.camera, t, w, h, &state.last_tracks, anomaly)
                }
            };
            for alert in alerts {
                if let Some(last_alert) = &last_alert
                    && state.resumed.insert(alert.rule_id.clone())
                    && let Some(cooldown) = set
                        .engine(&alert.camera)
                        .and_then(|e| e.rules().find(|r| r.id == alert.rule_id))
                        .map(|r| r.cooldown_s)
                    && let Some(last) = last_alert(&alert.camera, &alert.rule_id)
                {
                    let since_s = (crate::time::unix_ms(d.arrival) - last) as f64 / 1000.0;
                    if since_s < cooldown {
                        stats.resumed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(camera_id = %alert.camera, rule = %alert.rule_id, since_s,
                            "alert not raised: the event was raised before this node ran the camera, within the rule's cooldown");
                        continue;
                    }
                }
                stats.candidates.fetch_add(1, Ordering::Relaxed);
                // The stored alert is what an operator acts on (logged at info by the alert stage).
                tracing::debug!(
                    camera_id = %alert.camera,
                    rule = %alert.rule_id,
                    kind = alert.alert_type.as_str(),
                    score = alert.score,
                    tracks = ?alert.track_ids,
                    "candidate alert"
                );
                let candidate = Candidate {
                    zone: set.zone(&alert.camera, &alert.rule_id),
                    alert,
                    frame: analysed.frame.clone(),
                    tracks: state.last_tracks.clone(),
                    arrival: d.arrival,
                };
                if out.send(candidate).is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::config::{ValidateContext, parse_toml};

    fn analysed(score: f32, at: SystemTime) -> Analysed {
        Analysed {
            detections: crate::infer::Detections {
                camera: Arc::from("c1"),
                pts_90k: 0,
                arrival: at,
                frame_size: (4, 4),
                model: Arc::from("anomaly"),
                objects: Vec::new(),
                anomaly: Some(score),
                batch_size: 1,
                infer_ms: 1.0,
            },
            frame: Arc::new(DecodedFrame {
                camera: Arc::from("c1"),
                pts_90k: 0,
                arrival: at,
                decoded_at: at,
                width: 4,
                height: 4,
                stride: 12,
                format: crate::decode::PixelFormat::Bgr,
                data: vec![0; 48],
            }),
        }
    }

    /// The alerts a fresh runner raises for one anomalous frame when the store's latest alert of
    /// the rule on the camera is `last` (unix ms), and the runner's resumed count.
    fn raised(last: Option<i64>, now: SystemTime) -> (usize, u64) {
        let rules = parse_toml(
            "[[rules]]\nid = \"cover\"\ncamera = \"c1\"\nkind = \"scene_anomaly\"\nthreshold = 0.5\nsamples = 1\ncooldown = \"10m\"\n",
            &ValidateContext {
                known_cameras: None,
                action_model: false,
                anomaly_model: true,
                fall_model: false,
            },
        )
        .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let (out, candidates) = crossbeam_channel::unbounded();
        let stats = Arc::new(RulesStats::default());
        let asked: LastAlert = Arc::new(move |camera: &str, rule: &str| {
            assert_eq!((camera, rule), ("c1", "cover"));
            last
        });
        let thread = spawn(
            rx,
            &rules,
            TrackerConfig::default(),
            false,
            out,
            stats.clone(),
            None,
            Some(asked),
        )
        .unwrap();
        tx.send(analysed(0.9, now)).unwrap();
        drop(tx);
        thread.join().unwrap();
        (
            candidates.try_iter().count(),
            stats.resumed.load(Ordering::Relaxed),
        )
    }

    /// A camera taken over (or the service restarted) in the middle of an event: the first alert
    /// of a rule is not raised again when the store has one of that rule on the camera within its
    /// cooldown; one older than the cooldown, or none, and it is raised.
    #[test]
    fn an_event_raised_before_this_node_ran_the_camera_is_not_raised_again_within_the_cooldown() {
        let now = SystemTime::now();
        let ms = crate::time::unix_ms(now);
        assert_eq!(
            raised(Some(ms - 60_000), now),
            (0, 1),
            "a minute ago, cooldown 10 min"
        );
        assert_eq!(
            raised(Some(ms - 11 * 60_000), now),
            (1, 0),
            "past the cooldown"
        );
        assert_eq!(raised(None, now), (1, 0), "never raised");
    }
}
