//! Conditions about storage: the driver, its backing filesystem, the thin
//! pool, and the Docker root's space and mount. Each returns the detail of
//! a finding, or `None` when the facts do not show the problem (or are
//! unknown).

use super::facts::{Facts, RootFacts};

/// Drivers removed from Docker Engine (aufs in 24.0, devicemapper and
/// overlay in 25.0).
const LEGACY_DRIVERS: &[&str] = &["aufs", "devicemapper", "overlay"];
/// Backing filesystems overlay2 is tested and supported on (`extfs` is how
/// the engine names ext2/3/4).
const OVERLAY_BACKING: &[&str] = &["xfs", "extfs"];
/// Below this share free, the thin pool is nearly full (dockerd's own
/// default for `dm.min_free_space` is 10%).
const THIN_POOL_MIN_FREE: f64 = 0.10;
/// Free share of the Docker root under which doctor warns, then blocks.
pub const ROOT_WARN_FREE: f64 = 0.10;
pub const ROOT_BLOCK_FREE: f64 = 0.05;

pub fn legacy_driver(f: &Facts) -> Option<String> {
    let d = f.storage_driver()?;
    LEGACY_DRIVERS
        .contains(&d)
        .then(|| format!("the storage driver is {d}"))
}

pub fn devicemapper_loop(f: &Facts) -> Option<String> {
    let e = f.engine.as_ref().filter(|e| e.driver_is("devicemapper"))?;
    if let Some(file) = e.status("Data loop file") {
        return Some(format!(
            "devicemapper keeps its data in the loop file {file}"
        ));
    }
    let data = e
        .status("Data file")
        .filter(|d| d.starts_with("/dev/loop"))?;
    Some(format!(
        "devicemapper keeps its data on the loop device {data}"
    ))
}

pub fn thin_pool_full(f: &Facts) -> Option<String> {
    let e = f.engine.as_ref().filter(|e| e.driver_is("devicemapper"))?;
    let mut full = Vec::new();
    for space in ["Data", "Metadata"] {
        let total = e.status(&format!("{space} Space Total")).and_then(bytes);
        let avail = e
            .status(&format!("{space} Space Available"))
            .and_then(bytes);
        if let (Some(total), Some(avail)) = (total, avail) {
            if total > 0.0 && avail / total < THIN_POOL_MIN_FREE {
                full.push(format!(
                    "{} space {:.1}% free",
                    space.to_lowercase(),
                    100.0 * avail / total
                ));
            }
        }
    }
    (!full.is_empty()).then(|| format!("the thin pool has {}", full.join(" and ")))
}

/// "52.57 GB", "107.4GB", "65.54 kB", "2 GiB" → bytes.
fn bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let number: f64 = t[..split].parse().ok()?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let factor = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    Some(number * factor)
}

fn overlay2(f: &Facts) -> Option<&super::facts::EngineInfo> {
    f.engine.as_ref().filter(|e| e.driver_is("overlay2"))
}

pub fn overlay_without_d_type(f: &Facts) -> Option<String> {
    let e = f.engine.as_ref()?;
    let driver = e.driver.as_deref().filter(|d| d.starts_with("overlay"))?;
    if e.supports_d_type()? {
        return None;
    }
    let fs = e.backing_fs().unwrap_or("unknown");
    Some(format!(
        "{driver} runs on a backing {fs} filesystem without d_type{}",
        if fs == "xfs" {
            " (xfs made with ftype=0)"
        } else {
            ""
        }
    ))
}

pub fn overlay_backing_fs(f: &Facts) -> Option<String> {
    let fs = overlay2(f)?.backing_fs()?;
    (!OVERLAY_BACKING.contains(&fs)).then(|| format!("overlay2 runs on a backing {fs} filesystem"))
}

/// Whether this kernel can run overlay2: 4.0 or newer, or a RHEL-family
/// 3.10.0 kernel of build 514 (RHEL 7.3) or later, which has it backported.
pub fn kernel_runs_overlay2(f: &Facts) -> Option<bool> {
    let k = f.kernel_version()?;
    let backported =
        f.rhel_family() && (k.major, k.minor, k.patch) == (3, 10, 0) && k.build >= Some(514);
    Some(k.at_least(4, 0) || backported)
}

pub fn overlay_old_kernel(f: &Facts) -> Option<String> {
    overlay2(f)?;
    (!kernel_runs_overlay2(f)?).then(|| {
        format!(
            "overlay2 on kernel {} (needs 4.0, or RHEL-family 3.10.0-514 and later)",
            f.kernel.as_deref().unwrap_or("?")
        )
    })
}

pub fn debian8_aufs(f: &Facts) -> Option<String> {
    if f.storage_driver()? != "aufs" {
        return None;
    }
    let debian8 =
        f.os.as_ref()
            .is_some_and(|o| o.id == "debian" && f.os_major() == Some(8));
    let k316 = f
        .kernel_version()
        .is_some_and(|k| (k.major, k.minor) == (3, 16));
    (debian8 || k316).then(|| {
        format!(
            "aufs on {}kernel {}",
            if debian8 { "Debian 8, " } else { "" },
            f.kernel.as_deref().unwrap_or("3.16")
        )
    })
}

pub fn btrfs_on_rhel(f: &Facts) -> Option<String> {
    (f.storage_driver()? == "btrfs" && f.rhel_family()).then(|| {
        let os =
            f.os.as_ref()
                .map(|o| o.pretty_name.as_str())
                .unwrap_or("RHEL");
        format!("btrfs on {os}")
    })
}

pub fn btrfs_or_zfs(f: &Facts) -> Option<String> {
    match f.storage_driver()? {
        "btrfs" if !f.rhel_family() => Some("the storage driver is btrfs".into()),
        "zfs" => Some("the storage driver is zfs".into()),
        _ => None,
    }
}

pub fn vfs(f: &Facts) -> Option<String> {
    if f.storage_driver()? != "vfs" {
        return None;
    }
    let chosen = f
        .daemon_json
        .as_ref()
        .and_then(|d| d.storage_driver.as_deref())
        == Some("vfs")
        || f.daemon_args.as_deref().is_some_and(|a| a.contains("vfs"));
    if chosen {
        return Some("vfs is set in the daemon's settings".into());
    }
    let fs = f
        .root
        .as_ref()
        .and_then(|r| r.mount.as_ref())
        .map(|m| m.fstype.as_str());
    let overlay_built = f
        .kernel_config
        .as_ref()
        .and_then(|k| k.enabled("OVERLAY_FS"))
        != Some(false);
    match fs {
        Some(fs @ ("ext4" | "ext3" | "ext2" | "xfs"))
            if kernel_runs_overlay2(f) == Some(true) && overlay_built =>
        {
            Some(format!(
                "dockerd fell back to vfs although this kernel runs overlay2: most likely \
                 the backing {fs} filesystem lacks d_type ({})",
                if fs == "xfs" {
                    "made with ftype=0"
                } else {
                    "made without the filetype feature"
                }
            ))
        }
        _ => Some("the storage driver is vfs".into()),
    }
}

/// The smallest free share of the root's space and inodes, and what it is.
fn root_free(root: &RootFacts) -> Option<(f64, String)> {
    let mut shares = Vec::new();
    if let (Some(t), Some(free)) = (root.bytes_total, root.bytes_free) {
        if t > 0 {
            shares.push((
                free as f64 / t as f64,
                format!("{} free of {}", size(free), size(t)),
            ));
        }
    }
    if let (Some(t), Some(free)) = (root.inodes_total, root.inodes_free) {
        if t > 0 {
            shares.push((free as f64 / t as f64, format!("{free} of {t} inodes free")));
        }
    }
    shares.into_iter().min_by(|a, b| a.0.total_cmp(&b.0))
}

fn size(b: u64) -> String {
    let gib = b as f64 / 1024f64.powi(3);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", b as f64 / 1024f64.powi(2))
    }
}

pub fn root_low(f: &Facts) -> Option<String> {
    let root = f.root.as_ref()?;
    let (share, what) = root_free(root)?;
    (ROOT_BLOCK_FREE..ROOT_WARN_FREE)
        .contains(&share)
        .then(|| format!("{}: {what} ({:.1}%)", root.dir, share * 100.0))
}

pub fn root_full(f: &Facts) -> Option<String> {
    let root = f.root.as_ref()?;
    let (share, what) = root_free(root)?;
    (share < ROOT_BLOCK_FREE).then(|| format!("{}: {what} ({:.1}%)", root.dir, share * 100.0))
}

pub fn root_not_separate(f: &Facts) -> Option<String> {
    let root = f.root.as_ref()?;
    if root.separate_mount()? {
        return None;
    }
    let m = root.mount.as_ref()?;
    Some(format!(
        "{} is on the {} filesystem ({} {})",
        root.dir, m.point, m.fstype, m.source
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_engines_print_them() {
        assert_eq!(bytes("52.57 GB"), Some(52.57e9));
        assert_eq!(bytes("107.4GB"), Some(107.4e9));
        assert_eq!(bytes("65.54 kB"), Some(65540.0));
        assert_eq!(bytes("2 GiB"), Some(2.0 * 1024f64.powi(3)));
        assert_eq!(bytes("0 B"), Some(0.0));
        assert_eq!(bytes("lots"), None);
    }
}
