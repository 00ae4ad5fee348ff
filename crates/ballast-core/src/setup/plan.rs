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
    /// A dockerd program is on the host (the package's or another's).
    pub dockerd_present: bool,
    /// A ballast command holds the service's lock on the host.
    pub lock_held: bool,
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
    /// The service's lock directory on the hosts: the engine is not
    /// restarted under a deploy.
    pub lock_dir: Option<&'a str>,
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
    /// For an engine this run installed: write ballast's settings around
    /// the flags its package gives dockerd (read only now that it is in),
    /// showing the diff, then (re)start it to read them.
    SettleNewEngine,
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
    /// A deploy or another change holds the lock, and the plan would
    /// restart or replace the engine under it.
    LockHeld,
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

/// What the engine's package needs.
enum EngineChange {
    /// Nothing (or only a notice).
    None,
    /// Hold it at its version.
    Hold(Step),
    /// Install it where there is none.
    Fresh { install: Step, hold: Option<Step> },
    /// Replace another version (`--upgrade-docker`).
    Upgrade { install: Step, hold: Option<Step> },
}

fn decide(seen: &Observed, wanted: &Wanted, p: &mut HostPlan) -> Result<(), Refusal> {
    let packaging = match &seen.os {
        None => Err("its /etc/os-release could not be read".to_string()),
        Some(os) => packaging::packaging(os),
    };
    let answers = seen.engine.is_some();
    match engine_change(seen, wanted, &packaging, p)? {
        EngineChange::Fresh { install, hold } => {
            // The settings are written once the package is in: it may
            // bring dockerd flags of its own (Fedora's sysconfig) that the
            // file must not repeat. The new engine holds no container, so
            // it is (re)started to read them without asking.
            p.steps.push(install);
            p.steps.extend(hold);
            p.steps.push(Step::SettleNewEngine);
        }
        EngineChange::Upgrade { install, hold } => {
            settings(seen, answers, p)?;
            if answers && !p.steps.contains(&Step::ReloadEngine) {
                p.steps.push(Step::ReloadEngine);
            }
            p.steps.push(install);
            p.steps.extend(hold);
            // Debian's package leaves the old dockerd running unless told
            // otherwise: --upgrade-docker is the consent to restart it.
            p.steps.push(Step::RestartEngine);
        }
        change => {
            if let EngineChange::Hold(hold) = change {
                p.steps.push(hold);
            }
            let wrote = settings(seen, answers, p)?;
            let present = seen.installed.is_some() || seen.dockerd_present;
            if !answers && wanted.engine && present {
                p.steps.push(Step::StartEngine);
            } else if answers && (wrote || seen.settings_unread) {
                if wanted.restart {
                    if !p.steps.contains(&Step::ReloadEngine) {
                        // Live restore first, so the restart keeps containers.
                        p.steps.push(Step::ReloadEngine);
                    }
                    p.steps.push(Step::RestartEngine);
                } else {
                    p.notices.push(Notice::RestartPending);
                }
            }
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
    let touches_engine = p.steps.iter().any(|s| {
        matches!(
            s,
            Step::RestartEngine
                | Step::Install {
                    replacing: Some(_),
                    ..
                }
        )
    });
    if touches_engine && seen.lock_held {
        return Err(Refusal::LockHeld);
    }
    Ok(())
}

/// The settings file's step (and a reload where dockerd runs), if it
/// lacks ballast's settings; whether it did.
fn settings(seen: &Observed, answers: bool, p: &mut HostPlan) -> Result<bool, Refusal> {
    let current = daemon::Current {
        file: seen.daemon_json.as_deref(),
        args: &seen.daemon_args,
        swarm: seen.engine.as_ref().is_some_and(|e| e.swarm),
    };
    let Some(after) = daemon::wanted(&current).map_err(Refusal::Settings)? else {
        return Ok(false);
    };
    p.steps.push(Step::WriteSettings {
        before: seen.daemon_json.clone(),
        after,
    });
    if answers {
        p.steps.push(Step::ReloadEngine);
    }
    Ok(true)
}

/// What the engine's package needs; notices go to `p`.
fn engine_change(
    seen: &Observed,
    wanted: &Wanted,
    packaging: &Result<Packaging, String>,
    p: &mut HostPlan,
) -> Result<EngineChange, Refusal> {
    let answers = seen.engine.as_ref();
    let installed = seen.installed.as_deref();
    if !wanted.engine {
        return Ok(EngineChange::None);
    }
    if wanted.version.is_some() {
        // A pin setup cannot check is refused, not ignored.
        packaging
            .as_ref()
            .map_err(|why| Refusal::UnknownOs(why.clone()))?;
    }
    let foreign = installed.is_none() && (answers.is_some() || seen.dockerd_present);
    match (installed, wanted.version) {
        // Someone else's engine (Docker CE, a static build), running or
        // not, or a distribution whose packages setup cannot ask: not
        // ours to pin, and installing beside it would replace it.
        _ if foreign => {
            if packaging.is_ok() {
                p.notices.push(Notice::ForeignEngine {
                    version: answers.map_or("(not running, version unknown)".into(), |e| {
                        e.version.clone()
                    }),
                });
            }
            Ok(EngineChange::None)
        }
        (None, None) => {
            packaging
                .as_ref()
                .map_err(|why| Refusal::UnknownOs(why.clone()))?;
            Err(Refusal::NoEngine {
                available: seen.available.clone(),
            })
        }
        (None, Some(pin)) => {
            let (install, hold) = install(seen, pin, None, packaging)?;
            Ok(EngineChange::Fresh { install, hold })
        }
        (Some(_), None) => Ok(EngineChange::None),
        (Some(have), Some(pin)) if have == pin => {
            let packaging = packaging
                .as_ref()
                .map_err(|w| Refusal::UnknownOs(w.clone()))?;
            let names = vec![packaging.package.to_string()];
            Ok(match packaging.manager.hold(&names) {
                Some(_) if !seen.held => EngineChange::Hold(Step::Hold { packages: names }),
                _ => EngineChange::None,
            })
        }
        (Some(have), Some(pin)) if !wanted.upgrade => {
            p.notices.push(Notice::VersionDiffers {
                installed: have.to_string(),
                pinned: pin.to_string(),
            });
            Ok(EngineChange::None)
        }
        (Some(have), Some(pin)) => {
            let (install, hold) = install(seen, pin, Some(have), packaging)?;
            Ok(EngineChange::Upgrade { install, hold })
        }
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
    if let Some(client) = packaging
        .client
        .filter(|_| !seen.client_available.is_empty())
    {
        let Some(v) = packaging::client_version(pin, &seen.client_available) else {
            return Err(Refusal::VersionUnavailable {
                pinned: format!("{client} for {pin}"),
                available: seen.client_available.clone(),
                listing: packaging.manager.listing(client),
            });
        };
        packages.push((client.to_string(), v));
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

impl HostPlan {
    /// Whether the plan changes nothing and tells nothing.
    pub fn is_settled(&self) -> bool {
        self.steps.is_empty() && self.notices.is_empty() && self.refusal.is_none()
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
