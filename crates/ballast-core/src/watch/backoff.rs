//! The backoff between restarts of one container: capped exponential
//! (`initial`, doubling, at most `max`), started over once the container
//! has stayed healthy for `reset_after`, as Kubernetes does for crashing
//! pods. Pure: times are milliseconds passed in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Millis;

/// The policy, from `watch.backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

/// Restarts watch made of one container, for the backoff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Restarts since the last reset.
    pub attempts: u32,
    /// When the last one was made.
    pub last: Option<Millis>,
}

impl Policy {
    /// The wait after the `n`-th restart (1-based) before the next one:
    /// `initial`, then twice as long each time, never more than `max`.
    pub fn wait_after(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Backoff {
    /// When the next restart may be made: now for the first.
    pub fn next_at(&self, policy: &Policy) -> Millis {
        match self.last {
            None => 0,
            Some(last) => last + millis(policy.wait_after(self.attempts)),
        }
    }

    /// Whether a restart may be made at `now`.
    pub fn ready(&self, policy: &Policy, now: Millis) -> bool {
        now >= self.next_at(policy)
    }

    /// Records a restart made at `now`.
    pub fn record(&mut self, now: Millis) {
        self.attempts += 1;
        self.last = Some(now);
    }

    /// Starts over if the container has been healthy since `healthy_since`
    /// for `reset_after` at `now`.
    pub fn settle(&mut self, policy: &Policy, healthy_since: Option<Millis>, now: Millis) {
        if healthy_since.is_some_and(|s| now.saturating_sub(s) >= millis(policy.reset_after)) {
            *self = Backoff::default();
        }
    }
}

pub(crate) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> Policy {
        Policy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }

    #[test]
    fn waits_double_from_ten_seconds_up_to_five_minutes() {
        let p = default_policy();
        let waits: Vec<u64> = (1..=8).map(|n| p.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(p.wait_after(200), Duration::from_secs(300));
    }

    #[test]
    fn the_first_restart_is_at_once_then_each_waits_its_turn() {
        let p = default_policy();
        let mut b = Backoff::default();
        assert!(b.ready(&p, 0));
        b.record(1_000);
        assert_eq!(b.next_at(&p), 11_000);
        assert!(!b.ready(&p, 10_999));
        assert!(b.ready(&p, 11_000));
        b.record(11_000);
        assert_eq!(b.next_at(&p), 31_000);
        b.record(31_000);
        assert_eq!(b.next_at(&p), 71_000);
    }

    #[test]
    fn ten_minutes_of_health_start_the_backoff_over() {
        let p = default_policy();
        let mut b = Backoff::default();
        b.record(0);
        b.record(10_000);
        b.settle(&p, Some(20_000), 20_000 + 599_999);
        assert_eq!(b.attempts, 2);
        b.settle(&p, None, 10_000_000);
        assert_eq!(b.attempts, 2);
        b.settle(&p, Some(20_000), 20_000 + 600_000);
        assert_eq!(b, Backoff::default());
    }
}
