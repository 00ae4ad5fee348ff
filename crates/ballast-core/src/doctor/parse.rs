//! Reading what hosts print: os-release, daemon.json, `df`, mountinfo,
//! kernel config, `date`, and the engine's `docker info`. Pure functions,
//! tested with real outputs; `gather` runs the commands.

use std::collections::BTreeMap;

use bollard::models::SystemInfo;
use serde_json::Value;

use super::facts::{DaemonJson, EngineInfo, ImageStore, KernelConfig, Mount, Os};
use super::knowledge::KERNEL_FLAGS;

/// `/etc/os-release`: `KEY=value` lines, values optionally quoted.
pub fn os_release(text: &str) -> Option<Os> {
    let mut os = Os::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key {
            "ID" => os.id = value.to_ascii_lowercase(),
            "VERSION_ID" => os.version_id = value,
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_string).collect(),
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    (!os.id.is_empty()).then_some(os)
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v);
    v.replace("\\\"", "\"").replace("\\$", "$")
}

/// `/etc/redhat-release` of hosts older than os-release (RHEL/CentOS 6):
/// "CentOS release 6.10 (Final)".
pub fn redhat_release(text: &str) -> Option<Os> {
    let line = text.lines().next()?.trim();
    let (name, rest) = line.split_once(" release ")?;
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let id = if name.starts_with("CentOS") {
        "centos"
    } else if name.starts_with("Red Hat") {
        "rhel"
    } else if name.starts_with("Scientific") {
        "scientific"
    } else if name.starts_with("Rocky") {
        "rocky"
    } else if name.starts_with("AlmaLinux") {
        "almalinux"
    } else if name.starts_with("Fedora") {
        "fedora"
    } else {
        return None;
    };
    let like = if id == "fedora" {
        vec![]
    } else {
        vec!["rhel".into(), "fedora".into()]
    };
    Some(Os {
        id: id.into(),
        version_id: version,
        id_like: like,
        pretty_name: line.to_string(),
    })
}

/// `/etc/docker/daemon.json`, leniently: keys doctor does not read are
/// ignored, values of the wrong type count as unset.
pub fn daemon_json(text: &str) -> Result<DaemonJson, String> {
    if text.trim().is_empty() {
        return Ok(DaemonJson::default());
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(map) = v else {
        return Err("not a JSON object".into());
    };
    let text_of = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
    let bool_of = |k: &str| map.get(k).and_then(Value::as_bool);
    let log_opts = match map.get("log-opts") {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let hosts = match map.get("hosts") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    Ok(DaemonJson {
        log_driver: text_of("log-driver"),
        log_opts,
        hosts,
        tls: bool_of("tls"),
        tlsverify: bool_of("tlsverify"),
        live_restore: bool_of("live-restore"),
        init: bool_of("init"),
        storage_driver: text_of("storage-driver"),
        data_root: text_of("data-root").or_else(|| text_of("graph")),
        experimental: bool_of("experimental"),
        seccomp_profile: text_of("seccomp-profile"),
    })
}

/// `df -P -B1 DIR` → (size, available) in bytes; `df -P -i DIR` → (inodes,
/// free inodes). Both print a header and one line per filesystem:
/// `SOURCE TOTAL USED AVAILABLE CAPACITY MOUNTPOINT`.
pub fn df(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().skip(1).find(|l| !l.trim().is_empty())?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // The source may contain spaces; the numbers are the 2nd..4th fields
    // counted from the capacity column, which ends in `%` (or is `-`).
    let cap = fields.iter().rposition(|f| f.ends_with('%') || *f == "-")?;
    if cap < 3 {
        return None;
    }
    let total = fields[cap - 3].parse().ok()?;
    let avail = fields[cap - 1].parse().ok()?;
    Some((total, avail))
}

/// The mount holding `path`, from `/proc/self/mountinfo`: the mount whose
/// point is the longest prefix of `path` (the last one mounted wins a tie).
pub fn mount_of(mountinfo: &str, path: &str) -> Option<Mount> {
    let path = path.trim_end_matches('/');
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (left, right) = match line.split_once(" - ") {
            Some(p) => p,
            None => continue,
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 2 {
            continue;
        }
        let point = unescape_mount(left[4]);
        let trimmed = point.trim_end_matches('/');
        let contains = trimmed.is_empty()
            || path == trimmed
            || path
                .strip_prefix(trimmed)
                .is_some_and(|r| r.starts_with('/'));
        if !contains {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| b.point.trim_end_matches('/').len() <= trimmed.len());
        if longer {
            best = Some(Mount {
                point: if trimmed.is_empty() {
                    "/".into()
                } else {
                    point.clone()
                },
                fstype: right[0].to_string(),
                source: unescape_mount(right[1]),
                options: left[5].to_string(),
            });
        }
    }
    best
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The flags of [`KERNEL_FLAGS`] from a kernel config file.
pub fn kernel_config(text: &str, source: &str) -> KernelConfig {
    let mut flags: BTreeMap<String, String> = KERNEL_FLAGS
        .iter()
        .map(|f| (f.to_string(), "n".to_string()))
        .collect();
    for line in text.lines() {
        if let Some((key, value)) = line.strip_prefix("CONFIG_").and_then(|l| l.split_once('=')) {
            if let Some(slot) = flags.get_mut(key) {
                *slot = value.trim().to_string();
            }
        }
    }
    KernelConfig {
        source: source.to_string(),
        flags,
    }
}

/// `date -u +%s.%N` → seconds since the epoch; without `%N` support the
/// output is `1700000000.N` (or `.%N`), which still gives whole seconds.
pub fn epoch_seconds(text: &str) -> Option<f64> {
    let t = text.trim();
    t.parse::<f64>().ok().or_else(|| {
        let whole = t.split('.').next()?;
        whole.parse::<u64>().ok().map(|s| s as f64)
    })
}

/// The DriverStatus value an engine on the containerd image store reports
/// as `driver-type`.
const CONTAINERD_DRIVER_TYPE: &str = "io.containerd.snapshotter.v1";

/// The part of `docker info` rules read.
pub fn engine_info(info: SystemInfo) -> EngineInfo {
    let driver_status: Vec<(String, String)> = info
        .driver_status
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pair| match pair.as_slice() {
            [k, v, ..] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect();
    EngineInfo {
        server_version: info.server_version,
        image_store: image_store(info.driver.as_deref(), &driver_status),
        driver: info.driver,
        driver_status,
        cgroup_version: info
            .cgroup_version
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty()),
        cgroup_driver: info
            .cgroup_driver
            .map(|d| d.to_string())
            .filter(|d| !d.is_empty()),
        logging_driver: info.logging_driver,
        live_restore: info.live_restore_enabled,
        security_options: info.security_options.unwrap_or_default(),
        warnings: info.warnings.unwrap_or_default(),
        root_dir: info.docker_root_dir,
        memory_limit: info.memory_limit,
        swap_limit: info.swap_limit,
        pids_limit: info.pids_limit,
        ipv4_forwarding: info.ipv4_forwarding,
        experimental: info.experimental_build,
        init_binary: info.init_binary,
        kernel_version: info.kernel_version,
        operating_system: info.operating_system,
    }
}

/// Which store an engine keeps images in: containerd's when its driver
/// status says so, else its driver's own; unknown without a driver.
fn image_store(driver: Option<&str>, status: &[(String, String)]) -> Option<ImageStore> {
    let containerd = status
        .iter()
        .any(|(k, v)| k == "driver-type" && v.trim() == CONTAINERD_DRIVER_TYPE);
    match (containerd, driver) {
        (true, _) => Some(ImageStore::Containerd),
        (false, Some(d)) if !d.is_empty() => Some(ImageStore::Classic),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_store_comes_from_the_driver_status() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let containerd = [pair("driver-type", "io.containerd.snapshotter.v1")];
        assert_eq!(
            image_store(Some("overlayfs"), &containerd),
            Some(ImageStore::Containerd)
        );
        let overlay2 = [pair("Backing Filesystem", "extfs")];
        assert_eq!(
            image_store(Some("overlay2"), &overlay2),
            Some(ImageStore::Classic)
        );
        assert_eq!(image_store(None, &[]), None);
        assert_eq!(image_store(Some(""), &[]), None);
    }

    #[test]
    fn os_release_of_debian_and_centos() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        let os = os_release(debian).unwrap();
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        let centos = "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\n";
        let os = os_release(centos).unwrap();
        assert_eq!(os.id_like, ["rhel", "fedora"]);
        assert_eq!(os_release("# nothing\n"), None);
    }

    #[test]
    fn redhat_release_of_centos_6() {
        let os = redhat_release("CentOS release 6.10 (Final)\n").unwrap();
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("centos", "6.10"));
        assert_eq!(os.id_like, ["rhel", "fedora"]);
        let os = redhat_release("Red Hat Enterprise Linux Server release 7.9 (Maipo)").unwrap();
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("rhel", "7.9"));
        assert_eq!(redhat_release("Something else"), None);
    }

    #[test]
    fn daemon_json_reads_what_rules_need() {
        let d = daemon_json(
            r#"{"log-driver":"json-file","log-opts":{"max-size":"10m","max-file":3},
                "hosts":["unix:///var/run/docker.sock","tcp://0.0.0.0:2375"],
                "live-restore":true,"graph":"/data/docker","unknown":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(d.log_driver.as_deref(), Some("json-file"));
        assert_eq!(d.log_opts["max-size"], "10m");
        assert_eq!(d.log_opts["max-file"], "3");
        assert_eq!(d.hosts.len(), 2);
        assert_eq!(d.live_restore, Some(true));
        assert_eq!(d.data_root.as_deref(), Some("/data/docker"));
        assert_eq!(daemon_json("  \n").unwrap(), DaemonJson::default());
        assert!(daemon_json("{\"a\": ")
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(daemon_json("[1]")
            .unwrap_err()
            .contains("not a JSON object"));
    }

    #[test]
    fn df_bytes_and_inodes() {
        let bytes = "Filesystem     1-blocks       Used   Available Capacity Mounted on\n/dev/sda1   105089261568 52544630784 47158263808      53% /\n";
        assert_eq!(df(bytes), Some((105089261568, 47158263808)));
        let inodes = "Filesystem      Inodes  IUsed   IFree IUse% Mounted on\n/dev/sda1      6553600 400000 6153600    7% /\n";
        assert_eq!(df(inodes), Some((6553600, 6153600)));
        let btrfs =
            "Filesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sdb 0 0 0 - /var/lib/docker\n";
        assert_eq!(df(btrfs), Some((0, 0)));
        let spaced =
            "Filesystem 1-blocks Used Available Capacity Mounted on\nmy disk 100 60 40 60% /mnt\n";
        assert_eq!(df(spaced), Some((100, 40)));
        assert_eq!(df("df: /nope: No such file or directory\n"), None);
    }

    #[test]
    fn the_mount_holding_a_path() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
30 22 0:25 / /var rw,relatime shared:2 - xfs /dev/sdb1 rw\n\
31 30 8:17 / /var/lib/docker rw,relatime shared:3 - xfs /dev/sdc1 rw,attr2\n\
40 31 0:50 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw\n\
41 22 0:51 / /var/lib/docker2 rw - tmpfs tmpfs rw\n\
42 22 0:52 / /mnt/my\\040disk rw - ext4 /dev/sdd1 rw\n";
        let m = mount_of(info, "/var/lib/docker").unwrap();
        assert_eq!(
            (m.point.as_str(), m.fstype.as_str()),
            ("/var/lib/docker", "xfs")
        );
        assert_eq!(m.source, "/dev/sdc1");
        assert_eq!(
            mount_of(info, "/var/lib/docker/").unwrap().point,
            "/var/lib/docker"
        );
        assert_eq!(mount_of(info, "/var/lib/containerd").unwrap().point, "/var");
        assert_eq!(mount_of(info, "/srv/docker").unwrap().point, "/");
        assert_eq!(
            mount_of(info, "/mnt/my disk/docker").unwrap().fstype,
            "ext4"
        );
        assert_eq!(mount_of("", "/x"), None);
    }

    #[test]
    fn kernel_config_flags() {
        let text = "# comment\nCONFIG_NAMESPACES=y\nCONFIG_OVERLAY_FS=m\n# CONFIG_MEMCG is not set\nCONFIG_OTHER=y\n";
        let k = kernel_config(text, "/boot/config-6.1.0");
        assert_eq!(k.enabled("NAMESPACES"), Some(true));
        assert_eq!(k.enabled("OVERLAY_FS"), Some(true));
        assert_eq!(k.enabled("MEMCG"), Some(false));
        assert_eq!(k.enabled("OTHER"), None);
        assert_eq!(k.source, "/boot/config-6.1.0");
    }

    #[test]
    fn epoch_with_and_without_nanoseconds() {
        assert_eq!(
            epoch_seconds("1700000000.250000000\n"),
            Some(1_700_000_000.25)
        );
        assert_eq!(epoch_seconds("1700000000.N\n"), Some(1_700_000_000.0));
        assert_eq!(epoch_seconds("1700000000.%N"), Some(1_700_000_000.0));
        assert_eq!(epoch_seconds("soon"), None);
    }
}
