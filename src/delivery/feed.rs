//! Command-hall WebSocket feed: replay from the store after the client's cursor, then live events
//! from a tokio broadcast. A client that falls behind the broadcast buffer is told
//! `{"kind":"resync","cursor":…}` and closed; the pipeline's `send` never waits for anyone.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use serde::Serialize;
use tokio::sync::broadcast;

use super::store::{AlertFilter, StoreHandle};
use crate::health::Transition;
use crate::rules::{Alert, AlertState, AlertType};

/// Replay page size.
const PAGE: usize = 500;
/// A client that does not take a message within this long is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One feed event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedEvent {
    /// A new alert (also what replay sends), with its `next_states`.
    #[serde(serialize_with = "serialize_boxed_view")]
    Alert(Box<Alert>),
    /// An alert's state / severity / case id / clip changed (live only; `GET /api/alerts/{id}` has the rest).
    AlertUpdate(AlertUpdate),
    /// A camera's health changed.
    Health(HealthEvent),
    /// An incident opened or took another alert (live only; `GET /api/incidents` has them all).
    Incident(super::store::Incident),
}

/// A camera's health change with where the camera is (so the feed can scope it by area).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HealthEvent {
    /// The transition (camera, at, from, to).
    #[serde(flatten)]
    pub transition: Transition,
    /// The camera's county/township/village.
    pub area_path: Vec<String>,
}

fn serialize_boxed_view<S: serde::Serializer>(a: &Alert, s: S) -> Result<S::Ok, S::Error> {
    super::store::serialize_view(a, s)
}

/// The changed parts of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertUpdate {
    /// Alert id.
    pub id: String,
    /// Current state.
    pub state: AlertState,
    /// Current severity.
    pub severity: crate::rules::Severity,
    /// Escalated.
    pub escalated: bool,
    /// Case id.
    pub case_id: Option<String>,
    /// The camera's county/township/village (the feed scopes updates by it).
    pub area_path: Vec<String>,
    /// Where the lifecycle may go from here.
    pub next_states: Vec<AlertState>,
    /// The evidence clip (its state changes from `recording` to `ready` or `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<crate::rules::AlertClip>,
}

impl From<&Alert> for AlertUpdate {
    fn from(a: &Alert) -> Self {
        AlertUpdate {
            id: a.id.clone(),
            state: a.state,
            severity: a.severity,
            escalated: a.escalated,
            case_id: a.case_id.clone(),
            area_path: a.area_path.clone(),
            next_states: crate::rules::next_states(a.state),
            clip: a.clip.clone(),
        }
    }
}

/// The feed's sender; the lead keeps one and hands clones around.
pub type FeedSender = broadcast::Sender<Arc<FeedEvent>>;

/// A feed subscription's query.
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    /// Last alert id the client saw; replay starts after it. None: live only.
    pub cursor: Option<String>,
    /// Alert filter (area prefix, type, minimum severity).
    pub filter: AlertFilter,
}

fn passes(filter: &AlertFilter, ev: &FeedEvent) -> bool {
    match ev {
        FeedEvent::Alert(a) => filter.matches(a),
        // Updates and health pass the area and jurisdiction filters; health also passes when the
        // client asked for video faults (the health side of alerts).
        FeedEvent::AlertUpdate(u) => filter.matches_area_path(&u.area_path.join("/")),
        FeedEvent::Incident(i) => {
            filter.alert_type.is_none_or(|t| t == i.alert_type)
                && filter.matches_area_path(&i.area_path.join("/"))
        }
        FeedEvent::Health(h) => {
            filter.alert_type.is_none_or(|t| t == AlertType::VideoFault)
                && filter.matches_area_path(&h.area_path.join("/"))
        }
    }
}

async fn send_json<T: Serialize>(socket: &mut WebSocket, v: &T) -> bool {
    let Ok(text) = serde_json::to_string(v) else {
        return false;
    };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

#[derive(Serialize)]
struct Resync<'a> {
    kind: &'static str,
    cursor: Option<&'a str>,
}

/// Serves one client until it leaves, lags or the feed closes. `rx` must be subscribed BEFORE the
/// replay query so nothing stored in between is missed; duplicates are skipped by store sequence.
pub async fn serve(
    mut socket: WebSocket,
    store: StoreHandle,
    mut rx: broadcast::Receiver<Arc<FeedEvent>>,
    query: FeedQuery,
    missed: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut cursor = query.cursor.clone();
    // Alerts replayed from the store, skipped when the live feed brings them again. (Not by
    // sequence: with several nodes, alerts reach the feed in commit order, not sequence order.)
    let mut replayed: std::collections::HashSet<String> = std::collections::HashSet::new();
    if cursor.is_some() {
        loop {
            let (c, f) = (cursor.clone(), query.filter.clone());
            let page = match store
                .blocking(move |s| s.after_cursor(c.as_deref(), &f, PAGE))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "feed replay failed");
                    let _ = send_json(
                        &mut socket,
                        &Resync {
                            kind: "resync",
                            cursor: cursor.as_deref(),
                        },
                    )
                    .await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            };
            let n = page.len();
            for a in page {
                replayed.insert(a.id.clone());
                cursor = Some(a.id.clone());
                if !send_json(&mut socket, &FeedEvent::Alert(Box::new(a))).await {
                    return;
                }
            }
            if n < PAGE {
                break;
            }
        }
    }
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if let FeedEvent::Alert(a) = ev.as_ref() {
                        if replayed.remove(&a.id) {
                            continue;
                        }
                        cursor = Some(a.id.clone());
                    }
                    if passes(&query.filter, &ev) && !send_json(&mut socket, ev.as_ref()).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    missed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(missed = n, "feed client too slow; told to resync");
                    let _ = send_json(&mut socket, &Resync { kind: "resync", cursor: cursor.as_deref() }).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
