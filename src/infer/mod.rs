//! Infer: in, [`Batch`]es from the batcher ([`BatchReceiver`], bounded: when every inference thread is busy
//! and the channel is full, the batcher holds frames in its newest-only per-camera queues and drops the
//! superseded ones); out, one [`Analysed`] (detections + the frame) per frame on the caller's bounded
//! channel — when that is full the inference thread waits, which backs up into the batcher the same way.
//!
//! `threads` dedicated threads (`infer-N`), each with its own ONNX Runtime session of one model, run
//! preprocess (OpenCV, into a reused NCHW buffer) → `Session::run` → postprocess. The model's manifest
//! (`models/<name>.toml`) decides the postprocess: `detector` (YOLOv8 decode + class-aware NMS, boxes in
//! camera pixels) or `anomaly` (per-frame score) — one code path for both. Sessions are built and
//! shape-checked before the threads start, so a missing, corrupt or mismatched model fails start-up with
//! an error naming the model and tensor. The execution provider (`cpu`, `cuda`, `tensorrt`) is explicit:
//! one that cannot be registered is an error unless `allow_cpu_fallback`; the one in use is logged and
//! reported by [`Inferencer::provider_in_use`].

mod config;
pub mod detect;
mod ep;
mod error;
pub mod fall;
pub mod manifest;
pub mod postprocess;
pub mod preprocess;
mod runner;
pub mod session;

#[cfg(test)]
mod anomaly_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Sender;
use serde::Serialize;

pub use config::{InferSettings, RawInferConfig};
pub use error::{InferError, Issue, ManifestError};
pub use manifest::{ModelKind, ModelManifest, ObjectKind};
pub use postprocess::Detection;
pub use preprocess::{Geometry, Preprocessor, check_frame};
pub use runner::{ModelRunner, StageTiming};
pub use session::{ExecutionProvider, ModelSession, OrtRuntime, SessionConfig};

use crate::batch::{AdmissionBudget, Batch, BatchReceiver};
use crate::decode::DecodedFrame;

/// What a model found in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    /// Camera id.
    pub camera: Arc<str>,
    /// The frame's presentation time (90 kHz).
    pub pts_90k: i64,
    /// When ingest received the frame.
    pub arrival: SystemTime,
    /// Frame `(width, height)`; boxes are in these pixels.
    pub frame_size: (u32, u32),
    /// Model name (from its manifest).
    pub model: Arc<str>,
    /// Objects after NMS (detectors; empty for anomaly models).
    pub objects: Vec<Detection>,
    /// Per-frame anomaly score (anomaly models).
    pub anomaly: Option<f32>,
    /// Frames in the batch this frame ran in.
    pub batch_size: usize,
    /// `Session::run` time of that batch.
    pub infer_ms: f32,
}

/// Where a detector tells sampling how many people each analysed frame shows (the activity stage
/// keeps a camera with people in view active). Never blocks: when sampling is behind, the message is
/// dropped and counted.
#[derive(Clone)]
pub struct InViewTap {
    /// The channel `app.rs` creates.
    pub tx: Sender<crate::activity::InView>,
    /// Messages dropped because it was full.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl InViewTap {
    fn send(&self, d: &Detections) {
        let people = d
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Person)
            .count() as u32;
        let msg = crate::activity::InView {
            camera: d.camera.clone(),
            people,
            arrival: d.arrival,
        };
        if self.tx.try_send(msg).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One analysed frame: what the model found, and the picture (for tracking, rules and snapshots).
#[derive(Debug, Clone)]
pub struct Analysed {
    /// Model output for the frame.
    pub detections: Detections,
    /// The frame itself.
    pub frame: Arc<DecodedFrame>,
}

/// How the inference stage runs one model.
#[derive(Debug, Clone, PartialEq)]
pub struct InferConfig {
    /// Provider, threads per session, fallback.
    pub session: SessionConfig,
    /// Inference threads (each with its own session).
    pub threads: usize,
    /// A detector's fall pass: this fall model checks frames where a person lies ([`fall`]).
    pub fall: Option<Arc<ModelManifest>>,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            threads: 1,
            fall: None,
        }
    }
}

/// Inference counters, cumulative since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct InferStats {
    /// Batches run.
    pub batches: u64,
    /// Frames analysed.
    pub frames: u64,
    /// Frames skipped before inference (bad geometry).
    pub rejected: u64,
    /// Frames in batches that failed in ONNX Runtime or OpenCV.
    pub failed: u64,
    /// Busy time (preprocess + run + postprocess), milliseconds.
    pub busy_ms: f64,
    /// Batch latency histogram: cumulative counts at each [`LATENCY_BOUNDS_MS`] bound (then +Inf).
    pub latency_le: [u64; LATENCY_BOUNDS_MS.len() + 1],
    /// Batch size histogram: cumulative counts at each [`BATCH_BOUNDS`] bound (then +Inf).
    pub batch_le: [u64; BATCH_BOUNDS.len() + 1],
    /// Fall checks run (frames with a person lying, the camera due).
    pub fall_checks: u64,
    /// Lying people the fall model confirmed as fallen.
    pub fall_confirmed: u64,
    /// Time spent in fall checks, milliseconds (part of `busy_ms`).
    pub fall_ms: f64,
}

/// Upper bounds (ms) of the batch-latency histogram buckets.
pub const LATENCY_BOUNDS_MS: [f64; 10] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
/// Upper bounds of the batch-size histogram buckets.
pub const BATCH_BOUNDS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Which bucket `v` falls in (the last one is +Inf).
fn bucket(bounds: &[f64], v: f64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

/// Per-bucket counts → cumulative (`le`) counts.
fn cumulative<const N: usize>(counts: &[AtomicU64; N]) -> [u64; N] {
    let mut out = [0; N];
    let mut sum = 0;
    for (o, c) in out.iter_mut().zip(counts) {
        sum += c.load(Ordering::Relaxed);
        *o = sum;
    }
    out
}

#[derive(Debug, Default)]
struct InferCounters {
    batches: AtomicU64,
    frames: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    busy_us: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    batch: [AtomicU64; BATCH_BOUNDS.len() + 1],
    fall_checks: AtomicU64,
    fall_confirmed: AtomicU64,
    fall_us: AtomicU64,
}

impl InferCounters {
    fn snapshot(&self) -> InferStats {
        InferStats {
            batches: self.batches.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            busy_ms: self.busy_us.load(Ordering::Relaxed) as f64 / 1000.0,
            latency_le: cumulative(&self.latency),
            batch_le: cumulative(&self.batch),
            fall_checks: self.fall_checks.load(Ordering::Relaxed),
            fall_confirmed: self.fall_confirmed.load(Ordering::Relaxed),
            fall_ms: self.fall_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// The inference threads of one model.
#[derive(Debug)]
pub struct Inferencer {
    model: Arc<str>,
    provider: &'static str,
    handles: Vec<JoinHandle<()>>,
    counters: Arc<InferCounters>,
}

impl Inferencer {
    /// Checks the model file, builds `cfg.threads` sessions (failing start-up on any error), then starts
    /// the threads `infer-0` … They stop when the batch channel closes or `out`'s receiver is dropped.
    /// Each finished batch's cost goes to `budget`.
    pub fn start(
        rt: &OrtRuntime,
        manifest: Arc<ModelManifest>,
        cfg: &InferConfig,
        batches: BatchReceiver,
        out: Sender<Analysed>,
        budget: Option<Arc<AdmissionBudget>>,
        in_view: Option<InViewTap>,
    ) -> Result<Self, InferError> {
        manifest.verify_file()?;
        let threads = cfg.threads.max(1);
        let mut session = cfg.session.clone();
        if session.intra_threads == 0 && threads > 1 {
            // Each session would otherwise start one intra-op thread per core: share the cores out.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            session.intra_threads = (cores / threads).max(1);
        }
        let fall = match (&cfg.fall, manifest.detector()) {
            (Some(fall), Some(_)) if fall.name != manifest.name => {
                let sees_falls = fall
                    .detector()
                    .is_some_and(|d| d.labels.iter().any(|l| l.kind == ObjectKind::FallenPerson));
                if !sees_falls {
                    return Err(InferError::Shape {
                        model: fall.name.to_string(),
                        tensor: "-".into(),
                        problem: "a fall model must be a detector with a `fallen_person` label"
                            .into(),
                    });
                }
                fall.verify_file()?;
                Some(fall.clone())
            }
            _ => None,
        };
        let mut runners = Vec::with_capacity(threads);
        for _ in 0..threads {
            let pass = match &fall {
                Some(f) => Some(fall::FallPass::new(ModelRunner::new(
                    rt,
                    f.clone(),
                    &session,
                )?)),
                None => None,
            };
            runners.push((ModelRunner::new(rt, manifest.clone(), &session)?, pass));
        }
        let provider = runners
            .first()
            .map_or(cfg.session.provider.as_str(), |(r, _)| r.provider_in_use());
        tracing::info!(
            model = %manifest.name,
            provider,
            requested = cfg.session.provider.as_str(),
            threads,
            max_batch = manifest.max_batch,
            fall_pass = fall.as_ref().map(|f| f.name.to_string()),
            "inference starting"
        );
        let counters = Arc::new(InferCounters::default());
        let mut handles = Vec::with_capacity(threads);
        for (i, (runner, fall)) in runners.into_iter().enumerate() {
            let name = format!("infer-{i}");
            let ctx = Worker {
                runner,
                fall,
                batches: batches.clone(),
                out: out.clone(),
                budget: budget.clone(),
                in_view: in_view.clone(),
                counters: counters.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || ctx.run())
                .map_err(|source| InferError::Thread { name, source })?;
            handles.push(handle);
        }
        Ok(Self {
            model: manifest.name.clone(),
            provider,
            handles,
            counters,
        })
    }

    /// The provider actually running the model (`cpu`, `cuda`, `tensorrt`).
    pub fn provider_in_use(&self) -> &'static str {
        self.provider
    }

    /// Model name.
    pub fn model(&self) -> &Arc<str> {
        &self.model
    }

    /// Counters now.
    pub fn stats(&self) -> InferStats {
        self.counters.snapshot()
    }

    /// A reader of the counters that outlives nothing it should not (for `/metrics`).
    pub fn stats_reader(&self) -> impl Fn() -> InferStats + Send + Sync + 'static {
        let c = self.counters.clone();
        move || c.snapshot()
    }

    /// Waits for the threads (close the batch channel, i.e. stop the batcher, first).
    pub fn join(self) {
        for h in self.handles {
            if h.join().is_err() {
                tracing::error!(model = %self.model, "inference thread panicked");
            }
        }
    }
}

struct Worker {
    runner: ModelRunner,
    fall: Option<fall::FallPass>,
    batches: BatchReceiver,
    out: Sender<Analysed>,
    budget: Option<Arc<AdmissionBudget>>,
    in_view: Option<InViewTap>,
    counters: Arc<InferCounters>,
}

impl Worker {
    fn run(mut self) {
        let model = self.runner.manifest().name.clone();
        let span = tracing::info_span!("infer", model = %model);
        let _entered = span.enter();
        let max_batch = self.runner.manifest().max_batch;
        // Before the first real batch (frames meanwhile wait in the batcher, newest only); its time is
        // not a batch cost, so the budget does not see it.
        match self.runner.warm_up() {
            Ok(took) => tracing::info!(
                batch = max_batch,
                ms = took.as_millis() as u64,
                "inference warmed up"
            ),
            Err(e) => tracing::warn!(error = %e, "warm-up batch failed; going on without it"),
        }
        let mut frames: Vec<Arc<DecodedFrame>> = Vec::with_capacity(max_batch);
        while let Ok(batch) = self.batches.recv() {
            if !self.process(batch, &mut frames) {
                tracing::debug!("output closed; inference thread stopping");
                return;
            }
        }
        tracing::debug!("batch channel closed; inference thread stopping");
    }

    /// Runs one batch; `false` when the output channel is gone.
    fn process(&mut self, batch: Batch, frames: &mut Vec<Arc<DecodedFrame>>) -> bool {
        frames.clear();
        for item in batch.items {
            match check_frame(&item.frame) {
                Ok(()) => frames.push(item.frame),
                Err(e) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(camera_id = %item.frame.camera, error = %e, "frame skipped");
                }
            }
        }
        if frames.is_empty() {
            return true;
        }
        let _span = tracing::debug_span!("batch", size = frames.len()).entered();
        let started = Instant::now();
        let mut result = self.runner.run(frames);
        if let (Ok(found), Some(pass)) = (&mut result, &mut self.fall) {
            for (d, frame) in found.iter_mut().zip(frames.iter()) {
                let t = Instant::now();
                match pass.check(frame, d, t) {
                    Ok(fall::FallOutcome::Checked(n)) => {
                        let c = &self.counters;
                        c.fall_checks.fetch_add(1, Ordering::Relaxed);
                        c.fall_confirmed.fetch_add(n as u64, Ordering::Relaxed);
                        c.fall_us
                            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        tracing::debug!(camera_id = %frame.camera, confirmed = n, "fall check");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(camera_id = %frame.camera, error = %e, "fall check failed")
                    }
                }
            }
        }
        let busy = started.elapsed();
        self.counters
            .busy_us
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        self.counters.latency[bucket(&LATENCY_BOUNDS_MS, busy.as_secs_f64() * 1000.0)]
            .fetch_add(1, Ordering::Relaxed);
        self.counters.batch[bucket(&BATCH_BOUNDS, frames.len() as f64)]
            .fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &self.budget {
            b.observe_batch(frames.len(), busy);
        }
        match result {
            Ok(found) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .frames
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                for (detections, frame) in found.into_iter().zip(frames.drain(..)) {
                    if let Some(tap) = &self.in_view
                        && self.runner.manifest().detector().is_some()
                    {
                        tap.send(&detections);
                    }
                    if self.out.send(Analysed { detections, frame }).is_err() {
                        return false;
                    }
                }
            }
            Err(e) => {
                self.counters
                    .failed
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                let cameras: Vec<&str> = frames.iter().map(|f| f.camera.as_ref()).collect();
                tracing::error!(cameras = ?cameras, error = %e, retryable = e.retryable(), "batch failed");
            }
        }
        true
    }
}
