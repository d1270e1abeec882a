//! The auth API: login / logout / me, user administration (admin), API tokens (admin) and the
//! audit log (admin). Every request body is checked in full before anything is written, and all
//! field errors come back at once (422, `{"error", "fields": [{"field", "message"}]}`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::guard::{AuditDetail, remote_ip, request_token};
use crate::auth::store::{NewUser, UserChange};
use crate::auth::{
    API_TOKEN_PREFIX, AuditEntry, AuditQuery, Auth, AuthError, LoginError, Permission, Principal,
    Role, check_area, check_display_name, check_password, check_username, limit, sha256_hex,
};
use crate::config::{ConfigError, Secret};

/// Default and largest page of `GET /api/audit`.
const DEFAULT_AUDIT_LIMIT: usize = 100;
const MAX_AUDIT_LIMIT: usize = 1000;

/// The routes; `.merge()` into the main router. Each is registered through the endpoint table
/// ([`crate::web::routes::ENDPOINTS`]), which puts its guard in front: login is open; `me` and
/// logout need a session; users and tokens need `manage_users`; the audit log needs `view_audit`.
pub fn router(auth: Arc<Auth>) -> Router {
    let a = || auth.clone();
    crate::web::routes::Routes::new(auth.clone())
        .add("POST", "/api/auth/login", post(login).with_state(a()))
        .add("POST", "/api/auth/logout", post(logout).with_state(a()))
        .add("GET", "/api/auth/me", get(me).with_state(a()))
        .add("GET", "/api/users", get(list_users).with_state(a()))
        .add("POST", "/api/users", post(create_user).with_state(a()))
        .add(
            "GET",
            "/api/users/{username}",
            get(one_user).with_state(a()),
        )
        .add(
            "PUT",
            "/api/users/{username}",
            put(update_user).with_state(a()),
        )
        .add(
            "DELETE",
            "/api/users/{username}",
            delete(delete_user).with_state(a()),
        )
        .add(
            "GET",
            "/api/users/{username}/tokens",
            get(list_tokens).with_state(a()),
        )
        .add(
            "POST",
            "/api/users/{username}/tokens",
            post(create_token).with_state(a()),
        )
        .add(
            "DELETE",
            "/api/users/{username}/tokens/{id}",
            delete(revoke_token).with_state(a()),
        )
        .add("GET", "/api/audit", get(audit_log).with_state(a()))
        .into_router()
}

fn auth_error(e: AuthError) -> Response {
    match &e {
        AuthError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        AuthError::Exists(_) | AuthError::LastAdmin(_) => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        AuthError::Rejected { field, message } => ApiError::invalid(
            e.to_string(),
            vec![ConfigError::new(field.clone(), message.clone())],
        ),
        _ => {
            tracing::error!(error = %e, "auth store failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "auth store failed")
        }
    }
    .into_response()
}

/// A JSON object body read field by field, collecting every problem (values are never echoed:
/// some are passwords).
struct Body {
    obj: Map<String, Value>,
    errors: Vec<ConfigError>,
}

impl Body {
    fn parse(body: Result<Json<Value>, JsonRejection>, allowed: &[&str]) -> Result<Body, ApiError> {
        let Json(value) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let Value::Object(obj) = value else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object",
            ));
        };
        let errors = obj
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| {
                ConfigError::new(
                    k.clone(),
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                )
            })
            .collect();
        Ok(Body { obj, errors })
    }

    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(field, message));
    }

    /// A string field; `None` (with an error when `required`) when absent or null.
    fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.obj.remove(field) {
            Some(Value::String(s)) => Some(s),
            None | Some(Value::Null) => {
                if required {
                    self.error(field, "is required");
                }
                None
            }
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// A field that may be absent (`None`), null (`Some(None)`) or a string.
    fn nullable_string(&mut self, field: &str) -> Option<Option<String>> {
        match self.obj.remove(field) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(_) => {
                self.error(field, "must be a string or null");
                None
            }
        }
    }

    fn bool(&mut self, field: &str) -> Option<bool> {
        match self.obj.remove(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => {
                self.error(field, "must be true or false");
                None
            }
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let summary = self
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Err(ApiError::invalid(
            format!("invalid request: {summary}"),
            self.errors,
        ))
    }
}

/// The session cookie; `Secure` when the browser reached the service over TLS (the edge layer
/// says so in the request's extensions).
fn session_cookie(value: &str, clear: bool, ext: &Extensions) -> HeaderValue {
    let mut extra = if clear { "; Max-Age=0" } else { "" }.to_owned();
    if ext.get::<super::edge::OverTls>().is_some_and(|t| t.0) {
        extra.push_str("; Secure");
    }
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/{extra}",
        crate::auth::SESSION_COOKIE
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("qly_session=; Path=/; Max-Age=0"))
}

/// `POST /api/auth/login`.
async fn login(
    State(auth): State<Arc<Auth>>,
    ext: Extensions,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut b = match Body::parse(body, &["username", "password"]) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let username = b.string("username", true);
    let password = b.string("password", true).map(Secret::new);
    if let Err(r) = b.finish() {
        return r.into_response();
    }
    let (Some(username), Some(password)) = (username, password) else {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "username and password are required",
        )
        .into_response();
    };
    let remote = remote_ip(&ext);
    let entry = |action: &str, role: &str, status: StatusCode| AuditEntry {
        at_ms: auth.store().now_ms(),
        username: username.clone(),
        role: role.to_owned(),
        action: action.to_owned(),
        target: "/api/auth/login".to_owned(),
        detail: json!({ "status": status.as_u16() }),
        remote: remote.map(|ip| ip.to_string()),
    };
    match auth.login(&username, password, remote).await {
        Ok(ok) => {
            let e = entry("login", ok.user.role.as_str(), StatusCode::OK);
            if let Err(err) = auth.blocking(move |s| s.audit(&e)).await {
                tracing::error!(error = %err, "audit write failed");
            }
            let u = &ok.user;
            let body = json!({
                "token": ok.token.expose(),
                "expires_ms": ok.expires_ms,
                "user": {
                    "username": u.username,
                    "display_name": u.display_name,
                    "role": u.role,
                    "role_zh": u.role_zh,
                    "area": u.area,
                },
            });
            let mut r = (StatusCode::OK, Json(body)).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(ok.token.expose(), false, &ext),
            );
            r
        }
        Err(LoginError::Wrong) => {
            tracing::info!(username = %username, remote = ?remote, "login failed");
            let e = entry("login_failed", "", StatusCode::UNAUTHORIZED);
            if let Err(err) = auth.blocking(move |s| s.audit(&e)).await {
                tracing::error!(error = %err, "audit write failed");
            }
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong username or password").into_response()
        }
        Err(LoginError::Limited(wait)) => {
            let secs = limit::retry_after_secs(wait);
            tracing::warn!(username = %username, remote = ?remote, retry_after_s = secs, "login limited");
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins; retry in {secs} s"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(LoginError::Store(e)) => auth_error(e),
    }
}

/// `POST /api/auth/logout`: ends this session (an API token stays valid) and clears the cookie.
async fn logout(State(auth): State<Arc<Auth>>, ext: Extensions, headers: HeaderMap) -> Response {
    if let Some(token) = request_token(&headers).filter(|t| !t.starts_with(API_TOKEN_PREFIX))
        && let Err(e) = auth.blocking(move |s| s.end_session(&token)).await
    {
        return auth_error(e);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", true, &ext));
    r
}

/// `GET /api/auth/me`: who I am and what I may do.
async fn me(Extension(p): Extension<Principal>) -> Json<Value> {
    let permissions: Vec<&str> = Permission::ALL
        .into_iter()
        .filter(|perm| p.may(*perm))
        .map(Permission::as_str)
        .collect();
    Json(json!({
        "username": p.username,
        "display_name": p.display_name,
        "role": p.role,
        "role_zh": p.role.label_zh(),
        "area": p.area,
        "via": p.via,
        "permissions": permissions,
    }))
}

/// `GET /api/users`.
async fn list_users(State(auth): State<Arc<Auth>>) -> Response {
    match auth.blocking(|s| s.users()).await {
        Ok(users) => Json(users).into_response(),
        Err(e) => auth_error(e),
    }
}

/// `GET /api/users/{username}`.
async fn one_user(State(auth): State<Arc<Auth>>, Path(username): Path<String>) -> Response {
    let name = username.clone();
    match auth.blocking(move |s| s.user(&name)).await {
        Ok(Some(u)) => Json(u).into_response(),
        Ok(None) => auth_error(AuthError::NotFound {
            what: "user",
            id: username,
        }),
        Err(e) => auth_error(e),
    }
}

/// `POST /api/users` `{username, display_name, role, area, password}`.
async fn create_user(
    State(auth): State<Arc<Auth>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut b = match Body::parse(
        body,
        &["username", "display_name", "role", "area", "password"],
    ) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let username = b.string("username", true);
    if let Some(Err(m)) = username.as_deref().map(check_username) {
        b.error("username", m);
    }
    let display_name = match b.string("display_name", false) {
        Some(d) => check_display_name(&d)
            .map_err(|m| b.error("display_name", m))
            .ok(),
        None => username.clone(),
    };
    let role = b.string("role", true).and_then(|r| {
        let parsed = Role::parse(&r);
        if parsed.is_none() {
            b.error(
                "role",
                format!("{r:?} is not a role; use operator, dispatcher, engineer or admin"),
            );
        }
        parsed
    });
    let area = b.nullable_string("area").flatten();
    let area = role.and_then(|role| {
        check_area(role, area.as_deref())
            .map_err(|m| b.error("area", m))
            .ok()
    });
    let password = b.string("password", true).map(Secret::new);
    if let Some(Err(m)) = password.as_ref().map(|p| check_password(p.expose())) {
        b.error("password", m);
    }
    if let Err(r) = b.finish() {
        return r.into_response();
    }
    let (Some(username), Some(display_name), Some(role), Some(area), Some(password)) =
        (username, display_name, role, area, password)
    else {
        return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid request").into_response();
    };
    let password_hash = match auth.hash(password).await {
        Ok(h) => Secret::new(h),
        Err(e) => return auth_error(e),
    };
    let new = NewUser {
        username,
        display_name,
        role,
        area,
        password_hash,
    };
    match auth.blocking(move |s| s.create_user(&new)).await {
        Ok(u) => {
            let detail =
                AuditDetail(json!({ "username": u.username, "role": u.role, "area": u.area }));
            (StatusCode::CREATED, Extension(detail), Json(u)).into_response()
        }
        Err(e) => auth_error(e),
    }
}

/// `PUT /api/users/{username}`: any of display_name, role, area, password, disabled.
async fn update_user(
    State(auth): State<Arc<Auth>>,
    Extension(me): Extension<Principal>,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut b = match Body::parse(
        body,
        &["display_name", "role", "area", "password", "disabled"],
    ) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut changed: Vec<&str> = b
        .obj
        .keys()
        .filter_map(|k| {
            ["display_name", "role", "area", "password", "disabled"]
                .into_iter()
                .find(|f| *f == k.as_str())
        })
        .collect();
    changed.sort_unstable();
    let display_name = b.string("display_name", false).and_then(|d| {
        check_display_name(&d)
            .map_err(|m| b.error("display_name", m))
            .ok()
    });
    let role = b.string("role", false).and_then(|r| {
        let parsed = Role::parse(&r);
        if parsed.is_none() {
            b.error(
                "role",
                format!("{r:?} is not a role; use operator, dispatcher, engineer or admin"),
            );
        }
        parsed
    });
    // Whether a dispatcher keeps an area is checked by the store against the stored user.
    let area = match b.nullable_string("area") {
        None => None,
        Some(a) => match check_area(role.unwrap_or(Role::Operator), a.as_deref()) {
            Ok(a) => Some(a),
            Err(m) => {
                b.error("area", m);
                None
            }
        },
    };
    let password = b.string("password", false).map(Secret::new);
    if let Some(Err(m)) = password.as_ref().map(|p| check_password(p.expose())) {
        b.error("password", m);
    }
    let disabled = b.bool("disabled");
    if let Err(r) = b.finish() {
        return r.into_response();
    }
    let password_hash = match password {
        Some(p) => match auth.hash(p).await {
            Ok(h) => Some(Secret::new(h)),
            Err(e) => return auth_error(e),
        },
        None => None,
    };
    let change = UserChange {
        display_name,
        role,
        area,
        password_hash,
        disabled,
    };
    // Changing your own password keeps the session you changed it from.
    let keep = (me.username == username && me.via == crate::auth::AuthVia::Session)
        .then(|| request_token(&headers).map(|t| sha256_hex(&t)))
        .flatten();
    match auth
        .blocking(move |s| s.update_user(&username, &change, keep.as_deref()))
        .await
    {
        Ok(u) => (
            Extension(AuditDetail(json!({ "changed": changed }))),
            Json(u),
        )
            .into_response(),
        Err(e) => auth_error(e),
    }
}

/// `DELETE /api/users/{username}`: the user, their sessions and tokens.
async fn delete_user(State(auth): State<Arc<Auth>>, Path(username): Path<String>) -> Response {
    match auth.blocking(move |s| s.delete_user(&username)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => auth_error(e),
    }
}

/// `POST /api/users/{username}/tokens` `{"name"}`: the token, shown this once.
async fn create_token(
    State(auth): State<Arc<Auth>>,
    Path(username): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut b = match Body::parse(body, &["name"]) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let name = b
        .string("name", true)
        .and_then(|n| check_display_name(&n).map_err(|m| b.error("name", m)).ok());
    if let Err(r) = b.finish() {
        return r.into_response();
    }
    let Some(name) = name else {
        return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "name is required").into_response();
    };
    match auth
        .blocking(move |s| s.create_token(&username, &name))
        .await
    {
        Ok((row, token)) => {
            let detail = AuditDetail(json!({ "token_id": row.id, "name": row.name }));
            let mut body = serde_json::to_value(&row).unwrap_or_else(|_| json!({}));
            if let Some(o) = body.as_object_mut() {
                o.insert("token".to_owned(), Value::String(token.expose().to_owned()));
            }
            (StatusCode::CREATED, Extension(detail), Json(body)).into_response()
        }
        Err(e) => auth_error(e),
    }
}

/// `GET /api/users/{username}/tokens`: names and times, never the tokens.
async fn list_tokens(State(auth): State<Arc<Auth>>, Path(username): Path<String>) -> Response {
    match auth.blocking(move |s| s.tokens(&username)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => auth_error(e),
    }
}

/// `DELETE /api/users/{username}/tokens/{id}`: revokes it.
async fn revoke_token(
    State(auth): State<Arc<Auth>>,
    Path((username, id)): Path<(String, String)>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("token {id} not found"))
            .into_response();
    };
    match auth.blocking(move |s| s.revoke_token(&username, id)).await {
        Ok(row) => (
            Extension(AuditDetail(json!({ "token_id": row.id, "name": row.name }))),
            StatusCode::NO_CONTENT,
        )
            .into_response(),
        Err(e) => auth_error(e),
    }
}

/// A time parameter: unix ms or RFC 3339.
fn parse_time(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .or_else(|_| crate::time::parse_rfc3339(s.trim()))
        .map_err(|_| format!("{s:?} is neither unix milliseconds nor an RFC 3339 time"))
}

/// `GET /api/audit?since=&until=&username=&limit=`, newest first.
async fn audit_log(
    State(auth): State<Arc<Auth>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut errors = Vec::new();
    let mut q = AuditQuery {
        limit: DEFAULT_AUDIT_LIMIT,
        ..AuditQuery::default()
    };
    for (k, v) in &params {
        match k.as_str() {
            "since" => match parse_time(v) {
                Ok(t) => q.since_ms = Some(t),
                Err(m) => errors.push(ConfigError::new("since", m)),
            },
            "until" => match parse_time(v) {
                Ok(t) => q.until_ms = Some(t),
                Err(m) => errors.push(ConfigError::new("until", m)),
            },
            "username" => q.username = Some(v.clone()).filter(|u| !u.is_empty()),
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_AUDIT_LIMIT).contains(&n) => q.limit = n,
                _ => errors.push(ConfigError::new(
                    "limit",
                    format!("must be an integer from 1 to {MAX_AUDIT_LIMIT}"),
                )),
            },
            other => errors.push(ConfigError::new(
                other,
                "unknown parameter; expected since, until, username, limit",
            )),
        }
    }
    if !errors.is_empty() {
        return ApiError::invalid("invalid audit query", errors).into_response();
    }
    match auth.blocking(move |s| s.audit_query(&q)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => auth_error(e),
    }
}

#[cfg(test)]
mod cookie_tests {
    use super::*;

    /// The session cookie is `Secure` exactly when the edge layer says the browser came over TLS.
    #[test]
    fn the_cookie_is_secure_behind_tls_only() {
        let mut ext = Extensions::new();
        let plain = session_cookie("t", false, &ext);
        assert_eq!(plain, "qly_session=t; HttpOnly; SameSite=Strict; Path=/");
        ext.insert(super::super::edge::OverTls(true));
        assert_eq!(
            session_cookie("t", false, &ext),
            "qly_session=t; HttpOnly; SameSite=Strict; Path=/; Secure"
        );
        assert_eq!(
            session_cookie("", true, &ext),
            "qly_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
        );
    }
}
