//! `accessories.NAME.backup`: how `ballast accessory backup` and `restore`
//! copy an accessory's data. Either a pair of commands run in the running
//! container (a dump written to stdout, read back on stdin), or, without
//! them, an archive of its data directories taken while it is stopped.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::accessories::Accessory;
use super::node::shorten;
use super::schema::Config;
use super::validate::Checker;
use crate::backup::Method;

/// How an accessory's data is backed up and restored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessoryBackup {
    /// Command run in the running container that writes a consistent dump
    /// of the data to stdout, as a list (no shell), e.g. `[pg_dump, -U,
    /// postgres, --clean, --if-exists, -d, postgres]`. Give `restore` with
    /// it. Without both, the backup is an archive of the data directories.
    #[serde(default)]
    pub dump: Option<Vec<String>>,
    /// Command run in the running container that reads a dump on stdin and
    /// puts it back, e.g. `[psql, -U, postgres, -v, ON_ERROR_STOP=1, -q, -d,
    /// postgres]`.
    #[serde(default)]
    pub restore: Option<Vec<String>>,
    /// Without `dump`: stop the accessory while its data directories are
    /// copied (and while they are put back), so the copy is consistent.
    /// `false` copies them live, which only suits data that is never
    /// rewritten in place.
    #[serde(default = "stop_by_default")]
    pub stop: bool,
}

fn stop_by_default() -> bool {
    true
}

/// An archive copy, as `backup` is not given.
fn archive_default() -> AccessoryBackup {
    AccessoryBackup {
        stop: true,
        ..AccessoryBackup::default()
    }
}

/// How `a`'s data is copied, with its directories as the container sees
/// them; and whether it is stopped meanwhile.
pub fn method(a: &Accessory, service: &str, name: &str) -> (Method, bool) {
    let b = a.backup.clone().unwrap_or_else(archive_default);
    match (b.dump, b.restore) {
        (Some(backup), Some(restore)) => (Method::Dump { backup, restore }, false),
        _ => {
            let paths = a
                .data_dirs(service, name)
                .into_iter()
                .map(|d| d.container)
                .collect();
            (Method::Archive { paths }, b.stop)
        }
    }
}

impl Checker<'_> {
    pub(super) fn backups(&mut self, config: &Config) {
        for (name, a) in &config.accessories {
            let Some(b) = &a.backup else {
                continue;
            };
            let here = |key: &str| ["accessories", name.as_str(), "backup", key].map(String::from);
            match (&b.dump, &b.restore) {
                (Some(_), None) | (None, Some(_)) => {
                    let (given, missing) = if b.dump.is_some() {
                        ("dump", "restore")
                    } else {
                        ("restore", "dump")
                    };
                    let path = here(given);
                    self.key_error(&refs(&path), format!("accessories.{name}.backup: `{given}` without `{missing}`"))
                        .set_hint("give both `dump` and `restore` (a backup that cannot be restored is no backup), or neither for an archive of the data directories");
                }
                _ => {}
            }
            for (key, argv) in [("dump", &b.dump), ("restore", &b.restore)] {
                if let Some(argv) = argv {
                    if argv.first().is_none_or(|p| p.trim().is_empty()) {
                        let path = here(key);
                        self.error(&refs(&path), format!("accessories.{name}.backup.{key}: the command is empty"))
                            .set_hint("write the program and its arguments as a list, e.g. `[pg_dump, -U, postgres, -d, postgres]`");
                    }
                }
            }
            if b.dump.is_none() && a.directories.is_empty() {
                let path = ["accessories", name.as_str(), "backup"].map(String::from);
                self.error(&refs(&path), format!("accessories.{name}.backup: no `dump` command and no data `directories` to copy"))
                    .set_hint("give `dump` and `restore` commands, or list the accessory's data `directories`");
            }
            if let Some(argv) = b
                .dump
                .iter()
                .chain(&b.restore)
                .flatten()
                .find(|a| a.contains('\n'))
            {
                let path = here("dump");
                self.error(
                    &refs(&path),
                    format!(
                        "accessories.{name}.backup: `{}` holds a line break",
                        shorten(argv)
                    ),
                )
                .set_hint("each list item is one argument");
            }
        }
    }
}

fn refs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::config::{parse, SecretSource};

    fn load(accessory: &str) -> Result<crate::config::Loaded, String> {
        let yaml = format!("service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\naccessories:\n  db:\n    image: pg\n    host: b\n{accessory}");
        parse(
            Path::new("ballast.yml"),
            &yaml,
            SecretSource::Map(BTreeMap::new()),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn dump_and_restore_come_together() {
        let e = load("    backup:\n      dump: [pg_dump]\n").unwrap_err();
        assert!(e.contains("`dump` without `restore`"), "{e}");
        assert!(e.contains("ballast.yml:11:7"), "{e}");
        let e = load("    backup:\n      restore: [psql]\n").unwrap_err();
        assert!(e.contains("`restore` without `dump`"), "{e}");
        let e = load("    backup:\n      dump: []\n      restore: [psql]\n").unwrap_err();
        assert!(e.contains("backup.dump: the command is empty"), "{e}");
    }

    #[test]
    fn an_archive_needs_directories() {
        let e = load("    backup: { stop: false }\n").unwrap_err();
        assert!(
            e.contains("no `dump` command and no data `directories`"),
            "{e}"
        );
        let dirs = "    directories: [{container: /data, owner: \"1:1\"}]\n";
        let loaded = load(&format!("{dirs}    backup: {{ stop: false }}\n")).unwrap();
        let a = &loaded.config.accessories["db"];
        let (method, stop) = super::method(a, "shop", "db");
        assert!(!stop);
        assert_eq!(
            method,
            crate::backup::Method::Archive {
                paths: vec!["/data".into()]
            }
        );
    }

    #[test]
    fn without_backup_the_directories_are_archived_with_the_accessory_stopped() {
        let dirs = "    directories: [{container: /data, owner: \"1:1\"}]\n";
        let loaded = load(dirs).unwrap();
        let (method, stop) = super::method(&loaded.config.accessories["db"], "shop", "db");
        assert!(stop);
        assert!(method.needs_stop());
        let loaded =
            load("    backup:\n      dump: [pg_dump, -d, x]\n      restore: [psql, -d, x]\n")
                .unwrap();
        let (method, stop) = super::method(&loaded.config.accessories["db"], "shop", "db");
        assert!(!stop);
        assert!(!method.needs_stop());
    }
}
