//! Incidents: one per problem, keyed by kind, host and role or accessory
//! ([`Key`]). The [`Book`] opens one when a problem is first seen (an
//! alert), escalates it once when it stays open past the threshold or when
//! watch gives up on it (its breaker opened), and closes it once the
//! problem has stayed gone for `recover_after` (a recovery notice). An
//! inhibited problem (its host is down, its role is down everywhere) opens
//! or stays open silently: no alert of its own. Pure: findings and times
//! in, notices out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::millis;
use super::{Key, Millis};

/// What is wrong, as seen this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: Key,
    /// What is wrong, in a few words ("exited with code 137").
    pub cause: String,
    /// Inhibited by a larger problem: no alert of its own.
    pub inhibited: bool,
    /// The container concerned, for the report's log lines.
    pub container: Option<String>,
    /// A hint for the human (`ballast rollback` after a bad deploy).
    pub hint: Option<String>,
}

/// One problem, from when it was first seen until it has stayed gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub key: Key,
    /// When it was first seen.
    pub opened_at: Millis,
    /// What is wrong, as last seen.
    pub cause: String,
    /// What watch did about it, oldest first.
    pub tried: Vec<String>,
    /// The container concerned, if any.
    pub container: Option<String>,
    pub hint: Option<String>,
    /// Whether the opening was alerted (an inhibited one is not until it
    /// stops being inhibited); only then does it escalate and recover
    /// aloud.
    pub alerted: bool,
    pub inhibited: bool,
    /// When it was escalated, if it was.
    pub escalated_at: Option<Millis>,
    /// Watch gave up restarting (its breaker opened).
    pub given_up: bool,
    /// Since when the problem has not been seen.
    pub clear_since: Option<Millis>,
}

impl Incident {
    /// An incident about `key` opened at `at`, not alerted yet.
    pub fn new(key: Key, cause: &str, at: Millis) -> Incident {
        Incident {
            key,
            opened_at: at,
            cause: cause.to_string(),
            tried: Vec::new(),
            container: None,
            hint: None,
            alerted: false,
            inhibited: false,
            escalated_at: None,
            given_up: false,
            clear_since: None,
        }
    }
}

/// What happened to an incident that people are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Opened,
    Escalated,
    Recovered,
    /// Watch rolled the role back by itself (`watch.auto_rollback`).
    RolledBack,
    /// Watch tried to roll the role back by itself, and could not.
    RollbackFailed,
}

impl Event {
    pub fn word(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Escalated => "escalated",
            Event::Recovered => "recovered",
            Event::RolledBack => "rolled back",
            Event::RollbackFailed => "rollback failed",
        }
    }

    /// Whether the alert carries the report (what, where, since when, what
    /// was tried): everything but the opening and the recovery, which say
    /// it in a line.
    pub fn reports(self) -> bool {
        !matches!(self, Event::Opened | Event::Recovered)
    }
}

/// A notice to send: the event and the incident as it is then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: Event,
    pub incident: Incident,
    pub at: Millis,
}

/// The timings of incidents, from `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub recover_after: Duration,
    pub escalate_after: Duration,
}

/// Every open incident, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    #[serde(with = "super::persist::pairs")]
    pub open: BTreeMap<Key, Incident>,
}

impl Book {
    /// Takes in this round's `findings` at `now`: opens incidents, and
    /// closes those whose problem has stayed gone. Keys for which
    /// `unknown` is true could not be judged (a deploy holds the lock, the
    /// host is down): their incidents are left as they are. Returns the
    /// notices to send.
    pub fn update(
        &mut self,
        findings: &[Finding],
        unknown: &dyn Fn(&Key) -> bool,
        timing: &Timing,
        now: Millis,
    ) -> Vec<Notice> {
        let mut notices = Vec::new();
        for f in findings {
            let incident = self
                .open
                .entry(f.key.clone())
                .or_insert_with(|| Incident::new(f.key.clone(), &f.cause, now));
            incident.cause = f.cause.clone();
            incident.inhibited = f.inhibited;
            incident.clear_since = None;
            if f.container.is_some() {
                incident.container = f.container.clone();
            }
            if f.hint.is_some() {
                incident.hint = f.hint.clone();
            }
            if !incident.alerted && !incident.inhibited {
                incident.alerted = true;
                notices.push(Notice {
                    event: Event::Opened,
                    incident: incident.clone(),
                    at: now,
                });
            }
        }
        let seen: Vec<&Key> = findings.iter().map(|f| &f.key).collect();
        let mut closed = Vec::new();
        for (key, incident) in self.open.iter_mut() {
            if seen.contains(&key) || unknown(key) {
                continue;
            }
            let since = *incident.clear_since.get_or_insert(now);
            if now.saturating_sub(since) >= millis(timing.recover_after) {
                closed.push(key.clone());
            }
        }
        for key in closed {
            let incident = self.open.remove(&key).expect("listed above");
            if incident.alerted {
                notices.push(Notice {
                    event: Event::Recovered,
                    incident,
                    at: now,
                });
            }
        }
        notices
    }

    /// Escalates, once, every incident alerted and open past
    /// `escalate_after`, or given up on; inhibited ones, ones whose problem
    /// is gone meanwhile, and `unknown` ones wait.
    pub fn escalate(
        &mut self,
        unknown: &dyn Fn(&Key) -> bool,
        timing: &Timing,
        now: Millis,
    ) -> Vec<Notice> {
        let mut notices = Vec::new();
        for incident in self.open.values_mut() {
            let due = now.saturating_sub(incident.opened_at) >= millis(timing.escalate_after);
            if incident.alerted
                && !incident.inhibited
                && incident.escalated_at.is_none()
                && incident.clear_since.is_none()
                && !unknown(&incident.key)
                && (due || incident.given_up)
            {
                incident.escalated_at = Some(now);
                notices.push(Notice {
                    event: Event::Escalated,
                    incident: incident.clone(),
                    at: now,
                });
            }
        }
        notices
    }

    /// Notes what watch did about the incident of `key`, if one is open.
    pub fn tried(&mut self, key: &Key, what: String) {
        if let Some(i) = self.open.get_mut(key) {
            i.tried.push(what);
        }
    }

    /// Marks that watch gave up on `key` (its breaker opened): it is
    /// escalated at the next update.
    pub fn give_up(&mut self, key: &Key) {
        if let Some(i) = self.open.get_mut(key) {
            i.given_up = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Subject};
    use super::*;

    const S: u64 = 1_000;

    fn timing() -> Timing {
        Timing {
            recover_after: Duration::from_secs(30),
            escalate_after: Duration::from_secs(300),
        }
    }

    fn key() -> Key {
        Key::new(
            Kind::ContainerFailing,
            Some("h1"),
            Some(Subject::Role("web".into())),
        )
    }

    fn finding(cause: &str, inhibited: bool) -> Finding {
        Finding {
            key: key(),
            cause: cause.into(),
            inhibited,
            container: Some("shop-web-v1".into()),
            hint: None,
        }
    }

    fn events(notices: &[Notice]) -> Vec<Event> {
        notices.iter().map(|n| n.event).collect()
    }

    fn known(_: &Key) -> bool {
        false
    }
    const KNOWN: &dyn Fn(&Key) -> bool = &known;

    /// One round: findings in, then escalation.
    fn step(
        book: &mut Book,
        findings: &[Finding],
        unknown: &dyn Fn(&Key) -> bool,
        t: &Timing,
        now: Millis,
    ) -> Vec<Notice> {
        let mut n = book.update(findings, unknown, t, now);
        n.extend(book.escalate(unknown, t, now));
        n
    }

    #[test]
    fn one_incident_opens_escalates_once_and_recovers() {
        let mut book = Book::default();
        let t = timing();
        let n = step(
            &mut book,
            &[finding("exited with code 137", false)],
            KNOWN,
            &t,
            0,
        );
        assert_eq!(events(&n), [Event::Opened]);
        assert_eq!(n[0].incident.opened_at, 0);
        // Seen again and again: no new alert.
        for s in 1..300 {
            let n = step(
                &mut book,
                &[finding("exited with code 137", false)],
                KNOWN,
                &t,
                s * S,
            );
            assert!(n.is_empty(), "at {s}s: {n:?}");
        }
        let n = step(
            &mut book,
            &[finding("restarting", false)],
            KNOWN,
            &t,
            300 * S,
        );
        assert_eq!(events(&n), [Event::Escalated]);
        assert_eq!(n[0].incident.cause, "restarting");
        let n = step(
            &mut book,
            &[finding("restarting", false)],
            KNOWN,
            &t,
            400 * S,
        );
        assert!(n.is_empty());
        // Gone: closes only after `recover_after`.
        assert!(step(&mut book, &[], KNOWN, &t, 401 * S).is_empty());
        assert!(step(&mut book, &[], KNOWN, &t, 430 * S).is_empty());
        let n = step(&mut book, &[], KNOWN, &t, 431 * S);
        assert_eq!(events(&n), [Event::Recovered]);
        assert!(book.open.is_empty());
    }

    #[test]
    fn a_flapping_problem_stays_one_incident() {
        let mut book = Book::default();
        let t = timing();
        let mut all = Vec::new();
        for s in 0..100 {
            let f = if s % 3 == 0 {
                vec![]
            } else {
                vec![finding("exited", false)]
            };
            all.extend(step(&mut book, &f, KNOWN, &t, s * S));
        }
        assert_eq!(events(&all), [Event::Opened]);
    }

    #[test]
    fn inhibited_problems_stay_silent_until_they_are_not() {
        let mut book = Book::default();
        let t = timing();
        let n = step(&mut book, &[finding("exited", true)], KNOWN, &t, 0);
        assert!(n.is_empty());
        // Past the threshold, still inhibited: no escalation either.
        assert!(step(&mut book, &[finding("exited", true)], KNOWN, &t, 600 * S).is_empty());
        // Gone while inhibited: closes without a recovery notice.
        step(&mut book, &[], KNOWN, &t, 601 * S);
        assert!(step(&mut book, &[], KNOWN, &t, 700 * S).is_empty());
        assert!(book.open.is_empty());
        // No longer inhibited: alerted then.
        step(&mut book, &[finding("exited", true)], KNOWN, &t, 800 * S);
        let n = step(&mut book, &[finding("exited", false)], KNOWN, &t, 801 * S);
        assert_eq!(events(&n), [Event::Opened]);
        assert_eq!(n[0].incident.opened_at, 800 * S);
    }

    #[test]
    fn giving_up_escalates_at_once_and_unknown_keys_are_left_alone() {
        let mut book = Book::default();
        let t = timing();
        step(&mut book, &[finding("restarting", false)], KNOWN, &t, 0);
        book.tried(&key(), "restarted shop-web-v1".into());
        book.give_up(&key());
        let n = step(&mut book, &[finding("restarting", false)], KNOWN, &t, S);
        assert_eq!(events(&n), [Event::Escalated]);
        assert_eq!(n[0].incident.tried, ["restarted shop-web-v1"]);
        assert!(n[0].incident.given_up);
        // A deploy holds the lock: nothing is seen, nothing closes.
        let unknown: &dyn Fn(&Key) -> bool = &|_: &Key| true;
        assert!(step(&mut book, &[], unknown, &t, 1_000 * S).is_empty());
        assert_eq!(book.open.len(), 1);
    }
}
