//! Back-off for upstream servers that keep failing.
//!
//! Each session starts its own upstream session (for a stdio server, its
//! own child), so "restarting" a server that died means starting it again
//! for the next session. A server that dies right after it starts, or that
//! cannot be reached, would otherwise be started again on every new
//! session, as fast as clients retry. This module remembers failures per
//! server and refuses new upstream sessions for a growing delay (doubling
//! from [`Restarts::BASE`] to [`Restarts::MAX`]); the client is told when
//! to come back (503 with `Retry-After`). A session whose upstream ran for
//! [`Restarts::HEALTHY_AFTER`] before it died proves the server works: the
//! count starts again from one failure. Sessions that Warden or the client
//! ended are no failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of upstream servers, by server name.
#[derive(Debug, Default)]
pub struct Restarts {
    by_server: Mutex<HashMap<String, Failing>>,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    /// Failures in a row.
    failures: u32,
    /// No new upstream session before this.
    retry_at: Instant,
}

impl Restarts {
    /// The delay after the first failure.
    pub const BASE: Duration = Duration::from_millis(500);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(30);
    /// How long an upstream session must run for its death to count as a
    /// fresh failure rather than one more in a row.
    pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);

    /// `Err(wait)` while `server` may not be started again.
    pub fn check(&self, server: &str, now: Instant) -> Result<(), Duration> {
        let Ok(map) = self.by_server.lock() else {
            return Ok(());
        };
        match map.get(server) {
            Some(failing) if failing.retry_at > now => Err(failing.retry_at - now),
            _ => Ok(()),
        }
    }

    /// `server` could not be started or reached.
    pub fn failed(&self, server: &str, now: Instant) {
        self.count(server, now, false);
    }

    /// An upstream session of `server` that ran for `lived` died on its own.
    pub fn died(&self, server: &str, lived: Duration, now: Instant) {
        self.count(server, now, lived >= Self::HEALTHY_AFTER);
    }

    /// How many failures in a row `server` has now.
    pub fn failures(&self, server: &str) -> u32 {
        self.by_server
            .lock()
            .ok()
            .and_then(|map| map.get(server).map(|f| f.failures))
            .unwrap_or(0)
    }

    fn count(&self, server: &str, now: Instant, fresh: bool) {
        let Ok(mut map) = self.by_server.lock() else {
            return;
        };
        let failing = map.entry(server.to_owned()).or_insert(Failing {
            failures: 0,
            retry_at: now,
        });
        failing.failures = if fresh {
            1
        } else {
            failing.failures.saturating_add(1)
        };
        failing.retry_at = now + delay(failing.failures);
    }
}

/// The delay after `failures` failures in a row: doubling, capped.
fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Restarts::BASE
        .saturating_mul(1 << doublings)
        .min(Restarts::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_half_a_second_to_thirty_seconds() {
        let delays: Vec<u64> = (1..=9).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(delay(u32::MAX), Restarts::MAX);
    }

    #[test]
    fn a_failing_server_is_refused_until_its_delay_has_passed() {
        let restarts = Restarts::default();
        let t0 = Instant::now();
        assert_eq!(restarts.check("fs", t0), Ok(()));
        restarts.died("fs", Duration::from_millis(50), t0);
        assert_eq!(restarts.check("fs", t0), Err(Restarts::BASE));
        assert_eq!(restarts.check("other", t0), Ok(()), "per server");
        restarts.failed("fs", t0);
        assert_eq!(restarts.check("fs", t0), Err(2 * Restarts::BASE));
        assert_eq!(restarts.check("fs", t0 + 2 * Restarts::BASE), Ok(()));
    }

    #[test]
    fn a_session_that_ran_long_enough_starts_the_count_again() {
        let restarts = Restarts::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            restarts.died("fs", Duration::ZERO, t0);
        }
        assert_eq!(restarts.failures("fs"), 5);
        restarts.died("fs", Restarts::HEALTHY_AFTER, t0);
        assert_eq!(restarts.failures("fs"), 1);
        assert_eq!(restarts.check("fs", t0), Err(Restarts::BASE));
    }
}
