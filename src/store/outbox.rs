//! The delivery outbox: one row per (alert, sink, url, message), written with the alert (its clip's
//! message when the clip is written), drained by the worker.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{AlertStore, MetricCounts, OutboxRow, OutboxState, Route, StoreError};

const COLUMNS: &str = "id, alert_id, sink, url, body, attempts, next_at_ms, first_at_ms, last_error, \
                       state, delivered_at_ms, kind";

fn row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let state: String = r.get(9)?;
    Ok(OutboxRow {
        id: r.get(0)?,
        alert_id: r.get(1)?,
        sink: r.get(2)?,
        url: r.get(3)?,
        body: r.get(4)?,
        attempts: r.get::<_, i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_at_ms: r.get(6)?,
        first_at_ms: r.get(7)?,
        last_error: r.get(8)?,
        state: OutboxState::parse(&state).ok_or_else(|| super::corrupt("outbox state", &state))?,
        delivered_at_ms: r.get(10)?,
        kind: r.get(11)?,
    })
}

pub(super) fn insert_routes(
    tx: &Connection,
    alert_id: &str,
    body: &str,
    routes: &[Route],
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (alert_id, sink, url, body, next_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for r in routes {
        stmt.execute(params![alert_id, r.sink, r.url, body, now_ms])?;
    }
    Ok(())
}

/// A follow-up message of `kind` about an alert, to every endpoint its alert message went to.
pub(super) fn insert_follow_up(
    tx: &Connection,
    alert_id: &str,
    kind: &str,
    body: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (alert_id, sink, url, body, next_at_ms, kind) \
         SELECT alert_id, sink, url, ?2, ?3, ?4 FROM outbox WHERE alert_id = ?1 AND kind = 'alert'",
    )?
    .execute(params![alert_id, body, now_ms, kind])
}

impl AlertStore {
    /// Pending rows due at `now_ms`, oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_at_ms <= ?1 \
             ORDER BY next_at_ms, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The earliest `next_at_ms` of a pending row.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT MIN(next_at_ms) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Rows in `state` (all when `None`), newest first.
    pub fn outbox(
        &self,
        state: Option<OutboxState>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![state.map(|s| s.as_str()), limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One outbox row.
    pub fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?)
    }

    /// For `/metrics`: alerts by (type, state), and outbox rows by (sink kind, state) with their
    /// failed attempts (`dispatch:<station>` counts as `dispatch`).
    pub fn metric_counts(&self) -> Result<MetricCounts, StoreError> {
        let conn = self.conn();
        let mut alerts = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT alert_type, state, COUNT(*) FROM alerts GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
            alerts.push(row?);
        }
        let mut outbox = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT CASE WHEN sink LIKE 'dispatch:%' THEN 'dispatch' ELSE sink END AS kind, state,              COUNT(*), COALESCE(SUM(attempts - (state = 'delivered')), 0)              FROM outbox GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
            outbox.push(row?);
        }
        Ok(MetricCounts { alerts, outbox })
    }

    /// The receiver accepted the row.
    pub fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at_ms = ?1, \
             first_at_ms = COALESCE(first_at_ms, ?1), last_error = NULL WHERE id = ?2",
            params![now_ms, id],
        )?;
        Ok(())
    }

    /// An attempt failed: the row becomes `dead` when `max_age_ms` has passed since its first attempt,
    /// else waits until `next_at_ms`. Returns the new state.
    pub fn mark_failed(
        &self,
        id: i64,
        now_ms: i64,
        error: &str,
        max_age_ms: i64,
        next_at_ms: i64,
    ) -> Result<OutboxState, StoreError> {
        let conn = self.conn();
        let state: Option<String> = conn
            .query_row(
                "UPDATE outbox SET attempts = attempts + 1, first_at_ms = COALESCE(first_at_ms, ?1), \
                 last_error = ?2, next_at_ms = ?3, \
                 state = CASE WHEN ?1 - COALESCE(first_at_ms, ?1) >= ?4 THEN 'dead' ELSE 'pending' END \
                 WHERE id = ?5 AND state = 'pending' RETURNING state",
                params![now_ms, error, next_at_ms, max_age_ms, id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(state
            .as_deref()
            .and_then(OutboxState::parse)
            .unwrap_or(OutboxState::Pending))
    }

    /// Moves a dead row back to pending, due now, with a fresh maximum-age window.
    pub fn retry(&self, id: i64, now_ms: i64) -> Result<OutboxRow, StoreError> {
        let conn = self.conn();
        let current = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                what: "outbox row",
                id: id.to_string(),
            })?;
        if current.state != OutboxState::Dead {
            return Err(StoreError::NotDead {
                id,
                state: current.state,
            });
        }
        conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, first_at_ms = NULL, next_at_ms = ?1 \
             WHERE id = ?2",
            params![now_ms, id],
        )?;
        Ok(OutboxRow {
            state: OutboxState::Pending,
            attempts: 0,
            first_at_ms: None,
            next_at_ms: now_ms,
            ..current
        })
    }
}
