//! The guard: an axum layer that authenticates each request, checks the role table and audits
//! state-changing requests.
//!
//! ```ignore
//! .route("/api/alerts", get(list).route_layer(require(auth.clone(), Permission::ViewAlerts)))
//! ```
//!
//! Token: `Authorization: Bearer <token>` (a session token or a `qly_` API token), else the
//! `qly_session` cookie. Unknown, ended or revoked → 401 with `WWW-Authenticate: Bearer`; a role
//! without the permission → 403 naming both. On success the [`Principal`] goes into the request's
//! extensions. After the handler, any method but GET/HEAD that answered below 400 gets one audit
//! row: action `METHOD <route pattern>` (see [`route_pattern`]), target the actual path, detail `{"status": …}` plus what
//! the handler attached as an [`AuditDetail`] response extension.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{FromFnLayer, Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;

use super::ApiError;
use crate::auth::{AuditEntry, Auth, Permission, SESSION_COOKIE, allows};

/// What the guard layer holds: the auth service and the permission it checks.
#[derive(Clone)]
pub struct Guard {
    auth: Arc<Auth>,
    permission: Option<Permission>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("permission", &self.permission)
            .finish_non_exhaustive()
    }
}

/// The guard's middleware function, as a nameable type.
pub type GuardFn = fn(State<Guard>, Request, Next) -> BoxFuture<'static, Response>;

/// The layer [`require`] returns (use with `route_layer`).
pub type RequireLayer = FromFnLayer<GuardFn, Guard, (State<Guard>, Request)>;

/// Extra audit detail a handler attaches to its response: `(Extension(AuditDetail(json!({…}))), body)`.
/// Its object fields are merged into the guard's audit row (never put a password here).
#[derive(Debug, Clone)]
pub struct AuditDetail(pub serde_json::Value);

/// A layer admitting only callers whose role has `p`.
pub fn require(auth: Arc<Auth>, p: Permission) -> RequireLayer {
    from_fn_with_state(
        Guard {
            auth,
            permission: Some(p),
        },
        guard as GuardFn,
    )
}

/// A layer admitting any logged-in caller (`/api/auth/me`, logout).
pub fn require_login(auth: Arc<Auth>) -> RequireLayer {
    from_fn_with_state(
        Guard {
            auth,
            permission: None,
        },
        guard as GuardFn,
    )
}

fn guard(State(g): State<Guard>, req: Request, next: Next) -> BoxFuture<'static, Response> {
    Box::pin(run(g, req, next))
}

/// 401 `login required` with `WWW-Authenticate: Bearer`.
pub fn login_required() -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "login required").into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The remote address, when the server was started with `into_make_service_with_connect_info`.
pub fn remote_ip(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// The request's token: `Authorization: Bearer …`, else the `qly_session` cookie.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, token) = v.split_once(' ')?;
        let token = token.trim();
        return (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| token.to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == SESSION_COOKIE && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

async fn run(g: Guard, req: Request, next: Next) -> Response {
    let Some(token) = request_token(req.headers()) else {
        return login_required();
    };
    let principal = match g.auth.resolve(&token).await {
        Ok(Some(p)) => p,
        Ok(None) => return login_required(),
        Err(e) => {
            tracing::error!(error = %e, "auth store failed");
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "auth store failed")
                .into_response();
        }
    };
    if let Some(p) = g.permission
        && !allows(principal.role, p)
    {
        tracing::info!(username = %principal.username, role = %principal.role, permission = p.as_str(),
            path = %req.uri().path(), "refused by role");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "role {} may not {} (needs permission {})",
                principal.role,
                p.describe(),
                p.as_str()
            ),
        )
        .into_response();
    }
    let method = req.method().clone();
    let audited = method != Method::GET && method != Method::HEAD;
    let target = req.uri().path().to_owned();
    let (pattern, mut req) = route_pattern(req, &target).await;
    let remote = remote_ip(req.extensions());
    req.extensions_mut().insert(principal.clone());

    let mut resp = next.run(req).await;

    if audited && resp.status().as_u16() < 400 {
        let mut detail = serde_json::json!({ "status": resp.status().as_u16() });
        if let Some(AuditDetail(extra)) = resp.extensions_mut().remove::<AuditDetail>() {
            match (detail.as_object_mut(), extra) {
                (Some(d), serde_json::Value::Object(extra)) => d.extend(extra),
                (Some(d), other) => {
                    d.insert("detail".to_owned(), other);
                }
                (None, _) => {}
            }
        }
        let entry = AuditEntry {
            at_ms: g.auth.store().now_ms(),
            username: principal.username,
            role: principal.role.as_str().to_owned(),
            action: format!("{method} {pattern}"),
            target,
            detail,
            remote: remote.map(|ip| ip.to_string()),
        };
        // The action has happened; a failed audit write is logged, not turned into an error.
        if let Err(e) = g.auth.blocking(move |s| s.audit(&entry)).await {
            tracing::error!(error = %e, "audit write failed");
        }
    }
    resp
}

/// The route pattern of `req` (`/api/users/{username}/tokens`), rebuilt from the actual path and
/// the path parameters the router matched: each parameter, in order, replaces the first segment
/// (or segments, for a wildcard) at or after the previous one that equals its value. The axum
/// feature `matched-path` (not enabled in this build) would give the pattern itself; this differs
/// from it only when a parameter's value equals a literal segment before it in the same route
/// (a user named `users`). The audit row's `target` always holds the exact path.
async fn route_pattern(req: Request, path: &str) -> (String, Request) {
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    (pattern_of(path, &params), Request::from_parts(parts, body))
}

/// See [`route_pattern`].
pub fn pattern_of(path: &str, params: &[(String, String)]) -> String {
    let raw: Vec<&str> = path.split('/').collect();
    let decoded: Vec<String> = raw.iter().map(|s| percent_decode(s)).collect();
    let mut out: Vec<Option<String>> = raw.iter().map(|s| Some((*s).to_owned())).collect();
    let mut at = 0;
    for (key, value) in params {
        let n = value.split('/').count();
        let mut i = at;
        while i + n <= decoded.len() {
            if decoded[i..i + n].join("/") == *value {
                out[i] = Some(format!("{{{key}}}"));
                for slot in &mut out[i + 1..i + n] {
                    *slot = None;
                }
                at = i + n;
                break;
            }
            i += 1;
        }
    }
    out.into_iter().flatten().collect::<Vec<_>>().join("/")
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
