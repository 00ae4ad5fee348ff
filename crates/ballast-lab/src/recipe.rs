//! Images built offline from a recipe: a Debian root filesystem made with
//! debootstrap from Debian's package registry, plus the recipe's own files,
//! imported into the local engine with the recipe's image settings under a
//! tag derived from the recipe's hash, so it is built once and found again by
//! every later run. The lab host image ([`HOST`]) is one recipe; the
//! PostgreSQL accessory image ([`crate::postgres`]) is another.

use sha2::{Digest, Sha256};

use ballast_core::{Engine, Result};

use crate::engines::Distro;

/// How one image is made: everything that goes into its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    /// Repository part of the image's tag; the version part is the hash.
    pub repo: &'static str,
    /// Debian suite debootstrap installs (bookworm, trixie...).
    pub suite: &'static str,
    /// debootstrap variant; minbase keeps images small.
    pub variant: &'static str,
    /// Packages installed beyond the variant.
    pub packages: &'static [&'static str],
    /// Files written into the root filesystem after the packages.
    pub files: &'static [RecipeFile],
    /// Entries removed after the packages: in directory `.0` (relative to
    /// the root), every file or tree whose name starts with `.1`. Package
    /// caches are always removed.
    pub prune: &'static [(&'static str, &'static str)],
    /// What `docker import --change` sets on the image.
    pub config: ImageConfig,
    /// Bump when the recipe changes in a way its data above misses.
    pub revision: u32,
}

/// One file a recipe adds to its image. Its body is part of the recipe,
/// never built from configuration values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipeFile {
    /// Absolute path inside the image.
    pub path: &'static str,
    pub body: &'static str,
    pub mode: u32,
}

/// The image settings a Dockerfile would give with ENTRYPOINT, CMD, ENV,
/// EXPOSE, USER and STOPSIGNAL; empty fields set nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: &'static [&'static str],
    pub cmd: &'static [&'static str],
    /// Environment of every container, as (name, value).
    pub env: &'static [(&'static str, &'static str)],
    /// TCP ports the image documents as served.
    pub expose: &'static [u16],
    /// User the containers run as (default root).
    pub user: Option<&'static str>,
    /// Signal `docker stop` sends (default SIGTERM).
    pub stop_signal: Option<&'static str>,
}

/// Repository part of the host image's tag.
pub const IMAGE_REPO: &str = "ballast-lab-host";
/// Where the init script lives in the image; it is the containers' command.
pub const INIT_PATH: &str = "/usr/local/sbin/ballast-lab-init";
/// PID 1 is docker-init (`--init`); this script starts dockerd in the
/// background and runs sshd in the foreground. Host keys are made on first
/// boot so each host has its own; only ed25519 is offered, so known_hosts
/// needs one line per host.
const INIT_SCRIPT: &str = r#"#!/bin/sh
set -e
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
  ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
fi
mkdir -p /run/sshd
dockerd >>/var/log/dockerd.log 2>&1 &
exec /usr/sbin/sshd -D -e
"#;
/// sshd settings: keys only, many parallel sessions (benchmarks fan out).
const SSHD_CONFIG: &str = "\
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
MaxStartups 200:30:400
MaxSessions 200
AllowStreamLocalForwarding yes
";

/// What a lab host is made of beyond minbase.
const HOST_PACKAGES: &[&str] = &[
    "openssh-server",
    "docker.io",
    "iproute2",
    "iptables",
    "ca-certificates",
    "procps",
    "python3",
    "python3-docker",
];
/// From trixie on, `docker.io` ships the daemon alone and only recommends
/// the client (`docker-cli`), which debootstrap does not install.
const SPLIT_CLIENT_PACKAGES: &[&str] = &[
    "openssh-server",
    "docker.io",
    "docker-cli",
    "iproute2",
    "iptables",
    "ca-certificates",
    "procps",
    "python3",
    "python3-docker",
];

/// The lab host of bookworm (Docker 20.10), the lab's default.
pub const HOST: Recipe = host(Distro::Bookworm);

/// The lab host: Debian with sshd and dockerd. python3 and python3-docker
/// are for Ansible, a peer in the benchmarks. Host keys made by the package
/// scripts are dropped: each host makes its own. Only the suite differs
/// between releases, so each has its own tag and cached image.
pub const fn host(distro: Distro) -> Recipe {
    Recipe {
        repo: IMAGE_REPO,
        suite: distro.suite(),
        variant: "minbase",
        packages: match distro {
            Distro::Bookworm => HOST_PACKAGES,
            Distro::Trixie | Distro::Sid => SPLIT_CLIENT_PACKAGES,
        },
        files: &[
            RecipeFile {
                path: INIT_PATH,
                body: INIT_SCRIPT,
                mode: 0o755,
            },
            RecipeFile {
                path: "/etc/ssh/sshd_config.d/ballast-lab.conf",
                body: SSHD_CONFIG,
                mode: 0o644,
            },
        ],
        prune: &[("etc/ssh", "ssh_host_")],
        config: ImageConfig {
            entrypoint: &[],
            cmd: &[INIT_PATH],
            env: &[],
            expose: &[],
            user: None,
            stop_signal: None,
        },
        revision: 1,
    }
}

/// The instructions `docker import --change` accepts (Docker 20.10); the
/// others (STOPSIGNAL) are set by a one-line build on top of the import.
const IMPORT_ACCEPTS: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Progress of preparing an image.
#[derive(Debug, Clone, PartialEq)]
pub enum RecipeEvent {
    /// The image was already there.
    Cached { tag: String },
    /// Building it: a phase began (debootstrap, import...).
    Phase(String),
    /// Built and imported in this many seconds.
    Built { tag: String, seconds: f64 },
}

/// The tag of the (bookworm) host image for the current recipe.
pub fn image_tag() -> String {
    HOST.tag()
}

/// Makes sure the host image of `distro` exists on `engine`, building it
/// if needed.
pub async fn ensure(
    engine: &Engine,
    distro: Distro,
    on_event: &mut (dyn FnMut(RecipeEvent) + Send),
) -> Result<String> {
    host(distro).ensure(engine, on_event).await
}

impl Recipe {
    /// `repo:hash`, where the hash covers everything the image is made of.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{}\n{}\n{}\n",
            self.revision,
            self.suite,
            self.variant,
            self.packages.join(",")
        ));
        for f in self.files {
            h.update(format!("{}\n{:o}\n{}\n", f.path, f.mode, f.body.len()));
            h.update(f.body);
        }
        for (dir, prefix) in self.prune {
            h.update(format!("prune {dir} {prefix}\n"));
        }
        for change in self.config.changes() {
            h.update(format!("{change}\n"));
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}:{hex}", self.repo)
    }
}

impl ImageConfig {
    /// The settings as Dockerfile instructions, the form `docker import
    /// --change` takes; lists in exec (JSON) form, so no shell is involved.
    pub fn changes(&self) -> Vec<String> {
        let json = |v: &[&str]| serde_json::to_string(v).expect("strings serialize");
        let mut out = Vec::new();
        if !self.entrypoint.is_empty() {
            out.push(format!("ENTRYPOINT {}", json(self.entrypoint)));
        }
        if !self.cmd.is_empty() {
            out.push(format!("CMD {}", json(self.cmd)));
        }
        for (name, value) in self.env {
            let quoted = serde_json::to_string(value).expect("strings serialize");
            out.push(format!("ENV {name}={quoted}"));
        }
        for port in self.expose {
            out.push(format!("EXPOSE {port}/tcp"));
        }
        if let Some(user) = self.user {
            out.push(format!("USER {user}"));
        }
        if let Some(signal) = self.stop_signal {
            out.push(format!("STOPSIGNAL {signal}"));
        }
        out
    }

    /// [`ImageConfig::changes`] split into those an import sets and those
    /// only a build does.
    pub(crate) fn split_changes(&self) -> (Vec<String>, Vec<String>) {
        self.changes().into_iter().partition(|change| {
            let keyword = change.split_whitespace().next().unwrap_or("");
            IMPORT_ACCEPTS.contains(&keyword)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_stable_and_looks_like_a_hash() {
        let tag = image_tag();
        assert_eq!(tag, image_tag());
        let (repo, version) = tag.split_once(':').unwrap();
        assert_eq!(repo, IMAGE_REPO);
        assert_eq!(version.len(), 16);
        assert!(version.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn tag_changes_with_every_part_of_the_recipe() {
        let base = HOST.tag();
        let changed = [
            Recipe {
                packages: &["openssh-server"],
                ..HOST
            },
            Recipe {
                suite: "trixie",
                ..HOST
            },
            Recipe { prune: &[], ..HOST },
            Recipe {
                files: &[RecipeFile {
                    path: INIT_PATH,
                    body: INIT_SCRIPT,
                    mode: 0o700,
                }],
                ..HOST
            },
            Recipe {
                config: ImageConfig {
                    stop_signal: Some("SIGINT"),
                    ..HOST.config
                },
                ..HOST
            },
            Recipe {
                revision: 2,
                ..HOST
            },
        ];
        for recipe in changed {
            assert_ne!(recipe.tag(), base, "{recipe:?}");
        }
    }

    #[test]
    fn each_distribution_has_its_own_host_image() {
        let tags: std::collections::BTreeSet<String> =
            Distro::ALL.iter().map(|d| host(*d).tag()).collect();
        assert_eq!(tags.len(), Distro::ALL.len());
        assert_eq!(host(Distro::Bookworm), HOST);
        assert_eq!(host(Distro::Sid).suite, "sid");
    }

    #[test]
    fn config_becomes_import_changes_in_exec_form() {
        let config = ImageConfig {
            entrypoint: &["/entry", "a b"],
            cmd: &["-c", "x=\"y\""],
            env: &[("PATH", "/bin:/usr/bin"), ("LANG", "C.UTF-8")],
            expose: &[5432],
            user: Some("postgres"),
            stop_signal: Some("SIGINT"),
        };
        assert_eq!(
            config.changes(),
            [
                r#"ENTRYPOINT ["/entry","a b"]"#,
                r#"CMD ["-c","x=\"y\""]"#,
                r#"ENV PATH="/bin:/usr/bin""#,
                r#"ENV LANG="C.UTF-8""#,
                "EXPOSE 5432/tcp",
                "USER postgres",
                "STOPSIGNAL SIGINT",
            ]
        );
        assert_eq!(HOST.config.changes(), [format!(r#"CMD ["{INIT_PATH}"]"#)]);
    }

    #[test]
    fn what_an_import_cannot_set_is_left_for_a_build() {
        let config = ImageConfig {
            stop_signal: Some("SIGINT"),
            ..HOST.config
        };
        let (imported, built) = config.split_changes();
        assert_eq!(imported, [format!(r#"CMD ["{INIT_PATH}"]"#)]);
        assert_eq!(built, ["STOPSIGNAL SIGINT"]);
        assert!(HOST.config.split_changes().1.is_empty());
    }
}
