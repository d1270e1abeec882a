//! camsim: an RTSP camera simulator. In: a video file; out: N cameras `rtsp://HOST:PORT/cam/0001` … on one port.
//!
//! GStreamer prepares RTP payloads once per source ([`media`]); tokio fans them out to every session
//! ([`server`]), each with its own SSRC/sequence/timestamps, paced by the media clock. Faults are injected
//! through a small HTTP API ([`control`]). A session whose client cannot keep up skips ahead to a
//! keyframe (counted in `late_resyncs`), as a real camera drops frames; it never buffers without bound.

pub mod auth;
pub mod control;
pub mod gb;
pub mod gb_control;
pub mod gb_media;
pub mod load;
pub mod media;
pub mod scene;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use auth::{Auth, AuthScheme};
pub use media::{Media, MediaError};
pub use scene::{RateControl, Scene, Scenes};

/// What a camera is currently doing, set through the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// Normal video (the `restore` kind returns a camera here).
    #[default]
    #[serde(alias = "restore")]
    None,
    /// Refuses new sessions (503) and ends current ones.
    Down,
    /// Keeps the connection open and answers RTSP, but sends no media.
    Stall,
    /// Repeats one picture.
    Freeze,
    /// Sends the black clip.
    Black,
    /// Sends the covered clip (occlusion / tampering).
    Cover,
}

impl Fault {
    /// Name as used by the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Down => "down",
            Fault::Stall => "stall",
            Fault::Freeze => "freeze",
            Fault::Black => "black",
            Fault::Cover => "cover",
        }
    }
}

/// Which RTP transports camsim accepts (to simulate cameras that refuse interleaved TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportPolicy {
    /// TCP interleaved and UDP.
    Both,
    /// Only RTP over the RTSP TCP connection.
    Tcp,
    /// Only RTP over UDP.
    Udp,
}

/// Everything `qianliyan camsim` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of cameras, served as `/cam/0001` … `/cam/NNNN`.
    pub cameras: u32,
    /// Main-stream source file (H.264/H.265 in MP4/MKV/TS).
    pub source: PathBuf,
    /// Optional sub-stream source, served as `/cam/NNNN/sub`.
    pub sub_source: Option<PathBuf>,
    /// RTSP listen address.
    pub rtsp_listen: SocketAddr,
    /// Control API listen address.
    pub control_listen: SocketAddr,
    /// UDP port for RTP (RTCP on the next port); 0 picks free ports.
    pub udp_port: u16,
    /// Credentials the clients must present, if any.
    pub auth: Option<Auth>,
    /// Accepted RTP transports.
    pub transports: TransportPolicy,
    /// What the cameras show when no fault is set (default: the source on every camera).
    pub scenes: Scenes,
}

/// One simulated camera's shared state.
#[derive(Debug)]
pub struct Camera {
    /// 1-based number in the URL.
    pub number: u32,
    /// Where the camera starts in the loop, in 90 kHz units, so cameras do not show the same frame.
    pub offset: u64,
    /// What it shows when no fault is set.
    pub scene: Scene,
    fault: watch::Sender<Fault>,
    sessions: AtomicU64,
}

impl Camera {
    /// What the camera shows without a fault, `elapsed` after camsim's epoch.
    pub fn scene_variant(&self, elapsed: Duration) -> media::Variant {
        match self.scene {
            Scene::Busy => media::Variant::Normal,
            Scene::Quiet => media::Variant::Quiet,
            Scene::Burst => {
                if scene::in_burst(elapsed, self.offset_duration()) {
                    media::Variant::Scene
                } else {
                    media::Variant::Quiet
                }
            }
        }
    }

    /// The loop offset as a duration.
    pub fn offset_duration(&self) -> Duration {
        Duration::from_micros(self.offset * 1_000_000 / media::CLOCK_RATE as u64)
    }

    /// Current fault.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Sets the fault; sessions see it at their next frame (or at once for `down`).
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// A receiver that wakes when the fault changes.
    pub fn subscribe(&self) -> watch::Receiver<Fault> {
        self.fault.subscribe()
    }

    /// Sessions currently playing or set up on this camera.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }
}

/// Counters for the control API and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections_total: AtomicU64,
    /// Sessions created by SETUP.
    pub sessions_total: AtomicU64,
    /// Sessions that exist now.
    pub sessions_active: AtomicU64,
    /// RTP packets sent.
    pub packets_sent: AtomicU64,
    /// RTP bytes sent (headers included).
    pub bytes_sent: AtomicU64,
    /// Times a session fell more than a second behind and skipped to a keyframe.
    pub late_resyncs: AtomicU64,
    /// Requests answered 400 (unparseable) — the connection is then closed.
    pub bad_requests: AtomicU64,
    /// Requests refused for missing or wrong credentials.
    pub auth_failures: AtomicU64,
}

/// State shared by the RTSP server and the control API.
#[derive(Debug)]
pub struct Shared {
    /// Main stream.
    pub main: Arc<Media>,
    /// Sub-stream, if configured.
    pub sub: Option<Arc<Media>>,
    /// Cameras, index = number − 1.
    pub cameras: Vec<Camera>,
    /// Required credentials.
    pub auth: Option<Auth>,
    /// Accepted transports.
    pub transports: TransportPolicy,
    /// Start of the shared media clock; a camera's position is derived from it.
    pub epoch: Instant,
    /// The wall-clock time of `epoch` (burst onsets are reported in it).
    pub epoch_wall: std::time::SystemTime,
    /// Counters.
    pub stats: Stats,
    /// Width of the zero-padded camera number in URLs.
    pub id_width: usize,
}

impl Shared {
    /// Builds the camera table.
    pub fn new(opts: &Options, main: Arc<Media>, sub: Option<Arc<Media>>) -> Shared {
        let n = opts.cameras.max(1);
        // Spread starting points by the golden ratio so neighbours never show the same scene.
        let loop_len = main.normal.duration.max(1);
        let scenes = opts.scenes.assign(n);
        let cameras = (1..=n)
            .zip(scenes)
            .map(|(number, scene)| Camera {
                number,
                offset: ((number as f64 * 0.618_033_988_75).fract() * loop_len as f64) as u64,
                scene,
                fault: watch::Sender::new(Fault::None),
                sessions: AtomicU64::new(0),
            })
            .collect();
        Shared {
            main,
            sub,
            cameras,
            auth: opts.auth.clone(),
            transports: opts.transports,
            epoch: Instant::now(),
            epoch_wall: std::time::SystemTime::now(),
            stats: Stats::default(),
            id_width: n.to_string().len().max(4),
        }
    }

    /// The URL path of camera `number` (e.g. `/cam/0001`).
    pub fn path_of(&self, number: u32) -> String {
        format!("/cam/{:0width$}", number, width = self.id_width)
    }

    /// Looks a camera up by its id as written in a URL or the control API ("0001" or "1").
    pub fn camera(&self, id: &str) -> Option<&Camera> {
        let n: usize = id.parse().ok()?;
        self.cameras.get(n.checked_sub(1)?)
    }
}

/// A started camsim: its bound addresses and shared state.
pub struct Running {
    /// Where RTSP is served.
    pub rtsp_addr: SocketAddr,
    /// Where the control API is served.
    pub control_addr: SocketAddr,
    /// Cameras, faults and counters.
    pub shared: Arc<Shared>,
    tasks: tokio_util::task::TaskTracker,
}

impl Running {
    /// The URL of camera `number` (1-based) on the main stream.
    pub fn url(&self, number: u32) -> String {
        format!("rtsp://{}{}", self.rtsp_addr, self.shared.path_of(number))
    }

    /// Waits until every server task has ended (after the cancel token fired).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Prepares the media, binds the ports and starts serving; serving stops when `cancel` fires.
pub async fn start(opts: Options, cancel: CancellationToken) -> Result<Running, CamsimError> {
    opts.scenes
        .check(opts.cameras)
        .map_err(CamsimError::Options)?;
    let started = Instant::now();
    let (main, sub) = prepare_sources(
        opts.source.clone(),
        opts.sub_source.clone(),
        opts.scenes.enabled().then_some(opts.scenes.rate_control),
        &cancel,
        STALL_LIMIT,
    )
    .await?;
    for (name, media) in std::iter::once(("main", &main)).chain(sub.iter().map(|s| ("sub", s))) {
        tracing::info!(
            stream = name,
            codec = media.codec.rtp_name(),
            width = media.width,
            height = media.height,
            frames = media.normal.frames.len(),
            loop_s = media.normal.duration as f64 / media::CLOCK_RATE as f64,
            mbytes = media.normal.bytes() as f64 / 1e6,
            "prepared source"
        );
    }
    let shared = Arc::new(Shared::new(&opts, main, sub));
    let rtsp = server::Server::bind(shared.clone(), opts.rtsp_listen, opts.udp_port).await?;
    let control = control::bind(opts.control_listen).await?;
    let rtsp_addr = rtsp.local_addr();
    let control_addr = control.local_addr().map_err(|source| CamsimError::Bind {
        what: "control",
        addr: opts.control_listen,
        source,
    })?;
    tracing::info!(
        cameras = shared.cameras.len(),
        first = %format!("rtsp://{}{}", rtsp_addr, shared.path_of(1)),
        control = %control_addr,
        auth = shared.auth.is_some(),
        prepare_ms = started.elapsed().as_millis() as u64,
        "camsim ready"
    );
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(rtsp.serve(cancel.clone()));
    tasks.spawn(control::serve(control, shared.clone(), cancel));
    Ok(Running {
        rtsp_addr,
        control_addr,
        shared,
        tasks,
    })
}

/// Preparation that shows no progress (no sample from GStreamer) for this long fails: a pipe
/// nobody writes or a hung network mount must not hold camsim at start-up for ever.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Prepares one video file (the clip GB/T 28181 devices send when invited).
pub async fn prepare_video(
    source: PathBuf,
    cancel: &CancellationToken,
) -> Result<Arc<Media>, CamsimError> {
    prepare_sources(source, None, None, cancel, STALL_LIMIT)
        .await
        .map(|(main, _)| main)
}

/// Prepares the sources on a thread of their own and waits for it, for `cancel`, or until it
/// makes no progress for `stall_limit`. A plain thread, not `spawn_blocking`: a source stuck in
/// a system call (a FIFO nobody writes) is abandoned, and the runtime's shutdown does not wait
/// for it, so a signal ends camsim at once even during start-up.
async fn prepare_sources(
    source: PathBuf,
    sub_source: Option<PathBuf>,
    scenes: Option<RateControl>,
    cancel: &CancellationToken,
    stall_limit: Duration,
) -> Result<(Arc<Media>, Option<Arc<Media>>), CamsimError> {
    tracing::info!(source = %source.display(), sub_source = ?sub_source, "preparing the source (probe, packetise)");
    let watch = Arc::new(media::Watch::new(cancel.child_token()));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let w = watch.clone();
    std::thread::Builder::new()
        .name("camsim-prepare".into())
        .spawn(move || {
            let result = Media::prepare_watched(&source, &w, scenes).and_then(|main| {
                let sub = sub_source
                    .as_deref()
                    .map(|s| Media::prepare_watched(s, &w, scenes))
                    .transpose()?;
                Ok((main, sub))
            });
            let _ = tx.send(result);
        })
        .map_err(|e| CamsimError::Internal(format!("cannot start the preparing thread: {e}")))?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            result = &mut rx => {
                return match result {
                    Ok(Ok(media)) => Ok(media),
                    Ok(Err(MediaError::Cancelled { .. })) => Err(CamsimError::Cancelled),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(CamsimError::Internal(format!(
                        "preparing {} ended without a result (the thread panicked)",
                        watch.stage().0.display()
                    ))),
                };
            }
            _ = cancel.cancelled() => {
                watch.cancel();
                tracing::info!(source = %watch.stage().0.display(), "start-up cancelled while preparing");
                return Err(CamsimError::Cancelled);
            }
            _ = tick.tick() => {
                let idle = watch.idle();
                if idle >= stall_limit {
                    watch.cancel();
                    return Err(watch.stalled(idle).into());
                }
            }
        }
    }
}

/// Runs camsim until `cancel` fires (also during start-up, which then ends quietly).
pub async fn run(opts: Options, cancel: CancellationToken) -> Result<(), CamsimError> {
    let running = match start(opts, cancel).await {
        Ok(running) => running,
        Err(CamsimError::Cancelled) => return Ok(()),
        Err(e) => return Err(e),
    };
    running.wait().await;
    Ok(())
}

/// Why camsim could not start.
#[derive(Debug, thiserror::Error)]
pub enum CamsimError {
    /// Preparing a source failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A listen address is taken or not allowed.
    #[error("cannot listen for {what} on {addr}")]
    Bind {
        /// rtsp, udp or control.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
    /// The options contradict each other.
    #[error("{0}")]
    Options(String),
    /// The cancel token fired before camsim was ready.
    #[error("stopped before camsim was ready")]
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO that this process holds open for writing (and never writes): reading it blocks.
    fn silent_fifo(dir: &std::path::Path) -> (PathBuf, std::fs::File) {
        let path = dir.join("camera.mp4");
        let ok = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfifo");
        // O_RDWR on a FIFO does not wait for a reader (Linux).
        let writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open fifo");
        (path, writer)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_source_that_sends_nothing_fails_as_stalled_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (fifo, _writer) = silent_fifo(dir.path());
        let t0 = Instant::now();
        let result = runtime().block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                prepare_sources(
                    fifo.clone(),
                    None,
                    None,
                    &CancellationToken::new(),
                    Duration::from_secs(1),
                ),
            )
            .await
            .expect("the stall limit ends the wait")
        });
        let err = result.expect_err("nothing to serve");
        assert!(
            matches!(err, CamsimError::Media(MediaError::Stalled { .. })),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(&fifo.display().to_string()), "{text}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    }

    #[test]
    fn cancelling_start_up_returns_at_once_even_with_a_stuck_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (fifo, _writer) = silent_fifo(dir.path());
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let result = runtime().block_on(async move {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                trigger.cancel();
            });
            tokio::time::timeout(
                Duration::from_secs(5),
                prepare_sources(fifo, None, None, &cancel, STALL_LIMIT),
            )
            .await
            .expect("cancel ends the wait")
        });
        assert!(matches!(result, Err(CamsimError::Cancelled)), "{result:?}");
    }
}
