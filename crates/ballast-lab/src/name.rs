//! Lab names, and the names of every Docker object a lab owns, derived from
//! them in one place so `up`, `down` and `status` always agree.

use ballast_core::{Error, Result};

/// Label put on every container, network and volume of a lab; its value is
/// the lab's name. `down` removes exactly what carries it.
pub const LAB_LABEL: &str = "io.ballast.lab";
/// Label giving a lab host's number (1-based).
pub const HOST_LABEL: &str = "io.ballast.lab.host";
/// The longest name accepted: host names and Docker object names derive from
/// it and must stay readable and within limits.
const MAX_LEN: usize = 24;

/// A validated lab name: lowercase letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabName(String);

impl LabName {
    pub fn parse(name: &str) -> Result<LabName> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let ok_ends = !name.starts_with('-') && !name.ends_with('-');
        if name.is_empty() || name.len() > MAX_LEN || !ok_chars || !ok_ends {
            return Err(Error::input(
                "read the lab name",
                format_args!("{name:?} is not a valid lab name"),
            )
            .hint(format!(
                "use 1 to {MAX_LEN} lowercase letters, digits and hyphens, not starting or ending with a hyphen (e.g. --name dev-2)"
            )));
        }
        Ok(LabName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Docker network of the lab.
    pub fn network(&self) -> String {
        format!("ballast-lab-{}", self.0)
    }

    /// The container of host `n` (1-based).
    pub fn container(&self, n: usize) -> String {
        format!("ballast-lab-{}-{n}", self.0)
    }

    /// The host name of host `n`, also its alias in the lab's ssh config.
    pub fn hostname(&self, n: usize) -> String {
        format!("{}-{n}", self.0)
    }

    /// The volume holding host `n`'s `/var/lib/docker`.
    pub fn docker_volume(&self, n: usize) -> String {
        format!("ballast-lab-{}-{n}-docker", self.0)
    }
}

impl std::fmt::Display for LabName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_derive_every_object_name() {
        let n = LabName::parse("dev-2").unwrap();
        assert_eq!(n.network(), "ballast-lab-dev-2");
        assert_eq!(n.container(3), "ballast-lab-dev-2-3");
        assert_eq!(n.hostname(3), "dev-2-3");
        assert_eq!(n.docker_volume(1), "ballast-lab-dev-2-1-docker");
    }

    #[test]
    fn bad_names_are_refused_with_a_hint() {
        for bad in [
            "",
            "Dev",
            "a_b",
            "a.b",
            "-a",
            "a-",
            "a b",
            "x/y",
            "ünï",
            &"a".repeat(25),
        ] {
            let e = LabName::parse(bad).unwrap_err();
            assert_eq!(e.kind, ballast_core::ErrorKind::Input, "{bad}");
            assert!(e.hint.as_deref().unwrap().contains("lowercase"), "{bad}");
        }
    }
}
