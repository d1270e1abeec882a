//! Batch: in, [`BatchInput`] frames from every camera (bounded crossbeam channel, drained at once); out,
//! [`Batch`]es on a bounded [`channel`] to the inference threads. A batch leaves when it holds
//! `max_batch` frames or `max_wait` after its first frame. When the inference channel is full the batcher
//! holds frames in per-camera newest-only queues (depth 1–2): a newer frame of the same camera replaces the
//! oldest waiting one (dropped, `superseded`), so nothing grows and every camera's newest picture wins.
//!
//! Rate: each camera is analysed at its own `analysis_fps` on a steady schedule; a camera that decodes
//! every frame (25 fps for tracking and health) has the frames in between dropped as `rate`. The
//! [`AdmissionBudget`] lowers per-camera rates, lowest priority first, when measured inference capacity
//! is below demand (the rate each camera actually sends, at most its `analysis_fps`); the batcher
//! enforces it (`budget` drops). Fairness: cameras with waiting frames take turns (round-robin),
//! priority 1 before 2 … 5; a camera holds at most `queue_depth` waiting frames. Frames still waiting
//! when the inference side has gone are dropped as `shutdown`. Every drop is counted by reason and
//! camera, and every frame sent by camera (`qly_camera_batched_total`).
//!
//! Time goes through [`Clock`]; [`Batcher`] is a pure state machine, [`BatchStage`] its thread
//! (`batch-<model>`).

mod budget;
mod queue;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, Select, Sender, TrySendError};
use serde::Serialize;

pub use budget::{AdmissionBudget, BudgetConfig, BudgetSnapshot};
pub use queue::{Admission, Batcher};

use crate::clock::Clock;
use crate::decode::DecodedFrame;

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// A batch leaves as soon as it holds this many frames (the model's `max_batch`).
    pub max_batch: usize,
    /// … or this long after its first frame arrived.
    pub max_wait: Duration,
    /// Frames kept per camera while waiting (1 or 2); a newer frame replaces the oldest.
    pub queue_depth: usize,
    /// A batch holds frames of one picture size only (a native-size model runs each size apart);
    /// frames of other sizes wait for the next batch, keeping their place in the round-robin.
    pub one_size: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            max_wait: Duration::from_millis(50),
            queue_depth: 1,
            one_size: false,
        }
    }
}

/// A frame offered to the batcher, with what the budget needs to know about its camera.
#[derive(Debug, Clone)]
pub struct BatchInput {
    /// The decoded picture.
    pub frame: Arc<DecodedFrame>,
    /// Camera priority, 1 = highest .. 5 (`config::Camera::priority`).
    pub priority: u8,
    /// The camera's configured analysis rate (`config::Camera::analysis_fps`).
    pub configured_fps: f64,
}

/// A frame in a batch.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// The decoded picture.
    pub frame: Arc<DecodedFrame>,
    /// Its camera's priority.
    pub priority: u8,
    /// When it entered the batcher.
    pub enqueued_at: Instant,
}

/// Frames that go through the model together.
#[derive(Debug, Clone)]
pub struct Batch {
    /// In service order: priority, then round-robin.
    pub items: Vec<BatchItem>,
    /// When the batch's first frame arrived.
    pub opened_at: Instant,
    /// When it was formed (left the batcher).
    pub formed_at: Instant,
}

impl Batch {
    /// Frames in it.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Never true for a batch the batcher sends.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Why a frame was not analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A newer frame of the same camera replaced it while it waited.
    Superseded,
    /// Its camera was over the admission budget.
    Budget,
    /// The stage stopped with it still waiting.
    Shutdown,
    /// Its camera sends more frames than its own `analysis_fps` (a camera that decodes every frame).
    Rate,
}

impl DropReason {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Superseded => "superseded",
            Self::Budget => "budget",
            Self::Shutdown => "shutdown",
            Self::Rate => "rate",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Frames the batcher did not send to inference, by [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchDrops {
    /// Replaced by a newer frame of the same camera.
    pub superseded: u64,
    /// Over the admission budget.
    pub budget: u64,
    /// Still waiting at shutdown.
    pub shutdown: u64,
    /// Above the camera's own analysis rate.
    pub rate: u64,
}

impl BatchDrops {
    fn add(&mut self, reason: DropReason, n: u64) {
        match reason {
            DropReason::Superseded => self.superseded += n,
            DropReason::Budget => self.budget += n,
            DropReason::Shutdown => self.shutdown += n,
            DropReason::Rate => self.rate += n,
        }
    }

    /// Every reason with its count, in a fixed order (metrics, reports).
    pub fn by_reason(&self) -> [(DropReason, u64); 4] {
        [
            (DropReason::Rate, self.rate),
            (DropReason::Budget, self.budget),
            (DropReason::Superseded, self.superseded),
            (DropReason::Shutdown, self.shutdown),
        ]
    }
}

/// One camera's frames at the batcher, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CameraBatchCounts {
    /// Frames sent to inference.
    pub batched: u64,
    /// Frames not sent, by reason.
    pub dropped: BatchDrops,
}

/// Batcher counters, cumulative since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    /// Frames offered.
    pub submitted: u64,
    /// Batches sent.
    pub batches: u64,
    /// Frames sent in batches.
    pub batched: u64,
    /// Frames waiting now.
    pub pending: usize,
    /// Drops by reason.
    pub dropped: BatchDrops,
    /// Frames sent and dropped, by camera.
    pub by_camera: BTreeMap<String, CameraBatchCounts>,
}

/// Shared counters a [`Batcher`] updates and anyone may read.
#[derive(Debug, Default)]
pub struct BatchCounters {
    submitted: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
    pending: AtomicUsize,
    superseded: AtomicU64,
    budget: AtomicU64,
    shutdown: AtomicU64,
    rate: AtomicU64,
    by_camera: Mutex<HashMap<Arc<str>, CameraBatchCounts>>,
}

impl BatchCounters {
    fn count_submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    fn count_batch(&self, items: &[BatchItem]) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        let mut map = crate::sync::lock(&self.by_camera);
        for item in items {
            map.entry(item.frame.camera.clone()).or_default().batched += 1;
        }
    }

    fn count_drop(&self, camera: &Arc<str>, reason: DropReason, n: u64) {
        let total = match reason {
            DropReason::Superseded => &self.superseded,
            DropReason::Budget => &self.budget,
            DropReason::Shutdown => &self.shutdown,
            DropReason::Rate => &self.rate,
        };
        total.fetch_add(n, Ordering::Relaxed);
        let mut map = crate::sync::lock(&self.by_camera);
        map.entry(camera.clone())
            .or_default()
            .dropped
            .add(reason, n);
    }

    /// A consistent-enough copy for the API and metrics.
    pub fn snapshot(&self) -> BatchStats {
        let map = crate::sync::lock(&self.by_camera);
        BatchStats {
            submitted: self.submitted.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batched: self.batched.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            dropped: BatchDrops {
                superseded: self.superseded.load(Ordering::Relaxed),
                budget: self.budget.load(Ordering::Relaxed),
                shutdown: self.shutdown.load(Ordering::Relaxed),
                rate: self.rate.load(Ordering::Relaxed),
            },
            by_camera: map.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

/// The batcher's end of the batch channel.
#[derive(Debug)]
pub struct BatchSender {
    tx: Sender<Batch>,
    space: Receiver<()>,
}

/// The inference threads' end of the batch channel (clone one per thread). Taking a batch tells the
/// batcher there is room, so it never polls.
#[derive(Debug, Clone)]
pub struct BatchReceiver {
    rx: Receiver<Batch>,
    space: Sender<()>,
}

impl BatchReceiver {
    /// The next batch; `Err` once the batcher has stopped and the channel is empty.
    pub fn recv(&self) -> Result<Batch, RecvError> {
        let b = self.rx.recv()?;
        // Full means a wake-up is already pending; disconnected means the batcher is gone.
        let _ = self.space.try_send(());
        Ok(b)
    }

    /// [`recv`](Self::recv) with a time limit.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Batch, RecvTimeoutError> {
        let b = self.rx.recv_timeout(timeout)?;
        let _ = self.space.try_send(());
        Ok(b)
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// No batch waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// A bounded batch channel holding `capacity` batches (at least 1; one per inference thread is plenty:
/// a batch waiting longer only gets staler, while frames waiting in the batcher can still be replaced).
pub fn channel(capacity: usize) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let (space_tx, space_rx) = crossbeam_channel::bounded(1);
    (
        BatchSender {
            tx,
            space: space_rx,
        },
        BatchReceiver {
            rx,
            space: space_tx,
        },
    )
}

/// Why the batch stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The thread could not be spawned.
    #[error("cannot spawn batch thread {name}: {source}")]
    Thread {
        /// Thread name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The batcher's thread. It stops when its input channel closes (after sending what waits) or when the
/// inference side is gone (dropping what waits, counted `shutdown`).
#[derive(Debug)]
pub struct BatchStage {
    handle: Option<JoinHandle<()>>,
    counters: Arc<BatchCounters>,
}

impl BatchStage {
    /// Starts the thread `batch-<model>`.
    pub fn start(
        model: &str,
        cfg: BatchConfig,
        clock: Arc<dyn Clock>,
        budget: Option<Arc<AdmissionBudget>>,
        input: Receiver<BatchInput>,
        out: BatchSender,
    ) -> Result<Self, BatchError> {
        let counters = Arc::new(BatchCounters::default());
        let core = Batcher::new(cfg, budget, counters.clone());
        let name = format!("batch-{model}");
        let model: Arc<str> = model.into();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run(model, core, clock, input, out))
            .map_err(|source| BatchError::Thread { name, source })?;
        Ok(Self {
            handle: Some(handle),
            counters,
        })
    }

    /// Counters now.
    pub fn stats(&self) -> BatchStats {
        self.counters.snapshot()
    }

    /// The shared counters (for metrics).
    pub fn counters(&self) -> Arc<BatchCounters> {
        self.counters.clone()
    }

    /// Waits for the thread to finish (close the input channel first).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("batch thread panicked");
        }
    }
}

/// Sends `batch`, blocking while the channel is full; `false` (and the frames counted `shutdown`) when the
/// inference side is gone.
fn send_blocking(out: &BatchSender, batch: Batch, counters: &BatchCounters) -> bool {
    match out.tx.send(batch) {
        Ok(()) => true,
        Err(e) => {
            for item in &e.0.items {
                counters.count_drop(&item.frame.camera, DropReason::Shutdown, 1);
            }
            false
        }
    }
}

fn run(
    model: Arc<str>,
    mut core: Batcher,
    clock: Arc<dyn Clock>,
    input: Receiver<BatchInput>,
    out: BatchSender,
) {
    let span = tracing::info_span!("batch", model = %model);
    let _entered = span.enter();
    let counters = core.counters();
    loop {
        // Send every batch that is due while the channel has room.
        while !out.tx.is_full() {
            let Some(batch) = core.poll(clock.now()) else {
                break;
            };
            match out.tx.try_send(batch) {
                Ok(()) => {}
                // Only this thread sends, so room seen above is still there; wait if not.
                Err(TrySendError::Full(batch)) => {
                    if !send_blocking(&out, batch, &counters) {
                        return shutdown(&mut core, &input, &counters);
                    }
                }
                Err(TrySendError::Disconnected(batch)) => {
                    for item in &batch.items {
                        counters.count_drop(&item.frame.camera, DropReason::Shutdown, 1);
                    }
                    return shutdown(&mut core, &input, &counters);
                }
            }
        }
        counters.pending.store(core.pending(), Ordering::Relaxed);

        let timeout = if out.tx.is_full() {
            None
        } else {
            core.next_deadline()
                .map(|d| d.saturating_duration_since(clock.now()))
        };
        let mut sel = Select::new();
        let i_input = sel.recv(&input);
        let i_space = sel.recv(&out.space);
        let op = match timeout {
            Some(t) => match sel.select_timeout(t) {
                Ok(op) => op,
                Err(_) => continue,
            },
            None => sel.select(),
        };
        let index = op.index();
        if index == i_input {
            match op.recv(&input) {
                Ok(item) => {
                    core.push(item, clock.now());
                    // Take whatever else is already queued before deciding on batches.
                    while let Ok(item) = input.try_recv() {
                        core.push(item, clock.now());
                    }
                }
                Err(_) => {
                    // Sources stopped: send what waits, then end (closing the batch channel).
                    while let Some(batch) = core.flush(clock.now()) {
                        if !send_blocking(&out, batch, &counters) {
                            core.drop_all(DropReason::Shutdown);
                            break;
                        }
                    }
                    counters.pending.store(0, Ordering::Relaxed);
                    tracing::debug!("input closed; batcher stopped");
                    return;
                }
            }
        } else if index == i_space && op.recv(&out.space).is_err() {
            // Every inference thread is gone.
            return shutdown(&mut core, &input, &counters);
        }
    }
}

/// The inference side is gone: drop what waits and what still arrives, counted `shutdown`.
fn shutdown(core: &mut Batcher, input: &Receiver<BatchInput>, counters: &BatchCounters) {
    let n = core.drop_all(DropReason::Shutdown);
    tracing::warn!(
        dropped = n,
        "inference stopped; batcher dropping frames until its input closes"
    );
    for item in input.iter() {
        counters.count_submitted();
        counters.count_drop(&item.frame.camera, DropReason::Shutdown, 1);
    }
    counters.pending.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::clock::SystemClock;
    use crate::decode::PixelFormat;

    fn input(camera: &str, pts: i64) -> BatchInput {
        BatchInput {
            frame: Arc::new(DecodedFrame {
                camera: camera.into(),
                pts_90k: pts,
                arrival: SystemTime::now(),
                decoded_at: SystemTime::now(),
                width: 2,
                height: 2,
                stride: 6,
                format: PixelFormat::Bgr,
                data: vec![0; 12],
            }),
            priority: 3,
            // Far above the rate these tests send at (one frame per nanosecond).
            configured_fps: 1e9,
        }
    }

    #[test]
    fn stage_batches_holds_when_full_and_drains_on_close() {
        let (in_tx, in_rx) = crossbeam_channel::bounded(64);
        let (out_tx, out_rx) = channel(1);
        let cfg = BatchConfig {
            max_batch: 2,
            max_wait: Duration::from_millis(20),
            queue_depth: 1,
            one_size: false,
        };
        let stage =
            BatchStage::start("t", cfg, Arc::new(SystemClock), None, in_rx, out_tx).unwrap();

        in_tx.send(input("a", 0)).unwrap();
        in_tx.send(input("b", 0)).unwrap();
        let first = out_rx.recv().unwrap();
        assert_eq!(first.len(), 2, "size trigger");

        in_tx.send(input("c", 0)).unwrap();
        let t = Instant::now();
        let second = out_rx.recv().unwrap();
        assert_eq!(second.len(), 1, "time trigger");
        assert!(t.elapsed() >= Duration::from_millis(10));

        // Nobody takes batches: one fills the channel, then frames wait newest-only per camera.
        in_tx.send(input("a", 1)).unwrap();
        in_tx.send(input("b", 1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for pts in 2..10 {
            in_tx.send(input("a", pts)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let stats = stage.stats();
        assert_eq!(stats.pending, 1, "{stats:?}");
        assert_eq!(stats.dropped.superseded, 7, "{stats:?}");

        // Space frees: the held newest frame leaves promptly.
        let third = out_rx.recv().unwrap();
        assert_eq!(third.len(), 2);
        let fourth = out_rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(fourth.items[0].frame.pts_90k, 9);

        // Closing the input sends what waits and closes the batch channel.
        in_tx.send(input("z", 0)).unwrap();
        drop(in_tx);
        let last = out_rx.recv().unwrap();
        assert_eq!(last.items[0].frame.camera.as_ref(), "z");
        assert!(out_rx.recv().is_err());
        stage.join();
    }

    #[test]
    fn frames_are_counted_as_shutdown_when_inference_is_gone() {
        let (in_tx, in_rx) = crossbeam_channel::bounded(64);
        let (out_tx, out_rx) = channel(1);
        let cfg = BatchConfig {
            max_batch: 1,
            max_wait: Duration::from_millis(5),
            queue_depth: 1,
            one_size: false,
        };
        let stage =
            BatchStage::start("t", cfg, Arc::new(SystemClock), None, in_rx, out_tx).unwrap();
        drop(out_rx);
        for pts in 0..5 {
            in_tx.send(input("a", pts)).unwrap();
        }
        drop(in_tx);
        let counters = stage.counters();
        stage.join();
        let s = counters.snapshot();
        assert_eq!(s.submitted, 5);
        assert_eq!(s.dropped.shutdown, 5, "{s:?}");
        assert_eq!(s.by_camera["a"].dropped.shutdown, 5);
    }
}
