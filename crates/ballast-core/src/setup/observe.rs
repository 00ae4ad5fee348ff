//! What setup looks at on a host before deciding anything: the
//! distribution, the engine's package (installed, held, and the versions
//! the package registry has when setup may install), dockerd's settings
//! file and command line, and the engine itself. Nothing here changes the
//! host, except refreshing the package lists when versions are needed.

use super::daemon;
use super::machine::Machine;
use super::packaging::{self, Packaging};
use super::plan::{needs_catalog, Observed, Wanted};
use crate::doctor::parse::os_release;
use crate::error::Result;

/// Observes `machine` for the plan `wanted` asks for.
pub async fn observe(machine: &Machine, wanted: &Wanted<'_>) -> Result<Observed> {
    let mut seen = Observed::default();
    let os = machine.ask("cat", &["/etc/os-release"]).await?;
    seen.os = os.success().then(|| os_release(&os.stdout)).flatten();
    let (json, args, engine) = tokio::join!(
        settings_file(machine),
        dockerd_args(machine),
        machine.engine(),
    );
    seen.daemon_json = json?;
    seen.daemon_args = args?;
    seen.engine = engine;
    // A running dockerd has its program on disk too; the flags above may
    // come from a unit file that names no installed program.
    let programs = [
        "-x",
        "/usr/bin/dockerd",
        "-o",
        "-x",
        "/usr/sbin/dockerd",
        "-o",
        "-x",
        "/usr/local/bin/dockerd",
    ];
    let present = seen.engine.is_some() || machine.ask("test", &programs).await?.success();
    seen.dockerd_present = present;
    if let Some(lock) = wanted.lock_dir {
        seen.lock_held = machine.ask("test", &["-e", lock]).await?.success();
    }
    if let Some((server, _)) = wanted.registry_ca {
        let ca = machine
            .ask_root("cat", &[&super::execute::ca_path(server)])
            .await?;
        seen.registry_ca = ca.success().then_some(ca.stdout);
    }
    if seen.daemon_json.is_some() && seen.engine.is_some() {
        seen.settings_unread = settings_unread(machine).await?;
    }
    let Some(packaging) = seen
        .os
        .as_ref()
        .and_then(|os| packaging::packaging(os).ok())
    else {
        return Ok(seen);
    };
    package(machine, packaging, wanted, &mut seen).await?;
    Ok(seen)
}

/// The settings file, read as root (it may be 0600): `None` when there
/// is none; an error when it cannot be read, so it is never taken for
/// missing and replaced.
pub async fn settings_file(machine: &Machine) -> Result<Option<String>> {
    let out = machine.ask_root("cat", &[daemon::PATH]).await?;
    if out.success() {
        return Ok(Some(out.stdout));
    }
    if out.stderr.contains("No such file") {
        return Ok(None);
    }
    Err(
        crate::error::Error::failed(format!("read {}", daemon::PATH), out.stderr.trim())
            .on(machine.name())
            .hint("setup reads it as root: log in as root or give the SSH user passwordless sudo"),
    )
}

/// dockerd's flags: its command line where it runs, else what its service
/// would give it (the unit's ExecStart and the package's defaults file),
/// so the settings file never repeats one of them.
pub async fn dockerd_args(machine: &Machine) -> Result<String> {
    let running = machine.ask("ps", &["-o", "args=", "-C", "dockerd"]).await?;
    let running = running.stdout.trim();
    if !running.is_empty() {
        return Ok(running.to_string());
    }
    let (unit, sysconfig, default) = tokio::join!(
        machine.ask("systemctl", &["show", "--property=ExecStart", "docker"]),
        machine.ask("cat", &["/etc/sysconfig/docker"]),
        machine.ask("cat", &["/etc/default/docker"]),
    );
    let mut args = String::new();
    // Each is optional: no systemd, no such file.
    for out in [unit, sysconfig, default].into_iter().flatten() {
        if out.success() {
            for line in out
                .stdout
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
            {
                args.push(' ');
                args.push_str(line);
            }
        }
    }
    // Quotes of `OPTIONS="--live-restore ..."` are not part of the flags.
    Ok(args.replace(['"', '\''], " ").trim().to_string())
}

/// The engine's package: installed version, hold, and (when needed) the
/// versions available.
async fn package(
    machine: &Machine,
    packaging: Packaging,
    wanted: &Wanted<'_>,
    seen: &mut Observed,
) -> Result<()> {
    let manager = packaging.manager;
    let installed = run(machine, &manager.installed(packaging.package)).await?;
    seen.installed = manager.installed_version(installed.success(), &installed.stdout);
    if let Some(holds) = manager.holds() {
        let holds = run(machine, &holds).await?;
        seen.held = holds.stdout.lines().any(|l| l.trim() == packaging.package);
    }
    if !needs_catalog(seen.installed.as_deref(), seen.engine.is_some(), wanted) {
        return Ok(());
    }
    machine
        .change("refresh the package lists", &manager.refresh())
        .await?;
    let listed = run(machine, &manager.available(packaging.package)).await?;
    seen.available = manager.available_versions(packaging.package, &listed.stdout);
    if let Some(client) = packaging.client {
        let listed = run(machine, &manager.available(client)).await?;
        seen.client_available = manager.available_versions(client, &listed.stdout);
    }
    Ok(())
}

async fn run(machine: &Machine, c: &packaging::Command) -> Result<crate::ssh::CommandOutput> {
    let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    machine.ask(c.program, &args).await
}

/// Whether the settings file changed after dockerd started.
async fn settings_unread(machine: &Machine) -> Result<bool> {
    let (changed, running_for, now) = tokio::join!(
        machine.ask("stat", &["-c", "%Y", daemon::PATH]),
        machine.ask("ps", &["-o", "etimes=", "-C", "dockerd"]),
        machine.ask("date", &["+%s"]),
    );
    let number = |text: &str| {
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
    };
    let (Some(changed), Some(running_for), Some(now)) = (
        number(&changed?.stdout),
        number(&running_for?.stdout),
        number(&now?.stdout),
    ) else {
        return Ok(false);
    };
    Ok(changed > now.saturating_sub(running_for) + 1)
}
