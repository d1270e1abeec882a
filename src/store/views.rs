//! The fleet as every node sees it (PostgreSQL, several nodes): each node writes the API view and
//! health status of the cameras it runs every few seconds; any node's camera list, camera view and
//! summary read the others' from here, so one hall sees every camera whichever node it asks. The
//! holder shown is the lease's (the camera lease tables are in the same database).

use std::sync::Arc;

use crate::db::{self, Db, DbError, Schema};
use crate::db_params;

/// The table (PostgreSQL only: a single node's views are its own).
pub const SCHEMA: Schema = Schema {
    name: "camera_view",
    sqlite: &[],
    postgres: &[r#"
CREATE TABLE camera_view (
    camera     TEXT PRIMARY KEY,
    node       TEXT NOT NULL,
    view       TEXT NOT NULL,
    status     TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
"#],
};

/// One camera's view as its holder last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredView {
    /// The camera.
    pub camera: String,
    /// The node that wrote it (its holder then).
    pub node: String,
    /// The API's camera view, JSON.
    pub view: String,
    /// Its health status, JSON (`health::Status`).
    pub status: String,
    /// When it was written (unix ms, the database's clock).
    pub updated_ms: i64,
    /// The node holding the camera now (its lease unexpired), if any.
    pub holder: Option<String>,
}

/// The views table.
#[derive(Clone)]
pub struct FleetViews {
    db: Arc<dyn Db>,
}

impl std::fmt::Debug for FleetViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetViews({})", self.db.describe())
    }
}

const NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

impl FleetViews {
    /// Opens (and migrates) the table.
    pub fn open(db: Arc<dyn Db>) -> Result<FleetViews, DbError> {
        db.migrate(&SCHEMA).map_err(|e| e.context("camera views"))?;
        Ok(FleetViews { db })
    }

    /// Writes `node`'s views: (camera, view JSON, status JSON), in one transaction.
    pub fn put(&self, node: &str, rows: &[(String, String, String)]) -> Result<(), DbError> {
        let sql = format!(
            "INSERT INTO camera_view (camera, node, view, status, updated_ms)
             VALUES (?1, ?2, ?3, ?4, {NOW})
             ON CONFLICT (camera) DO UPDATE SET node = excluded.node, view = excluded.view,
               status = excluded.status, updated_ms = excluded.updated_ms"
        );
        db::transaction(self.db.as_ref(), |tx| {
            for (camera, view, status) in rows {
                tx.execute(&sql, db_params![camera, node, view, status])?;
            }
            Ok(())
        })
    }

    /// The node holding `camera` now (its lease unexpired) and where it is reached, if any.
    pub fn holder(&self, camera: &str) -> Result<Option<(String, Option<String>)>, DbError> {
        let rows = db::query(
            self.db.as_ref(),
            &format!(
                "SELECT l.node, n.address FROM camera_lease l
                 LEFT JOIN cluster_node n ON n.id = l.node
                 WHERE l.camera = ?1 AND l.expires_ms > {NOW}"
            ),
            db_params![camera],
        )?;
        rows.first()
            .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
            .transpose()
    }

    /// The other nodes seen within `within_ms` (by their lease heartbeat), and where each is
    /// reached, by id.
    pub fn other_nodes(
        &self,
        me: &str,
        within_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>, DbError> {
        db::query(
            self.db.as_ref(),
            &format!(
                "SELECT id, address FROM cluster_node WHERE id <> ?1 AND seen_ms > {NOW} - ?2 ORDER BY id"
            ),
            db_params![me, within_ms],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
        .collect()
    }

    /// Every stored view, and the database's now.
    pub fn all(&self) -> Result<(Vec<StoredView>, i64), DbError> {
        db::transaction(self.db.as_ref(), |tx| {
            let now = tx
                .query(&format!("SELECT {NOW}"), &[])?
                .first()
                .ok_or_else(|| DbError::other("no database time"))?
                .int(0)?;
            let mut out = Vec::new();
            for r in tx.query(
                "SELECT v.camera, v.node, v.view, v.status, v.updated_ms,
                   CASE WHEN l.expires_ms > ?1 THEN l.node END
                 FROM camera_view v LEFT JOIN camera_lease l ON l.camera = v.camera
                 ORDER BY v.camera",
                db_params![now],
            )? {
                out.push(StoredView {
                    camera: r.text(0)?,
                    node: r.text(1)?,
                    view: r.text(2)?,
                    status: r.text(3)?,
                    updated_ms: r.int(4)?,
                    holder: r.opt_text(5)?,
                });
            }
            Ok((out, now))
        })
    }
}
