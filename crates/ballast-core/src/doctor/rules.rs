//! The rules of doctor, as a table (DESIGN principle 6): each row is an id,
//! a condition on gathered facts (or on the service's config), a severity,
//! the reason in one line, the fix, and where the knowledge comes from.
//! Adding a rule is adding a row here and its fixtures in `tests`.

use super::facts::Facts;
use super::{daemon, service, storage, system, RoleView, Severity};

/// What a rule looks at. Each returns the finding's detail when it fires.
#[derive(Clone, Copy)]
pub enum Check {
    /// One host's facts.
    Host(fn(&Facts) -> Option<String>),
    /// One host's facts beside the other hosts'.
    Fleet(fn(&Facts, &[&Facts]) -> Option<String>),
    /// One role of the config, as it would run on one host.
    Role(fn(&RoleView) -> Option<String>),
}

impl Check {
    /// What the rule is about, for the generated docs.
    pub fn subject(&self) -> &'static str {
        match self {
            Check::Host(_) => "host",
            Check::Fleet(_) => "hosts",
            Check::Role(_) => "config",
        }
    }
}

/// One row of the table.
pub struct Rule {
    /// Stable name, used in output, JSON and the docs.
    pub id: &'static str,
    pub severity: Severity,
    pub check: Check,
    /// What is wrong, in one line.
    pub reason: &'static str,
    /// What to do about it.
    pub fix: &'static str,
    /// Where this knowledge comes from: a Docker docs page, a moby issue,
    /// or a CIS Docker Benchmark item.
    pub source: &'static str,
}

use Check::{Fleet, Host, Role};
use Severity::{Block, Info, Warn};

/// Every rule, most severe first within each subject.
pub static RULES: &[Rule] = &[
    Rule {
        id: "engine-down",
        severity: Block,
        check: Host(system::engine_down),
        reason: "SSH works but the Docker engine does not answer",
        fix: "read the daemon's log (`journalctl -u docker`, /var/log/dockerd.log), fix the cause it names, then start dockerd",
        source: "docs.docker.com/engine/daemon/troubleshoot/",
    },
    Rule {
        id: "storage-legacy",
        severity: Block,
        check: Host(storage::legacy_driver),
        reason: "a legacy storage driver (aufs, devicemapper, overlay) is known to corrupt or lose data and is removed from current engines",
        fix: "move to overlay2 on xfs (ftype=1) or ext4: export what you need, set \"storage-driver\": \"overlay2\" in daemon.json, restart dockerd, re-pull or re-deploy",
        source: "docs.docker.com/engine/storage/drivers/select-storage-driver/",
    },
    Rule {
        id: "devicemapper-loop-lvm",
        severity: Block,
        check: Host(storage::devicemapper_loop),
        reason: "devicemapper in loop-lvm mode is slow and corrupts data when its sparse file fills the disk",
        fix: "move to overlay2; if devicemapper must stay, give it a direct-lvm thin pool (`dm.thinpooldev`)",
        source: "docs.docker.com/engine/storage/drivers/device-mapper-driver/; moby#18564",
    },
    Rule {
        id: "thin-pool-full",
        severity: Block,
        check: Host(storage::thin_pool_full),
        reason: "the devicemapper thin pool is nearly full: new containers fail and filesystems inside containers can be corrupted",
        fix: "free space (`docker system prune`) or extend the thin pool with lvextend, then move to overlay2",
        source: "docs.docker.com/engine/storage/drivers/device-mapper-driver/#manage-devicemapper",
    },
    Rule {
        id: "overlay-without-d-type",
        severity: Block,
        check: Host(storage::overlay_without_d_type),
        reason: "overlay on a filesystem without d_type shows deleted files again and fails with \"invalid argument\"",
        fix: "put /var/lib/docker on a filesystem with d_type: xfs made with `mkfs.xfs -n ftype=1`, or ext4 with the filetype feature",
        source: "moby#10294; moby#22937; moby#27433",
    },
    Rule {
        id: "overlay-old-kernel",
        severity: Block,
        check: Host(storage::overlay_old_kernel),
        reason: "overlay2 needs kernel 4.0 or later (RHEL-family 3.10.0-514 and later have it backported)",
        fix: "upgrade the kernel (or the RHEL-family release to 7.3+) before running overlay2",
        source: "docs.docker.com/engine/storage/drivers/overlayfs-driver/#prerequisites",
    },
    Rule {
        id: "kernel-too-old",
        severity: Block,
        check: Host(system::kernel_too_old),
        reason: "kernels older than 3.10 lack the namespaces and cgroups Docker needs and crash under it",
        fix: "upgrade the distribution and kernel to a release Docker supports",
        source: "docs.docker.com/engine/install/ (Docker has required 3.10+ since 1.8); moby contrib/check-config.sh",
    },
    Rule {
        id: "debian8-aufs",
        severity: Block,
        check: Host(storage::debian8_aufs),
        reason: "aufs on Debian 8's 3.16 kernel panics and hangs under container load",
        fix: "upgrade to a supported Debian with overlay2; until then, a newer kernel from jessie-backports and overlay2",
        source: "moby#21081; moby#28870; moby#18180",
    },
    Rule {
        id: "btrfs-on-rhel",
        severity: Block,
        check: Host(storage::btrfs_on_rhel),
        reason: "btrfs is deprecated on RHEL 7 and removed from RHEL 8 and later: no fixes, no support",
        fix: "move /var/lib/docker to xfs (ftype=1) and use overlay2",
        source: "docs.docker.com/engine/storage/drivers/btrfs-driver/; RHEL 7.4 release notes (btrfs deprecated)",
    },
    Rule {
        id: "cgroup2-old-kernel",
        severity: Block,
        check: Host(system::cgroup2_old_kernel),
        reason: "cgroup v2 needs kernel 4.15 or later (5.2+ recommended); older kernels lack controllers Docker uses",
        fix: "upgrade the kernel, or boot with cgroup v1 (`systemd.unified_cgroup_hierarchy=0`) until you can",
        source: "docs.docker.com/engine/containers/runmetrics/#running-docker-on-cgroup-v2",
    },
    Rule {
        id: "docker-root-full",
        severity: Block,
        check: Host(storage::root_full),
        reason: "the Docker root has less than 5% of its space or inodes free: pulls, builds and writes in containers fail",
        fix: "free space now (`docker system prune`, remove old images), then give /var/lib/docker more room",
        source: "docs.docker.com/engine/manage-resources/pruning/",
    },
    Rule {
        id: "api-tcp-without-tls",
        severity: Block,
        check: Host(daemon::api_tcp_without_tls),
        reason: "the Docker API on TCP without TLS client verification gives root on the host to anyone who reaches the port",
        fix: "remove the tcp:// host, or set \"tlsverify\": true with tlscacert, tlscert and tlskey in daemon.json",
        source: "docs.docker.com/engine/security/protect-access/; CIS Docker Benchmark, \"Ensure TLS authentication for Docker daemon is configured\"",
    },
    Rule {
        id: "overlay-backing-fs",
        severity: Warn,
        check: Host(storage::overlay_backing_fs),
        reason: "overlay2 is supported on xfs and ext4 only; other backing filesystems have known bugs",
        fix: "put /var/lib/docker on xfs (ftype=1) or ext4",
        source: "docs.docker.com/engine/storage/drivers/select-storage-driver/#supported-backing-filesystems",
    },
    Rule {
        id: "storage-vfs",
        severity: Warn,
        check: Host(storage::vfs),
        reason: "vfs copies every layer in full: slow, and it fills the disk",
        fix: "run overlay2: put /var/lib/docker on a filesystem with d_type (xfs ftype=1, ext4 with filetype) and remove any storage-driver setting",
        source: "docs.docker.com/engine/storage/drivers/vfs-driver/",
    },
    Rule {
        id: "storage-btrfs-zfs",
        severity: Warn,
        check: Host(storage::btrfs_or_zfs),
        reason: "btrfs and zfs drivers are for hosts built around them; most operators are better served by overlay2",
        fix: "keep it only if you run btrfs or zfs on purpose and know its maintenance; otherwise move to overlay2 on xfs or ext4",
        source: "docs.docker.com/engine/storage/drivers/select-storage-driver/",
    },
    Rule {
        id: "cgroup-v1",
        severity: Warn,
        check: Host(system::cgroup_v1),
        reason: "cgroup v1 is deprecated since Docker 29 and loses support in Docker and containerd",
        fix: "boot with the unified hierarchy (cgroup v2): a current distribution does by default",
        source: "docs.docker.com/engine/deprecated/#support-for-cgroup-v1",
    },
    Rule {
        id: "cgroup-driver-mismatch",
        severity: Warn,
        check: Host(system::cgroup_driver_mismatch),
        reason: "with systemd as init on cgroup v2, the cgroupfs driver leaves two managers of one hierarchy",
        fix: "set \"exec-opts\": [\"native.cgroupdriver=systemd\"] in daemon.json and restart dockerd",
        source: "docs.docker.com/reference/cli/dockerd/#configure-cgroup-driver",
    },
    Rule {
        id: "distribution-unsupported",
        severity: Warn,
        check: Host(system::distribution_unsupported),
        reason: "this distribution release is not one Docker builds and tests Engine for",
        fix: "move to a release on Docker's list (see the list below), or accept that fixes may never reach this host",
        source: "docs.docker.com/engine/install/",
    },
    Rule {
        id: "docker-root-low",
        severity: Warn,
        check: Host(storage::root_low),
        reason: "the Docker root has less than 10% of its space or inodes free",
        fix: "prune unused images and containers (`docker system prune`) and plan more room for /var/lib/docker",
        source: "docs.docker.com/engine/manage-resources/pruning/",
    },
    Rule {
        id: "log-no-rotation",
        severity: Warn,
        check: Host(daemon::log_no_rotation),
        reason: "json-file logs without max-size grow until the disk is full",
        fix: "set \"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"5\"} (or \"log-driver\": \"local\") in daemon.json; ballast's own containers already rotate",
        source: "docs.docker.com/engine/logging/drivers/json-file/",
    },
    Rule {
        id: "live-restore-off",
        severity: Warn,
        check: Host(daemon::live_restore_off),
        reason: "without live-restore, every dockerd restart or upgrade stops all containers",
        fix: "set \"live-restore\": true in daemon.json and reload dockerd (`systemctl reload docker`)",
        source: "docs.docker.com/engine/daemon/live-restore/; CIS Docker Benchmark, \"Ensure live restore is enabled\"",
    },
    Rule {
        id: "seccomp-off",
        severity: Warn,
        check: Host(daemon::seccomp_off),
        reason: "without the default seccomp profile, containers can make system calls that escape or crash the host",
        fix: "use a kernel with CONFIG_SECCOMP and remove any `seccomp-profile: unconfined` setting",
        source: "docs.docker.com/engine/security/seccomp/; CIS Docker Benchmark, \"Ensure that the default seccomp profile is not Disabled\"",
    },
    Rule {
        id: "experimental-daemon",
        severity: Warn,
        check: Host(daemon::experimental),
        reason: "experimental features change without notice and are not for production",
        fix: "remove \"experimental\": true from daemon.json and restart dockerd",
        source: "CIS Docker Benchmark, \"Ensure that experimental features are not implemented in production\"",
    },
    Rule {
        id: "ip-forward-off",
        severity: Warn,
        check: Host(system::ip_forward_off),
        reason: "with IPv4 forwarding off, containers on bridge networks cannot reach or be reached from outside",
        fix: "set net.ipv4.ip_forward=1 in /etc/sysctl.d/ and apply it with `sysctl --system`",
        source: "docs.docker.com/engine/network/packet-filtering-firewalls/",
    },
    Rule {
        id: "limits-unsupported",
        severity: Warn,
        check: Host(system::limits_unsupported),
        reason: "the kernel cannot limit containers' memory or process count: one container can take the host down",
        fix: "enable the memory and pids cgroup controllers (kernel options, `cgroup_enable=memory` on Debian/Ubuntu kernels)",
        source: "docs.docker.com/engine/containers/resource_constraints/; moby contrib/check-config.sh",
    },
    Rule {
        id: "kernel-options-missing",
        severity: Warn,
        check: Host(system::kernel_options_missing),
        reason: "the kernel lacks options Docker needs for isolation or networking",
        fix: "use the distribution's standard kernel, or rebuild with the options named",
        source: "moby contrib/check-config.sh",
    },
    Rule {
        id: "engine-unmaintained",
        severity: Warn,
        check: Host(system::engine_old),
        reason: "this engine's major version gets no more fixes upstream (distribution packages may backport some)",
        fix: "upgrade Docker Engine to a maintained major version",
        source: "moby/moby project/BRANCHES-AND-TAGS.md",
    },
    Rule {
        id: "daemon-json-invalid",
        severity: Warn,
        check: Host(daemon::daemon_json_invalid),
        reason: "dockerd will refuse to start with this daemon.json the next time it restarts",
        fix: "fix /etc/docker/daemon.json (check it with `dockerd --validate`), before any restart",
        source: "docs.docker.com/engine/daemon/troubleshoot/",
    },
    Rule {
        id: "clock-skew",
        severity: Warn,
        check: Fleet(system::clock_skew),
        reason: "this host's clock is more than 1 s off the other hosts': TLS, tokens and merged logs go wrong",
        fix: "run time synchronisation (chrony or systemd-timesyncd) on every host",
        source: "docs.docker.com/engine/swarm/admin_guide/ (clock skew breaks certificates and raft)",
    },
    Rule {
        id: "docker-root-shared",
        severity: Info,
        check: Host(storage::root_not_separate),
        reason: "the Docker root shares its filesystem with the system: a full Docker root fills the host's disk too",
        fix: "give /var/lib/docker its own partition or volume",
        source: "CIS Docker Benchmark 1.1.1, \"Ensure a separate partition for containers has been created\"",
    },
    Rule {
        id: "no-default-init",
        severity: Info,
        check: Host(daemon::no_default_init),
        reason: "containers started outside ballast get no init process: zombies pile up and signals are lost (ballast's own containers always run with --init)",
        fix: "set \"init\": true in daemon.json",
        source: "docs.docker.com/reference/cli/docker/container/run/#init",
    },
    Rule {
        id: "stateful-without-volume",
        severity: Block,
        check: Role(service::stateful_without_volume),
        reason: "a role keeps data inside its container: the next deploy or rollback replaces the container and the data is gone",
        fix: "mount a host directory at the data path in the role's `volumes` (e.g. /var/lib/ballast/<service>/db:/var/lib/postgresql/data)",
        source: "docs.docker.com/engine/storage/volumes/; DESIGN.md principle 4",
    },
    Rule {
        id: "secret-in-clear",
        severity: Block,
        check: Role(service::secret_in_clear),
        reason: "a secret is written in clear in ballast.yml: it ends up in version control, in `docker inspect` and in logs",
        fix: "move it to the role's `env.secret` list and give its value in the environment or .ballast/secrets",
        source: "CIS Docker Benchmark 4.10, \"Ensure secrets are not stored in Dockerfiles\"; docs.docker.com/engine/swarm/secrets/",
    },
    Rule {
        id: "image-unpinned",
        severity: Warn,
        check: Role(service::image_unpinned),
        reason: "`latest` (or no tag) changes under you: hosts run different code, and rollback cannot return to it",
        fix: "pin the image to a version tag or a digest (image@sha256:...)",
        source: "docs.docker.com/build/building/best-practices/#pin-base-image-versions",
    },
    Rule {
        id: "published-without-healthcheck",
        severity: Warn,
        check: Role(service::published_without_healthcheck),
        reason: "a role publishes ports but nothing checks it answers: a broken version takes traffic",
        fix: "set the role's `port` (ballast then checks GET /up) or a `healthcheck`, or add HEALTHCHECK to the image",
        source: "CIS Docker Benchmark 4.6, \"Ensure HEALTHCHECK instructions have been added to container images\"",
    },
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let re = regex::Regex::new(r"^[a-z0-9]+(-[a-z0-9]+)*$").unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            assert!(re.is_match(r.id), "{}", r.id);
            assert!(seen.insert(r.id), "{} twice", r.id);
            assert!(!r.reason.is_empty() && !r.fix.is_empty() && !r.source.is_empty());
            assert!(!r.reason.contains('\n'), "{}: reason is one line", r.id);
        }
    }
}
