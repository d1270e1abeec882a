//! Login limiter: at most [`MAX_FAILURES`] failed logins per username **from one address**, and at
//! most [`MAX_ADDRESS_FAILURES`] per address over all usernames, in a sliding [`WINDOW`]; beyond
//! that, attempts are refused before the password is checked. A user locked out from one address
//! (someone guessing behind a shared NAT, or a colleague's typos) still logs in from another, and a
//! colleague behind the same address is not locked out by someone else's failures until the
//! address's own, much higher, ceiling.
//!
//! An attempt counts as a failure from the moment it begins, so parallel guesses cannot slip past
//! the count; a success takes its own entries back and clears that user's history from that
//! address. Each map holds at most [`MAX_KEYS`] keys: when full, expired keys go first, then the
//! key idle longest.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// Failures allowed per username from one address in one window.
pub const MAX_FAILURES: usize = 5;
/// Failures allowed per address (all usernames) in one window.
pub const MAX_ADDRESS_FAILURES: usize = 50;
/// The sliding window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most (username, address) pairs (and, separately, addresses) remembered.
pub const MAX_KEYS: usize = 10_000;

/// Counts failed logins per (username, address) and per address (in memory).
#[derive(Debug)]
pub struct LoginLimiter {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

type UserKey = (String, Option<IpAddr>);

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<UserKey, VecDeque<Instant>>,
    ips: HashMap<IpAddr, VecDeque<Instant>>,
}

/// An attempt in progress (counted as a failure until [`LoginLimiter::succeeded`]).
#[derive(Debug)]
pub struct Attempt {
    key: UserKey,
    at: Instant,
}

impl LoginLimiter {
    /// An empty limiter on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        LoginLimiter {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Starts an attempt, or says how long to wait when the username is limited from this address
    /// or the address is limited.
    pub fn begin(&self, username: &str, ip: Option<IpAddr>) -> Result<Attempt, Duration> {
        let now = self.clock.now();
        let key: UserKey = (username.to_owned(), ip);
        let mut g = crate::sync::lock(&self.inner);
        let wait_user = wait(g.users.get_mut(&key), now, MAX_FAILURES);
        let wait_ip = ip.and_then(|ip| wait(g.ips.get_mut(&ip), now, MAX_ADDRESS_FAILURES));
        if let Some(w) = wait_user.max(wait_ip) {
            return Err(w);
        }
        record(&mut g.users, key.clone(), now, MAX_FAILURES);
        if let Some(ip) = ip {
            record(&mut g.ips, ip, now, MAX_ADDRESS_FAILURES);
        }
        Ok(Attempt { key, at: now })
    }

    /// The attempt succeeded: forget the user's failures from this address and this attempt's
    /// address entry.
    pub fn succeeded(&self, a: Attempt) {
        let mut g = crate::sync::lock(&self.inner);
        g.users.remove(&a.key);
        if let Some(ip) = a.key.1
            && let Some(q) = g.ips.get_mut(&ip)
        {
            if let Some(pos) = q.iter().rposition(|t| *t == a.at) {
                q.remove(pos);
            }
            if q.is_empty() {
                g.ips.remove(&ip);
            }
        }
    }
}

/// Drops expired entries; `Some(wait)` when the key is at its `limit`.
fn wait(q: Option<&mut VecDeque<Instant>>, now: Instant, limit: usize) -> Option<Duration> {
    let q = q?;
    while q
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        q.pop_front();
    }
    if q.len() < limit {
        return None;
    }
    // The oldest entry in the window frees a slot when it expires.
    let oldest = q[q.len() - limit];
    let left = WINDOW.saturating_sub(now.saturating_duration_since(oldest));
    Some(left.max(Duration::from_secs(1)))
}

fn record<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    key: K,
    now: Instant,
    limit: usize,
) {
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.retain(|_, q| {
            q.back()
                .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
        });
        if map.len() >= MAX_KEYS {
            let idle_longest = map
                .iter()
                .min_by_key(|(_, q)| q.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(k) = idle_longest {
                map.remove(&k);
            }
        }
    }
    let q = map.entry(key).or_default();
    q.push_back(now);
    // Never more than the limit is needed to decide.
    while q.len() > limit {
        q.pop_front();
    }
}

/// Whole seconds for `Retry-After`, rounded up.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
