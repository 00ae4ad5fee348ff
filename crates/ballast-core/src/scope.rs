//! Which part of the fleet a command works on: `--hosts` and `--roles`
//! narrow it, `--skip-unreachable` lets it go on without the hosts that do
//! not answer (named in the output and the audit log). Names are checked
//! against the config before anything is reached, so a typo changes nothing.

use crate::config::Config;
use crate::error::{Error, Result};

/// The hosts and roles a command works on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only these hosts (empty: every host).
    pub hosts: Vec<String>,
    /// Only these roles (empty: every role).
    pub roles: Vec<String>,
    /// Go on without the hosts that do not answer.
    pub skip_unreachable: bool,
}

impl Scope {
    /// The whole fleet.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// A scope of `hosts` and `roles`, each checked against `config`.
    pub fn new(
        config: &Config,
        hosts: Vec<String>,
        roles: Vec<String>,
        skip_unreachable: bool,
    ) -> Result<Scope> {
        let known_hosts = config.hosts();
        for h in &hosts {
            if !known_hosts.contains(h) {
                return Err(unknown("host", "--hosts", h, &known_hosts));
            }
        }
        let known_roles: Vec<String> = config.roles.keys().cloned().collect();
        for r in &roles {
            if !known_roles.contains(r) {
                return Err(unknown("role", "--roles", r, &known_roles));
            }
        }
        let scope = Scope {
            hosts,
            roles,
            skip_unreachable,
        };
        if scope.hosts_of(config).is_empty() {
            return Err(Error::input(
                "choose the hosts",
                "no host runs any of the chosen roles among the chosen hosts",
            )
            .hint("`ballast config` shows which hosts each role runs on"));
        }
        Ok(scope)
    }

    /// Whether `role` is in scope.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == role)
    }

    /// Whether `host` is in scope.
    pub fn has_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h == host)
    }

    /// Whether the whole fleet is in scope.
    pub fn is_all(&self) -> bool {
        self.hosts.is_empty() && self.roles.is_empty()
    }

    /// The hosts in scope that run a role in scope, in config order.
    pub fn hosts_of(&self, config: &Config) -> Vec<String> {
        config
            .hosts()
            .into_iter()
            .filter(|h| self.has_host(h))
            .filter(|h| config.roles_on(h).iter().any(|r| self.has_role(r)))
            .collect()
    }

    /// How the command line said it, for the audit log ("" for all).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.hosts.is_empty() {
            parts.push(format!("--hosts {}", self.hosts.join(",")));
        }
        if !self.roles.is_empty() {
            parts.push(format!("--roles {}", self.roles.join(",")));
        }
        if self.skip_unreachable {
            parts.push("--skip-unreachable".into());
        }
        parts.join(" ")
    }
}

fn unknown(what: &str, flag: &str, name: &str, known: &[String]) -> Error {
    let close = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(distance, _)| {
            *distance <= 2 && *distance < name.len() / 2 + 1 && *distance < name.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    Error::input(
        format!("read {flag}"),
        format_args!("no {what} `{name}` in the config"),
    )
    .hint(format!("{close}the config's {what}s: {}", known.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a, b]\n  worker:\n    hosts: [c]\n";
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_whole_fleet_by_default() {
        let c = config();
        let s = Scope::new(&c, vec![], vec![], false).unwrap();
        assert!(s.is_all());
        assert_eq!(s.hosts_of(&c), ["a", "b", "c"]);
        assert_eq!(s.describe(), "");
    }

    #[test]
    fn hosts_and_roles_narrow_it() {
        let c = config();
        let s = Scope::new(&c, vec![], vec!["web".into()], false).unwrap();
        assert_eq!(s.hosts_of(&c), ["a", "b"]);
        let s = Scope::new(&c, vec!["b".into(), "c".into()], vec!["web".into()], true).unwrap();
        assert_eq!(s.hosts_of(&c), ["b"]);
        assert_eq!(s.describe(), "--hosts b,c --roles web --skip-unreachable");
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let c = config();
        let e = Scope::new(&c, vec!["z".into()], vec![], false).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Input);
        assert_eq!(e.to_string(), "read --hosts: no host `z` in the config");
        assert_eq!(e.hint.unwrap(), "the config's hosts: a, b, c");
        let e = Scope::new(&c, vec![], vec!["wbe".into()], false).unwrap_err();
        assert_eq!(e.to_string(), "read --roles: no role `wbe` in the config");
        assert_eq!(
            e.hint.unwrap(),
            "did you mean `web`? the config's roles: web, worker"
        );
        let e = Scope::new(&c, vec!["c".into()], vec!["web".into()], false).unwrap_err();
        assert!(e.cause.contains("no host runs"), "{e}");
    }
}
