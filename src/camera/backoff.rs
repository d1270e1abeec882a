//! Jittered exponential backoff: initial, doubling, capped; "equal jitter" (each delay uniform in the
//! upper half of its ceiling) keeps 1,300 cameras that failed together (a switch reboot) from
//! reconnecting in lock-step while never retrying sooner than half the ceiling.

use std::time::Duration;

/// Reconnect delays for one camera.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The un-jittered delay of the next attempt.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay, `ceiling/2 + u·ceiling/2` for a uniform `u` in [0, 1) (the caller's random
    /// source, injected so tests are exact), then the ceiling doubles.
    pub fn next_delay(&mut self, u: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(u.clamp(0.0, 1.0))
    }

    /// After a session that delivered media: start again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay(rand::random::<f64>());
                assert!(d >= c / 2 && d <= c, "{d:?} within [{:?}, {c:?}]", c / 2);
                c.as_secs()
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.next_delay(0.0), Duration::from_secs(15));
        assert_eq!(b.next_delay(1.0), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }
}
