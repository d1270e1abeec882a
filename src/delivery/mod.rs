//! The delivery stage: the alert store behind the stage's own interface ([`AlertStorage`], alerts +
//! outbox; `store::AlertStore` implements it), the command-hall feed (WebSocket, replay by cursor),
//! ZeroMQ, the store status, and the case system and police dispatch (signed webhooks from the
//! durable outbox).
//!
//! In: alerts to store and deliver ([`Delivery::insert`]) and health transitions for the feed
//! ([`Delivery::health`]). The housekeeping timer ([`housekeeping_timer`]) raises alerts left `new`
//! and runs alert retention, each on one node at a time (a job lease in the store).
//! Out: outbox rows drained by [`webhook::DeliveryWorker`]; [`feed::FeedEvent`]s on a broadcast.
//! When full: the broadcast never waits (slow feed clients are told to resync); the outbox is durable,
//! so a slow or absent receiver only grows it.

pub mod config;
pub mod feed;
pub mod log;
mod status;
pub mod store;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};

pub use config::{DeliveryConfig, Endpoint, RawDeliveryConfig, RawEndpoint};
pub use feed::{FeedEvent, FeedSender};
pub use status::{StoreStatus, StoreStatusView};
pub use store::{AlertStorage, MESSAGE_ALERT, MESSAGE_CLIP_READY, StoreHandle};
pub use webhook::{DeliveryWorker, Secret, WebhookError};

use crate::clock::Clock;
use crate::rules::Alert;
use store::{CleanupReport, StoreError};

/// Feed events buffered per client before it is told to resync.
pub const FEED_CAPACITY: usize = 1024;

/// The delivery side shared by the alert thread, the API and the worker.
pub struct Delivery {
    /// The alert store (alerts + outbox), behind the stage's own interface.
    pub store: StoreHandle,
    /// Routing, secrets, retry policy.
    pub config: Arc<DeliveryConfig>,
    /// The command-hall feed.
    pub feed: FeedSender,
    /// Wakes the delivery worker.
    pub wake: Arc<Notify>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Whether the store takes writes (set by the alert stage, read by the API, metrics, sampling).
    pub status: StoreStatus,
    /// Feed events live clients missed because they fell behind (each such client is told to resync).
    pub feed_missed: Arc<std::sync::atomic::AtomicU64>,
    /// Who this process is when it holds a job (escalation, retention) that one node runs at a time.
    pub holder: String,
    /// With several nodes: the event log the other nodes' feeds read ([`log`]).
    pub log: std::sync::OnceLock<Arc<log::EventLog>>,
}

/// What one housekeeping pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Housekeeping {
    /// Escalation ran here (this process held the job).
    pub escalation_ran: bool,
    /// Alerts escalated.
    pub escalated: usize,
    /// Retention ran here (this process held the job).
    pub retention_ran: bool,
    /// What retention removed.
    pub cleanup: CleanupReport,
}

/// How long a job lease lasts: several passes, so a holder that stops is replaced within it.
const JOB_LEASE_MS: i64 = 60_000;

impl Delivery {
    /// Builds it (no tasks started; see [`Delivery::worker`]).
    pub fn new(
        store: impl AlertStorage,
        config: DeliveryConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<Delivery> {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Arc::new(Delivery {
            store: StoreHandle::new(store),
            config: Arc::new(config),
            feed,
            wake: Arc::new(Notify::new()),
            clock,
            status: StoreStatus::default(),
            feed_missed: Arc::default(),
            log: std::sync::OnceLock::new(),
            holder: format!(
                "{}/{}/{:08x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
                std::process::id(),
                rand::random::<u32>()
            ),
        })
    }

    fn now_ms(&self) -> i64 {
        crate::time::unix_ms(self.clock.wall())
    }

    /// Puts `ev` on this node's feed and, with several nodes, in the event log the other nodes'
    /// feeds read. Never waits.
    pub fn publish(&self, ev: FeedEvent) {
        if let Some(log) = self.log.get() {
            log.append(&ev, self.now_ms());
        }
        // No subscribers is fine: replay serves them from the store later.
        let _ = self.feed.send(Arc::new(ev));
    }

    /// Blocking: stores the alert with its routes (one transaction), then puts it on the feed and
    /// wakes the worker. Returns it as stored (with its `seq`). Called by the alert thread after the
    /// snapshot is written.
    pub fn insert(&self, alert: &Alert) -> Result<Alert, StoreError> {
        let routes = self
            .config
            .routes_for(alert.jurisdiction.as_deref(), alert.dispatch);
        let stored = self.store.insert(alert, &routes, self.now_ms())?;
        // No subscribers is fine: replay serves them from the store later.
        self.publish(FeedEvent::Alert(Box::new(stored.clone())));
        // The hall's incident card: opened, or one more alert in it (best effort: the alert is
        // stored and on the feed whatever happens here).
        if let Some(id) = &stored.incident_id {
            match self.store.incident_card(id) {
                Ok(Some(incident)) => {
                    self.publish(FeedEvent::Incident(incident));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "incident not read back for the feed")
                }
            }
        }
        if !routes.is_empty() {
            self.wake.notify_one();
        }
        Ok(stored)
    }

    /// Puts a camera health change on the feed with the camera's area (the ledger is its record).
    pub fn health(&self, t: &crate::health::Transition, area_path: Vec<String>) {
        self.publish(FeedEvent::Health(feed::HealthEvent {
            transition: t.clone(),
            area_path,
        }));
    }

    /// Blocking: records a clip's state on its alerts and announces each on the feed; returns how
    /// many alerts took it.
    /// A written clip also goes to every endpoint its alert went to, as a `clip_ready` message.
    pub fn clip_finished(&self, clip: &crate::rules::AlertClip) -> Result<usize, StoreError> {
        let public_url = self.config.public_url.as_deref();
        let message = |a: &Alert| clip_ready_body(a, public_url);
        let updated = self.store.set_clip(clip, self.now_ms(), &message)?;
        for a in &updated {
            self.publish(FeedEvent::AlertUpdate(a.into()));
        }
        if clip.state == crate::rules::ClipState::Ready && !updated.is_empty() {
            self.wake.notify_one();
        }
        Ok(updated.len())
    }

    /// Blocking: one housekeeping pass: escalation, and retention when `retention` is set; each
    /// only while this process holds its job (one node at a time runs each).
    pub fn housekeep(&self, retention: bool) -> Result<Housekeeping, StoreError> {
        let mut done = Housekeeping::default();
        let now = self.now_ms();
        if self
            .store
            .hold_job("escalation", &self.holder, now, JOB_LEASE_MS)?
        {
            done.escalation_ran = true;
            done.escalated = self.escalate_due()?.len();
        }
        if retention
            && self
                .store
                .hold_job("retention", &self.holder, now, JOB_LEASE_MS * 2)?
        {
            done.retention_ran = true;
            done.cleanup = self.store.cleanup(
                now,
                self.config.keep_alerts,
                self.config.snapshot_budget_bytes,
            )?;
        }
        Ok(done)
    }

    /// Blocking: escalates alerts still `new` after `config.escalate_after` and announces them.
    /// Call from a timer (every few seconds).
    pub fn escalate_due(&self) -> Result<Vec<Alert>, StoreError> {
        let up = self
            .store
            .escalate_due(self.now_ms(), self.config.escalate_after)?;
        for a in &up {
            self.publish(FeedEvent::AlertUpdate(a.into()));
        }
        Ok(up)
    }

    /// The delivery worker; run it with `worker.run(delivery.wake.clone(), cancel)`.
    pub fn worker(&self) -> Result<DeliveryWorker, WebhookError> {
        DeliveryWorker::new(self.store.clone(), self.config.clone(), self.clock.clone())
    }
}
pub mod zmq_pub;

/// The `clip_ready` message of an alert whose clip is written (`None` otherwise): where to fetch
/// it (`url` under `public_url`, and `path`), its SHA-256, size, duration and first frame's time.
/// The receiver fetches the clip with its API token.
pub fn clip_ready_body(a: &Alert, public_url: Option<&str>) -> Option<String> {
    let c = a
        .clip
        .as_ref()
        .filter(|c| c.state == crate::rules::ClipState::Ready)?;
    let path = format!("/api/alerts/{}/clip.mp4", a.id);
    Some(
        serde_json::json!({
            "message": MESSAGE_CLIP_READY,
            "alert_id": a.id,
            "camera": a.camera,
            "time_ms": a.time_ms,
            "url": public_url.map(|u| format!("{u}{path}")),
            "path": path,
            "sha256": c.sha256,
            "bytes": c.bytes,
            "duration_ms": c.duration_ms,
            "start_ms": c.start_ms,
        })
        .to_string(),
    )
}

/// Raises alerts left `new` too long (every 10 s) and runs alert retention (every minute), each
/// on one node at a time ([`Delivery::housekeep`]).
pub async fn housekeeping_timer(
    delivery: Arc<Delivery>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut pass: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let retention = pass.is_multiple_of(6);
        pass += 1;
        let d = delivery.clone();
        match tokio::task::spawn_blocking(move || d.housekeep(retention)).await {
            Ok(Ok(done)) => {
                if done.escalated > 0 {
                    tracing::warn!(
                        count = done.escalated,
                        "alerts escalated: still new after the escalation time"
                    );
                }
                let c = &done.cleanup;
                if c.alerts > 0 || c.kept_undelivered > 0 {
                    tracing::info!(
                        alerts = c.alerts,
                        bytes = c.bytes,
                        kept_undelivered = c.kept_undelivered,
                        "alert retention deleted the oldest alerts and their snapshots"
                    );
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "housekeeping (escalation, retention) failed")
            }
            Err(e) => tracing::error!(error = %e, "housekeeping task failed"),
        }
    }
}
