//! Semantic checks of each role: its name, its hosts (none, listed twice),
//! published ports (malformed, or taken twice on one host, across roles
//! too), volumes (host directories by absolute path) and health check path.

use std::collections::BTreeMap;

use super::names::*;
use super::node::{self, shorten};
use super::schema::*;
use super::validate::Checker;

impl Checker<'_> {
    pub(super) fn roles(&mut self, config: &Config) {
        if config.roles.is_empty() {
            self.error(&["roles"], "roles: no roles are defined".into())
                .set_hint(
                    "add a role with its hosts, e.g. `roles: { web: { hosts: [10.0.0.11] } }`",
                );
        }
        // (host, host port) -> (role, line) of the first publisher, in file order.
        let mut published: Vec<(usize, String, u16, &str, usize)> = Vec::new();
        for (name, role) in &config.roles {
            if !is_valid_name(name) {
                let fix = suggest_name(name);
                self.key_error(
                    &["roles", name],
                    format!("role name `{}` is not valid", shorten(name)),
                )
                .set_label("lowercase letters, digits and hyphens only")
                .set_hint(format!(
                    "rename it with lowercase letters, digits and hyphens, e.g. `{}`",
                    if fix.is_empty() { "web" } else { &fix }
                ));
            }
            let hosts = self.hosts(name, role);
            self.ports(name, role);
            for (i, entry) in role.publish.iter().enumerate() {
                if let Some((host_port, _)) = parse_publish(entry) {
                    let idx = i.to_string();
                    let (node, _) = node::find(self.root, &["roles", name, "publish", &idx]);
                    let at =
                        (node.referenced.line() as usize) << 20 | node.referenced.column() as usize;
                    for host in &hosts {
                        published.push((at, host.clone(), host_port, name, i));
                    }
                }
            }
            self.volumes(name, role, &config.service);
            self.env(name, role);
            let path = role.healthcheck.as_ref().map(|h| h.path.as_str());
            if let Some(path) = path.filter(|p| !p.starts_with('/')) {
                self.error(
                    &["roles", name, "healthcheck", "path"],
                    format!(
                        "roles.{name}.healthcheck.path: `{}` does not start with `/`",
                        shorten(path)
                    ),
                )
                .set_hint(format!(
                    "write an absolute HTTP path, e.g. `/{}`",
                    path.trim_start_matches('/')
                ));
            }
        }
        published.sort();
        let mut first: BTreeMap<(&str, u16), (&str, usize)> = BTreeMap::new();
        for (_, host, port, role, i) in &published {
            let idx = i.to_string();
            match first.get(&(host.as_str(), *port)) {
                None => {
                    first.insert((host, *port), (role, *i));
                }
                Some((other, j)) => {
                    let (earlier, _) =
                        node::find(self.root, &["roles", other, "publish", &j.to_string()]);
                    let line = earlier.referenced.line();
                    let msg = if other == role {
                        format!("roles.{role}.publish[{i}]: host port {port} is published twice by role `{role}` (line {line})")
                    } else {
                        format!("roles.{role}.publish[{i}]: host port {port} on host `{host}` is already published by role `{other}` (line {line})")
                    };
                    self.error(&["roles", role, "publish", &idx], msg)
                        .set_label("port already taken on this host")
                        .set_hint("a host port can be published once per host: pick another host port, or run these roles on different hosts");
                }
            }
        }
    }

    /// Checks the host list; returns the distinct addresses.
    fn hosts(&mut self, role: &str, r: &Role) -> Vec<String> {
        if r.hosts.is_empty() {
            self.error(&["roles", role, "hosts"], format!("roles.{role}.hosts: role `{role}` has no hosts"))
                .set_label("empty list")
                .set_hint("list at least one host (an address or ssh alias), e.g. `hosts: [10.0.0.11]`, or remove the role");
        }
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (i, entry) in r.hosts.iter().enumerate() {
            let idx = i.to_string();
            let path = ["roles", role, "hosts", idx.as_str(), "host"];
            let address = entry.address().trim();
            if address.is_empty() {
                self.error(
                    &path,
                    format!("roles.{role}.hosts[{i}]: host address is empty"),
                )
                .set_hint("write an IP address, a host name or an alias from ~/.ssh/config");
            } else if let Some((_, j)) = seen.iter().find(|(a, _)| a == address) {
                let (first, _) = node::find(self.root, &["roles", role, "hosts", &j.to_string()]);
                let line = first.referenced.line();
                self.error(&path, format!("roles.{role}.hosts[{i}]: host `{}` is listed twice in role `{role}` (first on line {line})", shorten(address)))
                    .set_label("listed twice")
                    .set_hint("remove the repeated host: a role runs one container per host");
            } else {
                seen.push((address.to_string(), i));
            }
        }
        seen.into_iter().map(|(a, _)| a).collect()
    }

    fn ports(&mut self, role: &str, r: &Role) {
        for (i, entry) in r.publish.iter().enumerate() {
            if parse_publish(entry).is_none() {
                let idx = i.to_string();
                self.error(&["roles", role, "publish", &idx], format!("roles.{role}.publish[{i}]: `{}` is not `HOST_PORT:CONTAINER_PORT`", shorten(entry)))
                    .set_label("expected HOST_PORT:CONTAINER_PORT")
                    .set_hint("write both ports, from 1 to 65535, quoted: e.g. `\"80:8080\"` publishes container port 8080 on host port 80");
            }
        }
    }

    fn volumes(&mut self, role: &str, r: &Role, service: &str) {
        for (i, entry) in r.volumes.iter().enumerate() {
            let idx = i.to_string();
            let path = ["roles", role, "volumes", idx.as_str()];
            let at = format!("roles.{role}.volumes[{i}]");
            let parts: Vec<&str> = entry.split(':').collect();
            let example = format!("`/var/lib/ballast/{service}/{role}:/data`");
            match parts.as_slice() {
                [host, container] | [host, container, "ro" | "rw"]
                    if host.starts_with('/') && container.starts_with('/') => {}
                [host, _] | [host, _, _] if !host.is_empty() && !host.starts_with('/') => {
                    self.error(&path, format!("{at}: host path `{}` is not absolute", shorten(host)))
                        .set_label("not an absolute path")
                        .set_hint(format!("data lives in host directories, named by absolute paths (named volumes are not supported), e.g. {example}"));
                }
                [_, container] | [_, container, _] if !container.starts_with('/') => {
                    self.error(&path, format!("{at}: container path `{}` is not absolute", shorten(container)))
                        .set_hint(format!("write where the directory appears inside the container, starting with `/`, e.g. {example}"));
                }
                [_, _, mode] => {
                    self.error(
                        &path,
                        format!("{at}: `{}` is not a mount mode", shorten(mode)),
                    )
                    .set_hint(
                        "use `ro` (read-only) or `rw` (read-write, the default), or leave it out",
                    );
                }
                _ => {
                    self.error(
                        &path,
                        format!(
                            "{at}: `{}` is not `HOST_PATH:CONTAINER_PATH[:ro|rw]`",
                            shorten(entry)
                        ),
                    )
                    .set_label("expected HOST_PATH:CONTAINER_PATH[:ro|rw]")
                    .set_hint(format!(
                        "write an absolute host directory and where to mount it, e.g. {example}"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n";

    #[test]
    fn a_role_needs_hosts_each_listed_once() {
        let yaml = HEAD.replace("hosts: [a]", "hosts: []");
        assert_error(
            &yaml,
            5,
            12,
            "roles.web.hosts: role `web` has no hosts",
            "list at least one host",
        );
        let yaml = HEAD.replace("hosts: [a]", "hosts: [a, b, a]");
        assert_error(
            &yaml,
            5,
            19,
            "host `a` is listed twice in role `web` (first on line 5)",
            "remove the repeated host",
        );
        let yaml = HEAD.replace("hosts: [a]", "hosts: [a, {host: a}]");
        assert_error(&yaml, 5, 23, "host `a` is listed twice", "remove");
        assert_error(
            "service: shop\nimage: shop\nroles: {}\n",
            3,
            8,
            "no roles are defined",
            "add a role",
        );
    }

    #[test]
    fn a_host_port_is_published_once_per_host() {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a, b]\n    publish: [\"80:8080\"]\n  api:\n    hosts: [b]\n    publish: [\"80:9000\"]\n";
        assert_error(yaml, 9, 15, "roles.api.publish[0]: host port 80 on host `b` is already published by role `web` (line 6)", "pick another host port");
        let yaml = format!("{HEAD}    publish: [\"80:80\", \"80:81\"]\n");
        assert_error(
            &yaml,
            6,
            24,
            "host port 80 is published twice by role `web`",
            "pick another host port",
        );
        let ok = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    publish: [\"80:8080\"]\n  api:\n    hosts: [b]\n    publish: [\"80:9000\"]\n";
        assert!(parse_yaml(ok).is_ok());
    }

    #[test]
    fn publish_and_volume_entries_are_parsed() {
        let yaml = format!("{HEAD}    publish: [8080]\n");
        assert_error(
            &yaml,
            6,
            15,
            "`8080` is not `HOST_PORT:CONTAINER_PORT`",
            "\"80:8080\"",
        );
        let yaml = format!("{HEAD}    volumes: [\"data:/data\"]\n");
        assert_error(
            &yaml,
            6,
            15,
            "host path `data` is not absolute",
            "/var/lib/ballast/shop/web:/data",
        );
        let yaml = format!("{HEAD}    volumes: [/srv/data]\n");
        assert_error(
            &yaml,
            6,
            15,
            "`/srv/data` is not `HOST_PATH:CONTAINER_PATH[:ro|rw]`",
            "absolute host directory",
        );
        let yaml = format!("{HEAD}    volumes: [\"/srv:data\"]\n");
        assert_error(
            &yaml,
            6,
            15,
            "container path `data` is not absolute",
            "starting with `/`",
        );
        let yaml = format!("{HEAD}    volumes: [\"/srv:/data:rx\"]\n");
        assert_error(&yaml, 6, 15, "`rx` is not a mount mode", "`ro`");
        assert!(parse_yaml(&format!(
            "{HEAD}    volumes: [\"/srv:/data:ro\", \"/a:/b\"]\n"
        ))
        .is_ok());
    }

    #[test]
    fn health_check_paths_are_absolute() {
        let yaml = format!("{HEAD}    healthcheck: {{path: up}}\n");
        assert_error(&yaml, 6, 25, "does not start with `/`", "`/up`");
    }
}
