//! The bounded queues between stages, as one table (a leaf: it knows no stage). `app.rs` creates each
//! queue and describes it here: between which stages it sits, how many items it holds, what it does
//! when full ([`FullPolicy`]), and how to read what it dropped, by reason. `/metrics` exports the table
//! (`qly_queue_capacity{queue,policy}`, `qly_queue_dropped_total{queue,reason}`) and
//! docs/architecture.md lists it.

use std::sync::Arc;

/// What a bounded queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// The sender waits: nothing is dropped (alerts, ledger transitions, model outputs).
    Block,
    /// The oldest item makes room for the new one (frames: the newest picture matters most).
    DropOldest,
    /// The new item is dropped (a hand-over that must never stall its sender).
    DropNewest,
}

impl FullPolicy {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            FullPolicy::Block => "block",
            FullPolicy::DropOldest => "drop_oldest",
            FullPolicy::DropNewest => "drop_newest",
        }
    }
}

/// Reads a queue's drops so far, by reason (cumulative counters).
pub type DropReader = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// One queue between two stages.
#[derive(Clone)]
pub struct QueueInfo {
    /// Metrics label, `<from>_to_<to>` style.
    pub name: &'static str,
    /// The stage that sends.
    pub from: &'static str,
    /// The stage that receives.
    pub to: &'static str,
    /// Items it holds (per worker or per client where the queue is one of several alike).
    pub capacity: usize,
    /// What it does when full.
    pub policy: FullPolicy,
    /// What it dropped, by reason (empty for [`FullPolicy::Block`]).
    pub dropped: DropReader,
}

impl std::fmt::Debug for QueueInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueInfo")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl QueueInfo {
    /// A queue whose sender waits when it is full (it drops nothing).
    pub fn blocking(
        name: &'static str,
        from: &'static str,
        to: &'static str,
        capacity: usize,
    ) -> QueueInfo {
        QueueInfo {
            name,
            from,
            to,
            capacity,
            policy: FullPolicy::Block,
            dropped: Arc::new(Vec::new),
        }
    }

    /// A queue that drops by `policy`, its drops read by `dropped`.
    pub fn dropping(
        name: &'static str,
        from: &'static str,
        to: &'static str,
        capacity: usize,
        policy: FullPolicy,
        dropped: DropReader,
    ) -> QueueInfo {
        QueueInfo {
            name,
            from,
            to,
            capacity,
            policy,
            dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_queue_reports_no_drops_and_a_dropping_one_its_reasons() {
        let q = QueueInfo::blocking("candidates", "rules", "alert", 256);
        assert_eq!((q.policy.as_str(), (q.dropped)()), ("block", vec![]));
        let n = Arc::new(std::sync::atomic::AtomicU64::new(3));
        let m = n.clone();
        let q = QueueInfo::dropping(
            "analysis_handover",
            "sample",
            "batch",
            256,
            FullPolicy::DropNewest,
            Arc::new(move || vec![("full", m.load(std::sync::atomic::Ordering::Relaxed))]),
        );
        assert_eq!(q.policy.as_str(), "drop_newest");
        assert_eq!((q.dropped)(), [("full", 3)]);
    }
}
