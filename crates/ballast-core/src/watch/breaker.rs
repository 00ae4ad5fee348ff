//! The circuit breaker of one container: the restarts seen within a window
//! (watch's own and Docker's, by its restart count). Once they reach the
//! limit, the breaker opens: watch stops restarting the container and its
//! incident says so; it closes again only once the container has stayed
//! healthy (its incident recovered). Pure: times are milliseconds passed in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::millis;
use super::Millis;

/// The limit, from `watch.breaker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub restarts: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// When each restart within the window happened.
    pub restarts: Vec<Millis>,
    /// Open: watch leaves the container alone.
    pub open: bool,
}

impl Breaker {
    /// Records `count` restarts seen at `now`, forgets those out of the
    /// window, and opens when the limit is reached. Returns whether it
    /// opened just now.
    pub fn record(&mut self, limit: &Limit, count: u32, now: Millis) -> bool {
        self.restarts
            .extend(std::iter::repeat_n(now, count as usize));
        self.forget(limit, now);
        if !self.open && self.restarts.len() >= limit.restarts as usize {
            self.open = true;
            return true;
        }
        false
    }

    /// Drops restarts older than the window.
    pub fn forget(&mut self, limit: &Limit, now: Millis) {
        let window = millis(limit.window);
        self.restarts.retain(|t| now.saturating_sub(*t) < window);
    }

    /// Restarts within the window at `now`.
    pub fn recent(&self, limit: &Limit, now: Millis) -> usize {
        let window = millis(limit.window);
        self.restarts
            .iter()
            .filter(|t| now.saturating_sub(**t) < window)
            .count()
    }

    /// Closes it: the container recovered.
    pub fn close(&mut self) {
        self.open = false;
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn limit() -> Limit {
        Limit {
            restarts: 5,
            window: Duration::from_secs(600),
        }
    }

    #[test]
    fn five_restarts_in_ten_minutes_open_it_once() {
        let mut b = Breaker::default();
        for i in 0..4 {
            assert!(!b.record(&limit(), 1, i * MIN));
        }
        assert!(!b.open);
        assert!(b.record(&limit(), 1, 4 * MIN));
        assert!(b.open);
        assert!(!b.record(&limit(), 1, 5 * MIN), "opens only once");
        b.close();
        assert!(!b.open && b.restarts.is_empty());
    }

    #[test]
    fn restarts_out_of_the_window_do_not_count() {
        let mut b = Breaker::default();
        for i in 0..4 {
            b.record(&limit(), 1, i * 3 * MIN);
        }
        // The first (at 0) is 12 minutes old at the fifth.
        assert!(!b.record(&limit(), 1, 12 * MIN));
        assert_eq!(b.recent(&limit(), 12 * MIN), 4);
        // Docker's own restarts count too, several at once.
        assert!(b.record(&limit(), 2, 13 * MIN));
    }
}
