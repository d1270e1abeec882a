//! The cluster stage: which cameras this node runs when several nodes share one PostgreSQL
//! database (`[cluster]`; issue 14).
//!
//! Each node runs a [`Keeper`] on a thread of its own. Every `renew` (1 s) it beats (registers
//! itself, renews its camera leases, reads the live nodes and every lease; `db::lease`), then:
//! - each camera of the store's inventory should be held by the live node that scores highest for
//!   it by weighted rendezvous hashing ([`rendezvous`]): every node computes the same placement;
//!   a GB/T 28181 channel is placed with its device as one unit: on the node the device last
//!   registered to (its home, `gb_home`, written by that node) while that node is up — only it can
//!   invite the device — else by rendezvous hashing of the device's id. Channels follow a device
//!   that moved home at once (not paced: they cannot be pulled from the old node);
//! - a free lease (never taken, released, or expired) of a camera this node should hold is claimed
//!   (a new epoch); a lease free for a whole lease time is claimed by any node (its owner is not
//!   taking it);
//! - a camera this node holds that another live node should hold is given away, at most
//!   `rebalance_per_pass` per pass, so a joining node never causes a reconnect storm;
//! - a camera no longer renewed (another node took it while this one was paused or cut off) is
//!   stopped at once; a camera the inventory no longer has is given up.
//!
//! What to run goes to the fleet as [`Holding`] messages on the channel app.rs creates. The epochs go
//! into the [`Fence`] every alert and health write is checked against.
//!
//! A node that cannot renew for `lease − 2 × renew` stops every camera before its leases can end
//! (it fences itself), so by the time another node takes a camera this one no longer analyses it.
//! On SIGTERM the keeper gives every lease up at once (the others take them on their next pass);
//! a killed node's cameras move when its leases end. A node that starts waits two passes before it
//! claims, so nodes started together see each other first; a restarted node with the same id gives
//! up what its previous run held, so each run's holding is its own.

pub mod config;
pub mod rendezvous;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use config::{ClusterConfig, RawClusterConfig};

use crate::config::{Camera, ConfigError};
use crate::db::lease::{Fence, Leases, NodeState};

/// What the keeper tells the fleet.
#[derive(Debug)]
pub enum Holding {
    /// This node holds the camera now (under `epoch`): run it.
    Start {
        /// The camera, as the store defines it.
        camera: Box<Camera>,
        /// Its lease's epoch.
        epoch: i64,
    },
    /// A held camera's definition changed in the store: run this one.
    Update {
        /// The new definition.
        camera: Box<Camera>,
    },
    /// Stop running the camera.
    Stop {
        /// Its id.
        camera: String,
        /// Why.
        why: StopReason,
    },
}

/// Why a camera stops on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Given to the node that should hold it (a node joined).
    Rebalanced,
    /// Another node holds it now (this node was paused or cut off past its lease).
    Lost,
    /// Removed from the inventory.
    Removed,
    /// This node could not renew its leases and stopped before they could end.
    SelfFenced,
}

impl StopReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Rebalanced => "rebalanced",
            StopReason::Lost => "lost",
            StopReason::Removed => "removed",
            StopReason::SelfFenced => "self_fenced",
        }
    }
}

/// Counters for `/metrics` and `/api/system`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Live nodes at the last beat (this one included).
    pub nodes_live: AtomicU64,
    /// Cameras this node holds and runs.
    pub held: AtomicU64,
    /// Leases taken.
    pub taken: AtomicU64,
    /// Leases given to other nodes (rebalancing, removal).
    pub given: AtomicU64,
    /// Cameras lost to another node.
    pub lost: AtomicU64,
    /// Times this node fenced itself.
    pub self_fenced: AtomicU64,
    /// Beats that failed (the database unreachable).
    pub failed_beats: AtomicU64,
    /// Fenced right now: cannot renew, every camera stopped.
    pub fenced: AtomicBool,
}

/// The cameras the store says run, with the stored cameras that are not valid here.
pub type CameraSource =
    Arc<dyn Fn() -> Result<(Vec<Camera>, Vec<ConfigError>), String> + Send + Sync>;

/// Wakes the keeper for a pass now (a camera changed through the API; the service stops).
#[derive(Clone)]
pub struct Nudge(crossbeam_channel::Sender<()>);

impl Nudge {
    /// Asks for a pass as soon as possible.
    pub fn nudge(&self) {
        let _ = self.0.try_send(());
    }
}

/// How often the inventory is read again without a nudge.
const INVENTORY_EVERY: Duration = Duration::from_secs(5);

/// This node's lease keeper.
pub struct Keeper {
    leases: Leases,
    fence: Arc<Fence>,
    cameras: CameraSource,
    config: ClusterConfig,
    tx: tokio::sync::mpsc::Sender<Holding>,
    stats: Arc<ClusterStats>,
    nudges: crossbeam_channel::Receiver<()>,
    beater: Beater,
    /// Cameras running here: id → (epoch, definition).
    running: HashMap<String, (i64, String)>,
    inventory: HashMap<String, Camera>,
    inventory_read: Option<Instant>,
    invalid_logged: std::collections::HashSet<String>,
    last_renewed: Option<Instant>,
    /// GB/T 28181 devices that registered or kept alive here, to be written as their home.
    homes: Option<tokio::sync::mpsc::Receiver<String>>,
    /// Of those, the ones whose home (at the last beat) is another node.
    homes_pending: std::collections::HashSet<String>,
    /// Every device's home at the last beat.
    homes_known: HashMap<String, String>,
}

impl Keeper {
    /// A keeper for `leases`; `tx` is the fleet's side of the holding channel.
    pub fn new(
        leases: Leases,
        fence: Arc<Fence>,
        cameras: CameraSource,
        config: ClusterConfig,
        tx: tokio::sync::mpsc::Sender<Holding>,
        stats: Arc<ClusterStats>,
    ) -> (Keeper, Nudge) {
        let (nudge, nudges) = crossbeam_channel::bounded(1);
        (
            Keeper {
                leases,
                fence,
                cameras,
                config,
                tx,
                stats,
                nudges,
                running: HashMap::new(),
                inventory: HashMap::new(),
                inventory_read: None,
                invalid_logged: Default::default(),
                last_renewed: None,
                beater: Beater::default(),
                homes: None,
                homes_pending: Default::default(),
                homes_known: HashMap::new(),
            },
            Nudge(nudge),
        )
    }

    /// GB/T 28181 devices registering or keeping alive here arrive on `homes` (a bounded queue
    /// app.rs creates; each keepalive repeats it, so one dropped when it is full is sent again):
    /// a device whose home is another node is written as at home here with the next beat (in its
    /// transaction), so its channels are placed here.
    pub fn with_homes(mut self, homes: tokio::sync::mpsc::Receiver<String>) -> Keeper {
        self.homes = Some(homes);
        self
    }

    /// The devices to write as at home here with this pass's beat.
    fn homes_to_write(&mut self) -> Vec<String> {
        let me = self.leases.node();
        if let Some(rx) = &mut self.homes {
            while let Ok(device) = rx.try_recv() {
                if self.homes_known.get(&device).map(String::as_str) != Some(me) {
                    self.homes_pending.insert(device);
                }
            }
        }
        self.homes_pending.iter().cloned().collect()
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Runs the keeper on its own thread until `cancel` fires (nudge it then, so it leaves at
    /// once), then gives every lease up.
    pub fn spawn(
        mut self,
        cancel: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("qly-cluster".into())
            .spawn(move || {
                let started = Instant::now();
                match self.leases.leave() {
                    Ok(n) if n > 0 => tracing::info!(
                        released = n,
                        "leases of this node's previous run given up; cameras are taken again under new epochs"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "leases of a previous run not given up"),
                }
                let settle = self.config.renew * 2;
                while !cancel.is_cancelled() {
                    self.pass(started.elapsed() >= settle);
                    match self.nudges.recv_timeout(self.config.renew) {
                        Ok(()) => self.inventory_read = None,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            std::thread::sleep(self.config.renew)
                        }
                    }
                }
                self.leave();
            })
    }

    /// Stopping: every lease given up at once so the other nodes take the cameras on their next
    /// pass (the fleet is stopping on its own).
    fn leave(&mut self) {
        let t0 = Instant::now();
        let _ = self
            .leases
            .beat(self.config.weight, NodeState::Draining, self.ttl_ms());
        match self.leases.leave() {
            Ok(n) => tracing::info!(
                released = n,
                ms = t0.elapsed().as_millis() as u64,
                "stopping: every camera lease given up for the other nodes to take"
            ),
            Err(e) => tracing::error!(error = %e,
                "stopping: leases not given up; the other nodes take the cameras when the leases end"),
        }
    }

    fn send(&self, h: Holding) {
        // The fleet's side is gone only when the service stops.
        let _ = self.tx.blocking_send(h);
    }

    fn refresh_inventory(&mut self) {
        if self
            .inventory_read
            .is_some_and(|t| t.elapsed() < INVENTORY_EVERY)
        {
            return;
        }
        match (self.cameras)() {
            Ok((cameras, invalid)) => {
                for e in invalid {
                    if self.invalid_logged.insert(e.path.clone()) {
                        tracing::error!(field = %e.path, message = %e.message,
                            "a stored camera is not valid under this node's configuration; not run");
                    }
                }
                self.inventory = cameras.into_iter().map(|c| (c.id.clone(), c)).collect();
                self.inventory_read = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "camera inventory not read; the last one read stands")
            }
        }
    }

    /// One pass: beat, then take, give and stop what the placement says.
    pub fn pass(&mut self, may_claim: bool) {
        let ttl = self.ttl_ms();
        let before = Instant::now();
        // A beat that hangs (a black-holed connection, a pool waiting to connect) must not keep
        // this node analysing past its leases: past the self-fencing limit it counts as failed.
        let limit = self.config.lease.saturating_sub(self.config.renew * 2);
        let wait = match self.last_renewed {
            Some(t) => limit.saturating_sub(t.elapsed()).max(self.config.renew),
            None => self.config.lease,
        };
        let homes = self.homes_to_write();
        let mut beat = match self
            .beater
            .beat(&self.leases, self.config.weight, ttl, wait, homes)
        {
            Ok(b) => b,
            Err(e) => return self.beat_failed(&e),
        };
        if !self.homes_pending.is_empty() {
            tracing::info!(
                devices = self.homes_pending.len(),
                "GB/T 28181 devices registered here: their channels are placed on this node"
            );
            self.homes_pending.clear();
        }
        self.homes_known = std::mem::take(&mut beat.homes);
        self.last_renewed = Some(before);
        if self.stats.fenced.swap(false, Ordering::Relaxed) {
            tracing::warn!("camera leases renewed again: this node takes cameras again");
        }
        self.stats
            .nodes_live
            .store(beat.nodes.len() as u64, Ordering::Relaxed);
        self.refresh_inventory();
        let me = self.leases.node().to_owned();

        // Lost: running here, no longer renewed.
        let lost: Vec<String> = self
            .running
            .keys()
            .filter(|id| !beat.held.contains_key(*id))
            .cloned()
            .collect();
        for id in lost {
            tracing::warn!(camera_id = %id,
                "camera lost: another node holds it now (this node could not renew its lease in time)");
            self.running.remove(&id);
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            self.send(Holding::Stop {
                camera: id,
                why: StopReason::Lost,
            });
        }

        let up: Vec<rendezvous::Candidate<'_>> = beat
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Up)
            .map(|n| rendezvous::Candidate {
                id: &n.id,
                weight: n.weight,
            })
            .collect();
        let leases: HashMap<&str, &crate::db::lease::Lease> =
            beat.leases.iter().map(|l| (l.camera.as_str(), l)).collect();
        let mut claim = Vec::new();
        let mut give: Vec<(String, i64, StopReason)> = Vec::new();
        let mut rebalanced = 0;
        let mut ids: Vec<&String> = self.inventory.keys().collect();
        ids.sort();
        let mut to_start = Vec::new();
        for id in ids {
            // A GB channel goes with its device: to the device's home while that node is up.
            let device = gb_device(&self.inventory[id]);
            let home = device
                .and_then(|d| self.homes_known.get(d))
                .map(String::as_str)
                .filter(|n| up.iter().any(|c| c.id == *n));
            let owner = home.or_else(|| rendezvous::owner(device.unwrap_or(id), &up));
            if let Some(&epoch) = beat.held.get(id) {
                let elsewhere = owner.is_some_and(|o| o != me);
                if elsewhere && home.is_some() {
                    give.push((id.clone(), epoch, StopReason::Rebalanced));
                } else if elsewhere && rebalanced < self.config.rebalance_per_pass {
                    rebalanced += 1;
                    give.push((id.clone(), epoch, StopReason::Rebalanced));
                } else {
                    to_start.push((id.clone(), epoch));
                }
            } else if may_claim {
                let lease = leases.get(id.as_str());
                let free = lease.is_none_or(|l| l.free_at(beat.now_ms));
                let orphan = lease.is_none_or(|l| l.expires_ms.saturating_add(ttl) <= beat.now_ms);
                if free && (owner == Some(me.as_str()) || orphan) {
                    claim.push(id.clone());
                }
            }
        }
        for (id, epoch) in &beat.held {
            if !self.inventory.contains_key(id) && self.inventory_read.is_some() {
                give.push((id.clone(), *epoch, StopReason::Removed));
            }
        }
        // Held and running as defined; held and not running (after fencing itself, or a
        // definition changed through the API): started or restarted.
        for (id, epoch) in to_start {
            let camera = &self.inventory[&id];
            match self.running.get(&id) {
                Some((_, def)) if *def == camera.definition => {}
                Some(_) => {
                    self.running
                        .insert(id.clone(), (epoch, camera.definition.clone()));
                    self.send(Holding::Update {
                        camera: Box::new(camera.clone()),
                    });
                }
                None => {
                    self.fence.hold(&id, epoch);
                    self.running
                        .insert(id.clone(), (epoch, camera.definition.clone()));
                    self.send(Holding::Start {
                        camera: Box::new(camera.clone()),
                        epoch,
                    });
                }
            }
        }
        if !claim.is_empty() {
            match self.leases.claim(&claim, ttl) {
                Ok(taken) => {
                    if !taken.is_empty() {
                        tracing::info!(count = taken.len(), "camera leases taken");
                    }
                    for (id, epoch) in taken {
                        let Some(camera) = self.inventory.get(&id).cloned() else {
                            continue;
                        };
                        tracing::info!(camera_id = %id, epoch, "camera taken: this node runs it");
                        self.fence.hold(&id, epoch);
                        self.running
                            .insert(id.clone(), (epoch, camera.definition.clone()));
                        self.stats.taken.fetch_add(1, Ordering::Relaxed);
                        self.send(Holding::Start {
                            camera: Box::new(camera),
                            epoch,
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "camera leases not taken"),
            }
        }
        if !give.is_empty() {
            let pairs: Vec<(String, i64)> = give.iter().map(|(c, e, _)| (c.clone(), *e)).collect();
            match self.leases.release(&pairs) {
                Ok(_) => {
                    for (id, _, why) in give {
                        tracing::info!(camera_id = %id, why = why.as_str(), "camera given up");
                        self.running.remove(&id);
                        self.stats.given.fetch_add(1, Ordering::Relaxed);
                        self.send(Holding::Stop { camera: id, why });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "camera leases not given up"),
            }
        }
        self.stats
            .held
            .store(self.running.len() as u64, Ordering::Relaxed);
        let took = before.elapsed();
        if took > self.config.renew * 2 {
            tracing::warn!(
                ms = took.as_millis() as u64,
                held = self.running.len(),
                "a lease pass took longer than two renew periods (the machine or the database is slow): hand-overs wait for it"
            );
        }
    }

    /// A beat failed: past `lease − 2 × renew` without a renewal, every camera stops (the node
    /// fences itself) so none is analysed here once another node may hold it.
    fn beat_failed(&mut self, error: &str) {
        self.stats.failed_beats.fetch_add(1, Ordering::Relaxed);
        let limit = self.config.lease.saturating_sub(self.config.renew * 2);
        let since = self.last_renewed.map(|t| t.elapsed());
        if since.is_none_or(|s| s >= limit) && !self.running.is_empty() {
            let n = self.running.len();
            tracing::error!(error = %error, cameras = n,
                "camera leases not renewed in time: this node stops every camera before its leases can end (self-fenced); other nodes take them");
            self.stats.self_fenced.fetch_add(1, Ordering::Relaxed);
            self.stats.fenced.store(true, Ordering::Relaxed);
            for id in std::mem::take(&mut self.running).into_keys() {
                self.send(Holding::Stop {
                    camera: id,
                    why: StopReason::SelfFenced,
                });
            }
            self.stats.held.store(0, Ordering::Relaxed);
        } else {
            tracing::warn!(error = %error, "camera leases not renewed; trying again");
        }
    }
}

/// The GB/T 28181 device a camera is a channel of (`gb28181://<device>/<channel>`).
fn gb_device(camera: &Camera) -> Option<&str> {
    (camera.source == crate::config::SourceKind::Gb28181)
        .then(|| camera.url.host_str())
        .flatten()
}

/// A beat's answer, by request number.
type Answer = (u64, Result<crate::db::lease::Beat, String>);

/// A beat's request: its number and the GB/T 28181 devices to write as at home here.
type Request = (u64, Vec<String>);

/// Runs beats on a thread of its own, so the keeper can give up waiting for one.
#[derive(Default)]
struct Beater {
    worker: Option<(
        crossbeam_channel::Sender<Request>,
        crossbeam_channel::Receiver<Answer>,
    )>,
    seq: u64,
}

impl Beater {
    /// One beat (registering as up, `homes` written as at home here), waiting at most `wait`
    /// for its answer.
    fn beat(
        &mut self,
        leases: &Leases,
        weight: u32,
        ttl_ms: i64,
        wait: Duration,
        homes: Vec<String>,
    ) -> Result<crate::db::lease::Beat, String> {
        if self.worker.is_none() {
            let (req_tx, req_rx) = crossbeam_channel::unbounded::<Request>();
            let (res_tx, res_rx) = crossbeam_channel::unbounded();
            let leases = leases.clone();
            std::thread::Builder::new()
                .name("qly-cluster-beat".into())
                .spawn(move || {
                    while let Ok((mut seq, mut homes)) = req_rx.recv() {
                        // Only the newest request is answered (older ones were given up on);
                        // the homes of all are written.
                        while let Ok((s, more)) = req_rx.try_recv() {
                            seq = s;
                            homes.extend(more);
                        }
                        let r = leases
                            .beat_homing(weight, NodeState::Up, ttl_ms, &homes)
                            .map_err(|e| e.to_string());
                        if res_tx.send((seq, r)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| format!("beat thread: {e}"))?;
            self.worker = Some((req_tx, res_rx));
        }
        let Some((req, res)) = &self.worker else {
            return Err("no beat thread".into());
        };
        self.seq += 1;
        req.send((self.seq, homes))
            .map_err(|_| "the beat thread stopped".to_string())?;
        let deadline = Instant::now() + wait;
        loop {
            match res.recv_deadline(deadline) {
                Ok((seq, r)) if seq == self.seq => return r,
                Ok(_) => continue,
                Err(_) => {
                    return Err(format!(
                        "the database did not answer a beat within {} ms",
                        wait.as_millis()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
