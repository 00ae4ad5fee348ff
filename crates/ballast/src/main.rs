//! The `ballast` binary: parse arguments, run the command, print the outcome,
//! exit with the code that matches it. Everything else lives in the libraries.

mod aliases;
mod cli;
mod commands;
mod exit;
mod output;
mod signals;

use cli::Command;
use output::Printer;

fn main() {
    let cli = aliases::parse();
    if let Some(d) = &cli.destination {
        // Read by every command's config loading; set before any thread.
        std::env::set_var("BALLAST_DESTINATION", d);
    }
    init_logging(cli.verbose);
    // Unwrapped lines keep paths, commands and names whole for copy and grep.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let out = Printer::new(cli.json);
    if let Err(e) = ballast_core::faults::arm_from_env() {
        out.error(&e);
        std::process::exit(exit::code(e.kind));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime");
    let result = runtime.block_on(async {
        let (config, accept) = (cli.config.as_path(), cli.accept_new_host_keys);
        let done = |r: ballast_core::Result<()>| r.map(|()| exit::SUCCESS);
        match cli.command {
            Command::Init => done(commands::setup::init(config, &out)),
            Command::Config { reference } => done(commands::setup::show(config, reference, &out)),
            Command::Secrets(command) => done(commands::secrets::run(config, command, &out)),
            Command::Plan(args) => done(commands::deploy::plan(config, accept, args, &out).await),
            Command::Deploy(args) => {
                done(commands::deploy::deploy(config, accept, args, &out).await)
            }
            Command::Rollback(args) => {
                done(commands::deploy::rollback(config, accept, args, &out).await)
            }
            Command::Releases(args) => {
                done(commands::inspect::releases(config, accept, args, &out).await)
            }
            Command::Status(args) => {
                done(commands::inspect::status(config, accept, args, &out).await)
            }
            Command::Logs(args) => done(commands::logs::run(config, accept, args, &out).await),
            // exec exits with the command's own code once it ran.
            Command::Exec(args) => commands::exec::run(config, accept, args, &out).await,
            // accessory exec exits with the command's own code once it ran.
            Command::Accessory(command) => {
                commands::accessory::run(config, accept, command, &out).await
            }
            Command::Prune(args) => {
                done(commands::maintain::prune(config, accept, args, &out).await)
            }
            Command::Remove(args) => {
                done(commands::maintain::remove(config, accept, args, &out).await)
            }
            Command::Lock(command) => {
                done(commands::lock::run(config, accept, command, &out).await)
            }
            Command::Audit { tail } => {
                done(commands::lock::audit(config, accept, tail, &out).await)
            }
            // doctor picks its exit code from what it found (exit::DOCTOR).
            Command::Doctor(args) => commands::doctor::run(config, accept, args, &out).await,
            Command::Setup {
                force_unsafe_host,
                upgrade_docker,
                restart_docker,
            } => {
                let machines = ballast_core::setup::Options {
                    engine: true,
                    upgrade_docker,
                    restart_docker,
                    registry_ca: None,
                };
                done(
                    commands::proxy::setup(config, accept, force_unsafe_host, machines, &out).await,
                )
            }
            Command::Proxy(command) => {
                done(commands::proxy::dispatch(command, config, accept, &out).await)
            }
            Command::Watch(args) => done(commands::watch::run(config, accept, args, &out).await),
            Command::Build(args) => done(commands::build::run(args, &out).await),
            Command::Lab(command) => done(commands::lab::run(command, &out).await),
            // No config, no host, no engine: made from the clap definition.
            Command::Completions { shell } => done(commands::docs::completions(shell, &out)),
            Command::Man { dir } => done(commands::docs::man(dir.as_deref(), &out)),
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            exit::code(e.kind)
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,ballast=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Libraries log request bodies (a container's environment) at debug
    // level: every line goes through the redaction layer.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ballast_core::redact::Redacting(std::io::stderr()))
        .init();
}
