//! The endpoint table: every HTTP endpoint with who may call it, what it takes and what it answers.
//!
//! The router registers handlers through [`Routes::add`], which looks each one up here and puts the
//! guard for its access in front of it, so an endpoint missing from the table cannot be served and
//! an endpoint cannot be served without its guard. `GET /api/openapi.json` is generated from the
//! same table (roles come from [`crate::auth::allows`], enum values from the types themselves).

use std::sync::Arc;

use axum::Router;
use axum::routing::MethodRouter;
use serde_json::{Value, json};

use super::guard::{require, require_login};
use crate::auth::{Auth, Permission, Role, allows};
use crate::rules::{AlertType, Severity};
use crate::store::AlertState;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, health check, this document).
    Public,
    /// Any logged-in user.
    Login,
    /// Roles with this permission.
    Perm(Permission),
    /// Callers that sign the body with the shared HMAC secret (the case system).
    Signed,
}

/// A query or path parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// What it means.
    pub about: &'static str,
}

/// What a request carries.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// Nothing.
    None,
    /// JSON described by this schema.
    Json(fn() -> Value),
    /// CSV text.
    Csv,
}

/// What a success answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// JSON.
    Json(u16),
    /// No content.
    Empty(u16),
    /// JPEG picture.
    Jpeg,
    /// MP4 video, with byte ranges (206).
    Mp4,
    /// Prometheus text.
    Text,
    /// A WebSocket upgrade.
    WebSocket,
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Route pattern, axum syntax (`/api/cameras/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// OpenAPI tag.
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Query parameters.
    pub query: &'static [Param],
    /// Request body.
    pub body: Body,
    /// Success answer.
    pub answer: Answer,
}

const fn ep(
    method: &'static str,
    path: &'static str,
    access: Access,
    tag: &'static str,
    summary: &'static str,
) -> Endpoint {
    Endpoint {
        method,
        path,
        access,
        tag,
        summary,
        query: &[],
        body: Body::None,
        answer: Answer::Json(200),
    }
}

impl Endpoint {
    const fn query(mut self, q: &'static [Param]) -> Self {
        self.query = q;
        self
    }
    const fn body(mut self, b: Body) -> Self {
        self.body = b;
        self
    }
    const fn answer(mut self, a: Answer) -> Self {
        self.answer = a;
        self
    }
}

const fn p(name: &'static str, about: &'static str) -> Param {
    Param { name, about }
}

use Access::{Login, Perm, Public, Signed};
use Permission as P;

const ALERT_QUERY: &[Param] = &[
    p("since", "from this time, unix ms"),
    p("until", "until this time, unix ms"),
    p("camera", "camera id"),
    p("area", "area path or prefix (示范县/城关镇)"),
    p("type", "alert type code (intrusion …)"),
    p("state", "lifecycle state"),
    p("severity", "low | medium | high | critical"),
    p(
        "limit",
        "at most this many, newest first (default 100, max 10000)",
    ),
];

/// Every endpoint the service serves (the UI's static files aside).
pub const ENDPOINTS: &[Endpoint] = &[
    // Auth and users.
    ep("POST", "/api/auth/login", Public, "auth", "Log in; answers a session token and sets the qly_session cookie")
        .body(Body::Json(login_schema)),
    ep("POST", "/api/auth/logout", Login, "auth", "End this session").answer(Answer::Empty(204)),
    ep("GET", "/api/auth/me", Login, "auth", "The logged-in user"),
    ep("GET", "/api/users", Perm(P::ManageUsers), "users", "List users"),
    ep("POST", "/api/users", Perm(P::ManageUsers), "users", "Create a user")
        .body(Body::Json(user_schema))
        .answer(Answer::Json(201)),
    ep("GET", "/api/users/{username}", Perm(P::ManageUsers), "users", "One user"),
    ep("PUT", "/api/users/{username}", Perm(P::ManageUsers), "users", "Change a user (name, role, area, password, disabled)")
        .body(Body::Json(user_schema)),
    ep("DELETE", "/api/users/{username}", Perm(P::ManageUsers), "users", "Remove a user and end their sessions")
        .answer(Answer::Empty(204)),
    ep("GET", "/api/users/{username}/tokens", Perm(P::ManageUsers), "users", "A user's API tokens (never the token itself)"),
    ep("POST", "/api/users/{username}/tokens", Perm(P::ManageUsers), "users", "Create an API token; shown once")
        .body(Body::Json(token_schema))
        .answer(Answer::Json(201)),
    ep("DELETE", "/api/users/{username}/tokens/{id}", Perm(P::ManageUsers), "users", "Revoke an API token")
        .answer(Answer::Empty(204)),
    ep("GET", "/api/audit", Perm(P::ViewAudit), "users", "Audit log of state changes, newest first").query(&[
        p("since", "unix ms"),
        p("until", "unix ms"),
        p("username", "only this user"),
        p("limit", "at most this many"),
    ]),
    // Cameras and health.
    ep("GET", "/api/cameras", Perm(P::ViewCameras), "cameras", "Cameras with state, reason, faults, fps and counters")
        .query(&[p("area", "area path or prefix"), p("state", "online | degraded | offline | connecting | disabled | maintenance")]),
    ep("POST", "/api/cameras", Perm(P::ManageCameras), "cameras", "Add a camera at run time")
        .body(Body::Json(camera_schema))
        .answer(Answer::Json(201)),
    ep("POST", "/api/cameras/import", Perm(P::ManageCameras), "cameras", "Import cameras from CSV; bad rows named by line and column")
        .body(Body::Csv),
    ep("GET", "/api/cameras/{id}", Perm(P::ViewCameras), "cameras", "One camera"),
    ep("PUT", "/api/cameras/{id}", Perm(P::ManageCameras), "cameras", "Replace a camera's configuration")
        .body(Body::Json(camera_schema)),
    ep("DELETE", "/api/cameras/{id}", Perm(P::ManageCameras), "cameras", "Remove a camera").answer(Answer::Empty(204)),
    ep("GET", "/api/cameras/{id}/history", Perm(P::ViewHealth), "health", "The camera's state transitions")
        .query(&[p("limit", "at most this many (default 100)")]),
    ep("GET", "/api/cameras/{id}/frame.jpg", Perm(P::ViewCameras), "cameras", "The camera's latest picture (≤ 640 px wide)")
        .answer(Answer::Jpeg),
    ep("GET", "/api/cameras/{id}/activity", Perm(P::ViewHealth), "health", "Whether anything moves: activity state, evidence, learned quiet level, the detector's latest frames"),
    ep("GET", "/api/health/summary", Perm(P::ViewHealth), "health", "Cameras by state, online rate and intact rate now")
        .query(&[p("area", "only this area and below")]),
    ep("GET", "/api/health/availability", Perm(P::ViewHealth), "health", "Time-weighted availability from the ledger").query(&[
        p("from", "unix ms (default 24 h ago)"),
        p("to", "unix ms (default now)"),
        p("group_by", "camera | area | day | month"),
        p("format", "json | csv (the whole table; JSON comes in pages)"),
        p("camera", "only this camera's row (group_by=camera)"),
        p("limit", "JSON rows per page, 1–500 (default 500); X-Total-Count gives the total"),
        p("offset", "JSON rows skipped (default 0)"),
    ]),
    // Rules.
    ep("GET", "/api/rules", Perm(P::ViewRules), "rules", "Zones and rules (the rules file's shape)"),
    ep("PUT", "/api/rules", Perm(P::ManageRules), "rules", "Replace zones and rules; 422 names every invalid field, nothing saved then")
        .body(Body::Json(rules_schema)),
    // Alerts.
    ep("GET", "/api/alerts", Perm(P::ViewAlerts), "alerts", "Stored alerts, newest first (dispatchers: their jurisdiction only)")
        .query(ALERT_QUERY),
    ep("GET", "/api/alerts/feed", Perm(P::ViewAlerts), "alerts", "WebSocket: replay after the cursor, then live alerts and health events")
        .query(&[p("cursor", "last cursor seen"), p("area", "area prefix"), p("type", "alert type"), p("severity", "least severity")])
        .answer(Answer::WebSocket),
    ep("GET", "/api/alerts/{id}", Perm(P::ViewAlerts), "alerts", "One alert with its lifecycle events and allowed next states"),
    ep("GET", "/api/alerts/{id}/snapshot.jpg", Perm(P::ViewAlerts), "alerts", "The alert's annotated snapshot").answer(Answer::Jpeg),
    ep("GET", "/api/alerts/{id}/clip.mp4", Perm(P::ViewAlerts), "alerts",
        "The alert's evidence clip (pre seconds before its frame to post after it), with HTTP range requests; 404 while recording or when there is none (the alert's `clip` says why)")
        .answer(Answer::Mp4),
    ep("POST", "/api/alerts/{id}/transition", Perm(P::ViewAlerts), "alerts",
        "Move the lifecycle (operators: acknowledged, dispatched, resolved, false_alarm; dispatchers: accepted, arrived, resolved); 409 names the allowed next states")
        .body(Body::Json(transition_schema)),
    // Incidents.
    ep("GET", "/api/incidents", Perm(P::ViewAlerts), "alerts",
        "Incidents (alerts of one camera and rule close together, folded), newest first; the alert filters apply to each incident's latest alert (dispatchers: their jurisdiction only)")
        .query(ALERT_QUERY),
    ep("GET", "/api/incidents/{id}", Perm(P::ViewAlerts), "alerts", "One incident with its alerts, oldest first"),
    ep("POST", "/api/incidents/{id}/transition", Perm(P::HandleAlerts), "alerts",
        "Move every alert of the incident that may go to acknowledged, false_alarm or resolved; the others stay; answers the incident and the alerts changed")
        .body(Body::Json(transition_schema)),
    // Delivery.
    ep("GET", "/api/delivery/outbox", Perm(P::ManageDelivery), "delivery", "Outbox rows (pending, delivered, dead)")
        .query(&[p("state", "pending | delivered | dead"), p("limit", "at most this many")]),
    ep("GET", "/api/delivery/dead", Perm(P::ManageDelivery), "delivery", "Dead letters"),
    ep("POST", "/api/delivery/{id}/retry", Perm(P::ManageDelivery), "delivery", "Retry a dead letter now"),
    ep("POST", "/api/case-callback", Signed, "delivery", "The case system reports case id and status (HMAC-SHA256 signed)")
        .body(Body::Json(callback_schema)),
    // GB/T 28181.
    ep("GET", "/api/gb28181/devices", Perm(P::ViewHealth), "gb28181",
        "Devices registered over GB/T 28181 since this node started: kind, state (online, or offline with unregistered / keepalive_timeout), source address, transport, last keepalive, DeviceInfo, catalog size; in a cluster every live node's, each with its node (nodes that did not answer in unanswered); 404 when no [gb28181] section")
        .query(&[p("local", "1: this node's devices only")]),
    ep("GET", "/api/gb28181/devices/{id}", Perm(P::ViewHealth), "gb28181", "One device with its last complete catalog (channels with type code, civil code, parent, coordinates); in a cluster from the node it is registered to"),
    ep("POST", "/api/gb28181/devices/{id}/catalog", Perm(P::ManageCameras), "gb28181",
        "Ask the device for its catalog again (202 once it answered the query; the pages follow); 502 when it does not answer")
        .answer(Answer::Empty(202)),
    // System.
    ep("GET", "/api/system", Perm(P::ViewSystem), "system", "Version, node, models and execution providers, and whether the alert store takes writes"),
    ep("GET", "/api/openapi.json", Public, "system", "This document"),
    ep("GET", "/metrics", Perm(P::Metrics), "system", "Prometheus metrics").answer(Answer::Text),
    ep("GET", "/healthz", Public, "system", "Liveness").answer(Answer::Text),
    ep("GET", "/readyz", Public, "system", "Readiness: ready to take cameras (in a cluster: its leases renewed, not fenced); 503 with the reason otherwise").answer(Answer::Text),
];

/// The table entry for `method path`.
pub fn endpoint(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method == method && e.path == path)
}

/// Registers handlers with the guard their table entry asks for.
pub struct Routes {
    router: Router,
    auth: Arc<Auth>,
}

impl Routes {
    /// An empty router guarded by `auth`.
    pub fn new(auth: Arc<Auth>) -> Routes {
        Routes {
            router: Router::new(),
            auth,
        }
    }

    /// Adds `handler` (state already applied) for `method path`.
    ///
    /// # Panics
    /// When `method path` is not in [`ENDPOINTS`]: a programming error the tests catch at once.
    pub fn add(mut self, method: &str, path: &str, handler: MethodRouter) -> Routes {
        let Some(e) = endpoint(method, path) else {
            panic!("{method} {path} is not in the endpoint table (src/web/routes.rs)");
        };
        let handler = match e.access {
            Public | Signed => handler,
            Login => handler.route_layer(require_login(self.auth.clone())),
            Perm(p) => handler.route_layer(require(self.auth.clone(), p)),
        };
        self.router = self.router.route(path, handler);
        self
    }

    /// The router.
    pub fn into_router(self) -> Router {
        self.router
    }
}

/// The OpenAPI 3.1 document, generated from [`ENDPOINTS`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for e in ENDPOINTS {
        let mut params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(e.query.iter().map(|q| {
            json!({"name": q.name, "in": "query", "required": false, "description": q.about, "schema": {"type": "string"}})
        }));
        let mut op = json!({
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": operation_id(e),
            "parameters": params,
        });
        match e.body {
            Body::None => {}
            Body::Json(schema) => {
                op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema()}}});
            }
            Body::Csv => {
                op["requestBody"] = json!({"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}});
            }
        }
        let mut responses = serde_json::Map::new();
        let (code, ok) = match e.answer {
            Answer::Json(c) => (
                c,
                json!({"description": "OK", "content": {"application/json": {}}}),
            ),
            Answer::Empty(c) => (c, json!({"description": "Done"})),
            Answer::Jpeg => (
                200,
                json!({"description": "JPEG", "content": {"image/jpeg": {}}}),
            ),
            Answer::Text => (
                200,
                json!({"description": "Text", "content": {"text/plain": {}}}),
            ),
            Answer::Mp4 => {
                responses.insert(
                    "206".into(),
                    json!({"description": "The byte range asked for (Range: bytes=…)", "content": {"video/mp4": {}}}),
                );
                responses.insert(
                    "416".into(),
                    json!({"description": "The range lies outside the file"}),
                );
                (
                    200,
                    json!({"description": "MP4 (H.264 or H.265 as the camera sends it)", "content": {"video/mp4": {}}}),
                )
            }
            Answer::WebSocket => (101, json!({"description": "Switching to WebSocket"})),
        };
        responses.insert(code.to_string(), ok);
        let err = json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        if !matches!(e.body, Body::None) || !e.query.is_empty() {
            responses.insert("400".into(), err.clone());
            responses.insert("422".into(), err.clone());
        }
        if !matches!(e.body, Body::None) {
            // Over the body limit (2 MiB; a CSV import 5 MiB or 10,000 rows).
            responses.insert("413".into(), err.clone());
        }
        match e.access {
            Public => {
                op["security"] = json!([]);
            }
            Signed => {
                op["security"] = json!([]);
                op["x-signature"] = json!(
                    "X-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>"
                );
                responses.insert("401".into(), err.clone());
            }
            Login => {
                responses.insert("401".into(), err.clone());
                op["x-roles"] = json!(Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>());
            }
            Perm(p) => {
                responses.insert("401".into(), err.clone());
                responses.insert("403".into(), err.clone());
                op["x-permission"] = json!(p.as_str());
                op["x-roles"] = json!(
                    Role::ALL
                        .iter()
                        .filter(|r| allows(**r, p))
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                );
            }
        }
        if e.path.contains('{') {
            responses.insert("404".into(), err.clone());
        }
        op["responses"] = Value::Object(responses);
        let path = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        path[e.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "qianliyan (千里眼) API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Cameras, stream health and online rate, alerts and their lifecycle, delivery, rules, users. \
                            Authenticate with `Authorization: Bearer <token>` (a session token from /api/auth/login or a `qly_` API token) \
                            or the `qly_session` cookie."
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "fields": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "message": {"type": "string"}}}}
                    }
                }
            }
        },
        "paths": paths,
    })
}

fn operation_id(e: &Endpoint) -> String {
    let mut id = e.method.to_ascii_lowercase();
    for seg in e.path.split('/').filter(|s| !s.is_empty() && *s != "api") {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.extend(
            seg.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

fn names<T: serde::Serialize>(all: &[T]) -> Vec<Value> {
    all.iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect()
}

fn login_schema() -> Value {
    json!({"type": "object", "required": ["username", "password"], "additionalProperties": false, "properties": {
        "username": {"type": "string"}, "password": {"type": "string", "format": "password"}}})
}

fn user_schema() -> Value {
    json!({"type": "object", "properties": {
        "username": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "display_name": {"type": "string"},
        "role": {"enum": names(&Role::ALL)},
        "area": {"type": ["string", "null"], "description": "jurisdiction (required for dispatchers), e.g. 示范县/城关镇"},
        "password": {"type": "string", "format": "password", "minLength": crate::auth::MIN_PASSWORD_CHARS},
        "disabled": {"type": "boolean"}}})
}

fn token_schema() -> Value {
    json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}})
}

fn camera_schema() -> Value {
    json!({"type": "object", "required": ["id", "url"], "description": "the same keys as a [[cameras]] table (docs/configuration.md)",
        "properties": {
            "id": {"type": "string"}, "gb_code": {"type": "string"},
            "name": {"type": "string", "minLength": 1, "maxLength": crate::config::MAX_NAME_LEN},
            "url": {"type": "string", "format": "uri"}, "sub_url": {"type": "string"},
            "credentials": {"type": "string", "description": "name of a configured credential set"},
            "lat": {"type": "number"}, "lon": {"type": "number"}, "area_code": {"type": "string"},
            "area_path": {"type": "string", "description": "county/township/village"},
            "jurisdiction": {"type": "string"}, "priority": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}, "enabled": {"type": "boolean"},
            "transport": {"enum": ["tcp", "udp", "auto"]}, "analysis_fps": {"type": "number"},
            "keyframe_only": {"type": "boolean"}, "maintenance": {"type": "array"}}})
}

fn rules_schema() -> Value {
    json!({"type": "object", "description": "the rules file's shape (docs/rules.md); JSON null means not set", "properties": {
        "zones": {"type": "array", "items": {"type": "object", "required": ["id", "camera", "polygon"], "properties": {
            "id": {"type": "string"}, "camera": {"type": "string"}, "name": {"type": "string"},
            "polygon": {"type": "array", "minItems": 3, "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 2, "maxItems": 2}}}}},
        "rules": {"type": "array", "items": {"type": "object", "required": ["id", "camera", "kind"], "properties": {
            "id": {"type": "string"}, "camera": {"type": "string"},
            "kind": {"enum": names(&AlertType::ALL)},
            "severity": {"enum": names(&Severity::ALL)},
            "zone": {}, "line": {"type": "array"}, "schedule": {}, "cooldown": {"type": "string"}}}}}})
}

fn transition_schema() -> Value {
    json!({"type": "object", "required": ["to"], "properties": {
        "to": {"enum": names(&AlertState::ALL)},
        "note": {"type": "string", "maxLength": super::alert_api::MAX_NOTE_CHARS}}})
}

fn callback_schema() -> Value {
    json!({"type": "object", "required": ["alert_id", "case_id", "status"], "properties": {
        "alert_id": {"type": "string"}, "case_id": {"type": "string"}, "status": {"enum": ["dispatched", "closed"]}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_endpoint_with_its_roles() {
        let doc = openapi();
        for e in ENDPOINTS {
            let op = &doc["paths"][e.path][e.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", e.method, e.path);
            if let Perm(p) = e.access {
                let roles: Vec<&str> = op["x-roles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                for r in Role::ALL {
                    assert_eq!(
                        roles.contains(&r.as_str()),
                        allows(r, p),
                        "{} {}",
                        e.method,
                        e.path
                    );
                }
            }
        }
        let ids: std::collections::BTreeSet<String> = ENDPOINTS.iter().map(operation_id).collect();
        assert_eq!(ids.len(), ENDPOINTS.len(), "operation ids are unique");
        assert_eq!(
            doc["paths"]["/api/alerts/{id}/transition"]["post"]["requestBody"]["content"]["application/json"]["schema"]
                ["properties"]["to"]["enum"]
                .as_array()
                .map(Vec::len),
            Some(AlertState::ALL.len())
        );
    }
}
