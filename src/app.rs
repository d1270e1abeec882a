//! Wiring: builds each stage and its channels, and owns the shutdown order.
//!
//! cameras (fleet) → ingest → decoder pool → decode dispatcher (VQD → health trackers, → analysis)
//! health poller (1 s) → transitions → ledger thread (SQLite) and the transition broadcast.
//! Shutdown: stop the web server and camera tasks, drain the decoder, then let the ledger write what it has.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::alert::board::{self, AlertBoard};
use crate::batch::{BatchInput, BatchStage};
use crate::camera::{Fleet, FleetContext, FrameSink};
use crate::clock::{Clock, SystemClock};
use crate::config::{Camera, Config};
use crate::decode::{DecodeConfig, DecodeEvent, DecoderPool, EncodedFrame};
use crate::health::{self, AvailabilityRow, GroupBy, Ledger, Transition, VqdConfig, VqdSample};
use crate::infer::{Analysed, Inferencer, ModelManifest, OrtRuntime};
use crate::rules::runner::{self as rules_runner, Candidate, RulesStats};
use crate::sync::lock;
use crate::web::{self, AppState, DropCounts};

/// Transitions waiting for the ledger thread; the health poller waits (never drops) when it is full.
const LEDGER_QUEUE: usize = 16_384;
/// Transition broadcast for live subscribers; a slow subscriber loses the oldest and is told so.
const BROADCAST_QUEUE: usize = 4_096;

/// Command-line overrides of the config for scripted runs.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created.
    #[error("creating data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The ledger database could not be opened.
    #[error(transparent)]
    Ledger(#[from] health::LedgerError),
    /// The decoder could not be started (e.g. NVDEC requested on a machine without it).
    #[error(transparent)]
    Decode(#[from] crate::decode::DecodeError),
    /// A model, the ONNX Runtime or an analysis stage could not start.
    #[error("analysis: {0}")]
    Analysis(String),
    /// The users database could not be opened or seeded.
    #[error("users database: {0}")]
    Auth(String),
    /// The listen address is taken.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

enum LedgerCmd {
    Record(Box<Transition>),
    Heartbeat(SystemTime),
    Upsert(Box<Camera>),
    Remove(String),
    Availability {
        from: SystemTime,
        to: SystemTime,
        group_by: GroupBy,
        reply: oneshot::Sender<Result<Vec<AvailabilityRow>, String>>,
    },
    History {
        camera: String,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Transition>, String>>,
    },
}

/// A handle to the ledger thread.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<LedgerCmd>,
}

impl LedgerHandle {
    async fn send(&self, cmd: LedgerCmd) {
        if self.tx.send(cmd).await.is_err() {
            tracing::error!("ledger thread is gone; a ledger write was lost");
        }
    }

    /// Persists a transition (waits if the ledger is behind).
    pub async fn record(&self, t: Transition) {
        self.send(LedgerCmd::Record(Box::new(t))).await;
    }

    /// Stores a camera's descriptive fields (area, jurisdiction) for roll-ups.
    pub async fn upsert_camera(&self, c: &Camera) {
        self.send(LedgerCmd::Upsert(Box::new(c.clone()))).await;
    }

    /// Marks a camera removed (its history stays).
    pub async fn remove_camera(&self, id: &str) {
        self.send(LedgerCmd::Remove(id.to_owned())).await;
    }

    /// Time-weighted availability over `[from, to)`.
    pub async fn availability(
        &self,
        from: SystemTime,
        to: SystemTime,
        group_by: GroupBy,
    ) -> Result<Vec<AvailabilityRow>, String> {
        let (reply, rx) = oneshot::channel();
        self.send(LedgerCmd::Availability {
            from,
            to,
            group_by,
            reply,
        })
        .await;
        rx.await.map_err(|_| "ledger thread stopped".to_owned())?
    }

    /// A camera's recent transitions, newest first.
    pub async fn history(&self, camera: &str, limit: usize) -> Result<Vec<Transition>, String> {
        let (reply, rx) = oneshot::channel();
        self.send(LedgerCmd::History {
            camera: camera.to_owned(),
            limit,
            reply,
        })
        .await;
        rx.await.map_err(|_| "ledger thread stopped".to_owned())?
    }
}

fn spawn_ledger(
    mut ledger: Ledger,
    mut rx: mpsc::Receiver<LedgerCmd>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ledger".into())
        .spawn(move || {
            while let Some(cmd) = rx.blocking_recv() {
                let result = match cmd {
                    LedgerCmd::Record(t) => ledger.record(&t).map_err(|e| e.to_string()),
                    LedgerCmd::Heartbeat(now) => ledger.heartbeat(now).map_err(|e| e.to_string()),
                    LedgerCmd::Upsert(c) => ledger.upsert_camera(&c).map_err(|e| e.to_string()),
                    LedgerCmd::Remove(id) => ledger.remove_camera(&id).map_err(|e| e.to_string()),
                    LedgerCmd::Availability {
                        from,
                        to,
                        group_by,
                        reply,
                    } => {
                        let _ = reply.send(
                            ledger
                                .availability(from, to, group_by, SystemTime::now())
                                .map_err(|e| e.to_string()),
                        );
                        Ok(())
                    }
                    LedgerCmd::History {
                        camera,
                        limit,
                        reply,
                    } => {
                        let _ =
                            reply.send(ledger.history(&camera, limit).map_err(|e| e.to_string()));
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "ledger write failed");
                }
            }
        })
}

/// Keyframe-only cameras share the pool; a camera that decodes full GOPs gets its own decoder,
/// started on its first frame (a decoder that cannot start is reported once and retried on the next
/// keyframe).
struct RoutingSink {
    pool: Arc<DecoderPool>,
    config: DecodeConfig,
    out: crossbeam_channel::Sender<DecodeEvent>,
    dedicated: std::sync::Mutex<std::collections::HashMap<Arc<str>, crate::decode::CameraDecoder>>,
}

impl FrameSink for RoutingSink {
    fn submit(&self, frame: EncodedFrame, keyframe_only: bool) {
        if keyframe_only {
            self.pool.submit(frame);
            return;
        }
        let mut dedicated = lock(&self.dedicated);
        if !dedicated.contains_key(&frame.camera) {
            if !frame.keyframe {
                return;
            }
            match crate::decode::CameraDecoder::start(
                frame.camera.clone(),
                frame.codec,
                self.config,
                self.out.clone(),
            ) {
                Ok(d) => {
                    dedicated.insert(frame.camera.clone(), d);
                }
                Err(e) => {
                    let _ = self.out.try_send(DecodeEvent::Error {
                        camera: frame.camera.clone(),
                        detail: e.to_string(),
                    });
                    return;
                }
            }
        }
        if let Some(d) = dedicated.get(&frame.camera) {
            d.submit(frame);
        }
    }

    fn release(&self, camera: &str) {
        let removed = lock(&self.dedicated).remove(camera);
        if let Some(d) = removed {
            d.shutdown();
        }
    }
}

impl RoutingSink {
    fn shutdown(self) {
        let dedicated = std::mem::take(&mut *lock(&self.dedicated));
        for (_, d) in dedicated {
            d.shutdown();
        }
        match Arc::try_unwrap(self.pool) {
            Ok(pool) => pool.shutdown(),
            Err(_) => tracing::warn!("decoder pool still referenced at shutdown; not drained"),
        }
    }
}

/// Decoded frames → VQD → the camera's tracker, and on to each model's batcher.
fn spawn_dispatcher(
    fleet: std::sync::Weak<Fleet>,
    rx: crossbeam_channel::Receiver<DecodeEvent>,
    analysis: Vec<crossbeam_channel::Sender<BatchInput>>,
    analysis_dropped: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("decode-dispatch".into()).spawn(move || {
        // Ends when every decoder is gone (the channel closes) or, as a fallback, when told to stop.
        loop {
            let event = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(e) => e,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                DecodeEvent::Frame(frame) => {
                    let Some(entry) = fleet.upgrade().and_then(|f| f.get(&frame.camera)) else { continue };
                    match VqdSample::measure(&frame.data, frame.width, frame.height, frame.stride) {
                        Ok(sample) => lock(&entry.tracker).on_decoded(&sample),
                        Err(e) => tracing::warn!(camera_id = %frame.camera, error = %e, "frame not measurable"),
                    }
                    entry.counters.analysed.fetch_add(1, Ordering::Relaxed);
                    refresh_thumbnail(&entry, &frame);
                    let frame = Arc::new(frame);
                    if !analysis.is_empty() {
                        let (priority, configured_fps) = entry
                            .config
                            .read()
                            .map(|c| (c.priority, c.analysis_fps))
                            .unwrap_or((3, 1.0));
                        for tx in &analysis {
                            let input = BatchInput {
                                frame: frame.clone(),
                                priority,
                                configured_fps,
                            };
                            // The batcher keeps only each camera's newest frame anyway; a full
                            // hand-over queue means inference is far behind: drop and count.
                            if tx.try_send(input).is_err() {
                                analysis_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                DecodeEvent::Error { camera, detail } => {
                    tracing::warn!(camera_id = %camera, %detail, "decode error");
                    if let Some(entry) = fleet.upgrade().and_then(|f| f.get(&camera)) {
                        *lock(&entry.last_error) = Some(format!("decode: {detail}"));
                    }
                }
            }
        }
    })
}

/// Encodes the camera's thumbnail when someone is watching it and the last one is old enough.
fn refresh_thumbnail(entry: &crate::camera::CameraEntry, frame: &crate::decode::DecodedFrame) {
    let now = Instant::now();
    if !lock(&entry.thumbnail).due(now) {
        return;
    }
    match crate::alert::snapshot::frame_jpeg(frame, crate::camera::Thumbnail::MAX_WIDTH, 75) {
        Ok(jpeg) => {
            let mut t = lock(&entry.thumbnail);
            t.jpeg = Some((bytes::Bytes::from(jpeg), frame.decoded_at));
            t.encoded_at = Some(now);
        }
        Err(e) => {
            tracing::warn!(camera_id = %frame.camera, error = %e, "thumbnail not encoded");
            lock(&entry.thumbnail).encoded_at = Some(now);
        }
    }
}

/// Raises alerts left `new` too long (every 10 s).
async fn escalation_timer(delivery: Arc<crate::sinks::Delivery>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let d = delivery.clone();
        match tokio::task::spawn_blocking(move || d.escalate_due()).await {
            Ok(Ok(escalated)) if !escalated.is_empty() => {
                tracing::warn!(
                    count = escalated.len(),
                    "alerts escalated: still new after the escalation time"
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "escalation check failed"),
            _ => {}
        }
    }
}

/// Polls every tracker once a second; transitions go to the ledger and the broadcast.
async fn health_poller(
    fleet: Arc<Fleet>,
    ledger: LedgerHandle,
    delivery: Arc<crate::sinks::Delivery>,
    zmq: Option<Arc<crate::sinks::zmq_pub::ZmqPublisher>>,
    events: broadcast::Sender<Transition>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let wall = clock.wall();
        ticks += 1;
        if ticks.is_multiple_of(60) {
            ledger.send(LedgerCmd::Heartbeat(wall)).await;
        }
        let mut transitions = Vec::new();
        for entry in fleet.list() {
            let maintenance = entry
                .config
                .read()
                .map(|c| c.in_maintenance_at(wall))
                .unwrap_or(false);
            let mut t = lock(&entry.tracker);
            t.set_maintenance(maintenance);
            while let Some(tr) = t.poll() {
                transitions.push(tr);
            }
        }
        for tr in transitions {
            tracing::info!(
                camera_id = %tr.camera,
                from = ?tr.from.state,
                to = ?tr.to.state,
                reason = ?tr.to.reason,
                faults = ?tr.to.faults,
                "camera state changed"
            );
            let _ = events.send(tr.clone());
            if let (Some(z), Ok(json)) = (&zmq, serde_json::to_string(&tr)) {
                z.publish_health(&tr.camera, json);
            }
            let d = delivery.clone();
            let t = tr.clone();
            let area: Vec<String> = fleet
                .get(&tr.camera)
                .and_then(|e| e.camera().area_path.map(|a| a.segments().to_vec()))
                .unwrap_or_default();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.health(&t, area)).await {
                tracing::error!(error = %e, "health event not stored for the feed");
            }
            ledger.record(tr).await;
        }
    }
}

/// Frames decoded → per-model batcher → inference threads → rules thread → alerts thread.
struct Analysis {
    inputs: Vec<crossbeam_channel::Sender<BatchInput>>,
    batchers: Vec<BatchStage>,
    inferencers: Vec<Inferencer>,
    rules: std::thread::JoinHandle<()>,
    alerts: std::thread::JoinHandle<()>,
    /// Model names and the execution provider each runs on.
    models: Vec<(String, &'static str)>,
    stats: Arc<RulesStats>,
    /// Reads every model's batcher and inference counters.
    model_stats: Arc<dyn Fn() -> Vec<web::ModelStats> + Send + Sync>,
}

/// Hand-over queue from the decode dispatcher to each model's batcher.
const ANALYSIS_QUEUE: usize = 256;
/// Model outputs waiting for the rules thread (inference waits when full).
const ANALYSED_QUEUE: usize = 64;
/// Candidates waiting for the alerts thread (the rules thread waits when full).
const CANDIDATE_QUEUE: usize = 256;

fn start_analysis(
    config: &Config,
    clock: &Arc<dyn Clock>,
    board: Arc<AlertBoard>,
    fleet: std::sync::Weak<Fleet>,
    delivery: Arc<crate::sinks::Delivery>,
    zmq: Option<Arc<crate::sinks::zmq_pub::ZmqPublisher>>,
    live_rules: &crate::rules::live::LiveRules,
) -> Result<Option<Analysis>, AppError> {
    let Some(analysis) = &config.analysis else {
        return Ok(None);
    };
    let err = |e: &dyn std::fmt::Display| AppError::Analysis(e.to_string());
    let settings = &analysis.inference;
    let ort = OrtRuntime::init(&settings.ort_library).map_err(|e| err(&e))?;
    let (analysed_tx, analysed_rx) = crossbeam_channel::bounded::<Analysed>(ANALYSED_QUEUE);
    let mut inputs = Vec::new();
    let mut batchers = Vec::new();
    let mut inferencers = Vec::new();
    let mut models = Vec::new();
    for path in &settings.models {
        let manifest =
            Arc::new(ModelManifest::load(path, &config.node.assets_dir).map_err(|e| err(&e))?);
        let budget = Arc::new(crate::batch::AdmissionBudget::new(settings.budget));
        let (batch_tx, batch_rx) = crate::batch::channel(settings.infer.threads.max(1));
        let inferencer = Inferencer::start(
            ort,
            manifest.clone(),
            &settings.infer,
            batch_rx,
            analysed_tx.clone(),
            Some(budget.clone()),
        )
        .map_err(|e| err(&e))?;
        let (in_tx, in_rx) = crossbeam_channel::bounded(ANALYSIS_QUEUE);
        let stage = BatchStage::start(
            &manifest.name,
            settings.batch_config(&manifest),
            clock.clone(),
            Some(budget),
            in_rx,
            batch_tx,
        )
        .map_err(|e| err(&e))?;
        tracing::info!(model = %manifest.name, provider = inferencer.provider_in_use(), "model loaded");
        models.push((manifest.name.to_string(), inferencer.provider_in_use()));
        inputs.push(in_tx);
        batchers.push(stage);
        inferencers.push(inferencer);
    }
    drop(analysed_tx);
    let readers: Vec<_> = models
        .iter()
        .zip(&batchers)
        .zip(&inferencers)
        .map(|(((name, _), b), i)| (name.clone(), b.counters(), i.stats_reader()))
        .collect();
    let model_stats: Arc<dyn Fn() -> Vec<web::ModelStats> + Send + Sync> = Arc::new(move || {
        readers
            .iter()
            .map(|(model, batch, infer)| web::ModelStats {
                model: model.clone(),
                batch: batch.snapshot(),
                infer: infer(),
            })
            .collect()
    });
    let stats = Arc::new(RulesStats::default());
    let has_detector = settings.models.iter().any(|m| {
        ModelManifest::load(m, &config.node.assets_dir)
            .map(|mf| matches!(mf.kind, crate::infer::ModelKind::Detector(_)))
            .unwrap_or(false)
    });
    let (cand_tx, cand_rx) = crossbeam_channel::bounded::<Candidate>(CANDIDATE_QUEUE);
    let rules = rules_runner::spawn(
        analysed_rx,
        &analysis.rules,
        crate::track::TrackerConfig::default(),
        has_detector,
        cand_tx,
        stats.clone(),
        Some(live_rules.pending()),
    )
    .map_err(|e| err(&e))?;
    let cameras: board::CameraLookup =
        Arc::new(move |id: &str| fleet.upgrade().and_then(|f| f.get(id)).map(|e| e.camera()));
    let alerts = board::spawn(cand_rx, board, cameras, Some(delivery), zmq).map_err(|e| err(&e))?;
    Ok(Some(Analysis {
        inputs,
        batchers,
        inferencers,
        rules,
        alerts,
        models,
        stats,
        model_stats,
    }))
}

impl Analysis {
    /// Closes the inputs and joins each stage in data-flow order.
    fn stop(self) {
        drop(self.inputs);
        for b in self.batchers {
            b.join();
        }
        for i in self.inferencers {
            i.join();
        }
        let _ = self.rules.join();
        let _ = self.alerts.join();
    }
}

/// The running service.
pub struct Service {
    /// The fleet.
    pub fleet: Arc<Fleet>,
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Transitions as they happen.
    pub transitions: broadcast::Sender<Transition>,
    /// Ledger access.
    pub ledger: LedgerHandle,
    web_task: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
    sink: Arc<RoutingSink>,
    dispatcher: std::thread::JoinHandle<()>,
    dispatcher_stop: Arc<std::sync::atomic::AtomicBool>,
    ledger_thread: std::thread::JoinHandle<()>,
    delivery_tasks: Vec<tokio::task::JoinHandle<()>>,
    analysis: Option<Analysis>,
}

/// Starts every stage; they run until `cancel` fires, then [`Service::stop`] drains them in order.
pub async fn start(
    mut config: Config,
    overrides: Overrides,
    cancel: CancellationToken,
) -> Result<Service, AppError> {
    if let Some(l) = overrides.listen {
        config.web.listen = l;
    }
    if let Some(d) = overrides.data_dir {
        config.node.data_dir = d;
    }
    let data_dir = config.node.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let mut ledger = Ledger::open(data_dir.join("qianliyan.db"))?;
    // Time while the service was down counts as unknown, not as the last state seen.
    ledger.begin_run(clock.wall())?;
    let (ledger_tx, ledger_rx) = mpsc::channel(LEDGER_QUEUE);
    let ledger_thread = spawn_ledger(ledger, ledger_rx).map_err(|source| AppError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let ledger = LedgerHandle { tx: ledger_tx };

    let (decoded_tx, decoded_rx) = crossbeam_channel::bounded(1024);
    // One pool worker per core (measured: decoding is the fleet's largest cost), and a queue deep
    // enough for the keyframes of cameras whose GOPs happen to line up.
    let decode_workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let pool = Arc::new(DecoderPool::start(
        DecodeConfig {
            kind: config.ingest.decoder.into(),
            workers: decode_workers,
            queue: 512,
            ..DecodeConfig::default()
        },
        decoded_tx.clone(),
    )?);

    let sink = Arc::new(RoutingSink {
        pool: pool.clone(),
        config: DecodeConfig {
            kind: config.ingest.decoder.into(),
            ..DecodeConfig::default()
        },
        out: decoded_tx.clone(),
        dedicated: std::sync::Mutex::new(Default::default()),
    });
    let fleet = Fleet::new(
        FleetContext {
            ingest: config.ingest.clone(),
            health: config.health,
            vqd: VqdConfig::default(),
            stream: config.ingest.stream,
            credentials: std::sync::RwLock::new(config.credentials.clone()),
            sink: sink.clone(),
            clock: clock.clone(),
        },
        cancel.child_token(),
    );
    for camera in config.cameras.clone() {
        ledger.upsert_camera(&camera).await;
        if let Err(e) = fleet.add(camera) {
            tracing::error!(error = %e, "camera not added");
        }
    }
    let auth_path = data_dir.join("auth.db");
    let auth_config = config.auth.clone();
    let auth_clock = clock.clone();
    let auth = tokio::task::spawn_blocking(move || {
        crate::auth::Auth::open(&auth_path, &auth_config, auth_clock)
    })
    .await
    .map_err(|e| AppError::Auth(e.to_string()))?
    .map_err(|e| AppError::Auth(e.to_string()))?;
    let alert_board = AlertBoard::new(data_dir.join("snapshots"));
    let store =
        crate::store::AlertStore::open(&data_dir.join("alerts.db"), &data_dir.join("snapshots"))
            .map_err(|e| AppError::Analysis(format!("alert store: {e}")))?;
    let delivery = crate::sinks::Delivery::new(store, config.delivery.clone(), clock.clone());
    let worker = delivery
        .worker()
        .map_err(|e| AppError::Analysis(format!("delivery worker: {e}")))?;
    let delivery_task = tokio::spawn(worker.run(delivery.wake.clone(), cancel.child_token()));
    let escalation_task = tokio::spawn(escalation_timer(delivery.clone(), cancel.clone()));
    let zmq = match &config.delivery.zmq_endpoint {
        None => None,
        Some(endpoint) => {
            let p =
                crate::sinks::zmq_pub::ZmqPublisher::start(endpoint, config.delivery.zmq_hwm, 4096)
                    .map_err(|e| AppError::Analysis(format!("ZeroMQ: {e}")))?;
            tracing::info!(endpoint = p.endpoint(), "ZeroMQ PUB bound (best effort)");
            Some(Arc::new(p))
        }
    };
    let live_rules = Arc::new(match &config.analysis {
        Some(a) => crate::rules::live::LiveRules::new(
            data_dir.join("rules.toml"),
            a.rules_file.clone(),
            a.anomaly_model,
        ),
        None => crate::rules::live::LiveRules::new(data_dir.join("rules.toml"), None, false),
    });
    if let Some(analysis) = config.analysis.as_mut() {
        let known = config.cameras.iter().map(|c| c.id.clone()).collect();
        match live_rules.load_saved(known) {
            None => {}
            Some(Ok(saved)) => {
                tracing::info!(path = %live_rules.path().display(), rules = saved.rules.len(), "running the rules saved through the editor (they replace the configured file)");
                analysis.rules = saved;
            }
            Some(Err(errors)) => {
                for e in &errors {
                    tracing::error!(path = %live_rules.path().display(), field = %e.path, message = %e.message, "saved rules are invalid; running the configured rules file");
                }
            }
        }
    }
    let analysis = start_analysis(
        &config,
        &clock,
        alert_board.clone(),
        Arc::downgrade(&fleet),
        delivery.clone(),
        zmq.clone(),
        &live_rules,
    )?;
    let analysis_dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let dispatcher_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dispatcher = spawn_dispatcher(
        Arc::downgrade(&fleet),
        decoded_rx,
        analysis
            .as_ref()
            .map(|a| a.inputs.clone())
            .unwrap_or_default(),
        analysis_dropped.clone(),
        dispatcher_stop.clone(),
    )
    .map_err(|source| AppError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let (transitions, _) = broadcast::channel(BROADCAST_QUEUE);
    let poller = tokio::spawn(health_poller(
        fleet.clone(),
        ledger.clone(),
        delivery.clone(),
        zmq.clone(),
        transitions.clone(),
        clock.clone(),
        cancel.clone(),
    ));

    let listen = config.web.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    let stats_pool = pool.clone();
    drop(pool);
    drop(decoded_tx);
    let state = Arc::new(AppState {
        fleet: fleet.clone(),
        ledger: ledger.clone(),
        config,
        started: SystemTime::now(),
        models: analysis
            .as_ref()
            .map(|a| a.models.clone())
            .unwrap_or_default(),
        analysis_dropped: analysis_dropped.clone(),
        rules_stats: analysis.as_ref().map(|a| a.stats.clone()),
        live_rules,
        auth,
        delivery: delivery.clone(),
        decode_stats: {
            let pool = stats_pool.clone();
            Arc::new(move || {
                let s = pool.stats();
                DropCounts {
                    gate: 0,
                    queue_full: s.dropped.queue_full,
                    decode_error: s.dropped.decode_error,
                }
            })
        },
        decode_queue: Arc::new(move || stats_pool.stats().queue_depth),
        model_stats: analysis
            .as_ref()
            .map(|a| a.model_stats.clone())
            .unwrap_or_else(|| Arc::new(Vec::new)),
    });
    let app = web::router(state);
    let web_cancel = cancel.clone();
    let web_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { web_cancel.cancelled().await })
        .await
        {
            tracing::error!(error = %e, "web server stopped");
        }
    });
    tracing::info!(%addr, cameras = fleet.list().len(), "qianliyan serving");
    Ok(Service {
        fleet,
        addr,
        transitions,
        ledger,
        web_task,
        poller,
        sink,
        dispatcher,
        dispatcher_stop,
        ledger_thread,
        delivery_tasks: vec![delivery_task, escalation_task],
        analysis,
    })
}

impl Service {
    /// After the cancel token fired: waits for sources, drains the decoder, flushes the ledger.
    pub async fn stop(self) {
        let _ = self.web_task.await;
        for t in self.delivery_tasks {
            let _ = t.await;
        }
        self.fleet.wait().await;
        let _ = self.poller.await;
        // Camera tasks and the web state are gone; dropping the fleet drops the last frame sink,
        // so the pool is ours alone and can drain; its end closes the dispatcher's channel.
        drop(self.fleet);
        let sink = self.sink;
        let dispatcher = self.dispatcher;
        let analysis = self.analysis;
        let dispatcher_stop = self.dispatcher_stop;
        let _ = tokio::task::spawn_blocking(move || {
            match Arc::try_unwrap(sink) {
                Ok(sink) => sink.shutdown(),
                Err(_) => {
                    // Someone still holds the fleet (and so the sink): stop without draining.
                    tracing::warn!("frame sink still referenced at shutdown; decoders not drained");
                    dispatcher_stop.store(true, Ordering::Relaxed);
                }
            }
            let _ = dispatcher.join();
            // The dispatcher held the analysis inputs' senders; now the analysis stages drain.
            if let Some(a) = analysis {
                a.stop();
            }
        })
        .await;
        drop(self.ledger);
        drop(self.transitions);
        let ledger_thread = self.ledger_thread;
        let _ = tokio::task::spawn_blocking(move || ledger_thread.join()).await;
    }
}
