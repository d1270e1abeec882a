//! SQLite helpers every store here uses (a leaf): how a file is opened and how its schema migrations are
//! applied. Each store keeps its own append-only `MIGRATIONS` list; `PRAGMA user_version` counts those
//! applied, so reopening is idempotent and a file from a newer build is refused rather than touched.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How hard a commit waits for the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// A committed row survives power loss, not only a killed process (alerts, outbox, users).
    Full,
    /// A committed row survives a killed process; the last commits may be lost on power loss (the
    /// health ledger, which writes on every camera transition and heartbeat).
    Normal,
}

/// Applies the settings every store needs to an open connection: WAL (readers never block the writer),
/// `synchronous`, foreign keys on, and a 5 s busy timeout.
pub fn configure(conn: &Connection, synchronous: Synchronous) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
    ))
}

/// Opens (creating) a SQLite file and [`configure`]s it.
pub fn open(path: &Path, synchronous: Synchronous) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    configure(&conn, synchronous)?;
    Ok(conn)
}

/// Why [`migrate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file was written by a newer build; it is left untouched.
    #[error("schema version {found} is newer than this build knows ({known}); not touching it")]
    NewerSchema {
        /// `user_version` in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// SQLite failed while reading the version or applying a migration (that migration is rolled back).
    #[error("migration: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies the migrations not yet applied, each in its own transaction with its `user_version` bump.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), MigrateError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = migrations.len() as i64;
    if found > known {
        return Err(MigrateError::NewerSchema { found, known });
    }
    for (i, migration) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The applied schema version (`PRAGMA user_version`).
pub fn schema_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[&str] = &[
        "CREATE TABLE a (x INTEGER)",
        "ALTER TABLE a ADD COLUMN y TEXT",
    ];

    #[test]
    fn migrations_apply_once_and_a_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = open(&path, Synchronous::Full).unwrap();
        migrate(&mut conn, &M[..1]).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 1);
        migrate(&mut conn, M).unwrap();
        migrate(&mut conn, M).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 2);
        conn.execute("INSERT INTO a (x, y) VALUES (1, 'b')", [])
            .unwrap();
        let e = migrate(&mut conn, &M[..1]).unwrap_err();
        assert!(
            matches!(e, MigrateError::NewerSchema { found: 2, known: 1 }),
            "{e}"
        );
    }

    #[test]
    fn a_failing_migration_leaves_the_version_where_it_was() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &M[..1]).unwrap();
        let bad = [M[0], "ALTER TABLE nope ADD COLUMN z"];
        assert!(matches!(
            migrate(&mut conn, &bad),
            Err(MigrateError::Sqlite(_))
        ));
        assert_eq!(schema_version(&conn).unwrap(), 1);
    }
}
