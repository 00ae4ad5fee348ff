//! What doctor knows about the world, kept as data (DESIGN principle 6):
//! supported distributions, maintained engines, stateful images, the words
//! of secrets, kernel options, where dockerd logs. Lists that age carry the
//! date they were checked and where; `docs/doctor-rules.md` prints them.

/// When the lists below that change over time were last checked.
pub const CHECKED: &str = "2026-11-22";

/// Distributions Docker Engine supports, as `(ID, [VERSION_ID...])`.
/// Source: docs.docker.com/engine/install/ (docker/docs PRs #23491, #23532,
/// #23540, October 2025), checked on [`CHECKED`].
pub const SUPPORTED_DISTRIBUTIONS: &[(&str, &[&str])] = &[
    ("ubuntu", &["22.04", "24.04", "25.04", "25.10"]),
    ("debian", &["11", "12", "13"]),
    ("fedora", &["41", "42", "43"]),
    ("rhel", &["8", "9", "10"]),
    ("centos", &["9", "10"]),
];

/// Rebuilds of RHEL: same kernel, same packages. They count as RHEL of the
/// same major version for the supported list, and as the RHEL family for
/// kernel backports and btrfs.
pub const RHEL_REBUILDS: &[&str] = &[
    "rhel",
    "centos",
    "rocky",
    "almalinux",
    "ol",
    "scientific",
    "cloudlinux",
];

/// The oldest Docker Engine major version still maintained upstream.
/// Source: moby/moby project/BRANCHES-AND-TAGS.md (docker-29.x and
/// docker-28.x maintained; 27.x and older unmaintained), checked on [`CHECKED`].
pub const OLDEST_MAINTAINED_ENGINE: u32 = 28;

/// Images known to keep data, by repository name (the last path component,
/// without tag), with where they keep it.
pub const STATEFUL_IMAGES: &[(&str, &str)] = &[
    ("postgres", "/var/lib/postgresql/data"),
    ("postgis", "/var/lib/postgresql/data"),
    ("timescaledb", "/var/lib/postgresql/data"),
    ("mysql", "/var/lib/mysql"),
    ("mariadb", "/var/lib/mysql"),
    ("percona", "/var/lib/mysql"),
    ("mongo", "/data/db"),
    ("redis", "/data"),
    ("valkey", "/data"),
    ("elasticsearch", "/usr/share/elasticsearch/data"),
    ("opensearch", "/usr/share/opensearch/data"),
    ("rabbitmq", "/var/lib/rabbitmq"),
    ("influxdb", "/var/lib/influxdb2"),
    ("cassandra", "/var/lib/cassandra"),
    ("couchdb", "/opt/couchdb/data"),
    ("neo4j", "/data"),
    ("minio", "/data"),
    ("clickhouse-server", "/var/lib/clickhouse"),
    ("etcd", "/var/lib/etcd"),
    ("zookeeper", "/data"),
    ("nats", "/data"),
];

/// Words that make a variable name look like a secret wherever they appear
/// among its `_`-separated parts (`DB_PASSWORD`, `SECRET_KEY_BASE`).
pub const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "SECRETS",
    "TOKEN",
    "CREDENTIAL",
    "CREDENTIALS",
    "PRIVATE",
];

/// Words that make a name look like a secret only as its last part
/// (`API_KEY`, `SMTP_PASS`, but not `CACHE_KEY_PREFIX`).
pub const SECRET_SUFFIXES: &[&str] = &["KEY", "APIKEY", "PASS", "PW"];

/// Parts that make a secret-looking name harmless: `PUBLIC_KEY`,
/// `PASSWORD_FILE` (names a file), `TOKEN_TTL`, `PASSWORD_MIN_LENGTH`.
pub const NOT_SECRET_WORDS: &[&str] = &[
    "PUBLIC",
    "PUBLISHABLE",
    "ID",
    "FILE",
    "PATH",
    "DIR",
    "URL",
    "URI",
    "HEADER",
    "NAME",
    "LENGTH",
    "TTL",
    "EXPIRY",
    "EXPIRES",
    "TIMEOUT",
    "ENABLED",
    "REQUIRED",
];

/// Kernel options Docker needs, from moby's contrib/check-config.sh
/// ("Generally Necessary" and the overlay storage driver), as names
/// without `CONFIG_`. Doctor reads only these.
pub const KERNEL_FLAGS: &[&str] = &[
    "NAMESPACES",
    "NET_NS",
    "PID_NS",
    "IPC_NS",
    "UTS_NS",
    "CGROUPS",
    "CGROUP_CPUACCT",
    "CGROUP_DEVICE",
    "CGROUP_FREEZER",
    "CGROUP_SCHED",
    "CPUSETS",
    "MEMCG",
    "KEYS",
    "VETH",
    "BRIDGE",
    "BRIDGE_NETFILTER",
    "IP_NF_FILTER",
    "IP_NF_NAT",
    "NF_NAT",
    "NETFILTER_XT_MATCH_ADDRTYPE",
    "NETFILTER_XT_MATCH_CONNTRACK",
    "POSIX_MQUEUE",
    "OVERLAY_FS",
    "SECCOMP",
    "CGROUP_PIDS",
];

/// Of [`KERNEL_FLAGS`], those without which containers do not start or
/// have no network.
pub const ESSENTIAL_KERNEL_FLAGS: &[&str] = &[
    "NAMESPACES",
    "NET_NS",
    "PID_NS",
    "IPC_NS",
    "UTS_NS",
    "CGROUPS",
    "CGROUP_DEVICE",
    "MEMCG",
    "VETH",
    "BRIDGE",
    "BRIDGE_NETFILTER",
    "IP_NF_FILTER",
    "POSIX_MQUEUE",
];

/// Where dockerd's own log may be, tried in order when the engine does
/// not answer: `(program, arguments)`.
pub const DAEMON_LOGS: &[(&str, &[&str])] = &[
    (
        "journalctl",
        &[
            "-u",
            "docker.service",
            "--no-pager",
            "-o",
            "cat",
            "-n",
            "40",
        ],
    ),
    ("tail", &["-n", "40", "/var/log/dockerd.log"]),
    ("tail", &["-n", "40", "/var/log/docker.log"]),
    ("tail", &["-n", "40", "/var/log/upstart/docker.log"]),
];

/// What a line of dockerd's log means, when it explains why it stopped:
/// `(text in the line, the cause in a few words)`.
pub const DAEMON_LOG_CAUSES: &[(&str, &str)] = &[
    (
        "without d_type support",
        "its backing filesystem has no d_type support (xfs made with ftype=0, or ext4 without the filetype feature)",
    ),
    (
        "unable to configure the Docker daemon with file",
        "/etc/docker/daemon.json is invalid",
    ),
    (
        "the following directives are specified both as a flag and in the configuration file",
        "a setting is given both in daemon.json and on dockerd's command line",
    ),
    ("no space left on device", "its disk is full"),
    ("address already in use", "another process holds its socket or port"),
    (
        "error initializing graphdriver",
        "its storage driver cannot start on this filesystem or kernel",
    ),
    (
        "daemon shutdown complete",
        "it was shut down (stopped, or sent SIGTERM) and not started again",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essential_flags_are_gathered() {
        for f in ESSENTIAL_KERNEL_FLAGS {
            assert!(KERNEL_FLAGS.contains(f), "{f} is not gathered");
        }
    }

    #[test]
    fn checked_is_a_date() {
        assert!(regex::Regex::new(r"^\d{4}-\d{2}-\d{2}$")
            .unwrap()
            .is_match(CHECKED));
    }
}
