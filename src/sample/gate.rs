//! The gate in front of the decoders: every access unit of every camera passes here; the camera's
//! activity learns from its size, and the schedule decides whether it is decoded.
//!
//! - Cameras that decode every frame (`keyframe_only = false`) get every unit.
//! - A keyframe-only camera's P-frames are never decoded (`rate`).
//! - An **idle** camera's keyframe is decoded once per `vqd_interval` (the picture-quality checks),
//!   otherwise skipped (`idle`).
//! - A warming, active or suspect camera's keyframes are decoded at its `analysis_fps` (`rate` above
//!   that), as they all were before `[activity]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::activity::State;
use crate::camera::{CameraEntry, Verdict};
use crate::clock::Clock;
use crate::decode::{EncodedFrame, Router};
use crate::sync::{lock, read};

/// Decides what each access unit becomes and hands decoded-to-be units to the router.
pub struct Gate {
    router: Arc<Router>,
    clock: Arc<dyn Clock>,
}

impl Gate {
    /// A gate in front of `router`.
    pub fn new(router: Arc<Router>, clock: Arc<dyn Clock>) -> Self {
        Gate { router, clock }
    }

    /// The router behind the gate.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// One access unit of `entry`'s camera. Never blocks.
    pub fn submit(&self, entry: &CameraEntry, frame: EncodedFrame) -> Verdict {
        let now = self.clock.now();
        let (keyframe_only, fps) = {
            let c = read(&entry.config);
            (c.keyframe_only, c.analysis_fps)
        };
        let unit = &frame.unit;
        let verdict = {
            let mut a = lock(&entry.activity);
            if let Some(change) = a.on_access_unit(now, &unit.data, unit.keyframe) {
                tracing::debug!(camera_id = %entry.id, change = change.as_str(), "stream changed; decoding often for VQD");
            }
            let verdict = decide(&mut a, now, keyframe_only, unit.keyframe, fps);
            if verdict == Verdict::Decode {
                a.last_decode = Some(now);
            }
            verdict
        };
        if verdict == Verdict::Decode {
            self.router.submit(frame, keyframe_only);
        }
        verdict
    }
}

/// The schedule for one unit (see the module documentation).
fn decide(
    a: &mut crate::activity::CameraActivity,
    now: Instant,
    keyframe_only: bool,
    keyframe: bool,
    fps: f64,
) -> Verdict {
    if !keyframe_only {
        return Verdict::Decode;
    }
    if !keyframe {
        return Verdict::Rate;
    }
    if a.config().adaptive && a.state(now) == State::Idle {
        return if a.vqd_due(now) {
            Verdict::Decode
        } else {
            Verdict::Idle
        };
    }
    // 10 % slack so a 1 fps target is met by a stream whose keyframes arrive every 0.98 s.
    let min_gap = Duration::from_secs_f64(0.9 / fps.max(0.01));
    if a.last_rate_admit
        .is_some_and(|t| now.saturating_duration_since(t) < min_gap)
    {
        return Verdict::Rate;
    }
    a.last_rate_admit = Some(now);
    Verdict::Decode
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{ActivityConfig, CameraActivity};

    fn cfg() -> ActivityConfig {
        ActivityConfig {
            warmup: Duration::from_secs(5),
            ..ActivityConfig::default()
        }
    }

    #[test]
    fn idle_cameras_get_one_picture_per_vqd_interval_active_ones_their_rate() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(cfg(), t0);
        let mut verdicts = Vec::new();
        // 60 s of keyframes every 0.5 s on a quiet camera (no P-frames needed for the schedule).
        for i in 0..120u64 {
            let now = t0 + Duration::from_millis(i * 500);
            let v = decide(&mut a, now, true, true, 1.0);
            if v == Verdict::Decode {
                a.last_decode = Some(now);
            }
            verdicts.push((now.duration_since(t0).as_secs_f64(), v));
        }
        let decoded: Vec<f64> = verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Decode)
            .map(|(t, _)| *t)
            .collect();
        // Warming (5 s): every second; then one per 10 s.
        assert_eq!(&decoded[..5], &[0.0, 1.0, 2.0, 3.0, 4.0], "{decoded:?}");
        let idle: Vec<f64> = decoded[5..].to_vec();
        assert_eq!(idle, vec![14.0, 24.0, 34.0, 44.0, 54.0], "{decoded:?}");
        assert!(verdicts.iter().any(|(_, v)| *v == Verdict::Idle));
        // People in view: the analysis rate again.
        let now = t0 + Duration::from_secs(60);
        a.on_people(now, 1);
        assert_eq!(decide(&mut a, now, true, true, 1.0), Verdict::Decode);
        assert_eq!(
            decide(&mut a, now + Duration::from_millis(500), true, true, 1.0),
            Verdict::Rate
        );
        assert_eq!(
            decide(&mut a, now + Duration::from_secs(1), true, true, 1.0),
            Verdict::Decode
        );
        // P-frames of keyframe-only cameras are never decoded; full-GOP cameras get everything.
        assert_eq!(decide(&mut a, now, true, false, 1.0), Verdict::Rate);
        assert_eq!(decide(&mut a, now, false, false, 1.0), Verdict::Decode);
    }

    #[test]
    fn without_adaptive_every_camera_gets_its_rate() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(
            ActivityConfig {
                adaptive: false,
                ..cfg()
            },
            t0,
        );
        let n = (0..60u64)
            .filter(|i| {
                decide(&mut a, t0 + Duration::from_secs(*i), true, true, 1.0) == Verdict::Decode
            })
            .count();
        assert_eq!(n, 60);
    }
}
