//! The camera inventory in SQLite (`<data_dir>/inventory.db`): [`config::inventory::CameraStore`].
//!
//! One connection behind a `Mutex`; every call takes milliseconds (async callers go through
//! `spawn_blocking`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};

use crate::config::inventory::{CameraStore, InventoryError, SeedWrite, StoredCamera};

const MIGRATIONS: &[&str] = &["CREATE TABLE camera (
        id          TEXT PRIMARY KEY NOT NULL,
        definition  TEXT NOT NULL,      -- the API's camera body (JSON)
        seed        TEXT,               -- SHA-256 of the file's definition last seeded; NULL: the API's
        removed     INTEGER NOT NULL DEFAULT 0,
        updated_ms  INTEGER NOT NULL
    ) STRICT;"];

/// The SQLite camera inventory.
pub struct SqliteInventory {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteInventory")
            .field("path", &self.path)
            .finish()
    }
}

fn fail<'a>(op: &'static str, path: &'a Path) -> impl Fn(rusqlite::Error) -> InventoryError + 'a {
    move |e| InventoryError {
        op,
        message: format!("{}: {e}", path.display()),
    }
}

impl SqliteInventory {
    /// Opens (creating and migrating) the inventory at `path`.
    pub fn open(path: &Path) -> Result<SqliteInventory, InventoryError> {
        let mut conn = crate::sqlite::open_durable(path).map_err(fail("open", path))?;
        crate::sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| InventoryError {
            op: "migrate",
            message: format!("{}: {e}", path.display()),
        })?;
        Ok(SqliteInventory {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }
}

fn put(conn: &Connection, c: &StoredCamera) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO camera (id, definition, seed, removed, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, seed = excluded.seed,
           removed = excluded.removed, updated_ms = excluded.updated_ms",
        params![c.id, c.definition, c.seed, c.removed, c.updated_ms],
    )
}

impl CameraStore for SqliteInventory {
    fn cameras(&self) -> Result<Vec<StoredCamera>, InventoryError> {
        let conn = crate::sync::lock(&self.conn);
        let op = fail("read cameras", &self.path);
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, definition, seed, removed, updated_ms FROM camera ORDER BY id",
            )
            .map_err(&op)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredCamera {
                    id: r.get(0)?,
                    definition: r.get(1)?,
                    seed: r.get(2)?,
                    removed: r.get(3)?,
                    updated_ms: r.get(4)?,
                })
            })
            .map_err(&op)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&op)
    }

    fn seed(&self, writes: &[SeedWrite]) -> Result<(), InventoryError> {
        let mut conn = crate::sync::lock(&self.conn);
        let op = fail("seed from the configuration", &self.path);
        let tx = conn.transaction().map_err(&op)?;
        for w in writes {
            match w {
                SeedWrite::Put(c) => put(&tx, c).map_err(&op)?,
                SeedWrite::Delete(id) => tx
                    .execute("DELETE FROM camera WHERE id = ?1", [id])
                    .map_err(&op)?,
            };
        }
        tx.commit().map_err(&op)
    }

    fn save(&self, id: &str, definition: &str, now_ms: i64) -> Result<(), InventoryError> {
        let conn = crate::sync::lock(&self.conn);
        conn.execute(
            "INSERT INTO camera (id, definition, seed, removed, updated_ms) VALUES (?1, ?2, NULL, 0, ?3)
             ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, removed = 0,
               updated_ms = excluded.updated_ms",
            params![id, definition, now_ms],
        )
        .map_err(fail("save a camera", &self.path))?;
        Ok(())
    }

    fn remove(&self, id: &str, now_ms: i64) -> Result<(), InventoryError> {
        let mut conn = crate::sync::lock(&self.conn);
        let op = fail("remove a camera", &self.path);
        let tx = conn.transaction().map_err(&op)?;
        tx.execute(
            "UPDATE camera SET removed = 1, updated_ms = ?2 WHERE id = ?1 AND seed IS NOT NULL",
            params![id, now_ms],
        )
        .map_err(&op)?;
        tx.execute("DELETE FROM camera WHERE id = ?1 AND seed IS NULL", [id])
            .map_err(&op)?;
        tx.commit().map_err(&op)
    }
}

/// What every [`CameraStore`] backend must do (run against SQLite here; the PostgreSQL backend
/// runs the same function).
#[cfg(test)]
pub(crate) fn conformance(store: &dyn CameraStore) {
    let cam = |id: &str, def: &str, seed: Option<&str>, removed: bool| StoredCamera {
        id: id.into(),
        definition: def.into(),
        seed: seed.map(str::to_owned),
        removed,
        updated_ms: 1,
    };
    assert!(store.cameras().unwrap().is_empty(), "a new store is empty");
    store
        .seed(&[
            SeedWrite::Put(cam("b", r#"{"id":"b"}"#, Some("sb"), false)),
            SeedWrite::Put(cam("a", r#"{"id":"a"}"#, Some("sa"), false)),
        ])
        .unwrap();
    assert_eq!(
        store.cameras().unwrap(),
        vec![
            cam("a", r#"{"id":"a"}"#, Some("sa"), false),
            cam("b", r#"{"id":"b"}"#, Some("sb"), false)
        ],
        "seeded rows come back as written, by id"
    );
    // The API adds one and changes a seeded one: the seed stays.
    store.save("c", r#"{"id":"c"}"#, 2).unwrap();
    store.save("a", r#"{"id":"a","name":"x"}"#, 2).unwrap();
    let rows = store.cameras().unwrap();
    assert_eq!(rows[0].definition, r#"{"id":"a","name":"x"}"#);
    assert_eq!(
        rows[0].seed.as_deref(),
        Some("sa"),
        "an API edit keeps the seed"
    );
    assert_eq!((rows[2].id.as_str(), rows[2].seed.as_deref()), ("c", None));
    // Removal: a seeded camera becomes a tombstone, an API camera goes.
    store.remove("a", 3).unwrap();
    store.remove("c", 3).unwrap();
    store.remove("never-known", 3).unwrap();
    let rows = store.cameras().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].removed && rows[0].updated_ms == 3, "{rows:?}");
    // Saving a removed one brings it back; a seed write replaces and deletes in one go.
    store.save("a", r#"{"id":"a"}"#, 4).unwrap();
    assert!(!store.cameras().unwrap()[0].removed);
    store
        .seed(&[
            SeedWrite::Delete("b".into()),
            SeedWrite::Put(cam("a", r#"{"id":"a","v":2}"#, Some("sa2"), false)),
        ])
        .unwrap();
    assert_eq!(
        store.cameras().unwrap(),
        vec![cam("a", r#"{"id":"a","v":2}"#, Some("sa2"), false)]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_inventory_conforms_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.db");
        conformance(&SqliteInventory::open(&path).unwrap());
        let again = SqliteInventory::open(&path).unwrap();
        assert_eq!(again.cameras().unwrap().len(), 1, "rows survive reopening");
    }
}
