//! The batcher's state machine: per-camera newest-only queues, round-robin by priority, size and time
//! triggers. Pure: time comes in as arguments, so tests drive it with a manual clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::AdmissionBudget;
use super::{Batch, BatchConfig, BatchCounters, BatchInput, BatchItem, DropReason};

/// A frame may arrive this share of a period before its due time and still be analysed (network and
/// keyframe jitter); the schedule keeps the long-run rate exact.
const RATE_TOLERANCE: f64 = 0.2;
/// Weight of the newest gap in a camera's moving average of frame arrivals.
const ARRIVAL_ALPHA: f64 = 0.2;
/// The demand a camera reports to the budget moves only when its measured rate changes this much.
const DEMAND_HYSTERESIS: f64 = 0.1;

/// What [`Batcher::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Queued.
    Queued,
    /// Queued; the camera's oldest waiting frame was dropped for it (`superseded`).
    Superseded,
    /// Dropped: the camera is over its admission budget (`budget`).
    OverBudget,
    /// Dropped: the camera delivers more frames than its own `analysis_fps` (`rate`), as a camera that
    /// decodes every frame does.
    OverRate,
}

#[derive(Debug)]
struct CamQueue {
    priority: u8,
    queue: VecDeque<BatchItem>,
    in_ring: bool,
    /// Rate limiting: when the next frame is due, and when the last one was let through.
    next_due: Option<Instant>,
    last_admitted: Option<Instant>,
    /// The period `next_due` was scheduled with.
    period: Option<Duration>,
    /// The last frame's arrival and the moving average of gaps (seconds).
    last_arrival: Option<Instant>,
    gap_s: Option<f64>,
    /// The rate reported to the budget as this camera's demand.
    demand: Option<f64>,
    /// The budget cut this camera to 0 at its last frame.
    cut: bool,
    /// Its configured rate at its last frame.
    configured: f64,
}

impl CamQueue {
    fn new(priority: u8, depth: usize) -> Self {
        Self {
            priority,
            queue: VecDeque::with_capacity(depth),
            in_ring: false,
            next_due: None,
            last_admitted: None,
            period: None,
            last_arrival: None,
            gap_s: None,
            demand: None,
            cut: false,
            configured: 0.0,
        }
    }

    /// Updates the arrival rate; returns the demand to report: the configured rate, or the rate frames
    /// actually come at when that is lower (a keyframe-only camera with long GOPs).
    fn demand(&mut self, configured: f64, now: Instant) -> f64 {
        if let Some(last) = self.last_arrival {
            // A camera back after an outage: its gap says nothing about its rate.
            let cap = 4.0 / configured.max(0.01);
            let gap = now.saturating_duration_since(last).as_secs_f64().min(cap);
            self.gap_s = Some(match self.gap_s {
                None => gap,
                Some(g) => g + ARRIVAL_ALPHA * (gap - g),
            });
        }
        self.last_arrival = Some(now);
        let measured = match self.gap_s {
            Some(g) if g > 1e-6 => configured.min(1.0 / g),
            _ => configured,
        };
        match self.demand {
            Some(d) if (measured - d).abs() <= DEMAND_HYSTERESIS * d && d <= configured => d,
            _ => {
                self.demand = Some(measured);
                measured
            }
        }
    }

    /// Whether a frame arriving `now` fits the camera's rate `fps`; advances the schedule if it does.
    fn due(&mut self, fps: f64, now: Instant) -> bool {
        if fps <= 0.0 {
            self.cut = true;
            return false;
        }
        let period = Duration::from_secs_f64(1.0 / fps);
        if self.cut {
            // Back from a cut to 0: the first frame is one period away, not now. When the budget
            // hovers at the edge of a floor (restored, cut, restored …), admitting at once would
            // let every camera of that priority through at each restoration, above the priority
            // the budget protects.
            self.cut = false;
            self.next_due = Some(now + period);
            self.last_admitted = Some(now);
            self.period = Some(period);
            return false;
        }
        // The rate went down since the slot was scheduled (the budget cut it): the next slot is no
        // earlier than one new period after the last frame. Without this a camera cut to a sliver of
        // its floor (a period of minutes, so a tolerance of minutes) went through at the old, faster
        // slot, and a budget hovering at the edge of a floor let the lowest priority through more
        // often than the priorities above it.
        if let (Some(due), Some(last), Some(old)) = (self.next_due, self.last_admitted, self.period)
            && period > old.mul_f64(1.0 + RATE_TOLERANCE)
        {
            self.next_due = Some(due.max(last + period));
        }
        // The rate went up since the last frame (the budget recovered): the next slot is no later than
        // one new period after it, not where the old, slower schedule put it. (On an unchanged schedule
        // the next slot is at most (1 + tolerance) periods after the last frame.)
        if let (Some(due), Some(last)) = (self.next_due, self.last_admitted)
            && due > last + period.mul_f64(1.0 + 2.0 * RATE_TOLERANCE)
        {
            self.next_due = Some(last + period);
        }
        if let Some(due) = self.next_due
            && now + period.mul_f64(RATE_TOLERANCE) < due
        {
            return false;
        }
        // On schedule: the next slot follows this one; late by more than a period: restart from now.
        self.next_due = Some(match self.next_due {
            Some(due) if now < due + period => due + period,
            _ => now + period,
        });
        self.last_admitted = Some(now);
        self.period = Some(period);
        true
    }
}

/// Cross-camera batcher core.
#[derive(Debug)]
pub struct Batcher {
    cfg: BatchConfig,
    cams: HashMap<Arc<str>, CamQueue>,
    /// Cameras with waiting frames, per priority (1 = highest, served first), in round-robin order.
    rings: BTreeMap<u8, VecDeque<Arc<str>>>,
    pending: usize,
    /// When the batch now filling got its first frame.
    open_since: Option<Instant>,
    budget: Option<Arc<AdmissionBudget>>,
    counters: Arc<BatchCounters>,
    /// When cameras that stopped sending were last looked for.
    last_sweep: Option<Instant>,
}

/// A camera that sent nothing for this long, or four of its frame intervals if longer, no longer
/// counts as demand (an idle camera, one gone offline or removed): the budget is not cut for it.
const STALE_AFTER: Duration = Duration::from_secs(10);

impl Batcher {
    /// An empty batcher.
    pub fn new(
        cfg: BatchConfig,
        budget: Option<Arc<AdmissionBudget>>,
        counters: Arc<BatchCounters>,
    ) -> Self {
        Self {
            cfg,
            cams: HashMap::new(),
            rings: BTreeMap::new(),
            pending: 0,
            open_since: None,
            budget,
            counters,
            last_sweep: None,
        }
    }

    /// Forgets cameras that stopped sending (at most once a second).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let stale: Vec<Arc<str>> = self
            .cams
            .iter()
            .filter(|(_, c)| {
                let quiet = STALE_AFTER.max(Duration::from_secs_f64(4.0 / c.configured.max(0.01)));
                c.queue.is_empty()
                    && !c.in_ring
                    && c.last_arrival
                        .is_some_and(|t| now.saturating_duration_since(t) >= quiet)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for camera in stale {
            self.cams.remove(&camera);
            if let Some(b) = &self.budget {
                b.remove_camera(&camera);
            }
        }
    }

    /// The counters this batcher updates.
    pub fn counters(&self) -> Arc<BatchCounters> {
        self.counters.clone()
    }

    /// Frames waiting.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Offers a frame at `now`.
    pub fn push(&mut self, input: BatchInput, now: Instant) -> Admission {
        self.counters.count_submitted();
        self.sweep(now);
        let camera = input.frame.camera.clone();
        let depth = self.cfg.queue_depth.max(1);
        let cam = self
            .cams
            .entry(camera.clone())
            .or_insert_with(|| CamQueue::new(input.priority, depth));
        let configured = if input.configured_fps.is_finite() {
            input.configured_fps.max(0.0)
        } else {
            0.0
        };
        cam.configured = configured;
        let demand = cam.demand(configured, now);
        // The rate this camera may be analysed at: its own, or less when the budget cuts it.
        let (fps, reason) = match &self.budget {
            Some(budget) => {
                let allowed = budget.allowed_fps(&camera, input.priority, demand);
                if allowed + 1e-9 < demand {
                    (allowed, DropReason::Budget)
                } else {
                    (configured, DropReason::Rate)
                }
            }
            None => (configured, DropReason::Rate),
        };
        if !cam.due(fps, now) {
            self.counters.count_drop(&camera, reason, 1);
            return match reason {
                DropReason::Budget => {
                    tracing::trace!(camera_id = %camera, "frame dropped: over admission budget");
                    Admission::OverBudget
                }
                _ => Admission::OverRate,
            };
        }
        if cam.priority != input.priority {
            if cam.in_ring
                && let Some(ring) = self.rings.get_mut(&cam.priority)
            {
                ring.retain(|c| *c != camera);
                cam.in_ring = false;
            }
            cam.priority = input.priority;
        }
        let mut outcome = Admission::Queued;
        if cam.queue.len() >= depth {
            cam.queue.pop_front();
            outcome = Admission::Superseded;
        } else {
            self.pending += 1;
        }
        cam.queue.push_back(BatchItem {
            frame: input.frame,
            priority: input.priority,
            enqueued_at: now,
        });
        if !cam.in_ring {
            cam.in_ring = true;
            self.rings
                .entry(cam.priority)
                .or_default()
                .push_back(camera.clone());
        }
        if outcome == Admission::Superseded {
            self.counters.count_drop(&camera, DropReason::Superseded, 1);
            tracing::trace!(camera_id = %camera, "older frame superseded");
        }
        self.open_since.get_or_insert(now);
        outcome
    }

    /// When the batch now filling must leave, if any frame waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open_since.map(|t| t + self.cfg.max_wait)
    }

    /// A batch, if one is due at `now`: `max_batch` frames wait, or `max_wait` has passed since the first.
    pub fn poll(&mut self, now: Instant) -> Option<Batch> {
        let due = self.pending >= self.cfg.max_batch.max(1)
            || self.next_deadline().is_some_and(|d| now >= d);
        if self.pending == 0 || !due {
            return None;
        }
        self.form(now)
    }

    /// A batch of whatever waits, due or not (shutdown drain); `None` when nothing waits.
    pub fn flush(&mut self, now: Instant) -> Option<Batch> {
        if self.pending == 0 {
            return None;
        }
        self.form(now)
    }

    /// Drops everything waiting, counting it under `reason`; returns how many frames.
    pub fn drop_all(&mut self, reason: DropReason) -> usize {
        let mut n = 0;
        for (camera, cam) in &mut self.cams {
            if !cam.queue.is_empty() {
                self.counters
                    .count_drop(camera, reason, cam.queue.len() as u64);
                n += cam.queue.len();
                cam.queue.clear();
            }
            cam.in_ring = false;
        }
        self.rings.clear();
        self.pending = 0;
        self.open_since = None;
        n
    }

    fn form(&mut self, now: Instant) -> Option<Batch> {
        let opened_at = self.open_since.unwrap_or(now);
        let max = self.cfg.max_batch.max(1);
        let mut items: Vec<BatchItem> = Vec::with_capacity(max.min(self.pending));
        // With `one_size`, the first frame taken sets the batch's picture size.
        let mut size: Option<(u32, u32)> = None;
        for ring in self.rings.values_mut() {
            // Cameras whose next frame has another size: they keep their place for the next batch.
            let mut other_size = Vec::new();
            while items.len() < max {
                let Some(camera) = ring.pop_front() else {
                    break;
                };
                let Some(cam) = self.cams.get_mut(&camera) else {
                    continue;
                };
                if self.cfg.one_size
                    && let Some(front) = cam.queue.front()
                {
                    let s = (front.frame.width, front.frame.height);
                    if *size.get_or_insert(s) != s {
                        other_size.push(camera);
                        continue;
                    }
                }
                if let Some(item) = cam.queue.pop_front() {
                    items.push(item);
                    self.pending -= 1;
                }
                if cam.queue.is_empty() {
                    cam.in_ring = false;
                } else {
                    ring.push_back(camera);
                }
            }
            for camera in other_size.into_iter().rev() {
                ring.push_front(camera);
            }
            if items.len() >= max {
                break;
            }
        }
        self.rings.retain(|_, r| !r.is_empty());
        // What is left has been waiting since its own arrival: the next batch's clock starts there.
        self.open_since = if self.pending == 0 {
            None
        } else {
            self.cams
                .values()
                .filter_map(|c| c.queue.front().map(|i| i.enqueued_at))
                .min()
        };
        if items.is_empty() {
            return None;
        }
        self.counters.count_batch(&items);
        Some(Batch {
            items,
            opened_at,
            formed_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::batch::budget::BudgetConfig;
    use crate::clock::{Clock, ManualClock};
    use crate::decode::{DecodedFrame, PixelFormat};

    fn frame(camera: &str, pts: i64) -> Arc<DecodedFrame> {
        Arc::new(DecodedFrame {
            camera: camera.into(),
            pts_90k: pts,
            arrival: SystemTime::UNIX_EPOCH,
            decoded_at: SystemTime::UNIX_EPOCH,
            width: 2,
            height: 2,
            stride: 6,
            format: PixelFormat::Bgr,
            data: vec![0; 12],
        })
    }

    fn input(camera: &str, pts: i64, priority: u8) -> BatchInput {
        BatchInput {
            frame: frame(camera, pts),
            priority,
            // Above any rate these tests send at: only the batcher's own queueing is under test.
            configured_fps: 1000.0,
        }
    }

    /// Frames of one camera are at least this far apart (the 1000 fps configured above).
    const TICK: Duration = Duration::from_millis(1);

    fn batcher(max_batch: usize, depth: usize) -> (Batcher, Arc<BatchCounters>) {
        let counters = Arc::new(BatchCounters::default());
        let cfg = BatchConfig {
            max_batch,
            max_wait: Duration::from_millis(50),
            queue_depth: depth,
            one_size: false,
        };
        (Batcher::new(cfg, None, counters.clone()), counters)
    }

    fn cams(b: &Batch) -> Vec<String> {
        b.items.iter().map(|i| i.frame.camera.to_string()).collect()
    }

    #[test]
    fn size_trigger_emits_a_full_batch_at_once() {
        let clock = ManualClock::default();
        let (mut b, counters) = batcher(4, 1);
        for (i, c) in ["a", "b", "c"].iter().enumerate() {
            b.push(input(c, i as i64, 3), clock.now());
            assert!(b.poll(clock.now()).is_none(), "not full yet");
        }
        b.push(input("d", 3, 3), clock.now());
        let batch = b.poll(clock.now()).expect("full batch");
        assert_eq!(cams(&batch), ["a", "b", "c", "d"]);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.next_deadline(), None);
        assert_eq!(counters.snapshot().batches, 1);
    }

    #[test]
    fn time_trigger_starts_with_the_first_frame() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(8, 1);
        let t0 = clock.now();
        b.push(input("a", 0, 3), t0);
        clock.advance(Duration::from_millis(30));
        b.push(input("b", 0, 3), clock.now());
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(50)));
        clock.advance(Duration::from_millis(19));
        assert!(b.poll(clock.now()).is_none(), "49 ms after the first frame");
        clock.advance(Duration::from_millis(1));
        let batch = b.poll(clock.now()).expect("50 ms after the first frame");
        assert_eq!(cams(&batch), ["a", "b"]);
        assert_eq!(batch.opened_at, t0);
        // The next batch's timer starts with its own first frame, not with the old one.
        clock.advance(Duration::from_millis(500));
        let t1 = clock.now();
        b.push(input("c", 1, 3), t1);
        assert_eq!(b.next_deadline(), Some(t1 + Duration::from_millis(50)));
        assert!(b.poll(t1).is_none());
    }

    #[test]
    fn a_flooding_camera_cannot_starve_others() {
        let clock = ManualClock::default();
        let (mut b, counters) = batcher(4, 2);
        // "flood" sends 100 frames between every frame of the others.
        for round in 0..3i64 {
            for i in 0..100 {
                clock.advance(TICK);
                b.push(input("flood", round * 100 + i, 3), clock.now());
            }
            for c in ["a", "b", "c"] {
                b.push(input(c, round, 3), clock.now());
            }
        }
        // Newest-only queues: flood holds 2 frames, a/b/c hold their 2 newest.
        assert_eq!(b.pending(), 8);
        let first = b.poll(clock.now()).expect("full");
        let second = b.poll(clock.now()).expect("full");
        assert_eq!(cams(&first), ["flood", "a", "b", "c"]);
        assert_eq!(cams(&second), ["flood", "a", "b", "c"]);
        // The flood camera's frames that got through are its newest two.
        assert_eq!(first.items[0].frame.pts_90k, 298);
        assert_eq!(second.items[0].frame.pts_90k, 299);
        let s = counters.snapshot();
        assert_eq!(s.dropped.superseded, 300 - 2 + 3);
        assert_eq!(s.by_camera["flood"].dropped.superseded, 298);
        assert_eq!(s.by_camera["a"].dropped.superseded, 1);
        assert_eq!(s.by_camera["flood"].batched, 2);
        assert_eq!(s.dropped.rate, 0);
    }

    #[test]
    fn round_robin_continues_across_batches() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(2, 2);
        for c in ["a", "b", "c"] {
            b.push(input(c, 0, 3), clock.now());
            b.push(input(c, 1, 3), clock.now() + TICK);
        }
        let order: Vec<String> = std::iter::from_fn(|| b.poll(clock.now()))
            .flat_map(|batch| cams(&batch))
            .collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn priority_cameras_go_first() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(3, 1);
        b.push(input("low", 0, 5), clock.now());
        b.push(input("mid", 0, 3), clock.now());
        b.push(input("top", 0, 1), clock.now());
        b.push(input("mid2", 0, 3), clock.now());
        let first = b.poll(clock.now()).expect("full");
        assert_eq!(cams(&first), ["top", "mid", "mid2"]);
        clock.advance(Duration::from_millis(50));
        let second = b.poll(clock.now()).expect("timer");
        assert_eq!(cams(&second), ["low"]);
    }

    #[test]
    fn leftovers_keep_their_own_waiting_time() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(2, 1);
        let t0 = clock.now();
        b.push(input("a", 0, 3), t0);
        clock.advance(Duration::from_millis(10));
        b.push(input("b", 0, 1), clock.now());
        let t2 = clock.now() + Duration::from_millis(10);
        clock.advance(Duration::from_millis(10));
        b.push(input("c", 0, 1), t2);
        // b and c (priority 1) leave; a waited since t0, so it is due at t0 + 50 ms.
        let batch = b.poll(clock.now()).expect("full");
        assert_eq!(cams(&batch), ["b", "c"]);
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(50)));
    }

    #[test]
    fn budget_drops_frames_above_the_allowed_rate() {
        let clock = ManualClock::default();
        let counters = Arc::new(BatchCounters::default());
        let budget = Arc::new(AdmissionBudget::new(BudgetConfig {
            workers: 1,
            target_utilisation: 1.0,
            min_fps: 0.1,
            ewma_alpha: 1.0,
        }));
        let cfg = BatchConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(50),
            queue_depth: 1,
            one_size: false,
        };
        let mut b = Batcher::new(cfg, Some(budget.clone()), counters.clone());
        let cam = |name: &str, prio: u8| BatchInput {
            frame: frame(name, 0),
            priority: prio,
            configured_fps: 2.0,
        };
        // Register demand: 2 fps at priority 1 and 2 fps at priority 5; capacity 3 fps.
        b.push(cam("high", 1), clock.now());
        b.push(cam("low", 5), clock.now());
        while b.flush(clock.now()).is_some() {}
        budget.observe_batch(1, Duration::from_millis(333));
        assert!(budget.allowed_fps("low", 5, 2.0) < 1.1);
        let mut admitted = HashMap::<&str, u32>::new();
        // 10 s of frames at 2 fps from each camera.
        for _ in 0..20 {
            clock.advance(Duration::from_millis(500));
            for (name, prio) in [("high", 1), ("low", 5)] {
                if b.push(cam(name, prio), clock.now()) != Admission::OverBudget {
                    *admitted.entry(name).or_default() += 1;
                }
            }
            while b.flush(clock.now()).is_some() {}
        }
        assert_eq!(admitted["high"], 20, "priority 1 keeps its full rate");
        assert!(admitted["low"] <= 11, "low admitted {}", admitted["low"]);
        let s = counters.snapshot();
        assert_eq!(s.dropped.budget, u64::from(20 - admitted["low"]));
        assert_eq!(s.by_camera["low"].dropped.budget, s.dropped.budget);
        // And the frame that registered its demand.
        assert_eq!(s.by_camera["low"].batched, u64::from(admitted["low"]) + 1);
    }

    fn budgeted(min_fps: f64) -> (Batcher, Arc<AdmissionBudget>, Arc<BatchCounters>) {
        let counters = Arc::new(BatchCounters::default());
        let budget = Arc::new(AdmissionBudget::new(BudgetConfig {
            workers: 1,
            target_utilisation: 1.0,
            min_fps,
            ewma_alpha: 1.0,
        }));
        let cfg = BatchConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(50),
            queue_depth: 1,
            one_size: false,
        };
        let b = Batcher::new(cfg, Some(budget.clone()), counters.clone());
        (b, budget, counters)
    }

    /// Sends `fps` frames per second from each camera for `secs`; returns frames admitted per camera.
    fn feed(
        b: &mut Batcher,
        clock: &ManualClock,
        cams: &[(&'static str, u8, f64)],
        fps: f64,
        secs: f64,
    ) -> HashMap<&'static str, u32> {
        let mut admitted = HashMap::new();
        let step = Duration::from_secs_f64(1.0 / fps);
        for _ in 0..(secs * fps).round() as u32 {
            clock.advance(step);
            for (name, priority, configured) in cams {
                let input = BatchInput {
                    frame: frame(name, 0),
                    priority: *priority,
                    configured_fps: *configured,
                };
                let a = b.push(input, clock.now());
                let n = admitted.entry(*name).or_default();
                if matches!(a, Admission::Queued | Admission::Superseded) {
                    *n += 1;
                }
            }
            while b.flush(clock.now()).is_some() {}
        }
        admitted
    }

    /// A camera that decodes every frame (25 fps) is analysed at its own `analysis_fps`, with or without
    /// a budget, and the frames in between are counted as `rate`, not `budget`.
    #[test]
    fn every_frame_cameras_are_analysed_at_their_own_rate() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(8, 1);
        let got = feed(
            &mut b,
            &clock,
            &[("gop", 1, 2.0), ("slow", 3, 0.5)],
            25.0,
            20.0,
        );
        assert!(
            (39..=41).contains(&got["gop"]),
            "2 fps × 20 s: {}",
            got["gop"]
        );
        assert!(
            (10..=11).contains(&got["slow"]),
            "0.5 fps × 20 s: {}",
            got["slow"]
        );
        let s = b.counters().snapshot();
        assert_eq!(s.dropped.rate, 1000 - u64::from(got["gop"] + got["slow"]));
        assert_eq!(s.dropped.budget, 0);

        // With a budget that has room (100 fps), the same.
        let (mut b, budget, counters) = budgeted(0.1);
        budget.observe_batch(1, Duration::from_millis(10));
        let got = feed(&mut b, &clock, &[("gop", 1, 2.0)], 25.0, 20.0);
        assert!((39..=41).contains(&got["gop"]), "{}", got["gop"]);
        assert_eq!(counters.snapshot().dropped.budget, 0);
    }

    /// `min_fps = 0`: a camera the budget cuts to nothing gets nothing (it used to get everything).
    #[test]
    fn a_camera_cut_to_zero_is_not_analysed() {
        let clock = ManualClock::default();
        let (mut b, budget, counters) = budgeted(0.0);
        feed(
            &mut b,
            &clock,
            &[("top", 1, 2.0), ("low", 5, 2.0)],
            2.0,
            1.0,
        );
        // Capacity 2 fps: all of it for priority 1.
        budget.observe_batch(1, Duration::from_millis(500));
        let got = feed(
            &mut b,
            &clock,
            &[("top", 1, 2.0), ("low", 5, 2.0)],
            2.0,
            10.0,
        );
        assert_eq!(got["low"], 0);
        assert_eq!(got["top"], 20);
        assert_eq!(counters.snapshot().by_camera["low"].dropped.budget, 20);
    }

    /// A camera cut to a trickle while capacity was low is analysed at its floor again as soon as the
    /// budget recovers, not when the trickle's schedule says (a 60 s run once saw a priority get nothing).
    #[test]
    fn a_camera_speeds_up_as_soon_as_the_budget_recovers() {
        let clock = ManualClock::default();
        let (mut b, budget, _) = budgeted(0.05);
        let cams = [("top", 1, 2.0), ("low", 4, 2.0)];
        feed(&mut b, &clock, &cams, 2.0, 1.0);
        // 2.01 fps of capacity beside priority 1's 2 fps: "low" keeps a fifth of its floor, one frame
        // per 100 s.
        budget.observe_batch(1, Duration::from_secs_f64(1.0 / 2.01));
        let got = feed(&mut b, &clock, &cams, 2.0, 10.0);
        assert_eq!(got["low"], 0, "the next frame is 100 s after the last");
        // 2.5 fps: priority 1's 2 fps plus 0.5 for "low".
        budget.observe_batch(1, Duration::from_millis(400));
        let got = feed(&mut b, &clock, &cams, 2.0, 20.0);
        assert!((9..=11).contains(&got["low"]), "low {}", got["low"]);
    }

    /// A keyframe-only camera configured for 1 fps whose keyframes come every 2 s demands 0.5 fps of the
    /// budget, not 1.
    #[test]
    fn demand_is_what_a_camera_actually_sends() {
        let clock = ManualClock::default();
        let (mut b, budget, _) = budgeted(0.1);
        feed(&mut b, &clock, &[("kf", 3, 1.0)], 0.5, 30.0);
        let demand = budget.snapshot().demand_fps;
        assert!((demand - 0.5).abs() < 0.05, "demand {demand}");
        // It speeds up to 1 keyframe per second: the demand follows, capped at the configured rate.
        feed(&mut b, &clock, &[("kf", 3, 1.0)], 4.0, 30.0);
        assert_eq!(budget.snapshot().demand_fps, 1.0);
    }

    /// Cameras that stop sending (idle, offline) stop counting as demand: the others are not cut for
    /// them.
    #[test]
    fn cameras_that_stop_sending_leave_the_demand() {
        let clock = ManualClock::default();
        let (mut b, budget, _) = budgeted(0.1);
        feed(&mut b, &clock, &[("a", 3, 1.0), ("b", 3, 1.0)], 1.0, 20.0);
        assert_eq!(budget.snapshot().demand_fps, 2.0);
        // b goes quiet; a goes on.
        feed(&mut b, &clock, &[("a", 3, 1.0)], 1.0, 15.0);
        let snap = budget.snapshot();
        assert_eq!(snap.demand_fps, 1.0, "{snap:?}");
        assert_eq!(snap.cameras, 1);
        // b is back: counted again at once.
        feed(&mut b, &clock, &[("a", 3, 1.0), ("b", 3, 1.0)], 1.0, 2.0);
        assert_eq!(budget.snapshot().demand_fps, 2.0);
    }

    #[test]
    fn one_size_batches_hold_one_picture_size_and_others_keep_their_turn() {
        let cfg = BatchConfig {
            max_batch: 4,
            max_wait: Duration::from_millis(50),
            queue_depth: 1,
            one_size: true,
        };
        let mut b = Batcher::new(cfg, None, Arc::new(BatchCounters::default()));
        let clock = ManualClock::default();
        let sized = |camera: &str, w: u32| {
            let mut f = (*frame(camera, 0)).clone();
            f.width = w;
            BatchInput {
                frame: Arc::new(f),
                priority: 3,
                configured_fps: 100.0,
            }
        };
        for (c, w) in [("a", 384), ("b", 704), ("c", 384), ("d", 704), ("e", 384)] {
            b.push(sized(c, w), clock.now());
        }
        let first = b.flush(clock.now()).unwrap();
        assert_eq!(cams(&first), ["a", "c", "e"], "the first frame's size only");
        let second = b.flush(clock.now()).unwrap();
        assert_eq!(cams(&second), ["b", "d"], "the others, in their order");
        assert!(b.flush(clock.now()).is_none());
    }

    #[test]
    fn a_camera_back_from_a_cut_waits_one_period() {
        let mut cam = CamQueue::new(5, 1);
        let t0 = Instant::now();
        assert!(cam.due(1.0, t0), "a new camera goes at once");
        assert!(!cam.due(0.0, t0 + Duration::from_secs(5)), "cut to 0");
        // Restored: not at once, but one period (10 s at 0.1 fps) after the restoration.
        let back = t0 + Duration::from_secs(6);
        assert!(!cam.due(0.1, back));
        assert!(!cam.due(0.1, back + Duration::from_secs(5)));
        assert!(cam.due(0.1, back + Duration::from_secs(10)));
        // Flapping cut/restored faster than the period lets nothing through.
        let mut cam = CamQueue::new(5, 1);
        assert!(cam.due(1.0, t0));
        let mut admitted = 0;
        for i in 1..60u64 {
            let fps = if i % 2 == 1 { 0.0 } else { 0.1 };
            admitted += usize::from(cam.due(fps, t0 + Duration::from_secs(i)));
        }
        assert_eq!(
            admitted, 0,
            "a floor restored for a second at a time admits nothing"
        );
    }

    /// A budget hovering at the edge of a floor (the floor kept, then a sliver of it, every other
    /// second) gives the camera no more than its floor: a sliver's long period does not let the next
    /// frame through early (CI: priority 5 got twice the rate of priorities 2–4 under overload).
    #[test]
    fn a_rate_cut_to_a_sliver_is_not_admitted_early() {
        let mut cam = CamQueue::new(5, 1);
        let t0 = Instant::now();
        let mut admitted = 0;
        for i in 0..600u64 {
            let fps = if i % 2 == 0 { 0.05 } else { 0.001 };
            admitted += usize::from(cam.due(fps, t0 + Duration::from_secs(i)));
        }
        // At most the floor (30 frames in 600 s) plus the early-arrival tolerance (a fifth of a
        // period) on each slot; it was 300.
        assert!(
            admitted <= 38,
            "600 s at most at the floor (0.05 fps) and its tolerance: {admitted} frames"
        );
        // A rate cut for good applies from the last frame on.
        let mut cam = CamQueue::new(5, 1);
        assert!(cam.due(1.0, t0));
        assert!(!cam.due(0.01, t0 + Duration::from_secs(2)));
        assert!(!cam.due(0.01, t0 + Duration::from_secs(70)));
        assert!(cam.due(0.01, t0 + Duration::from_secs(81)));
    }

    #[test]
    fn drop_all_counts_shutdown() {
        let clock = ManualClock::default();
        let (mut b, counters) = batcher(8, 2);
        b.push(input("a", 0, 3), clock.now());
        b.push(input("a", 1, 3), clock.now() + TICK);
        b.push(input("b", 0, 3), clock.now());
        assert_eq!(b.drop_all(DropReason::Shutdown), 3);
        assert_eq!(b.pending(), 0);
        assert!(b.flush(clock.now()).is_none());
        assert_eq!(counters.snapshot().dropped.shutdown, 3);
    }

    #[test]
    fn priority_change_moves_the_camera() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(2, 1);
        b.push(input("x", 0, 5), clock.now());
        b.push(input("y", 0, 3), clock.now());
        b.push(input("x", 1, 1), clock.now() + TICK);
        let batch = b.poll(clock.now() + TICK).expect("full");
        assert_eq!(cams(&batch), ["x", "y"]);
        assert_eq!(batch.items[0].frame.pts_90k, 1);
    }
}
