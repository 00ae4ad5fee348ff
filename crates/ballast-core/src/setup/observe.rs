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
        machine.ask("cat", &[daemon::PATH]),
        machine.ask("ps", &["-o", "args=", "-C", "dockerd"]),
        machine.engine(),
    );
    let json = json?;
    seen.daemon_json = json.success().then_some(json.stdout);
    seen.daemon_args = args?.stdout.trim().to_string();
    seen.engine = engine;
    if let Some((server, _)) = wanted.registry_ca {
        let ca = machine
            .ask("cat", &[&super::execute::ca_path(server)])
            .await?;
        seen.registry_ca = ca.success().then_some(ca.stdout);
    }
    if seen.daemon_json.is_some() && !seen.daemon_args.is_empty() {
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
