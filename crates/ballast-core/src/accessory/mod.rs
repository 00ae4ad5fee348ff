//! Accessories on their hosts (`ballast accessory ...`): a database, a
//! cache or a queue, one container pinned to its host, its data in host
//! directories. Every change runs under the service's lock and leaves an
//! audit record; an app deploy, rollback, prune or `ballast remove` never
//! touches an accessory (its containers carry no `io.ballast.service`
//! label, so none of them select it) nor its data.
//!
//! # Layout
//! - [`spec`]: the container definition, its labels and digest.
//! - [`plan`]: what each command does on a host, decided as data.
//! - [`container`]: operations on one container (inspect, create, start,
//!   stop, rename, remove, wait until healthy, exec), reusable.
//! - [`files`]: data directories (owner, mode), copied files, and the one
//!   place data is deleted.
//! - `operate`: the commands carried out on a host.
//! - `details`: per host, what runs and where the data is; log sources.
//! - [`backup`]: `backup` and `restore`: the data to a checksummed file on
//!   this machine and back.

pub mod backup;
pub mod container;
mod details;
pub mod files;
mod operate;
pub mod plan;
pub mod spec;

use std::sync::Mutex;

use serde::Serialize;

use crate::change::{self, Change};
use crate::config::{Config, Loaded};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::state::{self, AuditRecord};

pub use details::{details, log_sources, Details};
pub use spec::AccessorySpec;

/// What `ballast accessory NAME|all` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Deliver the image, create the data directories and files, create
    /// and start the container, wait until healthy; nothing if it runs.
    Boot,
    /// Remove the container and boot again; data kept.
    Reboot,
    Start,
    Stop,
    Restart,
    /// Replace the container with the config's definition, keeping the old
    /// one for `rollback`; health-gated, undone on failure.
    Upgrade,
    /// Back to the container the last upgrade kept.
    Rollback,
    /// Remove the containers (and ballast's copies of the files); the data
    /// only with `destroy_data`, confirmed by the caller.
    Remove {
        destroy_data: bool,
    },
}

impl Operation {
    pub fn word(self) -> &'static str {
        match self {
            Operation::Boot => "boot",
            Operation::Reboot => "reboot",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Restart => "restart",
            Operation::Upgrade => "upgrade",
            Operation::Rollback => "rollback",
            Operation::Remove { .. } => "remove",
        }
    }
}

/// What a command did to an accessory on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Booted,
    /// It ran this definition already; nothing changed.
    AlreadyRunning,
    Started,
    Stopped,
    AlreadyStopped,
    Restarted,
    Rebooted,
    Upgraded,
    /// It ran this definition already; nothing changed.
    UpToDate,
    RolledBack,
    Removed,
    /// Nothing of it was on the host.
    NotThere,
}

impl Outcome {
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Booted => "booted",
            Outcome::AlreadyRunning => "already running this definition; nothing changed",
            Outcome::Started => "started",
            Outcome::Stopped => "stopped",
            Outcome::AlreadyStopped => "already stopped",
            Outcome::Restarted => "restarted",
            Outcome::Rebooted => "rebooted; data kept",
            Outcome::Upgraded => "upgraded; the previous container is kept for rollback",
            Outcome::UpToDate => "runs this definition already; nothing changed",
            Outcome::RolledBack => "rolled back; the replaced container is kept",
            Outcome::Removed => "removed",
            Outcome::NotThere => "not on the host; nothing to do",
        }
    }
}

/// One accessory on its host after a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub accessory: String,
    pub host: String,
    pub outcome: Option<Outcome>,
    /// Data directories deleted (`--destroy-data` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_destroyed: Vec<String>,
    /// Data directories left in place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_kept: Vec<String>,
    #[serde(serialize_with = "crate::prune::error_text")]
    pub error: Option<Error>,
}

/// Progress of a command: host, then message.
pub type Say<'a> = &'a (dyn Fn(&str, &str) + Sync);

/// The accessories `target` names: `all` of them, or the one named.
pub fn select(config: &Config, target: &str) -> Result<Vec<String>> {
    let known: Vec<String> = config.accessories.keys().cloned().collect();
    if known.is_empty() {
        return Err(
            Error::input("choose the accessory", "the config defines no accessories")
                .hint("add one under `accessories:` in ballast.yml (see docs/accessories.md)"),
        );
    }
    if target == "all" {
        return Ok(known);
    }
    if known.iter().any(|k| k == target) {
        return Ok(vec![target.to_string()]);
    }
    let close = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(target, k), k))
        .filter(|(d, _)| *d <= 2 && *d < target.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    Err(Error::input(
        "choose the accessory",
        format_args!("no accessory `{target}` in the config"),
    )
    .hint(format!(
        "{close}the config's accessories: {}, or `all`",
        known.join(", ")
    )))
}

/// The hosts of `names`, once each, in name order.
pub fn hosts_of(config: &Config, names: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for n in names {
        if let Some(a) = config.accessories.get(n) {
            if !hosts.iter().any(|h| h == a.host()) {
                hosts.push(a.host().to_string());
            }
        }
    }
    hosts
}

/// The definition of every accessory in `names`.
pub fn specs(loaded: &Loaded, names: &[String]) -> Vec<AccessorySpec> {
    let config = &loaded.config;
    names
        .iter()
        .filter_map(|n| {
            Some(AccessorySpec::new(
                config,
                &loaded.dir,
                n,
                config.accessories.get(n)?,
            ))
        })
        .collect()
}

/// Runs `op` on the accessories `names`, one after the other, under the
/// lock on their hosts. Returns what happened to each, even after a
/// failure, and the outcome (the first failure).
pub async fn run(
    c: &Change<'_>,
    names: &[String],
    op: Operation,
    say: Say<'_>,
) -> (Vec<Done>, Result<()>) {
    let mut specs = specs(c.loaded, names);
    // Files are read before any host is reached: a missing one changes nothing.
    let files = match op {
        Operation::Boot | Operation::Reboot | Operation::Upgrade => {
            match specs
                .iter_mut()
                .map(files::read_local)
                .collect::<Result<Vec<_>>>()
            {
                Ok(f) => f,
                Err(e) => return (Vec::new(), Err(e)),
            }
        }
        _ => specs.iter().map(|_| Vec::new()).collect(),
    };
    let hosts = hosts_of(&c.loaded.config, names);
    let reports = Mutex::new(Vec::new());
    let work = async |fleet: &Fleet| {
        let ctx = operate::Ctx::new(c.loaded, say);
        let mut first = None;
        for (spec, files) in specs.iter().zip(&files) {
            let host = fleet.get(&spec.host).expect("every host answered");
            let mut done = Done {
                accessory: spec.name.clone(),
                host: spec.host.clone(),
                outcome: None,
                data_destroyed: Vec::new(),
                data_kept: Vec::new(),
                error: None,
            };
            match operate::on_host(&ctx, host, spec, op, files, &mut done).await {
                Ok(outcome) => done.outcome = Some(outcome),
                Err(e) => {
                    first.get_or_insert(e.clone());
                    done.error = Some(e);
                }
            }
            if !done.data_destroyed.is_empty() {
                audit_destroyed(c, host, &done).await;
            }
            reports.lock().unwrap_or_else(|e| e.into_inner()).push(done);
        }
        first.map_or(Ok(()), Err)
    };
    let result = change::run_on(c, &hosts, work).await;
    (
        reports.into_inner().unwrap_or_else(|e| e.into_inner()),
        result,
    )
}

/// A record of its own for deleted data: who deleted what, where.
async fn audit_destroyed(c: &Change<'_>, host: &crate::host::Host, done: &Done) {
    let record = AuditRecord {
        at: state::now_rfc3339(),
        who: state::whoami(),
        command: format!("accessory remove {} --destroy-data", done.accessory),
        version: None,
        hosts: vec![done.host.clone()],
        outcome: format!(
            "data of accessory {} deleted: {}",
            done.accessory,
            done.data_destroyed.join(", ")
        ),
        forced_unsafe: Vec::new(),
        skipped: Vec::new(),
        took_over: Vec::new(),
    };
    if let Err(e) = state::append_audit(host, &c.loaded.config.service, &record).await {
        tracing::warn!(host = %done.host, error = %e, "the audit record of deleted data was not written");
    }
}

/// Refuses `--destroy-data` unless `confirmed` is the accessory's own name
/// (typed at the prompt or given as `--yes-destroy-data=NAME`).
pub fn check_destroy_confirmation(names: &[String], confirmed: Option<&str>) -> Result<()> {
    let step = "confirm deleting data";
    let [name] = names else {
        return Err(Error::input(
            step,
            "--destroy-data deletes the data of one accessory at a time",
        )
        .hint(
            "name the accessory whose data goes: `ballast accessory remove NAME --destroy-data`",
        ));
    };
    match confirmed {
        Some(c) if c == name => Ok(()),
        Some(c) => Err(Error::input(
            step,
            format_args!("`{c}` is not `{name}`; nothing was changed"),
        )
        .hint(format!("type `{name}` exactly, or pass --yes-destroy-data={name}"))),
        None => Err(Error::input(
            step,
            format_args!("deleting the data of {name} needs its name typed at the prompt, and stdin is not a terminal; nothing was changed"),
        )
        .hint(format!("to delete it for good, run it again with --yes-destroy-data={name}; without --destroy-data, `accessory remove` keeps the data"))),
    }
}

/// An error for an accessory that is not on its host.
pub(crate) fn not_booted(spec: &AccessorySpec, host: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("find accessory {}", spec.name),
        format_args!("{} is not there", spec.container_name()),
    )
    .on(host)
    .hint(format!(
        "boot it first: `ballast accessory boot {}`",
        spec.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\naccessories:\n  db:\n    image: pg\n    host: b\n  cache:\n    image: redis\n    host: b\n  queue:\n    image: q\n    host: c\n";
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_target_is_one_accessory_or_all() {
        let c = config();
        assert_eq!(select(&c, "all").unwrap(), ["cache", "db", "queue"]);
        assert_eq!(select(&c, "db").unwrap(), ["db"]);
        let e = select(&c, "dbb").unwrap_err();
        assert_eq!(e.cause, "no accessory `dbb` in the config");
        assert_eq!(
            e.hint.unwrap(),
            "did you mean `db`? the config's accessories: cache, db, queue, or `all`"
        );
        assert_eq!(hosts_of(&c, &select(&c, "all").unwrap()), ["b", "c"]);
    }

    #[test]
    fn ballast_remove_counts_accessory_data_as_data() {
        let mut c = config();
        let yaml = "image: pg\nhost: b\ndirectories: [{container: /var/lib/pg, owner: \"1:1\"}]\n";
        c.accessories
            .insert("db".into(), serde_saphyr::from_str(yaml).unwrap());
        let data = crate::remove::data_paths(&c, &[]);
        assert_eq!(data, ["/var/lib/ballast/shop/db/pg"]);
        let entries = ["db".to_string(), "secrets".to_string()];
        let cleanup = crate::remove::state_cleanup("shop", &entries, None, &data);
        assert_eq!(cleanup.remove, ["/var/lib/ballast/shop/secrets"]);
        assert_eq!(cleanup.kept[0].why, crate::remove::KeptWhy::Data);
    }

    #[test]
    fn data_goes_only_with_the_name_confirmed() {
        let one = vec!["db".to_string()];
        assert!(check_destroy_confirmation(&one, Some("db")).is_ok());
        let e = check_destroy_confirmation(&one, None).unwrap_err();
        assert!(
            e.cause
                .contains("stdin is not a terminal; nothing was changed"),
            "{e}"
        );
        assert!(e.hint.unwrap().contains("--yes-destroy-data=db"));
        let e = check_destroy_confirmation(&one, Some("cache")).unwrap_err();
        assert_eq!(e.cause, "`cache` is not `db`; nothing was changed");
        let all = vec!["cache".to_string(), "db".to_string()];
        assert!(check_destroy_confirmation(&all, Some("all")).is_err());
    }
}
