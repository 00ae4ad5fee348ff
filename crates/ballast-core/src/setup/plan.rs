//! What setup does to one host's machine, decided from what was observed
//! there and what the config pins: steps in order, notices for the
//! operator, or a refusal that stops setup before any host is changed.
//! Pure; the executor carries the steps out.

use super::daemon;
use super::packaging::{self, Packaging};
use crate::doctor::facts::Os;

/// What setup found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// `/etc/os-release`, parsed; `None` when it could not be read.
    pub os: Option<Os>,
    /// The installed version of the engine's package, if installed.
    pub installed: Option<String>,
    /// Whether the engine's package is held at its version.
    pub held: bool,
    /// The engine's versions the package registry has (asked only when
    /// setup may install; see [`needs_catalog`]).
    pub available: Vec<String>,
    /// The client package's versions, where it is apart from the engine.
    pub client_available: Vec<String>,
    /// `/etc/docker/daemon.json`, if there is one.
    pub daemon_json: Option<String>,
    /// dockerd's command line, empty when it does not run.
    pub daemon_args: String,
    /// The engine, if it answered.
    pub engine: Option<EngineSeen>,
    /// The settings file changed after dockerd started, so it has not
    /// read them yet.
    pub settings_unread: bool,
    /// The registry CA file the engine trusts now, if any.
    pub registry_ca: Option<String>,
}

/// An engine that answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSeen {
    pub version: String,
    pub swarm: bool,
}

/// What the operator asked of setup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// `docker.version` from the config.
    pub version: Option<&'a str>,
    /// Whether setup manages the engine's package at all; `doctor --fix`
    /// does not (a missing engine is then doctor's to report).
    pub engine: bool,
    /// `--upgrade-docker`: replace an engine of another version.
    pub upgrade: bool,
    /// `--restart-docker`: restart dockerd when its settings changed.
    pub restart: bool,
    /// The private registry's CA the engine must trust: server and PEM.
    pub registry_ca: Option<(&'a str, &'a str)>,
}

/// One change to a host's machine, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the settings file (`before` is `None` when there was none).
    WriteSettings {
        before: Option<String>,
        after: String,
    },
    /// Have the running dockerd read the settings it can take live
    /// (live restore among them, so a restart after keeps containers).
    ReloadEngine,
    /// Install `packages` at their versions; `replacing` is the engine
    /// version there before.
    Install {
        packages: Vec<(String, String)>,
        replacing: Option<String>,
    },
    /// Hold the packages at their version.
    Hold { packages: Vec<String> },
    /// Start dockerd unless it answers, and wait until it does.
    StartEngine,
    /// Restart dockerd (the operator consented).
    RestartEngine,
    /// Make the engine trust the registry's CA
    /// (`/etc/docker/certs.d/SERVER/ca.crt`; read at each pull).
    TrustRegistry { server: String, pem: String },
}

/// Worth telling the operator; nothing was changed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The engine is not the pinned version, and `--upgrade-docker` was not given.
    VersionDiffers { installed: String, pinned: String },
    /// An engine answers that the distribution's package did not install
    /// (Docker CE, a static build): setup leaves it.
    ForeignEngine { version: String },
    /// dockerd has not read its settings yet; `--restart-docker` would.
    RestartPending,
}

/// Why setup will not touch any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No os-release, or a distribution setup cannot install Docker on.
    UnknownOs(String),
    /// The pinned version is not in the package registry.
    VersionUnavailable {
        pinned: String,
        available: Vec<String>,
        /// How to list them on the host.
        listing: String,
    },
    /// No engine, and no version pinned to install.
    NoEngine { available: Vec<String> },
    /// The settings file cannot be read as settings.
    Settings(String),
}

/// Setup's decision for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub host: String,
    /// The package manager the steps use, where the distribution is known.
    pub manager: Option<packaging::Manager>,
    pub steps: Vec<Step>,
    pub notices: Vec<Notice>,
    pub refusal: Option<Refusal>,
}

/// Whether the package registry's versions are needed: only when setup
/// may install (or must name what could be installed).
pub fn needs_catalog(installed: Option<&str>, engine_answers: bool, wanted: &Wanted) -> bool {
    if !wanted.engine {
        return false;
    }
    match (installed, wanted.version) {
        (None, _) => !engine_answers,
        (Some(have), Some(pin)) => have != pin && wanted.upgrade,
        (Some(_), None) => false,
    }
}

/// The plan for `host`.
pub fn plan(host: &str, seen: &Observed, wanted: &Wanted) -> HostPlan {
    let mut p = HostPlan {
        host: host.to_string(),
        manager: seen
            .os
            .as_ref()
            .and_then(|os| packaging::packaging(os).ok())
            .map(|p| p.manager),
        steps: Vec::new(),
        notices: Vec::new(),
        refusal: None,
    };
    if let Err(refusal) = decide(seen, wanted, &mut p) {
        p.steps.clear();
        p.refusal = Some(refusal);
    }
    p
}

fn decide(seen: &Observed, wanted: &Wanted, p: &mut HostPlan) -> Result<(), Refusal> {
    let packaging = match &seen.os {
        None => Err("its /etc/os-release could not be read".to_string()),
        Some(os) => packaging::packaging(os),
    };
    let answers = seen.engine.is_some();
    let engine_change = engine_change(seen, wanted, &packaging, p)?;
    let current = daemon::Current {
        file: seen.daemon_json.as_deref(),
        args: &seen.daemon_args,
        swarm: seen.engine.as_ref().is_some_and(|e| e.swarm),
    };
    let settings = daemon::wanted(&current).map_err(Refusal::Settings)?;
    let wrote = settings.is_some();
    if let Some(after) = settings {
        p.steps.push(Step::WriteSettings {
            before: seen.daemon_json.clone(),
            after,
        });
        if answers {
            p.steps.push(Step::ReloadEngine);
        }
    }
    let installs = matches!(engine_change, Some((Step::Install { .. }, _)));
    if let Some((install, hold)) = engine_change {
        p.steps.push(install);
        p.steps.extend(hold);
    }
    if installs || (!answers && wanted.engine) {
        // A fresh engine reads the new settings as it starts; an upgrade
        // restarts it (the package does).
        p.steps.push(Step::StartEngine);
    } else if wrote || seen.settings_unread {
        if wanted.restart {
            p.steps.push(Step::RestartEngine);
        } else {
            p.notices.push(Notice::RestartPending);
        }
    }
    if let Some((server, pem)) = wanted.registry_ca {
        if seen.registry_ca.as_deref() != Some(pem) {
            p.steps.push(Step::TrustRegistry {
                server: server.to_string(),
                pem: pem.to_string(),
            });
        }
    }
    Ok(())
}

/// The install (and hold) the engine needs, if any.
fn engine_change(
    seen: &Observed,
    wanted: &Wanted,
    packaging: &Result<Packaging, String>,
    p: &mut HostPlan,
) -> Result<Option<(Step, Option<Step>)>, Refusal> {
    let answers = seen.engine.as_ref();
    let installed = seen.installed.as_deref();
    if !wanted.engine {
        return Ok(None);
    }
    if wanted.version.is_some() {
        // A pin setup cannot check is refused, not ignored.
        packaging
            .as_ref()
            .map_err(|why| Refusal::UnknownOs(why.clone()))?;
    }
    match (installed, answers, wanted.version) {
        // Someone else's engine (or a distribution whose packages setup
        // cannot ask): not ours to pin.
        (None, Some(engine), _) => {
            if packaging.is_ok() {
                p.notices.push(Notice::ForeignEngine {
                    version: engine.version.clone(),
                });
            }
            Ok(None)
        }
        (None, None, None) => {
            packaging
                .as_ref()
                .map_err(|why| Refusal::UnknownOs(why.clone()))?;
            Err(Refusal::NoEngine {
                available: seen.available.clone(),
            })
        }
        (None, None, Some(pin)) => install(seen, pin, None, packaging).map(Some),
        (Some(_), _, None) => Ok(None),
        (Some(have), _, Some(pin)) if have == pin => {
            let packaging = packaging
                .as_ref()
                .map_err(|w| Refusal::UnknownOs(w.clone()))?;
            let hold = (!seen.held)
                .then(|| packaging.manager.hold(&[packaging.package.to_string()]))
                .flatten()
                .map(|_| Step::Hold {
                    packages: vec![packaging.package.to_string()],
                });
            Ok(hold.map(|h| (h, None)))
        }
        (Some(have), _, Some(pin)) if !wanted.upgrade => {
            p.notices.push(Notice::VersionDiffers {
                installed: have.to_string(),
                pinned: pin.to_string(),
            });
            Ok(None)
        }
        (Some(have), _, Some(pin)) => install(seen, pin, Some(have), packaging).map(Some),
    }
}

fn install(
    seen: &Observed,
    pin: &str,
    replacing: Option<&str>,
    packaging: &Result<Packaging, String>,
) -> Result<(Step, Option<Step>), Refusal> {
    let packaging = packaging
        .as_ref()
        .map_err(|w| Refusal::UnknownOs(w.clone()))?;
    if !seen.available.iter().any(|v| v == pin) {
        return Err(Refusal::VersionUnavailable {
            pinned: pin.to_string(),
            available: seen.available.clone(),
            listing: packaging.manager.listing(packaging.package),
        });
    }
    let mut packages = vec![(packaging.package.to_string(), pin.to_string())];
    if let Some(client) = packaging.client {
        if let Some(v) = packaging::client_version(pin, &seen.client_available) {
            packages.push((client.to_string(), v));
        }
    }
    let names: Vec<String> = packages.iter().map(|(n, _)| n.clone()).collect();
    let hold = packaging
        .manager
        .hold(&names)
        .map(|_| Step::Hold { packages: names });
    Ok((
        Step::Install {
            packages,
            replacing: replacing.map(str::to_string),
        },
        hold,
    ))
}

/// Whether a host's plan changes nothing and tells nothing.
impl HostPlan {
    pub fn is_settled(&self) -> bool {
        self.steps.is_empty() && self.notices.is_empty() && self.refusal.is_none()
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
