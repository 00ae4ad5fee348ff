//! What doctor knows about one host: plain, serializable data gathered over
//! the host's connection (see `gather`). Rules read these and nothing else,
//! so every rule is tested with facts written by hand. A fact that could not
//! be gathered is `None` (or empty): rules stay silent about what is unknown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything gathered about one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Facts {
    /// The host as named in the config.
    pub host: String,
    /// Why the host could not be reached over SSH; nothing else is known then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Kernel release (`uname -r`), e.g. `3.10.0-1160.el7.x86_64`.
    pub kernel: Option<String>,
    /// The distribution, from `/etc/os-release` (or `/etc/redhat-release` on
    /// hosts older than os-release).
    pub os: Option<Os>,
    /// Name of PID 1 (`/proc/1/comm`): `systemd` changes cgroup driver advice.
    pub init: Option<String>,
    /// What the engine says about itself (`docker info`); `None` when it did
    /// not answer.
    pub engine: Option<EngineInfo>,
    /// Why the engine did not answer although SSH did.
    pub engine_error: Option<String>,
    /// The last lines of dockerd's own log, read only when the engine is down.
    pub daemon_log: Option<String>,
    /// `/etc/docker/daemon.json`; `None` when the file does not exist.
    pub daemon_json: Option<DaemonJson>,
    /// Why `/etc/docker/daemon.json` could not be understood.
    pub daemon_json_error: Option<String>,
    /// dockerd's command line (`ps -o args= -C dockerd`): flags there count
    /// as much as daemon.json.
    pub daemon_args: Option<String>,
    /// Whether a dockerd process runs; `None` when `ps` could not tell.
    pub daemon_running: Option<bool>,
    /// Space, inodes and mount of the Docker root directory.
    pub root: Option<RootFacts>,
    /// Kernel build options, where the host exposes them.
    pub kernel_config: Option<KernelConfig>,
    /// The host's clock against this machine's.
    pub clock: Option<Clock>,
    /// The service's image as the host has it, for config rules that depend
    /// on what the image declares.
    pub image: Option<ImageFacts>,
    /// Facts that could not be gathered, and why (for `--facts` readers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

/// A Linux distribution release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Os {
    /// `ID`: `debian`, `ubuntu`, `centos`, `rhel`...
    pub id: String,
    /// `VERSION_ID`: `12`, `22.04`, `7`, `9.4`...
    pub version_id: String,
    /// `ID_LIKE`, split on spaces: `rhel fedora` for CentOS.
    pub id_like: Vec<String>,
    /// `PRETTY_NAME`, for messages.
    pub pretty_name: String,
}

/// The part of `docker info` doctor reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineInfo {
    pub server_version: Option<String>,
    /// Storage driver: `overlay2`, `devicemapper`, `vfs`...
    pub driver: Option<String>,
    /// The driver's own report, as `[key, value]` pairs in the engine's
    /// words ("Backing Filesystem", "Supports d_type", "Data loop file"...).
    pub driver_status: Vec<(String, String)>,
    /// Where the engine keeps images: its graph driver's own store, or
    /// containerd's (fresh Docker 29 installs, or the
    /// `containerd-snapshotter` feature). Image delivery depends on it.
    pub image_store: Option<ImageStore>,
    /// `1` or `2`; absent from engines older than API 1.40.
    pub cgroup_version: Option<String>,
    /// `cgroupfs` or `systemd`.
    pub cgroup_driver: Option<String>,
    /// Default log driver of containers started without one.
    pub logging_driver: Option<String>,
    pub live_restore: Option<bool>,
    /// `name=seccomp,profile=default`, `name=apparmor`...
    pub security_options: Vec<String>,
    /// The engine's own warnings.
    pub warnings: Vec<String>,
    /// `DockerRootDir`.
    pub root_dir: Option<String>,
    pub memory_limit: Option<bool>,
    pub swap_limit: Option<bool>,
    pub pids_limit: Option<bool>,
    pub ipv4_forwarding: Option<bool>,
    pub experimental: Option<bool>,
    /// The init binary containers get with `--init` (`docker-init`).
    pub init_binary: Option<String>,
    /// The engine's view of the kernel and distribution, for messages.
    pub kernel_version: Option<String>,
    pub operating_system: Option<String>,
}

impl EngineInfo {
    /// A value of the driver's status, by its key.
    pub fn status(&self, key: &str) -> Option<&str> {
        self.driver_status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
    }

    /// "Backing Filesystem": `extfs`, `xfs`, `btrfs`...
    pub fn backing_fs(&self) -> Option<&str> {
        self.status("Backing Filesystem")
    }

    /// "Supports d_type", reported by the overlay drivers.
    pub fn supports_d_type(&self) -> Option<bool> {
        self.status("Supports d_type").map(|v| v == "true")
    }

    /// Whether the engine keeps images in containerd; unknown counts as
    /// no, as on every engine that does not say.
    pub fn containerd_store(&self) -> bool {
        self.image_store == Some(ImageStore::Containerd)
    }

    pub fn driver_is(&self, name: &str) -> bool {
        self.driver.as_deref() == Some(name)
    }

    /// Whether a security option of this name is active (`seccomp`,
    /// `apparmor`, `selinux`...), and its options.
    pub fn security_option(&self, name: &str) -> Option<&str> {
        self.security_options.iter().find_map(|o| {
            // Engines since API 1.26 say `name=seccomp,profile=default`;
            // older ones just `seccomp`.
            if o == name {
                return Some("");
            }
            let rest = o.strip_prefix("name=")?;
            let (n, opts) = rest.split_once(',').unwrap_or((rest, ""));
            (n == name).then_some(opts)
        })
    }
}

/// Where an engine keeps its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStore {
    /// The storage driver's own layer store (overlay2, vfs...): every
    /// engine up to 28 unless told otherwise.
    Classic,
    /// containerd's content store and snapshotters: `docker info` names
    /// the snapshotter as the driver (`overlayfs`) and says so in
    /// DriverStatus (`driver-type: io.containerd.snapshotter.v1`).
    Containerd,
}

impl ImageStore {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStore::Classic => "classic",
            ImageStore::Containerd => "containerd",
        }
    }
}

/// What `/etc/docker/daemon.json` sets, of what rules read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonJson {
    #[serde(rename = "log-driver")]
    pub log_driver: Option<String>,
    /// `log-opts`, values as text.
    #[serde(rename = "log-opts")]
    pub log_opts: BTreeMap<String, String>,
    /// `hosts`: where the API listens besides (or instead of) the socket.
    pub hosts: Vec<String>,
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    #[serde(rename = "live-restore")]
    pub live_restore: Option<bool>,
    /// `init`: every container gets an init process unless told otherwise.
    pub init: Option<bool>,
    #[serde(rename = "storage-driver")]
    pub storage_driver: Option<String>,
    /// `data-root` (or the older `graph`).
    #[serde(rename = "data-root")]
    pub data_root: Option<String>,
    pub experimental: Option<bool>,
    #[serde(rename = "seccomp-profile")]
    pub seccomp_profile: Option<String>,
}

/// The Docker root directory: how full, and on which mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RootFacts {
    /// The directory, e.g. `/var/lib/docker`.
    pub dir: String,
    pub bytes_total: Option<u64>,
    /// Available to unprivileged writers (`df` "Available").
    pub bytes_free: Option<u64>,
    /// Zero on filesystems without a fixed inode table (btrfs).
    pub inodes_total: Option<u64>,
    pub inodes_free: Option<u64>,
    /// The mount that holds the directory.
    pub mount: Option<Mount>,
}

impl RootFacts {
    /// Whether the Docker root is a mount point of its own.
    pub fn separate_mount(&self) -> Option<bool> {
        let m = self.mount.as_ref()?;
        Some(m.point.trim_end_matches('/') == self.dir.trim_end_matches('/'))
    }
}

/// One line of `/proc/self/mountinfo`, the parts doctor needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

/// Kernel build options (`/boot/config-RELEASE` or `/proc/config.gz`), only
/// those listed in `knowledge::KERNEL_FLAGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// The file it was read from.
    pub source: String,
    /// `CONFIG_X` → `y`, `m` or `n` (not set or absent).
    pub flags: BTreeMap<String, String>,
}

impl KernelConfig {
    /// Whether `flag` (without `CONFIG_`) is built in or a module; `None`
    /// when doctor did not look for it.
    pub fn enabled(&self, flag: &str) -> Option<bool> {
        self.flags.get(flag).map(|v| v == "y" || v == "m")
    }
}

/// The host's clock, measured from this machine with one round trip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Clock {
    /// Host time minus this machine's, at the middle of the round trip.
    pub offset_ms: i64,
    /// Half the round trip: the offset is known to within this.
    pub uncertainty_ms: i64,
}

/// The service's image on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFacts {
    /// The reference it was found under, e.g. `postgres:16.4`.
    pub reference: String,
    pub id: String,
    /// Paths the image declares with `VOLUME`: where it keeps data.
    pub volumes: Vec<String>,
    /// Whether the image declares a `HEALTHCHECK`.
    pub healthcheck: bool,
}

/// A kernel release as numbers: `3.10.0-514.el7` is (3, 10, 0) build 514.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The distribution's build number after `-`, if it starts with digits.
    pub build: Option<u32>,
}

impl KernelVersion {
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let (version, rest) = match release.split_once('-') {
            Some((v, r)) => (v, Some(r)),
            None => (release, None),
        };
        let mut nums = version.split('.').map(leading_number);
        let major = nums.next()??;
        let minor = nums.next().flatten().unwrap_or(0);
        let patch = nums.next().flatten().unwrap_or(0);
        let build = rest.and_then(leading_number);
        Some(KernelVersion {
            major,
            minor,
            patch,
            build,
        })
    }

    /// At least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The major number of an engine version: `20.10.24+dfsg1` → 20, `1.13.1` → 1.
pub fn engine_major(version: &str) -> Option<u32> {
    leading_number(version.trim_start_matches('v'))
}

impl Facts {
    /// Just the host's name; everything else unknown.
    pub fn new(host: impl Into<String>) -> Facts {
        Facts {
            host: host.into(),
            ..Facts::default()
        }
    }

    pub fn kernel_version(&self) -> Option<KernelVersion> {
        self.kernel.as_deref().and_then(KernelVersion::parse)
    }

    /// Red Hat Enterprise Linux and its rebuilds (CentOS, Rocky, Alma,
    /// Oracle Linux...), whose 3.10 kernels carry backports. Not Fedora.
    pub fn rhel_family(&self) -> bool {
        let Some(os) = &self.os else { return false };
        crate::doctor::knowledge::RHEL_REBUILDS.contains(&os.id.as_str())
            || os.id_like.iter().any(|l| l == "rhel" || l == "centos")
    }

    /// The distribution's major version: `9.4` → 9, `22.04` → 22.
    pub fn os_major(&self) -> Option<u32> {
        self.os.as_ref().and_then(|o| leading_number(&o.version_id))
    }

    /// The driver dockerd uses, or failing that the one it is told to use.
    pub fn storage_driver(&self) -> Option<&str> {
        self.engine
            .as_ref()
            .and_then(|e| e.driver.as_deref())
            .or_else(|| self.daemon_json.as_ref()?.storage_driver.as_deref())
    }

    /// A short description for report headers: distribution, kernel,
    /// engine and storage.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(os) = &self.os {
            parts.push(if os.pretty_name.is_empty() {
                format!("{} {}", os.id, os.version_id)
            } else {
                os.pretty_name.clone()
            });
        }
        if let Some(k) = &self.kernel {
            parts.push(format!("kernel {k}"));
        }
        match &self.engine {
            Some(e) => {
                if let Some(v) = &e.server_version {
                    parts.push(format!("Docker {v}"));
                }
                if let Some(d) = &e.driver {
                    parts.push(match e.backing_fs() {
                        Some(fs) => format!("{d} on {fs}"),
                        None => d.clone(),
                    });
                }
                if e.containerd_store() {
                    parts.push("containerd image store".into());
                }
            }
            None if self.engine_error.is_some() => parts.push("engine not answering".into()),
            None => {}
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        let k = KernelVersion::parse("3.10.0-514.el7.x86_64").unwrap();
        assert_eq!((k.major, k.minor, k.patch, k.build), (3, 10, 0, Some(514)));
        let k = KernelVersion::parse("6.1.0-28-amd64").unwrap();
        assert_eq!((k.major, k.minor, k.build), (6, 1, Some(28)));
        let k = KernelVersion::parse("4.4.0-210-generic").unwrap();
        assert!(k.at_least(4, 0) && !k.at_least(4, 15));
        let k = KernelVersion::parse("6.18").unwrap();
        assert_eq!((k.major, k.minor, k.patch, k.build), (6, 18, 0, None));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn engine_majors_parse() {
        assert_eq!(engine_major("20.10.24+dfsg1"), Some(20));
        assert_eq!(engine_major("1.13.1"), Some(1));
        assert_eq!(engine_major("29.1.3"), Some(29));
        assert_eq!(engine_major("17.03.2-ce"), Some(17));
        assert_eq!(engine_major(""), None);
    }

    #[test]
    fn security_options_old_and_new() {
        let new = EngineInfo {
            security_options: vec![
                "name=seccomp,profile=default".into(),
                "name=apparmor".into(),
            ],
            ..Default::default()
        };
        assert_eq!(new.security_option("seccomp"), Some("profile=default"));
        assert_eq!(new.security_option("apparmor"), Some(""));
        assert_eq!(new.security_option("selinux"), None);
        let old = EngineInfo {
            security_options: vec!["seccomp".into()],
            ..Default::default()
        };
        assert_eq!(old.security_option("seccomp"), Some(""));
    }

    #[test]
    fn a_root_on_its_own_mount() {
        let mut root = RootFacts {
            dir: "/var/lib/docker".into(),
            mount: Some(Mount {
                point: "/var/lib/docker".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(root.separate_mount(), Some(true));
        root.mount.as_mut().unwrap().point = "/".into();
        assert_eq!(root.separate_mount(), Some(false));
        root.mount = None;
        assert_eq!(root.separate_mount(), None);
    }
}
