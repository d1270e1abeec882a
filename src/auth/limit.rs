//! Login limiter: at most [`MAX_FAILURES`] failed logins per username **from one address**, and at
//! most [`MAX_ADDRESS_FAILURES`] per address over all usernames, in a sliding [`WINDOW`]; beyond
//! that, attempts are refused before the password is checked. A user locked out from one address
//! (someone guessing behind a shared NAT, or a colleague's typos) still logs in from another, and a
//! colleague behind the same address is not locked out by someone else's failures until the
//! address's own, much higher, ceiling.
//!
//! The attempts live in the auth database (`login_attempts`), so every node of a cluster counts the
//! same guesses and a restart forgets nothing. Time is the database's: the injected clock for
//! SQLite (one node), PostgreSQL's own clock for many nodes (theirs may disagree).
//!
//! An attempt counts as a failure from the moment it begins, so parallel guesses cannot slip past
//! the count (on PostgreSQL, the attempts of one username and address are serialised by an
//! advisory lock); a success takes its own entry back and clears that user's history from that
//! address. Rows older than the window are deleted as attempts come.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::AuthError;
use crate::clock::Clock;
use crate::db::{self, Db, DbError, Dialect, Tx};
use crate::db_params;

/// Failures allowed per username from one address in one window.
pub const MAX_FAILURES: usize = 5;
/// Failures allowed per address (all usernames) in one window.
pub const MAX_ADDRESS_FAILURES: usize = 50;
/// The sliding window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Counts failed logins per (username, address) and per address, in the auth database.
#[derive(Clone)]
pub struct LoginLimiter {
    db: Arc<dyn Db>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginLimiter({})", self.db.describe())
    }
}

/// An attempt in progress (counted as a failure until [`LoginLimiter::succeeded`]).
#[derive(Debug)]
pub struct Attempt {
    id: i64,
    username: String,
    address: String,
}

fn window_ms() -> i64 {
    WINDOW.as_millis() as i64
}

/// How long until the `limit`-th newest of these rows leaves the window; `None` below the limit.
fn wait(
    tx: &mut dyn Tx,
    sql: &str,
    key: &[db::Value],
    now: i64,
    limit: usize,
) -> Result<Option<Duration>, DbError> {
    let mut params = key.to_vec();
    params.push((now - window_ms()).into());
    params.push(((limit - 1) as i64).into());
    let rows = tx.query(sql, &params)?;
    Ok(match rows.first() {
        None => None,
        Some(r) => {
            let oldest = r.int(0)?;
            let left = (oldest + window_ms() - now).max(1_000);
            Some(Duration::from_millis(left as u64))
        }
    })
}

impl LoginLimiter {
    /// A limiter on the auth database `db` (its `login_attempts` table); `clock` is its time on SQLite.
    pub fn new(db: Arc<dyn Db>, clock: Arc<dyn Clock>) -> Self {
        LoginLimiter { db, clock }
    }

    fn now_ms(&self, tx: &mut dyn Tx) -> Result<i64, DbError> {
        crate::db::lease::database_now_ms(tx, self.db.dialect(), self.clock.as_ref())
    }

    /// Starts an attempt, or says how long to wait when the username is limited from this address
    /// or the address is limited.
    pub fn begin(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Result<Attempt, Duration>, AuthError> {
        let address = ip.map(|a| a.to_string()).unwrap_or_default();
        let out = db::transaction(self.db.as_ref(), |tx| {
            if self.db.dialect() == Dialect::Postgres {
                tx.query(
                    "SELECT 1 FROM pg_advisory_xact_lock(hashtext(?1))",
                    db_params![format!("login {username} {address}")],
                )?;
            }
            let now = self.now_ms(tx)?;
            tx.execute(
                "DELETE FROM login_attempts WHERE at_ms <= ?1",
                db_params![now - window_ms()],
            )?;
            let user_wait = wait(
                tx,
                "SELECT at_ms FROM login_attempts WHERE username = ?1 AND address = ?2 AND user_cleared = 0 \
                 AND at_ms > ?3 ORDER BY at_ms DESC, id DESC LIMIT 1 OFFSET ?4",
                db_params![username, &address],
                now,
                MAX_FAILURES,
            )?;
            let address_wait = if address.is_empty() {
                None
            } else {
                wait(
                    tx,
                    "SELECT at_ms FROM login_attempts WHERE address = ?1 AND at_ms > ?2 \
                     ORDER BY at_ms DESC, id DESC LIMIT 1 OFFSET ?3",
                    db_params![&address],
                    now,
                    MAX_ADDRESS_FAILURES,
                )?
            };
            if let Some(w) = user_wait.max(address_wait) {
                return Ok(Err(w));
            }
            let id = tx
                .query(
                    "INSERT INTO login_attempts (username, address, at_ms) VALUES (?1, ?2, ?3) RETURNING id",
                    db_params![username, &address, now],
                )?
                .first()
                .ok_or_else(|| DbError::other("INSERT … RETURNING gave no row"))?
                .int(0)?;
            Ok(Ok(Attempt {
                id,
                username: username.to_owned(),
                address: address.clone(),
            }))
        })?;
        Ok(out)
    }

    /// The attempt succeeded: forget the user's failures from this address and this attempt's
    /// own entry.
    pub fn succeeded(&self, a: Attempt) -> Result<(), AuthError> {
        db::transaction(self.db.as_ref(), |tx| {
            tx.execute("DELETE FROM login_attempts WHERE id = ?1", db_params![a.id])?;
            tx.execute(
                "UPDATE login_attempts SET user_cleared = 1 WHERE username = ?1 AND address = ?2",
                db_params![&a.username, &a.address],
            )
        })?;
        Ok(())
    }
}

/// Whole seconds for `Retry-After`, rounded up.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What every backend must do for the limiter (no time passes here; the window's sliding is
/// tested on SQLite with a manual clock in `web/auth_tests.rs`).
#[cfg(test)]
pub(crate) fn conformance(lim: &LoginLimiter) {
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let begin = |u: &str, ip| lim.begin(u, ip).unwrap();
    for _ in 0..MAX_FAILURES {
        begin("duty", Some(a)).unwrap();
    }
    let wait = begin("duty", Some(a)).unwrap_err();
    assert!(
        wait > WINDOW - Duration::from_secs(60) && wait <= WINDOW,
        "{wait:?}"
    );
    lim.succeeded(begin("duty", Some(b)).unwrap()).unwrap();
    lim.succeeded(begin("colleague", Some(a)).unwrap()).unwrap();
    assert!(
        begin("duty", Some(a)).is_err(),
        "a success elsewhere clears nothing here"
    );
    for i in 0..(MAX_ADDRESS_FAILURES - MAX_FAILURES) {
        begin(&format!("guess-{i}"), Some(a)).unwrap();
    }
    assert!(
        begin("colleague", Some(a)).is_err(),
        "the address's ceiling"
    );
    assert!(begin("colleague", Some(b)).is_ok());
    // Unknown addresses count per user only.
    for _ in 0..MAX_FAILURES {
        begin("nobody", None).unwrap();
    }
    assert!(begin("nobody", None).is_err());
    // A success clears the user's failures from that address (the address keeps its own).
    let c: IpAddr = "10.0.0.3".parse().unwrap();
    for _ in 0..MAX_FAILURES - 1 {
        begin("typo", Some(c)).unwrap();
    }
    lim.succeeded(begin("typo", Some(c)).unwrap()).unwrap();
    for _ in 0..MAX_FAILURES {
        begin("typo", Some(c)).unwrap();
    }
    assert!(begin("typo", Some(c)).is_err());
}
