//! A target (one upstream container) and the count of requests in flight to it.
//!
//! The data path enters a target with [`Target::enter`], which hands back an
//! [`InFlight`] guard held until the response body (or the upgraded tunnel)
//! is finished. The control path retires a target after switching traffic
//! away from it and waits for [`Target::drained`]; once the drain timeout is
//! over it [`Target::cut`]s the tunnels still open.
//!
//! `enter` and `retire` form a handshake on two sequentially consistent
//! atomics: a request either sees the target retired (and picks again from
//! the new table) or the drain sees its in-flight count. So a request can
//! never slip to an old target after its drain has finished.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// One upstream (`ip:port`) that a service routes to.
#[derive(Debug)]
pub struct Target {
    /// Where requests go: `ip:port` or `name:port`.
    addr: String,
    /// Requests and tunnels open to this target now (the drain waits for 0).
    in_flight: AtomicU64,
    /// Set once traffic was switched away; no new request may enter.
    retired: AtomicBool,
    /// Woken whenever `in_flight` drops to 0.
    idle: Notify,
    /// Flipped to `true` when the drain timeout is over: tunnels close.
    cut: watch::Sender<bool>,
}

impl Target {
    /// A fresh target with nothing in flight.
    pub fn new(addr: impl Into<String>) -> Arc<Target> {
        Arc::new(Target {
            addr: addr.into(),
            in_flight: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            idle: Notify::new(),
            cut: watch::Sender::new(false),
        })
    }

    /// Where requests go.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Requests and tunnels open to this target now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether traffic was switched away from this target.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Counts one more request in flight, unless the target was retired
    /// (then the caller must pick again from the current table).
    pub fn enter(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(Arc::clone(self));
        if self.retired.load(Ordering::SeqCst) {
            return None; // dropping the guard gives the count back
        }
        Some(guard)
    }

    /// Refuses new requests from now on; call after the switch.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Waits until nothing is in flight any more.
    pub async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Tells the tunnels still open to this target to close.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Resolves once [`Target::cut`] was called.
    pub async fn until_cut(&self) {
        let mut rx = self.cut.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|cut| *cut).await;
    }
}

/// One request (or tunnel) in flight to a target; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Target>);

impl InFlight {
    /// The target this request went to.
    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn guards_count_requests_in_flight() {
        let target = Target::new("127.0.0.1:1");
        let a = target.enter().unwrap();
        let b = target.enter().unwrap();
        assert_eq!(target.in_flight(), 2);
        assert_eq!(a.target().addr(), "127.0.0.1:1");
        drop(a);
        drop(b);
        assert_eq!(target.in_flight(), 0);
    }

    #[test]
    fn a_retired_target_admits_no_new_request() {
        let target = Target::new("127.0.0.1:1");
        target.retire();
        assert!(target.enter().is_none());
        assert_eq!(target.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drained_waits_for_the_last_request() {
        let target = Target::new("127.0.0.1:1");
        let guard = target.enter().unwrap();
        target.retire();
        let waiter = {
            let target = Arc::clone(&target);
            tokio::spawn(async move { target.drained().await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("drained after the last request ended")
            .unwrap();
    }

    #[tokio::test]
    async fn cut_wakes_every_waiter() {
        let target = Target::new("127.0.0.1:1");
        let waiter = {
            let target = Arc::clone(&target);
            tokio::spawn(async move { target.until_cut().await })
        };
        target.cut();
        waiter.await.unwrap();
        target.until_cut().await; // already cut: returns at once
    }
}
