//! [`Db`] on a SQLite file: one connection behind a mutex (WAL, `synchronous=FULL`), each store in
//! its own file as before.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, params_from_iter};

use super::{Db, DbError, DbErrorKind, Dialect, Row, Schema, Tx, Value};
use crate::sqlite::Synchronous;

/// A SQLite database file.
pub struct SqliteDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteDb {
    /// Opens (creating) the file at `path` for a durable store (`synchronous=FULL`).
    pub fn open(path: &Path) -> Result<SqliteDb, DbError> {
        SqliteDb::open_with(path, Synchronous::Full)
    }

    /// Opens (creating it and its folder) the file at `path`.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> Result<SqliteDb, DbError> {
        let opening = format!("opening {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::other(format!("{opening}: creating its folder: {e}")))?;
        }
        let conn =
            crate::sqlite::open(path, synchronous).map_err(|e| error(e).context(&opening))?;
        Ok(SqliteDb {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// A database in memory (tools and tests).
    pub fn in_memory() -> Result<SqliteDb, DbError> {
        let conn = Connection::open_in_memory().map_err(error)?;
        crate::sqlite::configure(&conn, Synchronous::Normal).map_err(error)?;
        Ok(SqliteDb {
            conn: Mutex::new(conn),
            path: PathBuf::from(":memory:"),
        })
    }
}

fn error(e: rusqlite::Error) -> DbError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => DbErrorKind::Conflict,
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly,
        ) => DbErrorKind::Unavailable,
        _ => DbErrorKind::Other,
    };
    DbError {
        kind,
        message: e.to_string(),
    }
}

fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Real(r) => SqlValue::Real(*r),
        Value::Text(t) => SqlValue::Text(t.clone()),
    }
}

struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(error)?;
        let n = stmt
            .execute(params_from_iter(params.iter().map(to_sql)))
            .map_err(error)?;
        Ok(n as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.execute_batch(sql).map_err(error)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(error)?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(to_sql)))
            .map_err(error)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(error)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(error)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(_) => {
                        return Err(DbError::other(format!("column {i} is a blob")));
                    }
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn run(
        &self,
        f: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + Send),
    ) -> Result<(), DbError> {
        let mut conn = crate::sync::lock(&self.conn);
        let tx = conn.transaction().map_err(error)?;
        f(&mut SqliteTx(&tx))?;
        tx.commit().map_err(error)
    }

    fn migrate(&self, schema: &Schema) -> Result<(), DbError> {
        let mut conn = crate::sync::lock(&self.conn);
        crate::sqlite::migrate(&mut conn, schema.sqlite).map_err(|e| {
            DbError::other(format!(
                "{}: {} schema: {e}",
                self.path.display(),
                schema.name
            ))
        })
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }
}
