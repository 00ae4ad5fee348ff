//! A lock found on a host ([`HeldLock`]) and what to do about it while
//! taking the lock: keep it (ours), take it over from a provably gone holder
//! ([`Takeover`]), or refuse with an error that says what to do next.

use super::{GoneWhy, Liveness, LockInfo};
use crate::error::{Error, ErrorKind};

/// A lock found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub host: String,
    /// `None` when the directory holds no readable record: taken a moment
    /// ago, or its taker was killed before writing it.
    pub info: Option<LockInfo>,
    /// Seconds since the lease was last renewed, by the host's clock.
    pub lease_age_secs: u64,
    pub liveness: Liveness,
}

impl HeldLock {
    /// "held by ana@laptop since … for `deploy` (pid 42)".
    pub fn describe(&self) -> String {
        match &self.info {
            Some(info) => format!("held by {}", info.describe()),
            None => "held by a holder that left no readable record".to_string(),
        }
    }
}

/// A lock of a provably gone holder that was removed to take the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub host: String,
    /// The record of the gone holder.
    pub removed: LockInfo,
    pub why: GoneWhy,
}

impl Takeover {
    /// One line for the progress output and the audit log.
    pub fn describe(&self) -> String {
        format!(
            "took over the lock on {} from {}, whose holder is gone: {}",
            self.host,
            self.removed.describe(),
            self.why
        )
    }
}

/// What to do about a lock found while taking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// It is already ours (same token).
    Ours,
    /// Its holder is provably gone: remove it (by its token) and take it.
    TakeOver {
        removed: LockInfo,
        why: GoneWhy,
    },
    Refuse(Error),
}

pub(super) fn decide(service: &str, held: &HeldLock, mine: &LockInfo) -> Decision {
    match (&held.info, held.liveness) {
        (Some(info), _) if !mine.token.is_empty() && info.token == mine.token => Decision::Ours,
        (Some(info), Liveness::Gone { why }) => Decision::TakeOver {
            removed: info.clone(),
            why,
        },
        _ => Decision::Refuse(conflict(service, held)),
    }
}

/// The refusal to take a lock someone else holds, with what to do about it.
fn conflict(service: &str, held: &HeldLock) -> Error {
    let mut cause = format!(
        "the lock of {service} on {} is {}",
        held.host,
        held.describe()
    );
    let hint = match held.liveness {
        Liveness::Alive | Liveness::Gone { .. } => {
            "wait for it to finish, then run again (`ballast lock status` shows who holds it)"
                .to_string()
        }
        Liveness::Manual => "it was taken with `ballast lock acquire` for maintenance: once that is over, release it with `ballast lock release --token TOKEN` (printed by acquire) or `ballast lock release --force`".to_string(),
        Liveness::LeaseExpired { for_secs } => {
            cause.push_str(&format!(
                "; it stopped renewing its lease {for_secs}s ago and is probably gone"
            ));
            let who = held
                .info
                .as_ref()
                .map(|i| format!("{}, pid {}", i.holder, i.pid))
                .unwrap_or_else(|| "its holder".into());
            format!("check that it really is gone ({who}), then clear it with `ballast lock release --force`")
        }
    };
    Error::new(ErrorKind::Conflict, "take the deploy lock", cause)
        .on(&held.host)
        .hint(hint)
}

/// The refusal to release a lock held under another token.
pub(super) fn not_yours(service: &str, held: &HeldLock) -> Error {
    Error::new(
        ErrorKind::Conflict,
        "release the deploy lock",
        format_args!(
            "the token given does not hold the lock of {service} on {}: it is {} — {}",
            held.host,
            held.describe(),
            held.liveness
        ),
    )
    .on(&held.host)
    .hint("only its holder's token releases it: check `ballast lock status`, and once its holder is surely gone use `ballast lock release --force`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::fixtures::info;

    fn held(liveness: Liveness) -> HeldLock {
        HeldLock {
            host: "web-1".into(),
            info: Some(info(42)),
            lease_age_secs: 3,
            liveness,
        }
    }

    #[test]
    fn texts_say_who_holds_it_and_what_was_taken_over() {
        let unknown = HeldLock {
            info: None,
            ..held(Liveness::Alive)
        };
        assert_eq!(
            unknown.describe(),
            "held by a holder that left no readable record"
        );
        let t = Takeover {
            host: "web-1".into(),
            removed: info(42),
            why: GoneWhy::NotRunning { pid: 42 },
        };
        assert_eq!(t.describe(), "took over the lock on web-1 from ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42), whose holder is gone: pid 42 no longer runs on this machine");
    }

    #[test]
    fn an_alive_holder_is_a_conflict_to_wait_for() {
        let e = conflict("shop", &held(Liveness::Alive));
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.to_string(), "web-1: take the deploy lock: the lock of shop on web-1 is held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42)");
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "wait for it to finish, then run again (`ballast lock status` shows who holds it)"
            )
        );
    }

    #[test]
    fn an_expired_lease_is_a_conflict_that_names_force_release() {
        let e = conflict("shop", &held(Liveness::LeaseExpired { for_secs: 95 }));
        assert_eq!(e.cause, "the lock of shop on web-1 is held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42); it stopped renewing its lease 95s ago and is probably gone");
        assert_eq!(
            e.hint.as_deref(),
            Some("check that it really is gone (ana@laptop, pid 42), then clear it with `ballast lock release --force`")
        );
        let manual = conflict("shop", &held(Liveness::Manual));
        assert!(manual
            .hint
            .unwrap()
            .contains("`ballast lock acquire` for maintenance"));
    }

    #[test]
    fn a_wrong_token_is_refused_naming_the_holder() {
        let e = not_yours("shop", &held(Liveness::Alive));
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.cause, "the token given does not hold the lock of shop on web-1: it is held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42) — alive (it renews its lease)");
    }

    #[test]
    fn gone_holders_are_taken_over_others_refused() {
        let mine = LockInfo {
            token: "ffffffffffffffffffffffffffffffff".into(),
            ..info(7)
        };
        let why = GoneWhy::NotRunning { pid: 42 };
        assert_eq!(
            decide("shop", &held(Liveness::Gone { why }), &mine),
            Decision::TakeOver {
                removed: info(42),
                why
            }
        );
        assert!(matches!(
            decide("shop", &held(Liveness::Alive), &mine),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide("shop", &held(Liveness::Manual), &mine),
            Decision::Refuse(_)
        ));
        assert_eq!(
            decide("shop", &held(Liveness::Alive), &info(42)),
            Decision::Ours
        );
        let nameless = HeldLock {
            info: None,
            ..held(Liveness::Alive)
        };
        assert!(matches!(
            decide("shop", &nameless, &mine),
            Decision::Refuse(_)
        ));
    }
}
