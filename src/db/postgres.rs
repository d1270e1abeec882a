//! [`Db`] on PostgreSQL: a pool of synchronous connections (the `postgres` crate, tokio-postgres
//! underneath), every store's tables in one database, each store's schema version in `qly_schema`.

use std::error::Error as StdError;
use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Config, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::{Db, DbError, DbErrorKind, Dialect, Row, Schema, Tx, Value, postgres_sql};

/// Serialises schema changes of nodes starting together (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x716c_795f_7363_6865; // "qly_sche"

/// A PostgreSQL database.
pub struct PgDb {
    /// Always `Some` until dropped (taken out to be closed off the runtime).
    pool: Option<r2d2::Pool<PostgresConnectionManager<NoTls>>>,
    described: String,
}

/// Runs `f` where the synchronous client may block: the synchronous client drives a runtime of
/// its own, which must not start (nor close a connection) on a thread that drives async tasks,
/// or it panics. From inside a runtime, `f` runs on a thread of its own (a few tens of
/// microseconds, against a round trip to the database).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, DbError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("qly-pg-call".into())
            .spawn_scoped(s, f)
            .map_err(|e| DbError {
                kind: DbErrorKind::Unavailable,
                message: format!("no thread for the database call: {e}"),
            })?;
        Ok(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take()
            && let Err(e) = off_runtime(move || drop(pool))
        {
            tracing::warn!(error = %e, "PostgreSQL connections not closed cleanly");
        }
    }
}

impl PgDb {
    /// Connects to `url` (`postgres://user:password@host:port/db`) with at most `pool_size`
    /// connections. Errors name the host and database, never the password.
    pub fn connect(url: &str, pool_size: u32) -> Result<PgDb, DbError> {
        // The URL itself is never repeated: it may hold the password.
        let mut config = Config::from_str(url)
            .map_err(|e| DbError::other(format!("the PostgreSQL URL is not valid: {e}")))?;
        // A node cut off from the database must not hold locks or wait for hours: connections
        // time out, dead peers are noticed within a minute, and the server ends statements, lock
        // waits and transactions left open (unless the URL says otherwise). Every transaction of
        // ours lasts milliseconds; one idle for 10 s belongs to a paused or stuck process, and its
        // locks (a fenced write's share lock on a camera lease) must not outlive a lease by much.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_options().is_none() {
            config.options(
                "-c lock_timeout=5s -c statement_timeout=60s -c idle_in_transaction_session_timeout=10s",
            );
        }
        let described = describe(&config);
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = off_runtime(|| {
            r2d2::Pool::builder()
                .max_size(pool_size.max(1))
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(5))
                .build(manager)
        })?
        .map_err(|e| DbError {
            kind: DbErrorKind::Unavailable,
            message: format!("connecting to {described}: {e}"),
        })?;
        Ok(PgDb {
            pool: Some(pool),
            described,
        })
    }
}

fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL {}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("")
    )
}

fn error(e: postgres::Error) -> DbError {
    let kind = match e.code() {
        Some(c) if c.code().starts_with("23") => DbErrorKind::Conflict,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::DISK_FULL
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW =>
        {
            DbErrorKind::Unavailable
        }
        Some(_) => DbErrorKind::Other,
        // No SQL state: the connection (closed, refused, timed out).
        None => DbErrorKind::Unavailable,
    };
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    DbError { kind, message }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => Err(format!("a number given for a {ty} parameter").into()),
            },
            Value::Text(v) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                    v.to_sql(ty, out)
                }
                _ => Err(format!("text given for a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn column(r: &postgres::Row, i: usize) -> Result<Value, DbError> {
    let ty = r.columns()[i].type_().clone();
    let get = |e: postgres::Error| DbError::other(format!("column {i}: {e}"));
    Ok(match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(get)?.into(),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)
            .map_err(get)?
            .map(i64::from)
            .into(),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)
            .map_err(get)?
            .map(i64::from)
            .into(),
        Type::BOOL => r.try_get::<_, Option<bool>>(i).map_err(get)?.into(),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map_err(get)?.into(),
        Type::FLOAT4 => r
            .try_get::<_, Option<f32>>(i)
            .map_err(get)?
            .map(f64::from)
            .into(),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            r.try_get::<_, Option<String>>(i).map_err(get)?.into()
        }
        other => {
            return Err(DbError::other(format!(
                "column {i} has type {other}; cast it to BIGINT, DOUBLE PRECISION or TEXT"
            )));
        }
    })
}

struct PgTx<'a, 'b>(&'a mut postgres::Transaction<'b>);

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Tx for PgTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.0
            .execute(postgres_sql(sql).as_str(), &refs(params))
            .map_err(error)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.batch_execute(sql).map_err(error)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let rows = self
            .0
            .query(postgres_sql(sql).as_str(), &refs(params))
            .map_err(error)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| column(r, i))
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
    }
}

impl PgDb {
    fn run_here(
        &self,
        f: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + Send),
    ) -> Result<(), DbError> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| DbError::other("the database is closed"))?;
        let mut client = pool.get().map_err(|e| DbError {
            kind: DbErrorKind::Unavailable,
            message: format!("{}: no connection: {e}", self.described),
        })?;
        let mut tx = client.transaction().map_err(error)?;
        f(&mut PgTx(&mut tx))?;
        tx.commit().map_err(error)
    }
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn run(
        &self,
        f: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + Send),
    ) -> Result<(), DbError> {
        off_runtime(|| self.run_here(f))?
    }

    fn migrate(&self, schema: &Schema) -> Result<(), DbError> {
        let known = schema.postgres.len() as i64;
        self.run(&mut |tx| {
            tx.execute(
                "CREATE TABLE IF NOT EXISTS qly_schema (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
                &[],
            )?;
            Ok(())
        })
        .or_else(|e| match e.kind {
            // Two nodes creating the table at once: one wins, the other finds it there.
            DbErrorKind::Conflict => Ok(()),
            _ => Err(e),
        })?;
        self.run(&mut |tx| {
            tx.query(
                "SELECT 1 FROM pg_advisory_xact_lock(?1)",
                &[Value::Int(MIGRATION_LOCK)],
            )?;
            let found = tx
                .query(
                    "SELECT version FROM qly_schema WHERE name = ?1",
                    &[schema.name.into()],
                )?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            if found > known {
                return Err(DbError::other(format!(
                    "{} schema version {found} is newer than this build knows ({known}); not touching it",
                    schema.name
                )));
            }
            for (i, migration) in schema.postgres.iter().enumerate().skip(found as usize) {
                tx.batch(migration)
                    .map_err(|e| e.context(&format!("{} migration {}", schema.name, i + 1)))?;
            }
            tx.execute(
                "INSERT INTO qly_schema (name, version) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                &[schema.name.into(), Value::Int(known.max(found))],
            )?;
            Ok(())
        })
        .map_err(|e| e.context(&self.described))
    }

    fn describe(&self) -> String {
        self.described.clone()
    }
}
