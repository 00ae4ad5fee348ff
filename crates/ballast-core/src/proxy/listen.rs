//! What a host's proxy process runs with: the HTTP and HTTPS ports, the
//! trusted proxy ranges and its own drain time. Certificates are not part
//! of it: they travel through the admin API and change without a new
//! process. One proxy serves every service on a host, so what a deploy
//! wants is merged with what the running proxy has ([`Listen::union`]):
//! deploying service B never takes away service A's ports.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ADMIN_SOCKET, STATE_DIR};

/// The settings of a host's proxy process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    pub http_ports: BTreeSet<u16>,
    pub https_ports: BTreeSet<u16>,
    /// CIDR ranges whose forwarding headers are believed.
    pub trusted_proxies: BTreeSet<String>,
    /// How long the process, once replaced, lets requests and WebSockets
    /// in flight finish before it exits.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            http_ports: BTreeSet::new(),
            https_ports: BTreeSet::new(),
            trusted_proxies: BTreeSet::new(),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Listen {
    /// Digest of the settings: a proxy labelled with another one is
    /// reconfigured (by takeover).
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(self).expect("settings serialize");
        Sha256::digest(text)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Everything both listen on and trust; the longer drain time.
    pub fn union(&self, other: &Listen) -> Listen {
        Listen {
            http_ports: self.http_ports.union(&other.http_ports).copied().collect(),
            https_ports: self
                .https_ports
                .union(&other.https_ports)
                .copied()
                .collect(),
            trusted_proxies: self
                .trusted_proxies
                .union(&other.trusted_proxies)
                .cloned()
                .collect(),
            drain_timeout: self.drain_timeout.max(other.drain_timeout),
        }
    }

    /// Whether `self` already covers all of `other` (ports and ranges) with
    /// at least its drain time.
    pub fn covers(&self, other: &Listen) -> bool {
        self.union(other) == *self
    }

    /// The `ballast proxy run` arguments.
    pub(super) fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--admin-socket".to_string(),
            ADMIN_SOCKET.into(),
            "--state-dir".into(),
            STATE_DIR.into(),
            "--drain-timeout".into(),
            humantime::format_duration(self.drain_timeout).to_string(),
        ];
        for port in &self.http_ports {
            args.extend(["--http".to_string(), format!("0.0.0.0:{port}")]);
        }
        for port in &self.https_ports {
            args.extend(["--https".to_string(), format!("0.0.0.0:{port}")]);
        }
        for range in &self.trusted_proxies {
            args.extend(["--trusted-proxy".to_string(), range.clone()]);
        }
        args
    }

    /// The settings as a container label, read back by [`Listen::from_label`].
    pub(super) fn label(&self) -> String {
        serde_json::to_string(self).expect("settings serialize")
    }

    pub(super) fn from_label(text: &str) -> Option<Listen> {
        serde_json::from_str(text).ok()
    }

    /// Human words for the ports: `HTTP on 80, HTTPS on 443`.
    pub fn describe(&self) -> String {
        let list = |ports: &BTreeSet<u16>| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut said = format!("HTTP on {}", list(&self.http_ports));
        if !self.https_ports.is_empty() {
            said.push_str(&format!(", HTTPS on {}", list(&self.https_ports)));
        }
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(http: &[u16], https: &[u16], trusted: &[&str], drain: u64) -> Listen {
        Listen {
            http_ports: http.iter().copied().collect(),
            https_ports: https.iter().copied().collect(),
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            drain_timeout: Duration::from_secs(drain),
        }
    }

    #[test]
    fn a_second_service_adds_its_ports_and_never_removes_the_firsts() {
        let a = listen(&[80], &[443], &["10.0.0.0/8"], 30);
        let b = listen(&[8080], &[], &[], 5);
        let both = a.union(&b);
        assert_eq!(both, listen(&[80, 8080], &[443], &["10.0.0.0/8"], 30));
        assert!(both.covers(&a) && both.covers(&b));
        assert!(!a.covers(&b));
        assert_ne!(a.digest(), both.digest());
    }

    #[test]
    fn args_name_every_port_and_range() {
        let l = listen(&[80, 8080], &[443], &["10.0.0.0/8"], 5);
        assert_eq!(
            l.args(),
            [
                "--admin-socket",
                ADMIN_SOCKET,
                "--state-dir",
                STATE_DIR,
                "--drain-timeout",
                "5s",
                "--http",
                "0.0.0.0:80",
                "--http",
                "0.0.0.0:8080",
                "--https",
                "0.0.0.0:443",
                "--trusted-proxy",
                "10.0.0.0/8"
            ]
        );
        assert_eq!(Listen::from_label(&l.label()), Some(l));
    }
}
