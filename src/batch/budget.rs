//! Admission budget: when inference cannot keep up, lower per-camera analysis rates by priority.
//!
//! Demand is what cameras are configured for (each camera reports `(priority, configured fps)` when it
//! asks [`AdmissionBudget::allowed_fps`]); capacity is measured from finished batches (frames per second
//! of busy inference time, times the number of inference threads, times `target_utilisation`). When
//! demand exceeds capacity, rates are cut in this order, each step only as far as needed:
//!
//! 1. priorities 5, 4, 3, 2 (lowest first), down to the floor (`min_fps`);
//! 2. the floors of priorities 5, 4, 3, 2 (lowest first), down to 0 — only when the floors of thousands of
//!    cameras do not fit beside priority 1 by themselves;
//! 3. priority 1, down to its floor, then its floor.
//!
//! So priority 1 is touched last, and a camera keeps its floor unless the floors alone exceed capacity.
//! Within the level where a step ends, every camera loses the same share. When capacity recovers, rates
//! go back up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// How the budget behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Inference threads sharing the work (capacity scales with them).
    pub workers: usize,
    /// Aim to keep inference this busy (0..1]; the rest absorbs bursts.
    pub target_utilisation: f64,
    /// Cameras are lowered to this rate before any floor is touched (a camera configured lower keeps its
    /// own rate); floors are cut only when they alone do not fit beside priority 1.
    pub min_fps: f64,
    /// Weight of the newest batch in the moving average of per-frame cost (0..1].
    pub ewma_alpha: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            target_utilisation: 0.9,
            min_fps: 0.1,
            ewma_alpha: 0.2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Demand {
    priority: u8,
    configured: f64,
}

#[derive(Debug, Default)]
struct State {
    cameras: HashMap<String, Demand>,
    /// Per priority: (Σ configured, Σ floor).
    levels: BTreeMap<u8, (f64, f64)>,
    /// Moving average of busy milliseconds per frame; `None` until the first batch.
    ms_per_frame: Option<f64>,
    /// Per priority: share of (configured − floor) a camera keeps, 0..=1. Missing = 1.
    keep: BTreeMap<u8, f64>,
    /// Per priority: share of its floor a camera keeps, 0..=1. Missing = 1.
    keep_floor: BTreeMap<u8, f64>,
    /// Per (priority, floor?): the band last reported (missing = full).
    bands: BTreeMap<(u8, bool), Band>,
    /// Band changes reported so far.
    changes: u64,
}

/// What the budget decided, for the API and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetSnapshot {
    /// Cameras that reported demand.
    pub cameras: usize,
    /// Σ configured rates.
    pub demand_fps: f64,
    /// Measured sustainable rate at the target utilisation; `None` before the first batch.
    pub capacity_fps: Option<f64>,
    /// Σ allowed rates.
    pub admitted_fps: f64,
    /// Moving average of inference cost per frame.
    pub ms_per_frame: Option<f64>,
    /// Per priority level (1 = highest): share of each camera's rate above its floor that it keeps.
    pub keep_by_priority: BTreeMap<u8, f64>,
    /// Per priority level: share of the floor it keeps (below 1 only when the floors do not fit).
    pub floor_kept_by_priority: BTreeMap<u8, f64>,
    /// Times a level started or stopped being cut (or was cut entirely) — the "admission budget
    /// changed" events.
    pub changes: u64,
}

/// Shared by the camera gate (reads [`allowed_fps`](Self::allowed_fps)), the batcher (enforces it) and the
/// inference threads (report batch cost with [`observe_batch`](Self::observe_batch)).
#[derive(Debug)]
pub struct AdmissionBudget {
    cfg: BudgetConfig,
    state: Mutex<State>,
}

impl AdmissionBudget {
    /// A budget with no measurements yet (everything allowed until the first batch is measured).
    pub fn new(cfg: BudgetConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    /// The rate `camera` may be analysed at now; records `(priority, configured)` as its demand.
    /// Equal to `configured` unless inference is behind.
    pub fn allowed_fps(&self, camera: &str, priority: u8, configured: f64) -> f64 {
        let configured = if configured.is_finite() {
            configured.max(0.0)
        } else {
            0.0
        };
        let mut st = self.lock();
        let demand = Demand {
            priority,
            configured,
        };
        if st.cameras.get(camera) != Some(&demand) {
            if let Some(old) = st.cameras.insert(camera.to_owned(), demand) {
                self.remove_level(&mut st, old);
            }
            let floor = self.floor(configured);
            let level = st.levels.entry(priority).or_insert((0.0, 0.0));
            level.0 += configured;
            level.1 += floor;
            self.recompute(&mut st);
        }
        self.allowed(&st, demand)
    }

    /// Forgets a camera's demand (removed or disabled).
    pub fn remove_camera(&self, camera: &str) {
        let mut st = self.lock();
        if let Some(old) = st.cameras.remove(camera) {
            self.remove_level(&mut st, old);
            self.recompute(&mut st);
        }
    }

    /// Reports one finished batch: `frames` frames took `busy` (preprocess + inference + postprocess).
    pub fn observe_batch(&self, frames: usize, busy: Duration) {
        if frames == 0 {
            return;
        }
        let ms = busy.as_secs_f64() * 1000.0 / frames as f64;
        let mut st = self.lock();
        let a = self.cfg.ewma_alpha.clamp(0.01, 1.0);
        st.ms_per_frame = Some(match st.ms_per_frame {
            None => ms,
            Some(prev) => prev + a * (ms - prev),
        });
        self.recompute(&mut st);
    }

    /// Capacity, demand and the per-priority cut now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let st = self.lock();
        let admitted = st.cameras.values().map(|d| self.allowed(&st, *d)).sum();
        BudgetSnapshot {
            cameras: st.cameras.len(),
            demand_fps: st.levels.values().map(|l| l.0).sum(),
            capacity_fps: self.capacity(&st),
            admitted_fps: admitted,
            ms_per_frame: st.ms_per_frame,
            keep_by_priority: st
                .levels
                .keys()
                .map(|p| (*p, st.keep.get(p).copied().unwrap_or(1.0)))
                .collect(),
            floor_kept_by_priority: st
                .levels
                .keys()
                .map(|p| (*p, st.keep_floor.get(p).copied().unwrap_or(1.0)))
                .collect(),
            changes: st.changes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    fn floor(&self, configured: f64) -> f64 {
        configured.min(self.cfg.min_fps.max(0.0))
    }

    fn allowed(&self, st: &State, d: Demand) -> f64 {
        let keep = st.keep.get(&d.priority).copied().unwrap_or(1.0);
        let keep_floor = st.keep_floor.get(&d.priority).copied().unwrap_or(1.0);
        let floor = self.floor(d.configured);
        floor * keep_floor + (d.configured - floor) * keep
    }

    fn remove_level(&self, st: &mut State, old: Demand) {
        let floor = self.floor(old.configured);
        if let Some(level) = st.levels.get_mut(&old.priority) {
            level.0 -= old.configured;
            level.1 -= floor;
            if level.0 <= 1e-9 {
                st.levels.remove(&old.priority);
            }
        }
    }

    fn capacity(&self, st: &State) -> Option<f64> {
        let ms = st.ms_per_frame?;
        if ms <= 0.0 {
            return None;
        }
        Some(
            self.cfg.workers.max(1) as f64 * 1000.0 / ms
                * self.cfg.target_utilisation.clamp(0.05, 1.0),
        )
    }

    fn recompute(&self, st: &mut State) {
        let before = (st.keep.clone(), st.keep_floor.clone());
        st.keep.clear();
        st.keep_floor.clear();
        if let Some(capacity) = self.capacity(st) {
            let demand: f64 = st.levels.values().map(|l| l.0).sum();
            let mut excess = demand - capacity;
            // (priority, the floor rather than the rate above it, reducible fps), in cut order.
            let lower = st.levels.iter().rev().filter(|(p, _)| **p > 1);
            let top = st.levels.iter().rev().filter(|(p, _)| **p <= 1);
            let steps: Vec<(u8, bool, f64)> = lower
                .clone()
                .map(|(p, (c, f))| (*p, false, c - f))
                .chain(lower.map(|(p, (_, f))| (*p, true, *f)))
                .chain(top.clone().map(|(p, (c, f))| (*p, false, c - f)))
                .chain(top.map(|(p, (_, f))| (*p, true, *f)))
                .collect();
            for (priority, floor, reducible) in steps {
                if excess <= 0.0 {
                    break;
                }
                if reducible <= 1e-12 {
                    continue;
                }
                let keep = if reducible >= excess {
                    1.0 - excess / reducible
                } else {
                    0.0
                };
                excess -= reducible - reducible * keep;
                let map = if floor {
                    &mut st.keep_floor
                } else {
                    &mut st.keep
                };
                map.insert(priority, keep);
            }
        }
        if (&st.keep, &st.keep_floor) == (&before.0, &before.1) {
            return;
        }
        // Whether each level sheds none, some or all of it, with hysteresis: the kept share moves a
        // little with every measured batch, and a level hovering at a band's edge must not flap the
        // operator-facing state. Only a band change counts as a change (info, and in
        // `qly_admission_changes_total`); the rest is debug detail.
        let mut shift = false;
        let levels: Vec<u8> = st.levels.keys().copied().collect();
        for p in levels {
            for floor in [false, true] {
                let map = if floor { &st.keep_floor } else { &st.keep };
                let k = map.get(&p).copied().unwrap_or(1.0);
                let prev = st.bands.get(&(p, floor)).copied().unwrap_or(Band::Full);
                let next = prev.next(k);
                if next != prev {
                    st.bands.insert((p, floor), next);
                    shift = true;
                }
            }
        }
        st.bands.retain(|(p, _), _| st.levels.contains_key(p));
        let capacity_fps = self.capacity(st);
        let demand_fps = st.levels.values().map(|l| l.0).sum::<f64>();
        if shift {
            st.changes += 1;
            tracing::info!(capacity_fps, demand_fps, keep = ?st.keep, floor_kept = ?st.keep_floor, "admission budget changed");
        } else {
            tracing::debug!(capacity_fps, demand_fps, keep = ?st.keep, floor_kept = ?st.keep_floor, "admission budget adjusted");
        }
    }
}

/// How much of a level is kept, as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Band {
    /// Nothing cut.
    Full,
    /// Part cut.
    Partial,
    /// All cut.
    Shed,
}

impl Band {
    /// The band for kept share `k`, from `self`: leaving `Full` needs more than 10 % cut, leaving
    /// `Shed` needs 10 % back, and `Partial` becomes `Full` or `Shed` only at exactly 1 or 0.
    fn next(self, k: f64) -> Band {
        match self {
            Band::Full if k <= 0.0 => Band::Shed,
            Band::Full if k < 0.9 => Band::Partial,
            Band::Partial if k >= 1.0 => Band::Full,
            Band::Partial if k <= 0.0 => Band::Shed,
            Band::Shed if k >= 1.0 => Band::Full,
            Band::Shed if k >= 0.1 => Band::Partial,
            b => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> AdmissionBudget {
        AdmissionBudget::new(BudgetConfig {
            workers: 1,
            target_utilisation: 1.0,
            min_fps: 0.2,
            ewma_alpha: 1.0,
        })
    }

    #[test]
    fn a_level_hovering_at_a_band_edge_does_not_count_as_changes() {
        let b = budget();
        // One priority-5 camera at 10 fps, the rest priority 1: demand 20 fps.
        b.allowed_fps("low", 5, 10.0);
        b.allowed_fps("high", 1, 10.0);
        // Capacity alternates 19.5 ↔ 20.5 fps: priority 5 keeps 95 % then all of it, twice a second
        // in the field. Neither is a change an operator needs to hear about.
        for _ in 0..20 {
            b.observe_batch(1, Duration::from_secs_f64(1.0 / 19.5));
            b.observe_batch(1, Duration::from_secs_f64(1.0 / 20.5));
        }
        assert_eq!(b.snapshot().changes, 0);
        // Capacity nearly halves: priority 5 keeps only its floor and 3 % above it: one change.
        b.observe_batch(1, Duration::from_secs_f64(1.0 / 10.5));
        let s = b.snapshot();
        assert!(
            s.keep_by_priority.get(&5).is_some_and(|k| *k < 0.1),
            "{s:?}"
        );
        assert_eq!(s.changes, 1, "{s:?}");
        // Hovering around the new cut (3 % ↔ 8 % kept) does not count either …
        for _ in 0..20 {
            b.observe_batch(1, Duration::from_secs_f64(1.0 / 11.0));
            b.observe_batch(1, Duration::from_secs_f64(1.0 / 10.5));
        }
        assert_eq!(b.snapshot().changes, 1);
        // … and full recovery is one change.
        b.observe_batch(1, Duration::from_millis(10));
        let s = b.snapshot();
        assert_eq!(s.keep_by_priority.get(&5), Some(&1.0), "{s:?}");
        assert_eq!(s.changes, 2);
    }

    #[test]
    fn bands_leave_full_and_shed_only_with_a_margin() {
        assert_eq!(Band::Full.next(0.95), Band::Full);
        assert_eq!(Band::Full.next(0.85), Band::Partial);
        assert_eq!(Band::Partial.next(0.99), Band::Partial);
        assert_eq!(Band::Partial.next(1.0), Band::Full);
        assert_eq!(Band::Partial.next(0.0), Band::Shed);
        assert_eq!(Band::Shed.next(0.05), Band::Shed);
        assert_eq!(Band::Shed.next(0.2), Band::Partial);
        assert_eq!(Band::Full.next(0.0), Band::Shed);
    }

    #[test]
    fn everything_allowed_before_measurements_and_when_capacity_suffices() {
        let b = budget();
        assert_eq!(b.allowed_fps("a", 3, 2.0), 2.0);
        // 100 ms per frame = 10 fps capacity; demand 2 fps.
        b.observe_batch(4, Duration::from_millis(400));
        assert_eq!(b.allowed_fps("a", 3, 2.0), 2.0);
        assert_eq!(b.snapshot().capacity_fps, Some(10.0));
    }

    #[test]
    fn lowest_priority_is_lowered_first() {
        let b = budget();
        for i in 0..4 {
            b.allowed_fps(&format!("high{i}"), 1, 2.0);
            b.allowed_fps(&format!("mid{i}"), 3, 2.0);
            b.allowed_fps(&format!("low{i}"), 5, 2.0);
        }
        // Demand 24 fps; capacity 1000/50 = 20 fps: cut 4 fps from priority 5 only.
        b.observe_batch(1, Duration::from_millis(50));
        let low = b.allowed_fps("low0", 5, 2.0);
        let mid = b.allowed_fps("mid0", 3, 2.0);
        let high = b.allowed_fps("high0", 1, 2.0);
        assert!((low - 1.0).abs() < 1e-9, "low {low}");
        assert_eq!(mid, 2.0);
        assert_eq!(high, 2.0);
        assert!((b.snapshot().admitted_fps - 20.0).abs() < 1e-9);

        // Capacity 10 fps: priority 5 at its floor (0.2), priority 3 cut, priority 1 untouched.
        b.observe_batch(1, Duration::from_millis(100));
        let low = b.allowed_fps("low0", 5, 2.0);
        let mid = b.allowed_fps("mid0", 3, 2.0);
        let high = b.allowed_fps("high0", 1, 2.0);
        assert!((low - 0.2).abs() < 1e-9, "low {low}");
        assert!(mid > 0.2 && mid < 2.0, "mid {mid}");
        assert_eq!(high, 2.0);
        assert!((b.snapshot().admitted_fps - 10.0).abs() < 1e-9);

        // Capacity 2 fps is below priority 1's own 8 fps: the others lose even their floors, and
        // priority 1 keeps all that is left (2 fps over 4 cameras).
        b.observe_batch(1, Duration::from_millis(500));
        let high = b.allowed_fps("high0", 1, 2.0);
        assert!((high - 0.5).abs() < 1e-9, "high {high}");
        assert_eq!(b.allowed_fps("mid0", 3, 2.0), 0.0);
        assert_eq!(b.allowed_fps("low0", 5, 2.0), 0.0);
        assert!((b.snapshot().admitted_fps - 2.0).abs() < 1e-9);

        // Capacity recovers: rates go back up.
        b.observe_batch(1, Duration::from_millis(10));
        assert_eq!(b.allowed_fps("low0", 5, 2.0), 2.0);
    }

    /// 1,300 cameras × a 0.1 fps floor is 130 fps: more than a CPU detector does. The floors give way,
    /// lowest priority first, and priority 1 keeps its configured rate.
    #[test]
    fn floors_that_do_not_fit_give_way_before_priority_1_is_cut() {
        let b = AdmissionBudget::new(BudgetConfig {
            workers: 1,
            target_utilisation: 1.0,
            min_fps: 0.1,
            ewma_alpha: 1.0,
        });
        for i in 0..3 {
            b.allowed_fps(&format!("gate{i}"), 1, 1.0);
        }
        for i in 0..100 {
            b.allowed_fps(&format!("street{i}"), 3, 0.5);
            b.allowed_fps(&format!("field{i}"), 5, 0.5);
        }
        // 10 fps: priority 1 takes 3; the floors (10 fps per level) do not fit in the other 7, so priority 5
        // loses all of its floors and priority 3 keeps 7 of its 10.
        b.observe_batch(1, Duration::from_millis(100));
        assert_eq!(b.allowed_fps("gate0", 1, 1.0), 1.0);
        assert_eq!(b.allowed_fps("field0", 5, 0.5), 0.0);
        let street = b.allowed_fps("street0", 3, 0.5);
        assert!((street - 0.07).abs() < 1e-9, "street {street}");
        let snap = b.snapshot();
        assert!((snap.admitted_fps - 10.0).abs() < 1e-6, "{snap:?}");
        assert_eq!(snap.floor_kept_by_priority[&1], 1.0);
        assert!((snap.floor_kept_by_priority[&3] - 0.7).abs() < 1e-9);
        assert_eq!(snap.floor_kept_by_priority[&5], 0.0);

        // 25 fps: every floor fits (3 + 20), and priority 3 gets 2 fps above its floors before priority 5
        // gets anything above its own.
        b.observe_batch(1, Duration::from_millis(40));
        assert_eq!(b.allowed_fps("gate0", 1, 1.0), 1.0);
        assert!((b.allowed_fps("field0", 5, 0.5) - 0.1).abs() < 1e-9);
        let street = b.allowed_fps("street0", 3, 0.5);
        assert!((street - 0.12).abs() < 1e-9, "street {street}");
    }

    #[test]
    fn removed_cameras_free_budget() {
        let b = budget();
        b.allowed_fps("keep", 1, 5.0);
        b.allowed_fps("go", 5, 10.0);
        b.observe_batch(1, Duration::from_millis(100)); // 10 fps
        assert!(b.allowed_fps("go", 5, 10.0) < 10.0);
        b.remove_camera("go");
        assert_eq!(b.snapshot().demand_fps, 5.0);
        assert_eq!(b.allowed_fps("keep", 1, 5.0), 5.0);
    }

    #[test]
    fn cameras_below_the_floor_keep_their_rate() {
        let b = budget();
        b.allowed_fps("slow", 5, 0.1);
        b.allowed_fps("fast", 5, 50.0);
        b.observe_batch(1, Duration::from_millis(1000)); // 1 fps
        // The slow camera keeps 0.1 fps; the fast one gets the rest of the 1 fps capacity.
        assert!((b.allowed_fps("slow", 5, 0.1) - 0.1).abs() < 1e-9);
        assert!((b.allowed_fps("fast", 5, 50.0) - 0.9).abs() < 1e-9);
        // At 0.3 fps capacity (the floors exactly) both sit at their floors: 0.1 and min_fps.
        b.observe_batch(1, Duration::from_secs_f64(10.0 / 3.0));
        assert!((b.allowed_fps("slow", 5, 0.1) - 0.1).abs() < 1e-6);
        assert!((b.allowed_fps("fast", 5, 50.0) - 0.2).abs() < 1e-6);
        // At 0.1 fps the floors (0.3 fps) do not fit: each keeps the same third of its floor.
        b.observe_batch(1, Duration::from_secs(10));
        assert!((b.allowed_fps("slow", 5, 0.1) - 0.1 / 3.0).abs() < 1e-9);
        assert!((b.allowed_fps("fast", 5, 50.0) - 0.2 / 3.0).abs() < 1e-9);
    }
}
