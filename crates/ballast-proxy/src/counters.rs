//! A service's request counters: how many requests the proxy answered for
//! it, and how many of those with a 5xx status (the target's own, and the
//! proxy's 502, 503 and 504 alike). Reported by the admin `status`, which
//! ballast watch turns into Prometheus counters.
//!
//! The counters are plain atomics, so counting takes no lock on the data
//! path. They live in memory only: a new proxy process (a restart, or a
//! takeover) starts them again from 0, and so does removing a service and
//! deploying it again. Prometheus reads a counter that went down as a
//! reset, which is what it is.

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::StatusCode;

/// One service's counters, shared by every snapshot of the service.
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Requests answered, whatever the status.
    requests: AtomicU64,
    /// Of those, the ones answered with a 5xx status.
    responses_5xx: AtomicU64,
}

/// What the counters say at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub requests: u64,
    pub responses_5xx: u64,
}

impl RequestCounters {
    /// Counts one request answered with `status`.
    pub fn record(&self, status: StatusCode) {
        // Relaxed: the two counts are read separately anyway, and a
        // reader seeing one before the other is off by one for an instant.
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            self.responses_5xx.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn read(&self) -> Counted {
        Counted {
            requests: self.requests.load(Ordering::Relaxed),
            responses_5xx: self.responses_5xx.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_counts_and_only_5xx_count_as_errors() {
        let c = RequestCounters::default();
        for status in [200, 204, 301, 404, 413, 500, 502, 503, 504] {
            c.record(StatusCode::from_u16(status).unwrap());
        }
        assert_eq!(
            c.read(),
            Counted {
                requests: 9,
                responses_5xx: 4
            }
        );
    }
}
