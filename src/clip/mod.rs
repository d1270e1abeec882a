//! The clip stage: evidence clips of alerts.
//!
//! In: every access unit of a buffered camera ([`Recorder::tap`], called by the join in front of the
//! decode gate, before any unit is skipped), and each alert's camera and frame time
//! ([`Recorder::begin`], called by the alert stage before it stores the alert).
//! Out: MP4 files under `<data_dir>/clips/`, and each clip's state (ready with size, SHA-256 and
//! duration, or failed with why) handed to a [`ClipSink`] (the alert store, joined in `app.rs`).
//!
//! A buffered camera keeps its stream as received (compressed, no decoding) from a keyframe, `pre` +
//! `latency_allowance` seconds back ([`ring`]). An alert starts a clip at the last keyframe at or
//! before `pre` seconds ahead of its frame; the clip takes units until `post` seconds after the
//! frame (a later alert of the same camera moves that end, up to `max_length`), then goes to one of
//! `writers` threads that mux it ([`mux`]). Memory is bounded per camera and in all; what the
//! budgets drop is counted. A retention pass deletes clips by age and by total size, oldest first.

pub mod config;
pub mod mux;
pub mod ring;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use config::{Buffered, ClipConfig, RawClipConfig};
use ring::{Begin, CameraRing, OpenClip, Unit};

use crate::clock::Clock;
use crate::decode::EncodedFrame;
use crate::rules::{AlertClip, ClipState};
use crate::sync::{lock, read, write};

/// Where clip states go: the alert store, which gives every alert of the clip's `name` the state.
pub trait ClipSink: Send + Sync {
    /// Records `clip` on the alerts that have its name; returns how many.
    fn clip_finished(&self, clip: &AlertClip) -> Result<usize, String>;
    /// Retention: deletes the files of clips older than `max_age` (by alert time, at `now_ms`) and
    /// then of the oldest alerts until all clips fit in `max_bytes`; returns (clips, bytes) deleted.
    fn expire_clips(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<(u64, u64), String>;
}

/// Counters of the clip stage (the API's `/api/system` and `/metrics`).
#[derive(Debug, Default)]
pub struct ClipStats {
    /// Clips started.
    pub started: AtomicU64,
    /// Alerts that joined a clip already recording.
    pub joined: AtomicU64,
    /// Clips written.
    pub ready: AtomicU64,
    /// Clips that could not be made (nothing buffered, writer failed or behind).
    pub failed: AtomicU64,
    /// Bytes dropped from a camera's buffer over its own budget.
    pub over_camera_budget: AtomicU64,
    /// Bytes dropped from buffers over the budget of all (`pressure`).
    pub pressure: AtomicU64,
    /// Clips deleted by retention.
    pub expired: AtomicU64,
    /// Clips not written because the writers' queue was full.
    pub write_queue_full: AtomicU64,
    /// Bytes held by all buffers now.
    pub held: AtomicU64,
}

enum Job {
    Write(OpenClip),
    Stop,
}

/// Jobs waiting for a writer at most (the queue `clip_to_writer`, drop newest: the clip fails,
/// counted and said on its alert).
pub const WRITE_QUEUE: usize = 64;
/// A clip whose camera stopped sending is closed this long after its end.
const OVERDUE_GRACE: Duration = Duration::from_secs(3);
/// A clip state the store did not take yet (its alert still waits for the store) is retried this long.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// The pre-event buffers and the clips recording from them.
pub struct Recorder {
    config: ClipConfig,
    dir: PathBuf,
    /// Cameras buffered when `cameras = "rules"` (the ids that have rules).
    with_rules: RwLock<HashSet<String>>,
    rings: RwLock<HashMap<Arc<str>, Arc<Mutex<CameraRing>>>>,
    jobs: Sender<Job>,
    sink: Arc<dyn ClipSink>,
    clock: Arc<dyn Clock>,
    /// States the store did not take yet, with when they were first tried.
    pending: Mutex<Vec<(AlertClip, SystemTime)>>,
    /// Counters.
    pub stats: ClipStats,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The stage's threads (writers and the sweeper); [`Workers::stop`] writes the clips still recording
/// and waits for them.
pub struct Workers {
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// Starts the stage: clips are written into `dir` (created), states go to `sink`.
    pub fn start(
        config: ClipConfig,
        dir: &Path,
        sink: Arc<dyn ClipSink>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<(Arc<Recorder>, Workers)> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = crossbeam_channel::bounded(WRITE_QUEUE);
        let recorder = Arc::new(Recorder {
            config,
            dir: dir.to_owned(),
            with_rules: RwLock::default(),
            rings: RwLock::default(),
            jobs: tx,
            sink,
            clock,
            pending: Mutex::default(),
            stats: ClipStats::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..config.writers {
            let (r, rx) = (recorder.clone(), rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("clip-writer-{i}"))
                    .spawn(move || r.write_loop(&rx))?,
            );
        }
        let (r, s) = (recorder.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("clip-sweep".into())
                .spawn(move || r.sweep_loop(&s))?,
        );
        Ok((
            recorder.clone(),
            Workers {
                recorder,
                stop,
                threads,
            },
        ))
    }

    /// The section it runs with.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Where clips are written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cameras that have rules (buffered when `cameras = "rules"`); a camera that no longer
    /// is buffered drops its buffer (its open clips are written).
    pub fn set_cameras_with_rules(&self, ids: impl IntoIterator<Item = String>) {
        *write(&self.with_rules) = ids.into_iter().collect();
        let gone: Vec<Arc<str>> = read(&self.rings)
            .keys()
            .filter(|c| !self.buffered(c))
            .cloned()
            .collect();
        for c in gone {
            self.forget(&c);
        }
    }

    /// Whether `camera` keeps a buffer.
    pub fn buffered(&self, camera: &str) -> bool {
        self.config.enabled
            && match self.config.cameras {
                Buffered::All => true,
                Buffered::None => false,
                Buffered::Rules => read(&self.with_rules).contains(camera),
            }
    }

    /// Cameras with a buffer now.
    pub fn buffered_cameras(&self) -> usize {
        read(&self.rings).len()
    }

    fn ring(&self, camera: &Arc<str>) -> Arc<Mutex<CameraRing>> {
        if let Some(r) = read(&self.rings).get(camera) {
            return r.clone();
        }
        write(&self.rings)
            .entry(camera.clone())
            .or_default()
            .clone()
    }

    /// One access unit of a camera, as received. Never blocks on anything but the camera's buffer.
    pub fn tap(&self, frame: &EncodedFrame) {
        if !self.buffered(&frame.camera) {
            return;
        }
        let ring = self.ring(&frame.camera);
        let closed = {
            let mut r = lock(&ring);
            let unit = Unit {
                data: frame.unit.data.clone(),
                keyframe: frame.unit.keyframe,
                pts_90k: frame.unit.pts_90k,
                arrival: frame.unit.arrival,
            };
            let pushed = r.push(
                frame.codec,
                unit,
                self.config.keep(),
                self.config.camera_budget,
            );
            self.stats
                .over_camera_budget
                .fetch_add(pushed.over_budget, Ordering::Relaxed);
            let mut held = self.add_held(pushed.delta);
            if held > self.config.memory_budget {
                let shed = r.shed();
                if shed > 0 {
                    self.stats.pressure.fetch_add(shed, Ordering::Relaxed);
                    held = self.add_held(-(shed as i64));
                    tracing::debug!(camera_id = %frame.camera, shed, held, "clip buffers over their memory budget: this camera keeps its current GOP only");
                }
            }
            pushed.closed
        };
        for clip in closed {
            self.close(clip);
        }
    }

    fn add_held(&self, delta: i64) -> u64 {
        if delta >= 0 {
            self.stats.held.fetch_add(delta as u64, Ordering::Relaxed) + delta as u64
        } else {
            let d = delta.unsigned_abs();
            self.stats.held.fetch_sub(d, Ordering::Relaxed) - d
        }
    }

    /// Drops a camera's buffer (it no longer has rules, or it was removed); its open clips are written.
    pub fn forget(&self, camera: &str) {
        let Some(ring) = write(&self.rings).remove(camera) else {
            return;
        };
        let open = {
            let mut r = lock(&ring);
            self.add_held(-(r.bytes() as i64));
            std::mem::take(&mut r.open)
        };
        for clip in open {
            self.close(clip);
        }
    }

    /// The clip of an alert `alert_id` on `camera`'s frame that arrived `at`: `None` when the camera
    /// keeps no buffer; otherwise recording (a new clip, or one already recording that the alert
    /// joins), or failed with why.
    pub fn begin(&self, camera: &str, alert_id: &str, at: SystemTime) -> Option<AlertClip> {
        if !self.buffered(camera) {
            return None;
        }
        let ring = read(&self.rings).get(camera).cloned();
        let failed = |error: &str| {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(camera_id = %camera, alert = %alert_id, error, "alert without a clip");
            Some(AlertClip {
                name: String::new(),
                state: ClipState::Failed,
                start_ms: 0,
                duration_ms: 0,
                bytes: 0,
                sha256: None,
                error: Some(error.to_owned()),
            })
        };
        let Some(ring) = ring else {
            return failed(
                "no video buffered for this camera yet (it has sent nothing since it got rules)",
            );
        };
        let mut r = lock(&ring);
        let name = format!("{alert_id}.mp4");
        let c = &self.config;
        let (name, start) = match r.begin(&name, at, c.pre, c.post, c.max_length) {
            Begin::Empty => {
                drop(r);
                return failed("no video buffered for this camera (no keyframe received yet)");
            }
            Begin::Started(start) => {
                self.stats.started.fetch_add(1, Ordering::Relaxed);
                (name, start)
            }
            Begin::Joined(name) => {
                self.stats.joined.fetch_add(1, Ordering::Relaxed);
                let start = r
                    .open
                    .iter()
                    .find(|o| o.name == name)
                    .and_then(OpenClip::start)
                    .unwrap_or(at);
                (name, start)
            }
        };
        Some(AlertClip {
            name,
            state: ClipState::Recording,
            start_ms: crate::time::unix_ms(start),
            duration_ms: 0,
            bytes: 0,
            sha256: None,
            error: None,
        })
    }

    fn close(&self, clip: OpenClip) {
        let name = clip.name.clone();
        let start_ms = clip.start().map(crate::time::unix_ms).unwrap_or(0);
        match self.jobs.try_send(Job::Write(clip)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.write_queue_full.fetch_add(1, Ordering::Relaxed);
                self.finished(AlertClip {
                    name,
                    state: ClipState::Failed,
                    start_ms,
                    duration_ms: 0,
                    bytes: 0,
                    sha256: None,
                    error: Some(format!(
                        "the clip writers are behind ({WRITE_QUEUE} clips waiting); this clip was not written"
                    )),
                });
            }
        }
    }

    fn finished(&self, clip: AlertClip) {
        match clip.state {
            ClipState::Ready => self.stats.ready.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.failed.fetch_add(1, Ordering::Relaxed),
        };
        match self.sink.clip_finished(&clip) {
            Ok(n) if n > 0 => {}
            Ok(_) | Err(_) => {
                // Its alert still waits for the store: try again from the sweeper.
                lock(&self.pending).push((clip, self.clock.wall()));
            }
        }
    }

    fn write_loop(&self, rx: &Receiver<Job>) {
        for job in rx.iter() {
            let clip = match job {
                Job::Write(c) => c,
                Job::Stop => return,
            };
            let path = self.dir.join(&clip.name);
            let start_ms = clip.start().map(crate::time::unix_ms).unwrap_or(0);
            let state = match mux::write_mp4(clip.codec, &clip.units, &path) {
                Ok(w) => {
                    tracing::info!(clip = %clip.name, bytes = w.bytes, duration_ms = w.duration.as_millis() as u64, "clip written");
                    AlertClip {
                        name: clip.name,
                        state: ClipState::Ready,
                        start_ms,
                        duration_ms: w.duration.as_millis() as u64,
                        bytes: w.bytes,
                        sha256: Some(w.sha256),
                        error: None,
                    }
                }
                Err(e) => {
                    tracing::error!(clip = %clip.name, error = %e, "clip not written");
                    AlertClip {
                        name: clip.name,
                        state: ClipState::Failed,
                        start_ms,
                        duration_ms: 0,
                        bytes: 0,
                        sha256: None,
                        error: Some(e),
                    }
                }
            };
            self.finished(state);
        }
    }

    /// Closes the clips of cameras that stopped sending, retries states the store did not take, and
    /// runs retention.
    fn sweep(&self, now: SystemTime, retention: bool) {
        let rings: Vec<_> = read(&self.rings).values().cloned().collect();
        for ring in rings {
            let overdue = lock(&ring).overdue(now, OVERDUE_GRACE);
            for clip in overdue {
                self.close(clip);
            }
        }
        let pending = std::mem::take(&mut *lock(&self.pending));
        for (clip, since) in pending {
            match self.sink.clip_finished(&clip) {
                Ok(n) if n > 0 => {}
                _ if now.duration_since(since).unwrap_or_default() < PENDING_FOR => {
                    lock(&self.pending).push((clip, since));
                }
                r => {
                    tracing::error!(clip = %clip.name, result = ?r, "no stored alert took the clip's state");
                }
            }
        }
        if retention {
            match self.sink.expire_clips(
                crate::time::unix_ms(now),
                self.config.max_age,
                self.config.disk_budget,
            ) {
                Ok((0, _)) => {}
                Ok((n, bytes)) => {
                    self.stats.expired.fetch_add(n, Ordering::Relaxed);
                    tracing::info!(clips = n, bytes, "clip retention deleted the oldest clips");
                }
                Err(e) => tracing::warn!(error = %e, "clip retention failed; trying again later"),
            }
        }
    }

    fn sweep_loop(&self, stop: &AtomicBool) {
        let mut last_retention: Option<std::time::Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(250));
            let due = last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY);
            if due {
                last_retention = Some(std::time::Instant::now());
            }
            self.sweep(self.clock.wall(), due);
        }
    }
}

impl Workers {
    /// Writes the clips still recording (with what they have) and stops the threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let cameras: Vec<Arc<str>> = read(&self.recorder.rings).keys().cloned().collect();
        for c in cameras {
            self.recorder.forget(&c);
        }
        for _ in 0..self.recorder.config.writers {
            let _ = self.recorder.jobs.send(Job::Stop);
        }
        for t in self.threads {
            let _ = t.join();
        }
        // One last try for states the store had not taken.
        self.recorder.sweep(self.recorder.clock.wall(), false);
    }
}

#[cfg(test)]
mod tests;
