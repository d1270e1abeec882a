//! The batcher's state machine: per-camera newest-only queues, round-robin by priority, size and time
//! triggers. Pure: time comes in as arguments, so tests drive it with a manual clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::budget::AdmissionBudget;
use super::{Batch, BatchConfig, BatchCounters, BatchInput, BatchItem, DropReason};

/// A frame's budget check lets through arrivals this much earlier than `1 / allowed_fps` (gate jitter).
const BUDGET_SLACK: f64 = 0.8;

/// What [`Batcher::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Queued.
    Queued,
    /// Queued; the camera's oldest waiting frame was dropped for it (`superseded`).
    Superseded,
    /// Dropped: the camera is over its admission budget (`budget`).
    OverBudget,
}

#[derive(Debug)]
struct CamQueue {
    priority: u8,
    queue: VecDeque<BatchItem>,
    in_ring: bool,
    last_admitted: Option<Instant>,
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
}

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
        let camera = input.frame.camera.clone();
        if self.over_budget(&camera, input.priority, input.configured_fps, now) {
            self.counters.count_drop(&camera, DropReason::Budget, 1);
            tracing::trace!(camera_id = %camera, "frame dropped: over admission budget");
            return Admission::OverBudget;
        }
        let depth = self.cfg.queue_depth.max(1);
        let cam = self.cams.entry(camera.clone()).or_insert_with(|| CamQueue {
            priority: input.priority,
            queue: VecDeque::with_capacity(depth),
            in_ring: false,
            last_admitted: None,
        });
        cam.last_admitted = Some(now);
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

    fn over_budget(&self, camera: &Arc<str>, priority: u8, configured: f64, now: Instant) -> bool {
        let Some(budget) = &self.budget else {
            return false;
        };
        let allowed = budget.allowed_fps(camera, priority, configured);
        if !(allowed > 0.0 && allowed + 1e-9 < configured) {
            return false;
        }
        let Some(last) = self.cams.get(camera).and_then(|c| c.last_admitted) else {
            return false;
        };
        now.saturating_duration_since(last).as_secs_f64() < BUDGET_SLACK / allowed
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
        let mut items = Vec::with_capacity(max.min(self.pending));
        for ring in self.rings.values_mut() {
            while items.len() < max {
                let Some(camera) = ring.pop_front() else {
                    break;
                };
                let Some(cam) = self.cams.get_mut(&camera) else {
                    continue;
                };
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
        self.counters.count_batch(items.len());
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
            configured_fps: 1.0,
        }
    }

    fn batcher(max_batch: usize, depth: usize) -> (Batcher, Arc<BatchCounters>) {
        let counters = Arc::new(BatchCounters::default());
        let cfg = BatchConfig {
            max_batch,
            max_wait: Duration::from_millis(50),
            queue_depth: depth,
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
        assert_eq!(s.dropped_by_camera["flood"].superseded, 298);
        assert_eq!(s.dropped_by_camera["a"].superseded, 1);
    }

    #[test]
    fn round_robin_continues_across_batches() {
        let clock = ManualClock::default();
        let (mut b, _) = batcher(2, 2);
        for c in ["a", "b", "c"] {
            b.push(input(c, 0, 3), clock.now());
            b.push(input(c, 1, 3), clock.now());
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
        assert_eq!(s.dropped_by_camera["low"].budget, s.dropped.budget);
    }

    #[test]
    fn drop_all_counts_shutdown() {
        let clock = ManualClock::default();
        let (mut b, counters) = batcher(8, 2);
        b.push(input("a", 0, 3), clock.now());
        b.push(input("a", 1, 3), clock.now());
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
        b.push(input("x", 1, 1), clock.now());
        let batch = b.poll(clock.now()).expect("full");
        assert_eq!(cams(&batch), ["x", "y"]);
        assert_eq!(batch.items[0].frame.pts_90k, 1);
    }
}
