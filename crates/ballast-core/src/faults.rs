//! Faults injected on purpose, for tests of the unhappy path: a rollout can
//! be held after a named step (so a test can interrupt it exactly there) or
//! made to fail before one. Off unless `BALLAST_FAILPOINTS` is set, as
//! `NAME=ACTION;...` with fail-rs's actions, e.g.
//! `after-create=return(hold)` or `before-stop=return(fail)`.
//!
//! Names are `before-<step>` and `after-<step>`, with the step kinds of
//! [`crate::plan::StepKind`] in snake case (`after-route`, `before-stop`),
//! and `survey-shared@HOST=return(N)`: delivery takes HOST to have the
//! first N layers of the image, as if they vanished between its look and
//! the load.

use std::time::Duration;

use crate::error::{Error, Result};

/// The variable that turns faults on.
pub const VARIABLE: &str = "BALLAST_FAILPOINTS";
/// How long a `hold` lasts at most; an interrupt ends it sooner.
pub const HOLD: Duration = Duration::from_secs(120);

/// What a fail point asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Wait (until interrupted, at most [`HOLD`]).
    Hold,
    /// Fail the step with an injected error.
    Fail,
}

/// Reads [`VARIABLE`] and arms its fail points.
pub fn arm_from_env() -> Result<()> {
    let Ok(text) = std::env::var(VARIABLE) else {
        return Ok(());
    };
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, actions)) = entry.split_once('=') else {
            return Err(Error::input(
                format!("read {VARIABLE}"),
                format_args!("{entry:?} is not NAME=ACTION"),
            )
            .hint("write e.g. after-create=return(hold);before-stop=return(fail)"));
        };
        arm(name.trim(), actions.trim())?;
    }
    Ok(())
}

/// Arms the fail point `name` with fail-rs's `actions`.
pub fn arm(name: &str, actions: &str) -> Result<()> {
    fail::cfg(name, actions)
        .map_err(|e| Error::input(format!("read {VARIABLE}"), format_args!("{name}: {e}")))
}

/// Disarms the fail point `name`.
pub fn disarm(name: &str) {
    fail::remove(name);
}

/// The number a fail point armed at `point` returns (`return(N)`).
pub fn number_at(point: &str) -> Option<usize> {
    fail::eval(point, |arg| arg.and_then(|a| a.parse().ok())).flatten()
}

/// The fault armed at `point`, if any.
pub fn at(point: &str) -> Option<Fault> {
    fail::eval(point, |arg| match arg.as_deref() {
        Some("hold") => Fault::Hold,
        _ => Fault::Fail,
    })
}
