//! The alert-store interface the delivery stage owns: alerts and their outbox, as the alert stage,
//! the delivery worker, the feed, escalation and the API use them ([`AlertStorage`]), and the types
//! it speaks. `store::AlertStore` (SQLite) implements it; issue 14 widens it to every store and adds
//! PostgreSQL behind it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::{Alert, AlertState, AlertType, Severity, next_states};

/// The alert store as the delivery stage and the alert stage use it: every call blocks (for
/// milliseconds; async callers go through [`StoreHandle::blocking`]), and an insert either commits
/// the alert with its outbox rows or returns its error, so nothing is dropped.
pub trait AlertStorage: Send + Sync + 'static {
    /// Stores `alert` (state `new`) and one pending outbox row per route, in ONE transaction.
    /// Returns the alert with its `seq`. The outbox body is the alert's JSON as stored.
    fn insert(&self, alert: &Alert, routes: &[Route], now_ms: i64) -> Result<Alert, StoreError>;
    /// One alert.
    fn get(&self, id: &str) -> Result<Option<Alert>, StoreError>;
    /// When the latest alert of `rule_id` on `camera` happened (unix ms), whichever node raised it.
    fn last_alert_ms(&self, camera: &str, rule_id: &str) -> Result<Option<i64>, StoreError>;
    /// Matching alerts, newest first, at most `limit`.
    fn list(&self, filter: &AlertFilter, limit: usize) -> Result<Vec<Alert>, StoreError>;
    /// Matching alerts stored after the alert `cursor` (oldest first, at most `limit`); all of them
    /// when `cursor` is `None` (the feed's replay).
    fn after_cursor(
        &self,
        cursor: Option<&str>,
        filter: &AlertFilter,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError>;
    /// The alert's lifecycle events, oldest first.
    fn events(&self, id: &str) -> Result<Vec<AlertEvent>, StoreError>;
    /// Incidents whose alerts match `filter` (camera, area, scope, type, time of the latest
    /// alert), newest first, at most `limit`.
    fn incidents(&self, filter: &AlertFilter, limit: usize) -> Result<Vec<Incident>, StoreError>;
    /// One incident and its alerts (oldest first).
    fn incident(&self, id: &str) -> Result<Option<(Incident, Vec<Alert>)>, StoreError>;
    /// One incident without its alerts (the feed's card).
    fn incident_card(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Moves every alert of the incident that may go to `to` (acknowledging the incident
    /// acknowledges its alerts), each with its own event, in one transaction. Returns the alerts
    /// changed.
    fn transition_incident(
        &self,
        id: &str,
        to: AlertState,
        who: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Vec<Alert>, StoreError>;
    /// Moves an alert to `to` when the lifecycle allows it, with outbox rows for `routes` in the
    /// same transaction. Returns the updated alert.
    fn transition(
        &self,
        id: &str,
        to: AlertState,
        who: &str,
        note: &str,
        routes: &[Route],
        now_ms: i64,
    ) -> Result<Alert, StoreError>;
    /// The case system reports back: sets the case id and moves the state.
    fn apply_case_status(
        &self,
        id: &str,
        case_id: &str,
        status: CaseStatus,
        now_ms: i64,
    ) -> Result<Alert, StoreError>;
    /// Escalates alerts still `new` at least `after` old; returns them.
    fn escalate_due(&self, now_ms: i64, after: Duration) -> Result<Vec<Alert>, StoreError>;
    /// Retention: deletes old alerts (never one with a pending or dead delivery) and their snapshots.
    fn cleanup(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<CleanupReport, StoreError>;
    /// The snapshot file for a stored name; `None` for a name that tries to leave the folder.
    fn snapshot_path(&self, name: &str) -> Option<PathBuf>;
    /// The clip file for a stored name; `None` for a name that tries to leave the folder.
    fn clip_path(&self, name: &str) -> Option<PathBuf>;
    /// Records a clip's state on every alert that has its name and returns them as updated; in the
    /// same transaction, each alert for which `message` gives a body gets a `clip_ready` outbox row
    /// to every endpoint its alert message went to.
    fn set_clip(
        &self,
        clip: &crate::rules::AlertClip,
        now_ms: i64,
        message: &(dyn Fn(&Alert) -> Option<String> + Sync),
    ) -> Result<Vec<Alert>, StoreError>;
    /// Clip retention by age and total size, oldest first, never a clip a pending or dead delivery
    /// links to; the alerts stay. Returns (clips, bytes) deleted.
    fn expire_clips(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<(u64, u64), StoreError>;
    /// Pending outbox rows due at `now_ms`, oldest first, at most `limit`.
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    /// The same rows, claimed for `lease_ms` by this worker: other workers (other nodes) skip
    /// them until they are marked or the claim ends.
    fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// Gives the job `name` up if `holder` holds it.
    fn release_job(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Takes or renews the job `name` (escalation, retention) for `holder` when nobody else holds
    /// it; true when `holder` may run it now.
    fn hold_job(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError>;
    /// When the next pending row is due.
    fn next_due_ms(&self) -> Result<Option<i64>, StoreError>;
    /// Outbox rows, newest first, optionally of one state.
    fn outbox(
        &self,
        state: Option<OutboxState>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// One outbox row.
    fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError>;
    /// Counts for `/metrics`.
    fn metric_counts(&self) -> Result<MetricCounts, StoreError>;
    /// The receiver took the row.
    fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError>;
    /// An attempt failed: the row waits until `next_at_ms`, or is dead-lettered when its first
    /// attempt is more than `max_age_ms` old.
    fn mark_failed(
        &self,
        id: i64,
        now_ms: i64,
        error: &str,
        max_age_ms: i64,
        next_at_ms: i64,
    ) -> Result<OutboxState, StoreError>;
    /// An engineer's retry of a dead row.
    fn retry(&self, id: i64, now_ms: i64) -> Result<OutboxRow, StoreError>;
}

/// A shared alert store (cheap to clone) for the delivery stage, the alert stage and the API.
#[derive(Clone)]
pub struct StoreHandle(Arc<dyn AlertStorage>);

impl StoreHandle {
    /// Shares `store`.
    pub fn new(store: impl AlertStorage) -> StoreHandle {
        StoreHandle(Arc::new(store))
    }

    /// Runs `f` on a blocking thread (for async callers).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn AlertStorage) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

impl std::ops::Deref for StoreHandle {
    type Target = dyn AlertStorage;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreHandle")
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (disk full, unreachable, a schema from a newer build …).
    #[error("alert database: {0}")]
    Db(#[from] crate::db::DbError),
    /// A file (the database's folder, a snapshot) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No such alert / outbox row.
    #[error("{what} {id} not found")]
    NotFound {
        /// `alert` or `outbox row`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The lifecycle does not allow this step.
    #[error(
        "transition {from} → {to} is not allowed (from {from} the allowed next states are: {allowed})"
    )]
    NotAllowed {
        /// Current state.
        from: AlertState,
        /// Requested state.
        to: AlertState,
        /// Allowed next states, comma separated (`none` for a terminal state).
        allowed: String,
    },
    /// Only dead-lettered outbox rows can be retried.
    #[error("outbox row {id} is {state}, only dead rows can be retried")]
    NotDead {
        /// The row.
        id: i64,
        /// Its state.
        state: OutboxState,
    },
    /// A stored value no longer parses (written by a newer version?).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The blocking task was cancelled or panicked.
    #[error("store task failed: {0}")]
    Join(String),
    /// This node no longer holds the camera for the alert's time: another node does (counted in
    /// `qly_fenced_writes_total`). Final: the alert is the other node's to raise.
    #[error(
        "camera {camera}: write refused, this node does not hold the camera for that time ({reason})"
    )]
    Fenced {
        /// The camera.
        camera: String,
        /// `not_held` or `stale_epoch`.
        reason: &'static str,
    },
}

/// Alerts of one camera and rule close together in time, folded into one card for the hall: a
/// camera watching a crowd raises one incident, not dozens of alerts. Each alert stays stored and
/// delivered as before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// `I` + the first alert's id.
    pub id: String,
    /// Camera id.
    pub camera: String,
    /// Camera name.
    pub camera_name: String,
    /// The rule whose alerts it folds.
    pub rule_id: String,
    /// The alerts' type.
    pub alert_type: AlertType,
    /// zh-CN type name.
    pub type_zh: String,
    /// English type name.
    pub type_en: String,
    /// The highest severity among its alerts.
    pub severity: Severity,
    /// First alert's frame time, unix ms.
    pub first_ms: i64,
    /// Latest alert's frame time, unix ms.
    pub last_ms: i64,
    /// Alerts folded into it.
    pub count: i64,
    /// Of those, how many are still `new` (unacknowledged).
    pub unacknowledged: i64,
    /// The first alert (its snapshot and clip show the start).
    pub first_alert: String,
    /// The latest alert (its snapshot shows the latest picture).
    pub last_alert: String,
    /// The camera's county/township/village.
    pub area_path: Vec<String>,
    /// Police station responsible.
    pub jurisdiction: Option<String>,
}

/// One lifecycle event of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// When, unix milliseconds.
    pub at_ms: i64,
    /// Operator name, `system` or `case-system`.
    pub who: String,
    /// `created`, `transition`, `escalated` or `case`.
    pub kind: String,
    /// State before.
    pub from: Option<AlertState>,
    /// State after.
    pub to: Option<AlertState>,
    /// Free text.
    pub note: String,
}

/// An alert as the API and the feed show it: every field plus `next_states`, where its lifecycle
/// may go from here (so a client offers only allowed actions).
#[derive(Debug, Clone, Copy)]
pub struct AlertView<'a>(pub &'a Alert);

impl Serialize for AlertView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            alert: &'a Alert,
            next_states: Vec<AlertState>,
        }
        Out {
            alert: self.0,
            next_states: next_states(self.0.state),
        }
        .serialize(s)
    }
}

/// `serialize_with` for fields and variants holding an [`Alert`]: see [`AlertView`].
pub fn serialize_view<S: serde::Serializer>(a: &Alert, s: S) -> Result<S::Ok, S::Error> {
    AlertView(a).serialize(s)
}

/// Which alerts a query returns. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Frame time at or after, unix ms.
    pub since_ms: Option<i64>,
    /// Frame time before, unix ms.
    pub until_ms: Option<i64>,
    /// Camera id.
    pub camera: Option<String>,
    /// Area-code prefix (`330102` matches `330102001`).
    pub area: Option<String>,
    /// Area path, itself or below (`示范县/城关镇` matches `示范县/城关镇/东街社区`).
    pub area_path: Option<String>,
    /// The caller's jurisdiction (a dispatcher's area path): applied on top of everything else.
    pub scope: Option<String>,
    /// Type.
    pub alert_type: Option<AlertType>,
    /// State.
    pub state: Option<AlertState>,
    /// At least this severity.
    pub min_severity: Option<Severity>,
}

impl AlertFilter {
    /// The area-path and jurisdiction parts of the filter alone (for feed events that carry only
    /// an area: alert updates, health changes).
    pub fn matches_area_path(&self, path: &str) -> bool {
        [&self.area_path, &self.scope].into_iter().all(|p| {
            p.as_ref()
                .is_none_or(|p| crate::config::area_contains(p, path))
        })
    }

    /// True when `a` passes (the same test the SQL makes; used on the live feed).
    pub fn matches(&self, a: &Alert) -> bool {
        self.since_ms.is_none_or(|s| a.time_ms >= s)
            && self.until_ms.is_none_or(|u| a.time_ms < u)
            && self.camera.as_ref().is_none_or(|c| &a.camera == c)
            && self.area.as_ref().is_none_or(|p| {
                a.area_code
                    .as_ref()
                    .is_some_and(|c| c.starts_with(p.as_str()))
            })
            && self.matches_area_path(&a.area_path.join("/"))
            && self.alert_type.is_none_or(|t| a.alert_type == t)
            && self.state.is_none_or(|s| a.state == s)
            && self.min_severity.is_none_or(|m| a.severity >= m)
    }
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Alerts deleted.
    pub alerts: usize,
    /// Snapshot bytes freed.
    pub bytes: u64,
    /// Alerts kept past their age / the budget because a delivery is pending or dead.
    pub kept_undelivered: usize,
}

/// Status the case system reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// The case system has dispatched it.
    Dispatched,
    /// The case is closed.
    Closed,
}

impl CaseStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Dispatched => "dispatched",
            CaseStatus::Closed => "closed",
        }
    }
}

/// Where an alert goes: `case` or `dispatch:<station>`, and the URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `case` or `dispatch:<jurisdiction>`.
    pub sink: String,
    /// Endpoint URL.
    pub url: String,
}

/// An outbox row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting for (another) attempt at `next_at_ms`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Gave up after the maximum age; waits for an engineer's retry.
    Dead,
}

impl OutboxState {
    /// The JSON/SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
        }
    }

    /// Parses the JSON/SQL name.
    pub fn parse(s: &str) -> Option<OutboxState> {
        [
            OutboxState::Pending,
            OutboxState::Delivered,
            OutboxState::Dead,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricCounts {
    /// (alert type, state, count).
    pub alerts: Vec<(String, String, i64)>,
    /// (sink kind, state, rows, failed attempts).
    pub outbox: Vec<(String, String, i64, i64)>,
}

/// One delivery of one alert to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    /// Row id (the retry API takes it).
    pub id: i64,
    /// The alert.
    pub alert_id: String,
    /// The message: `alert` (the alert itself, at once) or `clip_ready` (its clip, once written).
    pub kind: String,
    /// `case` or `dispatch:<station>`.
    pub sink: String,
    /// Endpoint.
    pub url: String,
    /// The JSON body, fixed when the row was written (so every attempt signs the same bytes).
    #[serde(skip)]
    pub body: String,
    /// Attempts made (reset by a manual retry).
    pub attempts: u32,
    /// Next attempt, unix ms.
    pub next_at_ms: i64,
    /// First attempt (of this retry round), unix ms.
    pub first_at_ms: Option<i64>,
    /// Last failure.
    pub last_error: Option<String>,
    /// State.
    pub state: OutboxState,
    /// When delivered, unix ms.
    pub delivered_at_ms: Option<i64>,
}

/// The outbox row kind of an alert's own message.
pub const MESSAGE_ALERT: &str = "alert";
/// The outbox row kind of the message that an alert's clip is written.
pub const MESSAGE_CLIP_READY: &str = "clip_ready";

impl OutboxRow {
    /// The `Idempotency-Key` the receiver deduplicates by: the alert id for the alert, `<alert
    /// id>:clip` for its clip.
    pub fn idempotency_key(&self) -> String {
        match self.kind.as_str() {
            MESSAGE_ALERT => self.alert_id.clone(),
            MESSAGE_CLIP_READY => format!("{}:clip", self.alert_id),
            other => format!("{}:{other}", self.alert_id),
        }
    }
}
