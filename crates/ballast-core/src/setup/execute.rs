//! Carrying out one host's setup plan, step by step, as root. Each step
//! says what it does before doing it; the first failure stops the host's
//! steps with the host, the step and the program's own words.

use super::daemon;
use super::machine::{Machine, SMALL};
use super::packaging::Manager;
use super::plan::{EngineSeen, Step};
use crate::error::{Error, Result};

/// Where the engine looks for the CA of registry `server` (HOST[:PORT]).
pub fn ca_path(server: &str) -> String {
    format!("/etc/docker/certs.d/{server}/ca.crt")
}

/// Where the file is written first (then renamed), so a cut connection
/// never leaves dockerd half a settings file; one per run, so two setups
/// at once never write into each other's.
fn new_path() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "/etc/docker/daemon.json.ballast-{}-{nanos}",
        std::process::id()
    )
}
/// The operator's file as it was before setup's last change.
const BACKUP: &str = "/etc/docker/daemon.json.before-ballast";

/// Carries out `steps` on `machine`, telling `say` about each.
pub async fn execute(
    machine: &Machine,
    manager: Option<Manager>,
    steps: &[Step],
    say: &(dyn Fn(String) + Sync),
) -> Result<()> {
    for step in steps {
        match step {
            Step::WriteSettings { before, after } => {
                say(format!("writing {}", daemon::PATH));
                write_settings(machine, before.is_some(), after).await?;
            }
            Step::ReloadEngine => {
                say("dockerd reloads its settings (live-restore takes effect now)".into());
                reload(machine).await?;
            }
            Step::Install {
                packages,
                replacing,
            } => {
                let Some(manager) = manager else {
                    return Err(Error::failed(
                        "install Docker",
                        "no package manager is known for this host",
                    )
                    .on(machine.name()));
                };
                let what: Vec<String> = packages.iter().map(|(p, v)| format!("{p} {v}")).collect();
                say(match replacing {
                    Some(old) => format!("replacing Docker {old} with {}", what.join(", ")),
                    None => format!("installing {}", what.join(", ")),
                });
                install(machine, manager, packages).await?;
            }
            Step::Hold { packages } => {
                if let Some(hold) = manager.and_then(|m| m.hold(packages)) {
                    say(format!("holding {} at its version", packages.join(", ")));
                    machine.change("hold the Docker packages", &hold).await?;
                }
            }
            Step::StartEngine => start(machine, say).await?,
            Step::SettleNewEngine => settle_new_engine(machine, say).await?,
            Step::TrustRegistry { server, pem } => {
                let path = ca_path(server);
                say(format!("the engine trusts the registry's CA ({path})"));
                let step = "install the registry's CA";
                let dir = path
                    .rsplit_once('/')
                    .map_or("/etc/docker/certs.d", |(d, _)| d);
                machine
                    .root(step, "mkdir", &["-p", dir], None, SMALL)
                    .await?;
                machine
                    .root(step, "tee", &[&path], Some(pem.as_bytes()), SMALL)
                    .await?;
            }
            Step::RestartEngine => {
                say("restarting dockerd".into());
                restart(machine).await?;
            }
        }
    }
    Ok(())
}

/// Installs `packages`, then checks the package database says so: some
/// managers (yum) skip a downgrade and still exit 0.
async fn install(machine: &Machine, manager: Manager, packages: &[(String, String)]) -> Result<()> {
    let step = "install Docker";
    machine
        .change(step, &manager.install(packages))
        .await
        .map_err(|e| {
            e.hint("if the package manager was interrupted before, run `dpkg --configure -a` (apt) or `dnf history undo last` on the host; then run setup again")
        })?;
    for (package, version) in packages {
        let c = manager.installed(package);
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let out = machine.ask(c.program, &args).await?;
        let now = manager.installed_version(out.success(), &out.stdout);
        if now.as_deref() != Some(version.as_str()) {
            return Err(Error::failed(
                step,
                format_args!(
                    "{package} is {} after installing {version}",
                    now.as_deref().unwrap_or("not installed")
                ),
            )
            .on(machine.name())
            .hint("install that version by hand to see why the package manager declined, then run setup again"));
        }
    }
    Ok(())
}

/// Writes ballast's settings for an engine this run installed, around the
/// flags its package gives dockerd, then starts it, or restarts it if the
/// package already started it (it runs no container yet).
async fn settle_new_engine(machine: &Machine, say: &(dyn Fn(String) + Sync)) -> Result<()> {
    let before = super::observe::settings_file(machine).await?;
    let current = daemon::Current {
        file: before.as_deref(),
        args: &super::observe::dockerd_args(machine).await?,
        swarm: false,
    };
    let wanted = daemon::wanted(&current).map_err(|why| {
        Error::failed("write the Docker engine's settings", why)
            .on(machine.name())
            .hint("fix the file by hand, then run setup again")
    })?;
    let Some(after) = wanted else {
        return start(machine, say).await;
    };
    say(format!(
        "{} changes:\n{}",
        daemon::PATH,
        daemon::diff(before.as_deref(), &after).trim_end()
    ));
    say(format!("writing {}", daemon::PATH));
    write_settings(machine, before.is_some(), &after).await?;
    if dockerd_pids(machine).await?.is_empty() {
        start(machine, say).await
    } else {
        say("restarting the new dockerd to read them (it runs no container yet)".into());
        restart(machine).await
    }
}

async fn write_settings(machine: &Machine, had_file: bool, text: &str) -> Result<()> {
    let step = "write the Docker engine's settings";
    machine
        .root(step, "mkdir", &["-p", "/etc/docker"], None, SMALL)
        .await?;
    if had_file {
        machine
            .root(step, "cp", &["-p", daemon::PATH, BACKUP], None, SMALL)
            .await?;
    }
    let new = new_path();
    machine
        .root(step, "tee", &[&new], Some(text.as_bytes()), SMALL)
        .await?;
    machine
        .root(step, "chmod", &["0644", &new], None, SMALL)
        .await?;
    machine
        .root(step, "mv", &["-f", &new, daemon::PATH], None, SMALL)
        .await?;
    Ok(())
}

/// Sends dockerd SIGHUP (through systemd where it runs the host).
async fn reload(machine: &Machine) -> Result<()> {
    let step = "reload the Docker engine's settings";
    if machine.systemd().await {
        machine
            .root(step, "systemctl", &["reload", "docker"], None, SMALL)
            .await?;
        return Ok(());
    }
    for pid in dockerd_pids(machine).await? {
        if pid.chars().all(|c| c.is_ascii_digit()) {
            machine
                .root(step, "kill", &["-s", "HUP", &pid], None, SMALL)
                .await?;
        }
    }
    Ok(())
}

/// Restarts dockerd and checks that it did: through systemd where it runs
/// the host; elsewhere by stopping dockerd (SIGTERM; with live restore the
/// containers keep running) and starting the service again, since a
/// dockerd the init script did not start would survive its `restart`.
async fn restart(machine: &Machine) -> Result<()> {
    let step = "restart the Docker engine";
    let before = dockerd_pids(machine).await?;
    if machine.systemd().await {
        service(machine, step, Action::Restart).await?;
        machine.wait_for_engine(step).await?;
    } else {
        for pid in &before {
            machine
                .root(step, "kill", &["-s", "TERM", pid], None, SMALL)
                .await?;
        }
        let until = std::time::Instant::now() + super::machine::ENGINE_START;
        while dockerd_pids(machine)
            .await?
            .iter()
            .any(|p| before.contains(p))
        {
            if std::time::Instant::now() > until {
                return Err(Error::timeout(step, super::machine::ENGINE_START)
                    .on(machine.name())
                    .hint("dockerd did not stop after SIGTERM: look at its log on the host"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        start_service(machine, step).await?;
    }
    let after = dockerd_pids(machine).await?;
    if !before.is_empty() && after.iter().all(|p| before.contains(p)) {
        return Err(Error::failed(
            step,
            "dockerd kept running through `restart`: the docker service does not manage it (it was started some other way)",
        )
        .on(machine.name())
        .hint("restart dockerd the way it was started, then run setup again"));
    }
    Ok(())
}

async fn dockerd_pids(machine: &Machine) -> Result<Vec<String>> {
    let out = machine.ask("ps", &["-o", "pid=", "-C", "dockerd"]).await?;
    Ok(out.stdout.split_whitespace().map(str::to_string).collect())
}

async fn start(machine: &Machine, say: &(dyn Fn(String) + Sync)) -> Result<()> {
    let step = "start the Docker engine";
    if machine.engine().await.is_some() {
        return Ok(());
    }
    say("starting dockerd".into());
    let seen = start_service(machine, step).await?;
    say(format!("Docker {} answers", seen.version));
    Ok(())
}

/// Starts the docker service and waits until the engine answers. Without
/// systemd, the init script's failure is only reported if the engine does
/// not come up: another supervisor (runit, s6, a container's init) may be
/// the one that starts it.
async fn start_service(machine: &Machine, step: &str) -> Result<EngineSeen> {
    if machine.systemd().await {
        service(machine, step, Action::Start).await?;
        return machine.wait_for_engine(step).await;
    }
    let started = service(machine, step, Action::Start).await;
    match machine.wait_for_engine(step).await {
        Ok(seen) => Ok(seen),
        Err(e) => Err(match started {
            Err(why) => Error {
                cause: format!("{}; `service docker start` said: {}", e.cause, why.cause),
                ..e
            },
            Ok(()) => e,
        }),
    }
}

/// What is asked of the docker service.
#[derive(Clone, Copy)]
enum Action {
    Start,
    Restart,
}

/// Starts or restarts the docker service with the host's init system.
async fn service(machine: &Machine, step: &str, action: Action) -> Result<()> {
    if machine.systemd().await {
        let args: &[&str] = match action {
            Action::Start => &["enable", "--now", "docker"],
            Action::Restart => &["restart", "docker"],
        };
        machine
            .root(step, "systemctl", args, None, super::machine::ENGINE_START)
            .await?;
    } else {
        machine
            .root(
                step,
                "service",
                &[
                    "docker",
                    match action {
                        Action::Start => "start",
                        Action::Restart => "restart",
                    },
                ],
                None,
                super::machine::ENGINE_START,
            )
            .await?;
    }
    Ok(())
}
