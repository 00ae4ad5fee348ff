//! The lab directory on the machine: the lab's private key, a known_hosts with
//! every host's real key, an ssh config, and the inventory that tests and
//! examples read. Clients use strict host-key checking against it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use ballast_core::ssh::{HostKeyPolicy, SshTarget};
use ballast_core::{Error, ErrorKind, Result};

use crate::engines::{Distro, ImageStore};
use crate::name::LabName;

/// The file names inside a lab directory, in one place.
#[derive(Debug, Clone)]
pub struct LabDir {
    pub path: PathBuf,
}

impl LabDir {
    /// The directory of lab `name` under `base`.
    pub fn new(base: &Path, name: &LabName) -> LabDir {
        LabDir {
            path: base.join(name.as_str()),
        }
    }

    pub fn key(&self) -> PathBuf {
        self.path.join("id_ed25519")
    }

    pub fn public_key(&self) -> PathBuf {
        self.path.join("id_ed25519.pub")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.path.join("known_hosts")
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.path.join("ssh_config")
    }

    pub fn inventory(&self) -> PathBuf {
        self.path.join("inventory.json")
    }
}

/// Where labs live unless told otherwise: `$BALLAST_LAB_HOME`, else
/// `$XDG_STATE_HOME/ballast/labs`, else `~/.local/state/ballast/labs`.
pub fn default_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("BALLAST_LAB_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("ballast/labs");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/state/ballast/labs")
}

/// What a lab is made of; written as `inventory.json` in the lab directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub name: String,
    /// Docker network the hosts share.
    pub network: String,
    pub subnet: String,
    /// SSH user on every host.
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub ssh_config: PathBuf,
    pub hosts: Vec<LabHost>,
}

/// One lab host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    /// Host name, also its alias in the lab's ssh config.
    pub name: String,
    pub ip: String,
    /// The container that is this host, on the local engine.
    pub container: String,
    /// The host's SSH public key line (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    /// The Debian release the host runs, which fixes its Docker version
    /// (inventories older than this field are bookworm's).
    #[serde(default)]
    pub distro: Distro,
    /// Where the host's engine keeps images.
    #[serde(default)]
    pub store: ImageStore,
}

impl Inventory {
    /// Reads the inventory of the lab in `dir`.
    pub fn load(dir: &Path) -> Result<Inventory> {
        let path = dir.join("inventory.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::Failed
            };
            Error::new(
                kind,
                "read the lab inventory",
                format_args!("{}: {e}", path.display()),
            )
            .hint("start the lab with `ballast lab up`, or give the right --dir")
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::input(
                "read the lab inventory",
                format_args!("{}: {e}", path.display()),
            )
            .hint("the file is damaged: run `ballast lab down` and `ballast lab up` again")
        })
    }

    pub fn host(&self, name: &str) -> Option<&LabHost> {
        self.hosts.iter().find(|h| h.name == name || h.ip == name)
    }

    /// How to reach `host` over SSH with the lab's key and strict host-key
    /// checking against the lab's known_hosts.
    pub fn ssh_target(&self, host: &LabHost) -> SshTarget {
        let mut t = SshTarget::new(host.ip.clone());
        t.user = Some(self.user.clone());
        t.identity = Some(self.key.clone());
        t.known_hosts = Some(self.known_hosts.clone());
        t.host_keys = HostKeyPolicy::Strict;
        t.connect_timeout = Duration::from_secs(5);
        t
    }

    /// The known_hosts text: one line per host, under its name and address.
    pub fn known_hosts_text(&self) -> String {
        self.hosts
            .iter()
            .map(|h| format!("{},{} {}\n", h.name, h.ip, h.host_key.trim()))
            .collect()
    }

    /// An ssh config so `ssh -F ssh_config NAME-1` works as users expect.
    pub fn ssh_config_text(&self) -> String {
        let mut text = format!(
            "# Written by `ballast lab up` for lab {}.\n# Use: ssh -F {} {}\n",
            self.name,
            quote(&self.ssh_config),
            self.hosts
                .first()
                .map(|h| h.name.as_str())
                .unwrap_or("HOST")
        );
        for h in &self.hosts {
            text.push_str(&format!(
                "\nHost {name} {ip}\n  HostName {ip}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n",
                name = h.name,
                ip = h.ip,
                user = self.user,
                key = quote(&self.key),
                kh = quote(&self.known_hosts),
            ));
        }
        text
    }

    /// Writes known_hosts, ssh_config and inventory.json into `dir`.
    pub fn write(&self, dir: &LabDir) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("inventory serializes");
        write_file(&dir.known_hosts(), &self.known_hosts_text())?;
        write_file(&dir.ssh_config(), &self.ssh_config_text())?;
        write_file(&dir.inventory(), &(json + "\n"))
    }
}

fn quote(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| {
        Error::failed(
            "write the lab directory",
            format_args!("{}: {e}", path.display()),
        )
    })
}

/// Makes the lab's key pair with ssh-keygen (no passphrase: it only opens
/// throwaway lab hosts) and returns the public key line.
pub async fn make_key(dir: &LabDir, name: &LabName) -> Result<String> {
    let step = "make the lab's SSH key";
    let out = tokio::process::Command::new("ssh-keygen")
        .arg("-q")
        .args(["-t", "ed25519", "-N", ""])
        .arg("-C")
        .arg(format!("ballast-lab-{name}"))
        .arg("-f")
        .arg(dir.key())
        .output()
        .await
        .map_err(|e| {
            Error::failed(step, format_args!("cannot run ssh-keygen: {e}"))
                .hint("install OpenSSH's client (apt-get install openssh-client)")
        })?;
    if !out.status.success() {
        return Err(Error::failed(
            step,
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    std::fs::read_to_string(dir.public_key())
        .map(|k| k.trim().to_string())
        .map_err(|e| Error::failed(step, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Inventory {
        Inventory {
            name: "dev".into(),
            network: "ballast-lab-dev".into(),
            subnet: "10.213.0.0/24".into(),
            user: "root".into(),
            key: "/labs/dev/id_ed25519".into(),
            known_hosts: "/labs/dev/known_hosts".into(),
            ssh_config: "/labs/dev/ssh_config".into(),
            hosts: vec![LabHost {
                name: "dev-1".into(),
                ip: "10.213.0.11".into(),
                container: "ballast-lab-dev-1".into(),
                host_key: "ssh-ed25519 AAAAC3 root@dev-1\n".into(),
                distro: Distro::Sid,
                store: ImageStore::Containerd,
            }],
        }
    }

    #[test]
    fn inventories_record_each_hosts_engine_and_older_ones_read_as_bookworm() {
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(
            text.contains(r#""distro":"sid","store":"containerd""#),
            "{text}"
        );
        let old = text.replace(r#","distro":"sid","store":"containerd""#, "");
        let read: Inventory = serde_json::from_str(&old).unwrap();
        assert_eq!(read.hosts[0].distro, Distro::Bookworm);
        assert_eq!(read.hosts[0].store, ImageStore::Classic);
    }

    #[test]
    fn known_hosts_lists_name_and_address() {
        assert_eq!(
            sample().known_hosts_text(),
            "dev-1,10.213.0.11 ssh-ed25519 AAAAC3 root@dev-1\n"
        );
    }

    #[test]
    fn ssh_config_is_strict_and_uses_the_lab_key() {
        let text = sample().ssh_config_text();
        assert!(text.contains("Host dev-1 10.213.0.11\n  HostName 10.213.0.11\n"));
        assert!(text.contains("StrictHostKeyChecking yes"));
        assert!(text.contains("IdentityFile \"/labs/dev/id_ed25519\""));
        assert!(text.contains("UserKnownHostsFile \"/labs/dev/known_hosts\""));
    }

    #[test]
    fn inventory_round_trips_and_targets_are_strict() {
        let dir = tempfile::tempdir().unwrap();
        let lab = LabDir {
            path: dir.path().to_path_buf(),
        };
        let inv = sample();
        inv.write(&lab).unwrap();
        let back = Inventory::load(dir.path()).unwrap();
        assert_eq!(back, inv);
        let t = back.ssh_target(back.host("dev-1").unwrap());
        assert_eq!(t.destination, "10.213.0.11");
        assert_eq!(t.host_keys, HostKeyPolicy::Strict);
        assert_eq!(t.user.as_deref(), Some("root"));
    }

    #[test]
    fn missing_inventory_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = Inventory::load(dir.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.hint.unwrap().contains("lab up"));
    }
}
