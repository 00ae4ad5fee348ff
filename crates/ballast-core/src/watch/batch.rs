//! Looks gathered into rounds. A tick (or a few events) starts looks at
//! several hosts at once, and their answers are judged together, so that
//! a role down on all its hosts is seen as one problem. A batch waits for
//! its hosts no longer than its own wait, though: a host that has not
//! answered by then (a silent one, held until its deadline) is judged on
//! its own when it does answer. Pure: the loop says what started, what
//! arrived and what time it is.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

/// The batches still waiting for some of their hosts.
#[derive(Debug)]
pub struct Batches<T> {
    next: u64,
    open: BTreeMap<u64, Batch<T>>,
}

#[derive(Debug)]
struct Batch<T> {
    waiting: BTreeSet<String>,
    arrived: Vec<T>,
    until: Instant,
}

impl<T> Default for Batches<T> {
    fn default() -> Self {
        Batches {
            next: 0,
            open: BTreeMap::new(),
        }
    }
}

impl<T> Batches<T> {
    /// A batch of looks at `hosts`, judged together by `until` at the
    /// latest; its number, which each look carries back.
    pub fn open(&mut self, hosts: &BTreeSet<String>, until: Instant) -> u64 {
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Batch {
                waiting: hosts.clone(),
                arrived: Vec::new(),
                until,
            },
        );
        id
    }

    /// Takes in the look at `host` of batch `id`: the looks ready to judge
    /// now, if any (its whole batch, or this look alone when its batch was
    /// judged without it).
    pub fn arrived(&mut self, id: u64, host: &str, look: T) -> Option<Vec<T>> {
        let Some(batch) = self.open.get_mut(&id) else {
            return Some(vec![look]);
        };
        batch.waiting.remove(host);
        batch.arrived.push(look);
        if !batch.waiting.is_empty() {
            return None;
        }
        self.open.remove(&id).map(|b| b.arrived)
    }

    /// The looks of the batches whose wait is over at `now` (those that
    /// had any); their late hosts will come on their own.
    pub fn expired(&mut self, now: Instant) -> Vec<Vec<T>> {
        let over: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(id, _)| *id)
            .collect();
        over.into_iter()
            .filter_map(|id| self.open.remove(&id))
            .map(|b| b.arrived)
            .filter(|looks| !looks.is_empty())
            .collect()
    }

    /// When the next batch's wait is over.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|b| b.until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hosts(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_batch_is_judged_once_every_host_answered() {
        let now = Instant::now();
        let mut b = Batches::default();
        let id = b.open(&hosts(&["a", "b"]), now + Duration::from_secs(2));
        assert_eq!(b.arrived(id, "b", "b up"), None);
        assert_eq!(b.next_due(), Some(now + Duration::from_secs(2)));
        assert_eq!(b.arrived(id, "a", "a up"), Some(vec!["b up", "a up"]));
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn a_silent_host_holds_up_no_one_past_the_wait_and_is_judged_alone_later() {
        let now = Instant::now();
        let mut b = Batches::default();
        let id = b.open(&hosts(&["a", "b", "c"]), now + Duration::from_secs(2));
        assert_eq!(b.arrived(id, "a", "a up"), None);
        assert_eq!(b.arrived(id, "c", "c up"), None);
        assert!(b.expired(now + Duration::from_secs(1)).is_empty());
        assert_eq!(
            b.expired(now + Duration::from_secs(2)),
            vec![vec!["a up", "c up"]]
        );
        assert_eq!(b.arrived(id, "b", "b down"), Some(vec!["b down"]));
    }

    #[test]
    fn a_batch_nobody_answered_in_time_is_not_a_round() {
        let now = Instant::now();
        let mut b = Batches::<&str>::default();
        b.open(&hosts(&["a"]), now);
        assert!(b.expired(now).is_empty());
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn batches_overlap_without_mixing() {
        let now = Instant::now();
        let mut b = Batches::default();
        let tick = b.open(&hosts(&["a", "b"]), now + Duration::from_secs(2));
        let event = b.open(&hosts(&["c"]), now + Duration::from_secs(1));
        assert_eq!(b.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(b.arrived(tick, "a", 1), None);
        assert_eq!(b.arrived(event, "c", 3), Some(vec![3]));
        assert_eq!(b.arrived(tick, "b", 2), Some(vec![1, 2]));
    }
}
