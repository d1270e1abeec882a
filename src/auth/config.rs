//! The `[auth]` configuration section: session lifetimes and the users created at first start.
//!
//! ## `[auth]` — users and sessions
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `session_idle` | `"12h"` | a login session unused this long ends (`"30m"`, `"12h"`, `"1d"`) |
//! | `session_max` | `"7d"` | a session ends this long after login however much it is used; ≥ `session_idle` |
//! | `users` | none | users to create if they do not exist yet (`[[auth.users]]`, below) |
//!
//! Each `[[auth.users]]`:
//!
//! | key | meaning |
//! |---|---|
//! | `username` | login name, 1–64 of `A-Z a-z 0-9 _ . -`, unique |
//! | `display_name` | name shown in the UI (default: the username) |
//! | `role` | `operator` (值班员: acknowledge, judge, dispatch alerts), `dispatcher` (派出所: alerts of its area only), `engineer` (运维工程师: cameras, health, delivery, metrics), `admin` (管理员: everything) |
//! | `area` | jurisdiction prefix such as `"示范县/城关镇"` (1–3 segments); required for `dispatcher`; others see everything without one |
//! | `password_env` | name of an environment variable holding the password (≥ 8 characters) |
//! | `password_hash` | an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) |
//!
//! Give exactly one of `password_env` and `password_hash`. Users are created only when no user
//! of that name exists: after the first start the database is the truth, and users, passwords and
//! roles are managed in the UI / `/api/users` by an admin. Changing a password here later has no
//! effect on an existing user. Passwords are never written to logs or error messages.
//!
//! ```toml
//! [auth]
//! session_idle = "12h"
//! session_max = "7d"
//!
//! [[auth.users]]
//! username = "admin"
//! display_name = "系统管理员"
//! role = "admin"
//! password_env = "QLY_ADMIN_PASSWORD"
//!
//! [[auth.users]]
//! username = "pcs-chengguan"
//! display_name = "城关派出所"
//! role = "dispatcher"
//! area = "示范县/城关镇"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::{Role, check_area, check_display_name, check_password, check_phc, check_username};
use crate::config::{ConfigError, Secret};

/// The `[auth]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// A session unused this long ends (default `"12h"`; units d, h, m, s).
    pub session_idle: Option<String>,
    /// A session ends this long after login however much it is used (default `"7d"`).
    pub session_max: Option<String>,
    /// Users created at start-up when no user of that name exists.
    #[serde(default)]
    pub users: Vec<RawUser>,
}

/// One `[[auth.users]]` entry as written.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Login name: 1–64 of `A-Z a-z 0-9 _ . -`, unique.
    pub username: String,
    /// Name shown in the UI (default: the username).
    pub display_name: Option<String>,
    /// `operator`, `dispatcher`, `engineer` or `admin`.
    pub role: String,
    /// Jurisdiction prefix (`示范县/城关镇`); required for dispatchers.
    pub area: Option<String>,
    /// Name of an environment variable holding the password (≥ 8 characters).
    pub password_env: Option<String>,
    /// An argon2id PHC string.
    pub password_hash: Option<String>,
}

impl fmt::Debug for RawUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawUser")
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .field("area", &self.area)
            .field("password_env", &self.password_env)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The validated `[auth]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Idle timeout of a session.
    pub session_idle: Duration,
    /// Absolute lifetime of a session.
    pub session_max: Duration,
    /// Users to create when missing.
    pub users: Vec<SeedUser>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 24 * 3600),
            users: Vec::new(),
        }
    }
}

/// A user to create at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedUser {
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Normalised area.
    pub area: Option<String>,
    /// The password or its hash (both print `***`).
    pub password: SeedPassword,
}

/// Where a seed user's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedPassword {
    /// The password itself (from the environment); hashed when the user is created.
    Plain(Secret),
    /// An argon2 PHC string, stored as is.
    Hash(Secret),
}

/// Validates `[auth]`, reporting every problem at once with paths like `auth.users[2].role`.
/// `env` resolves environment variables (pass `|k| std::env::var(k).ok()`).
pub fn validate(
    raw: &RawAuth,
    env: impl Fn(&str) -> Option<String>,
) -> Result<AuthConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let defaults = AuthConfig::default();
    let mut duration = |field: &str, v: &Option<String>, default: Duration| match v {
        None => Some(default),
        Some(s) => match parse_duration_days(s) {
            Ok(d) if d.is_zero() => {
                errors.push(ConfigError::new(
                    format!("auth.{field}"),
                    "must be more than 0",
                ));
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                errors.push(ConfigError::new(format!("auth.{field}"), m));
                None
            }
        },
    };
    let session_idle = duration("session_idle", &raw.session_idle, defaults.session_idle);
    let session_max = duration("session_max", &raw.session_max, defaults.session_max);
    if let (Some(idle), Some(max)) = (session_idle, session_max)
        && idle > max
    {
        errors.push(ConfigError::new(
            "auth.session_idle",
            "must not be longer than auth.session_max",
        ));
    }
    let session_idle = session_idle.unwrap_or(defaults.session_idle);
    let session_max = session_max.unwrap_or(defaults.session_max);

    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let at = |f: &str| format!("auth.users[{i}].{f}");
        let mut ok = true;
        let mut bad = |f: &str, m: String, errors: &mut Vec<ConfigError>| {
            errors.push(ConfigError::new(at(f), m));
            ok = false;
        };
        if let Err(m) = check_username(&u.username) {
            bad("username", m, &mut errors);
        } else if let Some(first) = seen.insert(u.username.as_str(), i) {
            bad(
                "username",
                format!("{:?} is already used by auth.users[{first}]", u.username),
                &mut errors,
            );
            seen.insert(u.username.as_str(), first);
        }
        let display_name = match u.display_name.as_deref() {
            None => u.username.clone(),
            Some(d) => check_display_name(d).unwrap_or_else(|m| {
                bad("display_name", m, &mut errors);
                String::new()
            }),
        };
        let role = Role::parse(&u.role);
        if role.is_none() {
            bad(
                "role",
                format!(
                    "{:?} is not a role; use operator, dispatcher, engineer or admin",
                    u.role
                ),
                &mut errors,
            );
        }
        let area = match role.map(|r| check_area(r, u.area.as_deref())) {
            Some(Ok(a)) => a,
            Some(Err(m)) => {
                bad("area", m, &mut errors);
                None
            }
            None => None,
        };
        let password = match (&u.password_env, &u.password_hash) {
            (Some(var), None) => match env(var) {
                None => {
                    bad(
                        "password_env",
                        format!("environment variable {var} is not set"),
                        &mut errors,
                    );
                    None
                }
                Some(p) => match check_password(&p) {
                    Ok(()) => Some(SeedPassword::Plain(Secret::new(p))),
                    Err(m) => {
                        bad(
                            "password_env",
                            format!("the password in {var} {m}"),
                            &mut errors,
                        );
                        None
                    }
                },
            },
            (None, Some(h)) => match check_phc(h) {
                Ok(()) => Some(SeedPassword::Hash(Secret::new(h.clone()))),
                Err(m) => {
                    bad("password_hash", m, &mut errors);
                    None
                }
            },
            _ => {
                bad(
                    "password_env",
                    "give exactly one of password_env and password_hash".to_owned(),
                    &mut errors,
                );
                None
            }
        };
        if let (true, Some(role), Some(password)) = (ok, role, password) {
            users.push(SeedUser {
                username: u.username.clone(),
                display_name,
                role,
                area,
                password,
            });
        }
    }
    if errors.is_empty() {
        Ok(AuthConfig {
            session_idle,
            session_max,
            users,
        })
    } else {
        Err(errors)
    }
}

/// [`crate::time::parse_duration`] plus a leading whole-days part: `"7d"`, `"1d12h"`.
pub fn parse_duration_days(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &t[digits..];
    if digits > 0 && rest.starts_with('d') {
        let days: u64 = t[..digits]
            .parse()
            .map_err(|_| format!("{s:?} is too large a duration"))?;
        let after = &rest[1..];
        let more = if after.is_empty() {
            Duration::ZERO
        } else {
            crate::time::parse_duration(after)?
        };
        return days
            .checked_mul(86_400)
            .map(Duration::from_secs)
            .and_then(|d| d.checked_add(more))
            .ok_or_else(|| format!("{s:?} is too large a duration"));
    }
    crate::time::parse_duration(t).map_err(|m| format!("{m} (days: \"7d\", \"1d12h\")"))
}
