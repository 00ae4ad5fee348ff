//! The semantic checks of `accessories:` (what serde cannot say): names,
//! hosts, ports and who else publishes them, data directories and where
//! they may live, owners and modes, health commands. Each error is located
//! at the value to fix.

use super::super::validate::Checker;
use super::*;

/// A plain host name: an address or ssh alias, nothing ssh would read as a
/// user, a port or an option.
fn is_plain_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let mut chars = host.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Directories where no data root may be: the system's own.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/var/lib",
    "/var/lib/docker",
    "/tmp",
    "/root",
    "/home",
];

/// Whether `path` is strictly inside `dir` (both normalized).
fn strictly_inside(path: &str, dir: &str) -> bool {
    path.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

impl Checker<'_> {
    pub(in crate::config) fn accessories(&mut self, config: &Config) {
        self.data_roots(config);
        let mut dirs: Vec<(String, String, String, usize)> = Vec::new();
        // (host, host port, address or every address, who publishes it)
        let mut ports: Vec<(String, u16, Option<IpAddr>, String)> = Vec::new();
        for (name, role) in &config.roles {
            for host in role.addresses() {
                for (host_port, _) in role.published_ports() {
                    ports.push((host.to_string(), host_port, None, format!("role `{name}`")));
                }
            }
        }
        for (name, a) in &config.accessories {
            let at = |rest: &[&str]| -> Vec<String> {
                let mut p = vec!["accessories".to_string(), name.clone()];
                p.extend(rest.iter().map(|s| s.to_string()));
                p
            };
            self.accessory_name(config, name);
            if let Some((msg, hint)) = image_problem(&a.image) {
                let path = at(&["image"]);
                self.error(&refs(&path), format!("accessories.{name}.image: {msg}"))
                    .set_label("invalid image reference")
                    .set_hint(hint);
            }
            if !is_plain_host(a.host.trim()) {
                let path = at(&["host"]);
                self.error(&refs(&path), format!("accessories.{name}.host: `{}` is not a plain host name", shorten(&a.host)))
                    .set_label("not an address or ssh alias")
                    .set_hint("write one IP address, host name or ~/.ssh/config alias (letters, digits, `.`, `-`, `_`); put the user in `ssh.user` and the port in `ssh.port` or ~/.ssh/config");
            }
            self.accessory_env(name, &a.env);
            for (i, entry) in a.ports.iter().enumerate() {
                let idx = i.to_string();
                let path = at(&["ports", &idx]);
                let here = format!("accessories.{name}.ports[{i}]");
                let Some(p) = parse_port(entry) else {
                    self.error(&refs(&path), format!("{here}: `{}` is not `ADDRESS:HOST_PORT:CONTAINER_PORT`", shorten(entry)))
                        .set_label("expected ADDRESS:HOST_PORT:CONTAINER_PORT")
                        .set_hint("give the address to listen on and both ports, quoted: e.g. `\"127.0.0.1:5432:5432\"` (this host only) or `\"10.0.0.20:5432:5432\"` (its private address)");
                    continue;
                };
                if !a.public && (p.bind.is_unspecified() || !is_private(p.bind)) {
                    let what = if p.bind.is_unspecified() {
                        "every address of the host"
                    } else {
                        "a public address"
                    };
                    self.error(&refs(&path), format!("{here}: `{}` listens on {what}", p.bind))
                        .set_label("reachable from outside the private network")
                        .set_hint(format!("bind it to loopback (`127.0.0.1:{}:{}`) or the host's private address; if it must be public, say so with `public: true` in accessories.{name}", p.host_port, p.container_port));
                    continue;
                }
                let bind = (!p.bind.is_unspecified()).then_some(p.bind);
                let taken = ports.iter().find(|(h, port, b, _)| {
                    h == a.host()
                        && *port == p.host_port
                        && (b.is_none() || bind.is_none() || *b == bind)
                });
                match taken {
                    Some((host, _, _, owner)) => {
                        let msg = format!(
                            "{here}: host port {} on host `{host}` is already published by {owner}",
                            p.host_port
                        );
                        self.error(&refs(&path), msg)
                            .set_label("port already taken on this host")
                            .set_hint("a host port can be published once per host address: pick another host port");
                    }
                    None => ports.push((
                        a.host().to_string(),
                        p.host_port,
                        bind,
                        format!("accessory `{name}`"),
                    )),
                }
            }
            for (i, d) in a.directories.iter().enumerate() {
                let idx = i.to_string();
                if let Some(host) = self.data_directory(config, name, i, d) {
                    let key = (a.host().to_string(), host);
                    let clash = dirs.iter().find(|(h, p, ..)| {
                        *h == key.0
                            && (p == &key.1
                                || strictly_inside(p, &key.1)
                                || strictly_inside(&key.1, p))
                    });
                    match clash {
                        Some((_, p, owner, _)) => {
                            let path = at(&["directories", &idx]);
                            self.error(&refs(&path), format!("accessories.{name}.directories[{i}]: `{}` overlaps `{p}` of accessory `{owner}` on the same host", key.1))
                                .set_hint("give each data directory a place of its own");
                        }
                        None => dirs.push((key.0, key.1, name.clone(), i)),
                    }
                }
            }
            for (i, f) in a.files.iter().enumerate() {
                let idx = i.to_string();
                let here = format!("accessories.{name}.files[{i}]");
                self.container_path(&at(&["files", &idx, "container"]), &here, &f.container);
                self.owner_and_mode(&at(&["files", &idx]), &here, &f.owner, &f.mode);
                if f.local.as_os_str().is_empty() {
                    self.error(
                        &refs(&at(&["files", &idx, "local"])),
                        format!("{here}: `local` is empty"),
                    )
                    .set_hint("name a file on this machine, relative to the config file");
                }
            }
            if let Some(AccessoryHealthcheck::Command(c)) = &a.healthcheck {
                if c.cmd.is_empty() || c.cmd[0].trim().is_empty() {
                    self.error(&refs(&at(&["healthcheck", "cmd"])), format!("accessories.{name}.healthcheck.cmd: no command"))
                        .set_hint("give the program and its arguments, e.g. `cmd: [pg_isready, -U, postgres]`, or write `healthcheck: none`");
                }
            }
        }
    }

    fn accessory_name(&mut self, config: &Config, name: &str) {
        let path = ["accessories", name];
        if !is_valid_name(name) {
            let fix = suggest_name(name);
            self.key_error(
                &path,
                format!("accessory name `{}` is not valid", shorten(name)),
            )
            .set_label("lowercase letters, digits and hyphens only")
            .set_hint(format!(
                "rename it with lowercase letters, digits and hyphens, e.g. `{}`",
                if fix.is_empty() { "db" } else { &fix }
            ));
        } else if config.roles.contains_key(name) {
            self.key_error(&path, format!("accessory `{name}` has the name of a role"))
                .set_label("also a role")
                .set_hint("roles and accessories share one namespace (containers, logs, `ballast exec`): rename one of them, e.g. `db` and `web`");
        } else if RESERVED_NAMES.contains(&name) {
            self.key_error(&path, format!("accessory name `{name}` is reserved"))
                .set_hint(format!("ballast keeps its own `{name}` under /var/lib/ballast/<service>/: pick another name"));
        }
    }

    fn accessory_env(&mut self, name: &str, env: &Env) {
        for key in env.clear.keys() {
            if !is_env_name(key) {
                self.key_error(
                    &["accessories", name, "env", "clear", key],
                    format!(
                        "accessories.{name}.env.clear: `{}` is not a valid variable name",
                        shorten(key)
                    ),
                )
                .set_hint("use letters, digits and `_`, not starting with a digit");
            }
        }
        for (i, key) in env.secret.iter().enumerate() {
            let idx = i.to_string();
            let path = ["accessories", name, "env", "secret", idx.as_str()];
            let here = format!("accessories.{name}.env.secret[{i}]");
            if !is_env_name(key) {
                self.error(&path, format!("{here}: `{}` is not a valid variable name", shorten(key)))
                    .set_hint("list variable NAMES here (letters, digits and `_`), never values: values come from your environment or .ballast/secrets");
            } else if env.clear.contains_key(key) {
                self.error(&path, format!("{here}: `{key}` is both in `env.clear` and `env.secret`"))
                    .set_hint(format!("a variable is clear or secret, not both: remove `{key}` from `env.clear` if it is a secret"));
            } else if env.secret[..i].contains(key) {
                self.error(&path, format!("{here}: `{key}` is listed twice"))
                    .set_hint("remove the repeated name");
            }
        }
    }

    /// Checks one data directory; returns its host path, normalized, when
    /// it is acceptable.
    fn data_directory(
        &mut self,
        config: &Config,
        name: &str,
        i: usize,
        d: &DataDirectory,
    ) -> Option<String> {
        let idx = i.to_string();
        let here = format!("accessories.{name}.directories[{i}]");
        let base = ["accessories", name, "directories", idx.as_str()];
        let host_at = ["accessories", name, "directories", idx.as_str(), "host"];
        let container_at = [
            "accessories",
            name,
            "directories",
            idx.as_str(),
            "container",
        ];
        let container_ok = self.container_path(&container_at, &here, &d.container);
        let owner_ok = self.owner_and_mode(&base, &here, &d.owner, &d.mode);
        let service_dir = format!("{STATE_ROOT}/{}", config.service);
        let example = format!("`{service_dir}/{name}/data`");
        let raw = d.host_path(&config.service, name);
        if !raw.starts_with('/') {
            self.error(&host_at, format!("{here}: host directory `{}` is not absolute", shorten(&raw)))
                .set_label("not an absolute path")
                .set_hint(format!("data lives in host directories named by absolute paths, e.g. {example}, or leave `host` out for the default"));
            return None;
        }
        if raw.split('/').any(|part| part == "..") {
            self.error(
                &host_at,
                format!(
                    "{here}: host directory `{}` climbs out with `..`",
                    shorten(&raw)
                ),
            )
            .set_hint(format!(
                "write the directory as it is, without `..`, e.g. {example}"
            ));
            return None;
        }
        let host = normalize(&raw);
        let in_service = strictly_inside(&host, &service_dir)
            && !RESERVED_NAMES.iter().any(|r| {
                let own = format!("{service_dir}/{r}");
                host == own || strictly_inside(&host, &own)
            });
        let in_root = config
            .data_roots
            .iter()
            .any(|r| r.starts_with('/') && strictly_inside(&host, &normalize(r)));
        if !in_service && !in_root {
            let roots = if config.data_roots.is_empty() {
                String::new()
            } else {
                format!(" or in {}", config.data_roots.join(", "))
            };
            self.error(&host_at, format!("{here}: host directory `{host}` is outside {service_dir}/{roots}"))
                .set_label("outside the data roots")
                .set_hint(format!("keep data inside {service_dir}/ (e.g. {example}), or list the directory holding it in `data_roots:` at the top level"));
            return None;
        }
        (container_ok && owner_ok).then_some(host)
    }

    fn container_path(&mut self, path: &[impl AsRef<str>], here: &str, container: &str) -> bool {
        if container.starts_with('/') && !container.split('/').any(|p| p == "..") {
            return true;
        }
        let path: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        self.error(&path, format!("{here}: container path `{}` is not absolute", shorten(container)))
            .set_hint("write where it appears inside the container, starting with `/`, e.g. `/var/lib/postgresql/data`");
        false
    }

    fn owner_and_mode(
        &mut self,
        base: &[impl AsRef<str>],
        here: &str,
        owner: &str,
        mode: &str,
    ) -> bool {
        let at = |key: &str| {
            let mut p: Vec<String> = base.iter().map(|s| s.as_ref().to_string()).collect();
            p.push(key.to_string());
            p
        };
        let mut ok = true;
        if parse_owner(owner).is_none() {
            ok = false;
            self.error(&refs(&at("owner")), format!("{here}.owner: `{}` is not `UID:GID`", shorten(owner)))
                .set_label("expected UID:GID")
                .set_hint("write the numeric user and group, quoted, e.g. `\"999:999\"` (names differ between the host and the image)");
        }
        if parse_mode(mode).is_none() {
            ok = false;
            self.error(
                &refs(&at("mode")),
                format!("{here}.mode: `{}` is not an octal mode", shorten(mode)),
            )
            .set_label("expected an octal mode")
            .set_hint("write 3 or 4 octal digits, quoted, e.g. `\"0700\"`");
        }
        ok
    }

    fn data_roots(&mut self, config: &Config) {
        for (i, root) in config.data_roots.iter().enumerate() {
            let idx = i.to_string();
            let path = ["data_roots", idx.as_str()];
            let normal = normalize(root);
            if !root.starts_with('/') || root.split('/').any(|p| p == "..") {
                self.error(
                    &path,
                    format!(
                        "data_roots[{i}]: `{}` is not an absolute path",
                        shorten(root)
                    ),
                )
                .set_hint(
                    "write the directory holding accessories' data, absolute, e.g. `/srv/data`",
                );
            } else if SYSTEM_DIRS.contains(&normal.as_str()) {
                self.error(&path, format!("data_roots[{i}]: `{normal}` is a system directory"))
                    .set_hint("name a directory of its own for data, e.g. `/srv/data`: deleting an accessory's data must never reach the system's files");
            }
        }
    }
}

fn refs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    publish: [\"80:8080\"]\naccessories:\n  db:\n    image: postgres:16.4\n    host: b\n";

    fn with(rest: &str) -> String {
        format!("{HEAD}{rest}")
    }

    #[test]
    fn a_full_accessory_loads_with_its_defaults() {
        let yaml = with(
            "    cmd: [postgres, -c, fsync=on]\n    env:\n      clear: {PGDATA: /data}\n      secret: [DB_PASSWORD]\n    ports: [\"10.0.0.20:5432:5432\", \"[::1]:5433:5432\"]\n    directories:\n      - {container: /var/lib/postgresql/data, owner: \"999:999\"}\n      - {container: /backup, host: /srv/data/db-backup, owner: \"0:0\", mode: \"0750\"}\n    files:\n      - {local: conf/pg.conf, container: /etc/pg.conf}\n    healthcheck: {cmd: [pg_isready]}\ndata_roots: [/srv/data]\n",
        );
        let loaded = parse_yaml(&yaml).unwrap();
        let c = &loaded.config;
        let db = &c.accessories["db"];
        assert_eq!((db.host(), db.port()), ("b", Some(5432)));
        assert_eq!(db.published()[1].bind, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(db.stop_timeout, Duration::from_secs(30));
        assert_eq!(
            db.data_dirs("shop", "db"),
            [
                DataDir {
                    host: "/var/lib/ballast/shop/db/data".into(),
                    container: "/var/lib/postgresql/data".into(),
                    uid: 999,
                    gid: 999,
                    mode: 0o700,
                },
                DataDir {
                    host: "/srv/data/db-backup".into(),
                    container: "/backup".into(),
                    uid: 0,
                    gid: 0,
                    mode: 0o750,
                },
            ]
        );
        assert_eq!(db.files[0].mode, "0644");
        let Some(AccessoryHealthcheck::Command(check)) = &db.healthcheck else {
            panic!("{:?}", db.healthcheck)
        };
        assert_eq!((check.retries, check.interval), (3, Duration::from_secs(2)));
        assert!(loaded.secrets.get("DB_PASSWORD").is_some());
        assert_eq!(c.all_hosts(), ["a", "b"]);
        let off = parse_yaml(&with("    healthcheck: none\n")).unwrap();
        assert_eq!(
            off.config.accessories["db"].healthcheck,
            Some(AccessoryHealthcheck::Off(NoCheck::None))
        );
    }

    #[test]
    fn data_directories_must_be_absolute_and_inside_the_data_roots() {
        // Line 12, column 40 is where `host`'s value starts.
        let dir = |host: &str| {
            with(&format!(
                "    directories:\n      - {{container: /data, owner: \"1:1\", host: {host}}}\n"
            ))
        };
        assert_error(
            &dir("data/db"),
            12,
            48,
            "accessories.db.directories[0]: host directory `data/db` is not absolute",
            "absolute paths, e.g. `/var/lib/ballast/shop/db/data`",
        );
        assert_error(
            &dir("/srv/db"),
            12,
            48,
            "host directory `/srv/db` is outside /var/lib/ballast/shop/",
            "`data_roots:`",
        );
        assert_error(
            &dir("/var/lib/ballast/shop/db/../../other"),
            12,
            48,
            "climbs out with `..`",
            "without `..`",
        );
        // Ballast's own entries and the state directory itself are no data.
        for own in [
            "/var/lib/ballast/shop",
            "/var/lib/ballast/shop/secrets/x",
            "/var/lib/ballast/other/db",
        ] {
            assert_error(&dir(own), 12, 48, "is outside", "data_roots");
        }
        assert!(parse_yaml(&format!("{}data_roots: [/srv]\n", dir("/srv/db"))).is_ok());
        let root = format!("{}data_roots: [/etc]\n", dir("/etc/db"));
        assert_error(
            &root,
            13,
            14,
            "data_roots[0]: `/etc` is a system directory",
            "/srv/data",
        );
        let other = |rest: &str| {
            with(&format!(
                "    directories:\n      - {{container: /data, {rest}}}\n"
            ))
        };
        assert_error(
            &other("owner: root"),
            12,
            35,
            "directories[0].owner: `root` is not `UID:GID`",
            "\"999:999\"",
        );
        assert_error(
            &other("owner: \"1:1\", mode: \"0999\""),
            12,
            48,
            "`0999` is not an octal mode",
            "\"0700\"",
        );
        let relative = with("    directories: [{container: data, owner: \"1:1\"}]\n");
        assert_error(
            &relative,
            11,
            31,
            "container path `data` is not absolute",
            "`/`",
        );
        let twice = with("    directories: [{container: /a, owner: \"1:1\", host: /var/lib/ballast/shop/db}, {container: /b, owner: \"1:1\"}]\n");
        assert_error(
            &twice,
            11,
            82,
            "`/var/lib/ballast/shop/db/b` overlaps `/var/lib/ballast/shop/db` of accessory `db`",
            "a place of its own",
        );
    }

    #[test]
    fn ports_need_a_private_address_unless_public() {
        let port = |p: &str| with(&format!("    ports: [\"{p}\"]\n"));
        assert_error(
            &port("0.0.0.0:5432:5432"),
            11,
            13,
            "accessories.db.ports[0]: `0.0.0.0` listens on every address of the host",
            "`public: true`",
        );
        assert_error(
            &port("[::]:5432:5432"),
            11,
            13,
            "listens on every address",
            "127.0.0.1:5432:5432",
        );
        assert_error(
            &port("8.8.8.8:53:53"),
            11,
            13,
            "listens on a public address",
            "public: true",
        );
        assert_error(
            &port("5432:5432"),
            11,
            13,
            "is not `ADDRESS:HOST_PORT:CONTAINER_PORT`",
            "\"127.0.0.1:5432:5432\"",
        );
        assert!(parse_yaml(&format!("{}    public: true\n", port("0.0.0.0:5432:5432"))).is_ok());
        assert!(parse_yaml(&port("192.168.1.4:5432:5432")).is_ok());
        // The web role publishes 80 on host a.
        let yaml = HEAD.replace("host: b", "host: a") + "    ports: [\"127.0.0.1:80:5432\"]\n";
        assert_error(
            &yaml,
            11,
            13,
            "host port 80 on host `a` is already published by role `web`",
            "another host port",
        );
    }

    #[test]
    fn names_and_hosts_are_checked() {
        let clash = HEAD.replace("  db:\n", "  web:\n");
        assert_error(
            &clash,
            8,
            3,
            "accessory `web` has the name of a role",
            "rename one",
        );
        let reserved = HEAD.replace("  db:\n", "  secrets:\n");
        assert_error(
            &reserved,
            8,
            3,
            "accessory name `secrets` is reserved",
            "another name",
        );
        let bad = HEAD.replace("  db:\n", "  Db_1:\n");
        assert_error(&bad, 8, 3, "accessory name `Db_1` is not valid", "`db-1`");
        for host in ["root@b", "b:22", "-oProxyCommand=x", "\"b c\"", "ssh://b"] {
            let yaml = HEAD.replace("host: b", &format!("host: {host}"));
            assert_error(&yaml, 10, 11, "is not a plain host name", "ssh.user");
        }
        for host in ["10.0.0.20", "db-1.internal", "fe80::1"] {
            let yaml = HEAD.replace("host: b", &format!("host: \"{host}\""));
            assert!(parse_yaml(&yaml).is_ok(), "{host}");
        }
        let image = HEAD.replace("postgres:16.4", "Postgres");
        assert_error(&image, 9, 12, "accessories.db.image: ", "use `postgres`");
    }

    #[test]
    fn secrets_env_and_health_are_checked() {
        let yaml = with("    env: {secret: [NOPE_UNDEFINED]}\n");
        assert_error(
            &yaml,
            11,
            20,
            "accessories.db.env.secret[0]: secret `NOPE_UNDEFINED` is not defined",
            "export NOPE_UNDEFINED",
        );
        let yaml = with("    env: {clear: {A: x}, secret: [A]}\n");
        assert_error(
            &yaml,
            11,
            35,
            "`A` is both in `env.clear` and `env.secret`",
            "remove `A`",
        );
        let yaml = with("    healthcheck: {cmd: []}\n");
        assert_error(
            &yaml,
            11,
            24,
            "healthcheck.cmd: no command",
            "healthcheck: none",
        );
        let yaml = with("    healthcheck: {cmd: [x], retries: 0}\n");
        assert_error(
            &yaml,
            11,
            38,
            "retries: 0 is less than 1",
            "0 failed checks",
        );
        let yaml = with("    stop_timeout: 2h\n");
        assert_error(
            &yaml,
            11,
            19,
            "accessories.db.stop_timeout: `2h` is longer than 1h",
            "`0s` to `1h`",
        );
    }

    #[test]
    fn parsers_read_what_the_checks_accept() {
        assert_eq!(parse_owner("999:998"), Some((999, 998)));
        assert_eq!(parse_owner("999"), None);
        assert_eq!(parse_owner("a:1"), None);
        assert_eq!(parse_mode("0700"), Some(0o700));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("7"), None);
        assert!(is_private("10.1.2.3".parse().unwrap()));
        assert!(is_private("127.0.0.1".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
        assert!(!is_private("1.1.1.1".parse().unwrap()));
        assert!(!is_private("2001:db8::1".parse().unwrap()));
        assert_eq!(
            parse_port("[::1]:1:2").map(|p| (p.host_port, p.container_port)),
            Some((1, 2))
        );
        assert_eq!(parse_port("localhost:1:2"), None);
    }
}
