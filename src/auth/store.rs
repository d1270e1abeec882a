//! The auth database: users, sessions, API tokens and the audit log in one SQLite file (WAL).
//!
//! One connection behind a `Mutex`; every call blocks for well under a millisecond, so async code
//! goes through [`super::Auth::blocking`]. Tokens are stored only as their SHA-256; a session ends
//! after `idle` unused or `max` after login, whichever comes first. `last_seen_ms` / `last_used_ms`
//! are written at most once a minute per session or token, not on every request.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};
use serde::Serialize;

use super::config::{AuthConfig, SeedPassword};
use super::{
    API_TOKEN_PREFIX, AuthError, AuthVia, Principal, Role, hash_password, ms, new_token, sha256_hex,
};
use crate::clock::Clock;
use crate::config::Secret;

/// How often at most `last_seen_ms` / `last_used_ms` are written.
const TOUCH_EVERY_MS: i64 = 60_000;

const MIGRATIONS: &[&str] = &["
    CREATE TABLE users (
        username      TEXT PRIMARY KEY,
        display_name  TEXT NOT NULL,
        role          TEXT NOT NULL,
        area          TEXT,
        password_hash TEXT NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_ms    INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        username     TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        created_ms   INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        expires_ms   INTEGER NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(username);
    CREATE TABLE api_tokens (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        username     TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        created_ms   INTEGER NOT NULL,
        last_used_ms INTEGER,
        revoked      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX api_tokens_user ON api_tokens(username);
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        at_ms    INTEGER NOT NULL,
        username TEXT NOT NULL,
        role     TEXT NOT NULL,
        action   TEXT NOT NULL,
        target   TEXT NOT NULL,
        detail   TEXT NOT NULL,
        remote   TEXT
    );
    CREATE INDEX audit_at ON audit(at_ms);
    CREATE INDEX audit_user ON audit(username, at_ms);
"];

/// Session lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login however much it is used.
    pub max: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(12 * 3600),
            max: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A user as the API shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// zh-CN role label.
    pub role_zh: &'static str,
    /// Jurisdiction prefix.
    pub area: Option<String>,
    /// A disabled user cannot log in and their tokens stop working.
    pub disabled: bool,
    /// Unix ms.
    pub created_ms: i64,
}

/// An API token's metadata (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    /// Id, for revoking.
    pub id: i64,
    /// Name given at creation (`vms-bridge`).
    pub name: String,
    /// Owner.
    pub username: String,
    /// Unix ms.
    pub created_ms: i64,
    /// Unix ms, to the minute; `None` when never used.
    pub last_used_ms: Option<i64>,
    /// Revoked tokens stay listed.
    pub revoked: bool,
}

/// One audit row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Unix ms.
    pub at_ms: i64,
    /// Who (for failed logins: the name tried).
    pub username: String,
    /// Their role then (empty when unknown).
    pub role: String,
    /// `POST /api/alerts/{id}/transition`, `login`, `login_failed` …
    pub action: String,
    /// The actual path or object.
    pub target: String,
    /// JSON details (status, changed fields; never a password).
    pub detail: serde_json::Value,
    /// Remote address when known.
    pub remote: Option<String>,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    /// Row id, increasing.
    pub id: i64,
    /// Unix ms.
    pub at_ms: i64,
    /// Who.
    pub username: String,
    /// Their role then.
    pub role: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// JSON details.
    pub detail: serde_json::Value,
    /// Remote address when known.
    pub remote: Option<String>,
}

/// Filter for [`AuthStore::audit_query`]; rows come newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At or after (unix ms).
    pub since_ms: Option<i64>,
    /// Before (unix ms).
    pub until_ms: Option<i64>,
    /// Only this user.
    pub username: Option<String>,
    /// At most this many rows.
    pub limit: usize,
}

/// A new user (password already hashed).
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name (checked by the caller).
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Area (checked by the caller; required for dispatchers).
    pub area: Option<String>,
    /// Argon2 PHC string.
    pub password_hash: Secret,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// New display name.
    pub display_name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New area (`Some(None)` clears it).
    pub area: Option<Option<String>>,
    /// New password hash; ends the user's other sessions.
    pub password_hash: Option<Secret>,
    /// Disable (ends all sessions) or enable.
    pub disabled: Option<bool>,
}

/// The auth database (cheap to clone).
#[derive(Clone)]
pub struct AuthStore {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    policy: SessionPolicy,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn corrupt(what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("bad {what}: {v:?}").into(),
    )
}

const USER_COLUMNS: &str = "username, display_name, role, area, disabled, created_ms";

/// Reads [`USER_COLUMNS`] starting at column `at`.
fn user_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<UserRow> {
    let role: String = r.get(at + 2)?;
    let role = Role::parse(&role).ok_or_else(|| corrupt("role", &role))?;
    Ok(UserRow {
        username: r.get(at)?,
        display_name: r.get(at + 1)?,
        role,
        role_zh: role.label_zh(),
        area: r.get(at + 3)?,
        disabled: r.get(at + 4)?,
        created_ms: r.get(at + 5)?,
    })
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        username: r.get(2)?,
        created_ms: r.get(3)?,
        last_used_ms: r.get(4)?,
        revoked: r.get(5)?,
    })
}

fn principal(u: UserRow, via: AuthVia) -> Principal {
    Principal {
        username: u.username,
        display_name: u.display_name,
        role: u.role,
        area: u.area,
        via,
    }
}

fn get_user(tx: &Connection, username: &str) -> Result<UserRow, AuthError> {
    tx.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
        [username],
        |r| user_from_row(r, 0),
    )
    .optional()?
    .ok_or_else(|| AuthError::NotFound {
        what: "user",
        id: username.to_owned(),
    })
}

/// Refuses a change that leaves no enabled admin.
fn keep_an_admin(
    tx: &Transaction<'_>,
    before: &UserRow,
    still_admin: bool,
) -> Result<(), AuthError> {
    if before.role != Role::Admin || before.disabled || still_admin {
        return Ok(());
    }
    let others: i64 = tx.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND username <> ?1",
        [&before.username],
        |r| r.get(0),
    )?;
    if others == 0 {
        return Err(AuthError::LastAdmin(before.username.clone()));
    }
    Ok(())
}

impl AuthStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(
        path: &Path,
        clock: Arc<dyn Clock>,
        policy: SessionPolicy,
    ) -> Result<AuthStore, AuthError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = crate::sqlite::open_durable(path)?;
        crate::sqlite::migrate(&mut conn, MIGRATIONS)?;
        Ok(AuthStore {
            conn: Arc::new(Mutex::new(conn)),
            clock,
            policy,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        crate::sync::lock(&self.conn)
    }

    /// Wall-clock now in unix ms.
    pub fn now_ms(&self) -> i64 {
        crate::time::unix_ms(self.clock.wall())
    }

    /// The session lifetimes.
    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Creates the configured users that do not exist yet (existing ones are left alone: the
    /// database is the truth after the first start). Returns the names created.
    pub fn seed(&self, config: &AuthConfig) -> Result<Vec<String>, AuthError> {
        let mut created = Vec::new();
        for u in &config.users {
            if self.user(&u.username)?.is_some() {
                tracing::debug!(username = %u.username, "seed user exists; left as stored");
                continue;
            }
            let password_hash = match &u.password {
                SeedPassword::Hash(h) => h.clone(),
                SeedPassword::Plain(p) => Secret::new(hash_password(p.expose())?),
            };
            let new = NewUser {
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                role: u.role,
                area: u.area.clone(),
                password_hash,
            };
            match self.create_user(&new) {
                Ok(_) => {
                    tracing::info!(username = %u.username, role = %u.role, "created user from configuration");
                    created.push(u.username.clone());
                }
                // Another process seeded it between our check and insert: fine.
                Err(AuthError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let admins: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
            [],
            |r| r.get(0),
        )?;
        if admins == 0 {
            tracing::warn!("no enabled admin user: nobody can manage users; add one under [auth]");
        }
        Ok(created)
    }

    /// One user.
    pub fn user(&self, username: &str) -> Result<Option<UserRow>, AuthError> {
        match get_user(&self.conn(), username) {
            Ok(u) => Ok(Some(u)),
            Err(AuthError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One user and their password hash (for login).
    pub fn user_with_hash(&self, username: &str) -> Result<Option<(UserRow, String)>, AuthError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"),
                [username],
                |r| Ok((user_from_row(r, 0)?, r.get::<_, String>(6)?)),
            )
            .optional()?)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRow>, AuthError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))?;
        let rows = st.query_map([], |r| user_from_row(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates a user; [`AuthError::Exists`] when the name is taken.
    pub fn create_user(&self, u: &NewUser) -> Result<UserRow, AuthError> {
        let now = self.now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM users WHERE username = ?1",
                [&u.username],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Err(AuthError::Exists(u.username.clone()));
        }
        tx.execute(
            "INSERT INTO users (username, display_name, role, area, password_hash, disabled, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            params![
                u.username,
                u.display_name,
                u.role.as_str(),
                u.area,
                u.password_hash.expose(),
                now
            ],
        )?;
        let row = get_user(&tx, &u.username)?;
        tx.commit()?;
        Ok(row)
    }

    /// Applies `change` in one transaction. Refuses to leave no enabled admin
    /// ([`AuthError::LastAdmin`]) or a dispatcher without an area. A new password ends the user's
    /// sessions except `keep_session` (the caller's own, by token hash); disabling ends them all.
    pub fn update_user(
        &self,
        username: &str,
        change: &UserChange,
        keep_session: Option<&str>,
    ) -> Result<UserRow, AuthError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let before = get_user(&tx, username)?;
        let role = change.role.unwrap_or(before.role);
        let disabled = change.disabled.unwrap_or(before.disabled);
        let area = change.area.clone().unwrap_or_else(|| before.area.clone());
        if role == Role::Dispatcher && area.is_none() {
            return Err(AuthError::Rejected {
                field: "area".to_owned(),
                message: "a dispatcher needs an area".to_owned(),
            });
        }
        keep_an_admin(&tx, &before, role == Role::Admin && !disabled)?;
        tx.execute(
            "UPDATE users SET display_name = ?2, role = ?3, area = ?4, disabled = ?5 WHERE username = ?1",
            params![
                username,
                change.display_name.as_ref().unwrap_or(&before.display_name),
                role.as_str(),
                area,
                disabled
            ],
        )?;
        if let Some(h) = &change.password_hash {
            tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE username = ?1",
                params![username, h.expose()],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE username = ?1 AND token_sha256 IS NOT ?2",
                params![username, keep_session],
            )?;
        }
        if disabled {
            tx.execute("DELETE FROM sessions WHERE username = ?1", [username])?;
        }
        let after = get_user(&tx, username)?;
        tx.commit()?;
        Ok(after)
    }

    /// Deletes a user with their sessions and API tokens; refuses the last enabled admin.
    pub fn delete_user(&self, username: &str) -> Result<(), AuthError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let before = get_user(&tx, username)?;
        keep_an_admin(&tx, &before, false)?;
        // Cascades to sessions and api_tokens.
        tx.execute("DELETE FROM users WHERE username = ?1", [username])?;
        tx.commit()?;
        Ok(())
    }

    /// Opens a session for `username`: the token (to hand out once) and its absolute expiry.
    /// Also removes sessions that have ended, so the table does not grow.
    pub fn create_session(&self, username: &str) -> Result<(Secret, i64), AuthError> {
        let now = self.now_ms();
        let token = new_token();
        let expires = now.saturating_add(ms(self.policy.max));
        let conn = self.conn();
        conn.execute(
            "DELETE FROM sessions WHERE expires_ms <= ?1 OR last_seen_ms <= ?2",
            params![now, now.saturating_sub(ms(self.policy.idle))],
        )?;
        conn.execute(
            "INSERT INTO sessions (token_sha256, username, created_ms, last_seen_ms, expires_ms) \
             VALUES (?1, ?2, ?3, ?3, ?4)",
            params![sha256_hex(&token), username, now, expires],
        )?;
        Ok((Secret::new(token), expires))
    }

    /// Ends the session holding `token`; false when there was none.
    pub fn end_session(&self, token: &str) -> Result<bool, AuthError> {
        let n = self.conn().execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            [sha256_hex(token)],
        )?;
        Ok(n > 0)
    }

    /// Who holds `token`: `None` when unknown, ended, revoked, or the user is disabled.
    pub fn resolve(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let now = self.now_ms();
        let hash = sha256_hex(token);
        let conn = self.conn();
        if token.starts_with(API_TOKEN_PREFIX) {
            let found = conn
                .query_row(
                    &format!(
                        "SELECT t.id, t.name, t.last_used_ms, {} FROM api_tokens t \
                         JOIN users u ON u.username = t.username \
                         WHERE t.token_sha256 = ?1 AND t.revoked = 0",
                        user_columns_as("u")
                    ),
                    [&hash],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            user_from_row(r, 3)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, name, last_used, user)) = found else {
                return Ok(None);
            };
            if user.disabled {
                return Ok(None);
            }
            if last_used.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
                // Best effort: a full disk must not lock everyone out of the command hall.
                if let Err(e) = conn.execute(
                    "UPDATE api_tokens SET last_used_ms = ?2 WHERE id = ?1",
                    params![id, now],
                ) {
                    tracing::warn!(error = %e, token = %name, "API token last-used time not written");
                }
            }
            return Ok(Some(principal(user, AuthVia::ApiToken { name })));
        }
        let found = conn
            .query_row(
                &format!(
                    "SELECT s.last_seen_ms, s.expires_ms, {} FROM sessions s \
                     JOIN users u ON u.username = s.username WHERE s.token_sha256 = ?1",
                    user_columns_as("u")
                ),
                [&hash],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        user_from_row(r, 2)?,
                    ))
                },
            )
            .optional()?;
        let Some((last_seen, expires, user)) = found else {
            return Ok(None);
        };
        if now >= expires || now - last_seen >= ms(self.policy.idle) {
            // An expired session is refused whether or not its row can be deleted now.
            if let Err(e) = conn.execute("DELETE FROM sessions WHERE token_sha256 = ?1", [&hash]) {
                tracing::warn!(error = %e, "expired session not deleted");
            }
            return Ok(None);
        }
        if user.disabled {
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY_MS {
            // Best effort: a full disk must not lock everyone out of the command hall.
            if let Err(e) = conn.execute(
                "UPDATE sessions SET last_seen_ms = ?2 WHERE token_sha256 = ?1",
                params![hash, now],
            ) {
                tracing::warn!(error = %e, username = %user.username, "session last-seen time not written");
            }
        }
        Ok(Some(principal(user, AuthVia::Session)))
    }

    /// Creates an API token named `name` for `username`: its row and the token (shown once).
    pub fn create_token(
        &self,
        username: &str,
        name: &str,
    ) -> Result<(TokenRow, Secret), AuthError> {
        let now = self.now_ms();
        let token = format!("{API_TOKEN_PREFIX}{}", new_token());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        get_user(&tx, username)?;
        tx.execute(
            "INSERT INTO api_tokens (name, token_sha256, username, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, sha256_hex(&token), username, now],
        )?;
        let id = tx.last_insert_rowid();
        let row = tx.query_row(
            "SELECT id, name, username, created_ms, last_used_ms, revoked FROM api_tokens WHERE id = ?1",
            [id],
            token_from_row,
        )?;
        tx.commit()?;
        Ok((row, Secret::new(token)))
    }

    /// The user's API tokens (metadata only), newest first.
    pub fn tokens(&self, username: &str) -> Result<Vec<TokenRow>, AuthError> {
        let conn = self.conn();
        get_user(&conn, username)?;
        let mut st = conn.prepare(
            "SELECT id, name, username, created_ms, last_used_ms, revoked FROM api_tokens \
             WHERE username = ?1 ORDER BY id DESC",
        )?;
        let rows = st.query_map([username], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes one of the user's tokens (it stays listed, marked revoked).
    pub fn revoke_token(&self, username: &str, id: i64) -> Result<TokenRow, AuthError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE api_tokens SET revoked = 1 WHERE id = ?1 AND username = ?2",
            params![id, username],
        )?;
        if n == 0 {
            return Err(AuthError::NotFound {
                what: "token",
                id: id.to_string(),
            });
        }
        Ok(conn.query_row(
            "SELECT id, name, username, created_ms, last_used_ms, revoked FROM api_tokens WHERE id = ?1",
            [id],
            token_from_row,
        )?)
    }

    /// Appends an audit row.
    pub fn audit(&self, e: &AuditEntry) -> Result<(), AuthError> {
        self.conn().execute(
            "INSERT INTO audit (at_ms, username, role, action, target, detail, remote) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                e.at_ms,
                e.username,
                e.role,
                e.action,
                e.target,
                e.detail.to_string(),
                e.remote
            ],
        )?;
        Ok(())
    }

    /// Audit rows matching `q`, newest first.
    pub fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, AuthError> {
        let mut sql = String::from(
            "SELECT id, at_ms, username, role, action, target, detail, remote FROM audit WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(s) = q.since_ms {
            args.push(Value::Integer(s));
            sql.push_str(&format!(" AND at_ms >= ?{}", args.len()));
        }
        if let Some(u) = q.until_ms {
            args.push(Value::Integer(u));
            sql.push_str(&format!(" AND at_ms < ?{}", args.len()));
        }
        if let Some(name) = &q.username {
            args.push(Value::Text(name.clone()));
            sql.push_str(&format!(" AND username = ?{}", args.len()));
        }
        args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
        let conn = self.conn();
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(args), |r| {
            let detail: String = r.get(6)?;
            Ok(AuditRow {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                username: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: serde_json::from_str(&detail).map_err(|_| corrupt("detail", &detail))?,
                remote: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn user_columns_as(alias: &str) -> String {
    USER_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
