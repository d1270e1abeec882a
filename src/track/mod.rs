//! Per-camera multi-object tracker (ByteTrack-style): one analysed frame's [`Detection`]s come in
//! (with the frame time, irregular 1–5 fps); the camera's confirmed [`Track`]s go out, with ids that
//! survive a few missed detections. Pure logic, no queue: the caller owns one [`Tracker`] per camera
//! and calls [`Tracker::update`] once per analysed frame, in frame-time order.
//!
//! How a frame is handled:
//! 1. every track's Kalman filter (constant velocity on cx, cy, w, h) is predicted forward by the real
//!    time step, so a 1 s gap moves a walker 1 s along its path;
//! 2. high-score detections are matched to confirmed tracks, then low-score detections to the confirmed
//!    tracks still unmatched (BYTE: a half-occluded person keeps its track), then the remaining
//!    high-score detections to tentative tracks;
//! 3. matching is an optimal assignment (see `assign.rs` for why not greedy) on `1 − IoU` between the
//!    predicted box and the detection. At 1 fps a person moves far between frames and a new track has
//!    no velocity yet, so IoU can be 0 for the right pair; a pair with too little IoU is still allowed
//!    when the detection's centre lies within a gate measured in box sizes (|dx|/w, |dy|/h, Euclidean),
//!    `gate_base + gate_per_s × seconds since the track was last seen` (`new_gate_per_s` for a
//!    track seen once, whose velocity is unknown). Such pairs always cost more than any IoU pair.
//!    Only compatible kinds pair: person with person or fallen person, vehicle with vehicle;
//! 4. unmatched high-score detections (≥ `new_track_score`) start tentative tracks, confirmed after
//!    `min_hits` hits; a tentative track missed once is dropped, a confirmed one is kept `max_age_s`
//!    after it was last seen. Ids count up per tracker and are never reused.

mod assign;
mod kalman;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use kalman::{BoxFilter, Noise};

pub use crate::infer::ObjectKind;

/// Kinds in the same group may continue one track (a person who falls stays the same track; smoke
/// may become fire).
fn group(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Person | ObjectKind::FallenPerson => 0,
        ObjectKind::Vehicle | ObjectKind::NonMotorVehicle => 1,
        ObjectKind::Animal => 2,
        ObjectKind::Fire | ObjectKind::Smoke => 3,
        ObjectKind::Other => 4,
    }
}

/// One detection from the inference stage, in camera pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Box (x1, y1, x2, y2) in camera pixels.
    pub bbox: [f32; 4],
    /// Detector confidence, 0..1.
    pub score: f32,
    /// Class mapped to an object kind.
    pub kind: ObjectKind,
}

/// A confirmed track as seen after one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Unique per camera (per [`Tracker`]), never reused.
    pub id: u64,
    /// The last matched detection's box (x1, y1, x2, y2) in camera pixels; for a track missed this
    /// frame it is where it was last seen (not a prediction), so snapshots and zone tests use what the
    /// model actually saw.
    pub bbox: [f32; 4],
    /// Score-weighted vote over the last `kind_window` detections, ties to the most recent.
    pub kind: ObjectKind,
    /// The last matched detection's score.
    pub score: f32,
    /// Filtered centre velocity, pixels per second.
    pub velocity_px_s: (f32, f32),
    /// Frame time of the first detection.
    pub first_seen: f64,
    /// Frame time of the last matched detection.
    pub last_seen: f64,
    /// Number of matched detections.
    pub hits: u32,
    /// Consecutive frames without a match (0: seen in this frame).
    pub missed: u32,
}

impl Track {
    /// Bottom-centre of the box (where the object stands), in pixels.
    pub fn foot(&self) -> (f32, f32) {
        ((self.bbox[0] + self.bbox[2]) / 2.0, self.bbox[3])
    }

    /// Box height in pixels (at least 1).
    pub fn height(&self) -> f32 {
        (self.bbox[3] - self.bbox[1]).max(1.0)
    }

    /// Speed in box heights per second: scale-independent (near and far people compare).
    pub fn speed_heights_per_s(&self) -> f32 {
        let (vx, vy) = self.velocity_px_s;
        (vx * vx + vy * vy).sqrt() / self.height()
    }
}

/// Tracker tuning; the defaults suit people and vehicles at 1–5 analysed fps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score are "high" (first association stage).
    pub high_score: f32,
    /// Detections below this score are ignored; between this and `high_score` they are "low".
    pub low_score: f32,
    /// An unmatched high detection starts a track only at or above this score.
    pub new_track_score: f32,
    /// Least IoU for a high-score match to a confirmed track.
    pub match_iou: f32,
    /// Least IoU for a low-score match (stricter: low scores include clutter).
    pub low_match_iou: f32,
    /// Least IoU for a match to a tentative track.
    pub tentative_match_iou: f32,
    /// Centre gate at zero elapsed time, in box sizes.
    pub gate_base: f32,
    /// Gate growth per second since the track was last seen (velocity known), box sizes per s.
    pub gate_per_s: f32,
    /// Gate growth per second for a track seen only once (velocity unknown), box sizes per s.
    pub new_gate_per_s: f32,
    /// Low-score matches use this fraction of the centre gate.
    pub low_gate_factor: f32,
    /// Hits before a track is confirmed and reported.
    pub min_hits: u32,
    /// A confirmed track is dropped this many seconds after it was last seen.
    pub max_age_s: f64,
    /// How many recent detections vote on the track's kind.
    pub kind_window: usize,
    /// Frame time going back by more than this many seconds (stream restart) drops all tracks.
    pub backward_reset_s: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            high_score: 0.5,
            low_score: 0.1,
            new_track_score: 0.6,
            match_iou: 0.2,
            low_match_iou: 0.3,
            tentative_match_iou: 0.3,
            gate_base: 0.5,
            gate_per_s: 1.0,
            new_gate_per_s: 3.0,
            low_gate_factor: 0.5,
            min_hits: 2,
            max_age_s: 3.0,
            kind_window: 3,
            backward_reset_s: 1.0,
        }
    }
}

/// Tracker errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrackError {
    /// A tuning value is out of range; retrying cannot help, fix the configuration.
    #[error("tracker.{field}: {message}")]
    InvalidConfig {
        /// Field name in [`TrackerConfig`].
        field: &'static str,
        /// What is wrong, with the value.
        message: String,
    },
}

impl TrackerConfig {
    /// Checks ranges; returns every problem.
    pub fn validate(&self) -> Result<(), Vec<TrackError>> {
        let mut errs = Vec::new();
        let mut bad = |field: &'static str, message: String| {
            errs.push(TrackError::InvalidConfig { field, message })
        };
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        for (field, v) in [
            ("high_score", self.high_score),
            ("low_score", self.low_score),
            ("new_track_score", self.new_track_score),
            ("match_iou", self.match_iou),
            ("low_match_iou", self.low_match_iou),
            ("tentative_match_iou", self.tentative_match_iou),
            ("low_gate_factor", self.low_gate_factor),
        ] {
            if !unit(v) {
                bad(field, format!("{v} is outside 0..1"));
            }
        }
        if self.low_score > self.high_score {
            bad(
                "low_score",
                format!("{} is above high_score {}", self.low_score, self.high_score),
            );
        }
        if self.new_track_score < self.high_score {
            bad(
                "new_track_score",
                format!(
                    "{} is below high_score {}; only high-score detections may start tracks",
                    self.new_track_score, self.high_score
                ),
            );
        }
        for (field, v) in [
            ("gate_base", self.gate_base),
            ("gate_per_s", self.gate_per_s),
            ("new_gate_per_s", self.new_gate_per_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bad(field, format!("{v} must be ≥ 0"));
            }
        }
        if self.min_hits == 0 {
            bad("min_hits", "must be ≥ 1".into());
        }
        if !(self.max_age_s.is_finite() && self.max_age_s > 0.0) {
            bad("max_age_s", format!("{} must be > 0", self.max_age_s));
        }
        if self.kind_window == 0 {
            bad("kind_window", "must be ≥ 1".into());
        }
        if !(self.backward_reset_s.is_finite() && self.backward_reset_s >= 0.0) {
            bad(
                "backward_reset_s",
                format!("{} must be ≥ 0", self.backward_reset_s),
            );
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// Filter noise, in box sizes; fixed because the defaults behave at every fps in range.
const NOISE: Noise = Noise {
    meas_pos: 0.05,
    meas_size: 0.05,
    accel_pos: 0.25,
    walk_size: 0.1,
    init_vel_pos: 3.0,
};

#[derive(Debug, Clone)]
struct TrackState {
    id: u64,
    filter: BoxFilter,
    bbox: [f32; 4],
    score: f32,
    kinds: VecDeque<(ObjectKind, f32)>,
    kind: ObjectKind,
    first_seen: f64,
    last_seen: f64,
    hits: u32,
    missed: u32,
    confirmed: bool,
}

impl TrackState {
    fn observe(&mut self, t: f64, d: &Detection, window: usize) {
        self.filter.update(d.bbox, &NOISE);
        self.bbox = d.bbox;
        self.score = d.score;
        self.last_seen = t;
        self.hits = self.hits.saturating_add(1);
        self.missed = 0;
        self.kinds.push_back((d.kind, d.score.max(1e-3)));
        while self.kinds.len() > window {
            self.kinds.pop_front();
        }
        self.kind = vote(&self.kinds);
    }

    fn public(&self) -> Track {
        Track {
            id: self.id,
            bbox: self.bbox,
            kind: self.kind,
            score: self.score,
            velocity_px_s: self.filter.velocity(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            hits: self.hits,
            missed: self.missed,
        }
    }
}

/// Score-weighted vote; a tie goes to the most recent kind.
fn vote(kinds: &VecDeque<(ObjectKind, f32)>) -> ObjectKind {
    let mut best: Option<(ObjectKind, f32)> = None;
    // Iterate newest first so that on a tie the newer kind, seen first, is kept.
    for &(k, _) in kinds.iter().rev() {
        let total: f32 = kinds
            .iter()
            .filter(|(kk, _)| *kk == k)
            .map(|(_, s)| s)
            .sum();
        match best {
            Some((_, b)) if total <= b => {}
            _ => best = Some((k, total)),
        }
    }
    best.map_or(ObjectKind::Other, |(k, _)| k)
}

/// One camera's tracker.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<TrackState>,
    next_id: u64,
    last_t: Option<f64>,
}

impl Tracker {
    /// A tracker with validated tuning.
    pub fn new(cfg: TrackerConfig) -> Result<Tracker, Vec<TrackError>> {
        cfg.validate()?;
        Ok(Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
            last_t: None,
        })
    }

    /// The tuning in use.
    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Feeds one analysed frame (frame time `t` in seconds, frame size in pixels) and returns the
    /// confirmed tracks alive after it, by id; `missed == 0` for those matched in this frame.
    /// Detections with non-finite or empty boxes are ignored; boxes are clipped to the frame.
    pub fn update(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        detections: &[Detection],
    ) -> Vec<Track> {
        if !t.is_finite() {
            return self.confirmed();
        }
        let dt = match self.last_t {
            Some(last) if t < last - self.cfg.backward_reset_s => {
                // The stream restarted with an earlier clock: old motion means nothing now.
                self.tracks.clear();
                0.0
            }
            Some(last) => (t - last).max(0.0),
            None => 0.0,
        };
        self.last_t = Some(t);

        for tr in &mut self.tracks {
            tr.filter.predict(dt, &NOISE);
        }

        let dets: Vec<Detection> = detections
            .iter()
            .filter_map(|d| sanitize(d, frame_w, frame_h))
            .filter(|d| d.score >= self.cfg.low_score)
            .collect();
        let high: Vec<usize> = (0..dets.len())
            .filter(|&i| dets[i].score >= self.cfg.high_score)
            .collect();
        let low: Vec<usize> = (0..dets.len())
            .filter(|&i| dets[i].score < self.cfg.high_score)
            .collect();
        let confirmed: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed)
            .collect();
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].confirmed)
            .collect();

        let c = &self.cfg;
        let mut matches = Vec::new();
        let (m1, rest_tracks, rest_high) =
            self.associate(t, &confirmed, &dets, &high, c.match_iou, 1.0);
        matches.extend(m1);
        let (m2, lost, _) = self.associate(
            t,
            &rest_tracks,
            &dets,
            &low,
            c.low_match_iou,
            c.low_gate_factor,
        );
        matches.extend(m2);
        let (m3, dead_tentative, unmatched_high) =
            self.associate(t, &tentative, &dets, &rest_high, c.tentative_match_iou, 1.0);
        matches.extend(m3);

        let min_hits = self.cfg.min_hits;
        let window = self.cfg.kind_window;
        for (ti, di) in matches {
            let tr = &mut self.tracks[ti];
            tr.observe(t, &dets[di], window);
            if tr.hits >= min_hits {
                tr.confirmed = true;
            }
        }
        for &ti in lost.iter().chain(&dead_tentative) {
            let tr = &mut self.tracks[ti];
            tr.missed = tr.missed.saturating_add(1);
        }
        let max_age = self.cfg.max_age_s;
        self.tracks
            .retain(|tr| tr.missed == 0 || (tr.confirmed && t - tr.last_seen <= max_age));

        for di in unmatched_high {
            let d = &dets[di];
            if d.score < self.cfg.new_track_score {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut tr = TrackState {
                id,
                filter: BoxFilter::new(d.bbox, &NOISE),
                bbox: d.bbox,
                score: d.score,
                kinds: VecDeque::with_capacity(window),
                kind: d.kind,
                first_seen: t,
                last_seen: t,
                hits: 0,
                missed: 0,
                confirmed: false,
            };
            tr.kinds.push_back((d.kind, d.score.max(1e-3)));
            tr.hits = 1;
            tr.confirmed = min_hits <= 1;
            self.tracks.push(tr);
        }
        self.confirmed()
    }

    /// Confirmed tracks alive now, by id.
    pub fn tracks(&self) -> Vec<Track> {
        self.confirmed()
    }

    fn confirmed(&self) -> Vec<Track> {
        let mut out: Vec<Track> = self
            .tracks
            .iter()
            .filter(|t| t.confirmed)
            .map(TrackState::public)
            .collect();
        out.sort_by_key(|t| t.id);
        out
    }

    /// Matches `tracks` (indices into self.tracks) to `cand` (indices into dets); returns the matches
    /// and the unmatched tracks and detections, each as indices of the same kind.
    fn associate(
        &self,
        t: f64,
        tracks: &[usize],
        dets: &[Detection],
        cand: &[usize],
        min_iou: f32,
        gate_factor: f32,
    ) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
        let cost: Vec<Vec<f64>> = tracks
            .iter()
            .map(|&ti| {
                let tr = &self.tracks[ti];
                let pred = tr.filter.bbox();
                let per_s = if tr.hits < 2 {
                    self.cfg.new_gate_per_s
                } else {
                    self.cfg.gate_per_s
                };
                let since = (t - tr.last_seen).max(0.0) as f32;
                let gate = (self.cfg.gate_base + per_s * since) * gate_factor;
                cand.iter()
                    .map(|&di| pair_cost(tr.kind, pred, &dets[di], min_iou, gate))
                    .collect()
            })
            .collect();
        let pairs = assign::assign(&cost);
        let mut track_used = vec![false; tracks.len()];
        let mut det_used = vec![false; cand.len()];
        let mut out = Vec::with_capacity(pairs.len());
        for (r, c) in pairs {
            track_used[r] = true;
            det_used[c] = true;
            out.push((tracks[r], cand[c]));
        }
        let rest_t = tracks
            .iter()
            .zip(&track_used)
            .filter(|(_, u)| !**u)
            .map(|(i, _)| *i)
            .collect();
        let rest_d = cand
            .iter()
            .zip(&det_used)
            .filter(|(_, u)| !**u)
            .map(|(i, _)| *i)
            .collect();
        (out, rest_t, rest_d)
    }
}

/// `1 − IoU` for an IoU match (0..1), `1 + d/gate` (1..2) for a centre-gate match, else forbidden.
fn pair_cost(kind: ObjectKind, pred: [f32; 4], d: &Detection, min_iou: f32, gate: f32) -> f64 {
    if group(kind) != group(d.kind) {
        return assign::FORBIDDEN;
    }
    let iou = iou(pred, d.bbox);
    if iou >= min_iou && iou > 0.0 {
        return f64::from(1.0 - iou);
    }
    let dist = centre_distance(pred, d.bbox);
    if gate > 0.0 && dist <= gate {
        return 1.0 + f64::from(dist / gate);
    }
    assign::FORBIDDEN
}

/// Intersection over union of two (x1, y1, x2, y2) boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Centre distance in box sizes: x by the mean width, y by the mean height.
fn centre_distance(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = ((a[2] - a[0]) + (b[2] - b[0])).max(2.0) / 2.0;
    let h = ((a[3] - a[1]) + (b[3] - b[1])).max(2.0) / 2.0;
    let dx = ((a[0] + a[2]) - (b[0] + b[2])) / 2.0 / w;
    let dy = ((a[1] + a[3]) - (b[1] + b[3])) / 2.0 / h;
    (dx * dx + dy * dy).sqrt()
}

fn sanitize(d: &Detection, frame_w: u32, frame_h: u32) -> Option<Detection> {
    if !d.score.is_finite() || d.bbox.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (fw, fh) = (frame_w as f32, frame_h as f32);
    let clip = |v: f32, hi: f32| if hi > 0.0 { v.clamp(0.0, hi) } else { v };
    let b = [
        clip(d.bbox[0].min(d.bbox[2]), fw),
        clip(d.bbox[1].min(d.bbox[3]), fh),
        clip(d.bbox[0].max(d.bbox[2]), fw),
        clip(d.bbox[1].max(d.bbox[3]), fh),
    ];
    if b[2] - b[0] < 1.0 || b[3] - b[1] < 1.0 {
        return None;
    }
    Some(Detection { bbox: b, ..*d })
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 1920;
    const H: u32 = 1080;

    fn det(cx: f32, cy: f32, w: f32, h: f32, score: f32, kind: ObjectKind) -> Detection {
        Detection {
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            score,
            kind,
        }
    }

    fn person(cx: f32, cy: f32, score: f32) -> Detection {
        det(cx, cy, 60.0, 160.0, score, ObjectKind::Person)
    }

    /// Deterministic jitter in -1..1 so tests see detector noise without randomness.
    fn jitter(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    fn tracker() -> Tracker {
        Tracker::new(TrackerConfig::default()).unwrap()
    }

    fn id_near(tracks: &[Track], x: f32) -> u64 {
        tracks
            .iter()
            .filter(|t| t.missed == 0)
            .min_by(|a, b| {
                let da = ((a.bbox[0] + a.bbox[2]) / 2.0 - x).abs();
                let db = ((b.bbox[0] + b.bbox[2]) / 2.0 - x).abs();
                da.total_cmp(&db)
            })
            .unwrap()
            .id
    }

    #[test]
    fn crossing_people_keep_their_ids() {
        for fps in [1.0f64, 2.0, 5.0] {
            let mut tr = tracker();
            let mut seed = 7u64;
            // A walks right, B walks left, slightly different depth; they pass each other mid-way.
            // 1.2 box widths per second: a brisk walk.
            let speed = 72.0f32;
            let steps = (16.0 * fps) as usize;
            let mut ids: Option<(u64, u64)> = None;
            for k in 0..steps {
                let t = 1000.0 + k as f64 / fps;
                let s = (k as f64 / fps) as f32;
                let ax = 400.0 + speed * s + 3.0 * jitter(&mut seed);
                let bx = 1500.0 - speed * s + 3.0 * jitter(&mut seed);
                let dets = [
                    person(ax, 500.0 + 2.0 * jitter(&mut seed), 0.9),
                    det(bx, 520.0, 64.0, 170.0, 0.85, ObjectKind::Person),
                ];
                let out = tr.update(t, W, H, &dets);
                if k == 3 {
                    ids = Some((id_near(&out, ax), id_near(&out, bx)));
                }
                if let Some((a, b)) = ids {
                    assert_eq!(out.len(), 2, "fps {fps} step {k}: {out:?}");
                    assert_eq!(id_near(&out, ax), a, "fps {fps} step {k}");
                    assert_eq!(id_near(&out, bx), b, "fps {fps} step {k}");
                }
            }
            let (a, b) = ids.unwrap();
            assert_ne!(a, b);
        }
    }

    #[test]
    fn track_survives_two_missed_frames() {
        let mut tr = tracker();
        let mut x = 300.0;
        for k in 0..4 {
            tr.update(k as f64, W, H, &[person(x, 500.0, 0.9)]);
            x += 30.0;
        }
        let id = tr.tracks()[0].id;
        // Two frames with nothing detected: the track is still reported, flagged as missed.
        let out = tr.update(4.0, W, H, &[]);
        assert_eq!((out[0].id, out[0].missed), (id, 1));
        let out = tr.update(5.0, W, H, &[]);
        assert_eq!((out[0].id, out[0].missed), (id, 2));
        // The person reappears where the motion predicts.
        let out = tr.update(6.0, W, H, &[person(300.0 + 30.0 * 6.0, 500.0, 0.9)]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].id, out[0].missed), (id, 0));
        assert_eq!(out[0].hits, 5);
    }

    #[test]
    fn track_expires_after_max_age_and_ids_are_not_reused() {
        let mut tr = tracker();
        for k in 0..3 {
            tr.update(k as f64, W, H, &[person(500.0, 500.0, 0.9)]);
        }
        let first = tr.tracks()[0].id;
        assert!(!tr.update(5.0, W, H, &[]).is_empty(), "3 s after: kept");
        assert!(tr.update(5.5, W, H, &[]).is_empty(), "3.5 s after: dropped");
        // Same place again: a new person as far as the tracker knows, with a new id.
        tr.update(6.0, W, H, &[person(500.0, 500.0, 0.9)]);
        let out = tr.update(7.0, W, H, &[person(500.0, 500.0, 0.9)]);
        assert_eq!(out.len(), 1);
        assert!(out[0].id > first, "{} reused?", out[0].id);
        // A tentative track that dies also burns its id.
        tr.update(
            8.0,
            W,
            H,
            &[person(500.0, 500.0, 0.9), person(1500.0, 500.0, 0.9)],
        );
        let out = tr.update(9.0, W, H, &[person(500.0, 500.0, 0.9)]);
        tr.update(
            10.0,
            W,
            H,
            &[person(500.0, 500.0, 0.9), person(1500.0, 500.0, 0.9)],
        );
        let out2 = tr.update(
            11.0,
            W,
            H,
            &[person(500.0, 500.0, 0.9), person(1500.0, 500.0, 0.9)],
        );
        let ids: Vec<u64> = out2.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], out[0].id);
        assert!(ids[1] > ids[0] + 1, "tentative id was reused: {ids:?}");
    }

    #[test]
    fn low_score_detections_keep_a_track_but_never_start_one() {
        let mut tr = tracker();
        let mut x = 300.0;
        for k in 0..3 {
            tr.update(k as f64 * 0.5, W, H, &[person(x, 500.0, 0.9)]);
            x += 20.0;
        }
        let id = tr.tracks()[0].id;
        // Half-occluded for 4 frames: the detector is unsure (0.3 < high 0.5).
        for k in 3..7 {
            let out = tr.update(k as f64 * 0.5, W, H, &[person(x, 500.0, 0.3)]);
            assert_eq!(out.len(), 1);
            assert_eq!((out[0].id, out[0].missed), (id, 0), "frame {k}");
            assert!((out[0].score - 0.3).abs() < 1e-6);
            x += 20.0;
        }
        let out = tr.update(3.5, W, H, &[person(x, 500.0, 0.9)]);
        assert_eq!(out[0].id, id);

        // Low-score clutter elsewhere never becomes a track.
        let mut tr = tracker();
        for k in 0..10 {
            let out = tr.update(k as f64, W, H, &[person(900.0, 300.0, 0.4)]);
            assert!(out.is_empty());
        }
        // Nor does a high detection below new_track_score.
        for k in 10..14 {
            let out = tr.update(k as f64, W, H, &[person(900.0, 300.0, 0.55)]);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn walker_at_one_fps_keeps_one_id_for_twenty_frames() {
        for widths_per_frame in [0.5f32, 1.5] {
            let mut tr = tracker();
            let mut seed = 42u64;
            let mut ids = Vec::new();
            for k in 0..20 {
                let t = 50.0 + k as f64 + 0.1 * f64::from(jitter(&mut seed)); // irregular
                let x =
                    200.0 + 60.0 * widths_per_frame * (t - 50.0) as f32 + 4.0 * jitter(&mut seed);
                let y = 600.0 + 5.0 * (t as f32 * 0.3).sin() + 3.0 * jitter(&mut seed);
                let out = tr.update(
                    t,
                    W,
                    H,
                    &[person(x, y, 0.7 + 0.2 * jitter(&mut seed).abs())],
                );
                if k >= 1 {
                    assert_eq!(
                        out.len(),
                        1,
                        "{widths_per_frame} w/frame, frame {k}: {out:?}"
                    );
                    ids.push(out[0].id);
                }
            }
            assert!(
                ids.iter().all(|&i| i == ids[0]),
                "{widths_per_frame}: {ids:?}"
            );
            let tracks = tr.tracks();
            let (vx, _) = tracks[0].velocity_px_s;
            let expect = 60.0 * widths_per_frame;
            assert!(
                (vx - expect).abs() < 0.2 * expect,
                "vx {vx} expect {expect}"
            );
        }
    }

    #[test]
    fn person_who_falls_becomes_fallen_person_on_the_same_track() {
        let mut tr = tracker();
        for k in 0..4 {
            tr.update(k as f64, W, H, &[person(800.0, 500.0, 0.9)]);
        }
        let id = tr.tracks()[0].id;
        // Lying down: a wide, low box of the fallen class at the same place.
        let fallen = det(800.0, 560.0, 160.0, 60.0, 0.8, ObjectKind::FallenPerson);
        let out = tr.update(4.0, W, H, &[fallen]);
        assert_eq!(
            out[0].kind,
            ObjectKind::Person,
            "one frame is not yet a majority"
        );
        let out = tr.update(5.0, W, H, &[fallen]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].id, out[0].kind), (id, ObjectKind::FallenPerson));
    }

    #[test]
    fn vehicles_do_not_take_over_person_tracks() {
        let mut tr = tracker();
        for k in 0..3 {
            tr.update(k as f64, W, H, &[person(800.0, 500.0, 0.9)]);
        }
        let id = tr.tracks()[0].id;
        let car = det(800.0, 500.0, 60.0, 160.0, 0.9, ObjectKind::Vehicle);
        let out = tr.update(3.0, W, H, &[car]);
        let p = out.iter().find(|t| t.id == id).unwrap();
        assert_eq!((p.missed, p.kind), (1, ObjectKind::Person));
    }

    #[test]
    fn bad_detections_and_time_going_back() {
        let mut tr = tracker();
        let nan = Detection {
            bbox: [f32::NAN, 0.0, 10.0, 10.0],
            score: 0.9,
            kind: ObjectKind::Person,
        };
        let empty = det(100.0, 100.0, 0.0, 50.0, 0.9, ObjectKind::Person);
        for k in 0..3 {
            assert!(tr.update(k as f64, W, H, &[nan, empty]).is_empty());
        }
        for k in 3..6 {
            tr.update(k as f64, W, H, &[person(500.0, 500.0, 0.9)]);
        }
        let old = tr.tracks()[0].id;
        // The stream restarted with an earlier clock: tracks are dropped, ids still count up.
        assert!(
            tr.update(1.0, W, H, &[person(500.0, 500.0, 0.9)])
                .is_empty()
        );
        let out = tr.update(2.0, W, H, &[person(500.0, 500.0, 0.9)]);
        assert!(out[0].id > old);
        assert!(tr.update(f64::NAN, W, H, &[]).len() == 1);
    }

    #[test]
    fn config_validation_lists_every_problem() {
        let cfg = TrackerConfig {
            high_score: 1.5,
            min_hits: 0,
            max_age_s: -1.0,
            ..TrackerConfig::default()
        };
        let errs = Tracker::new(cfg).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"tracker.high_score: 1.5 is outside 0..1".to_string()),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.starts_with("tracker.min_hits")));
        assert!(text.iter().any(|e| e.starts_with("tracker.max_age_s")));
        assert!(
            text.iter()
                .any(|e| e.starts_with("tracker.new_track_score"))
        );
    }

    #[test]
    fn iou_basics() {
        assert!((iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]) - 1.0).abs() < 1e-6);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]), 0.0);
        assert!((iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
