//! `ballast accessory ...`: what the user can type for accessories, the
//! confirmation that deleting data needs, and what is printed. The work is
//! [`ballast_core::accessory`].

use std::io::IsTerminal;
use std::path::Path;

use clap::{Args, Subcommand};

use ballast_core::accessory::{self, Details, Done, Operation};
use ballast_core::change::Change;
use ballast_core::config::Loaded;
use ballast_core::exec;
use ballast_core::fleet::Fleet;
use ballast_core::scope::Scope;
use ballast_core::{Error, Result};

use crate::commands::service;
use crate::output::Printer;

mod backup;

/// Accessories: a database, a cache, a queue, each pinned to its host.
#[derive(Debug, Subcommand)]
pub enum AccessoryCommand {
    /// Deliver the image, create the data directories and files, start the
    /// container and wait until it is healthy; nothing changes if it
    /// already runs its definition.
    Boot(Target),
    /// Remove the container and boot it again; its data stays.
    Reboot(Target),
    /// Start the stopped container and wait until it is healthy.
    Start(Target),
    /// Stop the container, giving it its `stop_timeout`.
    Stop(Target),
    /// Stop and start the container, and wait until it is healthy.
    Restart(Target),
    /// Replace the container with the config's definition. Its ports are
    /// fixed and its data shared, so the old one stops before the new one
    /// starts; the old one is kept for rollback, and started again if the
    /// new one does not become healthy.
    Upgrade(Target),
    /// Return to the container the last upgrade kept.
    Rollback(Target),
    /// The container's logs, each line prefixed by host and accessory.
    Logs(LogsArgs),
    /// Per host: the container's state, health, image and ports, the kept
    /// previous container, and the data directories.
    Details(Target),
    /// Remove the containers (the running one and the kept one). The data
    /// stays, unless --destroy-data.
    Remove(RemoveArgs),
    /// Run a command in the accessory's running container, e.g.
    /// `ballast accessory exec db -- psql -c 'select 1'`; its output passes
    /// through and its exit code is ballast's.
    Exec(ExecArgs),
    /// Copy the accessory's data to a file on this machine, with its
    /// SHA-256 beside it: the `backup.dump` command's output, or else an
    /// archive of its data directories (the accessory stopped meanwhile).
    /// Progress shows bytes.
    Backup(backup::BackupArgs),
    /// Put a backup back: the file is checked against its SHA-256 and read
    /// to the end first, so a truncated or altered backup changes nothing.
    Restore(backup::RestoreArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// An accessory of the config.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The program and its arguments, after `--`; run as they are, with no
    /// shell (give one yourself: `-- sh -c '...'`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Target {
    /// An accessory of the config, or `all`.
    #[arg(value_name = "NAME|all")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub window: crate::cli::LogWindowArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub target: Target,
    /// Delete the accessory's data directories too, for good. Asks for the
    /// accessory's name on a terminal; elsewhere needs
    /// --yes-destroy-data=NAME.
    #[arg(long)]
    pub destroy_data: bool,
    /// Confirm --destroy-data without a prompt by naming the accessory.
    #[arg(long, value_name = "NAME", requires = "destroy_data")]
    pub yes_destroy_data: Option<String>,
}

/// Runs an accessory command; the exit code is the command's for `exec`,
/// else success (failures are errors).
pub async fn run(
    config: &Path,
    accept_new: bool,
    command: AccessoryCommand,
    out: &Printer,
) -> Result<i32> {
    let loaded = service::load(config)?;
    let loaded = &loaded;
    let done = |r: Result<()>| r.map(|()| crate::exit::SUCCESS);
    let (op, target) = match command {
        AccessoryCommand::Exec(args) => return exec(loaded, accept_new, args, out).await,
        AccessoryCommand::Logs(args) => return done(logs(loaded, accept_new, args, out).await),
        AccessoryCommand::Backup(args) => {
            return done(backup::backup(loaded, accept_new, args, out).await)
        }
        AccessoryCommand::Restore(args) => {
            return done(backup::restore(loaded, accept_new, args, out).await)
        }
        AccessoryCommand::Details(t) => {
            return done(details(loaded, accept_new, &t.name, out).await)
        }
        AccessoryCommand::Boot(t) => (Operation::Boot, t.name),
        AccessoryCommand::Reboot(t) => (Operation::Reboot, t.name),
        AccessoryCommand::Start(t) => (Operation::Start, t.name),
        AccessoryCommand::Stop(t) => (Operation::Stop, t.name),
        AccessoryCommand::Restart(t) => (Operation::Restart, t.name),
        AccessoryCommand::Upgrade(t) => (Operation::Upgrade, t.name),
        AccessoryCommand::Rollback(t) => (Operation::Rollback, t.name),
        AccessoryCommand::Remove(args) => {
            let names = accessory::select(&loaded.config, &args.target.name)?;
            if args.destroy_data {
                confirm_destroy(loaded, &names, args.yes_destroy_data.as_deref(), out).await?;
            }
            let op = Operation::Remove {
                destroy_data: args.destroy_data,
            };
            return done(change(loaded, accept_new, op, &args.target.name, names, out).await);
        }
    };
    let names = accessory::select(&loaded.config, &target)?;
    done(change(loaded, accept_new, op, &target, names, out).await)
}

/// `accessory exec NAME -- COMMAND...`: in the running container, no
/// terminal; output passes through byte for byte.
async fn exec(loaded: &Loaded, accept_new: bool, args: ExecArgs, out: &Printer) -> Result<i32> {
    if args.name == "all" {
        return Err(Error::input(
            "choose the accessory",
            "exec runs in one accessory, not `all`",
        )
        .hint("name one: `ballast accessory exec NAME -- COMMAND`"));
    }
    let names = accessory::select(&loaded.config, &args.name)?;
    let fleet = connect(loaded, accept_new, &names).await;
    let ran = async {
        fleet.require_all("connect to the host")?;
        let spec = accessory::specs(loaded, &names).remove(0);
        let host = fleet.get(&spec.host).expect("connected");
        let container = accessory::container::running(host, &spec).await?;
        let command = exec::Command {
            argv: args.command.clone(),
            stdin: false,
            tty: None,
        };
        let mut sink = |o: exec::Output| match o {
            exec::Output::Stdout(b) => out.passthrough(false, &b),
            exec::Output::Stderr(b) => out.passthrough(true, &b),
        };
        let io = exec::Io {
            input: None,
            resizes: None,
            output: &mut sink,
            cancel: crate::signals::cancel_on_signals(),
        };
        exec::run(host, &container, &command, io).await
    }
    .await;
    fleet.close().await;
    Ok(crate::exit::of_command(ran?))
}

/// Runs a change under the lock and says what became of each accessory.
async fn change(
    loaded: &Loaded,
    accept_new: bool,
    op: Operation,
    target: &str,
    names: Vec<String>,
    out: &Printer,
) -> Result<()> {
    let reach = service::reach(loaded, accept_new);
    let mut command = format!("accessory {} {target}", op.word());
    if let Operation::Remove { destroy_data: true } = op {
        command.push_str(" --destroy-data");
    }
    let change = Change {
        loaded,
        reach: &reach,
        command,
        scope: Scope::all(),
    };
    let say = |host: &str, message: &str| out.progress(Some(host), message);
    let (done, result) = accessory::run(&change, &names, op, &say).await;
    if !done.is_empty() {
        out.result(
            &serde_json::json!({ "accessories": done }),
            &done_text(&done),
        );
    }
    result
}

/// Asks for the accessory's name on a terminal; without one, only
/// `--yes-destroy-data=NAME` confirms.
async fn confirm_destroy(
    loaded: &Loaded,
    names: &[String],
    given: Option<&str>,
    out: &Printer,
) -> Result<()> {
    if given.is_some() || !std::io::stdin().is_terminal() || names.len() != 1 {
        return accessory::check_destroy_confirmation(names, given);
    }
    let name = &names[0];
    let a = &loaded.config.accessories[name];
    let dirs: Vec<String> = a
        .data_dirs(&loaded.config.service, name)
        .into_iter()
        .map(|d| d.host)
        .collect();
    out.progress(
        Some(a.host()),
        &format!(
            "This removes accessory {name} and DELETES ITS DATA for good: {}",
            dirs.join(", ")
        ),
    );
    out.progress(None, &format!("Type `{name}` to delete its data:"));
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Error::failed("confirm deleting data", e))?
    .map_err(|e| Error::failed("confirm deleting data", e))?;
    accessory::check_destroy_confirmation(names, Some(answer.trim()))
}

/// One line per accessory: where, and what became of it.
fn done_text(done: &[Done]) -> String {
    let mut text = String::new();
    for d in done {
        match (&d.outcome, &d.error) {
            (Some(o), _) => text.push_str(&format!("{}  {}: {}\n", d.host, d.accessory, o.words())),
            (None, Some(e)) => text.push_str(&format!(
                "{}  {}: failed: {}\n",
                d.host, d.accessory, e.cause
            )),
            (None, None) => {}
        }
        for p in &d.data_kept {
            text.push_str(&format!("  data kept: {p}\n"));
        }
        for p in &d.data_destroyed {
            text.push_str(&format!("  data DELETED: {p}\n"));
        }
    }
    text
}

async fn connect(loaded: &Loaded, accept_new: bool, names: &[String]) -> Fleet {
    let reach = service::reach(loaded, accept_new);
    let hosts = accessory::hosts_of(&loaded.config, names);
    Fleet::connect(&hosts, &reach, service::concurrency(loaded)).await
}

async fn details(loaded: &Loaded, accept_new: bool, target: &str, out: &Printer) -> Result<()> {
    let names = accessory::select(&loaded.config, target)?;
    let fleet = connect(loaded, accept_new, &names).await;
    let found = accessory::details(loaded, &fleet, &names).await;
    fleet.close().await;
    out.result(
        &serde_json::json!({ "accessories": found }),
        &details_text(&found),
    );
    match found.iter().find_map(|d| d.error.clone()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn details_text(found: &[Details]) -> String {
    let mut text = String::new();
    for d in found {
        text.push_str(&format!(
            "{} on {}: image {}\n",
            d.accessory, d.host, d.image
        ));
        if let Some(e) = &d.error {
            text.push_str(&format!("  not read: {}\n", e.cause));
            continue;
        }
        match &d.current {
            Some(c) => text.push_str(&format!(
                "  {} {}{}, image {} ({}), started {}\n",
                c.name,
                c.state,
                c.health
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default(),
                c.image,
                short(&c.image_id),
                c.started_at
            )),
            None => text.push_str("  not booted\n"),
        }
        if let Some(p) = &d.previous {
            text.push_str(&format!(
                "  kept for rollback: {} {}, image {} ({})\n",
                p.name,
                p.state,
                p.image,
                short(&p.image_id)
            ));
        }
        for p in &d.ports {
            text.push_str(&format!("  port {p}\n"));
        }
        for dir in &d.data {
            let found = match (&dir.owner, &dir.mode) {
                (Some(o), Some(m)) if dir.exists => format!("{o} {m}"),
                _ => "missing".to_string(),
            };
            text.push_str(&format!(
                "  data {} -> {}: {found} (config: {})\n",
                dir.path, dir.container, dir.wanted
            ));
        }
    }
    text
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

async fn logs(loaded: &Loaded, accept_new: bool, args: LogsArgs, out: &Printer) -> Result<()> {
    let names = accessory::select(&loaded.config, &args.target.name)?;
    let (window, grep) = crate::commands::logs::window(&args.window)?;
    let fleet = connect(loaded, accept_new, &names).await;
    for e in &fleet.unreachable {
        out.progress(e.host.as_deref(), &format!("did not answer: {}", e.cause));
    }
    let sources = accessory::log_sources(loaded, &fleet, &names, false).await?;
    crate::commands::logs::print(sources, &window, grep.as_ref(), out).await;
    fleet.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_core::accessory::files::DirState;
    use ballast_core::accessory::plan::Observed;
    use ballast_core::accessory::Outcome;
    use ballast_core::release::ContainerState;

    fn done(outcome: Option<Outcome>, error: Option<Error>) -> Done {
        Done {
            accessory: "db".into(),
            host: "h1".into(),
            outcome,
            data_destroyed: Vec::new(),
            data_kept: Vec::new(),
            error,
        }
    }

    #[test]
    fn each_accessory_says_what_became_of_it_and_its_data() {
        let mut removed = done(Some(Outcome::Removed), None);
        removed.data_kept = vec!["/var/lib/ballast/shop/db/data".into()];
        let mut destroyed = done(Some(Outcome::Removed), None);
        destroyed.data_destroyed = vec!["/srv/data/db".into()];
        let failed = done(
            None,
            Some(Error::failed("wait", "Docker reports it unhealthy")),
        );
        assert_eq!(
            done_text(&[removed, destroyed, failed]),
            "h1  db: removed
  data kept: /var/lib/ballast/shop/db/data
h1  db: removed
  data DELETED: /srv/data/db
h1  db: failed: Docker reports it unhealthy
"
        );
    }

    #[test]
    fn details_show_containers_ports_and_data() {
        let observed = |name: &str, state, image: &str| Observed {
            name: name.into(),
            id: String::new(),
            state,
            health: (state == ContainerState::Running).then(|| "healthy".into()),
            digest: "d".into(),
            image: image.into(),
            image_id: "sha256:0123456789abcdef".into(),
            started_at: "2026-12-01T10:00:00Z".into(),
            env: vec!["SECRET=never-shown".into()],
        };
        let d = Details {
            accessory: "db".into(),
            host: "h1".into(),
            image: "pg:2".into(),
            ports: vec!["127.0.0.1:5432:5432".into()],
            current: Some(observed("shop-db", ContainerState::Running, "pg:2")),
            previous: Some(observed("shop-db-previous", ContainerState::Exited, "pg:1")),
            data: vec![DirState {
                path: "/var/lib/ballast/shop/db/data".into(),
                container: "/data".into(),
                exists: true,
                owner: Some("999:999".into()),
                mode: Some("0700".into()),
                wanted: "999:999 0700".into(),
            }],
            error: None,
        };
        assert_eq!(
            details_text(std::slice::from_ref(&d)),
            "db on h1: image pg:2
  shop-db running (healthy), image pg:2 (0123456789ab), started 2026-12-01T10:00:00Z
  kept for rollback: shop-db-previous exited, image pg:1 (0123456789ab)
  port 127.0.0.1:5432:5432
  data /var/lib/ballast/shop/db/data -> /data: 999:999 0700 (config: 999:999 0700)
"
        );
        assert!(!serde_json::to_string(&d).unwrap().contains("never-shown"));
    }
}
