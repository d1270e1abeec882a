//! One SQL interface over SQLite and PostgreSQL (a leaf): a store written against [`Db`] runs on
//! both, with one query text.
//!
//! Queries are written in SQLite's form with numbered parameters (`?1`, `?2`); the PostgreSQL backend
//! rewrites them to `$1`, `$2`. What the two dialects share is used: `ON CONFLICT … DO UPDATE`,
//! `RETURNING`, `CAST(… AS BIGINT)`. Integers are 64-bit everywhere (`INTEGER` in SQLite, `BIGINT`
//! in PostgreSQL), booleans are stored as 0/1, times as unix milliseconds; so one [`Value`] type
//! carries every parameter and column. The schema is the one place the dialects differ: each store
//! gives its migrations for both ([`Schema`]).
//!
//! Every call blocks (SQLite on its connection, PostgreSQL on a pooled connection); async code calls
//! through `tokio::task::spawn_blocking`, never from a runtime worker.

pub mod lease;
pub mod postgres;
pub mod server;
pub mod sqlite;

use std::fmt;

/// Which SQL the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the embedded default of a single node).
    Sqlite,
    /// PostgreSQL (the shared state of many nodes).
    Postgres,
}

/// One parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans as 0/1).
    Int(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// Parameters for a query: `db_params![a, b]` (each converted with `Value::from`).
#[macro_export]
macro_rules! db_params {
    ($($v:expr),* $(,)?) => { &[$($crate::db::Value::from($v)),*] };
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::other(format!("no column {i}")))
    }

    /// Column `i` as an integer (NULL is an error).
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        self.opt_int(i)?
            .ok_or_else(|| DbError::other(format!("column {i} is NULL")))
    }

    /// Column `i` as an integer or NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(DbError::other(format!(
                "column {i}: an integer expected, {other:?} found"
            ))),
        }
    }

    /// Column `i` as a boolean (non-zero).
    pub fn bool(&self, i: usize) -> Result<bool, DbError> {
        Ok(self.int(i)? != 0)
    }

    /// Column `i` as a double (integers widen).
    pub fn real(&self, i: usize) -> Result<f64, DbError> {
        match self.at(i)? {
            Value::Real(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            other => Err(DbError::other(format!(
                "column {i}: a number expected, {other:?} found"
            ))),
        }
    }

    /// Column `i` as text (NULL is an error).
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?
            .ok_or_else(|| DbError::other(format!("column {i} is NULL")))
    }

    /// Column `i` as text or NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(DbError::other(format!(
                "column {i}: text expected, {other:?} found"
            ))),
        }
    }
}

/// What kind of failure: callers retry [`DbErrorKind::Unavailable`] and report a
/// [`DbErrorKind::Conflict`] as the user's mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database cannot be reached, is busy or full: worth retrying.
    Unavailable,
    /// A uniqueness or other constraint refused the write.
    Conflict,
    /// Anything else (a bug, a schema from a newer build).
    Other,
}

/// A database call failed. The message never carries the connection URL's password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    /// What kind of failure.
    pub kind: DbErrorKind,
    /// What went wrong.
    pub message: String,
}

impl DbError {
    /// An error of kind [`DbErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> DbError {
        DbError {
            kind: DbErrorKind::Other,
            message: message.into(),
        }
    }

    /// The same error, its message prefixed with what was being done.
    pub fn context(self, what: &str) -> DbError {
        DbError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

/// Statements inside one transaction.
pub trait Tx {
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs a query; its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs several statements without parameters (a migration).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
}

/// A store's schema: the same tables for each dialect, as numbered migrations applied once each.
/// On PostgreSQL every store's tables share one database, so table names are unique across
/// stores (`tests/health.rs` runs the service on one PostgreSQL database).
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The store's name (PostgreSQL keeps one version per name in `qly_schema`).
    pub name: &'static str,
    /// SQLite migrations (one file per store; `PRAGMA user_version` counts them).
    pub sqlite: &'static [&'static str],
    /// PostgreSQL migrations.
    pub postgres: &'static [&'static str],
}

/// A database.
pub trait Db: Send + Sync + 'static {
    /// Its dialect.
    fn dialect(&self) -> Dialect;
    /// Runs `f` in one transaction, committed when `f` returns `Ok`, rolled back otherwise.
    fn run(
        &self,
        f: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + Send),
    ) -> Result<(), DbError>;
    /// Applies the migrations of `schema` not yet applied (several nodes starting at once apply
    /// each once).
    fn migrate(&self, schema: &Schema) -> Result<(), DbError>;
    /// Where it is, for messages (never a password).
    fn describe(&self) -> String;
}

impl fmt::Debug for dyn Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Db({})", self.describe())
    }
}

/// Runs `f` in one transaction and returns what it returns.
pub fn transaction<T: Send>(
    db: &dyn Db,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T, DbError> + Send,
) -> Result<T, DbError> {
    let mut out = None;
    db.run(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| DbError::other("the transaction returned nothing"))
}

/// Runs `f` in one transaction for a store whose errors are its own (`E`): an error from `f`
/// rolls the transaction back and comes out as it was; the database's own errors convert.
pub fn try_transaction<T: Send, E: From<DbError> + Send>(
    db: &dyn Db,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T, E> + Send,
) -> Result<T, E> {
    let mut failed = None;
    let out = transaction(db, |tx| {
        f(tx).map_err(|e| {
            failed = Some(e);
            DbError::other("rolled back")
        })
    });
    match (out, failed) {
        (_, Some(e)) => Err(e),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(e.into()),
    }
}

/// A query's rows, in a transaction of its own.
pub fn query(db: &dyn Db, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
    transaction(db, |tx| tx.query(sql, params))
}

/// A statement, in a transaction of its own; the rows it changed.
pub fn execute(db: &dyn Db, sql: &str, params: &[Value]) -> Result<u64, DbError> {
    transaction(db, |tx| tx.execute(sql, params))
}

/// SQLite's numbered parameters (`?1`) in PostgreSQL's form (`$1`); quoted text is left alone.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    out.push(c);
                } else if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
                    out.push('$');
                } else {
                    out.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_postgres_ones_outside_quotes() {
        assert_eq!(
            postgres_sql(
                "SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d IN (?2, ?10) AND e = \"?3\""
            ),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d IN ($2, $10) AND e = \"?3\""
        );
    }
}
