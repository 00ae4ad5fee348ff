//! `ballast setup`'s work on each host's machine, before anything of the
//! service: the distribution checked, the Docker engine installed from the
//! distribution's packages at the version the config pins (and held
//! there), dockerd's settings written after their diff is shown, and the
//! engine started. An engine of another version is reported, and replaced
//! only with `--upgrade-docker`; dockerd is restarted only with
//! `--restart-docker`. Every host is observed and planned before any is
//! changed, so a refusal (an unknown distribution, a version the package
//! registry lacks) changes nothing anywhere. A second run changes nothing.
//!
//! - [`packaging`]: the distributions known, their package managers'
//!   commands and what those print.
//! - [`daemon`]: the settings file ballast wants, and its diff.
//! - [`plan`]: observed state and the pin in, steps out (pure).
//! - `observe`, `execute`, `machine`: the host side.

pub mod daemon;
mod execute;
mod machine;
mod observe;
pub mod packaging;
pub mod plan;

use futures_util::{stream, StreamExt};

use crate::config::Config;
use crate::deploy::Event;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Reach;
use machine::Machine;
pub use plan::{HostPlan, Notice, Refusal, Step, Wanted};

/// What the operator allowed on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Whether the engine's package is setup's to install and pin (`setup`)
    /// or left alone (`doctor --fix`, which fixes settings only).
    pub engine: bool,
    /// `--upgrade-docker`: replace an engine of another version than pinned.
    pub upgrade_docker: bool,
    /// `--restart-docker`: restart dockerd when its settings changed.
    pub restart_docker: bool,
    /// The private registry's CA (server, PEM) hosts must trust, read
    /// from `delivery.registry.ca`.
    pub registry_ca: Option<(String, String)>,
}

/// Whether `v` can be a package version (Debian's or RPM's spelling):
/// it starts with a digit and holds nothing a shell or an option parser
/// would read as more than a word.
pub fn is_package_version(v: &str) -> bool {
    v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:_-^".contains(c))
}

/// The registry CA hosts must trust, read from `delivery.registry.ca`
/// (relative to the config's directory): (server, PEM).
pub fn registry_ca(loaded: &crate::config::Loaded) -> Result<Option<(String, String)>> {
    let Some(registry) = loaded.config.delivery.registry() else {
        return Ok(None);
    };
    let Some(path) = &registry.ca else {
        return Ok(None);
    };
    let full = loaded.dir.join(path);
    let step = "read the registry's CA (delivery.registry.ca)";
    let pem = std::fs::read_to_string(&full).map_err(|e| {
        Error::input(step, format_args!("{}: {e}", full.display()))
            .hint("give the path of the CA certificate (PEM), relative to the config file")
    })?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::input(
            step,
            format_args!("{} holds no PEM certificate", full.display()),
        )
        .hint("give the CA's certificate in PEM form (-----BEGIN CERTIFICATE-----), not its key"));
    }
    Ok(Some((registry.server.clone(), pem)))
}

/// Prepares the machines of `hosts`; returns each host's plan as carried
/// out. Refuses, changing nothing, when any host is refused.
pub async fn prepare(
    config: &Config,
    reach: &Reach,
    hosts: &[String],
    options: &Options,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Result<Vec<HostPlan>> {
    let lock_dir = crate::lock::lock_dir(&config.service);
    let wanted = Wanted {
        version: config.docker.version.as_deref().filter(|_| options.engine),
        engine: options.engine,
        upgrade: options.upgrade_docker,
        restart: options.restart_docker,
        registry_ca: options
            .registry_ca
            .as_ref()
            .map(|(s, p)| (s.as_str(), p.as_str())),
        lock_dir: Some(&lock_dir),
    };
    let say = |host: &str, message: String| {
        on_event(Event {
            host: Some(host.to_string()),
            message,
        })
    };
    let looked: Vec<Result<(Machine, HostPlan)>> = stream::iter(hosts)
        .map(|name| async move {
            let machine = Machine::connect(name, reach).await?;
            say(name, "looking at the machine".into());
            match observe::observe(&machine, &wanted).await {
                Ok(seen) => Ok((machine, plan::plan(name, &seen, &wanted))),
                Err(e) => {
                    machine.close().await;
                    Err(e)
                }
            }
        })
        .buffered(config.concurrency())
        .collect()
        .await;
    let mut machines = Vec::new();
    let mut failed = Vec::new();
    for r in looked {
        match r {
            Ok(m) => machines.push(m),
            Err(e) => failed.push(e),
        }
    }
    let refused: Vec<Error> = machines
        .iter()
        .filter_map(|(_, p)| p.refusal.as_ref().map(|r| refusal_error(&p.host, r)))
        .collect();
    failed.extend(refused);
    if !failed.is_empty() {
        for (m, _) in machines {
            m.close().await;
        }
        return Err(all_of(failed));
    }
    for (_, p) in &machines {
        tell(p, &|m| say(&p.host, m));
    }
    let done: Vec<Result<HostPlan>> = stream::iter(machines)
        .map(|(machine, p)| async move {
            let result =
                execute::execute(&machine, p.manager, &p.steps, &|m| say(&p.host, m)).await;
            machine.close().await;
            if result.is_ok() && p.steps.is_empty() {
                say(&p.host, "machine: no change".into());
            }
            result.map(|_| p)
        })
        .buffered(config.concurrency())
        .collect()
        .await;
    let (plans, errors): (Vec<_>, Vec<_>) = done.into_iter().partition(Result::is_ok);
    if !errors.is_empty() {
        return Err(all_of(errors.into_iter().filter_map(Result::err).collect()));
    }
    Ok(plans.into_iter().filter_map(Result::ok).collect())
}

/// Tells the operator a host's notices and the settings diff before any change.
fn tell(p: &HostPlan, say: &dyn Fn(String)) {
    for n in &p.notices {
        say(notice_text(n));
    }
    for step in &p.steps {
        if let Step::WriteSettings { before, after } = step {
            say(format!(
                "{} changes:\n{}",
                daemon::PATH,
                daemon::diff(before.as_deref(), after).trim_end()
            ));
        }
    }
}

/// What a notice says.
pub fn notice_text(n: &Notice) -> String {
    match n {
        Notice::VersionDiffers { installed, pinned } => format!(
            "runs Docker {installed}, not the pinned {pinned}: left as it is; `ballast setup --upgrade-docker` replaces it"
        ),
        Notice::ForeignEngine { version } => format!(
            "Docker {version} is on the host but did not come from the distribution's package: setup leaves it and does not check its version"
        ),
        Notice::RestartPending => "dockerd has not read its new settings yet: `ballast setup --restart-docker` restarts it (containers keep running where live-restore is on)".to_string(),
    }
}

/// The error that refuses `host`.
fn refusal_error(host: &str, r: &Refusal) -> Error {
    let step = "check the host before setup";
    let listed = |available: &[String]| {
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    };
    match r {
        Refusal::UnknownOs(why) => Error::input(step, why).on(host).hint(
            "install Docker on it yourself and leave out `docker.version`, or take the host out of the config",
        ),
        Refusal::VersionUnavailable {
            pinned,
            available,
            listing,
        } => Error::input(
            step,
            format_args!(
                "the package registry has no Docker {pinned}; it has {}",
                listed(available)
            ),
        )
        .on(host)
        .hint(format!(
            "set `docker.version` to one of them (`{listing}` on the host lists them); nothing was changed on any host"
        )),
        Refusal::NoEngine { available } => Error::input(
            step,
            format_args!(
                "Docker is not installed and `docker.version` is not set; the package registry has {}",
                listed(available)
            ),
        )
        .on(host)
        .hint(match available.first() {
            Some(v) => format!("pin one in the config: `docker: {{ version: \"{v}\" }}`"),
            None => "install Docker on the host yourself, then run setup again".to_string(),
        }),
        Refusal::LockHeld => Error::new(
            ErrorKind::Conflict,
            step,
            "a deploy or another change holds the service's lock here, and setup would restart or replace the Docker engine under it",
        )
        .on(host)
        .hint("run setup again once it is done (`ballast lock status` names the holder); nothing was changed on any host"),
        Refusal::Settings(why) => Error::input(step, why).on(host).hint(
            "fix the file by hand (setup never rewrites a file it cannot read), then run setup again",
        ),
    }
}

/// One error for several: the first's kind and step, every host named.
fn all_of(mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let first = errors[0].clone();
    let causes: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.host.as_deref().unwrap_or("?"), e.cause))
        .collect();
    let mut e = Error::new(
        if errors.iter().all(|e| e.kind == ErrorKind::Input) {
            ErrorKind::Input
        } else {
            first.kind
        },
        first.step,
        causes.join("; "),
    );
    let mut hints: Vec<String> = Vec::new();
    for h in errors.iter().filter_map(|e| e.hint.clone()) {
        if !hints.contains(&h) {
            hints.push(h);
        }
    }
    e.hint = (!hints.is_empty()).then(|| hints.join("; "));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions_are_single_harmless_words() {
        for ok in [
            "20.10.24+dfsg1-1+deb12u1",
            "26.1.5+dfsg1-9+deb13u1+b1",
            "2:24.0.5-1.fc39",
            "1.0~rc1",
        ] {
            assert!(is_package_version(ok), "{ok}");
        }
        for bad in [
            "",
            "latest",
            "20.10 ; rm -rf /",
            "--force",
            "1.0\n",
            "1.0$(x)",
        ] {
            assert!(!is_package_version(bad), "{bad}");
        }
    }
}
