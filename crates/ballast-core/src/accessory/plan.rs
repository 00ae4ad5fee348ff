//! What an accessory command does on a host, decided as plain data from
//! what the host holds ([`Found`]) and what the config asks for (a digest,
//! and whether the container's environment still matches). The operations
//! in `operate` carry these decisions out; here they are tested without
//! Docker.

use serde::Serialize;

use crate::release::ContainerState;

/// One of an accessory's containers, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub name: String,
    #[serde(skip)]
    pub id: String,
    pub state: ContainerState,
    /// Docker's health status (`starting`, `healthy`, `unhealthy`), if the
    /// container has a check.
    pub health: Option<String>,
    /// The definition's digest (its label).
    pub digest: String,
    /// The image reference its config named.
    pub image: String,
    pub image_id: String,
    /// When it last started (RFC 3339, Docker's clock).
    pub started_at: String,
    /// Its environment, to compare secret values; never serialized.
    #[serde(skip)]
    pub env: Vec<String>,
}

/// What a host holds of one accessory: the container that runs (or ran),
/// and the one an upgrade kept for rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Found {
    pub current: Option<Observed>,
    pub previous: Option<Observed>,
}

/// What `boot` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Boot {
    /// Nothing there: create and start it.
    Create,
    /// There with this definition, stopped: start it.
    Start,
    /// There with this definition, running: nothing to do.
    AlreadyRunning,
    /// There with another definition: boot changes nothing; `upgrade`
    /// (which keeps the old container) or `reboot` replaces it.
    Differs,
}

/// Whether `found` runs the definition with `digest` (and an environment
/// that matches, `env_ok`).
fn same(found: &Observed, digest: &str, env_ok: bool) -> bool {
    found.digest == digest && env_ok
}

pub fn boot(found: &Found, digest: &str, env_ok: bool) -> Boot {
    match &found.current {
        None => Boot::Create,
        Some(c) if !same(c, digest, env_ok) => Boot::Differs,
        Some(c) if c.state == ContainerState::Running => Boot::AlreadyRunning,
        Some(_) => Boot::Start,
    }
}

/// What `upgrade` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upgrade {
    /// Never booted here: boot it first.
    NotBooted,
    /// It runs this definition already.
    UpToDate,
    /// Stop the current container, keep it aside as the previous one,
    /// start the new one; the one kept before (`drop_previous`) goes once
    /// the new one is healthy, and stays if it is not.
    Replace { drop_previous: bool },
}

pub fn upgrade(found: &Found, digest: &str, env_ok: bool) -> Upgrade {
    match &found.current {
        None => Upgrade::NotBooted,
        Some(c) if same(c, digest, env_ok) && c.state == ContainerState::Running => {
            Upgrade::UpToDate
        }
        Some(_) => Upgrade::Replace {
            drop_previous: found.previous.is_some(),
        },
    }
}

/// What `rollback` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollback {
    /// No container was kept: nothing to return to.
    NoPrevious,
    /// Stop the current one and start the kept one in its place; the
    /// current one is kept in turn.
    Swap,
}

pub fn rollback(found: &Found) -> Rollback {
    match (&found.current, &found.previous) {
        (_, None) => Rollback::NoPrevious,
        _ => Rollback::Swap,
    }
}

/// What `start`, `stop` and `restart` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    NotBooted,
    Nothing,
    Stop,
    Start,
    StopThenStart,
}

/// `want_running`: start (true) or stop (false); `restart`: both.
pub fn power(found: &Found, want_running: bool, restart: bool) -> Power {
    let Some(c) = &found.current else {
        return Power::NotBooted;
    };
    let active = c.state.is_active();
    match (restart, want_running, active) {
        (true, _, true) => Power::StopThenStart,
        (true, _, false) | (false, true, false) => Power::Start,
        (false, true, true) if c.state == ContainerState::Running => Power::Nothing,
        (false, true, true) => Power::StopThenStart,
        (false, false, true) => Power::Stop,
        (false, false, false) => Power::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerState::{Exited, Restarting, Running};

    fn observed(state: ContainerState, digest: &str) -> Observed {
        Observed {
            name: "shop-db".into(),
            id: "id".into(),
            state,
            health: None,
            digest: digest.into(),
            image: "pg:1".into(),
            image_id: "sha256:1".into(),
            started_at: String::new(),
            env: Vec::new(),
        }
    }

    fn found(current: Option<Observed>, previous: bool) -> Found {
        Found {
            current,
            previous: previous.then(|| observed(Exited, "old")),
        }
    }

    #[test]
    fn boot_creates_starts_or_leaves_alone_and_never_replaces() {
        assert_eq!(boot(&found(None, false), "d", true), Boot::Create);
        assert_eq!(
            boot(&found(Some(observed(Running, "d")), false), "d", true),
            Boot::AlreadyRunning
        );
        assert_eq!(
            boot(&found(Some(observed(Exited, "d")), false), "d", true),
            Boot::Start
        );
        assert_eq!(
            boot(&found(Some(observed(Running, "x")), false), "d", true),
            Boot::Differs
        );
        // A changed secret value is another definition too.
        assert_eq!(
            boot(&found(Some(observed(Running, "d")), false), "d", false),
            Boot::Differs
        );
    }

    #[test]
    fn upgrade_replaces_what_differs_keeping_one_previous() {
        assert_eq!(upgrade(&found(None, false), "d", true), Upgrade::NotBooted);
        assert_eq!(
            upgrade(&found(Some(observed(Running, "d")), true), "d", true),
            Upgrade::UpToDate
        );
        assert_eq!(
            upgrade(&found(Some(observed(Running, "x")), false), "d", true),
            Upgrade::Replace {
                drop_previous: false
            }
        );
        assert_eq!(
            upgrade(&found(Some(observed(Running, "x")), true), "d", true),
            Upgrade::Replace {
                drop_previous: true
            }
        );
        // Same definition but crash-looping: replaced too.
        assert_eq!(
            upgrade(&found(Some(observed(Restarting, "d")), false), "d", true),
            Upgrade::Replace {
                drop_previous: false
            }
        );
    }

    #[test]
    fn rollback_needs_a_kept_container() {
        assert_eq!(
            rollback(&found(Some(observed(Running, "d")), false)),
            Rollback::NoPrevious
        );
        assert_eq!(
            rollback(&found(Some(observed(Running, "d")), true)),
            Rollback::Swap
        );
        assert_eq!(rollback(&found(None, true)), Rollback::Swap);
    }

    #[test]
    fn power_moves_only_what_must_move() {
        let running = found(Some(observed(Running, "d")), false);
        let stopped = found(Some(observed(Exited, "d")), false);
        let looping = found(Some(observed(Restarting, "d")), false);
        assert_eq!(power(&found(None, false), true, false), Power::NotBooted);
        assert_eq!(power(&running, true, false), Power::Nothing);
        assert_eq!(power(&stopped, true, false), Power::Start);
        assert_eq!(power(&looping, true, false), Power::StopThenStart);
        assert_eq!(power(&running, false, false), Power::Stop);
        assert_eq!(power(&stopped, false, false), Power::Nothing);
        assert_eq!(power(&running, true, true), Power::StopThenStart);
        assert_eq!(power(&stopped, true, true), Power::Start);
    }
}
