//! Where a host's Docker comes from: which distributions setup knows, the
//! package manager and package that give each one Docker, and the
//! commands that ask about and install that package, as data (program and
//! arguments), with the parsers of what they print.

use std::time::Duration;

use crate::doctor::facts::Os;

/// A package manager setup can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Debian, Ubuntu: dpkg and apt.
    Apt,
    /// Fedora, Amazon Linux 2023: rpm and dnf.
    Dnf,
    /// Amazon Linux 2: rpm and yum.
    Yum,
}

/// How a known distribution gets Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packaging {
    pub manager: Manager,
    /// The engine's package.
    pub package: &'static str,
    /// The client's package, where the distribution ships it apart from
    /// the engine (Debian from trixie on): installed with it, so `docker`
    /// works on the host for whoever is on call.
    pub client: Option<&'static str>,
}

/// One distribution in the table: its os-release `ID` and how it gets
/// Docker, or why setup will not install it there.
struct Known {
    id: &'static str,
    name: &'static str,
    how: Result<Packaging, &'static str>,
}

const fn apt(package: &'static str) -> Result<Packaging, &'static str> {
    Ok(Packaging {
        manager: Manager::Apt,
        package,
        client: Some("docker-cli"),
    })
}

const fn rpm(manager: Manager, package: &'static str) -> Result<Packaging, &'static str> {
    Ok(Packaging {
        manager,
        package,
        client: None,
    })
}

const NO_DOCKER: &str = "it ships no Docker package of its own, only Podman: install Docker CE from Docker's repository yourself, then leave out `docker.version`";

/// The distributions setup knows, by os-release `ID`; a host whose `ID`
/// is not here is matched by its `ID_LIKE`.
const KNOWN: &[Known] = &[
    Known {
        id: "debian",
        name: "Debian",
        how: apt("docker.io"),
    },
    Known {
        id: "ubuntu",
        name: "Ubuntu",
        how: apt("docker.io"),
    },
    Known {
        id: "fedora",
        name: "Fedora",
        how: rpm(Manager::Dnf, "moby-engine"),
    },
    Known {
        id: "amzn",
        name: "Amazon Linux",
        how: rpm(Manager::Dnf, "docker"),
    },
    Known {
        id: "rhel",
        name: "Red Hat Enterprise Linux",
        how: Err(NO_DOCKER),
    },
    Known {
        id: "centos",
        name: "CentOS",
        how: Err(NO_DOCKER),
    },
    Known {
        id: "ol",
        name: "Oracle Linux",
        how: Err(NO_DOCKER),
    },
    Known {
        id: "rocky",
        name: "Rocky Linux",
        how: Err(NO_DOCKER),
    },
    Known {
        id: "almalinux",
        name: "AlmaLinux",
        how: Err(NO_DOCKER),
    },
];

/// The distributions setup installs Docker on, for messages.
pub fn supported() -> String {
    let names: Vec<&str> = KNOWN
        .iter()
        .filter(|k| k.how.is_ok())
        .map(|k| k.name)
        .collect();
    names.join(", ")
}

/// How `os` gets Docker, or why setup cannot install it there.
pub fn packaging(os: &Os) -> Result<Packaging, String> {
    let by_id = |id: &str| KNOWN.iter().find(|k| k.id == id);
    let known = by_id(&os.id).or_else(|| os.id_like.iter().find_map(|id| by_id(id)));
    let Some(known) = known else {
        return Err(format!(
            "setup does not know how to install Docker on {} (os-release ID `{}`); it knows {}",
            describe(os),
            os.id,
            supported()
        ));
    };
    let mut how = known
        .how
        .map_err(|why| format!("{} is {}: {why}", describe(os), known.name))?;
    // Amazon Linux 2 predates dnf.
    if known.id == "amzn" && os.version_id == "2" {
        how.manager = Manager::Yum;
    }
    Ok(how)
}

fn describe(os: &Os) -> String {
    if os.pretty_name.is_empty() {
        format!("{} {}", os.id, os.version_id).trim().to_string()
    } else {
        os.pretty_name.clone()
    }
}

/// A command to run on a host: arguments are data, never a shell string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: &'static str,
    pub args: Vec<String>,
    pub deadline: Duration,
}

fn command(program: &'static str, args: &[&str], deadline: Duration) -> Command {
    Command {
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        deadline,
    }
}

/// Deadline of a question to the package database.
const ASK: Duration = Duration::from_secs(30);
/// Deadline of refreshing the package lists from the distribution's mirrors.
const REFRESH: Duration = Duration::from_secs(300);
/// Deadline of installing the engine (download and unpack).
const INSTALL: Duration = Duration::from_secs(900);

impl Manager {
    /// Prints the installed version of `package` (see [`Manager::installed_version`]).
    pub fn installed(self, package: &str) -> Command {
        match self {
            Manager::Apt => command(
                "dpkg-query",
                &["--show", "--showformat=${Status}\t${Version}", package],
                ASK,
            ),
            Manager::Dnf | Manager::Yum => command(
                "rpm",
                &["--query", "--queryformat", "%{VERSION}-%{RELEASE}", package],
                ASK,
            ),
        }
    }

    /// The installed version in what [`Manager::installed`] printed, if any.
    pub fn installed_version(self, succeeded: bool, stdout: &str) -> Option<String> {
        if !succeeded {
            return None;
        }
        let out = stdout.trim();
        match self {
            // Removed but not purged still has a version: "deinstall ok config-files".
            Manager::Apt => {
                let (status, version) = out.split_once('\t')?;
                (status.ends_with(" installed") && !version.is_empty()).then(|| version.to_string())
            }
            Manager::Dnf | Manager::Yum => {
                (!out.is_empty() && !out.contains(' ')).then(|| out.to_string())
            }
        }
    }

    /// Whether `package` is held at its version (apt only); `None` where
    /// the manager has no holds setup uses.
    pub fn holds(self) -> Option<Command> {
        match self {
            Manager::Apt => Some(command("apt-mark", &["showhold"], ASK)),
            Manager::Dnf | Manager::Yum => None,
        }
    }

    /// Refreshes the lists of available packages.
    pub fn refresh(self) -> Command {
        match self {
            Manager::Apt => command(
                "apt-get",
                &["update", "-q", "-o", "DPkg::Lock::Timeout=300"],
                REFRESH,
            ),
            Manager::Dnf => command("dnf", &["makecache", "-q"], REFRESH),
            Manager::Yum => command("yum", &["makecache", "-q"], REFRESH),
        }
    }

    /// Lists every version of `package` the package registry has.
    pub fn available(self, package: &str) -> Command {
        match self {
            Manager::Apt => command("apt-cache", &["madison", package], ASK),
            Manager::Dnf => command(
                "dnf",
                &["list", "--showduplicates", "-q", "--available", package],
                ASK,
            ),
            Manager::Yum => command(
                "yum",
                &["list", "--showduplicates", "-q", "available", package],
                ASK,
            ),
        }
    }

    /// The versions in what [`Manager::available`] printed, newest first
    /// as the manager lists them, without repeats.
    pub fn available_versions(self, package: &str, stdout: &str) -> Vec<String> {
        let mut versions: Vec<String> = Vec::new();
        for line in stdout.lines() {
            let version = match self {
                // " docker.io | 20.10.24+dfsg1-1+deb12u1 | http://... Packages"
                Manager::Apt => {
                    let mut fields = line.split('|').map(str::trim);
                    match (fields.next(), fields.next()) {
                        (Some(name), Some(v)) if name == package && !v.is_empty() => v,
                        _ => continue,
                    }
                }
                // "moby-engine.x86_64   24.0.5-1.fc39   updates"
                Manager::Dnf | Manager::Yum => {
                    let mut fields = line.split_whitespace();
                    match (fields.next(), fields.next()) {
                        (Some(name), Some(v)) if name.starts_with(&format!("{package}.")) => {
                            v.rsplit_once(':').map_or(v, |(_, v)| v)
                        }
                        _ => continue,
                    }
                }
            };
            if !versions.iter().any(|known| known == version) {
                versions.push(version.to_string());
            }
        }
        versions
    }

    /// Installs each `(package, version)` at exactly that version,
    /// replacing another version of it (up or down) and its hold.
    pub fn install(self, packages: &[(String, String)]) -> Command {
        let wanted: Vec<String> = packages
            .iter()
            .map(|(p, v)| match self {
                Manager::Apt => format!("{p}={v}"),
                Manager::Dnf | Manager::Yum => format!("{p}-{v}"),
            })
            .collect();
        let mut args: Vec<String> = match self {
            // apt asks nothing with DEBIAN_FRONTEND set; `env` sets it
            // without a shell.
            // needrestart (Ubuntu) only lists what it would restart; apt
            // waits for another apt (a boot-time update) instead of
            // failing; `--no-remove`: never take another Docker away.
            Manager::Apt => [
                "DEBIAN_FRONTEND=noninteractive",
                "NEEDRESTART_MODE=l",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "--no-remove",
                "--allow-downgrades",
                "--allow-change-held-packages",
                "-o",
                "DPkg::Lock::Timeout=300",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
            ]
            .map(String::from)
            .to_vec(),
            Manager::Dnf => ["dnf", "install", "-y", "-q"].map(String::from).to_vec(),
            Manager::Yum => ["yum", "install", "-y", "-q"].map(String::from).to_vec(),
        };
        args.push("--".into());
        args.extend(wanted);
        Command {
            program: "env",
            args,
            deadline: INSTALL,
        }
    }

    /// Holds `packages` at their installed version so an unattended
    /// upgrade does not move the engine; `None` where the manager has no
    /// such hold without plugins.
    pub fn hold(self, packages: &[String]) -> Option<Command> {
        match self {
            Manager::Apt => {
                let mut args = vec!["hold".to_string()];
                args.extend(packages.iter().cloned());
                Some(Command {
                    program: "apt-mark",
                    args,
                    deadline: ASK,
                })
            }
            Manager::Dnf | Manager::Yum => None,
        }
    }

    /// The command an operator types to list `package`'s versions.
    pub fn listing(self, package: &str) -> String {
        match self {
            Manager::Apt => format!("apt-cache madison {package}"),
            Manager::Dnf => format!("dnf list --showduplicates {package}"),
            Manager::Yum => format!("yum list --showduplicates {package}"),
        }
    }
}

/// The client's version that goes with engine version `engine`: the
/// longest one `engine` starts with (a rebuild of the engine adds `+bN`).
pub fn client_version(engine: &str, client_versions: &[String]) -> Option<String> {
    client_versions
        .iter()
        .filter(|v| engine.starts_with(v.as_str()))
        .max_by_key(|v| v.len())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::parse::os_release;

    #[test]
    fn debian_ubuntu_fedora_and_amazon_get_their_own_package() {
        let os = |text: &str| os_release(text).unwrap();
        let debian = packaging(&os("ID=debian\nVERSION_ID=\"12\"\n")).unwrap();
        assert_eq!(
            (debian.manager, debian.package),
            (Manager::Apt, "docker.io")
        );
        let mint = packaging(&os("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n")).unwrap();
        assert_eq!(mint.package, "docker.io");
        let fedora = packaging(&os("ID=fedora\nVERSION_ID=40\n")).unwrap();
        assert_eq!(
            (fedora.manager, fedora.package),
            (Manager::Dnf, "moby-engine")
        );
        let al2 = packaging(&os("ID=\"amzn\"\nVERSION_ID=\"2\"\n")).unwrap();
        assert_eq!((al2.manager, al2.package), (Manager::Yum, "docker"));
        let al2023 = packaging(&os("ID=\"amzn\"\nVERSION_ID=\"2023\"\n")).unwrap();
        assert_eq!(al2023.manager, Manager::Dnf);
    }

    #[test]
    fn unknown_and_docker_less_distributions_are_refused_with_the_reason() {
        let os = os_release("ID=plan9\nPRETTY_NAME=\"Plan 9 from Bell Labs\"\n").unwrap();
        let why = packaging(&os).unwrap_err();
        assert_eq!(
            why,
            "setup does not know how to install Docker on Plan 9 from Bell Labs (os-release ID `plan9`); it knows Debian, Ubuntu, Fedora, Amazon Linux"
        );
        let rocky = os_release(
            "ID=rocky\nID_LIKE=\"rhel centos fedora\"\nPRETTY_NAME=\"Rocky Linux 9.4\"\n",
        )
        .unwrap();
        let why = packaging(&rocky).unwrap_err();
        assert!(
            why.starts_with("Rocky Linux 9.4 is Rocky Linux: it ships no Docker package"),
            "{why}"
        );
    }

    #[test]
    fn installed_versions_from_dpkg_and_rpm() {
        let apt = Manager::Apt;
        assert_eq!(
            apt.installed_version(true, "install ok installed\t20.10.24+dfsg1-1+deb12u1"),
            Some("20.10.24+dfsg1-1+deb12u1".into())
        );
        assert_eq!(
            apt.installed_version(true, "deinstall ok config-files\t20.10.24+dfsg1-1+deb12u1"),
            None
        );
        assert_eq!(apt.installed_version(false, ""), None);
        let dnf = Manager::Dnf;
        assert_eq!(
            dnf.installed_version(true, "24.0.5-1.fc39\n"),
            Some("24.0.5-1.fc39".into())
        );
        assert_eq!(
            dnf.installed_version(true, "package moby-engine is not installed"),
            None
        );
    }

    #[test]
    fn available_versions_from_madison_and_dnf_list() {
        let madison = " docker.io | 20.10.24+dfsg1-1+deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages\n docker.io | 20.10.24+dfsg1-1 | http://deb.debian.org/debian bookworm/main amd64 Packages\n docker.io | 20.10.24+dfsg1-1+deb12u1 | http://security.debian.org bookworm-security/main amd64 Packages\n";
        assert_eq!(
            Manager::Apt.available_versions("docker.io", madison),
            ["20.10.24+dfsg1-1+deb12u1", "20.10.24+dfsg1-1"]
        );
        let dnf = "Available Packages\nmoby-engine.x86_64    24.0.5-1.fc39    fedora\nmoby-engine.x86_64    2:24.0.9-1.fc39  updates\n";
        assert_eq!(
            Manager::Dnf.available_versions("moby-engine", dnf),
            ["24.0.5-1.fc39", "24.0.9-1.fc39"]
        );
    }

    #[test]
    fn install_pins_every_package_without_a_shell() {
        let pins = [(
            "docker.io".to_string(),
            "26.1.5+dfsg1-9+deb13u1+b1".to_string(),
        )];
        let c = Manager::Apt.install(&pins);
        assert_eq!(c.program, "env");
        assert_eq!(
            c.args.first().map(String::as_str),
            Some("DEBIAN_FRONTEND=noninteractive")
        );
        assert_eq!(
            c.args.last().map(String::as_str),
            Some("docker.io=26.1.5+dfsg1-9+deb13u1+b1")
        );
        let c = Manager::Dnf.install(&[("moby-engine".into(), "24.0.5-1.fc39".into())]);
        assert_eq!(
            c.args,
            [
                "dnf",
                "install",
                "-y",
                "-q",
                "--",
                "moby-engine-24.0.5-1.fc39"
            ]
        );
    }

    #[test]
    fn the_client_goes_with_its_engine() {
        let clients = [
            "26.1.5+dfsg1-9+deb13u1".to_string(),
            "26.1.5+dfsg1-9".to_string(),
        ];
        assert_eq!(
            client_version("26.1.5+dfsg1-9+deb13u1+b1", &clients).as_deref(),
            Some("26.1.5+dfsg1-9+deb13u1")
        );
        assert_eq!(client_version("27.0", &clients), None);
        assert_eq!(client_version("27.0", &[]), None);
    }
}
