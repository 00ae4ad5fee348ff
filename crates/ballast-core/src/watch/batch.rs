//! Looks gathered into rounds. A tick (or a few events) starts looks at
//! several hosts at once, and their answers are judged together, so that
//! a role down on all its hosts is seen as one problem. A batch waits for
//! its hosts no longer than its own wait, though: a host that has not
//! answered by then (a silent one, held until its deadline) is judged on
//! its own when it does answer, and holds up no other host's verdict.
//! Pure: the loop says what started, what arrived and what time it is.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Looks to judge together.
#[derive(Debug, PartialEq, Eq)]
pub struct Ready<T> {
    pub looks: Vec<T>,
    /// Every host was asked (a tick), whether or not all answered in time.
    pub tick: bool,
}

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
    tick: bool,
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
    pub fn open(&mut self, hosts: &BTreeSet<String>, until: Instant, tick: bool) -> u64 {
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Batch {
                waiting: hosts.clone(),
                arrived: Vec::new(),
                until,
                tick,
            },
        );
        id
    }

    /// Takes in the look at `host` of batch `id`: what is ready to judge
    /// now, if anything (its whole batch, or this look alone when its
    /// batch was judged without it).
    pub fn arrived(&mut self, id: u64, host: &str, look: T) -> Option<Ready<T>> {
        let Some(batch) = self.open.get_mut(&id) else {
            return Some(Ready {
                looks: vec![look],
                tick: false,
            });
        };
        batch.waiting.remove(host);
        batch.arrived.push(look);
        if !batch.waiting.is_empty() {
            return None;
        }
        self.open.remove(&id).map(Batch::ready)
    }

    /// The batches whose wait is over at `now`, with what arrived of
    /// them; their late hosts will come on their own.
    pub fn expired(&mut self, now: Instant) -> Vec<Ready<T>> {
        let over: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(id, _)| *id)
            .collect();
        over.into_iter()
            .filter_map(|id| self.open.remove(&id))
            .map(Batch::ready)
            .collect()
    }

    /// When the next batch's wait is over.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|b| b.until).min()
    }
}

impl<T> Batch<T> {
    fn ready(self) -> Ready<T> {
        Ready {
            looks: self.arrived,
            tick: self.tick,
        }
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
        let id = b.open(&hosts(&["a", "b"]), now + Duration::from_secs(2), true);
        assert_eq!(b.arrived(id, "b", "b up"), None);
        assert_eq!(b.next_due(), Some(now + Duration::from_secs(2)));
        assert_eq!(
            b.arrived(id, "a", "a up"),
            Some(Ready {
                looks: vec!["b up", "a up"],
                tick: true
            })
        );
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn a_silent_host_holds_up_no_one_and_is_judged_alone_later() {
        let now = Instant::now();
        let mut b = Batches::default();
        let id = b.open(&hosts(&["a", "b", "c"]), now + Duration::from_secs(2), true);
        assert_eq!(b.arrived(id, "a", "a up"), None);
        assert_eq!(b.arrived(id, "c", "c up"), None);
        assert!(b.expired(now + Duration::from_secs(1)).is_empty());
        assert_eq!(
            b.expired(now + Duration::from_secs(2)),
            vec![Ready {
                looks: vec!["a up", "c up"],
                tick: true
            }]
        );
        assert_eq!(
            b.arrived(id, "b", "b down"),
            Some(Ready {
                looks: vec!["b down"],
                tick: false
            })
        );
    }

    #[test]
    fn batches_overlap_without_mixing() {
        let now = Instant::now();
        let mut b = Batches::default();
        let tick = b.open(&hosts(&["a", "b"]), now + Duration::from_secs(2), true);
        let event = b.open(&hosts(&["c"]), now + Duration::from_secs(1), false);
        assert_eq!(b.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(b.arrived(tick, "a", 1), None);
        assert_eq!(
            b.arrived(event, "c", 3),
            Some(Ready {
                looks: vec![3],
                tick: false
            })
        );
        assert_eq!(
            b.arrived(tick, "b", 2),
            Some(Ready {
                looks: vec![1, 2],
                tick: true
            })
        );
    }
}
