//! Secrets: the values of the variables roles list in `env.secret`. They
//! come from the operator's environment first, then from the dotenv file
//! `<config dir>/.ballast/secrets`. A value is never shown: `Secrets` prints
//! and serializes as names with `[redacted]`, and no error message quotes a
//! value or a line of the secrets file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::error::{ConfigError, Source};
use super::node;
use super::schema::Config;

/// What stands in for a secret value wherever one would be shown.
pub const REDACTED: &str = "[redacted]";

/// Secret values by variable name. Debug and Serialize show names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    /// The value of secret `name`, to hand to a container at run time.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
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
    config_dir.join(".ballast").join("secrets")
}

/// The secrets file of `destination`, read before the shared one.
pub fn destination_secrets_file(config_dir: &Path, destination: &str) -> PathBuf {
    config_dir
        .join(".ballast")
        .join(format!("secrets.{destination}"))
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
    // Every listed name, with where it is listed, in file order.
    let mut wanted: Vec<(u64, u64, &str, String, usize)> = Vec::new();
    for (role, r) in &config.roles {
        for (i, name) in r.env.secret.iter().enumerate() {
            let idx = i.to_string();
            let (n, _) = node::find(root, &["roles", role, "env", "secret", &idx]);
            wanted.push((
                n.referenced.line(),
                n.referenced.column(),
                role,
                name.clone(),
                i,
            ));
        }
    }
    wanted.sort();
    if wanted.is_empty() {
        return Ok(Secrets::default());
    }
    // The destination's file first: its values override the shared ones.
    let files: Vec<PathBuf> = match source {
        SecretSource::EnvFor(d) => vec![destination_secrets_file(dir, d), secrets_file(dir)],
        _ => vec![secrets_file(dir)],
    };
    let file = files[0].clone();
    let mut from_files: Option<Vec<BTreeMap<String, String>>> = None;
    let mut values = BTreeMap::new();
    for (_, _, role, name, i) in &wanted {
        let value = match source {
            SecretSource::Map(m) => m.get(name).cloned(),
            SecretSource::Env | SecretSource::EnvFor(_) => match std::env::var(name) {
                Ok(v) => Some(v),
                Err(_) => {
                    if from_files.is_none() {
                        from_files = Some(
                            files
                                .iter()
                                .map(|f| read_secrets_file(f))
                                .collect::<Result<_, _>>()?,
                        );
                    }
                    from_files
                        .as_ref()
                        .and_then(|maps| maps.iter().find_map(|m| m.get(name).cloned()))
                }
            },
        };
        match value {
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None => {
                let idx = i.to_string();
                let (n, _) = node::find(root, &["roles", role, "env", "secret", &idx]);
                return Err(src
                    .error(n, format!("roles.{role}.env.secret[{i}]: secret `{name}` is not defined"))
                    .with_label("no value for this secret")
                    .with_hint(format!(
                        "export {name}=... before running ballast, or add a line `{name}=...` to {}",
                        file.display()
                    )));
            }
        }
    }
    // From here on no output of this process shows these values.
    crate::redact::register(values.values().map(String::as_str));
    Ok(Secrets { values })
}

/// Reads a dotenv file; a missing file is empty. Errors never quote the
/// file's content.
fn read_secrets_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
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
    let mut values = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, v)) => {
                values.insert(k, v);
            }
            Err(dotenvy::Error::LineParse(line, _)) => {
                let number = text
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
}
