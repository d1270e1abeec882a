//! One camera's pre-event buffer: its access units as received, from a keyframe, reaching back
//! `keep` seconds before the GOP in progress; and the clips still recording from it.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::decode::VideoCodec;

/// One access unit kept.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Annex-B data (shared with ingest's buffer, not copied).
    pub data: Bytes,
    /// A keyframe with its parameter sets in front.
    pub keyframe: bool,
    /// Presentation time, 90 kHz, since the session's first frame.
    pub pts_90k: i64,
    /// When ingest received it.
    pub arrival: SystemTime,
}

/// A clip still recording: the units from its first keyframe, until `end`.
#[derive(Debug)]
pub struct OpenClip {
    /// File name.
    pub name: String,
    /// Codec of the units.
    pub codec: VideoCodec,
    /// Units so far.
    pub units: Vec<Unit>,
    /// Recording stops at the first unit that arrived at or after this.
    pub end: SystemTime,
    /// `end` never goes beyond this (the clip's first unit + `max_length`).
    pub hard_end: SystemTime,
}

impl OpenClip {
    /// Arrival time of the first unit.
    pub fn start(&self) -> Option<SystemTime> {
        self.units.first().map(|u| u.arrival)
    }
}

/// How an alert's clip begins.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// A new clip, starting at this unit's arrival.
    Started(SystemTime),
    /// The alert joined the clip of that name, already recording.
    Joined(String),
    /// Nothing buffered to start from.
    Empty,
}

/// A camera's buffer.
#[derive(Debug, Default)]
pub struct CameraRing {
    codec: Option<VideoCodec>,
    units: VecDeque<Unit>,
    /// Sequence number of `units[0]`.
    front: u64,
    /// Sequence numbers of the keyframes in `units`, oldest first.
    keyframes: VecDeque<u64>,
    bytes: u64,
    last_pts: Option<i64>,
    /// Clips recording.
    pub open: Vec<OpenClip>,
}

/// What one [`CameraRing::push`] did.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Bytes dropped over the camera's budget.
    pub over_budget: u64,
    /// Clips that reached their end (or whose stream restarted).
    pub closed: Vec<OpenClip>,
    /// Change of the ring's size in bytes.
    pub delta: i64,
}

impl CameraRing {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Units held.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Seconds covered (first unit to last), if any.
    pub fn span(&self) -> Duration {
        match (self.units.front(), self.units.back()) {
            (Some(a), Some(b)) => b.arrival.duration_since(a.arrival).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    fn clear(&mut self) {
        self.front += self.units.len() as u64;
        self.units.clear();
        self.keyframes.clear();
        self.bytes = 0;
    }

    /// Drops the units before the second keyframe (one GOP).
    fn drop_gop(&mut self) -> u64 {
        let Some(&second) = self.keyframes.get(1) else {
            return 0;
        };
        let mut dropped = 0;
        while self.front < second {
            if let Some(u) = self.units.pop_front() {
                dropped += u.data.len() as u64;
            }
            self.front += 1;
        }
        self.keyframes.pop_front();
        self.bytes -= dropped;
        dropped
    }

    /// Adds a unit: the buffer keeps `keep` before the GOP in progress and at most `budget` bytes
    /// (whole GOPs go, oldest first); open clips take the unit too, and those it ends are returned.
    pub fn push(&mut self, codec: VideoCodec, unit: Unit, keep: Duration, budget: u64) -> Pushed {
        let before = self.bytes;
        let mut out = Pushed::default();
        // A new session (its time starts again) or another codec: the old units cannot precede
        // these in one file.
        let restarted = self.last_pts.is_some_and(|p| unit.pts_90k + 90_000 < p)
            || self.codec.is_some_and(|c| c != codec);
        if restarted {
            self.clear();
            out.closed.append(&mut self.open);
        }
        self.codec = Some(codec);
        self.last_pts = Some(unit.pts_90k);
        let arrival = unit.arrival;
        let mut i = 0;
        while i < self.open.len() {
            let clip = &mut self.open[i];
            if arrival >= clip.end {
                out.closed.push(self.open.swap_remove(i));
            } else {
                clip.units.push(unit.clone());
                i += 1;
            }
        }
        // A buffer starts on a keyframe: what comes before the first one could not be decoded.
        if !unit.keyframe && self.keyframes.is_empty() {
            out.delta = self.bytes as i64 - before as i64;
            return out;
        }
        let seq = self.front + self.units.len() as u64;
        if unit.keyframe {
            self.keyframes.push_back(seq);
        }
        self.bytes += unit.data.len() as u64;
        self.units.push_back(unit);
        if let Some(cutoff) = arrival.checked_sub(keep) {
            while let Some(&second) = self.keyframes.get(1) {
                let at = self.units[(second - self.front) as usize].arrival;
                if at > cutoff {
                    break;
                }
                self.drop_gop();
            }
        }
        while self.bytes > budget && self.keyframes.len() >= 2 {
            out.over_budget += self.drop_gop();
        }
        out.delta = self.bytes as i64 - before as i64;
        out
    }

    /// Keeps only the GOP in progress (memory pressure); returns the bytes dropped.
    pub fn shed(&mut self) -> u64 {
        let mut dropped = 0;
        while self.keyframes.len() >= 2 {
            dropped += self.drop_gop();
        }
        dropped
    }

    /// Starts or joins a clip for an alert on a frame that arrived `at`: a clip already recording
    /// that can reach `at + post` within its `max_length` takes the alert (its end moves out);
    /// otherwise a new clip `name` starts at the last keyframe at or before `at - pre` (or the
    /// oldest one held).
    pub fn begin(
        &mut self,
        name: &str,
        at: SystemTime,
        pre: Duration,
        post: Duration,
        max_length: Duration,
    ) -> Begin {
        let want_end = at + post;
        if let Some(clip) = self.open.iter_mut().find(|c| want_end <= c.hard_end) {
            clip.end = clip.end.max(want_end);
            return Begin::Joined(clip.name.clone());
        }
        let (Some(codec), Some(&first)) = (self.codec, self.keyframes.front()) else {
            return Begin::Empty;
        };
        let from = at.checked_sub(pre).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut start = first;
        for &k in &self.keyframes {
            if self.units[(k - self.front) as usize].arrival <= from {
                start = k;
            } else {
                break;
            }
        }
        let units: Vec<Unit> = self
            .units
            .iter()
            .skip((start - self.front) as usize)
            .cloned()
            .collect();
        let started = units[0].arrival;
        let hard_end = started + max_length;
        self.open.push(OpenClip {
            name: name.to_owned(),
            codec,
            units,
            end: want_end.min(hard_end),
            hard_end,
        });
        Begin::Started(started)
    }

    /// Takes the clips whose end lies before `now - grace` (their camera stopped sending).
    pub fn overdue(&mut self, now: SystemTime, grace: Duration) -> Vec<OpenClip> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].end + grace <= now {
                out.push(self.open.swap_remove(i));
            } else {
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 fps, a keyframe every `gop` frames, 1,000-byte units (keyframes 5,000), starting at t0.
    fn unit(t0: SystemTime, i: u64, gop: u64) -> Unit {
        let keyframe = i.is_multiple_of(gop);
        Unit {
            data: Bytes::from(vec![0u8; if keyframe { 5000 } else { 1000 }]),
            keyframe,
            pts_90k: i as i64 * 9000,
            arrival: t0 + Duration::from_millis(i * 100),
        }
    }

    const H264: VideoCodec = VideoCodec::H264;

    #[test]
    fn keeps_from_a_keyframe_reaching_back_keep_before_the_gop_in_progress() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut r = CameraRing::default();
        // Starts mid-GOP: nothing is kept before the first keyframe.
        for i in 5..300u64 {
            r.push(H264, unit(t0, i, 20), Duration::from_secs(10), u64::MAX);
            assert!(r.units.front().is_none_or(|u| u.keyframe));
        }
        // At 29.9 s with keep 10 s: the last keyframe at or before 19.9 s is at 18 s.
        assert_eq!(
            r.units.front().unwrap().arrival,
            t0 + Duration::from_secs(18)
        );
        assert!(r.span() >= Duration::from_secs(10), "{:?}", r.span());
        let held: u64 = r.units.iter().map(|u| u.data.len() as u64).sum();
        assert_eq!(r.bytes(), held);
        // The budget drops whole GOPs, oldest first, and says how much.
        let before = r.bytes();
        let p = r.push(H264, unit(t0, 300, 20), Duration::from_secs(10), 30_000);
        assert!(
            p.over_budget > 0 && r.bytes() <= 30_000,
            "{before} → {}",
            r.bytes()
        );
        assert!(r.units.front().unwrap().keyframe);
        let held = r.bytes();
        let shed = r.shed();
        assert!(shed > 0);
        assert_eq!(shed + r.bytes(), held);
        assert_eq!(r.keyframes.len(), 1);
    }

    #[test]
    fn a_clip_starts_pre_before_the_alert_on_a_keyframe_and_closes_post_after_it() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (keep, pre, post, max) = (
            Duration::from_secs(18),
            Duration::from_secs(10),
            Duration::from_secs(20),
            Duration::from_secs(60),
        );
        let mut r = CameraRing::default();
        for i in 0..300u64 {
            r.push(H264, unit(t0, i, 20), keep, u64::MAX);
        }
        // The alert's frame arrived at 25 s (it is raised later): from 15 s → keyframe at 14 s.
        let at = t0 + Duration::from_secs(25);
        assert_eq!(
            r.begin("a.mp4", at, pre, post, max),
            Begin::Started(t0 + Duration::from_secs(14))
        );
        // A second alert 5 s later joins and moves the end to 50 s.
        assert_eq!(
            r.begin("b.mp4", at + Duration::from_secs(5), pre, post, max),
            Begin::Joined("a.mp4".into())
        );
        let mut closed = Vec::new();
        for i in 300..600u64 {
            closed.extend(r.push(H264, unit(t0, i, 20), keep, u64::MAX).closed);
        }
        assert_eq!(closed.len(), 1);
        let c = &closed[0];
        assert!(c.units[0].keyframe);
        let last = c.units.last().unwrap().arrival;
        assert!(last < t0 + Duration::from_secs(50) && last >= t0 + Duration::from_millis(49_900));
        // An alert beyond the clip's longest length starts another.
        let mut r2 = CameraRing::default();
        for i in 0..300u64 {
            r2.push(H264, unit(t0, i, 20), keep, u64::MAX);
        }
        r2.begin("a.mp4", at, pre, post, max);
        assert_eq!(
            r2.begin("c.mp4", at + Duration::from_secs(40), pre, post, max),
            Begin::Started(t0 + Duration::from_secs(28))
        );
        assert_eq!(r2.open.len(), 2);
        // A camera that stops sending: its clips close after their end + grace.
        assert!(
            r2.overdue(t0 + Duration::from_secs(46), Duration::from_secs(2))
                .is_empty()
        );
        assert_eq!(
            r2.overdue(t0 + Duration::from_secs(47), Duration::from_secs(2))
                .len(),
            1
        );
        // Nothing buffered: no clip.
        assert_eq!(
            CameraRing::default().begin("x.mp4", at, pre, post, max),
            Begin::Empty
        );
    }

    #[test]
    fn a_new_session_closes_the_open_clips_and_starts_the_buffer_again() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let keep = Duration::from_secs(10);
        let mut r = CameraRing::default();
        for i in 0..100u64 {
            r.push(H264, unit(t0, i, 20), keep, u64::MAX);
        }
        r.begin("a.mp4", t0 + Duration::from_secs(9), keep, keep, keep * 6);
        let mut u = unit(t0, 100, 20);
        u.pts_90k = 0;
        u.keyframe = true;
        let p = r.push(H264, u, keep, u64::MAX);
        assert_eq!(p.closed.len(), 1);
        assert_eq!(r.len(), 1);
        assert!(p.delta < 0);
    }
}
