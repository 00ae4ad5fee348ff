//! Restarts carried out on a host: the lock is looked at once more right
//! before (a deploy that took it meanwhile is left alone), then `docker
//! restart` for a running container (it gets its stop timeout) or `docker
//! start` for a stopped one; never a removal, never an accessory's data.
//! Each restart is written to the host's audit log. The last log lines
//! of a container for an escalation's report. And `watch.auto_rollback`'s
//! rollback of a role, made exactly as `ballast rollback --roles ROLE`
//! makes it (the deploy lock, doctor's gate, the audit log), with when the
//! broken release was deployed, read from its containers first.

use std::time::Duration;

use bollard::query_parameters::RestartContainerOptionsBuilder;
use tokio_util::sync::CancellationToken;

use super::heal::Restart;
use super::rollback::Suspect;
use super::Millis;
use crate::config::Loaded;
use crate::deploy::{self, Context, Goal};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::host::{Host, Reach};
use crate::lock::Liveness;
use crate::scope::Scope;
use crate::state::{self, AuditRecord};

/// How many log lines an escalation's report shows.
pub const LOG_LINES: usize = 20;

/// Carries out `r` on `host`.
pub async fn restart(host: &Host, service: &str, r: &Restart) -> Result<()> {
    let step = format!("{} {}", r.verb(), r.container);
    if let Some(held) = crate::lock::read(host, service).await? {
        if matches!(held.liveness, Liveness::Alive | Liveness::Manual) {
            return Err(Error::new(
                ErrorKind::Conflict,
                &step,
                format_args!("the deploy lock is {}: left alone", held.describe()),
            )
            .on(host.name()));
        }
    }
    let engine = host.engine();
    if r.running {
        let secs = i32::try_from(r.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        let options = RestartContainerOptionsBuilder::default().t(secs).build();
        let deadline = r.stop_timeout.saturating_add(Duration::from_secs(30));
        let work = engine
            .docker()
            .restart_container(&r.container, Some(options));
        match tokio::time::timeout(deadline, work).await {
            Err(_) => Err(Error::timeout(&step, deadline).on(host.name())),
            Ok(Err(e)) => Err(engine.error(&step, e)),
            Ok(Ok(())) => Ok(()),
        }
    } else {
        engine
            .call(&step, engine.docker().start_container(&r.container, None))
            .await
    }
}

/// Writes what came of `r` to the audit log on `host`.
pub async fn audit(
    host: &Host,
    service: &str,
    r: &Restart,
    outcome: &Result<(), String>,
) -> Result<()> {
    let record = AuditRecord {
        at: state::now_rfc3339(),
        who: state::whoami(),
        command: format!(
            "watch {} {} ({}: {})",
            r.verb(),
            r.container,
            r.subject,
            r.why
        ),
        version: None,
        hosts: vec![host.name().to_string()],
        outcome: match outcome {
            Ok(()) => "ok".into(),
            Err(e) => format!("failed: {e}"),
        },
        forced_unsafe: Vec::new(),
        skipped: Vec::new(),
        took_over: Vec::new(),
    };
    state::append_audit(host, service, &record).await
}

/// The last lines `container` printed, secret values redacted; an empty
/// list when they cannot be read within `deadline`.
pub async fn log_lines(host: &Host, container: &str, deadline: Duration) -> Vec<String> {
    let read = host.engine().log_tail(container, LOG_LINES);
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(text)) => text
            .lines()
            .map(|l| crate::redact::redact(l).into_owned())
            .collect(),
        Ok(Err(e)) => vec![format!("(could not read its log: {})", e.cause)],
        Err(_) => vec!["(could not read its log in time)".to_string()],
    }
}

/// When the release of `suspect` was deployed on each of its hosts, in
/// its host order; `None` for a host that does not answer or keeps no
/// container of it.
pub async fn deployed_at(loaded: &Loaded, reach: &Reach, suspect: &Suspect) -> Vec<Option<Millis>> {
    let config = &loaded.config;
    let fleet = Fleet::connect(&suspect.hosts, reach, config.concurrency()).await;
    let found = crate::release::observe_fleet(&fleet, &config.service).await;
    fleet.close().await;
    suspect
        .hosts
        .iter()
        .map(|host| {
            let (_, containers) = found.iter().find(|(h, _)| h == host)?;
            let c = containers
                .as_ref()
                .ok()?
                .iter()
                .find(|c| c.role == suspect.role && c.version == suspect.version)?;
            let at = humantime::parse_rfc3339_weak(&c.deployed_at).ok()?;
            let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
            Some(super::backoff::millis(since))
        })
        .collect()
}

/// Rolls the role of `suspect` back to the release before, on its hosts,
/// as `ballast rollback --roles ROLE` would; the version it went back to.
/// Fails with `Conflict` when someone else holds the deploy lock.
pub async fn rollback(
    loaded: &Loaded,
    reach: &Reach,
    suspect: &Suspect,
    cancel: CancellationToken,
    on_event: &(dyn Fn(deploy::Event) + Send + Sync),
) -> Result<String> {
    let role = &suspect.role;
    let ctx = Context {
        loaded,
        reach,
        command: format!("watch: rollback --roles {role}"),
        message: Some(format!(
            "release {} crash-looped on every host of role {role} after its deploy (watch.auto_rollback)",
            suspect.version
        )),
        dry_run: false,
        force_unsafe: Vec::new(),
        scope: Scope {
            hosts: Vec::new(),
            roles: vec![role.clone()],
            skip_unreachable: false,
        },
        cancel,
    };
    let (_, report) = deploy::run(&ctx, &Goal::Rollback(None), on_event).await?;
    let step = format!("roll role {role} back to {}", report.version);
    let failed: Vec<String> = report
        .hosts
        .iter()
        .filter(|h| h.outcome.is_failure() || h.outcome == deploy::Outcome::Interrupted)
        .map(|h| match &h.error {
            Some(e) => format!("{} ({}): {e}", h.host, h.outcome.word()),
            None => format!("{}: {}", h.host, h.outcome.word()),
        })
        .collect();
    match failed.is_empty() {
        true => Ok(report.version),
        false => Err(Error::failed(step, failed.join("; "))),
    }
}
