//! Where a role's log lines go when its log driver sends them off the
//! host (syslog, gelf, fluentd): `ballast logs` reads the copy Docker keeps
//! on the host (its "dual logging" cache), and says where the lines went;
//! when the host keeps no copy (`cache-disabled`), it says only that.

use crate::config::{Config, LogDriver, Logging};

use super::Source;

/// Where a role's log lines go when its driver sends them off the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    pub role: String,
    pub driver: LogDriver,
    /// The address they are sent to, as the options give it (or the
    /// driver's default).
    pub address: String,
    /// Docker keeps a copy of the recent lines on the host (its "dual
    /// logging" cache, on unless `cache-disabled`), which is what can be
    /// read here.
    pub cached: bool,
}

impl Elsewhere {
    /// Where `role`'s lines go when `logging` sends them off the host.
    pub fn of(role: &str, logging: &Logging) -> Option<Elsewhere> {
        let driver = logging.driver;
        if driver.stays_on_host() {
            return None;
        }
        let option = |k: &str| logging.options.get(k).map(|v| v.trim().to_string());
        let address = match driver {
            LogDriver::Syslog => {
                option("syslog-address").unwrap_or_else(|| "the host's syslog socket".into())
            }
            LogDriver::Gelf => option("gelf-address").unwrap_or_default(),
            LogDriver::Fluentd => {
                option("fluentd-address").unwrap_or_else(|| "localhost:24224".into())
            }
            _ => String::new(),
        };
        let cached = !option("cache-disabled").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Some(Elsewhere {
            role: role.to_string(),
            driver,
            address,
            cached,
        })
    }

    /// What `ballast logs` says about it.
    pub fn note(&self) -> String {
        let head = format!(
            "{} logs go to {} at {}",
            self.role, self.driver, self.address
        );
        if self.cached {
            format!("{head}; shown here: the recent lines Docker keeps on each host")
        } else {
            format!("{head}, and the hosts keep no copy (`cache-disabled`): read them there")
        }
    }
}

/// Splits `sources` into those whose lines can be read from the hosts and
/// the roles whose lines went elsewhere, once each, in role order.
pub fn by_driver(config: &Config, sources: Vec<Source>) -> (Vec<Source>, Vec<Elsewhere>) {
    let mut away: Vec<Elsewhere> = Vec::new();
    let mut readable = Vec::new();
    for source in sources {
        let elsewhere = config
            .roles
            .contains_key(&source.role)
            .then(|| Elsewhere::of(&source.role, config.logging_of(&source.role)))
            .flatten();
        if let Some(e) = &elsewhere {
            if !away.iter().any(|a| a.role == e.role) {
                away.push(e.clone());
            }
        }
        if elsewhere.is_none_or(|e| e.cached) {
            readable.push(source);
        }
    }
    away.sort_by(|a, b| a.role.cmp(&b.role));
    (readable, away)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logging(yaml: &str) -> Config {
        let text = format!(
            "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n  worker:\n    hosts: [a]\n{yaml}"
        );
        serde_saphyr::from_str(&text).unwrap()
    }

    /// Sources of `roles` on host `a`, with an engine never asked.
    fn sources(roles: &[&str]) -> Vec<Source> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let docker = bollard::Docker::connect_with_unix(
            &socket.to_string_lossy(),
            1,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        roles
            .iter()
            .map(|r| Source {
                host: "a".into(),
                role: r.to_string(),
                docker: docker.clone(),
                container: format!("shop-{r}-v1"),
            })
            .collect()
    }

    fn roles(sources: &[Source]) -> Vec<&str> {
        sources.iter().map(|s| s.role.as_str()).collect()
    }

    #[test]
    fn logs_kept_on_the_host_are_read_without_a_note() {
        for driver in ["local", "json-file", "journald"] {
            let c = logging(&format!("logging: {{driver: {driver}}}\n"));
            let (read, away) = by_driver(&c, sources(&["web", "worker", "proxy"]));
            assert_eq!(roles(&read), ["web", "worker", "proxy"], "{driver}");
            assert_eq!(away, [], "{driver}");
        }
    }

    #[test]
    fn logs_sent_away_say_where_and_are_read_from_the_hosts_copy() {
        let c =
            logging("logging: {driver: gelf, options: {gelf-address: \"udp://graylog:12201\"}}\n");
        let (read, away) = by_driver(&c, sources(&["web", "web", "worker"]));
        assert_eq!(roles(&read), ["web", "web", "worker"]);
        let notes: Vec<String> = away.iter().map(Elsewhere::note).collect();
        assert_eq!(
            notes,
            [
                "web logs go to gelf at udp://graylog:12201; shown here: the recent lines Docker keeps on each host",
                "worker logs go to gelf at udp://graylog:12201; shown here: the recent lines Docker keeps on each host",
            ]
        );
    }

    #[test]
    fn logs_sent_away_without_a_copy_are_not_read() {
        let mut c = logging("logging: {driver: fluentd, options: {cache-disabled: \"true\"}}\n");
        c.roles.get_mut("worker").unwrap().logging = Some(Default::default());
        let (read, away) = by_driver(&c, sources(&["web", "worker", "proxy"]));
        assert_eq!(roles(&read), ["worker", "proxy"]);
        assert_eq!(
            away.iter().map(Elsewhere::note).collect::<Vec<_>>(),
            ["web logs go to fluentd at localhost:24224, and the hosts keep no copy (`cache-disabled`): read them there"]
        );
        let c = logging("logging: {driver: syslog}\n");
        assert_eq!(
            Elsewhere::of("web", &c.logging).unwrap().note(),
            "web logs go to syslog at the host's syslog socket; shown here: the recent lines Docker keeps on each host"
        );
    }
}
