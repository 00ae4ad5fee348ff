//! What one look at one container means: its [`Condition`] (healthy,
//! pending, failing with a [`Cause`], stopped on purpose), from what was
//! seen and what is remembered of it (failed checks in a row, Docker's
//! own restarts, restarts in the breaker's window), and, for a crash loop
//! right after a deploy, the release to roll back from. Pure: a sighting
//! and a time in.

use std::time::Duration;

use serde::Serialize;

use super::assess::Track;
use super::backoff::millis;
use super::observe::{ContainerSeen, Health};
use super::watcher::Settings;
use super::{Millis, Subject};
use crate::release::ContainerState;

/// Why a container is not running healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "cause")]
pub enum Cause {
    Exited {
        code: Option<i64>,
    },
    Dead,
    /// Docker's restart policy is restarting it.
    Restarting,
    Paused,
    Unhealthy {
        why: String,
    },
    /// There is no container of it on the host.
    Missing,
    /// It fell over again and again: two or more restarts within the
    /// breaker's window, and not healthy for `backoff.reset_after` since
    /// the last; `now` is what is wrong at the moment (`None`: it runs).
    CrashLoop {
        restarts: usize,
        now: Option<Box<Cause>>,
    },
}

impl Cause {
    pub fn describe(&self) -> String {
        match self {
            Cause::Exited { code: Some(c) } => format!("exited with code {c}"),
            Cause::Exited { code: None } => "exited".into(),
            Cause::Dead => "dead".into(),
            Cause::Restarting => "restarting (Docker's restart policy)".into(),
            Cause::Paused => "paused".into(),
            Cause::Unhealthy { why } => format!("unhealthy: {why}"),
            Cause::Missing => "no container (never deployed here, or removed)".into(),
            Cause::CrashLoop { restarts, now } => match now {
                Some(c) => format!("crash loop: {restarts} restarts, now {}", c.describe()),
                None => format!("crash loop: {restarts} restarts, running again for now"),
            },
        }
    }

    /// Whether a restart (`docker start`/`restart`) can help; `Some(true)`
    /// when the container still runs (it is restarted, not started).
    pub(super) fn healable(&self) -> Option<bool> {
        match self {
            Cause::Exited { .. } | Cause::Dead => Some(false),
            Cause::Unhealthy { .. } => Some(true),
            Cause::CrashLoop { now, .. } => now.as_ref().and_then(|c| c.healable()),
            Cause::Restarting | Cause::Paused | Cause::Missing => None,
        }
    }

    /// For a crash loop that began within `window`
    /// (`watch.rollback_window`) of its release's deploy: the release, and
    /// the way back.
    pub(super) fn after_deploy(
        &self,
        seen: Option<&ContainerSeen>,
        now: Millis,
        window: Duration,
    ) -> Option<String> {
        let Cause::CrashLoop { .. } = self else {
            return None;
        };
        let c = seen?;
        let at = humantime::parse_rfc3339_weak(c.deployed_at.as_deref()?).ok()?;
        let at = millis(at.duration_since(std::time::UNIX_EPOCH).ok()?);
        (now.saturating_sub(at) <= millis(window)).then(|| {
            format!(
                "the crash loop began right after version {} was deployed ({}): consider `ballast rollback`",
                c.version.as_deref().unwrap_or("?"),
                c.deployed_at.as_deref().unwrap_or("?")
            )
        })
    }
}

/// A container's condition after a look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "condition")]
pub enum Condition {
    Healthy,
    /// Starting, or failing fewer checks than `watch.failures`.
    Pending,
    Failing(Cause),
    /// An accessory stopped on purpose.
    Stopped,
}

/// One container's condition, updating its track; whether Docker's own
/// restarts just opened its breaker, and how many it made.
pub(super) fn judge(
    track: &mut Track,
    subject: &Subject,
    seen: Option<&ContainerSeen>,
    settings: &Settings,
    now: Millis,
) -> (Condition, bool, u64) {
    let Some(c) = seen else {
        track.healthy_since = None;
        return (Condition::Failing(Cause::Missing), false, 0);
    };
    let mut opened = false;
    let mut restarted = 0;
    if track.id != c.id {
        *track = Track {
            id: c.id.clone(),
            restart_count: Some(c.restart_count),
            seen_running: track.seen_running && matches!(subject, Subject::Accessory(_)),
            ..Track::default()
        };
    } else {
        let delta = c.restart_count - track.restart_count.unwrap_or(c.restart_count);
        track.restart_count = Some(c.restart_count);
        restarted = u64::try_from(delta).unwrap_or(0);
        if delta > 0 {
            // It fell over since the last look, whatever it shows now.
            track.healthy_since = None;
        }
        if delta > 0 && !track.breaker.open {
            let delta = u32::try_from(delta).unwrap_or(u32::MAX);
            opened = track.breaker.record(&settings.breaker, delta, now);
        }
    }
    let mut condition = match c.state {
        ContainerState::Running => match &c.health {
            Health::Healthy | Health::Unchecked => {
                track.health_failures = 0;
                track.healthy_since.get_or_insert(now);
                track.seen_running = true;
                Condition::Healthy
            }
            Health::Starting => Condition::Pending,
            Health::Failing(why) => {
                track.health_failures += 1;
                track.healthy_since = None;
                if track.health_failures >= settings.failures {
                    Condition::Failing(Cause::Unhealthy { why: why.clone() })
                } else {
                    Condition::Pending
                }
            }
        },
        ContainerState::Restarting => Condition::Failing(Cause::Restarting),
        ContainerState::Paused => Condition::Failing(Cause::Paused),
        ContainerState::Removing => Condition::Pending,
        ContainerState::Exited | ContainerState::Created | ContainerState::Dead => {
            if matches!(subject, Subject::Accessory(_)) && !track.seen_running {
                Condition::Stopped
            } else if c.state == ContainerState::Dead {
                Condition::Failing(Cause::Dead)
            } else {
                Condition::Failing(Cause::Exited { code: c.exit_code })
            }
        }
    };
    if !matches!(condition, Condition::Healthy) {
        track.healthy_since = None;
    }
    let settled = track
        .healthy_since
        .is_some_and(|s| now.saturating_sub(s) >= millis(settings.backoff.reset_after));
    let restarts = track.breaker.recent(&settings.breaker, now);
    if restarts >= 2 && !settled && !matches!(condition, Condition::Stopped) {
        let now = match &condition {
            Condition::Failing(cause) => Some(Box::new(cause.clone())),
            _ => None,
        };
        condition = Condition::Failing(Cause::CrashLoop { restarts, now });
    }
    if let Some(since) = track.healthy_since {
        track.acted = false;
        track.backoff.settle(&settings.backoff, Some(since), now);
        if settled {
            track.breaker.close();
        }
    }
    (condition, opened, restarted)
}
