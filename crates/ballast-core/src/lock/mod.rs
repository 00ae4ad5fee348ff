//! The deploy lock: one command at a time changes a service's hosts.
//!
//! # Where it lives
//! On **every host a command changes**, as the directory
//! `/var/lib/ballast/<service>/lock/` (`mkdir` is atomic: of two takers, one
//! wins) holding `info.json`, a [`LockInfo`]. This is a design decision: a
//! lock kept on one chosen host ("the first host of the first role") moved
//! whenever roles were added, renamed or reordered, so two operators could
//! both hold "the" lock. Kept on every host, it cannot move, and any two
//! commands that touch a common host conflict there. [`lock_location`] says
//! this to the user.
//!
//! # Taking it on a fleet
//! [`FleetLock::acquire`] takes it first on the host whose name sorts first
//! (two operators racing for overlapping fleets collide there, and one wins
//! cleanly), then on the others in parallel, a bounded number at a time. If
//! any host refuses, it gives back exactly the locks it took, by token, and
//! fails naming the host and the holder.
//!
//! # Lease and liveness
//! The holder renews its lease every [`RENEW_EVERY`] by touching `info.json`;
//! the lease's age is measured with the host's own clock (the file's mtime
//! against the host's `date`), so clocks of operators' machines do not
//! matter. [`judge`] decides, from gathered facts, whether a holder is
//! [`Liveness::Alive`], provably [`Liveness::Gone`] (it ran on this very
//! machine, same boot and pid namespace, and its pid no longer runs or now
//! belongs to a process started at another time), or stopped renewing for
//! longer than [`LEASE`] ([`Liveness::LeaseExpired`]). A `Gone` holder's lock
//! is taken over automatically and reported as a [`Takeover`], so a plain
//! rerun after a SIGKILL works; any other holder is a conflict.
//!
//! A lock taken by `ballast lock acquire` for maintenance is *manual*: its
//! process exits at once, nothing renews it, and it is never taken over. It
//! stays until released ([`Liveness::Manual`]).
//!
//! # Giving it back
//! [`release`] removes a lock only for the token that took it; a lock held
//! under another token is refused, naming its holder. [`force_release`]
//! removes whoever holds it and returns what it removed. One race is left: a
//! holder that is removed by force and taken again between another release's
//! token check and its `rm`; both steps are single commands, so the window is
//! milliseconds wide.
//!
//! # Layout
//! - `info`: the record [`LockInfo`], its token, and what tells the holder's
//!   process apart ([`Machine`], `/proc/<pid>/stat`).
//! - `liveness`: whether a holder still runs ([`judge`], [`Liveness`]).
//! - `decision`: a lock found on a host ([`HeldLock`]) and what to do about
//!   it: keep it, take it over ([`Takeover`]) or refuse, and the errors.
//! - `host`: the lock on one host: [`read`], [`acquire`], [`renew`],
//!   [`release`], [`force_release`].
//! - `fleet`: the lock on a set of hosts ([`FleetLock`]) and its renewal.
//! - this module: where the lock lives, its timings, and the re-exports.

mod decision;
#[cfg(test)]
mod fixtures;
mod fleet;
mod host;
mod info;
mod liveness;

use std::time::Duration;

use crate::state::STATE_ROOT;

pub use decision::{HeldLock, Takeover};
pub use fleet::{give_back, FleetLock};
pub use host::{acquire, force_release, read, release, renew};
pub use info::{parse_proc_stat, LockInfo, Machine, ProcStat};
pub use liveness::{judge, GoneWhy, Liveness, Process};

/// How long a lease lasts without renewal before its holder is presumed gone.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a [`FleetLock`] renews its lease on every host.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Deadline of one command run on a host for the lock.
const DEADLINE: Duration = Duration::from_secs(15);
/// Deadline of one renewal, shorter than the renewal period so they never pile up.
const RENEW_DEADLINE: Duration = Duration::from_secs(8);
/// How many characters of a token `lock status` shows.
pub const TOKEN_PREFIX: usize = 8;
/// How many times taking the lock on one host retries when it changes hands.
const TRIES: usize = 3;

const UNREACHABLE_HINT: &str =
    "check that the host answers over SSH (`ballast doctor` tries every host), then run the command again";
const WRITE_HINT: &str = "ballast needs to write /var/lib/ballast on the host: log in as root or give the user sudo-free write access there";

/// The lock directory of `service` on a host.
pub fn lock_dir(service: &str) -> String {
    format!("{STATE_ROOT}/{service}/lock")
}

fn info_path(service: &str) -> String {
    format!("{}/info.json", lock_dir(service))
}

/// Where the lock of `service` lives and why, in words for `lock status`.
pub fn lock_location(service: &str) -> String {
    format!(
        "on every host of the service, in {}/: it cannot move when roles are added, \
         renamed or reordered, and two commands that touch a common host conflict there",
        lock_dir(service)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_says_where_and_why() {
        assert_eq!(
            lock_location("shop"),
            "on every host of the service, in /var/lib/ballast/shop/lock/: it cannot move when roles are added, renamed or reordered, and two commands that touch a common host conflict there"
        );
    }
}
