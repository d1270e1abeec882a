//! The case system the scenarios deliver to: an HTTP receiver on loopback that verifies each
//! delivery's HMAC signature, processes each `Idempotency-Key` once and counts the duplicates.
//! It can be taken down: new connections are closed at once and requests on kept-alive ones get
//! `503`, as a case system behind a load balancer looks while it is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::ScenarioError;
use crate::delivery::Secret;
use crate::delivery::webhook::verify;

#[derive(Debug)]
struct Shared {
    secret: Secret,
    down: AtomicBool,
    /// Accepted deliveries per idempotency key.
    deliveries: Mutex<HashMap<String, u64>>,
    requests: AtomicU64,
    refused: AtomicU64,
    closed_connections: AtomicU64,
    bad_signatures: AtomicU64,
}

/// What the receiver saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiverStats {
    /// HTTP requests that reached the handler.
    pub requests: u64,
    /// Distinct idempotency keys accepted.
    pub unique: u64,
    /// Accepted deliveries of a key already accepted.
    pub duplicates: u64,
    /// Requests answered `503` while down.
    pub refused_while_down: u64,
    /// Connections closed unanswered while down.
    pub connections_closed_while_down: u64,
    /// Requests whose `X-Signature` did not verify.
    pub bad_signatures: u64,
}

/// A running receiver; stops when dropped.
pub struct CaseReceiver {
    /// `http://127.0.0.1:PORT/case`.
    pub url: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

struct Downable {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for Downable {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) if !self.shared.down.load(Ordering::SeqCst) => return (s, a),
                Ok(_) => {
                    self.shared
                        .closed_connections
                        .fetch_add(1, Ordering::Relaxed);
                }
                // Out of descriptors and the like: wait a little, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

async fn receive(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    s.requests.fetch_add(1, Ordering::Relaxed);
    if s.down.load(Ordering::SeqCst) {
        s.refused.fetch_add(1, Ordering::Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let sig = headers.get("x-signature").and_then(|h| h.to_str().ok());
    if !verify(&s.secret, &body, sig) {
        s.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
    else {
        return StatusCode::BAD_REQUEST;
    };
    let mut d = s.deliveries.lock().unwrap_or_else(|p| p.into_inner());
    *d.entry(key).or_insert(0) += 1;
    StatusCode::OK
}

impl CaseReceiver {
    /// Starts on a free loopback port; deliveries must be signed with `secret`.
    pub async fn start(secret: &str) -> Result<CaseReceiver, ScenarioError> {
        let inner = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ScenarioError::Setup(format!("case receiver: {e}")))?;
        let addr = inner
            .local_addr()
            .map_err(|e| ScenarioError::Setup(format!("case receiver: {e}")))?;
        let shared = Arc::new(Shared {
            secret: Secret::new(secret),
            down: AtomicBool::new(false),
            deliveries: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closed_connections: AtomicU64::new(0),
            bad_signatures: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(shared.clone());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let listener = Downable {
            inner,
            shared: shared.clone(),
        };
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "case receiver stopped");
            }
        });
        Ok(CaseReceiver {
            url: format!("http://{addr}/case"),
            shared,
            cancel,
        })
    }

    /// Takes the case system down (`true`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Keys accepted so far, with how often each was accepted.
    pub fn deliveries(&self) -> HashMap<String, u64> {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counters now.
    pub fn stats(&self) -> ReceiverStats {
        let d = self.deliveries();
        ReceiverStats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            unique: d.len() as u64,
            duplicates: d.values().map(|n| n.saturating_sub(1)).sum(),
            refused_while_down: self.shared.refused.load(Ordering::Relaxed),
            connections_closed_while_down: self.shared.closed_connections.load(Ordering::Relaxed),
            bad_signatures: self.shared.bad_signatures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for CaseReceiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
