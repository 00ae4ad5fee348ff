//! `ballast prune` and `ballast remove`: upkeep of the hosts. The work is
//! `ballast_core::prune` and `ballast_core::remove`; this module asks for
//! the confirmation `remove` needs, and says per host what went and what
//! stayed.

use std::io::IsTerminal;
use std::path::Path;

use ballast_core::change::Change;
use ballast_core::prune::{self, HostPruned, Selection};
use ballast_core::remove::{self, HostRemoved};
use ballast_core::scope::Scope;
use ballast_core::{Error, Result};

use crate::cli::{PruneArgs, RemoveArgs};
use crate::commands::service;
use crate::output::Printer;
use crate::signals;

/// `ballast prune`: under the lock, or only looking with `--dry-run`.
pub async fn prune(config: &Path, accept_new: bool, args: PruneArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args.scope)?;
    let reach = service::reach(&loaded, accept_new);
    let change = Change {
        loaded: &loaded,
        reach: &reach,
        command: with_scope("prune", &scope),
        scope,
    };
    let cancel = signals::cancel_on_signals();
    let (reports, result) = prune::run(&change, args.dry_run, &cancel).await;
    if !reports.is_empty() {
        out.result(
            &serde_json::json!({"dry_run": args.dry_run, "hosts": reports}),
            &prune_text(&reports, args.dry_run, result.is_ok()),
        );
    }
    result
}

/// `ballast remove`: after the operator's confirmation, under the lock.
pub async fn remove(
    config: &Path,
    accept_new: bool,
    args: RemoveArgs,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = Scope::new(&loaded.config, args.hosts, Vec::new(), false)?;
    let service = loaded.config.service.clone();
    let hosts = scope.hosts_of(&loaded.config);
    if !args.yes {
        confirm(&service, &hosts, out).await?;
    }
    let reach = service::reach(&loaded, accept_new);
    let change = Change {
        loaded: &loaded,
        reach: &reach,
        command: with_scope("remove", &scope),
        scope,
    };
    let cancel = signals::cancel_on_signals();
    let (reports, result) = remove::run(&change, &cancel).await;
    if !reports.is_empty() {
        out.result(
            &serde_json::json!({"service": service, "hosts": reports}),
            &remove_text(&service, &reports, result.is_ok()),
        );
    }
    result
}

fn with_scope(command: &str, scope: &Scope) -> String {
    match scope.describe() {
        s if s.is_empty() => command.to_string(),
        s => format!("{command} {s}"),
    }
}

/// Asks the operator to type the service's name; refuses when stdin is no
/// terminal (a script must say `--yes`).
async fn confirm(service: &str, hosts: &[String], out: &Printer) -> Result<()> {
    let step = "confirm the removal";
    if !std::io::stdin().is_terminal() {
        return Err(Error::input(
            step,
            format_args!(
                "removing {service} needs a confirmation, and stdin is not a terminal to ask on"
            ),
        )
        .hint(format!(
            "to remove {service} from {} (its containers, routes, images and ballast's files; never its data), run it again with --yes",
            hosts.join(", ")
        )));
    }
    out.progress(
        None,
        &format!(
            "This stops and removes {service} on {}: its containers, its proxy routes, its images \
             and ballast's files there. Role volumes and the audit log stay.",
            hosts.join(", ")
        ),
    );
    out.progress(None, &format!("Type `{service}` to go on:"));
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Error::failed(step, e))?
    .map_err(|e| Error::failed(step, e))?;
    if answer.trim() != service {
        return Err(Error::input(
            step,
            format_args!(
                "`{}` is not `{service}`; nothing was changed",
                answer.trim()
            ),
        )
        .hint(format!("type `{service}` exactly, or pass --yes")));
    }
    Ok(())
}

/// "1 container", "2 images".
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ => format!("{n} {what}s"),
    }
}

fn selection_lines(s: &Selection, text: &mut String) {
    for c in &s.containers {
        text.push_str(&format!("  container {}\n", c.describe()));
    }
    for i in &s.images {
        text.push_str(&format!("  image {}\n", i.describe()));
    }
}

/// What prune did (or would do), host by host, and a summary.
fn prune_text(reports: &[HostPruned], dry_run: bool, ok: bool) -> String {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut text = String::new();
    let (mut containers, mut images) = (0, 0);
    for r in reports {
        let s = &r.selection;
        containers += s.containers.len();
        images += s.images.len();
        let what = format!(
            "{}, {}",
            count(s.containers.len(), "container"),
            count(s.images.len(), "image")
        );
        match (&r.error, s.is_empty()) {
            (None, true) => text.push_str(&format!("{}  nothing to prune\n", r.host)),
            (None, false) => text.push_str(&format!("{}  {verb} {what}\n", r.host)),
            (Some(e), _) => text.push_str(&format!(
                "{}  {verb} {what}, then failed: {}\n",
                r.host, e.cause
            )),
        }
        selection_lines(s, &mut text);
    }
    let total = format!(
        "{}, {}",
        count(containers, "container"),
        count(images, "image")
    );
    let hosts = count(reports.len(), "host");
    text.push_str(&match (dry_run, ok) {
        (true, _) => format!("dry run on {hosts}: {total} would go; nothing was changed"),
        (false, true) => format!("pruned {hosts}: {total} removed; volumes and data untouched"),
        (false, false) => format!("prune stopped short: {total} removed; run it again to finish"),
    });
    text
}

/// What remove did, host by host: what went and what stayed.
fn remove_text(service: &str, reports: &[HostRemoved], ok: bool) -> String {
    let mut text = String::new();
    for r in reports {
        let what = [
            count(r.routes.len(), "route"),
            count(r.containers.len(), "container"),
            count(r.images.len(), "image"),
            count(r.files.len(), "file"),
        ]
        .join(", ");
        match &r.error {
            None => text.push_str(&format!("{}  removed {what}\n", r.host)),
            Some(e) => text.push_str(&format!(
                "{}  removed {what}, then failed: {}\n",
                r.host, e.cause
            )),
        }
        for route in &r.routes {
            text.push_str(&format!("  route {route}\n"));
        }
        selection_lines(
            &Selection {
                containers: r.containers.clone(),
                images: r.images.clone(),
            },
            &mut text,
        );
        for n in &r.networks {
            text.push_str(&format!("  network {n}\n"));
        }
        for f in &r.files {
            text.push_str(&format!("  file {f}\n"));
        }
        for k in &r.kept {
            text.push_str(&format!("  kept {} ({})\n", k.path, k.why.words()));
        }
    }
    let hosts = count(reports.len(), "host");
    text.push_str(&if ok {
        format!("removed {service} from {hosts}; its data stays")
    } else {
        format!("removing {service} stopped short; run `ballast remove` again to finish")
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_core::prune::{Doomed, ImageFound};
    use ballast_core::release::ContainerState;
    use ballast_core::remove::{Kept, KeptWhy};

    fn doomed(version: &str, state: ContainerState) -> Doomed {
        Doomed {
            name: format!("shop-web-{version}"),
            role: "web".into(),
            version: version.into(),
            state,
            id: String::new(),
        }
    }

    fn image(tag: &str) -> ImageFound {
        ImageFound {
            id: "sha256:0123456789abcdef".into(),
            tags: vec![tag.into()],
        }
    }

    fn pruned(host: &str, containers: Vec<Doomed>, images: Vec<ImageFound>) -> HostPruned {
        HostPruned {
            host: host.into(),
            selection: Selection { containers, images },
            error: None,
        }
    }

    #[test]
    fn prune_says_per_host_what_went() {
        let reports = [
            pruned(
                "h1",
                vec![doomed("v1", ContainerState::Exited)],
                vec![image("shop:v1"), image("shop:v0")],
            ),
            pruned("h2", vec![], vec![]),
        ];
        assert_eq!(
            prune_text(&reports, false, true),
            "h1  removed 1 container, 2 images
  container shop-web-v1 (web v1, exited)
  image shop:v1 (0123456789ab)
  image shop:v0 (0123456789ab)
h2  nothing to prune
pruned 2 hosts: 1 container, 2 images removed; volumes and data untouched"
        );
        assert_eq!(
            prune_text(&reports[..1], true, true),
            "h1  would remove 1 container, 2 images
  container shop-web-v1 (web v1, exited)
  image shop:v1 (0123456789ab)
  image shop:v0 (0123456789ab)
dry run on 1 host: 1 container, 2 images would go; nothing was changed"
        );
    }

    #[test]
    fn prune_says_where_it_stopped() {
        let mut r = pruned("h1", vec![doomed("v1", ContainerState::Exited)], vec![]);
        r.error = Some(Error::failed("remove image shop:v0", "conflict").on("h1"));
        assert_eq!(
            prune_text(&[r], false, false),
            "h1  removed 1 container, 0 images, then failed: conflict
  container shop-web-v1 (web v1, exited)
prune stopped short: 1 container, 0 images removed; run it again to finish"
        );
    }

    #[test]
    fn remove_says_what_went_and_what_stayed() {
        let r = HostRemoved {
            host: "h1".into(),
            routes: vec!["shop-web".into()],
            containers: vec![doomed("v2", ContainerState::Running)],
            networks: vec!["ballast-shop".into()],
            images: vec![image("shop:v2")],
            files: vec!["/var/lib/ballast/shop/secrets".into()],
            kept: vec![
                Kept {
                    path: "/var/lib/ballast/shop/audit.log".into(),
                    why: KeptWhy::AuditLog,
                },
                Kept {
                    path: "/var/lib/ballast/shop/data".into(),
                    why: KeptWhy::Data,
                },
            ],
            error: None,
        };
        assert_eq!(
            remove_text("shop", &[r], true),
            "h1  removed 1 route, 1 container, 1 image, 1 file
  route shop-web
  container shop-web-v2 (web v2, running)
  image shop:v2 (0123456789ab)
  network ballast-shop
  file /var/lib/ballast/shop/secrets
  kept /var/lib/ballast/shop/audit.log (the audit log: the record of this removal)
  kept /var/lib/ballast/shop/data (data: a role's volume, or holding one)
removed shop from 1 host; its data stays"
        );
    }
}
