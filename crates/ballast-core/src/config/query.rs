//! Questions the rest of ballast asks of a loaded `Config`: role names, the
//! hosts to reach, and timeouts with their defaults applied.

use std::time::Duration;

use super::schema::*;

impl Config {
    /// Role names, sorted.
    pub fn role_names(&self) -> Vec<&str> {
        self.roles.keys().map(String::as_str).collect()
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every host address once: roles in name order, hosts in listed order.
    /// (Roles are a map, so the file's order of roles is not kept.)
    pub fn hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for role in self.roles.values() {
            for h in &role.hosts {
                if !out.iter().any(|o| o == h.address()) {
                    out.push(h.address().to_string());
                }
            }
        }
        out
    }

    /// The roles that run on `host`, sorted.
    pub fn roles_on(&self, host: &str) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|(_, r)| r.hosts.iter().any(|h| h.address() == host))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// How long a container of `role` gets to stop before it is killed.
    pub fn stop_timeout(&self, role: &str) -> Duration {
        self.roles
            .get(role)
            .and_then(|r| r.stop_timeout)
            .unwrap_or_else(defaults::stop_timeout)
    }

    /// How long a new container may take to become healthy.
    pub fn health_timeout(&self) -> Duration {
        self.deploy.health_timeout
    }

    /// Deadline for connecting to one host.
    pub fn connect_timeout(&self) -> Duration {
        self.ssh
            .connect_timeout
            .unwrap_or_else(defaults::connect_timeout)
    }

    /// How many hosts are worked on at once.
    pub fn concurrency(&self) -> usize {
        self.ssh.concurrency.unwrap_or_else(defaults::concurrency)
    }
}

impl Role {
    /// Host addresses of the role, in listed order.
    pub fn addresses(&self) -> Vec<&str> {
        self.hosts.iter().map(HostEntry::address).collect()
    }

    /// Whether the role publishes host ports (its containers then change
    /// version by stop-then-start).
    pub fn publishes(&self) -> bool {
        !self.publish.is_empty()
    }

    /// Published ports as `(host_port, container_port)`; entries are
    /// validated when the config is loaded.
    pub fn published_ports(&self) -> Vec<(u16, u16)> {
        self.publish
            .iter()
            .filter_map(|p| super::names::parse_publish(p))
            .collect()
    }
}

impl Batch {
    /// The percentage of a `"25%"` batch; `None` for a count.
    pub fn percent(&self) -> Option<u8> {
        match self {
            Batch::Count(_) => None,
            Batch::Percent(p) => super::names::parse_percent(p).and_then(|n| u8::try_from(n).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn helpers_answer_with_defaults() {
        let yaml = VALID.replace(
            "  worker:\n    hosts: [10.0.0.3]\n",
            "  worker:\n    hosts: [10.0.0.3, 10.0.0.1]\n    stop_timeout: 2m\n",
        );
        let c = parse_yaml(&yaml).unwrap().config;
        assert_eq!(c.role_names(), ["web", "worker"]);
        assert_eq!(c.hosts(), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(c.roles_on("10.0.0.1"), ["web", "worker"]);
        assert_eq!(c.stop_timeout("worker").as_secs(), 120);
        assert_eq!(c.stop_timeout("web").as_secs(), 30);
        assert_eq!(c.health_timeout().as_secs(), 30);
        assert_eq!(c.connect_timeout().as_secs(), 10);
        assert_eq!(c.concurrency(), 10);
        assert_eq!(c.deploy.batch.percent(), None);
        let web = c.role("web").unwrap();
        assert_eq!(web.addresses(), ["10.0.0.1", "10.0.0.2"]);
        assert!(!web.publishes());
    }
}
