//! `ballast.yml`: its schema, loading with located errors, secrets, the
//! starter file and the generated reference.
//!
//! # Layout
//! - [`schema`]: the types of the file; the single source of validation and
//!   of the reference.
//! - `node`: the located YAML tree (serde-saphyr `Spanned` nodes) that gives
//!   every error its line and column.
//! - `shape`, `hints`: unknown keys, missing keys, wrong types, checked
//!   against the JSON schema of the types, and the words of those errors.
//! - `bounds`: [`LIMITS`], the least and most of every duration and count,
//!   enforced by the shape check and cited by the reference.
//! - `validate`, `roles`, `names`: semantic checks (names, image, hosts,
//!   ports, volumes, batch, variables) and the grammars they use.
//! - [`secrets`]: secret values from the environment, `.ballast/secrets`
//!   (per destination too) or commands written `$(...)` there
//!   (`secret_command`).
//! - `accessories`: the `accessories:` section (types, defaults, checks).
//! - `routing`: checks of a role's proxy settings (trusted ranges, body
//!   limits).
//! - `logging`: the options each log driver takes and needs.
//! - [`watch`]: the `watch:` section (polling, healing, alert channels).
//! - `inventory`: `{{ roles.NAME.hosts }}` and the like in clear values,
//!   checked with the semantics and resolved right after.
//! - `error`: [`ConfigError`], located and with a hint.
//! - `reference`, `starter`, `redact`, `query`: the generated reference,
//!   `ballast init`'s file, `ballast config`'s output, helpers on `Config`.
//!
//! Loading runs in stages, each stopping at its first error: YAML syntax
//! (serde-saphyr), shape (schema walk), types (serde into [`Config`]),
//! semantics, then secrets.

pub mod accessories;
mod aliases;
pub mod backup;
mod bounds;
pub mod destination;
mod error;
mod hints;
mod inventory;
mod logging;
mod names;
mod node;
mod query;
mod redact;
mod reference;
mod roles;
mod routing;
pub mod schema;
mod secret_command;
pub mod secrets;
mod shape;
mod starter;
mod tls;
mod validate;
pub mod watch;

use std::path::{Path, PathBuf};

pub use accessories::{
    parse_port, Accessory, AccessoryFile, AccessoryHealthcheck, DataDir, DataDirectory,
    HealthCommand, NoCheck, PublishedPort,
};
pub use bounds::{Limit, LimitRange, LIMITS};
pub use error::ConfigError;
pub use inventory::Reference;
pub use names::image_problem;
pub use redact::redacted_yaml;
pub use reference::reference_markdown;
pub use routing::{body_bytes, cidr_problem};
pub use schema::*;
pub use secrets::{SecretOrigin, SecretSource, Secrets};
pub use starter::{ensure_dockerignore, starter};

/// The file name `ballast` looks for.
pub const FILE_NAME: &str = "ballast.yml";

/// A config file read, checked and with its secrets resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file it came from, as given.
    pub path: PathBuf,
    /// The file's directory: relative paths in the config (build context,
    /// identity file, `.ballast/secrets`) are relative to it.
    pub dir: PathBuf,
    /// The file's text, for messages that quote it.
    pub source: String,
    /// Values of the secrets the roles list.
    pub secrets: Secrets,
    /// The destination laid over the base file (`-d`), if any.
    pub destination: Option<String>,
    /// The clear values that referred to roles' and accessories' hosts and
    /// ports, with what they became (already replaced in `config`).
    pub references: Vec<inventory::Reference>,
}

/// Reads, parses and validates the config at `path` with `destination`'s
/// file laid over it (see [`destination`]).
pub fn load_for(path: &Path, destination: Option<&str>) -> Result<Loaded, ConfigError> {
    let base = read(path)?;
    let Some(name) = destination else {
        destination::refuse_if_required(path, &base)?;
        return parse(path, &base, SecretSource::Env);
    };
    let (over, merged) = destination::merged_text(path, &base, name)?;
    let label = path.with_file_name(format!(
        "{} + {}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        over.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut loaded = parse(&label, &merged, SecretSource::EnvFor(name.to_string()))?;
    loaded.path = path.to_path_buf();
    loaded.destination = Some(name.to_string());
    Ok(loaded)
}

/// Reads, parses and validates the config at `path`; secrets come from the
/// environment, then from `.ballast/secrets` beside the file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let source = read(path)?;
    parse(path, &source, SecretSource::Env)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        let error = ConfigError::whole_file(path, format!("cannot read the config file: {e}"));
        if e.kind() == std::io::ErrorKind::NotFound {
            error.with_hint("run `ballast init` to write a starter ballast.yml, or pass the path of yours with --config")
        } else {
            error.with_hint("check that the path names a readable file")
        }
    })
}

/// Parses and validates `source` as if read from `path_for_messages`. Reads
/// no file but `.ballast/secrets` (and only with [`SecretSource::Env`]).
pub fn parse(
    path_for_messages: &Path,
    source: &str,
    secrets: SecretSource,
) -> Result<Loaded, ConfigError> {
    let src = error::Source::new(path_for_messages, source);
    let root = node::parse(source).map_err(|e| src.yaml_error(&e, false))?;
    if root.value == node::Node::Null {
        return Err(src
            .error_at(1, 1, 0, "the config file is empty")
            .with_hint("run `ballast init` to write a commented starter ballast.yml"));
    }
    shape::check(&root, &src)?;
    let mut config: Config =
        serde_saphyr::from_str(source).map_err(|e| src.yaml_error(&e, true))?;
    validate::check(&config, &root, &src)?;
    let references = inventory::references(&config);
    inventory::resolve(&mut config);
    let dir = match path_for_messages.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let secrets = secrets::resolve(&config, &root, &src, &secrets, &dir)?;
    Ok(Loaded {
        config,
        path: path_for_messages.to_path_buf(),
        dir,
        source: source.to_string(),
        secrets,
        destination: None,
        references,
    })
}

/// Test helpers shared by the checks' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::collections::BTreeMap;

    /// The secret value the tests provide; it must never show up in output.
    pub(crate) const SECRET_VALUE: &str = "s3cr3t-value-never-shown";

    /// Parses `yaml` as `ballast.yml` with `DB_PASSWORD` and `API_KEY` given.
    pub(crate) fn parse_yaml(yaml: &str) -> Result<Loaded, ConfigError> {
        let secrets = BTreeMap::from([
            ("DB_PASSWORD".to_string(), SECRET_VALUE.to_string()),
            ("API_KEY".to_string(), format!("{SECRET_VALUE}-2")),
        ]);
        parse(Path::new("ballast.yml"), yaml, SecretSource::Map(secrets))
    }

    /// Asserts `yaml` fails at `line:column` with `message` in the message
    /// and a hint containing `hint`.
    #[track_caller]
    pub(crate) fn assert_error(yaml: &str, line: usize, column: usize, message: &str, hint: &str) {
        let e = match parse_yaml(yaml) {
            Ok(_) => panic!("expected an error containing {message:?}, but it loaded"),
            Err(e) => e,
        };
        assert_eq!(
            (e.line(), e.column()),
            (line, column),
            "wrong place for: {e} (hint: {:?})",
            e.hint()
        );
        assert!(
            e.message().contains(message),
            "message {:?} lacks {message:?}",
            e.message()
        );
        let h = e.hint().unwrap_or_default();
        assert!(h.contains(hint), "hint {h:?} lacks {hint:?} (message: {e})");
        assert!(!e.to_string().contains(SECRET_VALUE));
    }

    /// A valid config to break in tests.
    pub(crate) const VALID: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [10.0.0.1, 10.0.0.2]
    port: 8080
    env:
      clear: { RUST_LOG: info }
      secret: [DB_PASSWORD]
  worker:
    hosts: [10.0.0.3]
";
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn a_valid_file_loads_with_defaults_and_secrets() {
        let loaded = parse_yaml(VALID).unwrap();
        assert_eq!(loaded.config.service, "shop");
        assert_eq!(loaded.config.deploy.retain, 5);
        assert_eq!(loaded.dir, PathBuf::from("."));
        assert_eq!(loaded.secrets.get("DB_PASSWORD"), Some(SECRET_VALUE));
        assert_eq!(loaded.secrets.names().collect::<Vec<_>>(), ["DB_PASSWORD"]);
        assert!(!format!("{loaded:?}").contains(SECRET_VALUE));
    }

    #[test]
    fn syntax_errors_are_located() {
        let yaml = "service: shop\nroles:\n  web:\n    hosts: [a, b\n  x: 1\n";
        assert_error(yaml, 5, 4, "invalid YAML", "indentation");
        assert_error(
            "service: \"shop\nimage: x\n",
            1,
            10,
            "invalid YAML: unclosed quote",
            "quote",
        );
    }

    #[test]
    fn duplicate_keys_are_named() {
        assert_error(
            "service: a\nservice: b\n",
            2,
            1,
            "duplicate key `service`",
            "remove or merge",
        );
    }

    #[test]
    fn an_empty_file_says_how_to_start() {
        assert_error("# nothing yet\n", 1, 1, "empty", "ballast init");
    }

    #[test]
    fn load_reads_the_file_and_its_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast.yml");
        let yaml = VALID.replace("DB_PASSWORD", "BALLAST_TEST_ONLY_SECRET_7F3A");
        std::fs::write(&path, yaml).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e
            .message()
            .contains("`BALLAST_TEST_ONLY_SECRET_7F3A` is not defined"));
        assert!(e.hint().unwrap().contains(".ballast/secrets"));
        std::fs::create_dir(dir.path().join(".ballast")).unwrap();
        std::fs::write(
            dir.path().join(".ballast/secrets"),
            "# comment\nBALLAST_TEST_ONLY_SECRET_7F3A=\"from the file\"\n",
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.dir, dir.path());
        assert_eq!(
            loaded.secrets.get("BALLAST_TEST_ONLY_SECRET_7F3A"),
            Some("from the file")
        );
    }

    #[test]
    fn a_missing_file_suggests_init() {
        let e = load(Path::new("/nonexistent/ballast.yml")).unwrap_err();
        assert_eq!(e.line(), 0);
        assert!(e
            .to_string()
            .starts_with("/nonexistent/ballast.yml: cannot read"));
        assert!(e.hint().unwrap().contains("ballast init"));
    }
}
