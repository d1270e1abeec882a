//! Activity: whether anything moves in front of each camera. In: every access unit's size and kind
//! (from the camera stage, through sampling), each decoded picture (from sampling), and which cameras
//! have people in view (from inference, on a typed channel). Out: the camera's [`State`], which the
//! sampling stage turns into what to decode and analyse. Nothing is queued here: each camera's
//! [`CameraActivity`] is updated in place by whoever holds the camera's lock.
//!
//! A camera is **active** while the bitstream says something moves (P-frame bytes against its own
//! learned quiet level), while its decoded pictures differ, or while the detector sees people in it;
//! evidence holds it active for `active_hold`. It is **suspect** for `suspect_hold` after a change in
//! the stream that a picture fault leaves (see [`Change`]): decoded often, so VQD decides quickly. A
//! camera **warms up** (decoded like an active one) for `warmup` after it starts, while the meter
//! learns. Otherwise it is **idle**: one decoded picture per `vqd_interval` for VQD, nothing for the
//! detector.

mod bitstream;
mod config;
mod picture;

pub use bitstream::{BitstreamMeter, BitstreamTuning, Change, Reading};
pub use config::{ActivityConfig, RawActivityConfig};
pub use picture::{GRID_H, GRID_W, GreyGrid, PictureTuning};

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A camera's activity as sampling sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Just started: decoded and analysed like an active camera while the meter learns.
    Warming,
    /// Something moves or people are in view: analysed at the camera's analysis rate.
    Active,
    /// The stream changed the way a picture fault changes it: decoded at the analysis rate so VQD
    /// decides quickly; analysed too.
    Suspect,
    /// Nothing moves: one picture per `vqd_interval` for VQD only.
    Idle,
}

impl State {
    /// Every state, in a fixed order (metrics labels).
    pub const ALL: [State; 4] = [State::Warming, State::Active, State::Suspect, State::Idle];

    /// Label for metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Warming => "warming",
            State::Active => "active",
            State::Suspect => "suspect",
            State::Idle => "idle",
        }
    }
}

/// The inference stage saw this many people in one of the camera's frames (sent for every analysed
/// frame of a detector, zero included, so "nobody left" is news too).
#[derive(Debug, Clone)]
pub struct InView {
    /// Camera id.
    pub camera: Arc<str>,
    /// People detected in the frame.
    pub people: u32,
    /// When ingest received the frame.
    pub arrival: std::time::SystemTime,
}

/// How many of a camera's latest detector frames are kept (for detection-delay figures).
pub const ANALYSED_LOG: usize = 64;

/// One frame the detector analysed: when ingest received it and when the answer reached sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Analysed {
    /// Frame arrival, unix ms.
    pub arrival_ms: i64,
    /// Detector answer, unix ms.
    pub analysed_ms: i64,
}

/// Why a camera was last found moving (for engineers: the API shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// P-frame bytes above the quiet level.
    Bitstream,
    /// Decoded pictures differ.
    Picture,
    /// The detector sees people.
    People,
}

impl Evidence {
    /// Label for the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Bitstream => "bitstream",
            Evidence::Picture => "picture",
            Evidence::People => "people",
        }
    }
}

/// A cell that moved in more than this share of recent comparisons is left out (an OSD clock, a
/// flag, a screen in the picture): it says nothing about whether something new moves.
const NOISY_CELL: f32 = 0.5;
/// How fast a cell's share follows each comparison (about the last ten count).
const CELL_RATE_STEP: f32 = 0.1;

/// One camera's activity: the bitstream meter, the last decoded picture's grid, and the timers.
#[derive(Debug, Clone)]
pub struct CameraActivity {
    cfg: ActivityConfig,
    meter: BitstreamMeter,
    started: Instant,
    last_grid: Option<GreyGrid>,
    /// How often each grid cell moved lately (a cell that nearly always moves, such as an OSD clock,
    /// is left out).
    cell_rate: Vec<f32>,
    moving_until: Option<Instant>,
    suspect_until: Option<Instant>,
    evidence: Option<Evidence>,
    last_change: Option<Change>,
    /// When a picture was last sent to be decoded (the VQD interval of an idle camera).
    pub last_decode: Option<Instant>,
    /// When the analysis-rate gate last let a picture through.
    pub last_rate_admit: Option<Instant>,
    /// Picture comparisons made and how many said "moved" (agreement figures).
    pub pictures_compared: u64,
    /// Of those, how many said the picture moved.
    pub pictures_moved: u64,
    /// Of those, how many the bitstream agreed with (both moving or both still).
    pub pictures_agreed: u64,
    /// The latest frames the detector analysed, oldest first.
    pub analysed: std::collections::VecDeque<Analysed>,
}

impl CameraActivity {
    /// A camera that started at `now`.
    pub fn new(cfg: ActivityConfig, now: Instant) -> Self {
        CameraActivity {
            cfg,
            meter: BitstreamMeter::new(cfg.bitstream),
            started: now,
            last_grid: None,
            cell_rate: vec![0.0; GRID_W * GRID_H],
            moving_until: None,
            suspect_until: None,
            evidence: None,
            last_change: None,
            last_decode: None,
            last_rate_admit: None,
            pictures_compared: 0,
            pictures_moved: 0,
            pictures_agreed: 0,
            analysed: std::collections::VecDeque::new(),
        }
    }

    /// The detector analysed one of the camera's frames (arrival and answer in unix ms).
    pub fn log_analysed(&mut self, arrival_ms: i64, analysed_ms: i64) {
        if self.analysed.len() == ANALYSED_LOG {
            self.analysed.pop_front();
        }
        self.analysed.push_back(Analysed {
            arrival_ms,
            analysed_ms,
        });
    }

    /// The camera's usual keyframe interval.
    pub fn keyframe_interval(&self) -> Option<Duration> {
        self.meter.keyframe_interval()
    }

    /// The settings it runs with.
    pub fn config(&self) -> &ActivityConfig {
        &self.cfg
    }

    /// Starts over (a new session: the stream may differ). What belongs to the camera rather than
    /// the session stays: the detector log and the decode schedule (a camera reconnecting many
    /// times a second must not have a keyframe decoded per session, over its analysis rate).
    pub fn restart(&mut self, now: Instant) {
        let fresh = CameraActivity::new(self.cfg, now);
        let kept = std::mem::replace(self, fresh);
        self.analysed = kept.analysed;
        self.last_decode = kept.last_decode;
        self.last_rate_admit = kept.last_rate_admit;
    }

    /// Takes one access unit (its bytes, and whether it is a keyframe); returns the change it
    /// showed, if any.
    pub fn on_access_unit(&mut self, now: Instant, data: &[u8], keyframe: bool) -> Option<Change> {
        let hash = if keyframe { keyframe_hash(data) } else { 0 };
        let r = self.meter.observe(now, data.len(), keyframe, hash);
        if r.moving == Some(true) {
            self.moved(now, Evidence::Bitstream);
        }
        if let Some(c) = r.change {
            self.suspect_until = Some(now + self.cfg.suspect_hold);
            self.last_change = Some(c);
        }
        r.change
    }

    /// Takes a decoded picture's grid; true when it differs from the previous one.
    pub fn on_picture(&mut self, now: Instant, grid: GreyGrid) -> bool {
        let moved = match &self.last_grid {
            Some(prev) => {
                let cells = grid.moved_cells(prev, &self.cfg.picture);
                let mut count = 0;
                for (rate, moved) in self.cell_rate.iter_mut().zip(&cells) {
                    if *rate < NOISY_CELL && *moved {
                        count += 1;
                    }
                    *rate += (f32::from(u8::from(*moved)) - *rate) * CELL_RATE_STEP;
                }
                let moved = count >= self.cfg.picture.min_cells;
                self.pictures_compared += 1;
                self.pictures_moved += u64::from(moved);
                let bitstream = self.meter.moving() == Some(true);
                self.pictures_agreed += u64::from(moved == bitstream);
                moved
            }
            None => false,
        };
        self.last_grid = Some(grid);
        if moved {
            self.moved(now, Evidence::Picture);
        }
        moved
    }

    /// The detector saw `people` in one of this camera's frames.
    pub fn on_people(&mut self, now: Instant, people: u32) {
        if people > 0 {
            self.moved(now, Evidence::People);
        }
    }

    fn moved(&mut self, now: Instant, why: Evidence) {
        let until = now + self.cfg.active_hold;
        // People in view outrank the other evidence while they last.
        if why == Evidence::People || !self.moving_by(now, Evidence::People) {
            self.evidence = Some(why);
        }
        self.moving_until = Some(self.moving_until.map_or(until, |u| u.max(until)));
    }

    fn moving_by(&self, now: Instant, why: Evidence) -> bool {
        self.evidence == Some(why) && self.moving_until.is_some_and(|u| u > now)
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> State {
        if now.saturating_duration_since(self.started) < self.cfg.warmup {
            State::Warming
        } else if self.suspect_until.is_some_and(|u| u > now) {
            State::Suspect
        } else if self.moving_until.is_some_and(|u| u > now) {
            State::Active
        } else {
            State::Idle
        }
    }

    /// The evidence that last made the camera active, while it is active.
    pub fn evidence(&self, now: Instant) -> Option<Evidence> {
        self.moving_until
            .is_some_and(|u| u > now)
            .then_some(self.evidence)
            .flatten()
    }

    /// The stream change that last made it suspect.
    pub fn last_change(&self) -> Option<Change> {
        self.last_change
    }

    /// The learned quiet level of P-frame bytes per second.
    pub fn quiet_level(&self) -> Option<f64> {
        self.meter.quiet_level()
    }

    /// An idle camera's next picture for VQD is due: pictures come only with keyframes, so the one
    /// before the interval ends is taken when the next would come after it (the checks run at least
    /// every `vqd_interval`, not every interval plus a keyframe gap).
    pub fn vqd_due(&self, now: Instant) -> bool {
        let gap = self
            .meter
            .keyframe_interval()
            .unwrap_or_default()
            .min(self.cfg.vqd_interval / 2);
        self.last_decode
            .is_none_or(|t| now.saturating_duration_since(t) + gap >= self.cfg.vqd_interval)
    }
}

/// Identical keyframes (a frozen source) are told apart from new ones by their length and their
/// first and last 4 KiB, which is cheaper than hashing every byte and as good: two different
/// pictures' slices differ from the first macroblocks on.
fn keyframe_hash(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    const EDGE: usize = 4096;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.len().hash(&mut h);
    if data.len() <= 2 * EDGE {
        h.write(data);
    } else {
        h.write(&data[..EDGE]);
        h.write(&data[data.len() - EDGE..]);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ActivityConfig {
        ActivityConfig {
            warmup: Duration::from_secs(10),
            ..ActivityConfig::default()
        }
    }

    #[test]
    fn warms_up_then_goes_idle_and_any_evidence_makes_it_active_for_the_hold() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(cfg(), t0);
        assert_eq!(a.state(t0), State::Warming);
        let t = t0 + Duration::from_secs(11);
        assert_eq!(a.state(t), State::Idle);
        a.on_people(t, 0);
        assert_eq!(a.state(t), State::Idle, "nobody in view is no evidence");
        a.on_people(t, 2);
        assert_eq!(a.state(t), State::Active);
        assert_eq!(a.evidence(t), Some(Evidence::People));
        let hold = a.config().active_hold;
        assert_eq!(a.state(t + hold - Duration::from_millis(1)), State::Active);
        assert_eq!(a.state(t + hold), State::Idle);
        assert!(a.vqd_due(t));
        a.last_decode = Some(t);
        assert!(!a.vqd_due(t + Duration::from_secs(9)));
        assert!(a.vqd_due(t + Duration::from_secs(10)));
    }

    #[test]
    fn a_new_session_learns_again_but_keeps_the_decode_schedule() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(cfg(), t0);
        a.last_rate_admit = Some(t0);
        a.last_decode = Some(t0);
        a.log_analysed(1, 2);
        let t = t0 + Duration::from_secs(20);
        a.restart(t);
        assert_eq!(a.state(t), State::Warming);
        assert_eq!((a.last_rate_admit, a.last_decode), (Some(t0), Some(t0)));
        assert_eq!(a.analysed.len(), 1);
    }

    #[test]
    fn a_stream_change_makes_it_suspect() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(cfg(), t0);
        let mut t = t0;
        for i in 0..400u64 {
            t = t0 + Duration::from_millis(i * 40);
            let key = i % 50 == 0;
            let mut unit = vec![0u8; if key { 20_000 } else { 300 }];
            unit[..8].copy_from_slice(&i.to_le_bytes());
            a.on_access_unit(t, &unit, key);
        }
        assert_eq!(a.state(t + Duration::from_secs(1)), State::Idle);
        let t = t + Duration::from_millis(40);
        let frozen = vec![7u8; 20_000];
        assert_eq!(
            a.on_access_unit(t, &frozen, true),
            None,
            "an ordinary keyframe"
        );
        let t = t + Duration::from_millis(40);
        assert_eq!(
            a.on_access_unit(t, &frozen, true),
            Some(Change::RepeatedKeyframe)
        );
        assert_eq!(a.state(t), State::Suspect);
        assert_eq!(a.last_change(), Some(Change::RepeatedKeyframe));
    }

    #[test]
    fn pictures_that_differ_make_it_active() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(cfg(), t0);
        let t = t0 + Duration::from_secs(20);
        let flat = vec![100u8; 64 * 48 * 3];
        let mut spot = flat.clone();
        for y in 10..30 {
            for x in 10..20 {
                spot[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(&[0, 0, 0]);
            }
        }
        let g = |d: &[u8]| GreyGrid::from_bgr(d, 64, 48, 64 * 3).unwrap();
        assert!(
            !a.on_picture(t, g(&flat)),
            "the first picture has nothing to compare"
        );
        assert!(!a.on_picture(t, g(&flat)));
        assert_eq!(a.state(t), State::Idle);
        assert!(a.on_picture(t, g(&spot)));
        assert_eq!(a.state(t), State::Active);
        assert_eq!(a.evidence(t), Some(Evidence::Picture));
        assert_eq!((a.pictures_compared, a.pictures_moved), (2, 1));
    }

    #[test]
    fn keyframe_hash_tells_identical_from_different_units() {
        let a = vec![7u8; 20_000];
        let mut b = a.clone();
        b[10] = 8;
        assert_eq!(keyframe_hash(&a), keyframe_hash(&a.clone()));
        assert_ne!(keyframe_hash(&a), keyframe_hash(&b));
        assert_ne!(keyframe_hash(&a), keyframe_hash(&a[..19_999]));
        let short = vec![7u8; 100];
        assert_ne!(keyframe_hash(&short), keyframe_hash(&short[..99]));
    }

    #[test]
    fn a_cell_that_always_changes_is_learned_and_left_out() {
        let t0 = Instant::now();
        let mut a = CameraActivity::new(cfg(), t0);
        let t = t0 + Duration::from_secs(20);
        // A ticking "clock": two cells in the corner change in every picture.
        let picture = |tick: u8, person: bool| {
            let mut d = vec![100u8; 64 * 48 * 3];
            for y in 0..4 {
                for x in 0..4 {
                    let v = if tick.is_multiple_of(2) { 0 } else { 255 };
                    d[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(&[v, v, v]);
                }
            }
            if person {
                for y in 20..40 {
                    for x in 30..36 {
                        d[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(&[0, 0, 0]);
                    }
                }
            }
            GreyGrid::from_bgr(&d, 64, 48, 64 * 3).unwrap()
        };
        let mut moved = Vec::new();
        for i in 0..30u8 {
            moved.push(a.on_picture(t, picture(i, false)));
        }
        assert!(moved[1], "at first the clock looks like movement");
        assert!(!moved[20..].iter().any(|m| *m), "{moved:?}");
        assert!(a.on_picture(t, picture(30, true)), "a person still is");
    }
}
