//! Auth: who may do what, and a record of what they did.
//!
//! In: logins (username + password), a bearer token or the `qly_session` cookie on every guarded
//! request, user administration from admins, and seed users from the `[auth]` configuration.
//! Out: a [`Principal`] for each token ([`Auth::resolve`]), users, sessions and audit rows. The HTTP
//! side (the guard in front of every route and the users API) is in `web/guard.rs` and
//! `web/users_api.rs`: it puts the principal in each request's extensions, answers 401 / 403 / 429,
//! and writes one audit row per state-changing request that succeeded.
//!
//! Users, sessions, API tokens and the audit log live in their own SQLite file ([`AuthStore`]).
//! Tokens are 32 random bytes shown to the client once and stored only as SHA-256; API tokens
//! start with `qly_`. Passwords are argon2id PHC strings. The database is the truth after the first
//! start: configuration only creates users that do not exist yet.
//!
//! Blocking work: SQLite calls run on tokio's blocking pool and take turns on one connection behind
//! a `Mutex` (each call takes well under a millisecond). Argon2 (≈19 MiB and tens of milliseconds
//! per hash) runs there too, at most [`HASH_SLOTS`] at once; when every slot is busy further logins
//! wait for one — nothing is dropped, and the login limiter bounds how many a client can queue.
//! The limiter ([`LoginLimiter`]) keeps its attempts in the auth database: every node counts the
//! same guesses, and a restart forgets nothing.

pub mod config;
pub mod limit;
pub mod store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::Secret;

pub use config::{AuthConfig, RawAuth, RawUser, SeedPassword, SeedUser};
pub use limit::LoginLimiter;
pub use store::{AuditEntry, AuditQuery, AuditRow, AuthStore, SessionPolicy, TokenRow, UserRow};

/// Argon2 hashes allowed to run at once (each holds ≈19 MiB).
pub const HASH_SLOTS: usize = 4;
/// Shortest password accepted anywhere (configuration and API).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (bounds the work a request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Prefix that makes API tokens recognisable (in logs, secret scanners).
pub const API_TOKEN_PREFIX: &str = "qly_";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "qly_session";

/// What a user is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Command-hall duty officer: acknowledges, judges and dispatches alerts.
    Operator,
    /// A police station: sees and handles only the alerts of its jurisdiction.
    Dispatcher,
    /// Cameras, stream health, delivery and metrics.
    Engineer,
    /// Everything, including users, rules and zones.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::Operator,
        Role::Dispatcher,
        Role::Engineer,
        Role::Admin,
    ];

    /// The snake_case name used in JSON, configuration and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Dispatcher => "dispatcher",
            Role::Engineer => "engineer",
            Role::Admin => "admin",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The zh-CN label shown in the UI.
    pub fn label_zh(self) -> &'static str {
        match self {
            Role::Operator => "值班员",
            Role::Dispatcher => "派出所",
            Role::Engineer => "运维工程师",
            Role::Admin => "管理员",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kind of access; [`allows`] says which roles have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read alerts (dispatchers only those of their area; the handlers filter).
    ViewAlerts,
    /// Acknowledge, dispatch, resolve, mark false alarm.
    HandleAlerts,
    /// Accept / arrived / close on dispatched alerts.
    PoliceActions,
    /// Read the camera inventory.
    ViewCameras,
    /// Add, change, remove cameras.
    ManageCameras,
    /// Read stream health and availability.
    ViewHealth,
    /// Outbox, dead letters, retries.
    ManageDelivery,
    /// Read rules and zones.
    ViewRules,
    /// Change rules and zones.
    ManageRules,
    /// Users and their API tokens.
    ManageUsers,
    /// Read system status.
    ViewSystem,
    /// Prometheus metrics.
    Metrics,
    /// Read the audit log.
    ViewAudit,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 13] = [
        Permission::ViewAlerts,
        Permission::HandleAlerts,
        Permission::PoliceActions,
        Permission::ViewCameras,
        Permission::ManageCameras,
        Permission::ViewHealth,
        Permission::ManageDelivery,
        Permission::ViewRules,
        Permission::ManageRules,
        Permission::ManageUsers,
        Permission::ViewSystem,
        Permission::Metrics,
        Permission::ViewAudit,
    ];

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewAlerts => "view_alerts",
            Permission::HandleAlerts => "handle_alerts",
            Permission::PoliceActions => "police_actions",
            Permission::ViewCameras => "view_cameras",
            Permission::ManageCameras => "manage_cameras",
            Permission::ViewHealth => "view_health",
            Permission::ManageDelivery => "manage_delivery",
            Permission::ViewRules => "view_rules",
            Permission::ManageRules => "manage_rules",
            Permission::ManageUsers => "manage_users",
            Permission::ViewSystem => "view_system",
            Permission::Metrics => "metrics",
            Permission::ViewAudit => "view_audit",
        }
    }

    /// What it lets one do, completing "role X may not …".
    pub fn describe(self) -> &'static str {
        match self {
            Permission::ViewAlerts => "view alerts",
            Permission::HandleAlerts => "handle alerts",
            Permission::PoliceActions => "take police actions on dispatched alerts",
            Permission::ViewCameras => "view cameras",
            Permission::ManageCameras => "manage cameras",
            Permission::ViewHealth => "view camera health",
            Permission::ManageDelivery => "manage alert delivery",
            Permission::ViewRules => "view rules",
            Permission::ManageRules => "manage rules",
            Permission::ManageUsers => "manage users",
            Permission::ViewSystem => "view system status",
            Permission::Metrics => "read metrics",
            Permission::ViewAudit => "view the audit log",
        }
    }
}

/// The one role × permission table.
pub fn allows(role: Role, p: Permission) -> bool {
    use Permission as P;
    use Role::{Admin, Dispatcher, Engineer, Operator};
    let roles: &[Role] = match p {
        P::ViewAlerts => &[Operator, Dispatcher, Engineer, Admin],
        P::HandleAlerts => &[Operator, Admin],
        P::PoliceActions => &[Dispatcher, Operator, Admin],
        P::ViewCameras => &[Operator, Dispatcher, Engineer, Admin],
        P::ManageCameras => &[Engineer, Admin],
        P::ViewHealth => &[Operator, Dispatcher, Engineer, Admin],
        P::ManageDelivery => &[Engineer, Admin],
        P::ViewRules => &[Operator, Engineer, Admin],
        P::ManageRules => &[Admin],
        P::ManageUsers => &[Admin],
        P::ViewSystem => &[Operator, Dispatcher, Engineer, Admin],
        P::Metrics => &[Engineer, Admin],
        P::ViewAudit => &[Admin],
    };
    roles.contains(&role)
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthVia {
    /// A login session (cookie or bearer).
    Session,
    /// A named API token.
    ApiToken {
        /// The token's name (not the token).
        name: String,
    },
}

/// The authenticated caller, as handlers see it (`Extension<Principal>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// What they may do.
    pub role: Role,
    /// Jurisdiction prefix (`示范县/城关镇`); always set for dispatchers; `None` = everywhere.
    pub area: Option<String>,
    /// Session or API token.
    pub via: AuthVia,
}

impl Principal {
    /// Whether this caller may see things in `camera_area` (a `/`-separated area path).
    ///
    /// No area sees everything, except a dispatcher, which sees nothing without one (fail closed).
    /// Otherwise the caller's segments must be a prefix of the camera's: `示范县/城关镇` sees
    /// `示范县/城关镇/东街村` but not `示范县/城关镇二`.
    pub fn sees_area(&self, camera_area: &str) -> bool {
        let Some(own) = &self.area else {
            return self.role != Role::Dispatcher;
        };
        let own = area_segments(own);
        if own.is_empty() {
            return false;
        }
        let cam = area_segments(camera_area);
        cam.len() >= own.len() && own.iter().zip(&cam).all(|(a, b)| a == b)
    }

    /// Whether the role has `p`.
    pub fn may(&self, p: Permission) -> bool {
        allows(self.role, p)
    }
}

fn area_segments(s: &str) -> Vec<&str> {
    s.split('/')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Auth errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The database failed (disk full, unreachable, a schema from a newer build …).
    #[error("auth database: {0}")]
    Db(#[from] crate::db::DbError),
    /// The database's folder could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No such user / token.
    #[error("{what} {id} not found")]
    NotFound {
        /// `user` or `token`.
        what: &'static str,
        /// Its name or id.
        id: String,
    },
    /// A user with that name exists.
    #[error("user {0} already exists")]
    Exists(String),
    /// The change would leave no enabled admin.
    #[error("{0} is the last enabled admin; make another admin first")]
    LastAdmin(String),
    /// A value the store refused (field and reason; never a password).
    #[error("{field}: {message}")]
    Rejected {
        /// Field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Argon2 failed to hash (out of memory); the password is not in the message.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A blocking task panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Join(String),
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password or disabled account (one answer for all three).
    #[error("wrong username or password")]
    Wrong,
    /// Too many recent failures for this username or address.
    #[error("too many failed logins; retry in {} s", .0.as_secs())]
    Limited(Duration),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] AuthError),
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoginOk {
    /// The session token (give it to the client once).
    pub token: Secret,
    /// When the session ends at the latest (it ends earlier after `session_idle` unused).
    pub expires_ms: i64,
    /// Who logged in.
    pub user: UserRow,
}

/// Store + login limiter + session policy: what the API and the guard share.
pub struct Auth {
    store: AuthStore,
    limiter: LoginLimiter,
    dummy_hash: String,
    hash_slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Opens (creating and migrating) the auth database at `path` and creates the configured
    /// users that do not exist yet. Blocks for one argon2 hash per created user plus one.
    pub fn open(
        path: &Path,
        config: &AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Auth>, AuthError> {
        let db = crate::db::sqlite::SqliteDb::open(path)?;
        Auth::on(Arc::new(db), config, clock)
    }

    /// The same on the auth tables of `db` (SQLite or PostgreSQL).
    pub fn on(
        db: Arc<dyn crate::db::Db>,
        config: &AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Auth>, AuthError> {
        let policy = SessionPolicy {
            idle: config.session_idle,
            max: config.session_max,
        };
        let store = AuthStore::on(db, clock.clone(), policy)?;
        store.seed(config)?;
        let limiter = LoginLimiter::new(store.db(), clock);
        // Verified against when the user does not exist, so unknown names cost the same time.
        let dummy_hash = hash_password(&hex::encode(rand::random::<[u8; 16]>()))?;
        Ok(Arc::new(Auth {
            store,
            limiter,
            dummy_hash,
            hash_slots: tokio::sync::Semaphore::new(HASH_SLOTS),
        }))
    }

    /// The store, for synchronous callers (tests, start-up).
    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// The login limiter.
    pub fn limiter(&self) -> &LoginLimiter {
        &self.limiter
    }

    /// Runs `f` on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&AuthStore) -> Result<T, AuthError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| AuthError::Join(e.to_string()))?
    }

    /// Who holds `token` (session or API token), or `None` when it is unknown, expired, revoked
    /// or its user is disabled.
    pub async fn resolve(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let token = token.to_owned();
        self.blocking(move |s| s.resolve(&token)).await
    }

    /// Checks a password and opens a session. Refused without checking when the limiter says so.
    pub async fn login(
        &self,
        username: &str,
        password: Secret,
        remote: Option<IpAddr>,
    ) -> Result<LoginOk, LoginError> {
        // No user has such a name (names are checked when made), and PostgreSQL's text refuses
        // a NUL: the same answer as a wrong password, without touching the database.
        if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
            return Err(LoginError::Wrong);
        }
        let limiter = self.limiter.clone();
        let name = username.to_owned();
        let attempt = tokio::task::spawn_blocking(move || limiter.begin(&name, remote))
            .await
            .map_err(|e| AuthError::Join(e.to_string()))??
            .map_err(LoginError::Limited)?;
        let user = {
            let _slot = self
                .hash_slots
                .acquire()
                .await
                .map_err(|e| AuthError::Join(e.to_string()))?;
            let dummy = self.dummy_hash.clone();
            let name = username.to_owned();
            self.blocking(move |s| {
                Ok(match s.user_with_hash(&name)? {
                    Some((user, hash)) => {
                        let ok = verify_password(password.expose(), &hash);
                        (ok && !user.disabled).then_some(user)
                    }
                    None => {
                        verify_password(password.expose(), &dummy);
                        None
                    }
                })
            })
            .await?
        };
        // A failure stays recorded in the limiter (it was counted when the attempt began).
        let user = user.ok_or(LoginError::Wrong)?;
        let limiter = self.limiter.clone();
        tokio::task::spawn_blocking(move || limiter.succeeded(attempt))
            .await
            .map_err(|e| AuthError::Join(e.to_string()))??;
        let name = user.username.clone();
        let (token, expires_ms) = self.blocking(move |s| s.create_session(&name)).await?;
        Ok(LoginOk {
            token,
            expires_ms,
            user,
        })
    }

    /// Hashes a password on the blocking pool, taking a hashing slot.
    pub async fn hash(&self, password: Secret) -> Result<String, AuthError> {
        let _slot = self
            .hash_slots
            .acquire()
            .await
            .map_err(|e| AuthError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_password(password.expose()))
            .await
            .map_err(|e| AuthError::Join(e.to_string()))?
    }

    /// Adds an audit row for `who` (for handlers that record more than the guard does).
    pub async fn audit(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), AuthError> {
        let entry = AuditEntry {
            at_ms: self.store.now_ms(),
            username: who.username.clone(),
            role: who.role.as_str().to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail,
            remote: None,
        };
        self.blocking(move |s| s.audit(&entry)).await
    }
}

/// Hashes `password` with argon2id and default parameters into a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (false when `phc` does not parse).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash does not parse");
            false
        }
    }
}

/// Checks that `phc` is an argon2 PHC string (the reason otherwise; never echoes the string).
pub fn check_phc(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| {
        format!("not a PHC string ({e}); expected $argon2id$v=19$m=…,t=…,p=…$salt$hash")
    })?;
    match Algorithm::try_from(h.algorithm) {
        Ok(_) if h.hash.is_some() && h.salt.is_some() => Ok(()),
        Ok(_) => Err("PHC string lacks a salt or hash".to_owned()),
        Err(_) => Err(format!(
            "algorithm {} is not supported; use argon2id",
            h.algorithm
        )),
    }
}

/// Checks a username: 1–64 of `A-Z a-z 0-9 _ . -`.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "{name:?} may contain only letters A-Z a-z, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// Checks a new password's length (the message never contains the password).
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters (has {n})"
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    Ok(())
}

/// Checks a display name: 1–64 characters after trimming; returns it trimmed.
pub fn check_display_name(name: &str) -> Result<String, String> {
    let t = name.trim();
    let n = t.chars().count();
    if n == 0 || n > 64 {
        return Err("must be 1 to 64 characters".to_owned());
    }
    Ok(t.to_owned())
}

/// Normalises an area for `role`: 1–3 non-empty `/`-separated segments, required for dispatchers.
pub fn check_area(role: Role, area: Option<&str>) -> Result<Option<String>, String> {
    let Some(a) = area.map(str::trim).filter(|a| !a.is_empty()) else {
        return if role == Role::Dispatcher {
            Err("a dispatcher needs an area (its jurisdiction, e.g. \"示范县/城关镇\")".to_owned())
        } else {
            Ok(None)
        };
    };
    let segments: Vec<String> = a.split('/').map(|s| s.trim().to_owned()).collect();
    match crate::config::AreaPath::new(segments) {
        Some(p) => Ok(Some(p.to_string())),
        None => Err(format!(
            "{a:?} must be 1 to 3 non-empty segments separated by '/' (county/township/village)"
        )),
    }
}

/// Hex SHA-256 of a token: how tokens are stored and looked up.
pub use crate::config::sha256_hex;

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
