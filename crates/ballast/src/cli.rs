//! What the user can type: every command and flag, validated by clap. The
//! commands in `commands/` turn these into domain requests.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run Docker in production on many hosts, safely.
#[derive(Debug, Parser)]
#[command(name = "ballast", version, about)]
pub struct Cli {
    /// Print machine-readable JSON lines instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More detail in logs (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The service's config file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "ballast.yml",
        env = "BALLAST_CONFIG"
    )]
    pub config: PathBuf,

    /// The destination: lay `ballast.NAME.yml` over the config (and read
    /// `.ballast/secrets.NAME` first).
    #[arg(
        short = 'd',
        long,
        global = true,
        value_name = "NAME",
        env = "BALLAST_DESTINATION"
    )]
    pub destination: Option<String>,

    /// Record the keys of hosts never seen before in known_hosts (changed
    /// keys are still refused).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter ballast.yml.
    Init,
    /// Print the resolved config (secrets redacted), or the config reference.
    Config {
        /// Print the reference of every key instead (docs/config.md).
        #[arg(long)]
        reference: bool,
    },
    /// The secrets the config lists: which roles use each and where its
    /// value comes from.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Show what deploy would do, per host, without doing it.
    Plan(PlanArgs),
    /// Build (or take) the image and roll it out to every host.
    Deploy(DeployArgs),
    /// Return to a retained release (default: the one before the current).
    Rollback(RollbackArgs),
    /// List the releases the hosts keep.
    Releases(ScopeArgs),
    /// Host by role: version, state, health, uptime.
    Status(ScopeArgs),
    /// Logs of every host, merged, each line prefixed by host and role.
    Logs(LogsArgs),
    /// Run a command in a role's running container: on the role's first
    /// host, on `--host`, or on every host with `--all`.
    #[command(after_help = crate::exit::exec_help())]
    Exec(ExecArgs),
    /// Accessories (a database, a cache): boot, upgrade, roll back, stop,
    /// remove; an app deploy never touches them.
    #[command(subcommand)]
    Accessory(crate::commands::accessory::AccessoryCommand),
    /// Remove stopped releases past `deploy.retain` and the images nothing
    /// uses any more; never a volume or a host directory.
    Prune(PruneArgs),
    /// Take the service off its hosts: containers, proxy routes, images and
    /// ballast's files; never its data.
    Remove(RemoveArgs),
    /// The deploy lock.
    #[command(subcommand)]
    Lock(LockCommand),
    /// The audit log: who did what, where and when.
    Audit {
        /// How many records.
        #[arg(long, default_value_t = 50)]
        tail: usize,
    },
    /// Check every host (and the config) against known Docker failure modes.
    #[command(after_help = crate::exit::doctor_help())]
    Doctor(DoctorArgs),
    /// Prepare every host: Docker installed at the pinned version
    /// (`docker.version`), dockerd's settings, doctor's checks, and
    /// ballast-proxy where roles need it. A second run changes nothing.
    Setup {
        /// Set up this host even though doctor blocks it (repeatable;
        /// written to the audit log).
        #[arg(long = "force-unsafe-host", value_name = "HOST")]
        force_unsafe_host: Vec<String>,
        /// Replace a Docker engine of another version than `docker.version`
        /// (the package restarts dockerd; containers keep running where
        /// live-restore is on).
        #[arg(long)]
        upgrade_docker: bool,
        /// Restart dockerd where its settings changed, so it reads them.
        #[arg(long)]
        restart_docker: bool,
    },
    /// ballast-proxy: run it (inside its container), or look at it on the hosts.
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Watch every host until stopped: restart what fell over (with
    /// backoff, a circuit breaker and a share of a role's hosts at a time)
    /// and alert through incidents that open, escalate and recover.
    Watch(WatchArgs),
    /// Build an image from a context directory on the local engine.
    Build(BuildArgs),
    /// A lab of Docker hosts with sshd on this machine, for trying ballast.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print the completion script for a shell.
    ///
    /// bash: add `source <(ballast completions bash)` to ~/.bashrc, or save
    /// the script as ~/.local/share/bash-completion/completions/ballast.
    ///
    /// zsh: save it as `_ballast` in a directory of $fpath.
    ///
    /// fish: save it as ~/.config/fish/completions/ballast.fish.
    Completions {
        /// The shell to complete in.
        shell: Shell,
    },
    /// Print the man page (roff); read it with `ballast man | man -l -`.
    Man {
        /// Write ballast.1 and one page per command (ballast-deploy.1,
        /// ballast-lock-status.1, ...) into this directory instead, e.g.
        /// ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// The shells `ballast completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    #[command(flatten)]
    pub scope: ChangeScopeArgs,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Version to roll out [default: the git commit of the build context,
    /// or the image's tag].
    #[arg(long)]
    pub version: Option<String>,
}

/// The part of the fleet a command works on.
#[derive(Debug, Args, Default, Clone)]
pub struct ScopeArgs {
    /// Only these hosts (comma-separated or repeated), as named in the config.
    #[arg(long, alias = "host", value_delimiter = ',', value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only these roles (comma-separated or repeated).
    #[arg(long, alias = "role", value_delimiter = ',', value_name = "ROLE")]
    pub roles: Vec<String>,
}

/// The part of the fleet a change works on, and whether it may go on
/// without hosts that do not answer.
#[derive(Debug, Args, Default, Clone)]
pub struct ChangeScopeArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Go on without the hosts that do not answer; they are named in the
    /// output and the audit log, and the next full deploy brings them in line.
    #[arg(long)]
    pub skip_unreachable: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    #[command(flatten)]
    pub scope: ChangeScopeArgs,
    /// A note kept with the lock and in the audit log.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Deploy to this host even though doctor blocks it (repeatable;
    /// written to the audit log).
    #[arg(long = "force-unsafe-host", value_name = "HOST")]
    pub force_unsafe_host: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The release to return to [default: the one before the current].
    pub version: Option<String>,
    #[command(flatten)]
    pub scope: ChangeScopeArgs,
    /// A note kept with the lock and in the audit log.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Roll back on this host even though doctor blocks it (repeatable;
    /// written to the audit log).
    #[arg(long = "force-unsafe-host", value_name = "HOST")]
    pub force_unsafe_host: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only these hosts and roles (images go whatever the roles: they are
    /// the service's, not a role's).
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Say what would be removed, and change nothing (no lock, no audit
    /// line).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Only these hosts (comma-separated or repeated), as named in the config.
    #[arg(long, alias = "host", value_delimiter = ',', value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Remove without asking. Without it, ballast asks you to type the
    /// service's name, and refuses when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only these hosts and roles (`--role`/`--host` are kept as aliases).
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub window: LogWindowArgs,
}

/// Which log lines to show: `ballast logs` and `ballast accessory logs`.
#[derive(Debug, Args)]
pub struct LogWindowArgs {
    /// Keep following every host.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines newer than this (e.g. 10m, 2h).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Lines per container to start from.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    /// Only lines matching this regular expression.
    #[arg(long)]
    pub grep: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The role whose running container runs the command.
    pub role: String,
    /// Run on this host of the role [default: its first].
    #[arg(long, value_name = "HOST", conflicts_with = "all")]
    pub host: Option<String>,
    /// Run on every host of the role at once, each output line prefixed by
    /// its host.
    #[arg(long)]
    pub all: bool,
    /// Interactive: forward stdin to the command, and give it a terminal
    /// when stdin is one (Ctrl-C then goes to the command).
    #[arg(short, long, conflicts_with = "all")]
    pub interactive: bool,
    /// The program and its arguments, after `--`; run as they are, with no
    /// shell (give one yourself: `-- sh -c '...'`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The deploy lock lives on every host of the service; each subcommand works
/// on all of them and reports per host.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Per host: free or held, by whom, for what, since when, and whether
    /// its holder still runs.
    Status,
    /// Take the lock on every host for manual maintenance and print the
    /// token that releases it. Nothing renews it and no command takes it
    /// over: it stays until released.
    Acquire {
        /// A note kept with the lock and in the audit log.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Give the lock back with its holder's token; without one, say who
    /// holds it and refuse (exit code 4) unless --force.
    Release {
        /// The token of the holder (printed by `lock acquire`): only a lock
        /// taken with it is released.
        #[arg(long, conflicts_with = "force")]
        token: Option<String>,
        /// Remove the lock whoever holds it, after checking with `ballast
        /// lock status` that its holder is gone (written to the audit log).
        #[arg(long)]
        force: bool,
    },
}

/// Secrets are read (and their `$(...)` commands run) as every command
/// reads them; nothing reaches a host.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Each secret the config lists, the roles using it and where its value
    /// comes from.
    ///
    /// The source is the environment, a secrets file and line, or a
    /// `$(...)` command on such a line. Values are never shown, unless
    /// --reveal.
    Print {
        /// Print the values too, on stdout, as they are (with --json, as
        /// `value`): for your eyes or a pipe, never for a shared log.
        #[arg(long)]
        reveal: bool,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this host (repeatable).
    #[arg(long)]
    pub host: Vec<String>,
    /// Print the facts gathered from each host as JSON, without judging
    /// them (exit code 0).
    #[arg(long)]
    pub facts: bool,
    /// Fix what setup can fix safely before checking: dockerd's settings
    /// (log rotation, live restore, default init), written after their
    /// diff is shown; never the engine's version.
    #[arg(long, conflicts_with = "facts")]
    pub fix: bool,
    /// With --fix: restart dockerd where its settings changed, so it reads them.
    #[arg(long, requires = "fix")]
    pub restart_docker: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Run the proxy in the foreground (what its container does).
    Run(ProxyRunArgs),
    /// Each host's proxy: its routes, targets and requests in flight.
    Status(ScopeArgs),
    /// The proxies' logs (one JSON access line per request), merged.
    Logs {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Keep following every host.
        #[arg(short, long)]
        follow: bool,
        /// Lines per host to start from.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Restart the proxies one host at a time; routes survive.
    Restart(ScopeArgs),
    /// Answer a role's requests with a 503 maintenance page (on), or route
    /// them again (off).
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// The proxied role [default: every proxied role].
        #[arg(long)]
        role: Option<String>,
    },
    /// Hold a role's new requests (for a short interruption) until resumed
    /// or until --max passes.
    Pause {
        /// The proxied role [default: every proxied role].
        #[arg(long)]
        role: Option<String>,
        /// Release held requests after this long even without resume.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        max: Duration,
    },
    /// Release the requests a pause holds.
    Resume {
        /// The proxied role [default: every proxied role].
        #[arg(long)]
        role: Option<String>,
    },
    /// Move every proxy to this ballast's version, one host at a time.
    Upgrade(ScopeArgs),
    /// Each host's certificates: names, expiry, fingerprint. With --renew,
    /// obtains again the ACME certificates that are due (under the lock).
    Certs {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Renew the ACME certificates that expire within `renew_before`
        /// (and install certificate files that changed).
        #[arg(long, conflicts_with = "force_renew")]
        renew: bool,
        /// Renew every ACME certificate now, whatever its expiry.
        #[arg(long)]
        force_renew: bool,
    },
}

#[derive(Debug, Args)]
pub struct ProxyRunArgs {
    /// Address for plain HTTP (repeatable).
    #[arg(long = "http", value_name = "ADDR", default_values = ["0.0.0.0:80"])]
    pub http: Vec<std::net::SocketAddr>,
    /// Address for HTTPS (repeatable).
    #[arg(long = "https", value_name = "ADDR")]
    pub https: Vec<std::net::SocketAddr>,
    /// How long requests and WebSockets open at a stop, or when a new proxy
    /// takes over, may take to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Where a running proxy hands its listening sockets to a new one
    /// [default: <state-dir>/takeover.sock].
    #[arg(long)]
    pub takeover_socket: Option<PathBuf>,
    /// PEM certificate chain for HTTPS.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The admin API's unix socket (never a TCP port).
    #[arg(long, default_value = "/var/lib/ballast/proxy/admin.sock")]
    pub admin_socket: PathBuf,
    /// Where routes are kept across restarts.
    #[arg(long, default_value = "/var/lib/ballast/proxy")]
    pub state_dir: PathBuf,
    /// Threads serving requests [default: one per core].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub workers: usize,
    /// A load balancer in front whose X-Forwarded-For, Forwarded,
    /// X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host are kept, as an
    /// address range like 10.0.0.0/8 (repeatable); from any other client
    /// they are replaced.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<ballast_proxy::Cidr>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Where open incidents and restart counts are kept across restarts
    /// of watch [default: .ballast/watch-state.json beside the config].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Where to serve metrics (/metrics), the status page (/) and
    /// /healthz, e.g. 127.0.0.1:9465 [default: watch.listen].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Build the image watch runs from as an accessory on a host
    /// (`ballast-watch:<build>`, on this machine's engine, no registry)
    /// and print its tag.
    #[arg(long, conflicts_with_all = ["state", "listen", "check"])]
    pub image: bool,
    /// Check a running watch instead of watching: exit 0 when URL (its
    /// /healthz, on loopback) answers 200 within 5s. The watch image's
    /// health check, which has no curl.
    #[arg(long, value_name = "URL", hide = true, conflicts_with_all = ["state", "listen"])]
    pub check: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Directory sent to the engine; `.dockerignore` in it is honoured.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Tag of the image, e.g. hello:v1.
    #[arg(short, long)]
    pub tag: String,
    /// Dockerfile, relative to the context.
    #[arg(short, long, default_value = "Dockerfile")]
    pub file: String,
    /// Build argument KEY=VALUE (repeatable).
    #[arg(long = "build-arg", value_parser = parse_key_value)]
    pub build_args: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start a lab: N Docker hosts with sshd on a private network.
    Up(LabUpArgs),
    /// Remove a lab's containers, network, volumes and directory.
    Down(LabNameArgs),
    /// List labs, their hosts and whether each answers.
    Status(LabStatusArgs),
    /// Build an image offline (once: it is cached by its recipe's hash) and
    /// print its tag: `host` (a lab host) or `postgres` (the PostgreSQL
    /// accessory image).
    Image(LabImageArgs),
    /// Send steady HTTP load to URLs until stopped (Ctrl-C, SIGTERM or
    /// `--duration`), counting every request; prints a report of versions
    /// seen and failures (connection errors included).
    Load(LabLoadArgs),
}

#[derive(Debug, Args)]
pub struct LabLoadArgs {
    /// http:// URLs, taken in turn.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Requests per second, in all.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// Stop after this long [default: when interrupted].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct LabDirArgs {
    /// Directory that holds lab directories [default: $BALLAST_LAB_HOME or ~/.local/state/ballast/labs].
    #[arg(long, env = "BALLAST_LAB_HOME")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LabNameArgs {
    /// Name of the lab.
    #[arg(long, default_value = "dev", env = "BALLAST_LAB")]
    pub name: String,
    #[command(flatten)]
    pub dir: LabDirArgs,
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub lab: LabNameArgs,
    /// How many hosts (1 to 200).
    #[arg(long, default_value_t = 3)]
    pub hosts: usize,
    /// Subnet of the lab network [default: the first free /24 of 10.213.0.0/16].
    #[arg(long)]
    pub subnet: Option<String>,
    /// How long hosts may take to answer.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub engines: crate::commands::lab::EngineArgs,
}

#[derive(Debug, Args)]
pub struct LabImageArgs {
    /// Which image.
    pub image: LabImage,
    /// For `host`: the Debian release of the host, which fixes its Docker:
    /// bookworm (20.10, the default), trixie (26.1) or sid (28.5).
    #[arg(long, value_name = "DISTRO",
          value_parser = clap::builder::PossibleValuesParser::new(ballast_lab::Distro::ALL.map(ballast_lab::Distro::suite))
              .map(|s| s.parse::<ballast_lab::Distro>().expect("a possible value")))]
    pub distro: Option<ballast_lab::Distro>,
}

/// The images `ballast lab image` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabImage {
    /// A lab host: Debian with sshd and dockerd.
    Host,
    /// Debian's PostgreSQL 15, for accessories.
    Postgres,
}

#[derive(Debug, Args)]
pub struct LabStatusArgs {
    /// Only this lab.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub dir: LabDirArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write it like 90s or 2m)"))
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn lab_up_defaults() {
        let cli = Cli::try_parse_from(["ballast", "lab", "up"]).unwrap();
        let Command::Lab(LabCommand::Up(up)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(up.hosts, 3);
        assert_eq!(up.lab.name, "dev");
        assert_eq!(up.timeout, Duration::from_secs(120));
    }

    #[test]
    fn lab_image_takes_a_distro_for_the_host_image() {
        let image =
            |args: &[&str]| -> Result<(LabImage, Option<ballast_lab::Distro>), clap::Error> {
                let cli = Cli::try_parse_from([&["ballast", "lab", "image"], args].concat())?;
                match cli.command {
                    Command::Lab(LabCommand::Image(i)) => Ok((i.image, i.distro)),
                    other => panic!("parsed as {other:?}"),
                }
            };
        assert_eq!(image(&["host"]).unwrap(), (LabImage::Host, None));
        assert_eq!(
            image(&["host", "--distro", "sid"]).unwrap(),
            (LabImage::Host, Some(ballast_lab::Distro::Sid))
        );
        let err = image(&["host", "--distro", "buster"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bookworm") && err.contains("trixie"), "{err}");
    }

    #[test]
    fn exec_takes_the_command_after_the_double_dash_as_is() {
        let cli = Cli::try_parse_from(["ballast", "exec", "web", "-i", "--", "ls", "-l", "--all"])
            .unwrap();
        let Command::Exec(exec) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(exec.role, "web");
        assert!(exec.interactive && !exec.all);
        assert_eq!(exec.command, ["ls", "-l", "--all"]);
        assert!(Cli::try_parse_from(["ballast", "exec", "web"]).is_err());
        assert!(
            Cli::try_parse_from(["ballast", "exec", "web", "--all", "-i", "--", "sh"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "ballast", "exec", "web", "--all", "--host", "a", "--", "sh"
        ])
        .is_err());
    }

    #[test]
    fn build_args_must_be_key_value() {
        assert!(Cli::try_parse_from(["ballast", "build", "-t", "x", "--build-arg", "A=1"]).is_ok());
        let err = Cli::try_parse_from(["ballast", "build", "-t", "x", "--build-arg", "nope"])
            .unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    }
}
