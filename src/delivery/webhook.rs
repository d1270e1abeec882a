//! The delivery worker: drains the durable outbox to the case system and police stations over HTTPS
//! (rustls), signed, with an idempotency key; retries with exponential backoff + jitter until the
//! maximum age, then dead-letters.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::DeliveryConfig;
use super::store::{OutboxRow, OutboxState, StoreError, StoreHandle};
use crate::clock::Clock;

/// Rows attempted concurrently per pass.
const BATCH: usize = 32;
/// Idle connections kept per receiver between passes.
const IDLE_PER_HOST: usize = 4;
/// How often the worker looks for due rows when nothing wakes it.
const POLL: Duration = Duration::from_millis(250);
/// Longest pause between passes while they fail.
const PAUSE_MAX: Duration = Duration::from_secs(10);

pub use crate::config::Secret;

fn mac(secret: &Secret) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the error case cannot happen.
    match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`, the `X-Signature` header value.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// True when `header` is a valid `X-Signature` for `body` (constant-time compare).
pub fn verify(secret: &Secret, body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(bytes) = hex::decode(sig) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&bytes).is_ok()
}

/// Delay before attempt `attempts + 1`: `initial · 2^(attempts−1)` capped at `max`, then a random
/// factor in [0.5, 1] so a recovering receiver is not hit by every row at once.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let base = exp.min(max);
    base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be built (TLS roots); not retryable.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The delivery worker (one per service).
pub struct DeliveryWorker {
    store: StoreHandle,
    config: Arc<DeliveryConfig>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    /// Rows the receiver accepted whose `delivered` mark could not be written yet (store failing):
    /// marked first on the next pass and not sent again meanwhile.
    unmarked: std::sync::Mutex<std::collections::BTreeMap<i64, i64>>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Rows delivered.
    pub delivered: usize,
    /// Rows that failed and will be retried.
    pub retrying: usize,
    /// Rows dead-lettered.
    pub dead: usize,
}

impl DeliveryWorker {
    /// A worker over `store`.
    pub fn new(
        store: StoreHandle,
        config: Arc<DeliveryConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<DeliveryWorker, WebhookError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // A pass sends up to BATCH rows at once (a backlog after an outage, alerts and their
            // clips' messages together): keep a few connections per receiver afterwards, not one
            // per row of the largest burst (descriptors stay flat).
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(DeliveryWorker {
            store,
            config,
            clock,
            client,
            unmarked: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    fn now_ms(&self) -> i64 {
        crate::time::unix_ms(self.clock.wall())
    }

    /// Attempts every due row once (up to [`BATCH`] at a time, concurrently) and records each result
    /// as it arrives.
    pub async fn run_once(&self) -> Result<PassReport, WebhookError> {
        let mut report = PassReport::default();
        let pending: Vec<(i64, i64)> = crate::sync::lock(&self.unmarked)
            .iter()
            .map(|(id, at)| (*id, *at))
            .collect();
        for (id, at) in pending {
            match self.store.blocking(move |s| s.mark_delivered(id, at)).await {
                Ok(_) => report.delivered += 1,
                // Gone meanwhile (retention): nothing left to mark.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            crate::sync::lock(&self.unmarked).remove(&id);
        }
        loop {
            let now = self.now_ms();
            // Claimed for twice the request timeout and then some: another node's worker skips
            // these rows while this one sends them, and takes them over if this one stops.
            let lease = i64::try_from(self.config.request_timeout.as_millis())
                .unwrap_or(i64::MAX / 4)
                .saturating_mul(2)
                .saturating_add(5_000);
            let rows = self
                .store
                .blocking(move |s| s.claim_due(now, BATCH, lease))
                .await?;
            let n = rows.len();
            // Each result is recorded as soon as its answer comes: a slow endpoint does not hold
            // the others' marks back, and a crash re-sends only what was really in flight.
            let mut inflight: futures::stream::FuturesUnordered<_> =
                rows.into_iter().map(|r| self.attempt(r)).collect();
            while let Some((row, result)) = futures::StreamExt::next(&mut inflight).await {
                let now = self.now_ms();
                let id = row.id;
                match result {
                    Ok(()) => {
                        // Remembered first: if the mark cannot be written now, the row is marked
                        // on a later pass instead of being sent again.
                        crate::sync::lock(&self.unmarked).insert(id, now);
                        self.store
                            .blocking(move |s| s.mark_delivered(id, now))
                            .await?;
                        crate::sync::lock(&self.unmarked).remove(&id);
                        report.delivered += 1;
                    }
                    Err(error) => {
                        let delay = backoff(
                            row.attempts + 1,
                            self.config.backoff_initial,
                            self.config.backoff_max,
                        );
                        let max_age =
                            i64::try_from(self.config.max_age.as_millis()).unwrap_or(i64::MAX);
                        let next = now
                            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                        let err = error.clone();
                        let state = self
                            .store
                            .blocking(move |s| s.mark_failed(id, now, &err, max_age, next))
                            .await?;
                        if state == OutboxState::Dead {
                            tracing::error!(outbox_id = id, alert_id = %row.alert_id, sink = %row.sink,
                                error = %error, "delivery dead-lettered after the maximum age");
                            report.dead += 1;
                        } else {
                            tracing::warn!(outbox_id = id, alert_id = %row.alert_id, sink = %row.sink,
                                error = %error, retry_in_ms = delay.as_millis() as u64, "delivery failed");
                            report.retrying += 1;
                        }
                    }
                }
            }
            if n < BATCH {
                return Ok(report);
            }
        }
    }

    async fn attempt(&self, row: OutboxRow) -> (OutboxRow, Result<(), String>) {
        let mut req = self
            .client
            .post(&row.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", row.idempotency_key())
            .header("X-Message", &row.kind);
        if let Some(secret) = self.config.secret_for(&row.sink) {
            req = req.header("X-Signature", sign(secret, row.body.as_bytes()));
        }
        let result = match req.body(row.body.clone()).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
            // Without the URL: it may carry credentials.
            Err(e) => Err(describe(&e)),
        };
        (row, result)
    }

    /// Runs passes until `cancel`: after each `wake` (the lead notifies after an insert / retry) or
    /// every [`POLL`]. While passes fail (the store cannot be read or written) they are retried with a
    /// doubling pause up to [`PAUSE_MAX`], logged once when the failing starts and once when it ends.
    pub async fn run(self, wake: Arc<Notify>, cancel: CancellationToken) {
        let mut pause = POLL;
        let mut failing = false;
        loop {
            match self.run_once().await {
                Ok(_) => {
                    if failing {
                        tracing::info!("delivery passes work again");
                    }
                    failing = false;
                    pause = POLL;
                }
                Err(e) => {
                    if failing {
                        tracing::debug!(error = %e, "delivery pass failed again");
                    } else {
                        tracing::error!(error = %e, "delivery pass failed; retrying with a growing pause");
                    }
                    failing = true;
                    pause = (pause * 2).min(PAUSE_MAX);
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.notified(), if !failing => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_request() {
        "request"
    } else {
        "transport"
    };
    let mut msg = format!("{kind} error");
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_and_rejects_tampering() {
        let s = Secret::new("k");
        let sig = sign(&s, b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(&s, b"{}", Some(&sig)));
        assert!(!verify(&s, b"{ }", Some(&sig)));
        assert!(!verify(&Secret::new("j"), b"{}", Some(&sig)));
        assert!(!verify(&s, b"{}", None));
        assert!(!verify(&s, b"{}", Some("sha256=zz")));
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(1);
        for _ in 0..50 {
            let d1 = backoff(1, i, m);
            assert!(d1 >= Duration::from_millis(50) && d1 <= i);
            let d3 = backoff(3, i, m);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(backoff(30, i, m) <= m);
        }
    }
}
