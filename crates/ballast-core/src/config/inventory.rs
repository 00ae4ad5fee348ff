//! Inventory variables, instead of service discovery: a clear environment
//! value (a role's `env.clear`, a host's `env`, an accessory's `env.clear`)
//! may name the hosts and ports the config lists, as `{{ PATH }}`:
//!
//! - `{{ roles.NAME.hosts }}`: the role's host addresses, comma-separated,
//!   in the order listed;
//! - `{{ roles.NAME.port }}`: the role's `port`;
//! - `{{ accessories.NAME.host }}`: the accessory's host;
//! - `{{ accessories.NAME.port }}`: the accessory's first published host port.
//!
//! Nothing else: no expressions, filters or loops, and never a secret
//! (`{{ secrets.X }}` is refused: secrets reach containers only at run
//! time, through `env.secret`). References are checked with the other
//! semantic checks (a located error, with what exists as the hint) and
//! replaced once the file is valid, so the config that plans, `ballast
//! plan` and `ballast config` show is the resolved one, and a changed
//! address rolls out like any other change of a variable.

use std::collections::BTreeMap;

use super::hints::closest;
use super::node::shorten;
use super::schema::Config;
use super::validate::Checker;

/// What references can name, taken from the config.
struct Inventory {
    /// Role name to its host addresses and `port`.
    roles: BTreeMap<String, (Vec<String>, Option<u16>)>,
    /// Accessory name to its host and first published host port.
    accessories: BTreeMap<String, (String, Option<u16>)>,
}

impl Inventory {
    fn of(config: &Config) -> Inventory {
        Inventory {
            roles: config
                .roles
                .iter()
                .map(|(name, r)| {
                    let hosts = r.hosts.iter().map(|h| h.address().trim().to_string());
                    (name.clone(), (hosts.collect(), r.port))
                })
                .collect(),
            accessories: config
                .accessories
                .iter()
                .map(|(name, a)| (name.clone(), (a.host().to_string(), a.port())))
                .collect(),
        }
    }
}

/// Why a value cannot be resolved: the message and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    message: String,
    hint: String,
}

fn problem(message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        hint: hint.into(),
    }
}

const FORMS: &str = "`{{ roles.NAME.hosts }}`, `{{ roles.NAME.port }}`, \
                     `{{ accessories.NAME.host }}` or `{{ accessories.NAME.port }}`";

/// `text` with every `{{ PATH }}` replaced by what it names; the first
/// reference that names nothing is the error.
fn expand(text: &str, inventory: &Inventory) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(problem(
                format!(
                    "`{}` opens `{{{{` without closing it",
                    shorten(&rest[start..])
                ),
                format!("a reference is written {FORMS}, closed with `}}}}`"),
            ));
        };
        let path = after[..end].trim();
        out.push_str(&lookup(path, inventory)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value `path` (the text between the braces) names.
fn lookup(path: &str, inventory: &Inventory) -> Result<String, Problem> {
    let written = format!("{{{{ {} }}}}", shorten(path));
    let is_path = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !is_path {
        return Err(problem(
            format!("`{written}` is not a reference"),
            format!("only a path is understood between the braces (no expressions, filters or loops): {FORMS}"),
        ));
    }
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["secrets", ..] => Err(problem(
            format!("`{written}` would put a secret in a clear value"),
            match parts.get(1) {
                Some(name) => format!("secrets are never substituted: list `{name}` under `env.secret`, so its value reaches the container at run time only"),
                None => "secrets are never substituted: list them under `env.secret`".to_string(),
            },
        )),
        ["roles", name, field] => {
            let Some((hosts, port)) = inventory.roles.get(*name) else {
                return Err(unknown("role", name, &written, inventory.roles.keys()));
            };
            match *field {
                "hosts" => Ok(hosts.join(",")),
                "port" => port.map(|p| p.to_string()).ok_or_else(|| {
                    let with: Vec<&str> = inventory
                        .roles
                        .iter()
                        .filter(|(_, (_, p))| p.is_some())
                        .map(|(n, _)| n.as_str())
                        .collect();
                    problem(
                        format!("`{written}`: role `{name}` has no `port`"),
                        format!(
                            "give `roles.{name}.port`, or refer to a role that has one ({})",
                            listed(&with)
                        ),
                    )
                }),
                _ => Err(problem(
                    format!("`{written}`: a role has no `{}`", shorten(field)),
                    format!("a role offers `hosts` (its addresses, comma-separated) and `port`, e.g. `{{{{ roles.{name}.hosts }}}}`"),
                )),
            }
        }
        ["accessories", name, field] => {
            let Some((host, port)) = inventory.accessories.get(*name) else {
                return Err(unknown("accessory", name, &written, inventory.accessories.keys()));
            };
            match *field {
                "host" => Ok(host.clone()),
                "port" => port.map(|p| p.to_string()).ok_or_else(|| {
                    problem(
                        format!("`{written}`: accessory `{name}` publishes no port"),
                        format!("publish one in `accessories.{name}.ports` (`ADDRESS:HOST_PORT:CONTAINER_PORT`), or write the port itself"),
                    )
                }),
                _ => Err(problem(
                    format!("`{written}`: an accessory has no `{}`", shorten(field)),
                    format!("an accessory offers `host` and `port`, e.g. `{{{{ accessories.{name}.host }}}}`"),
                )),
            }
        }
        _ => Err(problem(
            format!("`{written}` names nothing ballast knows"),
            format!("a reference is one of {FORMS}"),
        )),
    }
}

/// A reference to a role or accessory the config does not define.
fn unknown<'a>(
    kind: &str,
    name: &str,
    written: &str,
    known: impl Iterator<Item = &'a String> + Clone,
) -> Problem {
    let names: Vec<&str> = known.map(String::as_str).collect();
    let plural = if kind == "role" {
        "roles"
    } else {
        "accessories"
    };
    let hint = match closest(name, names.iter().copied()) {
        Some(near) => format!(
            "did you mean `{near}`? {plural} defined: {}",
            listed(&names)
        ),
        None => format!("{plural} defined: {}", listed(&names)),
    };
    problem(
        format!("`{written}`: there is no {kind} `{}`", shorten(name)),
        hint,
    )
}

fn listed(names: &[&str]) -> String {
    match names {
        [] => "none".to_string(),
        _ => names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Every clear value that may hold references, with its key path in the
/// file and its text.
fn values(config: &Config) -> Vec<(Vec<String>, &str)> {
    let mut out = Vec::new();
    let path = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    for (role, r) in &config.roles {
        for (key, value) in &r.env.clear {
            out.push((path(&["roles", role, "env", "clear", key]), value.as_str()));
        }
        for (i, entry) in r.hosts.iter().enumerate() {
            if let super::HostEntry::WithEnv(h) = entry {
                let i = i.to_string();
                for (key, value) in &h.env {
                    out.push((
                        path(&["roles", role, "hosts", &i, "env", key]),
                        value.as_str(),
                    ));
                }
            }
        }
    }
    for (name, a) in &config.accessories {
        for (key, value) in &a.env.clear {
            out.push((
                path(&["accessories", name, "env", "clear", key]),
                value.as_str(),
            ));
        }
    }
    out
}

/// The key path as messages write it: `roles.web.hosts[1].env.X`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

impl Checker<'_> {
    /// Every reference in a clear value names something that exists.
    pub(super) fn inventory(&mut self, config: &Config) {
        let inventory = Inventory::of(config);
        for (path, value) in values(config) {
            if let Err(p) = expand(value, &inventory) {
                let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                self.error(&parts, format!("{}: {}", dotted(&path), p.message))
                    .set_label("unresolved reference")
                    .set_hint(p.hint);
            }
        }
    }
}

/// A clear value that held references, as the plan shows it: where, what
/// was written, and what it became.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reference {
    /// Key path, as messages write it (`roles.web.env.clear.DATABASE_HOST`).
    pub key: String,
    /// The value as written, references and all.
    pub written: String,
    /// The value with every reference replaced.
    pub value: String,
}

/// The clear values of a checked config that hold references, resolved
/// (before [`resolve`] replaces them).
pub(super) fn references(config: &Config) -> Vec<Reference> {
    let inventory = Inventory::of(config);
    values(config)
        .into_iter()
        .filter(|(_, v)| v.contains("{{"))
        .filter_map(|(path, written)| {
            let value = expand(written, &inventory).ok()?;
            Some(Reference {
                key: dotted(&path),
                written: written.to_string(),
                value,
            })
        })
        .collect()
}

/// Replaces every reference in the clear values of a checked config.
pub(super) fn resolve(config: &mut Config) {
    let inventory = Inventory::of(config);
    let expand = |value: &mut String| {
        if let Ok(resolved) = expand(value, &inventory) {
            *value = resolved;
        }
    };
    for r in config.roles.values_mut() {
        r.env.clear.values_mut().for_each(expand);
        for entry in &mut r.hosts {
            if let super::HostEntry::WithEnv(h) = entry {
                h.env.values_mut().for_each(expand);
            }
        }
    }
    for a in config.accessories.values_mut() {
        a.env.clear.values_mut().for_each(expand);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const BASE: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [10.0.0.11, {host: 10.0.0.12, env: {SHARD: \"{{ roles.worker.hosts }}\"}}]
    port: 8080
    env:
      clear:
        DATABASE_URL: \"postgres://{{ accessories.db.host }}:{{accessories.db.port}}/shop\"
        PEERS: \"{{ roles.web.hosts }}\"
        WEB_PORT: \"{{ roles.web.port }}\"
        PLAIN: \"no braces } here\"
  worker:
    hosts: [10.0.0.13]
    env:
      clear: {WEB: \"{{ roles.web.hosts }}:{{ roles.web.port }}\"}
accessories:
  db:
    image: postgres:16.4
    host: 10.0.0.20
    ports: [\"10.0.0.20:5432:5432\"]
    directories: [{container: /var/lib/postgresql/data, owner: \"999:999\"}]
    env:
      clear: {APP_HOSTS: \"{{ roles.web.hosts }}\"}
  cache:
    image: redis:7
    host: 10.0.0.21
";

    /// `BASE` with the web role's `PLAIN` value replaced by `value`.
    fn with_value(value: &str) -> String {
        BASE.replace("\"no braces } here\"", value)
    }

    #[test]
    fn every_reference_kind_resolves_from_the_config() {
        let loaded = parse_yaml(BASE).unwrap();
        let c = &loaded.config;
        let web = &c.roles["web"].env.clear;
        assert_eq!(web["DATABASE_URL"], "postgres://10.0.0.20:5432/shop");
        assert_eq!(web["PEERS"], "10.0.0.11,10.0.0.12");
        assert_eq!(web["WEB_PORT"], "8080");
        assert_eq!(web["PLAIN"], "no braces } here");
        let super::super::HostEntry::WithEnv(h) = &c.roles["web"].hosts[1] else {
            panic!("the second host has variables");
        };
        assert_eq!(h.env["SHARD"], "10.0.0.13");
        assert_eq!(
            c.roles["worker"].env.clear["WEB"],
            "10.0.0.11,10.0.0.12:8080"
        );
        assert_eq!(
            c.accessories["db"].env.clear["APP_HOSTS"],
            "10.0.0.11,10.0.0.12"
        );
    }

    #[test]
    fn the_loaded_config_remembers_what_each_reference_became() {
        let loaded = parse_yaml(BASE).unwrap();
        let url = loaded
            .references
            .iter()
            .find(|r| r.key == "roles.web.env.clear.DATABASE_URL")
            .unwrap();
        assert_eq!(url.value, "postgres://10.0.0.20:5432/shop");
        assert!(url.written.contains("{{ accessories.db.host }}"), "{url:?}");
        // Values without references are not listed.
        assert!(loaded.references.iter().all(|r| !r.key.ends_with("PLAIN")));
    }

    #[test]
    fn the_plan_s_definition_holds_resolved_values() {
        let loaded = parse_yaml(BASE).unwrap();
        let c = &loaded.config;
        let spec = crate::spec::RoleSpec::new(c, "web", &c.roles["web"], "10.0.0.12");
        assert_eq!(spec.env_clear["SHARD"], "10.0.0.13");
        assert_eq!(
            spec.env_clear["DATABASE_URL"],
            "postgres://10.0.0.20:5432/shop"
        );
    }

    #[test]
    fn unknown_roles_and_accessories_are_located_with_what_exists() {
        let yaml = with_value("\"{{ accessories.dbb.host }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "roles.web.env.clear.PLAIN: `{{ accessories.dbb.host }}`: there is no accessory `dbb`",
            "did you mean `db`? accessories defined: `cache`, `db`",
        );
        let yaml = with_value("\"{{ roles.api.hosts }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "there is no role `api`",
            "roles defined: `web`, `worker`",
        );
        let yaml = BASE.replace(
            "WEB: \"{{ roles.web.hosts }}",
            "WEB: \"{{ roles.wbe.hosts }}",
        );
        assert_error(
            &yaml,
            16,
            20,
            "roles.worker.env.clear.WEB: `{{ roles.wbe.hosts }}`",
            "did you mean `web`?",
        );
        let yaml = BASE.replace("{{ roles.worker.hosts }}", "{{ roles.workers.hosts }}");
        assert_error(
            &yaml,
            5,
            55,
            "roles.web.hosts[1].env.SHARD: `{{ roles.workers.hosts }}`: there is no role `workers`",
            "did you mean `worker`?",
        );
        let yaml = BASE.replace(
            "APP_HOSTS: \"{{ roles.web.hosts }}\"",
            "APP_HOSTS: \"{{ accessories.redis.host }}\"",
        );
        assert_error(&yaml, 24, 26, "accessories.db.env.clear.APP_HOSTS: `{{ accessories.redis.host }}`: there is no accessory `redis`", "accessories defined: `cache`, `db`");
    }

    #[test]
    fn unknown_fields_and_missing_ports_say_what_is_offered() {
        let yaml = with_value("\"{{ roles.web.ip }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "`{{ roles.web.ip }}`: a role has no `ip`",
            "a role offers `hosts`",
        );
        let yaml = with_value("\"{{ accessories.db.hosts }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "an accessory has no `hosts`",
            "an accessory offers `host` and `port`",
        );
        let yaml = with_value("\"{{ roles.worker.port }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "role `worker` has no `port`",
            "give `roles.worker.port`, or refer to a role that has one (`web`)",
        );
        let yaml = with_value("\"{{ accessories.cache.port }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "accessory `cache` publishes no port",
            "accessories.cache.ports",
        );
    }

    #[test]
    fn secrets_are_never_substituted() {
        let yaml = with_value("\"{{ secrets.DB_PASSWORD }}\"");
        assert_error(
            &yaml,
            12,
            16,
            "would put a secret in a clear value",
            "list `DB_PASSWORD` under `env.secret`",
        );
    }

    #[test]
    fn only_a_plain_path_is_understood() {
        for (value, message) in [
            ("{{ roles.web.port | default(80) }}", "is not a reference"),
            ("{{ roles.web.port + 1 }}", "is not a reference"),
            (
                "{% for h in roles.web.hosts %}{{ h }}{% endfor %}",
                "names nothing ballast knows",
            ),
            ("{{ }}", "is not a reference"),
            ("{{ roles.web }}", "names nothing ballast knows"),
            ("{{ env.HOME }}", "names nothing ballast knows"),
            ("x {{ roles.web.port", "opens `{{` without closing it"),
        ] {
            let yaml = with_value(&format!("\"{value}\""));
            assert_error(&yaml, 12, 16, message, "{{ roles.NAME.hosts }}");
        }
    }

    #[test]
    fn one_message_word_for_word() {
        let yaml = with_value("\"{{ accessories.dbb.port }}\"");
        let e = parse_yaml(&yaml).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ballast.yml:12:16: roles.web.env.clear.PLAIN: `{{ accessories.dbb.port }}`: there is no accessory `dbb`"
        );
        assert_eq!(
            e.hint(),
            Some("did you mean `db`? accessories defined: `cache`, `db`")
        );
    }

    #[test]
    fn a_config_without_references_is_unchanged() {
        let yaml = super::super::testing::VALID;
        let loaded = parse_yaml(yaml).unwrap();
        assert_eq!(loaded.config.roles["web"].env.clear["RUST_LOG"], "info");
        assert_eq!(
            dotted(&["roles".into(), "web".into(), "hosts".into(), "1".into()]),
            "roles.web.hosts[1]"
        );
    }
}
