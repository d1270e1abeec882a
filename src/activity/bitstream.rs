//! Movement read from the compressed stream, without decoding: the bytes of P-frames per second
//! against the camera's own learned quiet level, and the changes in the stream that a picture fault
//! leaves (a keyframe much larger or smaller than usual, the same keyframe bytes again, P-frames
//! collapsing, keyframes stopping).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A change in the compressed stream that a picture fault (frozen, black, covered) or its end
/// leaves. It never raises a fault by itself: it asks for a decode now, and VQD decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// A keyframe at least `keyframe_ratio` times larger or smaller than the usual one.
    KeyframeSize,
    /// The same keyframe bytes again (a frozen encoder or a stuck source).
    RepeatedKeyframe,
    /// P-frame bytes fell below a quarter of the learned quiet level.
    Collapse,
    /// No keyframe for three of the camera's usual keyframe intervals.
    MissingKeyframes,
    /// One of the above ended: a new keyframe after repeated ones, P-frames back, keyframes back.
    /// The picture may be whole again; VQD should look now, not at its next interval.
    Resumed,
}

impl Change {
    /// Label for metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::KeyframeSize => "keyframe_size",
            Change::RepeatedKeyframe => "repeated_keyframe",
            Change::Collapse => "collapse",
            Change::MissingKeyframes => "missing_keyframes",
            Change::Resumed => "resumed",
        }
    }
}

/// What one access unit said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// `Some(true)` when the last second's P-frame bytes are well above the quiet level; `None` while
    /// the level is still being learned or the second is not complete.
    pub moving: Option<bool>,
    /// A change in the stream, reported once when it begins.
    pub change: Option<Change>,
}

/// Tuning of the bitstream signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BitstreamTuning {
    /// P-frame bytes per second above `motion_ratio ×` the quiet level mean movement.
    pub motion_ratio: f64,
    /// A keyframe this many times larger or smaller than the usual one is a change.
    pub keyframe_ratio: f64,
}

impl Default for BitstreamTuning {
    fn default() -> Self {
        BitstreamTuning {
            motion_ratio: 3.0,
            keyframe_ratio: 3.0,
        }
    }
}

/// P-frame bytes are summed over one keyframe interval (a GOP: the P-frames right after a keyframe
/// are larger than the rest, so a shorter window saw a sawtooth), at least this long …
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// … and at most this long (a long GOP would make the signal slow).
const MAX_WINDOW: Duration = Duration::from_secs(4);
/// How often the level is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Seconds of samples before the quiet level counts.
const LEARN_SAMPLES: u32 = 5;
/// The quiet level is the median of this many one-second samples (five minutes): a burst of
/// activity does not move it; a scene busy for more than half of that becomes the camera's normal.
const HISTORY: usize = 300;
/// Below this many bytes per second above the quiet level, nothing moves (a nearly empty stream).
const FLOOR_BYTES: f64 = 512.0;

/// One camera's bitstream meter. Feed it every access unit in arrival order.
#[derive(Debug, Clone)]
pub struct BitstreamMeter {
    tuning: BitstreamTuning,
    window: VecDeque<(Instant, usize)>,
    window_bytes: usize,
    window_start: Option<Instant>,
    last_sample: Option<Instant>,
    quiet: Option<f64>,
    history: VecDeque<f64>,
    /// Reused for the median (no allocation per sample).
    scratch: Vec<f64>,
    samples: u32,
    moving: Option<bool>,
    collapsed: bool,
    key_bytes: Option<f64>,
    keyframes: u32,
    last_key_hash: Option<u64>,
    repeating: bool,
    last_key_at: Option<Instant>,
    key_gap: Option<f64>,
    missing: bool,
}

impl BitstreamMeter {
    /// A meter that has learned nothing yet.
    pub fn new(tuning: BitstreamTuning) -> Self {
        BitstreamMeter {
            tuning,
            window: VecDeque::new(),
            window_bytes: 0,
            window_start: None,
            last_sample: None,
            quiet: None,
            history: VecDeque::new(),
            scratch: Vec::new(),
            samples: 0,
            moving: None,
            collapsed: false,
            key_bytes: None,
            keyframes: 0,
            last_key_hash: None,
            repeating: false,
            last_key_at: None,
            key_gap: None,
            missing: false,
        }
    }

    /// Whether the last sample said something moves (`None` while learning).
    pub fn moving(&self) -> Option<bool> {
        self.moving
    }

    /// The camera's usual keyframe interval, once two keyframes were seen.
    pub fn keyframe_interval(&self) -> Option<Duration> {
        self.key_gap
            .map(|g| Duration::from_secs_f64(g.clamp(0.0, 3600.0)))
    }

    /// The learned quiet level (P-frame bytes per second), once learned.
    pub fn quiet_level(&self) -> Option<f64> {
        (self.samples > LEARN_SAMPLES)
            .then_some(self.quiet)
            .flatten()
    }

    /// Takes one access unit: its arrival, size, whether it is a keyframe and (keyframes) a hash of
    /// its bytes.
    pub fn observe(&mut self, at: Instant, bytes: usize, keyframe: bool, hash: u64) -> Reading {
        let mut change = None;
        if keyframe {
            change = self.keyframe(at, bytes, hash);
        } else {
            self.window.push_back((at, bytes));
            self.window_bytes += bytes;
        }
        self.window_start.get_or_insert(at);
        let window = self.window();
        while let Some(&(t, b)) = self.window.front() {
            if at.saturating_duration_since(t) > window {
                self.window.pop_front();
                self.window_bytes -= b;
            } else {
                break;
            }
        }
        // Keyframes stopping: three usual intervals without one.
        if let (Some(last), Some(gap)) = (self.last_key_at, self.key_gap) {
            let late = at.saturating_duration_since(last).as_secs_f64() > 3.0 * gap.max(0.5);
            if late && !self.missing {
                self.missing = true;
                change = change.or(Some(Change::MissingKeyframes));
            }
        }
        // One sample per second, once a whole window has been seen.
        let whole = self
            .window_start
            .is_some_and(|s| at.saturating_duration_since(s) >= window);
        let due = self
            .last_sample
            .is_none_or(|t| at.saturating_duration_since(t) >= SAMPLE_EVERY);
        if whole && due {
            self.last_sample = Some(at);
            let rate = self.window_bytes as f64 / window.as_secs_f64();
            if let Some(c) = self.sample(rate) {
                change = change.or(Some(c));
            }
        }
        Reading {
            moving: self.moving,
            change,
        }
    }

    /// The window: the learned keyframe interval, within [`MIN_WINDOW`, `MAX_WINDOW`].
    fn window(&self) -> Duration {
        self.key_gap
            .map_or(MIN_WINDOW, |g| Duration::from_secs_f64(g.clamp(0.0, 60.0)))
            .clamp(MIN_WINDOW, MAX_WINDOW)
    }

    fn keyframe(&mut self, at: Instant, bytes: usize, hash: u64) -> Option<Change> {
        let mut change = None;
        let b = bytes as f64;
        if let Some(usual) = self.key_bytes
            && self.keyframes >= 3
        {
            let r = self.tuning.keyframe_ratio;
            if b > usual * r || b * r < usual {
                change = Some(Change::KeyframeSize);
                // A new normal is learned at once: the next keyframe of the same kind is usual.
                self.key_bytes = Some(b);
            }
        }
        if change.is_none() {
            self.key_bytes = Some(match self.key_bytes {
                None => b,
                Some(k) => k + (b - k) * 0.2,
            });
        }
        self.keyframes = self.keyframes.saturating_add(1);
        let repeat = self.last_key_hash == Some(hash);
        if repeat && !self.repeating {
            change = change.or(Some(Change::RepeatedKeyframe));
        }
        if (!repeat && self.repeating) || self.missing {
            change = change.or(Some(Change::Resumed));
        }
        self.repeating = repeat;
        self.last_key_hash = Some(hash);
        if let Some(last) = self.last_key_at {
            let gap = at.saturating_duration_since(last).as_secs_f64();
            // Keyframes that repeat back to back (a frozen stream) say nothing of the usual interval.
            if !repeat {
                self.key_gap = Some(match self.key_gap {
                    None => gap,
                    Some(g) => g + (gap - g) * 0.2,
                });
            }
        }
        self.last_key_at = Some(at);
        self.missing = false;
        change
    }

    fn sample(&mut self, rate: f64) -> Option<Change> {
        self.samples = self.samples.saturating_add(1);
        let learned = self.samples > LEARN_SAMPLES;
        let mut change = None;
        if let Some(quiet) = self.quiet
            && learned
        {
            self.moving =
                Some(rate > quiet * self.tuning.motion_ratio && rate - quiet > FLOOR_BYTES);
            let collapsed = rate * 4.0 < quiet && quiet > FLOOR_BYTES;
            if collapsed && !self.collapsed {
                change = Some(Change::Collapse);
            }
            if !collapsed && self.collapsed {
                change = Some(Change::Resumed);
            }
            self.collapsed = collapsed;
        }
        // A collapsed stream (black, covered) is a fault, not the new quiet.
        if !self.collapsed {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(rate);
            self.scratch.clear();
            self.scratch.extend(self.history.iter().copied());
            let mid = self.scratch.len() / 2;
            self.quiet = Some(*self.scratch.select_nth_unstable_by(mid, f64::total_cmp).1);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `secs` seconds of a 25 fps stream with a keyframe every 2 s.
    fn feed(
        m: &mut BitstreamMeter,
        t0: Instant,
        from_s: f64,
        secs: f64,
        p_bytes: usize,
        key_bytes: usize,
        mut key_hash: impl FnMut(usize) -> u64,
    ) -> Vec<Reading> {
        let mut out = Vec::new();
        let frames = (secs * 25.0) as usize;
        let first = (from_s * 25.0) as usize;
        for i in first..first + frames {
            let at = t0 + Duration::from_millis(i as u64 * 40);
            let key = i % 50 == 0;
            let r = if key {
                m.observe(at, key_bytes, true, key_hash(i))
            } else {
                m.observe(at, p_bytes, false, 0)
            };
            out.push(r);
        }
        out
    }

    #[test]
    fn quiet_scene_is_still_and_a_burst_moves_then_settles() {
        let t0 = Instant::now();
        let mut m = BitstreamMeter::new(BitstreamTuning::default());
        let quiet = feed(&mut m, t0, 0.0, 20.0, 200, 20_000, |i| i as u64);
        assert_eq!(quiet.last().unwrap().moving, Some(false));
        assert!(quiet.iter().all(|r| r.change.is_none()), "{quiet:?}");
        let level = m.quiet_level().unwrap();
        assert!((level - 200.0 * 24.0).abs() < 400.0, "{level}");
        // Someone walks through: P-frames ten times larger for 5 s.
        let burst = feed(&mut m, t0, 20.0, 5.0, 2_000, 22_000, |i| i as u64);
        assert!(burst.iter().any(|r| r.moving == Some(true)));
        assert!(
            burst[25..].iter().all(|r| r.moving == Some(true)),
            "moving from the second second on"
        );
        let after = feed(&mut m, t0, 25.0, 5.0, 200, 20_000, |i| i as u64);
        assert_eq!(after.last().unwrap().moving, Some(false));
    }

    #[test]
    fn repeated_keyframes_collapse_and_size_jumps_are_changes_once() {
        let t0 = Instant::now();
        let mut m = BitstreamMeter::new(BitstreamTuning::default());
        feed(&mut m, t0, 0.0, 20.0, 2_000, 20_000, |i| i as u64);
        // Black: tiny keyframes and P-frames.
        let black = feed(&mut m, t0, 20.0, 10.0, 20, 500, |i| i as u64);
        let changes: Vec<_> = black.iter().filter_map(|r| r.change).collect();
        assert_eq!(changes, vec![Change::KeyframeSize, Change::Collapse]);
        // Restored: a large keyframe again, then P-frames back above the collapse line.
        let back = feed(&mut m, t0, 30.0, 4.0, 2_000, 20_000, |i| i as u64);
        assert_eq!(back[0].change, Some(Change::KeyframeSize));
        assert!(
            back.iter().any(|r| r.change == Some(Change::Resumed)),
            "{back:?}"
        );
        // Frozen: the same keyframe bytes, every frame.
        let mut frozen = Vec::new();
        for i in 0..50 {
            let at = t0 + Duration::from_millis(34_000 + i * 40);
            frozen.push(m.observe(at, 20_000, true, 42));
        }
        let changes: Vec<_> = frozen.iter().filter_map(|r| r.change).collect();
        assert!(changes.contains(&Change::RepeatedKeyframe), "{changes:?}");
        // Unfrozen: a different keyframe is news too.
        let at = t0 + Duration::from_millis(34_000 + 50 * 40);
        assert_eq!(
            m.observe(at, 20_000, true, 43).change,
            Some(Change::Resumed)
        );
        assert_eq!(
            changes
                .iter()
                .filter(|c| **c == Change::RepeatedKeyframe)
                .count(),
            1
        );
    }

    #[test]
    fn larger_p_frames_after_each_keyframe_are_not_movement() {
        let t0 = Instant::now();
        let mut m = BitstreamMeter::new(BitstreamTuning::default());
        // A quiet VBR scene at 10 fps, keyframe every 2 s: the first P-frames of each GOP are
        // several times the rest (as x264 makes them on a noisy still scene).
        let mut moving = Vec::new();
        for i in 0..600u64 {
            let at = t0 + Duration::from_millis(i * 100);
            let in_gop = i % 20;
            let r = if in_gop == 0 {
                m.observe(at, 20_000, true, i)
            } else {
                let bytes = if in_gop < 4 { 700 } else { 120 };
                m.observe(at, bytes, false, 0)
            };
            if i > 200 {
                moving.push(r.moving);
            }
        }
        assert!(moving.iter().all(|m| *m == Some(false)), "{moving:?}");
    }

    #[test]
    fn keyframes_stopping_is_a_change() {
        let t0 = Instant::now();
        let mut m = BitstreamMeter::new(BitstreamTuning::default());
        feed(&mut m, t0, 0.0, 10.0, 500, 20_000, |i| i as u64);
        let mut seen = None;
        for i in 0..250u64 {
            let at = t0 + Duration::from_millis(10_000 + i * 40);
            if let Some(c) = m.observe(at, 500, false, 0).change {
                seen = Some((c, i));
                break;
            }
        }
        let (c, i) = seen.expect("a change");
        assert_eq!(c, Change::MissingKeyframes);
        // Usual interval 2 s, the last keyframe at 8 s: reported once 6 s passed without one (14 s).
        assert!((100..=102).contains(&i), "after {i} frames");
    }
}
