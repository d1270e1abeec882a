//! Store: alerts, their lifecycle events and the delivery outbox in SQLite (WAL). (Camera health
//! transitions are the ledger's, in `health/`.)
//!
//! In: alerts from the alert stage with their delivery routes (alert + outbox rows in ONE transaction),
//! transitions from operators and the case system.
//! Out: queries for the API, cursor replay for the feed, due outbox rows for the delivery worker.
//! One connection behind a `Mutex`: every call blocks for milliseconds, so the alert thread calls it
//! directly and async code goes through `tokio::task::spawn_blocking` (see `web::alert_api`, `delivery`).
//! Nothing is dropped: an insert either commits or returns its error to the caller.

pub mod inventory;
mod outbox;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

pub use crate::delivery::store::{
    AlertEvent, AlertFilter, AlertView, CaseStatus, CleanupReport, MetricCounts, OutboxRow,
    OutboxState, Route, StoreError, serialize_view,
};
pub use crate::rules::{ALLOWED_TRANSITIONS, Alert, AlertState, allowed, next_states, raise};

use crate::rules::{AlertClip, AlertType, ClipState, Severity};

/// The SQL of an [`AlertFilter`] (the same test as [`AlertFilter::matches`]).
trait AlertFilterSql {
    fn sql(&self, clauses: &mut Vec<String>, args: &mut Vec<Value>);
}

impl AlertFilterSql for AlertFilter {
    fn sql(&self, clauses: &mut Vec<String>, args: &mut Vec<Value>) {
        if let Some(s) = self.since_ms {
            clauses.push("time_ms >= ?".into());
            args.push(Value::Integer(s));
        }
        if let Some(u) = self.until_ms {
            clauses.push("time_ms < ?".into());
            args.push(Value::Integer(u));
        }
        if let Some(c) = &self.camera {
            clauses.push("camera = ?".into());
            args.push(Value::Text(c.clone()));
        }
        if let Some(p) = &self.area {
            clauses.push("substr(area_code, 1, length(?)) = ?".into());
            args.push(Value::Text(p.clone()));
            args.push(Value::Text(p.clone()));
        }
        for p in [&self.area_path, &self.scope].into_iter().flatten() {
            // area_path is stored as a JSON array: a prefix of segments is a prefix of the text
            // that ends where the array does or where the next segment starts.
            let segments: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            if segments.is_empty() {
                continue;
            }
            let json = serde_json::to_string(&segments).unwrap_or_default();
            let open = json.strip_suffix(']').unwrap_or(&json).to_owned();
            clauses.push("(area_path = ? OR substr(area_path, 1, length(?)) = ?)".into());
            args.push(Value::Text(json));
            args.push(Value::Text(format!("{open},")));
            args.push(Value::Text(format!("{open},")));
        }
        if let Some(t) = self.alert_type {
            clauses.push("alert_type = ?".into());
            args.push(Value::Text(type_str(t)));
        }
        if let Some(s) = self.state {
            clauses.push("state = ?".into());
            args.push(Value::Text(s.as_str().into()));
        }
        if let Some(m) = self.min_severity {
            let names: Vec<&str> = Severity::ALL
                .iter()
                .filter(|s| **s >= m)
                .map(|s| s.as_str())
                .collect();
            clauses.push(format!(
                "severity IN ({})",
                vec!["?"; names.len()].join(",")
            ));
            args.extend(names.into_iter().map(|n| Value::Text(n.into())));
        }
    }
}

const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE alerts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        camera TEXT NOT NULL, camera_name TEXT NOT NULL, rule_id TEXT NOT NULL,
        alert_type TEXT NOT NULL, type_zh TEXT NOT NULL, type_en TEXT NOT NULL, code TEXT,
        severity TEXT NOT NULL, time_ms INTEGER NOT NULL, score REAL NOT NULL,
        boxes TEXT NOT NULL, track_ids TEXT NOT NULL,
        message_zh TEXT NOT NULL, message_en TEXT NOT NULL, dispatch INTEGER NOT NULL,
        snapshot TEXT, snapshot_bytes INTEGER NOT NULL DEFAULT 0, latency_ms INTEGER NOT NULL,
        area_code TEXT, area_path TEXT NOT NULL, jurisdiction TEXT, lat REAL, lon REAL,
        state TEXT NOT NULL, case_id TEXT, escalated INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
     );
     CREATE INDEX alerts_time ON alerts(time_ms);
     CREATE INDEX alerts_camera ON alerts(camera, seq);
     CREATE INDEX alerts_state ON alerts(state, time_ms);
     CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL, at_ms INTEGER NOT NULL, who TEXT NOT NULL, kind TEXT NOT NULL,
        from_state TEXT, to_state TEXT, note TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX alert_events_alert ON alert_events(alert_id, id);
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL, sink TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, first_at_ms INTEGER,
        last_error TEXT, state TEXT NOT NULL DEFAULT 'pending', delivered_at_ms INTEGER,
        UNIQUE(alert_id, sink, url)
     );
     CREATE INDEX outbox_due ON outbox(state, next_at_ms);
     CREATE INDEX outbox_alert ON outbox(alert_id);
     CREATE TABLE health_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        camera TEXT NOT NULL, at_ms INTEGER NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL
     );
     CREATE INDEX health_events_camera ON health_events(camera, at_ms);",
    // v2: health transitions are kept by the ledger (health/ledger.rs); this copy was never read.
    "DROP TABLE health_events;",
    // v3
    "ALTER TABLE alerts ADD COLUMN snapshot_error TEXT;",
    // v4: the evidence clip (its JSON; name, state and size apart for retention and updates).
    "ALTER TABLE alerts ADD COLUMN clip TEXT;
     ALTER TABLE alerts ADD COLUMN clip_name TEXT;
     ALTER TABLE alerts ADD COLUMN clip_state TEXT;
     ALTER TABLE alerts ADD COLUMN clip_bytes INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX alerts_clip ON alerts(clip_name);",
    // v5: outbox rows of several messages per alert and endpoint (the alert; its clip once written).
    "CREATE TABLE outbox_v5 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL, sink TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, first_at_ms INTEGER,
        last_error TEXT, state TEXT NOT NULL DEFAULT 'pending', delivered_at_ms INTEGER,
        kind TEXT NOT NULL DEFAULT 'alert',
        UNIQUE(alert_id, sink, url, kind)
     );
     INSERT INTO outbox_v5 (id, alert_id, sink, url, body, attempts, next_at_ms, first_at_ms, last_error,
        state, delivered_at_ms)
        SELECT id, alert_id, sink, url, body, attempts, next_at_ms, first_at_ms, last_error, state,
        delivered_at_ms FROM outbox;
     DROP TABLE outbox;
     ALTER TABLE outbox_v5 RENAME TO outbox;
     CREATE INDEX outbox_due ON outbox(state, next_at_ms);
     CREATE INDEX outbox_alert ON outbox(alert_id);",
];

/// The alert store (cheap to clone; one SQLite connection shared behind a mutex).
#[derive(Clone)]
pub struct AlertStore {
    conn: Arc<Mutex<Connection>>,
    snapshot_dir: PathBuf,
    clip_dir: PathBuf,
}

impl std::fmt::Debug for AlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertStore")
            .field("snapshot_dir", &self.snapshot_dir)
            .finish_non_exhaustive()
    }
}

const ALERT_COLUMNS: &str = "seq, id, camera, camera_name, rule_id, alert_type, type_zh, type_en, code, \
     severity, time_ms, score, boxes, track_ids, message_zh, message_en, dispatch, snapshot, latency_ms, \
     area_code, area_path, jurisdiction, lat, lon, state, case_id, escalated, snapshot_error, clip";

fn type_str(t: AlertType) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{t:?}"),
    }
}

/// Parses an alert type's snake_case name.
pub fn parse_type(s: &str) -> Option<AlertType> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

fn corrupt(what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("bad {what}: {v:?}").into(),
    )
}

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<Alert> {
    let t: String = r.get(5)?;
    let sev: String = r.get(9)?;
    let boxes: String = r.get(12)?;
    let tracks: String = r.get(13)?;
    let path: String = r.get(20)?;
    let state: String = r.get(24)?;
    Ok(Alert {
        seq: r.get(0)?,
        id: r.get(1)?,
        camera: r.get(2)?,
        camera_name: r.get(3)?,
        rule_id: r.get(4)?,
        alert_type: parse_type(&t).ok_or_else(|| corrupt("alert_type", &t))?,
        type_zh: r.get(6)?,
        type_en: r.get(7)?,
        code: r.get(8)?,
        severity: Severity::parse(&sev).ok_or_else(|| corrupt("severity", &sev))?,
        time_ms: r.get(10)?,
        score: r.get::<_, f64>(11)? as f32,
        boxes: serde_json::from_str(&boxes).map_err(|_| corrupt("boxes", &boxes))?,
        track_ids: serde_json::from_str(&tracks).map_err(|_| corrupt("track_ids", &tracks))?,
        message_zh: r.get(14)?,
        message_en: r.get(15)?,
        dispatch: r.get(16)?,
        snapshot: r.get(17)?,
        latency_ms: r.get::<_, i64>(18)?.max(0) as u64,
        area_code: r.get(19)?,
        area_path: serde_json::from_str(&path).map_err(|_| corrupt("area_path", &path))?,
        jurisdiction: r.get(21)?,
        lat: r.get(22)?,
        lon: r.get(23)?,
        state: AlertState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        case_id: r.get(25)?,
        escalated: r.get(26)?,
        snapshot_error: r.get(27)?,
        clip: match r.get::<_, Option<String>>(28)? {
            None => None,
            Some(j) => Some(serde_json::from_str(&j).map_err(|_| corrupt("clip", &j))?),
        },
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AlertStore {
    /// Opens (creating and migrating) the database at `path`; snapshots live in `snapshot_dir`,
    /// clips in the folder `clips` beside it.
    pub fn open(path: &Path, snapshot_dir: &Path) -> Result<AlertStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = crate::sqlite::open_durable(path)?;
        crate::sqlite::migrate(&mut conn, MIGRATIONS)?;
        Ok(AlertStore {
            conn: Arc::new(Mutex::new(conn)),
            snapshot_dir: snapshot_dir.to_owned(),
            clip_dir: snapshot_dir
                .parent()
                .map(|p| p.join("clips"))
                .unwrap_or_else(|| PathBuf::from("clips")),
        })
    }

    /// Where snapshot files are.
    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshot_dir
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        crate::sync::lock(&self.conn)
    }

    /// Runs `f` on a blocking thread (for async callers).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&AlertStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Stores `alert` (state `new`) and one pending outbox row per route, in ONE transaction.
    /// Returns the alert with its `seq`. The outbox body is the alert's JSON as stored.
    pub fn insert(
        &self,
        alert: &Alert,
        routes: &[Route],
        now_ms: i64,
    ) -> Result<Alert, StoreError> {
        let snapshot_bytes = alert
            .snapshot
            .as_ref()
            .and_then(|s| std::fs::metadata(self.snapshot_dir.join(s)).ok())
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO alerts (id, camera, camera_name, rule_id, alert_type, type_zh, type_en, code, \
             severity, time_ms, score, boxes, track_ids, message_zh, message_en, dispatch, snapshot, \
             snapshot_bytes, latency_ms, area_code, area_path, jurisdiction, lat, lon, state, case_id, \
             escalated, created_ms, snapshot_error, clip, clip_name, clip_state, clip_bytes) VALUES (?1, ?2, \
             ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, \
             ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)",
            params![
                alert.id,
                alert.camera,
                alert.camera_name,
                alert.rule_id,
                type_str(alert.alert_type),
                alert.type_zh,
                alert.type_en,
                alert.code,
                alert.severity.as_str(),
                alert.time_ms,
                f64::from(alert.score),
                serde_json::to_string(&alert.boxes).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&alert.track_ids).unwrap_or_else(|_| "[]".into()),
                alert.message_zh,
                alert.message_en,
                alert.dispatch,
                alert.snapshot,
                snapshot_bytes,
                i64::try_from(alert.latency_ms).unwrap_or(i64::MAX),
                alert.area_code,
                serde_json::to_string(&alert.area_path).unwrap_or_else(|_| "[]".into()),
                alert.jurisdiction,
                alert.lat,
                alert.lon,
                AlertState::New.as_str(),
                alert.case_id,
                alert.escalated,
                now_ms,
                alert.snapshot_error,
                alert.clip.as_ref().and_then(|c| serde_json::to_string(c).ok()),
                alert.clip.as_ref().map(|c| c.name.as_str()).filter(|n| !n.is_empty()),
                alert.clip.as_ref().map(|c| c.state.as_str()),
                alert.clip.as_ref().map(|c| c.bytes as i64).unwrap_or(0),
            ],
        )?;
        let mut stored = alert.clone();
        stored.seq = tx.last_insert_rowid();
        stored.state = AlertState::New;
        let body =
            serde_json::to_string(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        insert_event(
            &tx,
            &stored.id,
            now_ms,
            "system",
            "created",
            None,
            Some(AlertState::New),
            "",
        )?;
        outbox::insert_routes(&tx, &stored.id, &body, routes, now_ms)?;
        tx.commit()?;
        Ok(stored)
    }

    /// One alert.
    pub fn get(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_from_row,
            )
            .optional()?)
    }

    /// Matching alerts, newest first, at most `limit`.
    pub fn list(&self, filter: &AlertFilter, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut clauses = Vec::new();
        let mut args = Vec::new();
        filter.sql(&mut clauses, &mut args);
        args.push(Value::Integer(limit.min(100_000) as i64));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {} ORDER BY seq DESC LIMIT ?",
            where_clause(&clauses)
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), alert_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Matching alerts stored after the alert `cursor` (oldest first, at most `limit`); all of them
    /// when `cursor` is `None`. The cursor resolves to the store's insertion order, so an alert
    /// whose ULID is older than the cursor but was stored later is not skipped; a cursor no longer in
    /// the store (retention) falls back to ULID order.
    pub fn after_cursor(
        &self,
        cursor: Option<&str>,
        filter: &AlertFilter,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut clauses = Vec::new();
        let mut args = Vec::new();
        let conn = self.conn();
        if let Some(c) = cursor {
            let seq: Option<i64> = conn
                .query_row("SELECT seq FROM alerts WHERE id = ?1", [c], |r| r.get(0))
                .optional()?;
            match seq {
                Some(s) => {
                    clauses.push("seq > ?".into());
                    args.push(Value::Integer(s));
                }
                None => {
                    clauses.push("id > ?".into());
                    args.push(Value::Text(c.to_owned()));
                }
            }
        }
        filter.sql(&mut clauses, &mut args);
        args.push(Value::Integer(limit.min(100_000) as i64));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {} ORDER BY seq ASC LIMIT ?",
            where_clause(&clauses)
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), alert_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The alert's lifecycle events, oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<AlertEvent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at_ms, who, kind, from_state, to_state, note FROM alert_events \
             WHERE alert_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            let from: Option<String> = r.get(3)?;
            let to: Option<String> = r.get(4)?;
            Ok(AlertEvent {
                at_ms: r.get(0)?,
                who: r.get(1)?,
                kind: r.get(2)?,
                from: from.as_deref().and_then(AlertState::parse),
                to: to.as_deref().and_then(AlertState::parse),
                note: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves an alert to `to` when the lifecycle allows it, recording who/when/note; `routes` are
    /// outbox rows to add in the same transaction (an operator's dispatch). Returns the updated alert.
    pub fn transition(
        &self,
        id: &str,
        to: AlertState,
        who: &str,
        note: &str,
        routes: &[Route],
        now_ms: i64,
    ) -> Result<Alert, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let alert = tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                what: "alert",
                id: id.to_owned(),
            })?;
        if !allowed(alert.state, to) {
            return Err(not_allowed(alert.state, to));
        }
        tx.execute(
            "UPDATE alerts SET state = ?1 WHERE id = ?2",
            params![to.as_str(), id],
        )?;
        insert_event(
            &tx,
            id,
            now_ms,
            who,
            "transition",
            Some(alert.state),
            Some(to),
            note,
        )?;
        let mut updated = alert;
        updated.state = to;
        if !routes.is_empty() {
            let body =
                serde_json::to_string(&updated).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            outbox::insert_routes(&tx, id, &body, routes, now_ms)?;
        }
        tx.commit()?;
        Ok(updated)
    }

    /// The case system reports back: sets the case id and moves the state (`dispatched` from `new` /
    /// `acknowledged`; `closed` → `resolved` from any non-terminal state); records a `case` event.
    pub fn apply_case_status(
        &self,
        id: &str,
        case_id: &str,
        status: CaseStatus,
        now_ms: i64,
    ) -> Result<Alert, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut alert = tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                what: "alert",
                id: id.to_owned(),
            })?;
        let from = alert.state;
        let to = match status {
            CaseStatus::Dispatched if allowed(from, AlertState::Dispatched) => {
                AlertState::Dispatched
            }
            CaseStatus::Closed if !from.is_terminal() => AlertState::Resolved,
            _ => from,
        };
        tx.execute(
            "UPDATE alerts SET state = ?1, case_id = ?2 WHERE id = ?3",
            params![to.as_str(), case_id, id],
        )?;
        let note = format!("case {case_id}: {}", status.as_str());
        insert_event(
            &tx,
            id,
            now_ms,
            "case-system",
            "case",
            Some(from),
            Some(to),
            &note,
        )?;
        tx.commit()?;
        alert.state = to;
        alert.case_id = Some(case_id.to_owned());
        Ok(alert)
    }

    /// Escalates every alert still `new` whose frame time is at least `after` before `now_ms` and that
    /// was not escalated yet: severity one step up, `escalated` set, an `escalated` event. Returns them.
    pub fn escalate_due(&self, now_ms: i64, after: Duration) -> Result<Vec<Alert>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let due: Vec<Alert> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'new' AND escalated = 0 \
                 AND time_ms <= ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([now_ms.saturating_sub(ms(after))], alert_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(due.len());
        for mut a in due {
            let raised = raise(a.severity);
            tx.execute(
                "UPDATE alerts SET severity = ?1, escalated = 1 WHERE id = ?2",
                params![raised.as_str(), a.id],
            )?;
            let note = format!(
                "unacknowledged for {} s: severity {} → {}",
                after.as_secs(),
                a.severity.as_str(),
                raised.as_str()
            );
            insert_event(
                &tx,
                &a.id,
                now_ms,
                "system",
                "escalated",
                Some(a.state),
                Some(a.state),
                &note,
            )?;
            a.severity = raised;
            a.escalated = true;
            out.push(a);
        }
        tx.commit()?;
        Ok(out)
    }

    /// Retention: deletes alerts older than `max_age` and then the oldest ones until their snapshots
    /// fit in `max_bytes`, never one with a pending or dead outbox row; deletes their snapshot files,
    /// events and delivered outbox rows.
    pub fn cleanup(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<CleanupReport, StoreError> {
        let mut report = CleanupReport::default();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let rows = retention_candidates(
            &tx,
            "SELECT a.id, a.snapshot, a.snapshot_bytes, a.time_ms < ?1, \
             EXISTS (SELECT 1 FROM outbox o WHERE o.alert_id = a.id AND o.state IN ('pending', 'dead')) \
             FROM alerts a ORDER BY a.seq",
            now_ms.saturating_sub(ms(max_age)),
        )?;
        let (deleted, kept) = retention_pass(rows, max_bytes, |r| {
            tx.execute("DELETE FROM alert_events WHERE alert_id = ?1", [&r.key])?;
            tx.execute("DELETE FROM outbox WHERE alert_id = ?1", [&r.key])?;
            tx.execute("DELETE FROM alerts WHERE id = ?1", [&r.key])?;
            Ok(())
        })?;
        tx.commit()?;
        drop(conn);
        report.kept_undelivered = kept;
        report.alerts = deleted.len();
        report.bytes = deleted.iter().map(|r| r.bytes).sum();
        // After the commit: a crash in between leaves an orphan file, never a row without its file.
        for f in deleted.iter().filter_map(|r| r.file.as_deref()) {
            if let Some(p) = self.snapshot_path(f) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(report)
    }

    /// The snapshot file for a stored name; `None` for a name that tries to leave the folder.
    pub fn snapshot_path(&self, name: &str) -> Option<PathBuf> {
        plain_name(name).then(|| self.snapshot_dir.join(name))
    }

    /// The clip file for a stored name; `None` for a name that tries to leave the folder.
    pub fn clip_path(&self, name: &str) -> Option<PathBuf> {
        plain_name(name).then(|| self.clip_dir.join(name))
    }

    /// Records a clip's state on every alert that has its name and returns them as updated; in the
    /// same transaction, each alert for which `message` gives a body gets a `clip_ready` outbox row
    /// to every endpoint its alert message went to.
    pub fn set_clip(
        &self,
        clip: &AlertClip,
        now_ms: i64,
        message: &dyn Fn(&Alert) -> Option<String>,
    ) -> Result<Vec<Alert>, StoreError> {
        if clip.name.is_empty() {
            return Ok(Vec::new());
        }
        let json = serde_json::to_string(clip).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE alerts SET clip = ?1, clip_state = ?2, clip_bytes = ?3 WHERE clip_name = ?4",
            params![json, clip.state.as_str(), clip.bytes as i64, clip.name],
        )?;
        let updated = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE clip_name = ?1 ORDER BY seq"
            ))?;
            stmt.query_map([&clip.name], alert_from_row)?
                .collect::<Result<Vec<_>, _>>()?
        };
        for a in &updated {
            if let Some(body) = message(a) {
                outbox::insert_follow_up(
                    &tx,
                    &a.id,
                    crate::delivery::MESSAGE_CLIP_READY,
                    &body,
                    now_ms,
                )?;
            }
        }
        tx.commit()?;
        Ok(updated)
    }

    /// Clip retention: deletes the files of ready clips whose newest alert is older than `max_age`,
    /// then of the oldest alerts' clips until all fit in `max_bytes`; never a clip that an alert
    /// with a pending or dead delivery links to. The alerts stay, their clip `deleted`. Returns
    /// (clips, bytes) deleted.
    pub fn expire_clips(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // One row per clip (alerts may share one): its newest alert's age decides.
        let rows = retention_candidates(
            &tx,
            "SELECT a.clip_name, MAX(a.clip), MAX(a.clip_bytes), MAX(a.time_ms) < ?1, \
             MAX(EXISTS (SELECT 1 FROM outbox o WHERE o.alert_id = a.id AND o.state IN ('pending', 'dead'))) \
             FROM alerts a WHERE a.clip_state = 'ready' GROUP BY a.clip_name ORDER BY MIN(a.seq)",
            now_ms.saturating_sub(ms(max_age)),
        )?;
        let (deleted, _) = retention_pass(rows, max_bytes, |r| {
            let json = r.file.as_deref().unwrap_or_default();
            let mut clip: AlertClip = serde_json::from_str(json)
                .map_err(|_| StoreError::Corrupt(format!("clip {json}")))?;
            clip.state = ClipState::Deleted;
            clip.bytes = 0;
            let json =
                serde_json::to_string(&clip).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "UPDATE alerts SET clip = ?1, clip_state = 'deleted', clip_bytes = 0 WHERE clip_name = ?2",
                params![json, r.key],
            )?;
            Ok(())
        })?;
        tx.commit()?;
        drop(conn);
        // After the commit: a crash in between leaves an orphan file, never a ready clip without one.
        for r in &deleted {
            if let Some(p) = self.clip_path(&r.key) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok((deleted.len() as u64, deleted.iter().map(|r| r.bytes).sum()))
    }
}

/// One row a retention pass may delete, oldest first.
struct Candidate {
    /// Alert id (alert retention) or clip name (clip retention).
    key: String,
    /// The snapshot's file name, or the clip's JSON.
    file: Option<String>,
    /// Bytes it holds on disk.
    bytes: u64,
    /// Older than the age limit.
    old: bool,
    /// A delivery of it is pending or dead: kept whatever its age.
    undelivered: bool,
}

/// The rows of `sql` (selecting key, file, bytes, old, undelivered; `?1` = the age cutoff).
fn retention_candidates(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    cutoff_ms: i64,
) -> rusqlite::Result<Vec<Candidate>> {
    let mut stmt = tx.prepare(sql)?;
    let rows = stmt.query_map([cutoff_ms], |r| {
        Ok(Candidate {
            key: r.get(0)?,
            file: r.get(1)?,
            bytes: r.get::<_, i64>(2)?.max(0) as u64,
            old: r.get(3)?,
            undelivered: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Retention by age, then by size: oldest first, `delete` each row that is old or while the total
/// is over `max_bytes`; a row with an undelivered delivery is kept (and counted). Returns the rows
/// deleted and how many were kept for their delivery.
fn retention_pass(
    rows: Vec<Candidate>,
    max_bytes: u64,
    mut delete: impl FnMut(&Candidate) -> Result<(), StoreError>,
) -> Result<(Vec<Candidate>, usize), StoreError> {
    let mut total: u64 = rows.iter().map(|r| r.bytes).sum();
    let (mut deleted, mut kept) = (Vec::new(), 0);
    for r in rows {
        if !r.old && total <= max_bytes {
            break;
        }
        if r.undelivered {
            kept += 1;
            continue;
        }
        delete(&r)?;
        total = total.saturating_sub(r.bytes);
        deleted.push(r);
    }
    Ok((deleted, kept))
}

/// A file name that stays in its folder.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(['/', '\\'])
        && name != "."
        && name != ".."
        && !name.starts_with('.')
}

fn not_allowed(from: AlertState, to: AlertState) -> StoreError {
    let next = next_states(from);
    let allowed = if next.is_empty() {
        "none (terminal state)".to_owned()
    } else {
        next.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    StoreError::NotAllowed { from, to, allowed }
}

fn where_clause(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_event(
    tx: &Connection,
    id: &str,
    at_ms: i64,
    who: &str,
    kind: &str,
    from: Option<AlertState>,
    to: Option<AlertState>,
    note: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO alert_events (alert_id, at_ms, who, kind, from_state, to_state, note) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            at_ms,
            who,
            kind,
            from.map(|s| s.as_str()),
            to.map(|s| s.as_str()),
            note
        ],
    )?;
    Ok(())
}

/// The SQLite store behind the delivery stage's interface (the inherent methods do the work).
impl crate::delivery::AlertStorage for AlertStore {
    fn insert(&self, alert: &Alert, routes: &[Route], now_ms: i64) -> Result<Alert, StoreError> {
        AlertStore::insert(self, alert, routes, now_ms)
    }
    fn get(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        AlertStore::get(self, id)
    }
    fn list(&self, filter: &AlertFilter, limit: usize) -> Result<Vec<Alert>, StoreError> {
        AlertStore::list(self, filter, limit)
    }
    fn after_cursor(
        &self,
        cursor: Option<&str>,
        filter: &AlertFilter,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError> {
        AlertStore::after_cursor(self, cursor, filter, limit)
    }
    fn events(&self, id: &str) -> Result<Vec<AlertEvent>, StoreError> {
        AlertStore::events(self, id)
    }
    fn transition(
        &self,
        id: &str,
        to: AlertState,
        who: &str,
        note: &str,
        routes: &[Route],
        now_ms: i64,
    ) -> Result<Alert, StoreError> {
        AlertStore::transition(self, id, to, who, note, routes, now_ms)
    }
    fn apply_case_status(
        &self,
        id: &str,
        case_id: &str,
        status: CaseStatus,
        now_ms: i64,
    ) -> Result<Alert, StoreError> {
        AlertStore::apply_case_status(self, id, case_id, status, now_ms)
    }
    fn escalate_due(&self, now_ms: i64, after: Duration) -> Result<Vec<Alert>, StoreError> {
        AlertStore::escalate_due(self, now_ms, after)
    }
    fn cleanup(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<CleanupReport, StoreError> {
        AlertStore::cleanup(self, now_ms, max_age, max_bytes)
    }
    fn snapshot_path(&self, name: &str) -> Option<PathBuf> {
        AlertStore::snapshot_path(self, name)
    }
    fn clip_path(&self, name: &str) -> Option<PathBuf> {
        AlertStore::clip_path(self, name)
    }
    fn set_clip(
        &self,
        clip: &AlertClip,
        now_ms: i64,
        message: &dyn Fn(&Alert) -> Option<String>,
    ) -> Result<Vec<Alert>, StoreError> {
        AlertStore::set_clip(self, clip, now_ms, message)
    }
    fn expire_clips(
        &self,
        now_ms: i64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<(u64, u64), StoreError> {
        AlertStore::expire_clips(self, now_ms, max_age, max_bytes)
    }
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        AlertStore::due(self, now_ms, limit)
    }
    fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        AlertStore::next_due_ms(self)
    }
    fn outbox(
        &self,
        state: Option<OutboxState>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        AlertStore::outbox(self, state, limit)
    }
    fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        AlertStore::outbox_row(self, id)
    }
    fn metric_counts(&self) -> Result<MetricCounts, StoreError> {
        AlertStore::metric_counts(self)
    }
    fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        AlertStore::mark_delivered(self, id, now_ms)
    }
    fn mark_failed(
        &self,
        id: i64,
        now_ms: i64,
        error: &str,
        max_age_ms: i64,
        next_at_ms: i64,
    ) -> Result<OutboxState, StoreError> {
        AlertStore::mark_failed(self, id, now_ms, error, max_age_ms, next_at_ms)
    }
    fn retry(&self, id: i64, now_ms: i64) -> Result<OutboxRow, StoreError> {
        AlertStore::retry(self, id, now_ms)
    }
}

#[cfg(test)]
mod tests;
