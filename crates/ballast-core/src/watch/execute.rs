//! Restarts carried out on a host: the lock is looked at once more right
//! before (a deploy that took it meanwhile is left alone), then `docker
//! restart` for a running container (it gets its stop timeout) or `docker
//! start` for a stopped one; never a removal, never an accessory's data.
//! Each restart is written to the host's audit log. And the last log lines
//! of a container for an escalation's report.

use std::time::Duration;

use bollard::query_parameters::RestartContainerOptionsBuilder;

use super::heal::Restart;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::lock::Liveness;
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
