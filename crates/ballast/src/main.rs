//! The `ballast` binary: parse arguments, run the command, print the outcome,
//! exit with the code that matches it. Everything else lives in the libraries.

mod cli;
mod commands;
mod exit;
mod output;

use clap::Parser;

use cli::{Cli, Command};
use output::Printer;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let out = Printer::new(cli.json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Build(args) => commands::build::run(args, &out).await,
            Command::Lab(command) => commands::lab::run(command, &out).await,
        }
    });
    let code = match result {
        Ok(()) => exit::SUCCESS,
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
