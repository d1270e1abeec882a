//! The fall check: a second pass of a fall model (e.g. `models/person_fall.toml`) inside the inference
//! stage, run only on frames where the person detector boxed a person lying — a box at least as wide as
//! it is tall — and at most once per camera per [`FALL_CHECK_INTERVAL`]. Its answer joins the same
//! detection message: a lying person the fall model also calls fallen becomes `fallen_person` (with the
//! fall model's score); nothing else changes, no second message is sent, and nothing loops back from the
//! rules.
//!
//! The fall model sees the whole frame, as it was trained; the lying box only decides whether to pay for
//! it (≈ 290 ms of CPU per check for the YOLOv8s fall model at 640×640, against ≈ 10 ms per frame for
//! YOLOX-nano: `cargo bench --bench detector` gives the cost per check).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::InferError;
use super::manifest::ObjectKind;
use super::runner::ModelRunner;
use super::{Detection, Detections};
use crate::decode::DecodedFrame;

/// A person box this much wider than tall (width / height) counts as lying.
pub const LYING_RATIO: f32 = 1.0;
/// A camera's frames are checked at most this often.
pub const FALL_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// A fallen box of the fall model confirms a lying person when it covers this share of the person's box.
pub const MIN_COVER: f32 = 0.5;

/// True when `b` (`[x1, y1, x2, y2]`) is a box of someone lying.
pub fn lying(b: &[f32; 4]) -> bool {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    h > 0.0 && w >= LYING_RATIO * h
}

/// Share of `a`'s area that `b` covers.
fn cover(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    if area > 0.0 { iw * ih / area } else { 0.0 }
}

/// What one [`FallPass::check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallOutcome {
    /// No person lying in the frame: nothing run.
    NoCandidate,
    /// A person lies, but the camera was checked less than [`FALL_CHECK_INTERVAL`] ago.
    RateLimited,
    /// The fall model ran; this many lying people became `fallen_person`.
    Checked(usize),
}

/// The fall model and the time each camera was last checked. One per inference thread.
#[derive(Debug)]
pub struct FallPass {
    runner: ModelRunner,
    interval: Duration,
    last: HashMap<Arc<str>, Instant>,
}

impl FallPass {
    /// A fall pass running `runner` (a detector whose labels include `fallen_person`).
    pub fn new(runner: ModelRunner) -> Self {
        Self {
            runner,
            interval: FALL_CHECK_INTERVAL,
            last: HashMap::new(),
        }
    }

    /// Checks `frame` when `found` has a person lying and the camera is due; marks the people the fall
    /// model confirms as fallen.
    pub fn check(
        &mut self,
        frame: &Arc<DecodedFrame>,
        found: &mut Detections,
        now: Instant,
    ) -> Result<FallOutcome, InferError> {
        let lying_people = found
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Person && lying(&o.bbox))
            .count();
        if lying_people == 0 {
            return Ok(FallOutcome::NoCandidate);
        }
        if self
            .last
            .get(&frame.camera)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.interval)
        {
            return Ok(FallOutcome::RateLimited);
        }
        self.last.insert(frame.camera.clone(), now);
        let fallen: Vec<Detection> = self
            .runner
            .run(std::slice::from_ref(frame))?
            .into_iter()
            .flat_map(|d| d.objects)
            .filter(|o| o.kind == ObjectKind::FallenPerson)
            .collect();
        let mut confirmed = 0;
        for o in found
            .objects
            .iter_mut()
            .filter(|o| o.kind == ObjectKind::Person && lying(&o.bbox))
        {
            if let Some(f) = fallen
                .iter()
                .filter(|f| cover(&o.bbox, &f.bbox) >= MIN_COVER)
                .max_by(|a, b| a.score.total_cmp(&b.score))
            {
                o.kind = ObjectKind::FallenPerson;
                o.score = f.score;
                confirmed += 1;
            }
        }
        Ok(FallOutcome::Checked(confirmed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lying_is_wider_than_tall() {
        assert!(lying(&[0.0, 0.0, 40.0, 30.0]));
        assert!(lying(&[0.0, 0.0, 30.0, 30.0]));
        assert!(!lying(&[0.0, 0.0, 20.0, 60.0]));
        assert!(
            !lying(&[0.0, 0.0, 20.0, 0.0]),
            "an empty box is not a person lying"
        );
    }

    #[test]
    fn cover_is_the_share_of_the_first_box() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(cover(&a, &[0.0, 0.0, 100.0, 100.0]), 1.0);
        assert_eq!(cover(&a, &[5.0, 0.0, 100.0, 100.0]), 0.5);
        assert_eq!(cover(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
    }
}
