//! The alert and delivery API: stored alerts, lifecycle transitions, snapshots, the outbox and dead
//! letters, the case system's signed callback, and the command-hall WebSocket feed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Permission, Principal, Role, allows};
use crate::delivery::feed::{AlertUpdate, FeedQuery};
use crate::delivery::{Delivery, FeedEvent, webhook};
use crate::rules::{AlertType, Severity};
use crate::store::{
    AlertFilter, AlertState, AlertView, CaseStatus, OutboxState, StoreError, parse_type,
};

/// Default and largest page of `GET /api/alerts`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// The API's state.
pub struct AlertApi {
    /// Store, feed, routing, secrets and the worker's wake-up.
    pub delivery: Arc<Delivery>,
}

impl AlertApi {
    /// Wraps the delivery side.
    pub fn new(delivery: Arc<Delivery>) -> Arc<AlertApi> {
        Arc::new(AlertApi { delivery })
    }
    fn now_ms(&self) -> i64 {
        crate::time::unix_ms(self.delivery.clock.wall())
    }
}

/// The alert, delivery and case-callback routes, each behind the guard of its
/// [`super::routes::ENDPOINTS`] entry; `.merge()` into the main router.
pub fn router(api: Arc<AlertApi>, auth: Arc<crate::auth::Auth>) -> axum::Router {
    use axum::routing::{get, post};
    let a = || api.clone();
    super::routes::Routes::new(auth)
        .add("GET", "/api/alerts", get(list).with_state(a()))
        .add("GET", "/api/alerts/feed", get(feed).with_state(a()))
        .add("GET", "/api/alerts/{id}", get(one).with_state(a()))
        .add(
            "GET",
            "/api/alerts/{id}/snapshot.jpg",
            get(snapshot).with_state(a()),
        )
        .add(
            "GET",
            "/api/alerts/{id}/clip.mp4",
            get(clip).with_state(a()),
        )
        .add(
            "POST",
            "/api/alerts/{id}/transition",
            post(transition).with_state(a()),
        )
        .add("GET", "/api/incidents", get(incidents).with_state(a()))
        .add("GET", "/api/incidents/{id}", get(incident).with_state(a()))
        .add(
            "POST",
            "/api/incidents/{id}/transition",
            post(incident_transition).with_state(a()),
        )
        .add("GET", "/api/delivery/outbox", get(outbox).with_state(a()))
        .add("GET", "/api/delivery/dead", get(dead).with_state(a()))
        .add(
            "POST",
            "/api/delivery/{id}/retry",
            post(retry).with_state(a()),
        )
        .add(
            "POST",
            "/api/case-callback",
            post(case_callback).with_state(a()),
        )
        .into_router()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The caller's jurisdiction: what their alert queries are narrowed to. A dispatcher without an area
/// sees nothing (fail closed).
fn scope_of(p: &Principal) -> Option<String> {
    match (&p.area, p.role) {
        (Some(a), _) => Some(a.clone()),
        (None, Role::Dispatcher) => Some("\u{2205}".into()),
        (None, _) => None,
    }
}

/// 404 for an alert outside the caller's jurisdiction (its existence is not theirs to know).
fn outside(p: &Principal, a: &crate::store::Alert) -> bool {
    let scope = AlertFilter {
        scope: scope_of(p),
        ..Default::default()
    };
    !scope.matches(a)
}

fn store_error(e: StoreError) -> Response {
    match &e {
        StoreError::NotFound { .. } => error(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::NotAllowed { .. } | StoreError::NotDead { .. } => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        _ => {
            tracing::error!(error = %e, "alert store failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "alert store failed")
        }
    }
}

/// A request value that does not parse: 422 naming the field.
struct Invalid(String);

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        error(StatusCode::UNPROCESSABLE_ENTITY, self.0)
    }
}

fn invalid(field: &str, msg: impl std::fmt::Display) -> Invalid {
    Invalid(format!("field `{field}`: {msg}"))
}

fn unprocessable(field: &str, msg: impl std::fmt::Display) -> Response {
    invalid(field, msg).into_response()
}

/// Most characters of an operator's note on a transition (a description).
pub const MAX_NOTE_CHARS: usize = 1024;

/// The `note` of a transition body: a string of at most [`MAX_NOTE_CHARS`] characters, or none.
fn note_of(v: &serde_json::Value) -> Result<String, Box<Response>> {
    match v.get("note") {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(s)) if s.chars().count() > MAX_NOTE_CHARS => {
            Err(Box::new(unprocessable(
                "note",
                format!(
                    "is {} characters long; at most {MAX_NOTE_CHARS}",
                    s.chars().count()
                ),
            )))
        }
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Box::new(unprocessable("note", "must be a string"))),
    }
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> String) -> String {
    all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
}

fn type_name(t: AlertType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Parses the shared query fields; `Err` is a 422 naming the field.
fn parse_filter(q: &HashMap<String, String>) -> Result<AlertFilter, Invalid> {
    let int = |k: &str| -> Result<Option<i64>, Invalid> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| invalid(k, format!("{v:?} is not unix milliseconds")))
            })
            .transpose()
    };
    let text = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let alert_type = text("type")
        .map(|t| {
            parse_type(&t).ok_or_else(|| {
                invalid(
                    "type",
                    format!(
                        "unknown type {t:?}; expected one of {}",
                        names(&AlertType::ALL, type_name)
                    ),
                )
            })
        })
        .transpose()?;
    let state = text("state")
        .map(|s| {
            AlertState::parse(&s).ok_or_else(|| {
                invalid(
                    "state",
                    format!(
                        "unknown state {s:?}; expected one of {}",
                        names(&AlertState::ALL, |s| s.as_str().into())
                    ),
                )
            })
        })
        .transpose()?;
    let min_severity = text("severity")
        .map(|s| {
            Severity::parse(&s).ok_or_else(|| {
                invalid(
                    "severity",
                    format!(
                        "unknown severity {s:?}; expected one of {}",
                        names(&Severity::ALL, |s| s.as_str().into())
                    ),
                )
            })
        })
        .transpose()?;
    Ok(AlertFilter {
        since_ms: int("since")?,
        until_ms: int("until")?,
        camera: text("camera"),
        // Digits are an administrative-division code prefix; anything else is an area path.
        area: text("area").filter(|a| a.chars().all(|c| c.is_ascii_digit())),
        area_path: text("area").filter(|a| !a.chars().all(|c| c.is_ascii_digit())),
        scope: None,
        alert_type,
        state,
        min_severity,
    })
}

/// A list's filter (the caller's jurisdiction on top of the query's) and row limit.
fn listing(q: &HashMap<String, String>, who: &Principal) -> Result<(AlertFilter, usize), Invalid> {
    let mut filter = parse_filter(q)?;
    filter.scope = scope_of(who);
    let limit = match q.get("limit").filter(|v| !v.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "limit",
                    format!("{v:?} is not a number in 1..={MAX_LIMIT}"),
                ));
            }
        },
    };
    Ok((filter, limit))
}

async fn list(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (filter, limit) = match listing(&q, &who) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match api
        .delivery
        .store
        .blocking(move |s| s.list(&filter, limit))
        .await
    {
        Ok(v) => Json(v.iter().map(AlertView).collect::<Vec<_>>()).into_response(),
        Err(e) => store_error(e),
    }
}

async fn one(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let id2 = id.clone();
    let r = api
        .delivery
        .store
        .blocking(move |s| Ok((s.get(&id2)?, s.events(&id2)?)))
        .await;
    match r {
        Ok((Some(a), events)) if !outside(&who, &a) => {
            let mut v = serde_json::to_value(AlertView(&a)).unwrap_or_default();
            v["events"] = serde_json::to_value(events).unwrap_or_default();
            Json(v).into_response()
        }
        Ok(_) => error(StatusCode::NOT_FOUND, format!("alert {id} not found")),
        Err(e) => store_error(e),
    }
}

async fn snapshot(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let store = api.delivery.store.clone();
    let id2 = id.clone();
    let path = match store.blocking(move |s| s.get(&id2)).await {
        Ok(Some(a)) if !outside(&who, &a) => {
            a.snapshot.as_deref().and_then(|n| store.snapshot_path(n))
        }
        Ok(_) => return error(StatusCode::NOT_FOUND, format!("alert {id} not found")),
        Err(e) => return store_error(e),
    };
    let Some(path) = path else {
        return error(StatusCode::NOT_FOUND, format!("alert {id} has no snapshot"));
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response(),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            format!("snapshot of alert {id} is no longer on disk"),
        ),
    }
}

/// The alert's clip file, served with byte ranges (tower-http's `ServeFile`: `Range`, `If-Range`,
/// 206 and 416), under the same jurisdiction check as the alert.
async fn clip(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    use crate::rules::ClipState;
    use tower::ServiceExt;
    let store = api.delivery.store.clone();
    let id2 = id.clone();
    let clip = match store.blocking(move |s| s.get(&id2)).await {
        Ok(Some(a)) if !outside(&who, &a) => a.clip,
        Ok(_) => return error(StatusCode::NOT_FOUND, format!("alert {id} not found")),
        Err(e) => return store_error(e),
    };
    let ready = match clip {
        None => Err("it has no clip (its camera keeps no pre-event buffer)".to_owned()),
        Some(c) => match c.state {
            ClipState::Ready => store
                .clip_path(&c.name)
                .filter(|p| p.is_file())
                .ok_or_else(|| "its clip is no longer on disk".to_owned()),
            ClipState::Recording => Err("its clip is still recording".to_owned()),
            ClipState::Failed => Err(format!(
                "it has no clip: {}",
                c.error.as_deref().unwrap_or("it could not be made")
            )),
            ClipState::Deleted => Err("its clip was deleted by retention".to_owned()),
        },
    };
    let path = match ready {
        Ok(p) => p,
        Err(why) => return error(StatusCode::NOT_FOUND, format!("alert {id}: {why}")),
    };
    match tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
    {
        Ok(r) => r.map(axum::body::Body::new),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the clip of alert {id} could not be read: {e}"),
        ),
    }
}

async fn transition(
    State(api): State<Arc<AlertApi>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object {\"to\", \"note\"}",
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let to = match v.get("to") {
        Some(serde_json::Value::String(s)) => match AlertState::parse(s) {
            Some(t) => t,
            None => {
                return unprocessable(
                    "to",
                    format!(
                        "unknown state {s:?}; expected one of {}",
                        names(&AlertState::ALL, |s| s.as_str().into())
                    ),
                );
            }
        },
        Some(_) => return unprocessable("to", "must be a string"),
        None => return unprocessable("to", "missing"),
    };
    let note = match note_of(&v) {
        Ok(note) => note,
        Err(response) => return *response,
    };
    // Operators handle every step; a police station only its own (接警, 到场, 办结).
    let may = allows(principal.role, Permission::HandleAlerts)
        || (allows(principal.role, Permission::PoliceActions) && to.is_police_step());
    if !may {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "role {} may not move an alert to {to}; it may set: accepted, arrived, resolved",
                principal.role
            ),
        );
    }
    // The lifecycle history shows the person; the audit log keeps the username.
    let who = if principal.display_name.trim().is_empty() {
        principal.username.clone()
    } else {
        principal.display_name.clone()
    };
    let scope = AlertFilter {
        scope: scope_of(&principal),
        ..Default::default()
    };
    let now = api.now_ms();
    let d = api.delivery.clone();
    let r =
        api.delivery
            .store
            .blocking(move |s| {
                let current = s.get(&id)?.filter(|a| scope.matches(a)).ok_or_else(|| {
                    StoreError::NotFound {
                        what: "alert",
                        id: id.clone(),
                    }
                })?;
                // An operator's dispatch goes to the camera's stations through the same outbox.
                let routes = if to == AlertState::Dispatched {
                    d.config.dispatch_routes(current.jurisdiction.as_deref())
                } else {
                    Vec::new()
                };
                s.transition(&id, to, &who, &note, &routes, now)
            })
            .await;
    match r {
        Ok(a) => {
            api.delivery
                .publish(FeedEvent::AlertUpdate(AlertUpdate::from(&a)));
            if to == AlertState::Dispatched {
                api.delivery.wake.notify_one();
            }
            Json(AlertView(&a)).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /api/incidents`: the alerts' filters (camera, area, type, severity, since, until), applied
/// to each incident's latest alert; dispatchers see their jurisdiction only.
async fn incidents(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (filter, limit) = match listing(&q, &who) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match api
        .delivery
        .store
        .blocking(move |s| s.incidents(&filter, limit))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

/// An incident outside the caller's jurisdiction is not theirs to know (404).
fn incident_outside(p: &Principal, i: &crate::store::Incident) -> bool {
    let scope = AlertFilter {
        scope: scope_of(p),
        ..Default::default()
    };
    !scope.matches_area_path(&i.area_path.join("/"))
}

/// `GET /api/incidents/{id}`: the incident and its alerts, oldest first.
async fn incident(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let id2 = id.clone();
    match api.delivery.store.blocking(move |s| s.incident(&id2)).await {
        Ok(Some((i, alerts))) if !incident_outside(&who, &i) => {
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            v["alerts"] = serde_json::to_value(alerts.iter().map(AlertView).collect::<Vec<_>>())
                .unwrap_or_default();
            Json(v).into_response()
        }
        Ok(_) => error(StatusCode::NOT_FOUND, format!("incident {id} not found")),
        Err(e) => store_error(e),
    }
}

/// `POST /api/incidents/{id}/transition {"to", "note"}`: every alert of the incident that may go
/// there goes (acknowledged, false_alarm or resolved: an operator handles the flood as one); the
/// others stay as they are. Answers the incident and the alerts that changed.
async fn incident_transition(
    State(api): State<Arc<AlertApi>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    const STEPS: [AlertState; 3] = [
        AlertState::Acknowledged,
        AlertState::FalseAlarm,
        AlertState::Resolved,
    ];
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object {\"to\", \"note\"}",
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let to = match v.get("to") {
        Some(serde_json::Value::String(s)) => match AlertState::parse(s) {
            Some(t) if STEPS.contains(&t) => t,
            _ => {
                return unprocessable(
                    "to",
                    format!(
                        "{s:?} is not a step for a whole incident; expected one of {}",
                        names(&STEPS, |s| s.as_str().into())
                    ),
                );
            }
        },
        Some(_) => return unprocessable("to", "must be a string"),
        None => return unprocessable("to", "missing"),
    };
    let note = match note_of(&v) {
        Ok(note) => note,
        Err(response) => return *response,
    };
    if !allows(principal.role, Permission::HandleAlerts) {
        return error(
            StatusCode::FORBIDDEN,
            format!("role {} may not handle incidents", principal.role),
        );
    }
    let who = if principal.display_name.trim().is_empty() {
        principal.username.clone()
    } else {
        principal.display_name.clone()
    };
    let now = api.now_ms();
    let id2 = id.clone();
    let r = api
        .delivery
        .store
        .blocking(move |s| {
            let card = s.incident_card(&id2)?;
            match card {
                Some(i) if !incident_outside(&principal, &i) => {}
                _ => {
                    return Err(StoreError::NotFound {
                        what: "incident",
                        id: id2.clone(),
                    });
                }
            }
            let changed = s.transition_incident(&id2, to, &who, &note, now)?;
            Ok((s.incident_card(&id2)?, changed))
        })
        .await;
    match r {
        Ok((card, changed)) => {
            for a in &changed {
                api.delivery
                    .publish(FeedEvent::AlertUpdate(AlertUpdate::from(a)));
            }
            if let Some(i) = &card {
                api.delivery.publish(FeedEvent::Incident(i.clone()));
            }
            Json(serde_json::json!({
                "incident": card,
                "changed": changed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn outbox_list(
    api: &AlertApi,
    state: Option<OutboxState>,
    q: &HashMap<String, String>,
) -> Response {
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    match api
        .delivery
        .store
        .blocking(move |s| s.outbox(state, limit))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

async fn outbox(
    State(api): State<Arc<AlertApi>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = match q.get("state").map(String::as_str) {
        None | Some("") => None,
        Some("pending") => Some(OutboxState::Pending),
        Some("delivered") => Some(OutboxState::Delivered),
        Some("dead") => Some(OutboxState::Dead),
        Some(s) => {
            return unprocessable(
                "state",
                format!("unknown state {s:?}; expected pending, delivered or dead"),
            );
        }
    };
    outbox_list(&api, state, &q).await
}

async fn dead(
    State(api): State<Arc<AlertApi>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    outbox_list(&api, Some(OutboxState::Dead), &q).await
}

async fn retry(State(api): State<Arc<AlertApi>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return unprocessable("id", format!("{id:?} is not an outbox row id"));
    };
    let now = api.now_ms();
    match api.delivery.store.blocking(move |s| s.retry(id, now)).await {
        Ok(row) => {
            tracing::info!(outbox_id = id, alert_id = %row.alert_id, "dead letter retried by operator");
            api.delivery.wake.notify_one();
            Json(row).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn case_callback(
    State(api): State<Arc<AlertApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = api.delivery.config.callback_secret() else {
        return error(StatusCode::NOT_FOUND, "no case system is configured");
    };
    let sig = headers.get("x-signature").and_then(|h| h.to_str().ok());
    if !webhook::verify(secret, &body, sig) {
        tracing::warn!("case callback with a missing or bad signature rejected");
        return error(StatusCode::UNAUTHORIZED, "missing or bad X-Signature");
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let field = |k: &str| -> Result<String, Invalid> {
        match v.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(invalid(k, "must be a non-empty string")),
            None => Err(invalid(k, "missing")),
        }
    };
    let (alert_id, case_id, status) = match (field("alert_id"), field("case_id"), field("status")) {
        (Ok(a), Ok(c), Ok(s)) => (a, c, s),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r.into_response(),
    };
    let status = match status.as_str() {
        "dispatched" => CaseStatus::Dispatched,
        "closed" => CaseStatus::Closed,
        s => {
            return unprocessable(
                "status",
                format!("unknown status {s:?}; expected dispatched or closed"),
            );
        }
    };
    let now = api.now_ms();
    match api
        .delivery
        .store
        .blocking(move |s| s.apply_case_status(&alert_id, &case_id, status, now))
        .await
    {
        Ok(a) => {
            api.delivery
                .publish(FeedEvent::AlertUpdate(AlertUpdate::from(&a)));
            Json(a).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn feed(
    State(api): State<Arc<AlertApi>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let mut filter = match parse_filter(&q) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    filter.scope = scope_of(&who);
    let query = FeedQuery {
        cursor: q.get("cursor").filter(|c| !c.is_empty()).cloned(),
        filter,
    };
    // Subscribed before the upgrade completes, so replay and live overlap rather than leave a gap.
    let rx = api.delivery.feed.subscribe();
    let store = api.delivery.store.clone();
    let missed = api.delivery.feed_missed.clone();
    ws.on_upgrade(move |socket| crate::delivery::feed::serve(socket, store, rx, query, missed))
}
