//! `ballast secrets print`: each secret the config lists, the roles that
//! use it and where its value came from. Loading the config reads every
//! secret (and runs its `$(...)` command), so this also checks that all of
//! them resolve. Values are shown only with `--reveal`, through the
//! printer's one unredacted output.

use std::path::Path;

use ballast_core::config::secrets::{roles_by_secret, SecretOrigin};
use ballast_core::config::Loaded;
use ballast_core::Result;
use serde::Serialize;

use crate::cli::SecretsCommand;
use crate::commands::service;
use crate::output::Printer;

pub fn run(config: &Path, command: SecretsCommand, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    match command {
        SecretsCommand::Print { reveal } => {
            print(&loaded, reveal, out);
            Ok(())
        }
    }
}

/// One secret as `--json` shows it.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    name: &'a str,
    roles: Vec<&'a str>,
    source: &'a SecretOrigin,
    /// Only with `--reveal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Listing<'a> {
    secrets: Vec<Listed<'a>>,
}

fn print(loaded: &Loaded, reveal: bool, out: &Printer) {
    let secrets = roles_by_secret(&loaded.config)
        .into_iter()
        .map(|(name, roles)| Listed {
            name,
            roles,
            source: loaded
                .secrets
                .source(name)
                .expect("a loaded config has every secret it lists"),
            value: reveal.then(|| loaded.secrets.get(name)).flatten(),
        })
        .collect();
    let listing = Listing { secrets };
    let text = table(&listing.secrets);
    if reveal {
        out.reveal_result(&listing, &text);
    } else {
        out.result(&listing, &text);
    }
}

/// One row per secret, columns aligned; `VALUE` last, with `--reveal`.
fn table(secrets: &[Listed]) -> String {
    if secrets.is_empty() {
        return "no secrets: no role lists any in env.secret".to_string();
    }
    let rows: Vec<[String; 4]> = secrets
        .iter()
        .map(|s| {
            [
                s.name.to_string(),
                s.roles.join(","),
                s.source.to_string(),
                s.value.unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let head = ["SECRET", "ROLES", "SOURCE", "VALUE"].map(String::from);
    let reveal = secrets.iter().any(|s| s.value.is_some());
    let columns = if reveal { 4 } else { 3 };
    let width = |c: usize| {
        std::iter::once(&head)
            .chain(&rows)
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    std::iter::once(&head)
        .chain(&rows)
        .map(|r| {
            let mut line = String::new();
            for (c, w) in widths.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(&r[c]);
                } else {
                    line.push_str(&format!("{:<w$}  ", r[c]));
                }
            }
            line.trim_end().to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn listed<'a>(
        name: &'a str,
        roles: Vec<&'a str>,
        source: &'a SecretOrigin,
        value: Option<&'a str>,
    ) -> Listed<'a> {
        Listed {
            name,
            roles,
            source,
            value,
        }
    }

    #[test]
    fn the_table_aligns_and_shows_values_only_when_revealed() {
        let command = SecretOrigin::Command {
            file: PathBuf::from(".ballast/secrets"),
            line: 3,
        };
        let env = SecretOrigin::Environment;
        let hidden = [
            listed("DB_PASSWORD", vec!["web", "worker"], &command, None),
            listed("KEY", vec!["web"], &env, None),
        ];
        assert_eq!(
            table(&hidden),
            "SECRET       ROLES       SOURCE\n\
             DB_PASSWORD  web,worker  command in .ballast/secrets:3\n\
             KEY          web         environment\n"
        );
        let shown = [
            listed("DB_PASSWORD", vec!["web"], &command, Some("hunter2")),
            listed("KEY", vec!["web"], &env, Some("k")),
        ];
        assert_eq!(
            table(&shown),
            "SECRET       ROLES  SOURCE                         VALUE\n\
             DB_PASSWORD  web    command in .ballast/secrets:3  hunter2\n\
             KEY          web    environment                    k\n"
        );
        assert_eq!(table(&[]), "no secrets: no role lists any in env.secret");
    }
}
