//! Whether the alert store is taking writes. The alert stage reports each attempt; the API
//! (`GET /api/system`), `/metrics` and the command hall's banner read it; sampling reads it to stop
//! handing frames to analysis while alerts wait (`store_blocked`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::sync::lock;

/// The alert store's write state, shared by the alert stage and its readers.
#[derive(Debug, Default)]
pub struct StoreStatus {
    failing: AtomicBool,
    failures: AtomicU64,
    waiting: AtomicU64,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default, Clone)]
struct Detail {
    since_ms: Option<i64>,
    error: Option<String>,
}

/// What `GET /api/system` shows of the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStatusView {
    /// `ok` or `failing`.
    pub state: &'static str,
    /// When the store started failing (unix ms), while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// The last error, while it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed store attempts since start (each is retried until it succeeds).
    pub failures_total: u64,
    /// Alerts detected and waiting to be stored now.
    pub waiting: u64,
}

impl StoreStatus {
    /// An attempt failed with `error` at `now_ms`; true when this starts a failing period.
    pub fn failed(&self, error: &str, now_ms: i64) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut d = lock(&self.detail);
        d.error = Some(error.to_owned());
        let started = !self.failing.swap(true, Ordering::SeqCst);
        if started {
            d.since_ms = Some(now_ms);
        }
        started
    }

    /// An attempt succeeded; true when this ends a failing period.
    pub fn succeeded(&self) -> bool {
        if !self.failing.load(Ordering::SeqCst) {
            return false;
        }
        let mut d = lock(&self.detail);
        *d = Detail::default();
        self.failing.swap(false, Ordering::SeqCst)
    }

    /// True while writes fail.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Alerts detected and not yet stored (the one being tried and those queued behind it).
    pub fn set_waiting(&self, n: u64) {
        self.waiting.store(n, Ordering::Relaxed);
    }

    /// A consistent view for the API and metrics.
    pub fn view(&self) -> StoreStatusView {
        let d = lock(&self.detail).clone();
        let failing = self.is_failing();
        StoreStatusView {
            state: if failing { "failing" } else { "ok" },
            since_ms: d.since_ms.filter(|_| failing),
            error: d.error.filter(|_| failing),
            failures_total: self.failures.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_period_starts_once_and_ends_once() {
        let s = StoreStatus::default();
        assert_eq!(s.view().state, "ok");
        assert!(s.failed("database or disk is full", 1_000));
        assert!(!s.failed("database or disk is full", 2_000));
        let v = s.view();
        assert_eq!(
            (v.state, v.since_ms, v.failures_total),
            ("failing", Some(1_000), 2)
        );
        assert_eq!(v.error.as_deref(), Some("database or disk is full"));
        assert!(s.succeeded());
        assert!(!s.succeeded());
        let v = s.view();
        assert_eq!((v.state, v.since_ms, v.error), ("ok", None, None));
        assert_eq!(v.failures_total, 2);
        s.set_waiting(3);
        assert_eq!(s.view().waiting, 3);
    }
}
