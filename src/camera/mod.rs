//! Cameras: the live inventory and one supervisor task per camera.
//!
//! In: cameras from the config or the API. Out: access units to the decoder (through a
//! [`FrameSink`], which never blocks: the decoder's queue drops the oldest), health events into each
//! camera's tracker. A camera's failure only ever touches that camera's task; the task reconnects with
//! jittered exponential backoff after tearing the old session down.

mod backoff;
#[cfg(test)]
mod tests;

pub use backoff::Backoff;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::activity::{ActivityConfig, CameraActivity};
use crate::clock::Clock;
use crate::config::{self, Camera, IngestConfig, StreamChoice};
use crate::decode::{EncodedFrame, VideoCodec};
use crate::health::{CameraTracker, OfflineReason, TrackerConfig, VqdConfig};
use crate::ingest::{self, AccessUnit, SessionObserver, SessionSpec, StreamInfo};
use crate::sync::{lock, read, write};

/// What became of an access unit handed to the [`FrameSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sent to a decoder.
    Decode,
    /// Not decoded: a keyframe-only camera's P-frame, or over the camera's analysis rate.
    Rate,
    /// Not decoded: nothing moves in front of the camera and its next VQD picture is not due.
    Idle,
}

/// Where every access unit goes: the sampling stage (joined in `app.rs`), which decides what to
/// decode and hands that to the decoders.
pub trait FrameSink: Send + Sync {
    /// Hands a camera's access unit over; must not block.
    fn submit(&self, entry: &CameraEntry, frame: EncodedFrame) -> Verdict;
    /// The camera's session ended: release what the sink holds for it (a dedicated decoder).
    fn release(&self, _camera: &str) {}
}

/// Per-camera counters (read by the API and /metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Access units received.
    pub frames_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Keyframes received.
    pub keyframes_in: AtomicU64,
    /// Access units handed to the decoder.
    pub submitted: AtomicU64,
    /// Frames decoded and analysed (VQD, later the models).
    pub analysed: AtomicU64,
    /// Access units not decoded because analysis did not need them (keyframe/analysis-rate gate).
    pub skipped_by_gate: AtomicU64,
    /// Keyframes not decoded because the camera was idle (nothing moved; VQD not due).
    pub skipped_idle: AtomicU64,
    /// Pictures decoded for VQD only (idle camera), not offered to the detector.
    pub vqd_only: AtomicU64,
    /// Sessions ended, by reason (index = [`OfflineReason`] order in [`REASONS`]).
    pub reconnects: [AtomicU64; REASONS.len()],
}

/// Reasons in a fixed order, for counters and metrics labels.
/// Every reason, GB/T 28181's included (a channel's session ends `invite_failed`, `no_media` …).
pub const REASONS: [OfflineReason; OfflineReason::ALL.len()] = OfflineReason::ALL;

/// A camera in the live inventory.
pub struct CameraEntry {
    /// Id (also the key in the fleet).
    pub id: Arc<str>,
    /// Its current configuration.
    pub config: RwLock<Camera>,
    /// Health state machine.
    pub tracker: Mutex<CameraTracker>,
    /// Counters.
    pub counters: Counters,
    /// The stream as last negotiated.
    pub stream: Mutex<Option<StreamInfo>>,
    /// Last failure, for engineers (reason detail; never a credential).
    pub last_error: Mutex<Option<String>>,
    /// Whether anything moves in front of the camera (updated by the sampling stage).
    pub activity: Mutex<CameraActivity>,
    /// The latest picture as a JPEG, kept only while someone looks at it (camera wall, zone editor).
    pub thumbnail: Mutex<Thumbnail>,
    cancel: CancellationToken,
}

/// A camera's latest picture for the UI. Encoding costs CPU, so it is refreshed from decoded frames
/// only while `wanted_until` is in the future (each request extends it), at most every
/// [`Thumbnail::REFRESH`].
#[derive(Debug, Default)]
pub struct Thumbnail {
    /// JPEG bytes and when the frame was decoded.
    pub jpeg: Option<(bytes::Bytes, std::time::SystemTime)>,
    /// When the JPEG was last encoded (monotonic).
    pub encoded_at: Option<Instant>,
    /// Keep refreshing until then.
    pub wanted_until: Option<Instant>,
}

impl Thumbnail {
    /// Least time between two encodes of one camera's thumbnail.
    pub const REFRESH: Duration = Duration::from_secs(5);
    /// How long one request keeps the thumbnail refreshing.
    pub const WATCH: Duration = Duration::from_secs(60);
    /// Widest thumbnail, pixels.
    pub const MAX_WIDTH: u32 = 640;

    /// True when the next decoded frame should be encoded.
    pub fn due(&self, now: Instant) -> bool {
        self.wanted_until.is_some_and(|t| t > now)
            && self
                .encoded_at
                .is_none_or(|e| now.saturating_duration_since(e) >= Self::REFRESH)
    }
}

impl CameraEntry {
    /// A snapshot of the camera's configuration.
    pub fn camera(&self) -> Camera {
        read(&self.config).clone()
    }
}

/// Everything camera tasks share.
pub struct FleetContext {
    /// Fleet-wide ingest settings.
    pub ingest: IngestConfig,
    /// Health settings.
    pub health: config::HealthConfig,
    /// Video-quality thresholds.
    pub vqd: VqdConfig,
    /// `[activity]`: how each camera's activity is judged.
    pub activity: ActivityConfig,
    /// Which URL analysis uses.
    pub stream: StreamChoice,
    /// Credential sets by name.
    pub credentials: RwLock<BTreeMap<String, config::Credentials>>,
    /// Where frames go.
    pub sink: Arc<dyn FrameSink>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Where each camera's media comes from ([`ingest::LiveSource`] in production).
    pub source: Arc<dyn ingest::Source>,
    /// Uniform random numbers in [0, 1) for the backoff jitter (`rand::random` in production).
    pub jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
}

/// Why a fleet change was refused.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Adding a camera whose id is taken.
    #[error("camera {0} already exists")]
    Exists(String),
    /// Changing or removing an unknown camera.
    #[error("camera {0} does not exist")]
    Missing(String),
    /// The camera names a credential set that is not configured.
    #[error("camera {camera}: credentials {set:?} is not a configured credential set")]
    UnknownCredentials {
        /// Camera id.
        camera: String,
        /// The set's name.
        set: String,
    },
}

/// The live inventory: cameras and their supervisor tasks.
pub struct Fleet {
    cameras: RwLock<BTreeMap<Arc<str>, Arc<CameraEntry>>>,
    ctx: Arc<FleetContext>,
    tasks: TaskTracker,
    root: CancellationToken,
}

impl Fleet {
    /// An empty fleet; camera tasks are children of `root`.
    pub fn new(ctx: FleetContext, root: CancellationToken) -> Arc<Fleet> {
        Arc::new(Fleet {
            cameras: RwLock::new(BTreeMap::new()),
            ctx: Arc::new(ctx),
            tasks: TaskTracker::new(),
            root,
        })
    }

    /// Shared context.
    pub fn context(&self) -> &Arc<FleetContext> {
        &self.ctx
    }

    /// All cameras, ordered by id.
    pub fn list(&self) -> Vec<Arc<CameraEntry>> {
        read(&self.cameras).values().cloned().collect()
    }

    /// One camera.
    pub fn get(&self, id: &str) -> Option<Arc<CameraEntry>> {
        read(&self.cameras).get(id).cloned()
    }

    fn check_credentials(&self, camera: &Camera) -> Result<(), FleetError> {
        match &camera.credentials {
            Some(set) if !read(&self.ctx.credentials).contains_key(set) => {
                Err(FleetError::UnknownCredentials {
                    camera: camera.id.clone(),
                    set: set.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Adds a camera and starts its task (if enabled). Must be called inside the tokio runtime.
    pub fn add(&self, camera: Camera) -> Result<Arc<CameraEntry>, FleetError> {
        self.check_credentials(&camera)?;
        let mut cameras = write(&self.cameras);
        if cameras.contains_key(camera.id.as_str()) {
            return Err(FleetError::Exists(camera.id));
        }
        let entry = self.make_entry(camera);
        cameras.insert(entry.id.clone(), entry.clone());
        drop(cameras);
        self.start(&entry);
        Ok(entry)
    }

    /// A camera's entry as it would start, not added and not run: what a cluster node answers
    /// for a camera the node that holds it will run.
    pub fn preview(&self, camera: Camera) -> Result<Arc<CameraEntry>, FleetError> {
        self.check_credentials(&camera)?;
        Ok(self.make_entry(camera))
    }

    fn make_entry(&self, camera: Camera) -> Arc<CameraEntry> {
        let id: Arc<str> = Arc::from(camera.id.as_str());
        let mut tracker = CameraTracker::new(
            id.to_string(),
            self.tracker_config(&camera),
            self.ctx.clock.clone(),
        );
        tracker.set_enabled(camera.enabled);
        if camera.source == crate::config::SourceKind::Gb28181 {
            tracker.set_signalled();
        }
        Arc::new(CameraEntry {
            id,
            config: RwLock::new(camera),
            tracker: Mutex::new(tracker),
            counters: Counters::default(),
            stream: Mutex::new(None),
            last_error: Mutex::new(None),
            activity: Mutex::new(CameraActivity::new(self.ctx.activity, self.ctx.clock.now())),
            thumbnail: Mutex::new(Thumbnail::default()),
            cancel: self.root.child_token(),
        })
    }

    fn tracker_config(&self, _camera: &Camera) -> TrackerConfig {
        TrackerConfig {
            grace: self.ctx.health.grace,
            stall_after: self.ctx.ingest.stall_after,
            // Unknown until the stream says; 0 disables the low-fps check.
            expected_fps: 0.0,
            vqd: self.ctx.vqd.clone(),
        }
    }

    fn start(&self, entry: &Arc<CameraEntry>) {
        // A GB/T 28181 channel is pulled like an RTSP camera (the source INVITEs it); its online
        // state also follows its device's signalling (the gb28181 stage, joined in app.rs).
        if !read(&entry.config).enabled {
            return;
        }
        let entry = entry.clone();
        let ctx = self.ctx.clone();
        // The span is attached to the future (not entered across awaits), so every log line of this
        // task carries this camera's id and no other's.
        let span = tracing::info_span!("camera", camera_id = %entry.id);
        self.tasks.spawn(
            async move {
                supervise(&entry, &ctx).await;
                ctx.sink.release(&entry.id);
            }
            .instrument(span),
        );
    }

    /// Replaces a camera's configuration: its session restarts; other cameras are untouched.
    pub fn update(&self, camera: Camera) -> Result<Arc<CameraEntry>, FleetError> {
        self.check_credentials(&camera)?;
        let old = self
            .get(&camera.id)
            .ok_or_else(|| FleetError::Missing(camera.id.clone()))?;
        old.cancel.cancel();
        let entry = self.make_entry(camera);
        // A signalled camera (GB/T 28181) keeps what its device last said: no new signal may come
        // for a long time.
        let signal = lock(&old.tracker).last_signal();
        if let Some(state) = signal {
            let mut t = lock(&entry.tracker);
            if t.last_signal().is_none()
                && read(&entry.config).source == crate::config::SourceKind::Gb28181
            {
                t.on_signal(state);
            }
        }
        write(&self.cameras).insert(entry.id.clone(), entry.clone());
        self.start(&entry);
        Ok(entry)
    }

    /// Removes a camera and stops its task.
    pub fn remove(&self, id: &str) -> Result<Arc<CameraEntry>, FleetError> {
        let entry = write(&self.cameras)
            .remove(id)
            .ok_or_else(|| FleetError::Missing(id.to_owned()))?;
        entry.cancel.cancel();
        Ok(entry)
    }

    /// Waits for every camera task to end (after the root token was cancelled).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// One camera's life: open → run → backoff → reopen, until cancelled. Each session runs under a
/// stall watchdog: once playing, no access unit for `stall_after` ends the session as `stalled` and
/// tears it down (the source's future is dropped), whatever the source itself notices.
async fn supervise(entry: &Arc<CameraEntry>, ctx: &Arc<FleetContext>) {
    let mut backoff = Backoff::new(ctx.ingest.backoff_initial, ctx.ingest.backoff_max);
    loop {
        let spec = match session_spec(entry, ctx) {
            Some(s) => s,
            None => return,
        };
        lock(&entry.tracker).on_connecting();
        let activity = Mutex::new(Activity::default());
        let mut observer = Observer {
            entry,
            ctx,
            activity: &activity,
            size: (0, 0),
        };
        let failure = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            f = ctx.source.run(&spec, &mut observer) => f,
            f = stall_watchdog(&activity, &spec) => f,
        };
        let idx = REASONS
            .iter()
            .position(|r| *r == failure.reason)
            .unwrap_or(0);
        entry.counters.reconnects[idx].fetch_add(1, Ordering::Relaxed);
        lock(&entry.tracker).on_failure(failure.reason);
        *lock(&entry.stream) = None;
        // The old session's decoder goes before the next session starts.
        ctx.sink.release(&entry.id);
        tracing::info!(reason = ?failure.reason, detail = %failure.detail, "session ended");
        *lock(&entry.last_error) = Some(failure.detail.clone());
        if failure.had_media {
            backoff.reset();
        }
        let delay = if failure.reason == OfflineReason::AuthFailed {
            // Retrying a wrong password quickly locks accounts on many cameras.
            ctx.ingest.auth_failed_backoff
        } else {
            backoff.next_delay((ctx.jitter)())
        };
        tokio::select! {
            _ = entry.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// What the watchdog knows of a session: when it last showed life (PLAY, then each access unit).
#[derive(Debug, Default)]
struct Activity {
    last: Option<tokio::time::Instant>,
    had_media: bool,
}

/// Ends once a playing session has delivered nothing for `stall_after`; pending until PLAY (the
/// source's own handshake timeouts cover the time before).
async fn stall_watchdog(activity: &Mutex<Activity>, spec: &SessionSpec) -> ingest::IngestFailure {
    let quiet = spec.stall_after.max(Duration::from_millis(100));
    loop {
        let (last, had_media) = {
            let a = lock(activity);
            (a.last, a.had_media)
        };
        match last {
            None => tokio::time::sleep(quiet).await,
            Some(t) if tokio::time::Instant::now() >= t + quiet => {
                return ingest::IngestFailure {
                    camera: spec.camera.clone(),
                    reason: OfflineReason::Stalled,
                    detail: format!(
                        "no media for {} s; session torn down by the supervisor",
                        quiet.as_secs_f64()
                    ),
                    had_media,
                };
            }
            Some(t) => tokio::time::sleep_until(t + quiet).await,
        }
    }
}

fn session_spec(entry: &CameraEntry, ctx: &FleetContext) -> Option<SessionSpec> {
    let camera = read(&entry.config);
    let credentials = camera.credentials.as_ref().and_then(|set| {
        read(&ctx.credentials)
            .get(set)
            .map(|c| (c.username.clone(), c.password.clone()))
    });
    Some(SessionSpec {
        camera: entry.id.clone(),
        url: camera.analysis_url(ctx.stream).clone(),
        transport: camera.transport,
        credentials,
        stall_after: ctx.ingest.stall_after,
    })
}

struct Observer<'a> {
    entry: &'a CameraEntry,
    ctx: &'a FleetContext,
    activity: &'a Mutex<Activity>,
    /// The picture size the camera's stream info shows (0 × 0 until known).
    size: (u32, u32),
}

impl SessionObserver for Observer<'_> {
    fn playing(&mut self, info: &StreamInfo) {
        tracing::info!(codec = ?info.codec, width = info.width, height = info.height, transport = info.transport, "playing");
        lock(self.activity).last = Some(tokio::time::Instant::now());
        lock(&self.entry.tracker).on_playing();
        // A new session may bring a different stream: learn its quiet level again.
        lock(&self.entry.activity).restart(self.ctx.clock.now());
        *lock(&self.entry.stream) = Some(info.clone());
        self.size = (info.width, info.height);
        *lock(&self.entry.last_error) = None;
    }

    fn parked(&mut self) {
        // No media expected until the next look: the watchdog rests, the decoder goes.
        lock(self.activity).last = None;
        self.ctx.sink.release(&self.entry.id);
    }

    fn access_unit(&mut self, au: AccessUnit, info: &StreamInfo) {
        let c = &self.entry.counters;
        c.frames_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in
            .fetch_add(au.data.len() as u64, Ordering::Relaxed);
        if au.keyframe {
            c.keyframes_in.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut a = lock(self.activity);
            a.last = Some(tokio::time::Instant::now());
            a.had_media = true;
        }
        lock(&self.entry.tracker).on_media(au.data.len());
        // A camera whose SDP names no parameter sets: the size comes with the in-band SPS.
        if (info.width, info.height) != self.size {
            tracing::info!(
                width = info.width,
                height = info.height,
                "picture size from the stream's parameter sets"
            );
            self.size = (info.width, info.height);
            *lock(&self.entry.stream) = Some(info.clone());
        }
        let frame = EncodedFrame {
            camera: self.entry.id.clone(),
            codec: info.codec,
            unit: au,
            width: info.width,
            height: info.height,
        };
        match self.ctx.sink.submit(self.entry, frame) {
            Verdict::Decode => c.submitted.fetch_add(1, Ordering::Relaxed),
            Verdict::Rate => c.skipped_by_gate.fetch_add(1, Ordering::Relaxed),
            Verdict::Idle => c.skipped_idle.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The codec name used in the API.
pub fn codec_name(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "h265",
    }
}
