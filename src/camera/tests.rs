//! The per-camera retry loop with a fake source under tokio's paused time: every sleep is exact and
//! instant, so backoff growth and cap, the `auth_failed` interval, the stall watchdog and shutdown
//! during a backoff are checked to the millisecond without waiting.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::*;
use crate::clock::TokioClock;
use crate::config::{CameraOrigin, Decoder, SourceKind, Transport};
use crate::ingest::{IngestFailure, Source};

/// What the fake source does on each call (the last step repeats).
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Fails at once with this reason.
    Fail(OfflineReason),
    /// Plays, delivers one keyframe, then goes silent without ending.
    PlayThenSilent,
    /// Plays with no picture size (an SDP without parameter sets), learns it from the first
    /// keyframe's SPS, then goes silent.
    PlaySizeLater,
}

struct FakeSource {
    steps: Vec<Step>,
    calls: Mutex<Vec<Instant>>,
}

impl FakeSource {
    fn new(steps: &[Step]) -> Arc<FakeSource> {
        Arc::new(FakeSource {
            steps: steps.to_vec(),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<Instant> {
        lock(&self.calls).clone()
    }

    /// Seconds between consecutive calls.
    fn gaps(&self) -> Vec<f64> {
        self.calls()
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }
}

impl Source for FakeSource {
    fn run<'a>(
        &'a self,
        spec: &'a SessionSpec,
        observer: &'a mut dyn SessionObserver,
    ) -> BoxFuture<'a, IngestFailure> {
        let n = {
            let mut calls = lock(&self.calls);
            calls.push(Instant::now());
            calls.len() - 1
        };
        let step = self.steps[n.min(self.steps.len() - 1)];
        Box::pin(async move {
            match step {
                Step::Fail(reason) => IngestFailure {
                    camera: spec.camera.clone(),
                    reason,
                    detail: format!("fake {reason:?}"),
                    had_media: false,
                },
                Step::PlayThenSilent | Step::PlaySizeLater => {
                    let info = StreamInfo {
                        codec: VideoCodec::H264,
                        width: 384,
                        height: 288,
                        transport: "tcp",
                        tool: None,
                    };
                    if matches!(step, Step::PlaySizeLater) {
                        let unknown = StreamInfo {
                            width: 0,
                            height: 0,
                            ..info.clone()
                        };
                        observer.playing(&unknown);
                    } else {
                        observer.playing(&info);
                    }
                    observer.access_unit(
                        AccessUnit {
                            data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
                            keyframe: true,
                            pts_90k: 0,
                            arrival: std::time::SystemTime::now(),
                            loss: 0,
                        },
                        &info,
                    );
                    std::future::pending().await
                }
            }
        })
    }
}

/// Counts what reaches the decoder and which cameras were released.
#[derive(Default)]
struct RecordingSink {
    frames: Mutex<usize>,
    released: Mutex<Vec<String>>,
}

impl FrameSink for RecordingSink {
    fn submit(&self, _entry: &CameraEntry, _frame: EncodedFrame) -> Verdict {
        *lock(&self.frames) += 1;
        Verdict::Decode
    }
    fn release(&self, camera: &str) {
        lock(&self.released).push(camera.to_owned());
    }
}

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(8);
const AUTH: Duration = Duration::from_secs(300);
const STALL: Duration = Duration::from_secs(10);

fn fleet(
    source: Arc<FakeSource>,
    jitter: f64,
) -> (Arc<Fleet>, Arc<RecordingSink>, CancellationToken) {
    let sink = Arc::new(RecordingSink::default());
    let root = CancellationToken::new();
    let ctx = FleetContext {
        ingest: IngestConfig {
            transport: Transport::Tcp,
            stall_after: STALL,
            backoff_initial: INITIAL,
            backoff_max: MAX,
            auth_failed_backoff: AUTH,
            decoder: Decoder::Cpu,
            keyframe_only: true,
            analysis_fps: 1.0,
            stream: StreamChoice::Sub,
        },
        health: config::HealthConfig {
            grace: Duration::from_secs(5),
            offline_after: STALL,
        },
        vqd: VqdConfig::default(),
        activity: ActivityConfig::default(),
        stream: StreamChoice::Sub,
        credentials: RwLock::new(BTreeMap::new()),
        sink: sink.clone(),
        clock: Arc::new(TokioClock::new()),
        source,
        jitter: Arc::new(move || jitter),
    };
    (Fleet::new(ctx, root.clone()), sink, root)
}

fn camera(id: &str) -> Camera {
    Camera {
        id: id.into(),
        gb_code: None,
        name: format!("摄像机{id}"),
        url: url::Url::parse("rtsp://10.0.0.1/s").expect("url"),
        sub_url: None,
        source: SourceKind::Rtsp,
        credentials: None,
        location: None,
        area_code: None,
        area_path: None,
        jurisdiction: None,
        priority: 3,
        tags: vec![],
        enabled: true,
        transport: Transport::Tcp,
        analysis_fps: 1.0,
        keyframe_only: true,
        maintenance: vec![],
        origin: CameraOrigin::Toml { index: 0 },
        definition: String::new(),
    }
}

/// Lets the camera task run until it has called the source `n` times (an hour of paused time at
/// most: a supervisor that never retries fails the test instead of hanging it).
async fn until_calls(source: &FakeSource, n: usize) {
    let wait = async {
        while source.calls().len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(3600), wait)
        .await
        .is_err()
    {
        panic!(
            "only {} source calls in an hour, expected {n}",
            source.calls().len()
        );
    }
}

fn reconnects(entry: &CameraEntry, reason: OfflineReason) -> u64 {
    let i = REASONS.iter().position(|r| *r == reason).expect("reason");
    entry.counters.reconnects[i].load(Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_initial_to_its_cap() {
    let source = FakeSource::new(&[Step::Fail(OfflineReason::Unreachable)]);
    // Jitter 1.0: each delay is its whole ceiling.
    let (fleet, _, root) = fleet(source.clone(), 1.0);
    let entry = fleet.add(camera("c1")).expect("add");
    until_calls(&source, 7).await;
    assert_eq!(source.gaps(), [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
    // Each call failed at once and was counted under its reason.
    assert_eq!(reconnects(&entry, OfflineReason::Unreachable), 7);
    root.cancel();
    fleet.wait().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_each_delay_in_the_upper_half_of_its_ceiling() {
    let source = FakeSource::new(&[Step::Fail(OfflineReason::Timeout)]);
    let (fleet, _, root) = fleet(source.clone(), 0.0);
    fleet.add(camera("c1")).expect("add");
    until_calls(&source, 6).await;
    // Jitter 0.0: half of each ceiling 1, 2, 4, 8, 8.
    assert_eq!(source.gaps(), [0.5, 1.0, 2.0, 4.0, 4.0]);
    root.cancel();
    fleet.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_is_retried_only_at_the_auth_failed_interval() {
    let source = FakeSource::new(&[Step::Fail(OfflineReason::AuthFailed)]);
    let (fleet, _, root) = fleet(source.clone(), 1.0);
    let entry = fleet.add(camera("c1")).expect("add");
    until_calls(&source, 4).await;
    assert_eq!(source.gaps(), [300.0, 300.0, 300.0]);
    assert_eq!(reconnects(&entry, OfflineReason::AuthFailed), 4);
    root.cancel();
    fleet.wait().await;
}

#[tokio::test(start_paused = true)]
async fn the_picture_size_comes_from_the_in_band_sps_when_the_sdp_has_none() {
    let source = FakeSource::new(&[Step::PlaySizeLater]);
    let (fleet, _, root) = fleet(source.clone(), 1.0);
    let entry = fleet.add(camera("c1")).expect("add");
    until_calls(&source, 1).await;
    let size = || lock(&entry.stream).as_ref().map(|s| (s.width, s.height));
    for _ in 0..1000 {
        if size() == Some((384, 288)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        size(),
        Some((384, 288)),
        "the size from the SPS reaches the API"
    );
    root.cancel();
    fleet.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_session_is_torn_down_as_stalled_after_stall_after() {
    // Plays, delivers one keyframe, then nothing: the watchdog ends it; the backoff starts over
    // (the session had media), so the next attempt follows 1 s later.
    let source = FakeSource::new(&[Step::PlayThenSilent]);
    let (fleet, sink, root) = fleet(source.clone(), 1.0);
    let entry = fleet.add(camera("c1")).expect("add");
    let stalled = async {
        while reconnects(&entry, OfflineReason::Stalled) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), stalled)
        .await
        .expect("a silent session torn down within a minute");
    // Between the teardown and the next attempt (1 s later) the camera says why.
    let error = lock(&entry.last_error).clone();
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("no media for 10 s")),
        "{error:?}"
    );
    until_calls(&source, 3).await;
    assert_eq!(source.gaps(), [11.0, 11.0]);
    assert_eq!(reconnects(&entry, OfflineReason::Stalled), 2);
    // Each session's keyframe reached the sink; each torn-down session released its decoder.
    assert_eq!(*lock(&sink.frames), 3);
    assert!(lock(&sink.released).len() >= 2);
    root.cancel();
    fleet.wait().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_backoff_ends_the_task_at_once() {
    let source = FakeSource::new(&[Step::Fail(OfflineReason::AuthFailed)]);
    let (fleet, sink, root) = fleet(source.clone(), 1.0);
    fleet.add(camera("c1")).expect("add");
    until_calls(&source, 1).await;
    // Now in its 300 s auth_failed backoff.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    root.cancel();
    fleet.wait().await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "the task waited out its backoff: {:?}",
        t0.elapsed()
    );
    assert_eq!(source.calls().len(), 1);
    assert_eq!(*lock(&sink.released), ["c1", "c1"]);
}

#[tokio::test(start_paused = true)]
async fn removing_one_camera_leaves_the_others_running() {
    let a = FakeSource::new(&[Step::Fail(OfflineReason::Refused)]);
    let (fleet, _, root) = fleet(a.clone(), 1.0);
    fleet.add(camera("c1")).expect("add c1");
    fleet.add(camera("c2")).expect("add c2");
    until_calls(&a, 4).await;
    fleet.remove("c1").expect("remove");
    let before = a.calls().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Only c2 still calls: 1 s, 2 s, 4 s, 8 s, 8 s … within a minute at least 5 more calls.
    assert!(
        a.calls().len() >= before + 5,
        "{} → {}",
        before,
        a.calls().len()
    );
    assert!(fleet.get("c1").is_none() && fleet.get("c2").is_some());
    root.cancel();
    fleet.wait().await;
}
