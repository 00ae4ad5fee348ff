//! Secrets: the values of the variables roles list in `env.secret`. They
//! come from the operator's environment first, then (with `-d NAME`) from
//! the dotenv file `<config dir>/.ballast/secrets.NAME`, then from
//! `<config dir>/.ballast/secrets`. A file's value written `$(command
//! args)` is a command run on this machine, its output the value (see
//! `secret_command`); only the commands of secrets the config lists run.
//! A value is never shown: `Secrets` prints and serializes as names with
//! `[redacted]`, and no error message quotes a value, a line of a secrets
//! file or a command's output. [`Secrets::source`] says where each value
//! came from ([`SecretOrigin`]), for `ballast secrets print`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::error::{ConfigError, Source};
use super::node;
use super::schema::Config;
use super::secret_command::{self, Problem};

/// What stands in for a secret value wherever one would be shown.
pub const REDACTED: &str = "[redacted]";

/// Secret values by variable name, and where each came from. Debug and
/// Serialize show names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    /// Where each value came from, for `ballast secrets print`.
    origins: BTreeMap<String, SecretOrigin>,
}

impl Secrets {
    /// The value of secret `name`, to hand to a container at run time.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Where the value of secret `name` came from.
    pub fn source(&self, name: &str) -> Option<&SecretOrigin> {
        self.origins.get(name)
    }

    /// The names of all secrets, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces every occurrence of a secret value in `text` with
    /// `[redacted]` (values shorter than 4 characters are left alone: they
    /// would match everywhere and hide nothing).
    pub fn redact(&self, text: &str) -> String {
        let mut values: Vec<&String> = self.values.values().filter(|v| v.len() >= 4).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = text.to_string();
        for v in values {
            out = out.replace(v.as_str(), REDACTED);
        }
        out
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values.keys().map(|k| (k, REDACTED)))
            .finish()
    }
}

impl Serialize for Secrets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for name in self.values.keys() {
            map.serialize_entry(name, REDACTED)?;
        }
        map.end()
    }
}

/// Where a secret's value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretOrigin {
    /// The operator's environment variable of the same name.
    Environment,
    /// A `NAME=value` line of a secrets file.
    File {
        /// The file, relative to the config's directory
        /// (`.ballast/secrets.staging`).
        file: PathBuf,
        /// 1-based.
        line: usize,
    },
    /// What the command of a `NAME=$(command)` line printed.
    Command {
        /// The file, relative to the config's directory.
        file: PathBuf,
        /// 1-based.
        line: usize,
    },
    /// Given by the caller ([`SecretSource::Map`], in tests).
    Given,
}

/// `environment`, `.ballast/secrets:3`, `command in .ballast/secrets:4`.
impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::Environment => f.write_str("environment"),
            SecretOrigin::File { file, line } => write!(f, "{}:{line}", file.display()),
            SecretOrigin::Command { file, line } => {
                write!(f, "command in {}:{line}", file.display())
            }
            SecretOrigin::Given => f.write_str("given"),
        }
    }
}

/// Where secret values come from.
#[derive(Clone, Default)]
pub enum SecretSource {
    /// The process environment, then `<config dir>/.ballast/secrets`.
    #[default]
    Env,
    /// For a destination: the process environment, then
    /// `.ballast/secrets.<destination>`, then `.ballast/secrets`.
    EnvFor(String),
    /// Exactly these values (for tests).
    Map(BTreeMap<String, String>),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env => f.write_str("Env"),
            SecretSource::EnvFor(d) => write!(f, "EnvFor({d})"),
            SecretSource::Map(m) => f
                .debug_tuple("Map")
                .field(&m.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// The secrets file beside a config file.
pub fn secrets_file(config_dir: &Path) -> PathBuf {
    config_dir.join(secrets_file_name(None))
}

/// The secrets file of `destination`, read before the shared one.
pub fn destination_secrets_file(config_dir: &Path, destination: &str) -> PathBuf {
    config_dir.join(secrets_file_name(Some(destination)))
}

/// `.ballast/secrets`, or `.ballast/secrets.<destination>`.
fn secrets_file_name(destination: Option<&str>) -> PathBuf {
    let name = match destination {
        Some(d) => format!("secrets.{d}"),
        None => "secrets".to_string(),
    };
    Path::new(".ballast").join(name)
}

/// Every secret the roles of `config` list, with the roles listing it
/// (sorted by name, then role).
pub fn roles_by_secret(config: &Config) -> BTreeMap<&str, Vec<&str>> {
    let mut by_secret: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (role, r) in &config.roles {
        for name in &r.env.secret {
            let roles = by_secret.entry(name.as_str()).or_default();
            if !roles.contains(&role.as_str()) {
                roles.push(role.as_str());
            }
        }
    }
    by_secret
}

/// Finds a value for every secret the roles list; the first one missing (in
/// file order) is an error pointing at its name.
pub(crate) fn resolve(
    config: &Config,
    root: &node::Located,
    src: &Source,
    source: &SecretSource,
    dir: &Path,
) -> Result<Secrets, ConfigError> {
    resolve_with(config, root, src, source, dir, &|name| {
        std::env::var(name).ok()
    })
}

/// A value found for a secret, or the command that will give it.
enum Found {
    Value(String, SecretOrigin),
    /// The words of the command on `line` of `file` (relative to the
    /// config's directory).
    Command {
        words: Vec<String>,
        file: PathBuf,
        line: usize,
    },
}

/// [`resolve`], with `env` standing for the process environment.
fn resolve_with(
    config: &Config,
    root: &node::Located,
    src: &Source,
    source: &SecretSource,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secrets, ConfigError> {
    // Every listed name, with where it is listed (its node's path and
    // that path as messages show it), in file order.
    let mut wanted: Vec<(u64, u64, &str, Vec<String>, String)> = Vec::new();
    let roles = config.roles.iter().map(|(n, r)| ("roles", n, &r.env));
    let accessories = config
        .accessories
        .iter()
        .map(|(n, a)| ("accessories", n, &a.env));
    for (section, role, env) in roles.chain(accessories) {
        for (i, name) in env.secret.iter().enumerate() {
            let path: Vec<String> = [section, role.as_str(), "env", "secret", &i.to_string()]
                .map(String::from)
                .to_vec();
            let shown = format!("{section}.{role}.env.secret[{i}]");
            wanted.push((0, 0, name, path, shown));
        }
    }
    if let Some(registry) = config.delivery.registry() {
        let path = ["delivery", "registry", "password_secret"]
            .map(String::from)
            .to_vec();
        let shown = "delivery.registry.password_secret".to_string();
        wanted.push((0, 0, &registry.password_secret, path, shown));
    }
    for w in &mut wanted {
        let parts: Vec<&str> = w.3.iter().map(String::as_str).collect();
        let (n, _) = node::find(root, &parts);
        (w.0, w.1) = (n.referenced.line(), n.referenced.column());
    }
    wanted.sort();
    if wanted.is_empty() {
        return Ok(Secrets::default());
    }
    // The destination's file first: its values override the shared ones.
    let files: Vec<PathBuf> = match source {
        SecretSource::EnvFor(d) => vec![secrets_file_name(Some(d)), secrets_file_name(None)],
        _ => vec![secrets_file_name(None)],
    };
    let mut from_files: Option<Vec<BTreeMap<String, Entry>>> = None;
    let mut found: Vec<(&str, Found)> = Vec::new();
    for (_, _, name, path, shown) in &wanted {
        if found.iter().any(|(n, _)| n == name) {
            continue;
        }
        let value = match source {
            SecretSource::Map(m) => m
                .get(*name)
                .map(|v| Found::Value(v.clone(), SecretOrigin::Given)),
            SecretSource::Env | SecretSource::EnvFor(_) => match env(name) {
                Some(v) => Some(Found::Value(v, SecretOrigin::Environment)),
                None => {
                    let maps = match &mut from_files {
                        Some(maps) => maps,
                        None => from_files.insert(
                            files
                                .iter()
                                .map(|f| read_secrets_file(&dir.join(f)))
                                .collect::<Result<_, _>>()?,
                        ),
                    };
                    match files
                        .iter()
                        .zip(maps.iter())
                        .find_map(|(f, m)| Some((f, m.get(*name)?)))
                    {
                        Some((file, entry)) => Some(from_file(name, dir, file, entry)?),
                        None => None,
                    }
                }
            },
        };
        match value {
            Some(v) => found.push((name, v)),
            None => {
                let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                let (n, _) = node::find(root, &parts);
                return Err(src
                    .error(n, format!("{shown}: secret `{name}` is not defined"))
                    .with_label("no value for this secret")
                    .with_hint(format!(
                        "export {name}=... before running ballast, or add a line `{name}=...` to {}",
                        dir.join(&files[0]).display()
                    )));
            }
        }
    }
    let mut secrets = Secrets::default();
    let mut commands = Vec::new();
    for (name, f) in found {
        match f {
            Found::Value(value, origin) => {
                secrets.values.insert(name.to_string(), value);
                secrets.origins.insert(name.to_string(), origin);
            }
            Found::Command { words, file, line } => commands.push((name, words, file, line)),
        }
    }
    if !commands.is_empty() {
        run_commands(commands, dir, env, &mut secrets)?;
    }
    // From here on no output of this process shows these values.
    crate::redact::register(secrets.values.values().map(String::as_str));
    Ok(secrets)
}

/// Runs the commands of secrets (name, words, file, line), all at once,
/// and adds their values to `secrets`; the first that failed, in the
/// order given, is the error.
fn run_commands(
    commands: Vec<(&str, Vec<String>, PathBuf, usize)>,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
) -> Result<(), ConfigError> {
    let deadline = secret_command::deadline(env(secret_command::DEADLINE_VAR).as_deref())?;
    let words: Vec<Vec<String>> = commands.iter().map(|(_, w, _, _)| w.clone()).collect();
    let results = secret_command::run_all(&words, dir, deadline);
    // What the commands that succeeded printed is hidden even when
    // another one failed.
    crate::redact::register(results.iter().filter_map(|r| r.as_deref().ok()));
    for ((name, _, file, line), result) in commands.into_iter().zip(results) {
        let value = result.map_err(|failure| {
            let path = dir.join(&file);
            Problem {
                name,
                path: &path,
                line,
            }
            .failed(&failure)
        })?;
        secrets.values.insert(name.to_string(), value);
        secrets
            .origins
            .insert(name.to_string(), SecretOrigin::Command { file, line });
    }
    Ok(())
}

/// What line `entry` of `file` gives secret `name`: its value, or the words
/// of its command (a command that cannot be run is refused here, before any
/// runs).
fn from_file(name: &str, dir: &Path, file: &Path, entry: &Entry) -> Result<Found, ConfigError> {
    let (file, line) = (file.to_path_buf(), entry.line);
    if !secret_command::is_command(&entry.value) {
        return Ok(Found::Value(
            entry.value.clone(),
            SecretOrigin::File { file, line },
        ));
    }
    match secret_command::words(&entry.value) {
        Ok(words) => Ok(Found::Command { words, file, line }),
        Err(refusal) => Err(Problem {
            name,
            path: &dir.join(&file),
            line,
        }
        .refused(&refusal)),
    }
}

/// A value of a secrets file, as dotenv unquoted it (a command still
/// `$(...)`), and the line where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// 1-based line of its `NAME=`.
    line: usize,
    value: String,
}

/// Reads a dotenv file; a missing file is empty. Errors never quote the
/// file's content. A line whose value, unquoted, starts with `$(` is read
/// here rather than by dotenv, which would expand its `$` and refuse its
/// spaces; the last line of a name wins.
fn read_secrets_file(path: &Path) -> Result<BTreeMap<String, Entry>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(ConfigError::whole_file(
                path,
                format!("cannot read the secrets file: {}", e.kind()),
            )
            .with_hint(
                "check the file's permissions (it should be readable by you only: chmod 600)",
            ));
        }
    };
    let mut lines: Vec<&str> = text.lines().collect();
    let mut commands: BTreeMap<String, Entry> = BTreeMap::new();
    let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in logical_lines(&text) {
        let Some((name, raw)) = name_and_value(lines[line - 1]) else {
            continue;
        };
        match command_value(raw) {
            Some(value) => {
                commands.insert(name.to_string(), Entry { line, value });
                starts.remove(name);
                lines[line - 1] = "";
            }
            None => {
                starts.insert(name, line);
                commands.remove(name);
            }
        }
    }
    let rest = lines.join("\n");
    let mut values = commands;
    for item in dotenvy::from_read_iter(rest.as_bytes()) {
        match item {
            // A name whose last line is a command keeps the command.
            Ok((k, v)) if starts.contains_key(k.as_str()) || !values.contains_key(&k) => {
                let line = starts.get(k.as_str()).copied().unwrap_or(0);
                values.insert(k, Entry { line, value: v });
            }
            Ok(_) => {}
            Err(dotenvy::Error::LineParse(line, _)) => {
                let number = rest
                    .lines()
                    .position(|l| l.trim_end() == line.trim_end())
                    .map_or(0, |i| i + 1);
                return Err(ConfigError::at_line(path, number, "this line is not `NAME=value` (its content is not shown: it may be secret)")
                    .with_hint("write one `NAME=value` per line; quote values with spaces or `#`: NAME=\"a value\""));
            }
            Err(_) => {
                return Err(ConfigError::whole_file(
                    path,
                    "the secrets file could not be read as dotenv",
                )
                .with_hint("write one `NAME=value` per line"));
            }
        }
    }
    Ok(values)
}

/// The 1-based numbers of the lines where a dotenv entry starts: not a
/// comment, and not inside a quoted value that spans lines (read as
/// dotenvy reads them).
fn logical_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut open: Option<char> = None;
    for (i, line) in text.lines().enumerate() {
        if open.is_none() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            starts.push(i + 1);
        }
        open = quote_open_after(open, line);
    }
    starts
}

/// The quote still open at the end of `line`, given the one open at its
/// start (a backslash takes the next character, inside quotes too; a `#`
/// after a blank, outside quotes, ends the line).
fn quote_open_after(mut open: Option<char>, line: &str) -> Option<char> {
    let (mut escaped, mut after_blank) = (false, false);
    for c in line.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match (open, c) {
            (_, '\\') => escaped = true,
            (Some(q), c) if c == q => open = None,
            (Some(_), _) => {}
            (None, '#') if after_blank => return None,
            (None, '"' | '\'') => open = Some(c),
            _ => {}
        }
        after_blank = open.is_none() && (c == ' ' || c == '\t');
    }
    open
}

/// The name and the raw value (trimmed) of a `NAME=value` or `export
/// NAME=value` line.
fn name_and_value(line: &str) -> Option<(&str, &str)> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("export") {
        if after.starts_with([' ', '\t']) {
            rest = after.trim_start();
        }
    }
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    let (name, rest) = rest.split_at(end);
    let value = rest.trim_start().strip_prefix('=')?;
    Some((name, value.trim()))
}

/// The value of a line, unquoted as dotenv would (single quotes: as is;
/// double quotes: backslash escapes; none: up to a `)` followed by nothing
/// or a ` # comment`), when it is a command: it starts with `$(`.
fn command_value(raw: &str) -> Option<String> {
    let (value, rest) = match raw.chars().next()? {
        '\'' => {
            let end = raw[1..].find('\'')? + 1;
            (raw[1..end].to_string(), &raw[end + 1..])
        }
        '"' => {
            let mut value = String::new();
            let mut end = None;
            let mut chars = raw.char_indices().skip(1);
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => {}
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &raw[end?..])
        }
        _ => {
            let end = raw
                .match_indices(')')
                .map(|(i, _)| i + 1)
                .find(|&e| ends_the_value(&raw[e..]))
                .unwrap_or(raw.len());
            (raw[..end].to_string(), &raw[end..])
        }
    };
    (secret_command::is_command(&value) && ends_the_value(rest)).then_some(value)
}

/// Whether `rest`, after a value, is nothing or a ` # comment`.
fn ends_the_value(rest: &str) -> bool {
    rest.trim().is_empty() || (rest.starts_with([' ', '\t']) && rest.trim_start().starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialize_never_show_values() {
        let s = Secrets {
            values: BTreeMap::from([(
                "DB_PASSWORD".to_string(),
                "hunter2-very-secret".to_string(),
            )]),
            origins: BTreeMap::new(),
        };
        let debug = format!("{s:?}");
        assert_eq!(debug, r#"{"DB_PASSWORD": "[redacted]"}"#);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"DB_PASSWORD":"[redacted]"}"#);
        assert_eq!(s.get("DB_PASSWORD"), Some("hunter2-very-secret"));
        assert_eq!(s.names().collect::<Vec<_>>(), ["DB_PASSWORD"]);
        assert_eq!(s.redact("pw=hunter2-very-secret;"), "pw=[redacted];");
        let source =
            SecretSource::Map(BTreeMap::from([("K".into(), "hunter2-very-secret".into())]));
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn secrets_file_errors_do_not_quote_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "A=1\nB='unterminated-s3cr3t\n").unwrap();
        let e = read_secrets_file(&path).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(!format!("{e:?}").contains("s3cr3t"));
        assert_eq!(e.line(), 2);
        assert!(e.message().contains("not `NAME=value`"));
    }

    #[test]
    fn an_undefined_secret_points_at_its_name() {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    env:\n      secret: [DB_PASSWORD, STRIPE_KEY]\n";
        super::super::testing::assert_error(
            yaml,
            7,
            29,
            "roles.web.env.secret[1]: secret `STRIPE_KEY` is not defined",
            "export STRIPE_KEY=... before running ballast, or add a line `STRIPE_KEY=...` to ./.ballast/secrets",
        );
    }

    #[test]
    fn a_missing_secrets_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_secrets_file(&dir.path().join("nope"))
            .unwrap()
            .is_empty());
    }
    /// Resolves the secrets of `yaml` in `dir`, with `env` as the
    /// environment.
    fn resolve_in(
        dir: &Path,
        yaml: &str,
        source: SecretSource,
        env: &[(&str, &str)],
    ) -> Result<Secrets, ConfigError> {
        let path = dir.join("ballast.yml");
        let src = Source::new(&path, yaml);
        let root = node::parse(yaml).unwrap();
        let config: Config = serde_saphyr::from_str(yaml).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_with(&config, &root, &src, &source, dir, &|name| {
            env.get(name).cloned()
        })
    }

    /// A config whose `web` role lists `names`, and `worker` the first.
    fn listing(names: &[&str]) -> String {
        format!(
            "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    env:\n      secret: [{}]\n  worker:\n    hosts: [b]\n    env:\n      secret: [{}]\n",
            names.join(", "),
            names[0]
        )
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join(".ballast")).unwrap();
        std::fs::write(dir.join(".ballast").join(name), text).unwrap();
    }

    fn entry(line: usize, value: &str) -> Entry {
        Entry {
            line,
            value: value.to_string(),
        }
    }

    #[test]
    fn command_values_are_read_whole_in_every_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(
            &path,
            "# comment\n\
             PLAIN=\"a value\"\n\
             UNQUOTED=$(op read op://vault/db/password)\n\
             SINGLE='$(op read \"op://vault/a b/pw\")'\n\
             DOUBLE=\"$(op read \\\"op://v/x y\\\")\"\n\
             export EXPORTED = $(pass show shop/key) # a comment (with parentheses)\n\
             ESCAPED=\"\\$(op read x)\"\n\
             UNCLOSED=$(op read x\n\
             MULTI=\"first\n\
             NOT_A_KEY=$(never run)\n\
             last\"\n\
             LATER=$(old)\n\
             LATER=plain\n\
             EARLIER=plain\n\
             EARLIER=$(new)\n",
        )
        .unwrap();
        let read = read_secrets_file(&path).unwrap();
        let expected = BTreeMap::from([
            ("PLAIN", entry(2, "a value")),
            ("UNQUOTED", entry(3, "$(op read op://vault/db/password)")),
            ("SINGLE", entry(4, "$(op read \"op://vault/a b/pw\")")),
            ("DOUBLE", entry(5, "$(op read \"op://v/x y\")")),
            ("EXPORTED", entry(6, "$(pass show shop/key)")),
            ("ESCAPED", entry(7, "$(op read x)")),
            ("UNCLOSED", entry(8, "$(op read x")),
            // dotenv expands `$` in double quotes; the line inside is no entry.
            ("MULTI", entry(9, "first\nNOT_A_KEY=(never run)\nlast")),
            ("LATER", entry(13, "plain")),
            ("EARLIER", entry(15, "$(new)")),
        ]);
        let read: BTreeMap<&str, Entry> =
            read.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn each_value_says_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "secrets", "SHARED=from-shared\nOVERRIDDEN=shared\nCOMMANDED=\"$(echo from-command)\"\nFROM_ENV=file\n");
        write(dir.path(), "secrets.staging", "\nOVERRIDDEN=from-staging\n");
        let yaml = listing(&["SHARED", "OVERRIDDEN", "COMMANDED", "FROM_ENV"]);
        let env = [("FROM_ENV", "from-env-value")];
        let s = resolve_in(
            dir.path(),
            &yaml,
            SecretSource::EnvFor("staging".into()),
            &env,
        )
        .unwrap();
        let file = |name: &str, line| SecretOrigin::File {
            file: PathBuf::from(".ballast").join(name),
            line,
        };
        let shown: Vec<(&str, &str, String)> = s
            .names()
            .map(|n| (n, s.get(n).unwrap(), s.source(n).unwrap().to_string()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "COMMANDED",
                    "from-command",
                    "command in .ballast/secrets:3".to_string()
                ),
                ("FROM_ENV", "from-env-value", "environment".to_string()),
                (
                    "OVERRIDDEN",
                    "from-staging",
                    ".ballast/secrets.staging:2".to_string()
                ),
                ("SHARED", "from-shared", ".ballast/secrets:1".to_string()),
            ]
        );
        assert_eq!(s.source("SHARED"), Some(&file("secrets", 1)));
        assert_eq!(
            serde_json::to_value(s.source("COMMANDED")).unwrap(),
            serde_json::json!({"kind": "command", "file": ".ballast/secrets", "line": 3})
        );
        // A value from the environment is taken as it is, `$(` or not.
        let env = [("FROM_ENV", "$(not run)")];
        let s = resolve_in(dir.path(), &yaml, SecretSource::Env, &env).unwrap();
        assert_eq!(s.get("FROM_ENV"), Some("$(not run)"));
        assert_eq!(s.source("OVERRIDDEN"), Some(&file("secrets", 2)));
        let given = SecretSource::Map(BTreeMap::from([("SHARED".to_string(), "x".to_string())]));
        let s = resolve_in(dir.path(), &listing(&["SHARED"]), given, &[]).unwrap();
        assert_eq!(s.source("SHARED"), Some(&SecretOrigin::Given));
    }

    #[test]
    fn only_the_commands_of_listed_secrets_run_once_each() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "secrets",
            "USED=$(sh -c 'echo run >> used.log; echo used-value')\nUNUSED=$(touch unused.ran)\nBROKEN=$(a | b)\n",
        );
        // USED is listed by two roles.
        let s = resolve_in(dir.path(), &listing(&["USED"]), SecretSource::Env, &[]).unwrap();
        assert_eq!(s.get("USED"), Some("used-value"));
        assert!(!dir.path().join("unused.ran").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("used.log")).unwrap(),
            "run\n"
        );
    }

    #[test]
    fn a_command_refused_stops_before_any_runs() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "secrets",
            "FIRST=$(touch first.ran)\nPIPED=$(op read op://v/i/f | base64 -d)\n",
        );
        let e = resolve_in(
            dir.path(),
            &listing(&["FIRST", "PIPED"]),
            SecretSource::Env,
            &[],
        )
        .unwrap_err();
        assert!(!dir.path().join("first.ran").exists());
        assert_eq!(e.path(), dir.path().join(".ballast/secrets"));
        assert_eq!(e.line(), 2);
        assert_eq!(
            e.message(),
            "secret `PIPED`: its command uses a pipe (`|`), which needs a shell; ballast runs the command itself, without one"
        );
        assert!(!e.to_string().contains("base64"), "{e}");
        assert!(!format!("{e:?}").contains("base64"));
    }

    #[test]
    fn a_command_that_fails_names_the_secret_file_and_line_only() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "secrets.staging",
            "\n\nDB_PASSWORD=$(sh -c 'echo s3cr3t-printed; echo s3cr3t-err >&2; exit 2')\n",
        );
        let yaml = listing(&["DB_PASSWORD"]);
        let e = resolve_in(
            dir.path(),
            &yaml,
            SecretSource::EnvFor("staging".into()),
            &[],
        )
        .unwrap_err();
        let all = format!("{e} {e:?} {}", e.hint().unwrap());
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3:1: secret `DB_PASSWORD`: its command exited with status 2 (what it printed is not shown: it may be secret)",
                dir.path().join(".ballast/secrets.staging").display()
            )
        );
        for never in ["s3cr3t", "sh -c", "exit 2"] {
            assert!(!all.contains(never), "{never:?} in {all}");
        }
    }

    #[test]
    fn a_command_past_its_deadline_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "secrets", "SLOW=$(sleep 30)\nQUIET=$(true)\n");
        let env = [("BALLAST_SECRET_TIMEOUT", "1s")];
        let started = std::time::Instant::now();
        let e = resolve_in(dir.path(), &listing(&["SLOW"]), SecretSource::Env, &env).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(
            e.message(),
            "secret `SLOW`: its command did not finish within 1s (it was stopped) (what it printed is not shown: it may be secret)"
        );
        let e = resolve_in(dir.path(), &listing(&["QUIET"]), SecretSource::Env, &[]).unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.message().contains("its command printed nothing"), "{e}");
        let env = [("BALLAST_SECRET_TIMEOUT", "10m")];
        let e = resolve_in(dir.path(), &listing(&["QUIET"]), SecretSource::Env, &env).unwrap_err();
        assert!(
            e.to_string().starts_with("BALLAST_SECRET_TIMEOUT: `10m`"),
            "{e}"
        );
    }

    #[test]
    fn roles_are_listed_per_secret() {
        let config: Config = serde_saphyr::from_str(&listing(&["B", "A"])).unwrap();
        assert_eq!(
            roles_by_secret(&config),
            BTreeMap::from([("A", vec!["web"]), ("B", vec!["web", "worker"])])
        );
    }
}
