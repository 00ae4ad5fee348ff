//! Conditions about the host beneath the engine: kernel, distribution,
//! cgroups, kernel options, clocks, and an engine that does not answer.

use super::facts::{engine_major, Facts};
use super::knowledge::{
    CHECKED, DAEMON_LOG_CAUSES, ESSENTIAL_KERNEL_FLAGS, RHEL_REBUILDS, SUPPORTED_DISTRIBUTIONS,
};

/// Host clocks further apart than this disagree.
pub const CLOCK_TOLERANCE_MS: i64 = 1000;

pub fn kernel_too_old(f: &Facts) -> Option<String> {
    let k = f.kernel_version()?;
    (!k.at_least(3, 10)).then(|| format!("kernel {}", f.kernel.as_deref().unwrap_or("?")))
}

/// The cgroup version the engine runs on. Engines older than API 1.40 do
/// not say, and only knew v1.
fn cgroup_version(f: &Facts) -> Option<&str> {
    let e = f.engine.as_ref()?;
    Some(e.cgroup_version.as_deref().unwrap_or("1"))
}

pub fn cgroup2_old_kernel(f: &Facts) -> Option<String> {
    if cgroup_version(f)? != "2" {
        return None;
    }
    let k = f.kernel_version()?;
    (!k.at_least(4, 15))
        .then(|| format!("cgroup v2 on kernel {}", f.kernel.as_deref().unwrap_or("?")))
}

pub fn cgroup_v1(f: &Facts) -> Option<String> {
    (cgroup_version(f)? == "1").then(|| "the engine runs on cgroup v1".to_string())
}

pub fn cgroup_driver_mismatch(f: &Facts) -> Option<String> {
    let e = f.engine.as_ref()?;
    let systemd = f.init.as_deref() == Some("systemd");
    (cgroup_version(f)? == "2" && systemd && e.cgroup_driver.as_deref() == Some("cgroupfs"))
        .then(|| "cgroup v2 and systemd as init, but the cgroupfs driver".to_string())
}

/// Whether Docker's list names this release; rebuilds of RHEL count as
/// the RHEL release of the same major version.
pub fn supported_release(id: &str, version: &str) -> bool {
    let major = version.split('.').next().unwrap_or(version);
    let listed = |id: &str| {
        SUPPORTED_DISTRIBUTIONS
            .iter()
            .find(|(d, _)| *d == id)
            .map(|(_, versions)| *versions)
    };
    match listed(id) {
        // Ubuntu's versions are year.month; everyone else's majors.
        Some(versions) if id == "ubuntu" => versions.contains(&version),
        Some(versions) => versions.contains(&major),
        None if RHEL_REBUILDS.contains(&id) => {
            listed("rhel").is_some_and(|versions| versions.contains(&major))
        }
        None => false,
    }
}

pub fn distribution_unsupported(f: &Facts) -> Option<String> {
    let os = f.os.as_ref()?;
    if supported_release(&os.id, &os.version_id) {
        return None;
    }
    let name = if os.pretty_name.is_empty() {
        format!("{} {}", os.id, os.version_id)
    } else {
        os.pretty_name.clone()
    };
    Some(format!(
        "{name} is not on Docker's list of supported distributions (checked {CHECKED})"
    ))
}

pub fn kernel_options_missing(f: &Facts) -> Option<String> {
    let k = f.kernel_config.as_ref()?;
    let missing: Vec<String> = ESSENTIAL_KERNEL_FLAGS
        .iter()
        .filter(|flag| k.enabled(flag) == Some(false))
        .map(|flag| format!("CONFIG_{flag}"))
        .collect();
    (!missing.is_empty()).then(|| format!("{} not set in {}", missing.join(", "), k.source))
}

pub fn limits_unsupported(f: &Facts) -> Option<String> {
    let e = f.engine.as_ref()?;
    let mut missing = Vec::new();
    if e.memory_limit == Some(false) {
        missing.push("memory");
    }
    if e.pids_limit == Some(false) {
        missing.push("pids");
    }
    (!missing.is_empty()).then(|| format!("no {} limit support", missing.join(" or ")))
}

pub fn ip_forward_off(f: &Facts) -> Option<String> {
    (f.engine.as_ref()?.ipv4_forwarding == Some(false))
        .then(|| "net.ipv4.ip_forward is 0".to_string())
}

pub fn engine_old(f: &Facts) -> Option<String> {
    let v = f.engine.as_ref()?.server_version.as_deref()?;
    let major = engine_major(v)?;
    (major < super::knowledge::OLDEST_MAINTAINED_ENGINE).then(|| {
        format!(
            "Docker {v}; the oldest maintained major is {} (checked {CHECKED})",
            super::knowledge::OLDEST_MAINTAINED_ENGINE
        )
    })
}

/// The line of dockerd's log that explains why it stopped, and the cause.
pub fn log_cause(log: &str) -> Option<(&str, &'static str)> {
    log.lines().rev().find_map(|line| {
        let lower = line.to_ascii_lowercase();
        DAEMON_LOG_CAUSES
            .iter()
            .find(|(text, _)| lower.contains(&text.to_ascii_lowercase()))
            .map(|(_, cause)| (line.trim(), *cause))
    })
}

/// The last error (or fatal) line of a log, else its last line.
fn telling_line(log: &str) -> Option<&str> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.contains("level=error") || l.contains("level=fatal"))
        .or(lines.last())
        .copied()
}

pub fn engine_down(f: &Facts) -> Option<String> {
    if f.engine.is_some() {
        return None;
    }
    let error = f.engine_error.as_deref()?;
    let running = match f.daemon_running {
        Some(true) => "dockerd is running but does not answer",
        Some(false) => "dockerd is not running",
        None => "the engine does not answer",
    };
    let log = f.daemon_log.as_deref();
    Some(match log.and_then(log_cause) {
        Some((line, cause)) => format!("{running}: {cause}; its log says: {line}"),
        None => match log.and_then(telling_line) {
            Some(line) => format!("{running} ({error}); its log says: {}", line.trim()),
            None => format!("{running} ({error})"),
        },
    })
}

pub fn clock_skew(f: &Facts, others: &[&Facts]) -> Option<String> {
    let mine = f.clock.as_ref()?;
    let mut peers: Vec<(i64, i64, &str)> = others
        .iter()
        .filter_map(|o| {
            o.clock
                .as_ref()
                .map(|c| (c.offset_ms, c.uncertainty_ms, o.host.as_str()))
        })
        .collect();
    if peers.is_empty() {
        return None;
    }
    peers.sort();
    let (median, uncertainty, peer) = peers[peers.len() / 2];
    let apart = (mine.offset_ms - median).abs();
    (apart - mine.uncertainty_ms - uncertainty > CLOCK_TOLERANCE_MS).then(|| {
        format!(
            "its clock is {:.1} s {} the other hosts' (median, e.g. {peer})",
            apart as f64 / 1000.0,
            if mine.offset_ms > median {
                "ahead of"
            } else {
                "behind"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_releases() {
        assert!(supported_release("debian", "12"));
        assert!(supported_release("ubuntu", "24.04"));
        assert!(!supported_release("ubuntu", "16.04"));
        assert!(supported_release("rhel", "9.4"));
        assert!(supported_release("rocky", "9.3"));
        assert!(!supported_release("centos", "7"));
        assert!(!supported_release("arch", ""));
    }

    #[test]
    fn the_log_line_that_explains() {
        let log = "time=\"x\" level=info msg=\"Starting up\"\n\
                   failed to start daemon: error initializing graphdriver: overlay2: the backing extfs filesystem is formatted without d_type support, which leads to incorrect behavior.\n";
        let (line, cause) = log_cause(log).unwrap();
        assert!(line.starts_with("failed to start daemon"));
        assert!(cause.contains("d_type"));
        assert_eq!(log_cause("all good\n"), None);
    }
}
