//! The delivery outbox: one row per (alert, sink, url, message), written with the alert (its clip's
//! message when the clip is written), drained by the worker.

use super::{AlertStore, MetricCounts, OutboxRow, OutboxState, Route, StoreError};
use crate::db::{self, DbError, Row, Tx};
use crate::db_params;

const COLUMNS: &str = "id, alert_id, sink, url, body, attempts, next_at_ms, first_at_ms, last_error, \
                       state, delivered_at_ms, kind";

fn row(r: &Row) -> Result<OutboxRow, DbError> {
    let state = r.text(9)?;
    Ok(OutboxRow {
        id: r.int(0)?,
        alert_id: r.text(1)?,
        sink: r.text(2)?,
        url: r.text(3)?,
        body: r.text(4)?,
        attempts: r.int(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_at_ms: r.int(6)?,
        first_at_ms: r.opt_int(7)?,
        last_error: r.opt_text(8)?,
        state: OutboxState::parse(&state).ok_or_else(|| super::corrupt("outbox state", &state))?,
        delivered_at_ms: r.opt_int(10)?,
        kind: r.text(11)?,
    })
}

fn rows(rs: &[Row]) -> Result<Vec<OutboxRow>, DbError> {
    rs.iter().map(row).collect()
}

pub(super) fn insert_routes(
    tx: &mut dyn Tx,
    alert_id: &str,
    body: &str,
    routes: &[Route],
    now_ms: i64,
) -> Result<(), DbError> {
    for r in routes {
        tx.execute(
            "INSERT INTO outbox (alert_id, sink, url, body, next_at_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
            db_params![alert_id, &r.sink, &r.url, body, now_ms],
        )?;
    }
    Ok(())
}

/// A follow-up message of `kind` about an alert, to every endpoint its alert message went to.
pub(super) fn insert_follow_up(
    tx: &mut dyn Tx,
    alert_id: &str,
    kind: &str,
    body: &str,
    now_ms: i64,
) -> Result<u64, DbError> {
    tx.execute(
        "INSERT INTO outbox (alert_id, sink, url, body, next_at_ms, kind) \
         SELECT alert_id, sink, url, ?2, ?3, ?4 FROM outbox WHERE alert_id = ?1 AND kind = 'alert' \
         ON CONFLICT DO NOTHING",
        db_params![alert_id, body, now_ms, kind],
    )
}

impl AlertStore {
    /// Pending rows due at `now_ms`, oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let rs = db::query(
            self.db(),
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_at_ms <= ?1 \
                 ORDER BY next_at_ms, id LIMIT ?2"
            ),
            db_params![now_ms, limit as i64],
        )?;
        Ok(rows(&rs)?)
    }

    /// Claims up to `limit` pending rows due at `now_ms` that no worker holds (or whose claim
    /// ended), for `lease_ms`: another worker (another node) skips them until the claim ends or
    /// the row is marked. Oldest first.
    pub fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // PostgreSQL: rows another transaction is claiming right now are skipped, not waited for.
        let skip = match self.db.dialect() {
            db::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            db::Dialect::Sqlite => "",
        };
        let rs = db::query(
            self.db(),
            &format!(
                "UPDATE outbox SET claimed_until_ms = ?3 WHERE id IN (\
                 SELECT id FROM outbox WHERE state = 'pending' AND next_at_ms <= ?1 \
                 AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?1) \
                 ORDER BY next_at_ms, id LIMIT ?2{skip}) RETURNING {COLUMNS}"
            ),
            db_params![now_ms, limit as i64, now_ms.saturating_add(lease_ms)],
        )?;
        let mut claimed = rows(&rs)?;
        claimed.sort_by_key(|r| (r.next_at_ms, r.id));
        Ok(claimed)
    }

    /// Takes (or renews) the job `name` for `holder` until `now_ms + lease_ms` when nobody else
    /// holds it: true when `holder` holds it now. Jobs that one node runs at a time (escalation,
    /// retention) ask before each run.
    pub fn hold_job(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let rs = db::query(
            self.db(),
            "INSERT INTO job_lease (name, holder, until_ms) VALUES (?1, ?2, ?4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE job_lease.until_ms <= ?3 OR job_lease.holder = ?2 RETURNING holder",
            db_params![name, holder, now_ms, now_ms.saturating_add(lease_ms)],
        )?;
        Ok(!rs.is_empty())
    }

    /// Gives the job `name` up if `holder` holds it (a node stopping).
    pub fn release_job(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        db::execute(
            self.db(),
            "DELETE FROM job_lease WHERE name = ?1 AND holder = ?2",
            db_params![name, holder],
        )?;
        Ok(())
    }

    /// When the worker should look again: the earliest moment a pending row is due and unclaimed.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let rs = db::query(
            self.db(),
            "SELECT MIN(CASE WHEN claimed_until_ms > next_at_ms THEN claimed_until_ms ELSE next_at_ms END) \
             FROM outbox WHERE state = 'pending'",
            &[],
        )?;
        Ok(rs.first().map(|r| r.opt_int(0)).transpose()?.flatten())
    }

    /// Rows in `state` (all when `None`), newest first.
    pub fn outbox(
        &self,
        state: Option<OutboxState>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rs = db::query(
            self.db(),
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1) \
                 ORDER BY id DESC LIMIT ?2"
            ),
            db_params![state.map(|s| s.as_str()), limit as i64],
        )?;
        Ok(rows(&rs)?)
    }

    /// One outbox row.
    pub fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let rs = db::query(
            self.db(),
            &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
            db_params![id],
        )?;
        Ok(rs.first().map(row).transpose()?)
    }

    /// For `/metrics`: alerts by (type, state), and outbox rows by (sink kind, state) with their
    /// failed attempts (`dispatch:<station>` counts as `dispatch`).
    pub fn metric_counts(&self) -> Result<MetricCounts, StoreError> {
        Ok(db::transaction(self.db(), |tx| {
            let mut alerts = Vec::new();
            for r in tx.query(
                "SELECT alert_type, state, COUNT(*) FROM alerts GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )? {
                alerts.push((r.text(0)?, r.text(1)?, r.int(2)?));
            }
            let mut outbox = Vec::new();
            for r in tx.query(
                "SELECT CASE WHEN sink LIKE 'dispatch:%' THEN 'dispatch' ELSE sink END AS kind, state, \
                 COUNT(*), CAST(COALESCE(SUM(attempts - CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), 0) AS BIGINT) \
                 FROM outbox GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )? {
                outbox.push((r.text(0)?, r.text(1)?, r.int(2)?, r.int(3)?));
            }
            Ok(MetricCounts { alerts, outbox })
        })?)
    }

    /// The receiver accepted the row.
    pub fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        db::execute(
            self.db(),
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at_ms = ?1, \
             first_at_ms = COALESCE(first_at_ms, ?1), last_error = NULL, claimed_until_ms = NULL \
             WHERE id = ?2",
            db_params![now_ms, id],
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
        let rs = db::query(
            self.db(),
            "UPDATE outbox SET attempts = attempts + 1, first_at_ms = COALESCE(first_at_ms, ?1), \
             last_error = ?2, next_at_ms = ?3, claimed_until_ms = NULL, \
             state = CASE WHEN ?1 - COALESCE(first_at_ms, ?1) >= ?4 THEN 'dead' ELSE 'pending' END \
             WHERE id = ?5 AND state = 'pending' RETURNING state",
            db_params![now_ms, error, next_at_ms, max_age_ms, id],
        )?;
        let state = rs.first().map(|r| r.text(0)).transpose()?;
        Ok(state
            .as_deref()
            .and_then(OutboxState::parse)
            .unwrap_or(OutboxState::Pending))
    }

    /// Moves a dead row back to pending, due now, with a fresh maximum-age window.
    pub fn retry(&self, id: i64, now_ms: i64) -> Result<OutboxRow, StoreError> {
        db::try_transaction::<_, StoreError>(self.db(), |tx| {
            let current = tx
                .query(
                    &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                    db_params![id],
                )?
                .first()
                .map(row)
                .transpose()?
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
            tx.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, first_at_ms = NULL, next_at_ms = ?1, \
                 claimed_until_ms = NULL WHERE id = ?2",
                db_params![now_ms, id],
            )?;
            Ok(OutboxRow {
                state: OutboxState::Pending,
                attempts: 0,
                first_at_ms: None,
                next_at_ms: now_ms,
                ..current
            })
        })
    }
}
