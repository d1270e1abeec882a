//! Time goes through [`Clock`] so health windows, cooldowns and backoff are testable without sleeping.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic now, for durations and deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock now, for timestamps shown to people and stored.
    fn wall(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Time from tokio's clock: the real time in production, and in tests it moves with tokio's paused
/// time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`, auto-advance while every task
/// waits), so the supervisor's sleeps, its stall watchdog and the health tracker share one timeline.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    mono0: tokio::time::Instant,
    wall0: SystemTime,
}

impl TokioClock {
    /// A clock starting at tokio's and the system's now.
    pub fn new() -> Self {
        TokioClock {
            mono0: tokio::time::Instant::now(),
            wall0: SystemTime::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn wall(&self) -> SystemTime {
        self.wall0 + (tokio::time::Instant::now() - self.mono0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(Instant, SystemTime)>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            inner: Arc::new(Mutex::new((Instant::now(), SystemTime::now()))),
        }
    }
}

impl ManualClock {
    /// Moves both clocks forward.
    pub fn advance(&self, by: Duration) {
        let mut g = crate::sync::lock(&self.inner);
        g.0 += by;
        g.1 += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        crate::sync::lock(&self.inner).0
    }
    fn wall(&self) -> SystemTime {
        crate::sync::lock(&self.inner).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::default();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now() - t0, Duration::from_secs(5));
    }
}
