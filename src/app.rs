//! Wiring: builds each stage and its channels, and owns the shutdown order.
//!
//! cameras (fleet) → ingest → decoder pool → decode dispatcher (VQD → health trackers, → analysis)
//! health::run_poller (1 s) → transitions → ledger thread (SQLite), the command-hall feed and ZeroMQ.
//! Shutdown: stop the web server and camera tasks, drain the decoder, then let the ledger write what it has.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::board::{self, AlertBoard};
use crate::batch::{BatchInput, BatchStage};
use crate::camera::{Fleet, FleetContext, FrameSink, Verdict};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::decode::{DecodeConfig, DecoderPool, EncodedFrame, Router};
use crate::health::OfflineReason;
use crate::health::{self, Ledger, LedgerHandle, VqdConfig};
use crate::infer::{Analysed, InViewTap, Inferencer, OrtRuntime};
use crate::queue::{FullPolicy, QueueInfo};
use crate::rules::runner::{self as rules_runner, Candidate, RulesStats};
use crate::settings::{AnalysisConfig, Settings};
use crate::sync::{lock, read};
use crate::time::unix_ms;
use crate::web::{self, AppState};

/// Transitions waiting for the ledger thread; the health poller waits (never drops) when it is full.
const LEDGER_QUEUE: usize = 16_384;
/// Cameras to start or stop on this node, from the cluster stage (a whole cluster's worth).
const HOLDING_QUEUE: usize = 8_192;

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
    /// The GB/T 28181 SIP port could not be opened.
    #[error(transparent)]
    Gb28181(crate::gb28181::GbError),
    /// A database could not be opened.
    #[error("database: {0}")]
    Database(#[from] crate::db::DbError),
    /// The camera inventory could not be opened or seeded.
    #[error(transparent)]
    Inventory(#[from] crate::config::inventory::InventoryError),
    /// The listen address is taken.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// The database of each store.
struct Databases {
    inventory: Arc<dyn crate::db::Db>,
    ledger: Arc<dyn crate::db::Db>,
    alerts: Arc<dyn crate::db::Db>,
    auth: Arc<dyn crate::db::Db>,
}

/// SQLite files in the data directory (`inventory.db`, `qianliyan.db`, `alerts.db`, `auth.db`), or
/// one PostgreSQL database for all (`[node] database_url_env` / `database_url_file`).
fn open_databases(
    database: &crate::config::Database,
    data_dir: &std::path::Path,
) -> Result<Databases, AppError> {
    use crate::db::sqlite::SqliteDb;
    use crate::sqlite::Synchronous;
    Ok(match database {
        crate::config::Database::Sqlite => Databases {
            inventory: Arc::new(SqliteDb::open(&data_dir.join("inventory.db"))?),
            ledger: Arc::new(SqliteDb::open_with(
                &data_dir.join("qianliyan.db"),
                Synchronous::Normal,
            )?),
            alerts: Arc::new(SqliteDb::open(&data_dir.join("alerts.db"))?),
            auth: Arc::new(SqliteDb::open(&data_dir.join("auth.db"))?),
        },
        crate::config::Database::Postgres { url, source, pool } => {
            // Switching from SQLite does not bring the files' contents along: say so.
            let left: Vec<&str> = ["alerts.db", "auth.db", "qianliyan.db", "inventory.db"]
                .into_iter()
                .filter(|f| data_dir.join(f).exists())
                .collect();
            if !left.is_empty() {
                tracing::warn!(
                    files = ?left,
                    dir = %data_dir.display(),
                    "SQLite stores from before are in the data directory; PostgreSQL starts without what they hold (alerts, users, ledger, cameras and rules added through the API)"
                );
            }
            let db: Arc<dyn crate::db::Db> = Arc::new(
                crate::db::postgres::PgDb::connect(url.expose(), *pool)
                    .map_err(|e| e.context(&format!("the URL from {source}")))?,
            );
            tracing::info!(database = %db.describe(), pool, "every store in PostgreSQL");
            Databases {
                inventory: db.clone(),
                ledger: db.clone(),
                alerts: db.clone(),
                auth: db,
            }
        }
    })
}

/// This node's id in a cluster: `[cluster] node_id`, else `QLY_NODE_ID`, else the host name.
fn node_id(config: &crate::cluster::ClusterConfig) -> Result<String, AppError> {
    let (id, from) = match (&config.node_id, std::env::var("QLY_NODE_ID")) {
        (Some(id), _) => (id.clone(), "cluster.node_id"),
        (None, Ok(id)) => (id, "QLY_NODE_ID"),
        (None, Err(_)) => (
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            "the host name",
        ),
    };
    if crate::cluster::config::valid_node_id(&id) {
        Ok(id)
    } else {
        Err(AppError::Database(crate::db::DbError::other(format!(
            "this node's id from {from} ({id:?}) is not a node id: 1 to 63 letters, digits, '.', '_' or '-'; set [cluster] node_id"
        ))))
    }
}

/// Where the other nodes reach this node's API: `QLY_ADVERTISE_URL`, else `[cluster]
/// advertise_url`, else the bound address (the host name in it when listening on every address).
fn advertise_url(config: &crate::cluster::ClusterConfig, bound: SocketAddr) -> String {
    if let Ok(url) = std::env::var("QLY_ADVERTISE_URL")
        && crate::cluster::config::valid_advertise_url(&url)
    {
        return url;
    }
    if let Some(url) = &config.advertise_url {
        return url.clone();
    }
    if bound.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("http://{host}:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// Applies the cluster stage's messages to the fleet: a camera this node now holds starts, one it
/// gave up or lost stops.
async fn apply_holdings(
    mut rx: mpsc::Receiver<crate::cluster::Holding>,
    fleet: Arc<Fleet>,
    ledger: LedgerHandle,
) {
    use crate::cluster::Holding;
    while let Some(h) = rx.recv().await {
        match h {
            Holding::Start { camera, .. } | Holding::Update { camera } => {
                ledger.upsert_camera(&camera).await;
                let result = if fleet.get(&camera.id).is_some() {
                    fleet.update(*camera)
                } else {
                    fleet.add(*camera)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "held camera not started");
                }
            }
            Holding::Stop { camera, why } => {
                if fleet.remove(&camera).is_ok() {
                    tracing::info!(camera_id = %camera, why = why.as_str(), "camera stopped on this node");
                }
            }
        }
    }
}

/// Queue from the GB/T 28181 stage to the camera side (device states and catalogs; it blocks).
const GB_QUEUE: usize = 4096;

/// Applies the GB/T 28181 stage's events to the fleet. A catalog's channels become cameras
/// (`gb28181://<device>/<channel>`, saved in the inventory like the API's; a camera that already
/// has the channel's `gb_code` stays the channel's camera and nothing is added); a device's state
/// becomes its channels' state: online while it is, else `device_offline` (a channel that is the
/// device itself: the device's own reason), and `unreachable` for a channel its NVR reports OFF.
/// Channels of devices that have not registered within twice `keepalive_timeout` of the start are
/// `device_offline`.
#[allow(clippy::too_many_arguments)]
async fn apply_gb_events(
    mut rx: mpsc::Receiver<crate::gb28181::GbEvent>,
    fleet: Arc<Fleet>,
    inventory: Arc<dyn crate::config::inventory::CameraStore>,
    ledger: LedgerHandle,
    config: Config,
    gb: crate::gb28181::GbConfig,
    alarms: GbAlarms,
    // In a cluster: asks the keeper for a pass after new channels are saved.
    cluster: Option<crate::cluster::Nudge>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    use crate::gb28181::GbEvent;
    use std::collections::{HashMap, HashSet};
    // (device, what alarmed, `device:<method>.<type>`) → when its last alert was raised.
    let mut raised: HashMap<(String, String, String), std::time::Instant> = HashMap::new();
    let mut devices: HashMap<String, Result<(), OfflineReason>> = HashMap::new();
    // (device, channel) pairs a device reported OFF: only that device's report counts.
    let mut reported_off: HashSet<(String, String)> = HashSet::new();
    let mut known = GbInventory::default();
    // The channels of `device` running here.
    let channels_of = |known: &GbInventory, device: &str| -> Vec<Arc<crate::camera::CameraEntry>> {
        known
            .by_device
            .get(device)
            .into_iter()
            .flatten()
            .filter_map(|id| fleet.get(id))
            .filter(|e| read(&e.config).url.host_str() == Some(device))
            .collect()
    };
    let signal = |entry: &crate::camera::CameraEntry,
                  device: &str,
                  state: Result<(), OfflineReason>,
                  off: bool| {
        let state = match state {
            Ok(()) if off => Err(OfflineReason::Unreachable),
            Ok(()) => Ok(()),
            Err(r) if &*entry.id == device => Err(r),
            Err(_) => Err(OfflineReason::DeviceOffline),
        };
        lock(&entry.tracker).on_signal(state);
    };
    // Devices that still think they are registered find out after a few failed keepalives.
    let grace = tokio::time::sleep(gb.keepalive_timeout() * 2);
    tokio::pin!(grace);
    let mut graced = false;
    // Each channel running here without a signal yet (added through the API or by a catalog
    // after its device's events, started by the cluster's keeper later, or whose device has not
    // registered) takes its device's state within a second.
    let mut unsignalled = tokio::time::interval(std::time::Duration::from_secs(1));
    unsignalled.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = unsignalled.tick() => {
                for entry in fleet.list() {
                    let (device, channel) = {
                        let c = read(&entry.config);
                        if c.source != crate::config::SourceKind::Gb28181 {
                            continue;
                        }
                        let device = c.url.host_str().unwrap_or_default().to_owned();
                        (device, c.url.path().trim_matches('/').to_owned())
                    };
                    // A device not registered here: unregistered, once devices had time to register.
                    let state = match devices.get(&device) {
                        Some(state) => *state,
                        None if graced => Err(OfflineReason::Unregistered),
                        None => continue,
                    };
                    if lock(&entry.tracker).last_signal().is_none() {
                        let off = reported_off.contains(&(device.clone(), channel));
                        signal(&entry, &device, state, off);
                    }
                }
                continue;
            }
            // From now on a channel whose device has not registered is `unregistered` (the tick).
            _ = &mut grace, if !graced => {
                graced = true;
                continue;
            }
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        match event {
            GbEvent::Alarm {
                device,
                alarm,
                in_catalog,
            } => {
                use crate::gb28181::alarm::{self, AlarmMeaning};
                let (what_zh, what_en) = alarm::describe(&alarm);
                let AlarmMeaning::Alert { alert_type, .. } = alarm::meaning(&alarm) else {
                    tracing::warn!(device, channel = %alarm.device_id, what = what_en, zh = what_zh,
                        description = alarm.description.as_deref().unwrap_or(""), "GB/T 28181 device health alarm");
                    continue;
                };
                if alarm.event_type == Some(2) {
                    tracing::info!(device, channel = %alarm.device_id, kind = alert_type.as_str(), "GB/T 28181 alarm ended");
                    continue;
                }
                // Per method and type: a manual alarm is not a repeat of a motion alarm, though
                // both are `device_alarm`s.
                let key = (
                    device.clone(),
                    alarm.device_id.clone(),
                    alarm::rule_id(&alarm),
                );
                let now = clock.now();
                if raised
                    .get(&key)
                    .is_some_and(|t| now.saturating_duration_since(*t) < gb.alarm_cooldown)
                {
                    alarms.stage.alarm_repeated();
                    tracing::debug!(device, channel = %alarm.device_id, kind = alert_type.as_str(), "GB/T 28181 alarm repeated within the cooldown");
                    continue;
                }
                raised.retain(|_, t| now.saturating_duration_since(*t) < gb.alarm_cooldown);
                raised.insert(key, now);
                // The channel under this device; else (what alarmed is in its catalog) the camera
                // that has its code, as an RTSP camera configured with `gb_code`; else (the
                // device names itself) its only channel. A device never reaches another
                // device's cameras: without a camera the alert is on what alarmed when that is
                // the device's own (in its catalog), else on the device itself.
                let own = |c: &crate::config::Camera| {
                    c.source == crate::config::SourceKind::Gb28181
                        && c.url.host_str() == Some(device.as_str())
                };
                let fits = |c: &crate::config::Camera| {
                    (own(c) && c.url.path().trim_matches('/') == alarm.device_id)
                        || (in_catalog && c.gb_code.as_deref() == Some(alarm.device_id.as_str()))
                };
                // A catalog channel's camera has the channel's id: looked up directly; the whole
                // inventory (every node's cameras) is walked only when that is not it.
                known
                    .refresh(&inventory, &config, clock.now(), GB_INVENTORY_FOR)
                    .await;
                let camera = fleet
                    .get(&alarm.device_id)
                    .map(|e| e.camera())
                    .filter(|c| fits(c) && own(c))
                    .or_else(|| {
                        known
                            .cameras
                            .values()
                            .filter(|c| fits(c))
                            .min_by_key(|c| c.source != crate::config::SourceKind::Gb28181)
                            .cloned()
                    })
                    .or_else(|| {
                        let mine = known.by_device.get(&device).map(Vec::as_slice);
                        match (alarm.device_id == device, mine) {
                            (true, Some([only])) => known.cameras.get(only).cloned(),
                            _ => None,
                        }
                    });
                let on = if in_catalog {
                    alarm.device_id.as_str()
                } else {
                    device.as_str()
                };
                let Some(mut alert) =
                    alarm::to_alert(&device, &alarm, camera.as_ref(), on, clock.wall())
                else {
                    continue;
                };
                let at = clock.wall();
                alert.id = crate::alert::board::ulid(at);
                alert.clip = alarms
                    .clips
                    .as_ref()
                    .and_then(|r| r.begin(&alert.camera, &alert.id, at));
                // Stored on its own task, tried until the store takes it: never dropped.
                let (delivery, zmq) = (alarms.delivery.clone(), alarms.zmq.clone());
                let stop = alarms.stop.clone();
                alarms
                    .tasks
                    .spawn(async move { store_device_alert(delivery, zmq, alert, stop).await });
            }
            GbEvent::Device { device, state } => {
                devices.insert(device.clone(), state);
                known
                    .refresh(&inventory, &config, clock.now(), GB_INVENTORY_FOR)
                    .await;
                for entry in channels_of(&known, &device) {
                    let off = reported_off.contains(&(device.clone(), entry.id.to_string()));
                    signal(&entry, &device, state, off);
                }
            }
            GbEvent::Catalog { device, channels } => {
                let state = devices.get(&device).copied().unwrap_or(Ok(()));
                // Every camera of the store (every node's, in a cluster), read again when old.
                if !known
                    .refresh(&inventory, &config, clock.now(), GB_INVENTORY_FOR)
                    .await
                {
                    tracing::error!(
                        device,
                        "GB/T 28181 catalog not applied: the camera inventory cannot be read; applied with the next catalog"
                    );
                    continue;
                }
                // Before adding a channel, the inventory is read again if a second old (a camera
                // added through the API meanwhile may have the channel's code).
                let mut checked = false;
                let (mut created, mut refused) = (0usize, 0usize);
                let tree = crate::gb28181::groups::Tree::new(&channels);
                for item in channels.iter().filter(|i| crate::gb28181::is_channel(i)) {
                    if item.online == Some(false) {
                        reported_off.insert((device.clone(), item.id.clone()));
                    } else {
                        reported_off.remove(&(device.clone(), item.id.clone()));
                    }
                    if !known.has(&item.id) && !checked {
                        checked = true;
                        known
                            .refresh(&inventory, &config, clock.now(), GB_INVENTORY_CHECK)
                            .await;
                    }
                    if let Some(camera) = known.linked.get(&item.id) {
                        tracing::debug!(device, channel = %item.id, camera_id = %camera, "GB/T 28181 channel is a configured camera");
                        continue;
                    }
                    if known.removed.contains(&item.id) {
                        tracing::debug!(device, channel = %item.id, "GB/T 28181 channel removed through the API: not added again");
                        continue;
                    }
                    if let Some(c) = known.cameras.get(item.id.as_str()) {
                        let ours = c.source == crate::config::SourceKind::Gb28181
                            && c.url.host_str() == Some(device.as_str());
                        // A camera of another kind with this id (an RTSP camera named by its code)
                        // or a channel of another device (also listed by an NVR or platform) keeps
                        // its own state.
                        if ours && let Some(entry) = fleet.get(&item.id) {
                            signal(&entry, &device, state, item.online == Some(false));
                        }
                        continue;
                    }
                    if known.gb >= gb.max_channels {
                        refused += 1;
                        continue;
                    }
                    let position = item
                        .latitude
                        .zip(item.longitude)
                        .filter(|(la, lo)| la.abs() <= 90.0 && lo.abs() <= 180.0);
                    let raw = crate::config::raw::RawCamera {
                        id: Some(item.id.clone()),
                        gb_code: Some(item.id.clone()),
                        name: Some(
                            item.name
                                .chars()
                                .take(crate::config::MAX_NAME_LEN)
                                .collect(),
                        ),
                        url: Some(format!("gb28181://{device}/{}", item.id)),
                        // What the inventory would refuse is left out, not the channel: a position
                        // off the globe, a civil code that is not 6, 9 or 12 digits (devices send
                        // 8, or their domain).
                        lat: position.map(|(la, _)| la),
                        lon: position.map(|(_, lo)| lo),
                        area_code: item.civil_code.clone().filter(|c| {
                            matches!(c.len(), 6 | 9 | 12) && c.bytes().all(|b| b.is_ascii_digit())
                        }),
                        area_path: tree.area_of(&gb, item).map(|a| a.to_string()),
                        origin: Some(crate::config::CameraOrigin::Api),
                        ..Default::default()
                    };
                    let (mut made, errors) =
                        crate::config::validate_runtime_cameras(vec![raw], &config);
                    let Some(camera) = made.pop().filter(|_| errors.is_empty()) else {
                        for e in errors {
                            tracing::warn!(device, channel = %item.id, field = %e.path, message = %e.message, "GB/T 28181 channel not made a camera");
                        }
                        continue;
                    };
                    let (id, definition) = (camera.id.clone(), camera.definition.clone());
                    // Into the fleet first (refused when the id was taken meanwhile), then saved;
                    // in a cluster saved only: the node that holds the device starts it.
                    let entry = if cluster.is_some() {
                        None
                    } else {
                        match fleet.add(camera.clone()) {
                            Ok(entry) => Some(entry),
                            Err(e) => {
                                tracing::error!(device, channel = %item.id, error = %e, "GB/T 28181 channel not started");
                                continue;
                            }
                        }
                    };
                    let store = inventory.clone();
                    let now = unix_ms(clock.wall());
                    let saved =
                        tokio::task::spawn_blocking(move || store.save(&id, &definition, now))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                    if let Err(e) = saved {
                        if entry.is_some() {
                            let _ = fleet.remove(&item.id);
                        }
                        tracing::error!(device, channel = %item.id, error = %e, "GB/T 28181 channel not saved; tried again with the next catalog");
                        continue;
                    }
                    ledger.upsert_camera(&camera).await;
                    created += 1;
                    known.add(camera.clone());
                    if let Some(entry) = entry {
                        signal(&entry, &device, state, item.online == Some(false));
                    }
                }
                if let Some(nudge) = &cluster
                    && created > 0
                {
                    nudge.nudge();
                }
                // A channel the device no longer lists (removed at a lower platform, a recorder's
                // channel deleted) is unreachable until a catalog lists it again. An empty
                // catalog says nothing (an IPC may answer one), nor does a channel that is the
                // device itself.
                let listed: HashSet<&str> = channels
                    .iter()
                    .filter(|i| crate::gb28181::is_channel(i))
                    .map(|i| i.id.as_str())
                    .collect();
                if !listed.is_empty() {
                    for entry in channels_of(&known, &device) {
                        let channel = read(&entry.config).url.path().trim_matches('/').to_owned();
                        if channel == device || listed.contains(channel.as_str()) {
                            continue;
                        }
                        if reported_off.insert((device.clone(), channel.clone())) {
                            tracing::warn!(device, channel, camera_id = %entry.id, "GB/T 28181 channel no longer in its device's catalog: unreachable");
                        }
                        signal(&entry, &device, state, true);
                    }
                }
                if refused > 0 {
                    tracing::warn!(
                        device,
                        refused,
                        max = gb.max_channels,
                        "GB/T 28181 channels not made cameras: gb28181.max_channels reached"
                    );
                }
                if created > 0 {
                    tracing::info!(device, created, "GB/T 28181 channels added as cameras");
                }
            }
        }
    }
}

/// How long the GB/T 28181 join uses what it read of the camera inventory.
const GB_INVENTORY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Before it adds a channel as a camera, how old a read may be.
const GB_INVENTORY_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The camera inventory as the GB/T 28181 join sees it: the store's cameras (every node's, in a
/// cluster, where the fleet has only those held here) and the GB channels removed through the API,
/// read again when older than asked (catalogs of thousands of devices must not each read it), and
/// kept up with the channels the join adds.
#[derive(Default)]
struct GbInventory {
    read_at: Option<std::time::Instant>,
    cameras: std::collections::HashMap<String, crate::config::Camera>,
    /// `gb_code` → the id of the camera of another kind (RTSP) that has it.
    linked: std::collections::HashMap<String, String>,
    /// Channel ids by device.
    by_device: std::collections::HashMap<String, Vec<String>>,
    /// Removed through the API (tombstones).
    removed: std::collections::HashSet<String>,
    /// GB channels.
    gb: usize,
}

impl GbInventory {
    /// Reads the store again if the last read is older than `within`; false when nothing was
    /// ever read (the store failing from the start).
    async fn refresh(
        &mut self,
        store: &Arc<dyn crate::config::inventory::CameraStore>,
        config: &Config,
        now: std::time::Instant,
        within: std::time::Duration,
    ) -> bool {
        if self
            .read_at
            .is_some_and(|t| now.saturating_duration_since(t) < within)
        {
            return true;
        }
        let (store, config) = (store.clone(), config.clone());
        let read = tokio::task::spawn_blocking(move || {
            store.cameras().map(|rows| {
                let removed = rows
                    .iter()
                    .filter(|r| r.removed)
                    .map(|r| r.id.clone())
                    .collect();
                (
                    crate::config::inventory::runnable(&config, &rows).0,
                    removed,
                )
            })
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        match read {
            Ok((cameras, removed)) => {
                *self = GbInventory {
                    read_at: Some(now),
                    removed,
                    ..GbInventory::default()
                };
                for c in cameras {
                    self.add(c);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "GB/T 28181: the camera inventory cannot be read; the last read stands");
            }
        }
        self.read_at.is_some()
    }

    fn add(&mut self, camera: crate::config::Camera) {
        if camera.source == crate::config::SourceKind::Gb28181 {
            self.gb += 1;
            if let Some(device) = camera.url.host_str() {
                self.by_device
                    .entry(device.to_owned())
                    .or_default()
                    .push(camera.id.clone());
            }
        } else if let Some(code) = &camera.gb_code {
            self.linked.insert(code.clone(), camera.id.clone());
        }
        self.removed.remove(&camera.id);
        self.cameras.insert(camera.id.clone(), camera);
    }

    /// Whether `id` is a camera, a removed one, or another's code.
    fn has(&self, id: &str) -> bool {
        self.cameras.contains_key(id) || self.removed.contains(id) || self.linked.contains_key(id)
    }
}

/// What the GB/T 28181 join needs to raise device alarms as alerts.
struct GbAlarms {
    delivery: Arc<crate::delivery::Delivery>,
    clips: Option<Arc<crate::clip::Recorder>>,
    zmq: Option<Arc<crate::delivery::zmq_pub::ZmqPublisher>>,
    /// Counts alarms repeated within `gb28181.alarm_cooldown` (not raised).
    stage: crate::gb28181::Gb28181,
    /// The tasks storing alerts (the service waits for them when it stops).
    tasks: tokio_util::task::TaskTracker,
    stop: CancellationToken,
}

/// How long a stopping service keeps retrying a failing store with a device alert before it writes
/// the alert to the log.
const DEVICE_ALERT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Stores a device's alert, retrying (up to 2 s apart) while the store fails.
async fn store_device_alert(
    delivery: Arc<crate::delivery::Delivery>,
    zmq: Option<Arc<crate::delivery::zmq_pub::ZmqPublisher>>,
    alert: crate::rules::Alert,
    stop: CancellationToken,
) {
    let mut delay = std::time::Duration::from_millis(100);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let (d, a) = (delivery.clone(), alert.clone());
        match tokio::task::spawn_blocking(move || d.insert(&a)).await {
            Ok(Ok(stored)) => {
                tracing::info!(camera_id = %alert.camera, alert = %alert.id, kind = alert.alert_type.as_str(),
                    severity = ?alert.severity, "device alert stored");
                if let (Some(z), Ok(json)) = (&zmq, serde_json::to_string(&stored)) {
                    z.publish_alert(alert.alert_type.as_str(), stored.area_code.as_deref(), json);
                }
                return;
            }
            Ok(Err(e @ crate::delivery::store::StoreError::Fenced { .. })) => {
                tracing::warn!(camera_id = %alert.camera, alert = %alert.id, error = %e, "device alert not stored");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(camera_id = %alert.camera, alert = %alert.id, error = %e, "device alert not stored yet; trying again");
            }
            Err(e) => {
                tracing::error!(alert = %alert.id, error = %e, "device alert store task failed; trying again");
            }
        }
        if stop.is_cancelled() {
            let at =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + DEVICE_ALERT_GRACE);
            if tokio::time::Instant::now() >= at {
                let json = serde_json::to_string(&alert).unwrap_or_default();
                tracing::error!(camera_id = %alert.camera, alert = %alert.id, alert_json = %json,
                    "stopping with the alert store failing: the device alert is written here instead");
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Seeds the store's camera inventory from the file and returns the cameras to run
/// (`config::inventory::reconcile`); each step it took that a user would wonder about is logged.
fn seed_inventory(
    config: &Config,
    inventory: &dyn crate::config::inventory::CameraStore,
    clock: &dyn Clock,
) -> Result<Vec<crate::config::Camera>, AppError> {
    let stored = inventory.cameras()?;
    let plan = crate::config::inventory::reconcile(config, stored, unix_ms(clock.wall()));
    inventory.seed(&plan.writes)?;
    for id in &plan.kept_removed {
        tracing::info!(camera_id = %id, "the camera stays removed: it was removed through the API and its definition in the configuration has not changed since");
    }
    for id in &plan.file_won {
        tracing::info!(camera_id = %id, "the configuration changed this camera's definition: it replaces what the API had made of it");
    }
    for e in &plan.errors {
        tracing::error!(field = %e.path, message = %e.message, "a stored camera is not valid under this configuration; it is kept in the inventory but not started");
    }
    tracing::info!(
        cameras = plan.cameras.len(),
        from_file = config.cameras.len(),
        "camera inventory"
    );
    Ok(plan.cameras)
}

/// Moves the rules document an older build saved to `<data_dir>/rules.toml` into the store, once
/// (the file is renamed `rules.toml.moved`); the store's copy wins if it has one.
fn adopt_rules_file(
    path: &std::path::Path,
    store: &dyn crate::rules::live::RulesStore,
    clock: &dyn Clock,
) {
    // Only what the editor wrote (its first line says so): a configured rules file that happens to
    // lie there is the seed, not a saved document.
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    if !text.starts_with(crate::rules::live::SAVED_HEADER) {
        return;
    }
    let moved = path.with_extension("toml.moved");
    let result = match store.load() {
        Ok(Some(_)) => Ok(false),
        Ok(None) => store.save(&text, unix_ms(clock.wall())).map(|()| true),
        Err(e) => Err(e),
    }
    .and_then(|adopted| {
        std::fs::rename(path, &moved)
            .map(|()| adopted)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(true) => {
            tracing::info!(from = %path.display(), to = %store.describe(), "the saved rules document now lives in the store")
        }
        Ok(false) => {
            tracing::warn!(file = %moved.display(), store = %store.describe(), "the store already holds a rules document: it stays; the older saved file is set aside, not used")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "the saved rules file could not be moved into the store; it stays where it is")
        }
    }
}

/// What the camera stage hands every access unit to (the join between the stages): the clip
/// stage's buffer first (every unit, as received), then the sampling stage's gate, which decides
/// what the decoders get.
struct Intake {
    gate: crate::sample::Gate,
    clips: Option<Arc<crate::clip::Recorder>>,
}

impl FrameSink for Intake {
    fn submit(&self, entry: &crate::camera::CameraEntry, frame: EncodedFrame) -> Verdict {
        if let Some(c) = &self.clips {
            c.tap(&frame);
        }
        self.gate.submit(entry, frame)
    }

    fn release(&self, camera: &str) {
        self.gate.router().release(camera);
    }
}

/// The clip stage records each clip's state on its alerts in the alert store (announced on the feed).
impl crate::clip::ClipSink for crate::delivery::Delivery {
    fn clip_finished(&self, clip: &crate::rules::AlertClip) -> Result<usize, String> {
        crate::delivery::Delivery::clip_finished(self, clip).map_err(|e| e.to_string())
    }

    fn expire_clips(
        &self,
        now_ms: i64,
        max_age: std::time::Duration,
        max_bytes: u64,
    ) -> Result<(u64, u64), String> {
        self.store
            .expire_clips(now_ms, max_age, max_bytes)
            .map_err(|e| e.to_string())
    }
}

/// The health poller watches the camera stage's trackers (the join between the two stages).
impl health::Watched for Fleet {
    fn for_each_camera(
        &self,
        f: &mut dyn FnMut(
            &std::sync::RwLock<crate::config::Camera>,
            &std::sync::Mutex<health::CameraTracker>,
        ),
    ) {
        for entry in self.list() {
            f(&entry.config, &entry.tracker);
        }
    }
}

/// Health transitions go on the delivery stage's feed, with the camera's area.
impl health::TransitionSink for crate::delivery::Delivery {
    fn announce(&self, t: &health::Transition, area_path: &[String]) {
        self.health(t, area_path.to_vec());
    }
}

/// Health transitions are published on ZeroMQ (best effort: the publisher drops when full).
impl health::TransitionSink for crate::delivery::zmq_pub::ZmqPublisher {
    fn announce(&self, t: &health::Transition, _area_path: &[String]) {
        if let Ok(json) = serde_json::to_string(t) {
            self.publish_health(&t.camera, json);
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
    /// Tells the alert stage the service is stopping (a failing store then gets a grace period).
    alerts_stop: Arc<std::sync::atomic::AtomicBool>,
    /// Model names and the execution provider each runs on.
    models: Vec<(String, &'static str)>,
    stats: Arc<RulesStats>,
    /// Reads every model's batcher and inference counters.
    model_stats: Arc<dyn Fn() -> Vec<web::ModelStats> + Send + Sync>,
    /// The analysis side's queues.
    queues: Vec<QueueInfo>,
}

/// The tracker's settings, with the first detector's own score levels where its manifest gives them
/// (models score differently: YOLOX-nano's confident people start lower than YOLOv8's).
fn tracker_config(analysis: &AnalysisConfig) -> crate::track::TrackerConfig {
    let mut t = crate::track::TrackerConfig::default();
    if let Some(d) = analysis.manifests.iter().find_map(|m| m.detector()) {
        t.high_score = d.track_high_score.unwrap_or(t.high_score);
        t.new_track_score = d.track_start_score.unwrap_or(t.new_track_score);
    }
    t
}

/// Hand-over queue from the decode dispatcher to each model's batcher.
const ANALYSIS_QUEUE: usize = 256;
/// Frames waiting in each decoder worker.
const DECODE_QUEUE: usize = 512;
/// Decoded pictures waiting for the dispatcher (the decoders wait when full).
const DECODED_QUEUE: usize = 1024;
/// Messages waiting for the ZeroMQ thread.
const ZMQ_QUEUE: usize = 4096;
/// People-in-view messages waiting for the sampling thread (dropped when full: the next frame says
/// it again).
const IN_VIEW_QUEUE: usize = 4096;
/// Model outputs waiting for the rules thread (inference waits when full).
const ANALYSED_QUEUE: usize = 64;
/// Candidates waiting for the alerts thread (the rules thread waits when full).
const CANDIDATE_QUEUE: usize = 256;

#[allow(clippy::too_many_arguments)]
fn start_analysis(
    analysis: Option<&AnalysisConfig>,
    in_view: InViewTap,
    clock: &Arc<dyn Clock>,
    board: Arc<AlertBoard>,
    fleet: std::sync::Weak<Fleet>,
    delivery: Arc<crate::delivery::Delivery>,
    zmq: Option<Arc<crate::delivery::zmq_pub::ZmqPublisher>>,
    live_rules: &crate::rules::live::LiveRules,
) -> Result<Option<Analysis>, AppError> {
    let Some(analysis) = analysis else {
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
    let mut budgets = Vec::new();
    for manifest in &analysis.manifests {
        let manifest = manifest.clone();
        let budget = Arc::new(crate::batch::AdmissionBudget::new(settings.budget));
        let (batch_tx, batch_rx) = crate::batch::channel(settings.infer.threads.max(1));
        let inferencer = Inferencer::start(
            ort,
            manifest.clone(),
            &settings.infer,
            batch_rx,
            analysed_tx.clone(),
            Some(budget.clone()),
            Some(in_view.clone()),
        )
        .map_err(|e| err(&e))?;
        let (in_tx, in_rx) = crossbeam_channel::bounded(ANALYSIS_QUEUE);
        let stage = BatchStage::start(
            &manifest.name,
            settings.batch_config(&manifest),
            clock.clone(),
            Some(budget.clone()),
            in_rx,
            batch_tx,
        )
        .map_err(|e| err(&e))?;
        tracing::info!(model = %manifest.name, provider = inferencer.provider_in_use(), "model loaded");
        models.push((manifest.name.to_string(), inferencer.provider_in_use()));
        inputs.push(in_tx);
        batchers.push(stage);
        inferencers.push(inferencer);
        budgets.push(budget);
    }
    drop(analysed_tx);
    let readers: Vec<_> = models
        .iter()
        .zip(&batchers)
        .zip(&inferencers)
        .zip(budgets)
        .map(|((((name, _), b), i), budget)| (name.clone(), b.counters(), i.stats_reader(), budget))
        .collect();
    let model_stats: Arc<dyn Fn() -> Vec<web::ModelStats> + Send + Sync> = Arc::new(move || {
        readers
            .iter()
            .map(|(model, batch, infer, budget)| web::ModelStats {
                model: model.clone(),
                batch: batch.snapshot(),
                infer: infer(),
                budget: budget.snapshot(),
            })
            .collect()
    });
    let stats = Arc::new(RulesStats::default());
    let has_detector = analysis.has_detector();
    let (cand_tx, cand_rx) = crossbeam_channel::bounded::<Candidate>(CANDIDATE_QUEUE);
    let rules = rules_runner::spawn(
        analysed_rx,
        &analysis.rules,
        tracker_config(analysis),
        has_detector,
        cand_tx,
        stats.clone(),
        Some(live_rules.pending()),
        Some({
            let store = delivery.store.clone();
            Arc::new(move |camera: &str, rule: &str| {
                store
                    .last_alert_ms(camera, rule)
                    .map_err(|e| {
                        tracing::warn!(camera_id = %camera, rule, error = %e,
                            "the last alert of the rule cannot be read; the alert is raised")
                    })
                    .ok()
                    .flatten()
            })
        }),
    )
    .map_err(|e| err(&e))?;
    let cameras: board::CameraLookup =
        Arc::new(move |id: &str| fleet.upgrade().and_then(|f| f.get(id)).map(|e| e.camera()));
    let queues = {
        let stats = model_stats.clone();
        vec![
            QueueInfo::dropping(
                "batch_to_infer",
                "batch",
                "infer",
                settings.infer.threads.max(1),
                // Each camera keeps its newest frame while inference is busy.
                FullPolicy::DropOldest,
                Arc::new(move || {
                    let mut by: std::collections::BTreeMap<&'static str, u64> = Default::default();
                    for s in stats() {
                        for (reason, n) in s.batch.dropped.by_reason() {
                            *by.entry(reason.as_str()).or_default() += n;
                        }
                    }
                    by.into_iter().collect()
                }),
            ),
            QueueInfo::blocking("infer_to_rules", "infer", "rules", ANALYSED_QUEUE),
            QueueInfo::blocking("rules_to_alert", "rules", "alert", CANDIDATE_QUEUE),
        ]
    };
    let alerts_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let alerts = board::spawn(
        cand_rx,
        board,
        cameras,
        Some(delivery),
        zmq,
        alerts_stop.clone(),
        clock.clone(),
    )
    .map_err(|e| err(&e))?;
    Ok(Some(Analysis {
        inputs,
        batchers,
        inferencers,
        rules,
        alerts,
        alerts_stop,
        models,
        stats,
        model_stats,
        queues,
    }))
}

impl Analysis {
    /// Closes the inputs and joins each stage in data-flow order.
    fn stop(self) {
        self.alerts_stop.store(true, Ordering::SeqCst);
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
    /// Ledger access.
    pub ledger: LedgerHandle,
    web_task: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
    sink: Arc<Router>,
    dispatcher: std::thread::JoinHandle<()>,
    dispatcher_stop: Arc<std::sync::atomic::AtomicBool>,
    ledger_thread: std::thread::JoinHandle<()>,
    delivery_tasks: Vec<tokio::task::JoinHandle<()>>,
    analysis: Option<Analysis>,
    clips: Option<crate::clip::Workers>,
    /// The cluster stage's keeper thread and the task applying its messages to the fleet.
    keeper: Option<(std::thread::JoinHandle<()>, tokio::task::JoinHandle<()>)>,
    /// Several nodes: the event log's writer and the thread reading the other nodes' events.
    feed_threads: Vec<std::thread::JoinHandle<()>>,
    /// GB/T 28181 device alerts on their way into the store (waited for at stop).
    device_alerts: tokio_util::task::TaskTracker,
}

/// Starts every stage; they run until `cancel` fires, then [`Service::stop`] drains them in order.
pub async fn start(
    settings: Settings,
    overrides: Overrides,
    cancel: CancellationToken,
) -> Result<Service, AppError> {
    let Settings {
        mut config,
        analysis: mut analysis_config,
        delivery: delivery_config,
        auth: auth_config,
        activity: activity_config,
        clip: clip_config,
        cluster: cluster_config,
        gb28181: gb_config,
    } = settings;
    if let Some(l) = overrides.listen {
        config.web.listen = l;
    }
    // An override of the data directory moves the media with it unless they were set apart.
    if let Some(d) = overrides.data_dir {
        if config.node.media_dir == config.node.data_dir {
            config.node.media_dir = d.clone();
        }
        config.node.data_dir = d;
    }
    let data_dir = config.node.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let media_dir = config.node.media_dir.clone();
    std::fs::create_dir_all(&media_dir).map_err(|source| AppError::DataDir {
        path: media_dir.clone(),
        source,
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // The store's inventory is the truth once running; the file's cameras seed it.
    let dbs = open_databases(&config.node.database, &data_dir)?;
    // Several nodes on one database: each runs the cameras it holds by lease, and every alert and
    // health write is checked against the lease's epoch.
    let cluster = match config.node.database {
        crate::config::Database::Postgres { .. } => {
            let node = node_id(&cluster_config)?;
            let leases = crate::db::lease::Leases::open(dbs.alerts.clone(), &node, clock.clone())?;
            let fence = crate::db::lease::Fence::new(&node, crate::db::Dialect::Postgres);
            tracing::info!(node = %node, "cluster node: cameras run where their leases are held");
            Some((leases, fence))
        }
        crate::config::Database::Sqlite => None,
    };
    let mut store = crate::store::AlertStore::on(dbs.alerts.clone(), &media_dir.join("snapshots"))
        .map_err(|e| AppError::Analysis(format!("alert store: {e}")))?
        .with_incident_window(delivery_config.incident_window);
    if let Some((_, fence)) = &cluster {
        store = store.with_fence(fence.clone());
    }
    let delivery = crate::delivery::Delivery::new(store, delivery_config.clone(), clock.clone());
    // Several nodes: each node's feed events go to the event log, and each node's feed carries
    // the others' events read back from it.
    let mut feed_threads = Vec::new();
    if let Some((leases, _)) = &cluster {
        let (log, writer) =
            crate::delivery::log::start(dbs.alerts.clone(), leases.node(), cancel.clone())?;
        let _ = delivery.log.set(log);
        let tail = crate::delivery::log::spawn_tail(
            dbs.alerts.clone(),
            leases.node(),
            delivery.clone(),
            std::time::Duration::from_millis(250),
            cancel.clone(),
        )
        .map_err(|source| AppError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        feed_threads.extend([writer, tail]);
    }
    let store_of_inventory = crate::store::inventory::Inventory::open(dbs.inventory.clone())?;
    let inventory: Arc<dyn crate::config::inventory::CameraStore> =
        Arc::new(store_of_inventory.clone());
    let rules_store: Arc<dyn crate::rules::live::RulesStore> = Arc::new(store_of_inventory);
    adopt_rules_file(
        &data_dir.join("rules.toml"),
        rules_store.as_ref(),
        clock.as_ref(),
    );
    config.cameras = seed_inventory(&config, inventory.as_ref(), clock.as_ref())?;

    let mut ledger = Ledger::on(dbs.ledger.clone())?;
    if let Some((_, fence)) = &cluster {
        ledger = ledger.with_fence(fence.clone());
    }
    // Time while the service was down counts as unknown, not as the last state seen.
    ledger.begin_run(clock.wall())?;
    let (ledger_tx, ledger_rx) = mpsc::channel(LEDGER_QUEUE);
    let ledger_thread =
        health::spawn_ledger(ledger, ledger_rx).map_err(|source| AppError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    let ledger = LedgerHandle::new(ledger_tx);

    let (decoded_tx, decoded_rx) = crossbeam_channel::bounded(DECODED_QUEUE);
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
            queue: DECODE_QUEUE,
            ..DecodeConfig::default()
        },
        decoded_tx.clone(),
    )?);

    let sink = Arc::new(Router::new(
        pool.clone(),
        DecodeConfig {
            kind: config.ingest.decoder.into(),
            ..DecodeConfig::default()
        },
        decoded_tx.clone(),
    ));
    // Evidence clips: buffers fed in front of the decode gate, clips started by the alert stage.
    let clips = if clip_config.enabled {
        let (recorder, workers) = crate::clip::Recorder::start(
            clip_config,
            &media_dir.join("clips"),
            delivery.clone(),
            clock.clone(),
        )
        .map_err(|source| AppError::DataDir {
            path: media_dir.join("clips"),
            source,
        })?;
        Some((recorder, workers))
    } else {
        None
    };
    let recorder = clips.as_ref().map(|(r, _)| r.clone());
    let alert_board = AlertBoard::new(media_dir.join("snapshots"), recorder.clone());
    // GB/T 28181 devices register to this node's SIP port (issue 16); its channels' video comes
    // through the stage's source (INVITE), the camera side hears of devices and catalogs on the
    // `gb28181_to_camera` queue (drained once the fleet exists).
    let gb28181 = match &gb_config {
        Some(c) => {
            let (tx, rx) = mpsc::channel(GB_QUEUE);
            let stage =
                crate::gb28181::Gb28181::start(c.clone(), clock.clone(), Some(tx), cancel.clone())
                    .await
                    .map_err(AppError::Gb28181)?;
            Some((stage, rx))
        }
        None => None,
    };
    let source = crate::ingest::RoutedSource::default().with(
        "gb28181",
        match &gb28181 {
            Some((stage, _)) => stage.media_source(),
            None => Arc::new(crate::ingest::Refuse {
                reason: OfflineReason::ProtocolError,
                detail: "a gb28181:// camera needs a [gb28181] section: this node opens no SIP port",
            }),
        },
    );
    let fleet = Fleet::new(
        FleetContext {
            ingest: config.ingest.clone(),
            health: config.health,
            vqd: VqdConfig::default(),
            activity: activity_config,
            stream: config.ingest.stream,
            credentials: std::sync::RwLock::new(config.credentials.clone()),
            source: Arc::new(source),
            jitter: Arc::new(rand::random::<f64>),
            sink: Arc::new(Intake {
                gate: crate::sample::Gate::new(sink.clone(), clock.clone()),
                clips: recorder.clone(),
            }),
            clock: clock.clone(),
        },
        cancel.child_token(),
    );
    // One node runs every camera; in a cluster the keeper starts the ones this node holds.
    let mut keeper = None;
    let mut advertised = None;
    // In a cluster, GB/T 28181 devices registering here are written as their channels' home.
    let (gb_homes_tx, mut gb_homes_rx) = match (&cluster, &gb28181) {
        (Some(_), Some((stage, _))) => {
            let (tx, rx) = mpsc::channel(GB_QUEUE);
            stage.report_alive(tx.clone());
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let mut gb_cluster = None;
    match cluster {
        None => {
            for camera in config.cameras.clone() {
                ledger.upsert_camera(&camera).await;
                if let Err(e) = fleet.add(camera) {
                    tracing::error!(error = %e, "camera not added");
                }
            }
        }
        Some((leases, fence)) => {
            let (holding_tx, holding_rx) = mpsc::channel(HOLDING_QUEUE);
            let source: crate::cluster::CameraSource = {
                let inventory = inventory.clone();
                let config = config.clone();
                Arc::new(move || {
                    let rows = inventory.cameras().map_err(|e| e.to_string())?;
                    Ok(crate::config::inventory::runnable(&config, &rows))
                })
            };
            let stats = Arc::new(crate::cluster::ClusterStats::default());
            let node = leases.node().to_owned();
            advertised = Some(leases.address());
            let (k, nudge) = crate::cluster::Keeper::new(
                leases,
                fence.clone(),
                source,
                cluster_config.clone(),
                holding_tx,
                stats.clone(),
            );
            let k = match gb_homes_rx.take() {
                Some(rx) => k.with_homes(rx),
                None => k,
            };
            if gb_homes_tx.is_some() {
                gb_cluster = Some(nudge.clone());
            }
            let thread = k
                .spawn(cancel.clone())
                .map_err(|source| AppError::DataDir {
                    path: data_dir.clone(),
                    source,
                })?;
            // Stopping: the keeper gives its leases up first, at once.
            let on_stop = nudge.clone();
            let stop_token = cancel.clone();
            tokio::spawn(async move {
                stop_token.cancelled().await;
                on_stop.nudge();
            });
            let applier = tokio::spawn(apply_holdings(holding_rx, fleet.clone(), ledger.clone()));
            let views = crate::store::views::FleetViews::open(dbs.alerts.clone())?;
            tokio::spawn(web::publish_views(
                fleet.clone(),
                views.clone(),
                node.clone(),
                cancel.clone(),
            ));
            keeper = Some((
                thread,
                applier,
                web::ClusterView {
                    node,
                    stats,
                    fence,
                    nudge,
                    views,
                    http: reqwest::Client::builder()
                        .no_proxy()
                        .timeout(std::time::Duration::from_secs(10))
                        .build()
                        .map_err(|e| AppError::Analysis(format!("HTTP client: {e}")))?,
                },
            ));
        }
    }
    let auth_db = dbs.auth.clone();
    let auth_clock = clock.clone();
    let auth = tokio::task::spawn_blocking(move || {
        crate::auth::Auth::on(auth_db, &auth_config, auth_clock)
    })
    .await
    .map_err(|e| AppError::Auth(e.to_string()))?
    .map_err(|e| AppError::Auth(e.to_string()))?;
    let worker = delivery
        .worker()
        .map_err(|e| AppError::Analysis(format!("delivery worker: {e}")))?;
    let delivery_task = tokio::spawn(worker.run(delivery.wake.clone(), cancel.child_token()));
    let escalation_task = tokio::spawn(crate::delivery::housekeeping_timer(
        delivery.clone(),
        cancel.clone(),
    ));
    let zmq = match &delivery_config.zmq_endpoint {
        None => None,
        Some(endpoint) => {
            let p = crate::delivery::zmq_pub::ZmqPublisher::start(
                endpoint,
                delivery_config.zmq_hwm,
                ZMQ_QUEUE,
            )
            .map_err(|e| AppError::Analysis(format!("ZeroMQ: {e}")))?;
            tracing::info!(endpoint = p.endpoint(), "ZeroMQ PUB bound (best effort)");
            Some(Arc::new(p))
        }
    };
    let live_rules = Arc::new(match &analysis_config {
        Some(a) => crate::rules::live::LiveRules::new(
            rules_store.clone(),
            a.rules_file.clone(),
            crate::rules::ValidateContext {
                anomaly_model: a.anomaly_model,
                fall_model: a.fall_model,
                ..Default::default()
            },
        ),
        None => crate::rules::live::LiveRules::new(
            rules_store.clone(),
            None,
            crate::rules::ValidateContext::default(),
        ),
    });
    if let Some(analysis) = analysis_config.as_mut() {
        let known = config.cameras.iter().map(|c| c.id.clone()).collect();
        match live_rules.load_saved(known) {
            None => {}
            Some(Ok(saved)) => {
                tracing::info!(store = %live_rules.place(), rules = saved.rules.len(), "running the rules saved through the editor (they replace the configured file)");
                analysis.rules = saved;
            }
            Some(Err(errors)) => {
                for e in &errors {
                    tracing::error!(store = %live_rules.place(), field = %e.path, message = %e.message, "saved rules are invalid; running the configured rules file");
                }
            }
        }
    }
    // Under `video = "rules"` a GB/T 28181 channel with rules is pulled continuously, the others
    // patrolled: the stage follows which cameras have rules, now and after each save.
    if let Some((stage, _)) = &gb28181 {
        if let Some(a) = &analysis_config {
            stage.set_cameras_with_rules(a.rules.cameras());
        }
        let stage = stage.clone();
        live_rules.on_replace(Box::new(move |rules| {
            stage.set_cameras_with_rules(rules.cameras())
        }));
    }
    // The clip stage buffers the cameras that have rules, as they are now and after each save.
    if let Some(r) = &recorder {
        if let Some(a) = &analysis_config {
            r.set_cameras_with_rules(a.rules.cameras());
        }
        let r = r.clone();
        live_rules.on_replace(Box::new(move |rules| {
            r.set_cameras_with_rules(rules.cameras())
        }));
    }
    // Detectors tell sampling which cameras have people in view.
    let (in_view_tx, in_view_rx) = crossbeam_channel::bounded(IN_VIEW_QUEUE);
    let in_view = InViewTap {
        tx: in_view_tx,
        dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let in_view_dropped = in_view.dropped.clone();
    let analysis = start_analysis(
        analysis_config.as_ref(),
        in_view,
        &clock,
        alert_board.clone(),
        Arc::downgrade(&fleet),
        delivery.clone(),
        zmq.clone(),
        &live_rules,
    )?;
    let analysis_dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let store_blocked = crate::sample::StoreBlocked {
        blocked: {
            let d = delivery.clone();
            Arc::new(move || d.status.is_failing())
        },
        dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let dispatcher_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dispatcher = crate::sample::spawn_dispatcher(
        Arc::downgrade(&fleet),
        decoded_rx,
        Some(in_view_rx),
        clock.clone(),
        analysis
            .as_ref()
            .map(|a| a.inputs.clone())
            .unwrap_or_default(),
        analysis_dropped.clone(),
        store_blocked.clone(),
        dispatcher_stop.clone(),
    )
    .map_err(|source| AppError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    // ZeroMQ first, then the feed: the order the poller has always announced in.
    let mut health_sinks: Vec<Arc<dyn health::TransitionSink>> = Vec::new();
    if let Some(z) = &zmq {
        health_sinks.push(z.clone());
    }
    health_sinks.push(delivery.clone());
    let poller = tokio::spawn(health::run_poller(
        fleet.clone(),
        ledger.clone(),
        health_sinks,
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
    if let Some(slot) = advertised {
        let url = advertise_url(&cluster_config, addr);
        tracing::info!(url = %url, "the other nodes pass per-camera requests here");
        let _ = slot.set(url);
    }
    let stats_pool = pool.clone();
    drop(pool);
    drop(decoded_tx);
    let queues = {
        let pool = stats_pool.clone();
        let handover = (analysis_dropped.clone(), store_blocked.dropped.clone());
        let missed = delivery.feed_missed.clone();
        let mut q = vec![
            QueueInfo::dropping(
                "camera_to_decode",
                "camera",
                "decode",
                DECODE_QUEUE,
                FullPolicy::DropOldest,
                Arc::new(move || vec![("full", pool.stats().dropped.queue_full)]),
            ),
            QueueInfo::blocking("decode_to_sample", "decode", "sample", DECODED_QUEUE),
            QueueInfo::dropping(
                "infer_to_sample",
                "infer",
                "sample",
                IN_VIEW_QUEUE,
                FullPolicy::DropNewest,
                Arc::new(move || vec![("full", in_view_dropped.load(Ordering::Relaxed))]),
            ),
            QueueInfo::dropping(
                "sample_to_batch",
                "sample",
                "batch",
                ANALYSIS_QUEUE,
                FullPolicy::DropNewest,
                Arc::new(move || {
                    vec![
                        ("full", handover.0.load(Ordering::Relaxed)),
                        ("store_blocked", handover.1.load(Ordering::Relaxed)),
                    ]
                }),
            ),
        ];
        if let Some(a) = &analysis {
            q.extend(a.queues.iter().cloned());
        }
        if gb28181.is_some() {
            q.push(QueueInfo::blocking(
                "gb28181_to_camera",
                "gb28181",
                "camera",
                GB_QUEUE,
            ));
        }
        if keeper.is_some() {
            q.push(QueueInfo::blocking(
                "cluster_to_camera",
                "cluster",
                "camera",
                HOLDING_QUEUE,
            ));
        }
        if let (Some(_), Some((stage, _))) = (&gb_homes_tx, &gb28181) {
            let stage = stage.clone();
            q.push(QueueInfo::dropping(
                "gb28181_homes",
                "gb28181",
                "cluster",
                GB_QUEUE,
                // Every keepalive sends its device again.
                FullPolicy::DropNewest,
                Arc::new(move || vec![("full", stage.alive_dropped())]),
            ));
        }
        if let Some(log) = delivery.log.get() {
            let log = log.clone();
            q.push(QueueInfo::dropping(
                "delivery_to_event_log",
                "delivery",
                "event_log",
                crate::delivery::log::LOG_QUEUE,
                // The other nodes' halls miss the event live (alerts still replay from the store).
                FullPolicy::DropNewest,
                Arc::new(move || vec![("full", log.dropped.load(Ordering::Relaxed))]),
            ));
        }
        q.push(QueueInfo::blocking(
            "health_to_ledger",
            "health",
            "ledger",
            LEDGER_QUEUE,
        ));
        q.push(QueueInfo::dropping(
            "delivery_to_feed_client",
            "delivery",
            "web",
            crate::delivery::FEED_CAPACITY,
            // A client that falls behind loses the oldest and is told to resync from its cursor.
            FullPolicy::DropOldest,
            Arc::new(move || vec![("lagged", missed.load(Ordering::Relaxed))]),
        ));
        if let Some(r) = &recorder {
            let r = r.clone();
            q.push(QueueInfo::dropping(
                "clip_to_writer",
                "clip",
                "clip_writer",
                crate::clip::WRITE_QUEUE,
                // The clip fails (said on its alerts), counted; the buffers never wait.
                FullPolicy::DropNewest,
                Arc::new(move || vec![("full", r.stats.write_queue_full.load(Ordering::Relaxed))]),
            ));
        }
        if let Some(z) = &zmq {
            let z = z.clone();
            q.push(QueueInfo::dropping(
                "delivery_to_zeromq",
                "delivery",
                "zeromq",
                ZMQ_QUEUE,
                FullPolicy::DropNewest,
                Arc::new(move || {
                    let s = z.stats();
                    vec![
                        ("full", s.dropped_queue_full),
                        ("hwm", s.dropped_hwm),
                        ("error", s.dropped_error),
                    ]
                }),
            ));
        }
        Arc::new(q)
    };
    let device_alerts = tokio_util::task::TaskTracker::new();
    let gb28181 = match (gb28181, gb_config) {
        (Some((stage, rx)), Some(c)) => {
            tokio::spawn(apply_gb_events(
                rx,
                fleet.clone(),
                inventory.clone(),
                ledger.clone(),
                config.clone(),
                c,
                GbAlarms {
                    delivery: delivery.clone(),
                    clips: recorder.clone(),
                    zmq: zmq.clone(),
                    stage: stage.clone(),
                    tasks: device_alerts.clone(),
                    stop: cancel.clone(),
                },
                gb_cluster,
                clock.clone(),
                cancel.clone(),
            ));
            Some(stage)
        }
        _ => None,
    };
    let state = Arc::new(AppState {
        gb28181,
        queues,
        fleet: fleet.clone(),
        ledger: ledger.clone(),
        inventory,
        config,
        started: SystemTime::now(),
        models: analysis
            .as_ref()
            .map(|a| a.models.clone())
            .unwrap_or_default(),
        analysis_dropped: analysis_dropped.clone(),
        store_blocked: store_blocked.dropped.clone(),
        rules_stats: analysis.as_ref().map(|a| a.stats.clone()),
        live_rules,
        auth,
        delivery: delivery.clone(),
        decode_drops: {
            let pool = stats_pool.clone();
            Arc::new(move || pool.stats().dropped)
        },
        decode_queue: Arc::new(move || stats_pool.stats().queue_depth),
        model_stats: analysis
            .as_ref()
            .map(|a| a.model_stats.clone())
            .unwrap_or_else(|| Arc::new(Vec::new)),
        clips: recorder.clone(),
        cluster: keeper.as_ref().map(|(_, _, view)| view.clone()),
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
        ledger,
        web_task,
        poller,
        sink,
        dispatcher,
        dispatcher_stop,
        ledger_thread,
        delivery_tasks: vec![delivery_task, escalation_task],
        keeper: keeper.map(|(thread, applier, _)| (thread, applier)),
        feed_threads,
        device_alerts,
        analysis,
        clips: clips.map(|(_, w)| w),
    })
}

impl Service {
    /// After the cancel token fired: waits for sources, drains the decoder, flushes the ledger.
    pub async fn stop(self) {
        // The keeper gives its leases up as soon as the token fires; waited for first, so the
        // other nodes take the cameras while this one drains.
        if let Some((thread, applier)) = self.keeper {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            let _ = applier.await;
        }
        let _ = self.web_task.await;
        // Device alerts still being stored: each gives up (to the log) at most SHUTDOWN_GRACE
        // after the stop began.
        self.device_alerts.close();
        let _ = tokio::time::timeout(DEVICE_ALERT_GRACE * 2, self.device_alerts.wait()).await;
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
        let clips = self.clips;
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
            // No alert starts a clip any more: the ones recording are written with what they have.
            if let Some(c) = clips {
                c.stop();
            }
        })
        .await;
        let feed_threads = self.feed_threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in feed_threads {
                let _ = t.join();
            }
        })
        .await;
        drop(self.ledger);
        let ledger_thread = self.ledger_thread;
        let _ = tokio::task::spawn_blocking(move || ledger_thread.join()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::live::RulesStore;

    #[test]
    fn an_older_builds_saved_rules_file_moves_into_the_store_once_and_a_seed_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::inventory::Inventory::open_sqlite(&dir.path().join("i.db")).unwrap();
        let clock = SystemClock;
        let path = dir.path().join("rules.toml");
        // A configured rules file lying in the data directory is not the editor's.
        std::fs::write(&path, "[[zones]]\n").unwrap();
        adopt_rules_file(&path, &store, &clock);
        assert!(path.exists() && store.load().unwrap().is_none());
        let saved = format!("{}\n\n[[zones]]\n", crate::rules::live::SAVED_HEADER);
        std::fs::write(&path, &saved).unwrap();
        adopt_rules_file(&path, &store, &clock);
        assert_eq!(store.load().unwrap().unwrap().text, saved);
        assert!(!path.exists() && dir.path().join("rules.toml.moved").exists());
    }
}
