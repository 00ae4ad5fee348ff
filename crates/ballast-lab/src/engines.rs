//! Which Docker engine each lab host runs: the Debian release its image is
//! made from (which fixes the engine's version) and the image store its
//! dockerd uses. Every host runs bookworm's engine on the classic store
//! unless asked otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use ballast_core::{Error, Result};

/// A Debian release lab hosts can be made from; each packages its own
/// `docker.io`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian 12: Docker 20.10, the engine the lab always had.
    #[default]
    Bookworm,
    /// Debian 13: Docker 26.1.
    Trixie,
    /// Debian unstable: Docker 28.5 (at the time of writing; sid moves).
    Sid,
}

impl Distro {
    pub const ALL: [Distro; 3] = [Distro::Bookworm, Distro::Trixie, Distro::Sid];

    /// The suite name debootstrap takes.
    pub const fn suite(self) -> &'static str {
        match self {
            Distro::Bookworm => "bookworm",
            Distro::Trixie => "trixie",
            Distro::Sid => "sid",
        }
    }

    /// Whether this release's engine can run the containerd image store.
    /// Docker 20.10 has no such feature and ignores the setting silently,
    /// so asking for it there would give a classic host under a false name.
    pub const fn has_containerd_store(self) -> bool {
        !matches!(self, Distro::Bookworm)
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suite())
    }
}

impl FromStr for Distro {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Distro, String> {
        Distro::ALL
            .into_iter()
            .find(|d| d.suite() == text.trim())
            .ok_or_else(|| format!("{text:?} is not a lab distribution (bookworm, trixie or sid)"))
    }
}

/// Where a host's engine keeps images.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ImageStore {
    /// The graph driver's own store (overlay2): the default up to Docker 28.
    #[default]
    Classic,
    /// containerd's content store and snapshotters: the default of fresh
    /// Docker 29 installs, switched on by daemon.json's
    /// `features.containerd-snapshotter`.
    Containerd,
}

impl fmt::Display for ImageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageStore::Classic => "classic",
            ImageStore::Containerd => "containerd",
        })
    }
}

/// The engine one lab host runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostEngine {
    pub distro: Distro,
    pub store: ImageStore,
}

impl HostEngine {
    pub const fn new(distro: Distro, store: ImageStore) -> HostEngine {
        HostEngine { distro, store }
    }
}

impl fmt::Display for HostEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} store)", self.distro, self.store)
    }
}

/// The engine of every host of a lab: one for all, and exceptions by host
/// number (1-based).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabEngines {
    pub all: HostEngine,
    pub hosts: BTreeMap<usize, HostEngine>,
}

impl LabEngines {
    /// Every host the same.
    pub fn uniform(engine: HostEngine) -> LabEngines {
        LabEngines {
            all: engine,
            hosts: BTreeMap::new(),
        }
    }

    /// Host `n` runs `engine`; the others keep theirs.
    pub fn host(mut self, n: usize, engine: HostEngine) -> LabEngines {
        self.hosts.insert(n, engine);
        self
    }

    /// The engine of host `n`.
    pub fn of(&self, n: usize) -> HostEngine {
        self.hosts.get(&n).copied().unwrap_or(self.all)
    }

    /// What the command line asks for, for a lab of `hosts` hosts:
    /// `distros` is empty (bookworm everywhere), one release for every host,
    /// or one per host in order; `containerd` is `None` (classic store
    /// everywhere), empty (containerd on every host), or the host numbers
    /// that get it.
    pub fn assign(hosts: usize, distros: &[Distro], containerd: Option<&[usize]>) -> Result<Self> {
        let step = "read --distro";
        let per_host: Vec<Distro> = match distros {
            [] => vec![Distro::default(); hosts],
            [one] => vec![*one; hosts],
            many if many.len() == hosts => many.to_vec(),
            many => {
                return Err(Error::input(
                    step,
                    format_args!(
                    "{} distributions for {hosts} hosts: give one for every host, or one for all",
                    many.len()
                ),
                )
                .hint(format!(
                    "e.g. --hosts {} --distro {}",
                    many.len(),
                    many.iter().map(|d| d.suite()).collect::<Vec<_>>().join(",")
                )))
            }
        };
        let step = "read --containerd-store";
        let on_containerd = |n: usize| match containerd {
            None => false,
            Some([]) => true,
            Some(list) => list.contains(&n),
        };
        if let Some(bad) = containerd
            .unwrap_or_default()
            .iter()
            .find(|n| **n == 0 || **n > hosts)
        {
            return Err(Error::input(
                step,
                format_args!("there is no host {bad} in a lab of {hosts}"),
            )
            .hint("name hosts by number from 1, e.g. --containerd-store=3"));
        }
        let mut engines = LabEngines::default();
        for (i, distro) in per_host.into_iter().enumerate() {
            let n = i + 1;
            let store = if on_containerd(n) {
                ImageStore::Containerd
            } else {
                ImageStore::Classic
            };
            engines.hosts.insert(n, HostEngine::new(distro, store));
        }
        engines.check(hosts)?;
        Ok(engines)
    }

    /// Refuses what cannot run as asked: the containerd store on an engine
    /// without it.
    pub fn check(&self, hosts: usize) -> Result<()> {
        for n in 1..=hosts {
            let e = self.of(n);
            if e.store == ImageStore::Containerd && !e.distro.has_containerd_store() {
                return Err(Error::input(
                    "choose the hosts' engines",
                    format_args!(
                        "host {n}: {}'s Docker 20.10 has no containerd image store",
                        e.distro
                    ),
                )
                .hint("give that host --distro trixie or sid (Docker 26 or 28)"));
            }
        }
        Ok(())
    }

    /// The distributions the lab's hosts use, each once, in order.
    pub fn distros(&self, hosts: usize) -> Vec<Distro> {
        let mut all: Vec<Distro> = (1..=hosts).map(|n| self.of(n).distro).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The daemon.json of a host: `given` (a test's own settings, if any) with
/// the containerd store switched on when the host uses it. Everything else
/// in `given` is kept as written.
pub fn daemon_json(given: Option<&str>, store: ImageStore) -> Result<Option<String>> {
    if store == ImageStore::Classic {
        return Ok(given.map(str::to_string));
    }
    let step = "write the host's daemon.json";
    let mut settings: serde_json::Map<String, serde_json::Value> = match given {
        None => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            Error::input(
                step,
                format_args!("the daemon.json given is not a JSON object: {e}"),
            )
        })?,
    };
    let features = settings
        .entry("features")
        .or_insert_with(|| serde_json::json!({}));
    let Some(features) = features.as_object_mut() else {
        return Err(Error::input(
            step,
            "the daemon.json given has a \"features\" that is not an object",
        ));
    };
    features.insert("containerd-snapshotter".into(), true.into());
    let text = serde_json::to_string_pretty(&settings).expect("JSON values serialize");
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: ImageStore = ImageStore::Classic;
    const CONTAINERD: ImageStore = ImageStore::Containerd;

    #[test]
    fn distributions_parse_by_suite_name() {
        assert_eq!("sid".parse::<Distro>(), Ok(Distro::Sid));
        assert_eq!(" trixie".parse::<Distro>(), Ok(Distro::Trixie));
        let e = "buster".parse::<Distro>().unwrap_err();
        assert_eq!(
            e,
            "\"buster\" is not a lab distribution (bookworm, trixie or sid)"
        );
        for d in Distro::ALL {
            assert_eq!(d.to_string().parse::<Distro>(), Ok(d));
        }
    }

    #[test]
    fn nothing_asked_is_bookworm_on_the_classic_store() {
        let e = LabEngines::assign(2, &[], None).unwrap();
        assert_eq!(e.of(1), HostEngine::new(Distro::Bookworm, CLASSIC));
        assert_eq!(e.of(2), HostEngine::default());
        assert_eq!(LabEngines::default().of(7), HostEngine::default());
    }

    #[test]
    fn one_distribution_for_all_or_one_per_host() {
        let e = LabEngines::assign(3, &[Distro::Sid], Some(&[])).unwrap();
        for n in 1..=3 {
            assert_eq!(e.of(n), HostEngine::new(Distro::Sid, CONTAINERD));
        }
        let e = LabEngines::assign(
            3,
            &[Distro::Bookworm, Distro::Trixie, Distro::Sid],
            Some(&[3]),
        )
        .unwrap();
        assert_eq!(
            [e.of(1), e.of(2), e.of(3)],
            [
                HostEngine::new(Distro::Bookworm, CLASSIC),
                HostEngine::new(Distro::Trixie, CLASSIC),
                HostEngine::new(Distro::Sid, CONTAINERD),
            ]
        );
        assert_eq!(e.distros(3), Distro::ALL);
    }

    #[test]
    fn a_list_of_the_wrong_length_is_refused_with_an_example() {
        let e = LabEngines::assign(3, &[Distro::Trixie, Distro::Sid], None).unwrap_err();
        assert_eq!(
            e.cause,
            "2 distributions for 3 hosts: give one for every host, or one for all"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("e.g. --hosts 2 --distro trixie,sid")
        );
    }

    #[test]
    fn the_containerd_store_needs_a_newer_engine_and_a_real_host() {
        let e = LabEngines::assign(2, &[], Some(&[])).unwrap_err();
        assert_eq!(
            e.cause,
            "host 1: bookworm's Docker 20.10 has no containerd image store"
        );
        let e = LabEngines::assign(2, &[Distro::Sid], Some(&[3])).unwrap_err();
        assert_eq!(e.cause, "there is no host 3 in a lab of 2");
        let e = LabEngines::uniform(HostEngine::new(Distro::Bookworm, CLASSIC))
            .host(2, HostEngine::new(Distro::Bookworm, CONTAINERD));
        assert!(e.check(1).is_ok());
        assert!(e.check(2).is_err());
    }

    #[test]
    fn daemon_json_gains_the_containerd_feature_and_keeps_the_rest() {
        assert_eq!(daemon_json(None, CLASSIC).unwrap(), None);
        assert_eq!(
            daemon_json(Some("{\"init\": true}"), CLASSIC)
                .unwrap()
                .as_deref(),
            Some("{\"init\": true}")
        );
        let text = daemon_json(None, CONTAINERD).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"features": {"containerd-snapshotter": true}})
        );
        let text = daemon_json(
            Some(r#"{"log-driver": "local", "features": {"buildkit": true}}"#),
            CONTAINERD,
        )
        .unwrap()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"log-driver": "local",
                "features": {"buildkit": true, "containerd-snapshotter": true}})
        );
        assert!(daemon_json(Some("[1]"), CONTAINERD).is_err());
        assert!(daemon_json(Some(r#"{"features": 1}"#), CONTAINERD).is_err());
    }
}
