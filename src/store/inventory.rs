//! The camera inventory ([`config::inventory::CameraStore`]) and the rules document
//! ([`rules::live::RulesStore`]) on [`Db`]: one implementation for SQLite
//! (`<data_dir>/inventory.db`) and PostgreSQL.

use std::sync::Arc;

use crate::config::inventory::{CameraStore, InventoryError, SeedWrite, StoredCamera};
use crate::db::{self, Db, DbError, Row, Schema, Tx};
use crate::db_params;
use crate::rules::live::{RulesStore, SavedRules};

/// The tables, for each dialect.
pub const SCHEMA: Schema = Schema {
    name: "inventory",
    sqlite: &[
        "CREATE TABLE camera_definition (
            id          TEXT PRIMARY KEY NOT NULL,
            definition  TEXT NOT NULL,      -- the API's camera body (JSON)
            seed        TEXT,               -- SHA-256 of the file's definition last seeded; NULL: the API's
            removed     INTEGER NOT NULL DEFAULT 0,
            updated_ms  INTEGER NOT NULL
        ) STRICT;",
        "CREATE TABLE rules_document (
            id        INTEGER PRIMARY KEY CHECK (id = 1),
            text      TEXT NOT NULL,        -- the rules file's TOML, as the editor saved it
            saved_ms  INTEGER NOT NULL
        ) STRICT;",
    ],
    postgres: &["CREATE TABLE camera_definition (
            id          TEXT PRIMARY KEY,
            definition  TEXT NOT NULL,
            seed        TEXT,
            removed     BIGINT NOT NULL DEFAULT 0,
            updated_ms  BIGINT NOT NULL
        );
        CREATE TABLE rules_document (
            id        BIGINT PRIMARY KEY CHECK (id = 1),
            text      TEXT NOT NULL,
            saved_ms  BIGINT NOT NULL
        );"],
};

/// The inventory and the rules document of one database.
#[derive(Clone)]
pub struct Inventory {
    db: Arc<dyn Db>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inventory({})", self.db.describe())
    }
}

fn fail(op: &'static str) -> impl Fn(DbError) -> InventoryError {
    move |e| InventoryError {
        op,
        message: e.message,
    }
}

impl Inventory {
    /// The inventory in `db`, its tables created or migrated.
    pub fn open(db: Arc<dyn Db>) -> Result<Inventory, InventoryError> {
        db.migrate(&SCHEMA).map_err(fail("migrate"))?;
        Ok(Inventory { db })
    }

    /// The SQLite inventory at `path`.
    pub fn open_sqlite(path: &std::path::Path) -> Result<Inventory, InventoryError> {
        let db = db::sqlite::SqliteDb::open(path).map_err(fail("open"))?;
        Inventory::open(Arc::new(db))
    }
}

fn put(tx: &mut dyn Tx, c: &StoredCamera) -> Result<u64, DbError> {
    tx.execute(
        "INSERT INTO camera_definition (id, definition, seed, removed, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, seed = excluded.seed,
           removed = excluded.removed, updated_ms = excluded.updated_ms",
        db_params![
            &c.id,
            &c.definition,
            c.seed.as_deref(),
            c.removed,
            c.updated_ms
        ],
    )
}

fn stored(r: &Row) -> Result<StoredCamera, DbError> {
    Ok(StoredCamera {
        id: r.text(0)?,
        definition: r.text(1)?,
        seed: r.opt_text(2)?,
        removed: r.bool(3)?,
        updated_ms: r.int(4)?,
    })
}

impl CameraStore for Inventory {
    fn cameras(&self) -> Result<Vec<StoredCamera>, InventoryError> {
        db::query(
            self.db.as_ref(),
            "SELECT id, definition, seed, removed, updated_ms FROM camera_definition ORDER BY id",
            &[],
        )
        .and_then(|rows| rows.iter().map(stored).collect())
        .map_err(fail("read cameras"))
    }

    fn seed(&self, writes: &[SeedWrite]) -> Result<(), InventoryError> {
        if writes.is_empty() {
            return Ok(());
        }
        let postgres = self.db.dialect() == db::Dialect::Postgres;
        db::transaction(self.db.as_ref(), |tx| {
            if postgres {
                // Nodes started together seed the same cameras: one at a time (the others then
                // write what is already there), waiting longer than a row lock would.
                tx.execute("SET LOCAL lock_timeout = '120s'", &[])?;
                tx.query("SELECT 1 FROM pg_advisory_xact_lock(7243, 3)", &[])?;
            }
            for w in writes {
                match w {
                    SeedWrite::Put(c) => put(tx, c)?,
                    SeedWrite::Delete(id) => tx.execute(
                        "DELETE FROM camera_definition WHERE id = ?1",
                        db_params![id],
                    )?,
                };
            }
            Ok(())
        })
        .map_err(fail("seed from the configuration"))
    }

    fn save(&self, id: &str, definition: &str, now_ms: i64) -> Result<(), InventoryError> {
        db::execute(
            self.db.as_ref(),
            "INSERT INTO camera_definition (id, definition, seed, removed, updated_ms) VALUES (?1, ?2, NULL, 0, ?3)
             ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, removed = 0,
               updated_ms = excluded.updated_ms",
            db_params![id, definition, now_ms],
        )
        .map(drop)
        .map_err(fail("save a camera"))
    }

    fn remove(&self, id: &str, now_ms: i64, remember: bool) -> Result<(), InventoryError> {
        db::transaction(self.db.as_ref(), |tx| {
            if remember {
                return tx.execute(
                    "UPDATE camera_definition SET removed = 1, updated_ms = ?2 WHERE id = ?1",
                    db_params![id, now_ms],
                );
            }
            tx.execute(
                "UPDATE camera_definition SET removed = 1, updated_ms = ?2 WHERE id = ?1 AND seed IS NOT NULL",
                db_params![id, now_ms],
            )?;
            tx.execute(
                "DELETE FROM camera_definition WHERE id = ?1 AND seed IS NULL",
                db_params![id],
            )
        })
        .map(drop)
        .map_err(fail("remove a camera"))
    }
}

impl RulesStore for Inventory {
    fn load(&self) -> Result<Option<SavedRules>, String> {
        let rows = db::query(
            self.db.as_ref(),
            "SELECT text, saved_ms FROM rules_document WHERE id = 1",
            &[],
        )
        .map_err(|e| e.message)?;
        rows.first()
            .map(|r| {
                Ok(SavedRules {
                    text: r.text(0)?,
                    saved_ms: r.int(1)?,
                })
            })
            .transpose()
            .map_err(|e: DbError| e.message)
    }

    fn save(&self, text: &str, now_ms: i64) -> Result<(), String> {
        db::execute(
            self.db.as_ref(),
            "INSERT INTO rules_document (id, text, saved_ms) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET text = excluded.text, saved_ms = excluded.saved_ms",
            db_params![text, now_ms],
        )
        .map(drop)
        .map_err(|e| e.message)
    }

    fn describe(&self) -> String {
        self.db.describe()
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
    // Removal: a seeded camera becomes a tombstone, an API camera goes (unless remembered, as a
    // GB/T 28181 channel is).
    store.save("d", r#"{"id":"d"}"#, 2).unwrap();
    store.remove("a", 3, false).unwrap();
    store.remove("c", 3, false).unwrap();
    store.remove("d", 3, true).unwrap();
    store.remove("never-known", 3, true).unwrap();
    let rows = store.cameras().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].removed && rows[0].updated_ms == 3, "{rows:?}");
    assert!(rows[2].id == "d" && rows[2].removed, "{rows:?}");
    store.save("d", r#"{"id":"d"}"#, 4).unwrap();
    assert!(!store.cameras().unwrap()[2].removed, "saved again: back");
    store.remove("d", 5, false).unwrap();
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

/// What every [`RulesStore`] backend must do.
#[cfg(test)]
pub(crate) fn rules_conformance(store: &dyn RulesStore) {
    assert_eq!(store.load().unwrap(), None, "nothing saved yet");
    store.save("# one\n", 5).unwrap();
    store.save("# 两\n[[zones]]\n", 6).unwrap();
    assert_eq!(
        store.load().unwrap(),
        Some(SavedRules {
            text: "# 两\n[[zones]]\n".into(),
            saved_ms: 6
        }),
        "the newest save, as written"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_inventory_conforms_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.db");
        let inventory = Inventory::open_sqlite(&path).unwrap();
        conformance(&inventory);
        rules_conformance(&inventory);
        let again = Inventory::open_sqlite(&path).unwrap();
        assert_eq!(again.cameras().unwrap().len(), 1, "rows survive reopening");
        assert!(RulesStore::load(&again).unwrap().is_some());
    }

    #[test]
    fn postgres_inventory_conforms_and_survives_reconnecting() {
        let pg = crate::db::server::PrivatePostgres::start().expect("a private PostgreSQL");
        let connect =
            || Arc::new(db::postgres::PgDb::connect(&pg.url(), 2).unwrap()) as Arc<dyn Db>;
        let inventory = Inventory::open(connect()).unwrap();
        conformance(&inventory);
        rules_conformance(&inventory);
        // A second node starting on the same database migrates nothing twice and sees the rows.
        let again = Inventory::open(connect()).unwrap();
        assert_eq!(
            again.cameras().unwrap().len(),
            1,
            "rows survive reconnecting"
        );
        assert!(RulesStore::load(&again).unwrap().is_some());
    }
}
