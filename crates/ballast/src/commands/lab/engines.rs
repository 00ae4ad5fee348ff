//! The `lab up` arguments that choose each host's engine: which Debian
//! release (so which Docker) and which image store. Parsing only: what
//! they mean for a lab of N hosts is `ballast_lab::LabEngines::assign`.

use clap::builder::TypedValueParser;
use clap::Args;

use ballast_core::Result;
use ballast_lab::{Distro, LabEngines};

#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// Debian release of the hosts, which fixes their Docker: bookworm
    /// (20.10), trixie (26.1) or sid (28.5). One for every host, or a list
    /// with one per host in order (`--hosts 3 --distro bookworm,trixie,sid`).
    /// Each release's host image is built once and cached.
    #[arg(long, value_delimiter = ',', value_name = "DISTRO",
          value_parser = clap::builder::PossibleValuesParser::new(Distro::ALL.map(Distro::suite))
              .map(|s| s.parse::<Distro>().expect("a possible value")))]
    pub distro: Vec<Distro>,
    /// Run the engines with the containerd image store (daemon.json
    /// `"features": {"containerd-snapshotter": true}`), as fresh Docker 29
    /// installs do: alone for every host, `=2,3` for those hosts only.
    /// Needs trixie or sid.
    #[arg(long, value_name = "HOSTS", num_args = 0.., require_equals = true, value_delimiter = ',')]
    pub containerd_store: Option<Vec<usize>>,
}

impl EngineArgs {
    /// The engine of every host of a lab of `hosts`.
    pub fn engines(&self, hosts: usize) -> Result<LabEngines> {
        LabEngines::assign(hosts, &self.distro, self.containerd_store.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_lab::{HostEngine, ImageStore};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Up {
        #[command(flatten)]
        engines: EngineArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<EngineArgs, clap::Error> {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        Up::try_parse_from(all).map(|u| u.engines)
    }

    #[test]
    fn the_arguments_are_well_formed() {
        use clap::CommandFactory;
        Up::command().debug_assert();
    }

    #[test]
    fn nothing_given_is_bookworm_on_the_classic_store() {
        let e = parse(&[]).unwrap();
        assert!(e.distro.is_empty());
        assert_eq!(e.containerd_store, None);
        assert_eq!(
            e.engines(3).unwrap(),
            LabEngines::assign(3, &[], None).unwrap()
        );
    }

    #[test]
    fn a_list_of_distributions_and_hosts_on_containerd() {
        let e = parse(&["--distro", "bookworm,trixie,sid", "--containerd-store=3"]).unwrap();
        assert_eq!(e.distro, [Distro::Bookworm, Distro::Trixie, Distro::Sid]);
        assert_eq!(e.containerd_store.as_deref(), Some(&[3][..]));
        let engines = e.engines(3).unwrap();
        assert_eq!(
            engines.of(3),
            HostEngine::new(Distro::Sid, ImageStore::Containerd)
        );
        assert_eq!(engines.of(2).store, ImageStore::Classic);
    }

    #[test]
    fn the_containerd_flag_alone_means_every_host() {
        let e = parse(&["--distro", "sid", "--containerd-store"]).unwrap();
        assert_eq!(e.containerd_store.as_deref(), Some(&[][..]));
        let engines = e.engines(2).unwrap();
        assert_eq!(engines.of(1).store, ImageStore::Containerd);
        assert_eq!(engines.of(2).store, ImageStore::Containerd);
    }

    #[test]
    fn an_unknown_distribution_names_the_known_ones() {
        let e = parse(&["--distro", "buster"]).unwrap_err().to_string();
        assert!(
            e.contains("[possible values: bookworm, trixie, sid]"),
            "{e}"
        );
    }
}
