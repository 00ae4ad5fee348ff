//! The operator's aliases (`aliases:` in ballast.yml): a first word that is
//! no ballast command is looked up there and replaced by its words before
//! the command line is parsed again. Aliases are checked against the real
//! command set whenever the config is loaded.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::cli::Cli;

/// ballast's command names, from the one clap definition.
pub fn commands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// Parses the command line, expanding an alias if its first word names one.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidSubcommand => match expand(&args) {
            Some(expanded) => Cli::parse_from(expanded),
            None => e.exit(),
        },
        Err(e) => e.exit(),
    }
}

/// `args` with the alias at the command's place replaced by its words, or
/// `None` when that word is no alias (or the config cannot be read).
fn expand(args: &[OsString]) -> Option<Vec<OsString>> {
    let (at, config, destination) = command_position(args)?;
    let word = args.get(at)?.to_str()?;
    if let Some(d) = destination {
        std::env::set_var("BALLAST_DESTINATION", d);
    }
    let loaded = crate::commands::service::load(std::path::Path::new(&config)).ok()?;
    let words = loaded.alias(word)?;
    let mut out = args[..at].to_vec();
    out.extend(words.into_iter().map(OsString::from));
    out.extend(args[at + 1..].iter().cloned());
    Some(out)
}

/// Where the command word is, and the `--config` and `-d` given before it.
fn command_position(args: &[OsString]) -> Option<(usize, String, Option<String>)> {
    let mut config = std::env::var("BALLAST_CONFIG").unwrap_or_else(|_| "ballast.yml".into());
    let mut destination = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_str()?;
        match a {
            "-c" | "--config" => {
                config = args.get(i + 1)?.to_str()?.to_string();
                i += 2;
            }
            "-d" | "--destination" => {
                destination = Some(args.get(i + 1)?.to_str()?.to_string());
                i += 2;
            }
            _ if a.starts_with("--config=") => {
                config = a["--config=".len()..].to_string();
                i += 1;
            }
            _ if a.starts_with("--destination=") => {
                destination = Some(a["--destination=".len()..].to_string());
                i += 1;
            }
            _ if a.starts_with('-') => i += 1,
            _ => return Some((i, config, destination)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_word_is_found_after_global_flags() {
        let (at, config, d) = command_position(&os(&[
            "ballast", "--json", "-c", "x.yml", "-d", "staging", "tail", "-n",
        ]))
        .unwrap();
        assert_eq!(
            (at, config.as_str(), d.as_deref()),
            (6, "x.yml", Some("staging"))
        );
        let (at, config, _) = command_position(&os(&["ballast", "--config=y.yml", "up"])).unwrap();
        assert_eq!((at, config.as_str()), (2, "y.yml"));
        assert!(command_position(&os(&["ballast", "--json"])).is_none());
    }

    #[test]
    fn commands_come_from_the_clap_definition() {
        let all = commands();
        assert!(all.iter().any(|c| c == "deploy"));
        assert!(all.iter().any(|c| c == "lock"));
    }
}
