//! Admission budget: when inference cannot keep up, lower per-camera analysis rates by priority.
//!
//! Demand is what cameras are configured for (each camera reports `(priority, configured fps)` when it
//! asks [`AdmissionBudget::allowed_fps`]); capacity is measured from finished batches (frames per second
//! of busy inference time, times the number of inference threads, times `target_utilisation`). When
//! demand exceeds capacity, the lowest priority level (5) is lowered first, towards `min_fps`, then 4, and
//! so on; priority 1 is touched last. Within the level where the cut ends, every camera keeps its floor
//! and loses the same share of the rest. When capacity recovers, rates go back up.

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
    /// No camera is lowered below this rate (a camera configured lower keeps its own rate).
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn floor(&self, configured: f64) -> f64 {
        configured.min(self.cfg.min_fps.max(0.0))
    }

    fn allowed(&self, st: &State, d: Demand) -> f64 {
        let keep = st.keep.get(&d.priority).copied().unwrap_or(1.0);
        let floor = self.floor(d.configured);
        floor + (d.configured - floor) * keep
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
        let before = st.keep.clone();
        st.keep.clear();
        if let Some(capacity) = self.capacity(st) {
            let demand: f64 = st.levels.values().map(|l| l.0).sum();
            let mut excess = demand - capacity;
            // Lowest priority (largest number) first.
            for (priority, (configured, floor)) in st.levels.iter().rev() {
                if excess <= 0.0 {
                    break;
                }
                let reducible = configured - floor;
                if reducible <= 0.0 {
                    continue;
                }
                if reducible >= excess {
                    st.keep.insert(*priority, 1.0 - excess / reducible);
                    excess = 0.0;
                } else {
                    st.keep.insert(*priority, 0.0);
                    excess -= reducible;
                }
            }
        }
        if st.keep != before {
            // The kept fractions move a little with every measured batch: that is debug detail.
            // A priority starting or ending shedding, or fully shed, is worth an info line.
            let band = |k: Option<&f64>| match k.copied().unwrap_or(1.0) {
                k if k >= 1.0 => 2u8,
                k if k <= 0.0 => 0,
                _ => 1,
            };
            let shift = st
                .keep
                .keys()
                .chain(before.keys())
                .any(|p| band(st.keep.get(p)) != band(before.get(p)));
            let capacity_fps = self.capacity(st);
            let demand_fps = st.levels.values().map(|l| l.0).sum::<f64>();
            if shift {
                tracing::info!(capacity_fps, demand_fps, keep = ?st.keep, "admission budget changed");
            } else {
                tracing::debug!(capacity_fps, demand_fps, keep = ?st.keep, "admission budget adjusted");
            }
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

        // Capacity 2 fps: everyone but priority 1 at the floor; priority 1 cut too.
        b.observe_batch(1, Duration::from_millis(500));
        let high = b.allowed_fps("high0", 1, 2.0);
        assert!((0.2..2.0).contains(&high), "high {high}");
        assert!((b.allowed_fps("mid0", 3, 2.0) - 0.2).abs() < 1e-9);

        // Capacity recovers: rates go back up.
        b.observe_batch(1, Duration::from_millis(10));
        assert_eq!(b.allowed_fps("low0", 5, 2.0), 2.0);
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
        // At 0.1 fps capacity both sit at their floors: 0.1 and min_fps.
        b.observe_batch(1, Duration::from_secs(10));
        assert!((b.allowed_fps("slow", 5, 0.1) - 0.1).abs() < 1e-9);
        assert!((b.allowed_fps("fast", 5, 50.0) - 0.2).abs() < 1e-9);
    }
}
