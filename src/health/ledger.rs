//! The online-rate ledger: every status change in SQLite (WAL), and time-weighted availability
//! (在线率 / 完好率 over a window) per camera, per area prefix, per CST day and month.
//!
//! Blocking: the owner runs it on a dedicated thread.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::state::{CameraState, OfflineReason, QualityFault, Status, Transition};
use crate::config::Camera;
use crate::time::{self, from_unix_ms, unix_ms};

/// Schema migrations; `PRAGMA user_version` counts those applied. Append only.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE camera (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    area_code     TEXT,
    area_path     TEXT,              -- segments joined with '/'
    jurisdiction  TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    removed_at_ms INTEGER            -- set by remove_camera; history stays
) STRICT;
CREATE TABLE transition (
    seq           INTEGER PRIMARY KEY,
    camera        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,  -- when `state` began
    state         TEXT NOT NULL,
    reason        TEXT,
    faults        TEXT NOT NULL DEFAULT '[]',
    from_state    TEXT NOT NULL,
    from_reason   TEXT,
    from_faults   TEXT NOT NULL DEFAULT '[]',
    from_since_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX transition_by_camera ON transition (camera, at_ms, seq);
-- Service runs: time outside every [started_ms, alive_ms] is unknown and not scheduled.
CREATE TABLE node_run (
    id         INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    alive_ms   INTEGER NOT NULL
) STRICT;
"#];

/// Area key of cameras without an area path.
pub const NO_AREA: &str = "(none)";

/// A ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused an operation.
    #[error("ledger {}: {op}: {source}", path.display())]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// What the ledger was doing.
        op: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer build.
    #[error("ledger {}: schema version {found} is newer than this build knows ({known}); not touching it", path.display())]
    NewerSchema {
        /// Database file.
        path: PathBuf,
        /// `user_version` in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A stored value could not be read back.
    #[error("ledger {}: {op}: unreadable stored {what} {value:?}", path.display())]
    Corrupt {
        /// Database file.
        path: PathBuf,
        /// What the ledger was doing.
        op: &'static str,
        /// Which column.
        what: &'static str,
        /// The value found.
        value: String,
    },
}

impl LedgerError {
    /// True when retrying later can help (the database was busy or locked).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

/// How [`Ledger::availability`] groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One row per camera id.
    Camera,
    /// One row per area prefix: county, county/township, county/township/village.
    Area,
    /// One row per CST calendar day, `YYYY-MM-DD`.
    Day,
    /// One row per CST calendar month, `YYYY-MM`.
    Month,
}

impl GroupBy {
    /// The query spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Area => "area",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Parses [`GroupBy::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Camera, Self::Area, Self::Day, Self::Month]
            .into_iter()
            .find(|g| g.as_str() == s)
    }
}

/// Time-weighted availability of one group over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityRow {
    /// Camera id, area prefix (`示范县/城关镇`), day (`2024-06-01`) or month (`2024-06`).
    pub key: String,
    /// Seconds the group's cameras were expected to deliver (not disabled, not in maintenance, known).
    pub scheduled_s: f64,
    /// Seconds online or degraded.
    pub online_s: f64,
    /// Seconds online without a quality fault.
    pub intact_s: f64,
    /// `online_s / scheduled_s`; null when nothing was scheduled.
    pub availability: Option<f64>,
    /// `intact_s / scheduled_s`; null when nothing was scheduled.
    pub intact_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    scheduled: i64,
    online: i64,
    intact: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Excluded,
    Down,
    Degraded,
    Intact,
}

fn class_of(state: CameraState, faults_empty: bool) -> Class {
    match state {
        CameraState::Disabled | CameraState::Maintenance => Class::Excluded,
        CameraState::Connecting | CameraState::Offline => Class::Down,
        CameraState::Degraded => Class::Degraded,
        CameraState::Online if faults_empty => Class::Intact,
        CameraState::Online => Class::Degraded,
    }
}

/// The SQLite ledger. Not `Sync`: one owner thread.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Last stored status per camera (lazily loaded), to fill gaps the tracker cannot see.
    last: HashMap<String, (i64, Status)>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, in WAL mode, applying pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(sql(&path, "open"))?;
        Self::init(conn, path)
    }

    /// An in-memory ledger (tools and tests).
    pub fn open_in_memory() -> Result<Ledger, LedgerError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(sql(&path, "open"))?;
        Self::init(conn, path)
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Ledger, LedgerError> {
        crate::sqlite::configure(&conn, crate::sqlite::Synchronous::Normal)
            .map_err(sql(&path, "configure"))?;
        match crate::sqlite::migrate(&mut conn, MIGRATIONS) {
            Ok(()) => {}
            Err(crate::sqlite::MigrateError::NewerSchema { found, known }) => {
                return Err(LedgerError::NewerSchema { path, found, known });
            }
            Err(crate::sqlite::MigrateError::Sqlite(e)) => return Err(sql(&path, "migrate")(e)),
        }
        Ok(Ledger {
            conn,
            path,
            last: HashMap::new(),
        })
    }

    /// The applied schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        crate::sqlite::schema_version(&self.conn).map_err(sql(&self.path, "read schema version"))
    }

    /// Stores one transition.
    ///
    /// When the stored history does not end in `t.from` (the service restarted, or the camera was
    /// removed and added again), `t.from` is stored first at `t.from.since`, so the time before the
    /// tracker's first report counts as what the tracker says it was (usually `connecting`).
    pub fn record(&mut self, t: &Transition) -> Result<(), LedgerError> {
        self.record_all(std::slice::from_ref(t))
    }

    /// Stores several transitions in one SQLite transaction.
    pub fn record_all(&mut self, ts: &[Transition]) -> Result<(), LedgerError> {
        const OP: &str = "record transition";
        for t in ts {
            self.load_last(&t.camera)?;
        }
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sql(&path, OP))?;
        for t in ts {
            tx.execute(
                "INSERT OR IGNORE INTO camera (id, name) VALUES (?1, ?1)",
                params![t.camera],
            )
            .map_err(sql(&path, OP))?;
            let from_ms = unix_ms(t.from.since);
            let fill = match self.last.get(&t.camera) {
                None => true,
                Some((at, st)) => !st.same_as(&t.from) && from_ms >= *at,
            };
            if fill {
                let before = self.last.get(&t.camera).map(|(_, s)| s.clone());
                let before = before.unwrap_or_else(|| t.from.clone());
                insert_row(&tx, &t.camera, from_ms, &t.from, &before).map_err(sql(&path, OP))?;
            }
            let at = unix_ms(t.at);
            insert_row(&tx, &t.camera, at, &t.to, &t.from).map_err(sql(&path, OP))?;
            self.last.insert(t.camera.clone(), (at, t.to.clone()));
        }
        tx.commit().map_err(sql(&path, OP))?;
        Ok(())
    }

    fn load_last(&mut self, camera: &str) -> Result<(), LedgerError> {
        const OP: &str = "read last transition";
        if self.last.contains_key(camera) {
            return Ok(());
        }
        let row = self
            .conn
            .prepare_cached(
                "SELECT at_ms, state, reason, faults FROM transition WHERE camera = ?1
                 ORDER BY at_ms DESC, seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![camera], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .optional()
            })
            .map_err(sql(&self.path, OP))?;
        if let Some((at, state, reason, faults)) = row {
            let status = self.status_of(OP, &state, reason.as_deref(), &faults, at)?;
            self.last.insert(camera.to_owned(), (at, status));
        }
        Ok(())
    }

    /// Stores (or updates) a camera's descriptive fields; a removed camera comes back.
    pub fn upsert_camera(&mut self, camera: &Camera) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO camera (id, name, area_code, area_path, jurisdiction, enabled, removed_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, area_code = excluded.area_code,
                   area_path = excluded.area_path, jurisdiction = excluded.jurisdiction,
                   enabled = excluded.enabled, removed_at_ms = NULL",
                params![
                    camera.id,
                    camera.name,
                    camera.area_code,
                    camera.area_path.as_ref().map(|a| a.to_string()),
                    camera.jurisdiction,
                    camera.enabled,
                ],
            )
            .map_err(sql(&self.path, "upsert camera"))?;
        Ok(())
    }

    /// Marks a camera removed now; see [`Ledger::remove_camera_at`].
    pub fn remove_camera(&mut self, id: &str) -> Result<(), LedgerError> {
        self.remove_camera_at(id, SystemTime::now())
    }

    /// Marks a camera removed at `at`, keeping its history; from `at` it counts as disabled
    /// (a `disabled` transition is stored), so it leaves every rate.
    pub fn remove_camera_at(&mut self, id: &str, at: SystemTime) -> Result<(), LedgerError> {
        const OP: &str = "remove camera";
        self.load_last(id)?;
        let at_ms = unix_ms(at);
        let last = self.last.get(id).cloned();
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sql(&path, OP))?;
        let n = tx
            .execute(
                "UPDATE camera SET removed_at_ms = ?2, enabled = 0 WHERE id = ?1",
                params![id, at_ms],
            )
            .map_err(sql(&path, OP))?;
        let mut stored = None;
        if let Some((_, from)) = last
            && from.state != CameraState::Disabled
        {
            let to = Status::new(CameraState::Disabled, from_unix_ms(at_ms));
            insert_row(&tx, id, at_ms, &to, &from).map_err(sql(&path, OP))?;
            stored = Some((at_ms, to));
        }
        tx.commit().map_err(sql(&path, OP))?;
        if let Some(s) = stored {
            self.last.insert(id.to_owned(), s);
        }
        if n == 0 {
            tracing::debug!(camera_id = %id, "ledger: removing a camera it never stored");
        }
        Ok(())
    }

    /// Records that the service started at `now` (call once at start-up, then [`Ledger::heartbeat`]).
    ///
    /// Once any run is recorded, time outside every run (the service was down) is not scheduled:
    /// nobody knows what the cameras did. The newest run counts as alive until the `now` given to
    /// [`Ledger::availability`].
    pub fn begin_run(&mut self, now: SystemTime) -> Result<(), LedgerError> {
        let ms = unix_ms(now);
        self.conn
            .execute(
                "INSERT INTO node_run (started_ms, alive_ms) VALUES (?1, ?1)",
                params![ms],
            )
            .map_err(sql(&self.path, "begin run"))?;
        Ok(())
    }

    /// Records that the service is still running at `now` (call every minute or so).
    pub fn heartbeat(&mut self, now: SystemTime) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE node_run SET alive_ms = max(alive_ms, ?1)
                 WHERE id = (SELECT max(id) FROM node_run)",
                params![unix_ms(now)],
            )
            .map_err(sql(&self.path, "heartbeat"))?;
        Ok(())
    }

    /// A camera's transitions, newest first, at most `limit`.
    pub fn history(&self, camera: &str, limit: usize) -> Result<Vec<Transition>, LedgerError> {
        const OP: &str = "read history";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at_ms, state, reason, faults, from_state, from_reason, from_faults, from_since_ms
                 FROM transition WHERE camera = ?1 ORDER BY at_ms DESC, seq DESC LIMIT ?2",
            )
            .map_err(sql(&self.path, OP))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![camera, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .map_err(sql(&self.path, OP))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, st, re, fa, fst, fre, ffa, fsince) = row.map_err(sql(&self.path, OP))?;
            out.push(Transition {
                camera: camera.to_owned(),
                at: from_unix_ms(at),
                from: self.status_of(OP, &fst, fre.as_deref(), &ffa, fsince)?,
                to: self.status_of(OP, &st, re.as_deref(), &fa, at)?,
            });
        }
        Ok(out)
    }

    /// Time-weighted availability over `[from, min(to, now))`, grouped.
    ///
    /// Each camera's status at `from` is its last transition before `from`; the status in force at
    /// the end runs to `min(to, now)`. `online_s` counts online and degraded time, `intact_s` online
    /// time without faults; disabled and maintenance time (and, once [`Ledger::begin_run`] was used,
    /// time the service was not running) is left out of `scheduled_s`. A camera before its first
    /// transition is unknown and not scheduled. Area rows roll up every prefix of the camera's
    /// current area path (county, county/township, county/township/village; [`NO_AREA`] when it has
    /// none). Day and month are CST (UTC+8) and every day/month in the window gets a row. Rows are
    /// sorted by key; removed cameras get a camera row only when they were scheduled in the window.
    pub fn availability(
        &self,
        from: SystemTime,
        to: SystemTime,
        group_by: GroupBy,
        now: SystemTime,
    ) -> Result<Vec<AvailabilityRow>, LedgerError> {
        const OP: &str = "compute availability";
        let f = unix_ms(from);
        let t = unix_ms(to).min(unix_ms(now));
        let coverage = self.coverage(f, t, unix_ms(now))?;

        let cameras: Vec<(String, Option<String>, bool)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, area_path, removed_at_ms IS NOT NULL FROM camera ORDER BY id",
                )
                .map_err(sql(&self.path, OP))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql(&self.path, OP))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql(&self.path, OP))?
        };

        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        match group_by {
            GroupBy::Camera => {
                for (id, _, removed) in &cameras {
                    if !removed {
                        acc.entry(id.clone()).or_default();
                    }
                }
            }
            GroupBy::Area => {
                for (_, area, removed) in &cameras {
                    if !removed {
                        for k in area_keys(area.as_deref()) {
                            acc.entry(k).or_default();
                        }
                    }
                }
            }
            GroupBy::Day if t > f => {
                for d in time::day_of(f)..=time::day_of(t - 1) {
                    acc.entry(time::day_key(time::day_start_ms(d))).or_default();
                }
            }
            GroupBy::Month if t > f => {
                let mut m = f;
                while m < t {
                    let (_, next) = time::month_bounds_ms(m);
                    acc.entry(time::month_key(m)).or_default();
                    m = next;
                }
            }
            GroupBy::Day | GroupBy::Month => {}
        }
        if t <= f {
            return Ok(finish(acc));
        }

        let mut initial = self
            .conn
            .prepare_cached(
                "SELECT state, faults FROM transition WHERE camera = ?1 AND at_ms < ?2
                 ORDER BY at_ms DESC, seq DESC LIMIT 1",
            )
            .map_err(sql(&self.path, OP))?;
        let mut within = self
            .conn
            .prepare_cached(
                "SELECT at_ms, state, faults FROM transition
                 WHERE camera = ?1 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms, seq",
            )
            .map_err(sql(&self.path, OP))?;
        for (id, area, _) in &cameras {
            let keys: Vec<String> = match group_by {
                GroupBy::Camera => vec![id.clone()],
                GroupBy::Area => area_keys(area.as_deref()),
                GroupBy::Day | GroupBy::Month => Vec::new(),
            };
            let first = initial
                .query_row(params![id, f], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
                .map_err(sql(&self.path, OP))?;
            let mut current = match first {
                Some((s, fa)) => Some(self.class(OP, &s, &fa)?),
                None => None,
            };
            let mut start = f;
            let rows = within
                .query_map(params![id, f, t], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(sql(&self.path, OP))?;
            for row in rows {
                let (at, s, fa) = row.map_err(sql(&self.path, OP))?;
                if let Some(c) = current {
                    account(&mut acc, &keys, group_by, &coverage, start, at, c);
                }
                current = Some(self.class(OP, &s, &fa)?);
                start = at;
            }
            if let Some(c) = current {
                account(&mut acc, &keys, group_by, &coverage, start, t, c);
            }
        }
        Ok(finish(acc))
    }

    /// Known time within `[f, t)`: the service runs, or all of it when no run was recorded.
    fn coverage(&self, f: i64, t: i64, now: i64) -> Result<Vec<(i64, i64)>, LedgerError> {
        const OP: &str = "read service runs";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT started_ms, alive_ms FROM node_run ORDER BY started_ms, id")
            .map_err(sql(&self.path, OP))?;
        let mut runs: Vec<(i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql(&self.path, OP))?
            .collect::<Result<_, _>>()
            .map_err(sql(&self.path, OP))?;
        if runs.is_empty() {
            return Ok(vec![(f, t)]);
        }
        if let Some(last) = runs.last_mut() {
            last.1 = last.1.max(now);
        }
        let mut out: Vec<(i64, i64)> = Vec::new();
        for (a, b) in runs {
            let (a, b) = (a.max(f), b.min(t));
            if a >= b {
                continue;
            }
            match out.last_mut() {
                Some(prev) if a <= prev.1 => prev.1 = prev.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ok(out)
    }

    fn class(&self, op: &'static str, state: &str, faults: &str) -> Result<Class, LedgerError> {
        let st = self.parse_state(op, state)?;
        let faults = self.parse_faults(op, faults)?;
        Ok(class_of(st, faults.is_empty()))
    }

    fn parse_state(&self, op: &'static str, s: &str) -> Result<CameraState, LedgerError> {
        CameraState::parse(s).ok_or_else(|| self.corrupt(op, "state", s))
    }

    fn parse_faults(&self, op: &'static str, s: &str) -> Result<Vec<QualityFault>, LedgerError> {
        serde_json::from_str(s).map_err(|_| self.corrupt(op, "faults", s))
    }

    fn status_of(
        &self,
        op: &'static str,
        state: &str,
        reason: Option<&str>,
        faults: &str,
        since_ms: i64,
    ) -> Result<Status, LedgerError> {
        let reason = match reason {
            Some(r) => Some(OfflineReason::parse(r).ok_or_else(|| self.corrupt(op, "reason", r))?),
            None => None,
        };
        Ok(Status {
            state: self.parse_state(op, state)?,
            reason,
            faults: self.parse_faults(op, faults)?,
            since: from_unix_ms(since_ms),
        })
    }

    fn corrupt(&self, op: &'static str, what: &'static str, value: &str) -> LedgerError {
        LedgerError::Corrupt {
            path: self.path.clone(),
            op,
            what,
            value: value.to_owned(),
        }
    }
}

fn sql(path: &Path, op: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Sqlite { path, op, source }
}

fn faults_json(faults: &[QualityFault]) -> String {
    // Serialising unit enum variants cannot fail.
    serde_json::to_string(faults).unwrap_or_else(|_| "[]".to_owned())
}

fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    camera: &str,
    at_ms: i64,
    to: &Status,
    from: &Status,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO transition (camera, at_ms, state, reason, faults,
                                 from_state, from_reason, from_faults, from_since_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        camera,
        at_ms,
        to.state.as_str(),
        to.reason.map(OfflineReason::as_str),
        faults_json(&to.faults),
        from.state.as_str(),
        from.reason.map(OfflineReason::as_str),
        faults_json(&from.faults),
        unix_ms(from.since),
    ])?;
    Ok(())
}

/// Every prefix of a stored area path, outermost first.
fn area_keys(area: Option<&str>) -> Vec<String> {
    let Some(area) = area.filter(|a| !a.is_empty()) else {
        return vec![NO_AREA.to_owned()];
    };
    let segs: Vec<&str> = area.split('/').collect();
    (1..=segs.len()).map(|n| segs[..n].join("/")).collect()
}

/// Adds `[a, b)` of one class to the camera's keys (or to the days/months it spans), within coverage.
fn account(
    acc: &mut BTreeMap<String, Acc>,
    keys: &[String],
    group_by: GroupBy,
    coverage: &[(i64, i64)],
    a: i64,
    b: i64,
    class: Class,
) {
    if class == Class::Excluded {
        return;
    }
    for &(ca, cb) in coverage {
        let (mut x, end) = (a.max(ca), b.min(cb));
        while x < end {
            let (piece_end, key) = match group_by {
                GroupBy::Camera | GroupBy::Area => (end, None),
                GroupBy::Day => {
                    let next = time::day_start_ms(time::day_of(x) + 1);
                    (end.min(next), Some(time::day_key(x)))
                }
                GroupBy::Month => {
                    let (_, next) = time::month_bounds_ms(x);
                    (end.min(next), Some(time::month_key(x)))
                }
            };
            let ms = piece_end - x;
            let mut add = |k: &str| {
                let e = acc.entry(k.to_owned()).or_default();
                e.scheduled += ms;
                if matches!(class, Class::Degraded | Class::Intact) {
                    e.online += ms;
                }
                if class == Class::Intact {
                    e.intact += ms;
                }
            };
            match &key {
                Some(k) => add(k),
                None => keys.iter().for_each(|k| add(k)),
            }
            x = piece_end;
        }
    }
}

fn finish(acc: BTreeMap<String, Acc>) -> Vec<AvailabilityRow> {
    acc.into_iter()
        .map(|(key, a)| {
            let rate = |n: i64| (a.scheduled > 0).then(|| n as f64 / a.scheduled as f64);
            AvailabilityRow {
                key,
                scheduled_s: a.scheduled as f64 / 1000.0,
                online_s: a.online as f64 / 1000.0,
                intact_s: a.intact as f64 / 1000.0,
                availability: rate(a.online),
                intact_rate: rate(a.intact),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AreaPath, CameraOrigin, SourceKind, Transport};
    use CameraState::*;

    fn camera(id: &str, area: &[&str]) -> Camera {
        Camera {
            id: id.into(),
            gb_code: None,
            name: format!("摄像机{id}"),
            url: url::Url::parse("rtsp://10.0.0.1/s").unwrap(),
            sub_url: None,
            source: SourceKind::Rtsp,
            credentials: None,
            location: None,
            area_code: Some("341122".into()),
            area_path: AreaPath::new(area.iter().map(|s| s.to_string()).collect()),
            jurisdiction: Some("城关派出所".into()),
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

    /// Unix ms of 2024-06-01 hh:mm CST plus `day` days.
    fn at(day: u32, hh: u32, mm: u32) -> i64 {
        time::cst_ms(2024, 6, 1 + day, hh, mm, 0)
    }

    fn st(state: CameraState, faults: &[QualityFault], ms: i64) -> Status {
        Status {
            state,
            reason: (state == Offline).then_some(OfflineReason::Unreachable),
            faults: faults.to_vec(),
            since: from_unix_ms(ms),
        }
    }

    /// Scripts a camera's life: each step is (time, state, faults); the first is the tracker's start.
    fn script(l: &mut Ledger, cam: &str, steps: &[(i64, CameraState, &[QualityFault])]) {
        let mut prev = st(steps[0].1, steps[0].2, steps[0].0);
        for &(ms, s, f) in &steps[1..] {
            let to = st(s, f, ms);
            l.record(&Transition {
                camera: cam.into(),
                at: from_unix_ms(ms),
                from: prev.clone(),
                to: to.clone(),
            })
            .unwrap();
            prev = to;
        }
    }

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("ledger-{}.db", std::process::id()));
        (dir, p)
    }

    fn row<'a>(rows: &'a [AvailabilityRow], key: &str) -> &'a AvailabilityRow {
        rows.iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no row {key} in {rows:?}"))
    }

    fn secs(r: &AvailabilityRow) -> (f64, f64, f64) {
        (r.scheduled_s, r.online_s, r.intact_s)
    }

    /// Two cameras over 2024-06-01 08:00 CST → 2024-06-02 08:00 CST (crossing CST midnight).
    fn scripted() -> (tempfile::TempDir, Ledger) {
        let (dir, path) = temp_db();
        let mut l = Ledger::open(&path).unwrap();
        l.upsert_camera(&camera("a", &["示范县", "城关镇", "东街村"]))
            .unwrap();
        l.upsert_camera(&camera("b", &["示范县", "桃源镇"]))
            .unwrap();
        use QualityFault::Blur;
        // a: connecting 07:59 → online 08:00 → degraded(blur) 12:00–13:00 → offline 20:00–22:00
        //    → online → maintenance 23:00–01:00 (next day) → online.
        script(
            &mut l,
            "a",
            &[
                (at(0, 7, 59), Connecting, &[]),
                (at(0, 8, 0), Online, &[]),
                (at(0, 12, 0), Degraded, &[Blur]),
                (at(0, 13, 0), Online, &[]),
                (at(0, 20, 0), Offline, &[]),
                (at(0, 22, 0), Online, &[]),
                (at(0, 23, 0), Maintenance, &[]),
                (at(1, 1, 0), Online, &[]),
            ],
        );
        // b: online from before the window; offline 06:00–10:00 CST on day 2 (after midnight).
        script(
            &mut l,
            "b",
            &[
                (at(0, 6, 0), Connecting, &[]),
                (at(0, 6, 0), Online, &[]),
                (at(1, 6, 0), Offline, &[]),
                (at(1, 10, 0), Online, &[]),
            ],
        );
        (dir, l)
    }

    #[test]
    fn availability_per_camera_area_day_and_month() {
        let (_dir, l) = scripted();
        let (from, to) = (from_unix_ms(at(0, 8, 0)), from_unix_ms(at(1, 8, 0)));
        let now = from_unix_ms(at(5, 0, 0));
        const H: f64 = 3600.0;

        let rows = l.availability(from, to, GroupBy::Camera, now).unwrap();
        assert_eq!(rows.len(), 2);
        // a: 24 h − 2 h maintenance = 22 h scheduled; offline 2 h; degraded 1 h.
        assert_eq!(secs(row(&rows, "a")), (22.0 * H, 20.0 * H, 19.0 * H));
        assert_eq!(row(&rows, "a").availability, Some(20.0 / 22.0));
        // b: 24 h scheduled, offline 06:00–08:00 on day 2 inside the window.
        assert_eq!(secs(row(&rows, "b")), (24.0 * H, 22.0 * H, 22.0 * H));

        let rows = l.availability(from, to, GroupBy::Area, now).unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "示范县",
                "示范县/城关镇",
                "示范县/城关镇/东街村",
                "示范县/桃源镇"
            ]
        );
        assert_eq!(secs(row(&rows, "示范县")), (46.0 * H, 42.0 * H, 41.0 * H));
        assert_eq!(
            secs(row(&rows, "示范县/城关镇/东街村")),
            (22.0 * H, 20.0 * H, 19.0 * H)
        );
        assert_eq!(
            secs(row(&rows, "示范县/桃源镇")),
            (24.0 * H, 22.0 * H, 22.0 * H)
        );

        let rows = l.availability(from, to, GroupBy::Day, now).unwrap();
        assert_eq!(rows.len(), 2);
        // 06-01 08:00–24:00: a 16 h − 1 h maint = 15 h, online 13 h (2 h off), intact 12 h; b 16 h online.
        assert_eq!(
            secs(row(&rows, "2024-06-01")),
            (31.0 * H, 29.0 * H, 28.0 * H)
        );
        // 06-02 00:00–08:00: a 8 h − 1 h maint = 7 h online; b 8 h with 2 h off.
        assert_eq!(
            secs(row(&rows, "2024-06-02")),
            (15.0 * H, 13.0 * H, 13.0 * H)
        );

        let rows = l.availability(from, to, GroupBy::Month, now).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(secs(row(&rows, "2024-06")), (46.0 * H, 42.0 * H, 41.0 * H));
    }

    #[test]
    fn ongoing_state_runs_to_now_and_before_first_transition_is_unknown() {
        let (_dir, l) = scripted();
        // Window to the far future, now = day 2 12:00: b is online since 10:00 and that runs to now.
        let from = from_unix_ms(at(1, 0, 0));
        let rows = l
            .availability(
                from,
                from_unix_ms(at(30, 0, 0)),
                GroupBy::Camera,
                from_unix_ms(at(1, 12, 0)),
            )
            .unwrap();
        assert_eq!(
            secs(row(&rows, "b")),
            (12.0 * 3600.0, 8.0 * 3600.0, 8.0 * 3600.0)
        );
        // Before a camera's first transition nothing is scheduled.
        let early = l
            .availability(
                from_unix_ms(at(0, 0, 0)),
                from_unix_ms(at(0, 6, 0)),
                GroupBy::Camera,
                from_unix_ms(at(5, 0, 0)),
            )
            .unwrap();
        assert_eq!(secs(row(&early, "b")), (0.0, 0.0, 0.0));
        assert_eq!(row(&early, "b").availability, None);
        // An empty window.
        let none = l
            .availability(from, from, GroupBy::Day, from_unix_ms(at(5, 0, 0)))
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn restart_gap_and_service_runs() {
        let (_dir, path) = temp_db();
        let mut l = Ledger::open(&path).unwrap();
        l.begin_run(from_unix_ms(at(0, 0, 0))).unwrap();
        script(
            &mut l,
            "c",
            &[(at(0, 0, 0), Connecting, &[]), (at(0, 0, 0), Online, &[])],
        );
        l.heartbeat(from_unix_ms(at(0, 10, 0))).unwrap();
        // The service was down 10:00–12:00, then its tracker starts over in `connecting`.
        l.begin_run(from_unix_ms(at(0, 12, 0))).unwrap();
        script(
            &mut l,
            "c",
            &[
                (at(0, 12, 0), Connecting, &[]),
                (at(0, 12, 30), Online, &[]),
            ],
        );
        let rows = l
            .availability(
                from_unix_ms(at(0, 0, 0)),
                from_unix_ms(at(0, 14, 0)),
                GroupBy::Camera,
                from_unix_ms(at(0, 14, 0)),
            )
            .unwrap();
        // 12 h known (0–10, 12–14); 30 min of it connecting after the restart.
        assert_eq!(
            secs(row(&rows, "c")),
            (12.0 * 3600.0, 11.5 * 3600.0, 11.5 * 3600.0)
        );
        let h = l.history("c", 10).unwrap();
        let states: Vec<CameraState> = h.iter().map(|t| t.to.state).collect();
        assert_eq!(states, [Online, Connecting, Online, Connecting]);
    }

    #[test]
    fn history_newest_first_and_removal_keeps_it() {
        let (_dir, path) = temp_db();
        let mut l = Ledger::open(&path).unwrap();
        l.upsert_camera(&camera("d", &["示范县"])).unwrap();
        script(
            &mut l,
            "d",
            &[
                (at(0, 8, 0), Connecting, &[]),
                (at(0, 8, 1), Online, &[]),
                (at(0, 9, 0), Offline, &[]),
            ],
        );
        let h = l.history("d", 10).unwrap();
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[0].to.state, Offline);
        assert_eq!(h[0].to.reason, Some(OfflineReason::Unreachable));
        assert_eq!(h[0].from.state, Online);
        assert_eq!(unix_ms(h[0].from.since), at(0, 8, 1));
        assert_eq!(l.history("d", 1).unwrap().len(), 1);

        l.remove_camera_at("d", from_unix_ms(at(0, 10, 0))).unwrap();
        assert_eq!(l.history("d", 10).unwrap()[0].to.state, Disabled);
        let (from, to, now) = (
            from_unix_ms(at(0, 8, 0)),
            from_unix_ms(at(0, 12, 0)),
            from_unix_ms(at(1, 0, 0)),
        );
        let rows = l.availability(from, to, GroupBy::Camera, now).unwrap();
        // Removed: it keeps a row for its scheduled time before removal, none after.
        assert_eq!(secs(row(&rows, "d")), (2.0 * 3600.0, 3540.0, 3540.0));
        let areas = l.availability(from, to, GroupBy::Area, now).unwrap();
        assert_eq!(row(&areas, "示范县").scheduled_s, 7200.0);
        // Added again: back in the inventory.
        l.upsert_camera(&camera("d", &["示范县"])).unwrap();
        let rows = l
            .availability(to, from_unix_ms(at(0, 13, 0)), GroupBy::Camera, now)
            .unwrap();
        assert_eq!(secs(row(&rows, "d")), (0.0, 0.0, 0.0));
    }

    #[test]
    fn migrations_are_idempotent_on_reopen() {
        let (_dir, path) = temp_db();
        {
            let mut l = Ledger::open(&path).unwrap();
            assert_eq!(l.schema_version().unwrap(), MIGRATIONS.len() as i64);
            script(
                &mut l,
                "e",
                &[(at(0, 0, 0), Connecting, &[]), (at(0, 1, 0), Online, &[])],
            );
        }
        for _ in 0..2 {
            let l = Ledger::open(&path).unwrap();
            assert_eq!(l.schema_version().unwrap(), MIGRATIONS.len() as i64);
            assert_eq!(l.history("e", 10).unwrap().len(), 2);
        }
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn newer_schema_is_refused_and_errors_carry_context() {
        let (_dir, path) = temp_db();
        drop(Ledger::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = Ledger::open(&path).unwrap_err();
        assert!(matches!(e, LedgerError::NewerSchema { found: 99, .. }));
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(!e.is_retryable());

        let bad = Ledger::open(path.join("no/such/dir.db")).unwrap_err();
        assert!(bad.to_string().contains("open"), "{bad}");
    }

    #[test]
    fn record_fills_the_tracker_start_once() {
        let mut l = Ledger::open_in_memory().unwrap();
        script(
            &mut l,
            "f",
            &[
                (at(0, 0, 0), Connecting, &[]),
                (at(0, 0, 1), Online, &[]),
                (
                    at(0, 1, 0),
                    Degraded,
                    &[QualityFault::Frozen, QualityFault::Dark],
                ),
            ],
        );
        let h = l.history("f", 10).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].to.faults, [QualityFault::Frozen, QualityFault::Dark]);
        assert_eq!(h[2].to.state, Connecting);
        assert_eq!(GroupBy::parse("area"), Some(GroupBy::Area));
        assert_eq!(area_keys(None), [NO_AREA]);
    }
}
