//! hello: the app ballast deploys in its own tests and quickstart.
//!
//! `GET /` answers the version baked into the image (`/VERSION`), `GET /up` is
//! the health check, `GET|POST /count` reads or bumps a counter kept in
//! `HELLO_DATA_DIR`, `GET|POST /db` reads (count and checksum) or adds rows in
//! the PostgreSQL database `DATABASE_*` names, `GET /slow/<ms>` answers late,
//! `GET /ws` echoes WebSocket messages prefixed by the version. Knobs in
//! `knobs.rs` make it boot slowly, fail its health check, crash, answer
//! slowly, leave orphaned processes or take its time to stop. On SIGTERM or
//! SIGINT it stops accepting, finishes what is in flight, then exits.
//! `hello TOOL ...` runs one of the small tools of `process.rs` instead
//! (`echo`, `cat`, `exit`, `env`, `zombies`), for `ballast exec` in an
//! image that has no shell.

mod app;
mod db;
mod knobs;
mod process;
mod ws;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use app::App;
use knobs::Knobs;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = process::tool(&args) {
        std::process::exit(code);
    }
    let knobs = match Knobs::from_env() {
        Ok(k) => k,
        Err(e) => fail(&format!("hello: {e}")),
    };
    let version = std::fs::read_to_string(&knobs.version_file)
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "dev".to_string());
    let hostname = std::env::var("HOSTNAME")
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()))
        .unwrap_or_else(|_| "unknown".to_string());

    if let Some(after) = knobs.crash_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            fail(&format!(
                "hello: crashing after {after:?} as HELLO_CRASH_AFTER asks"
            ));
        });
    }
    process::spawn_orphans(knobs.spawn_orphans, log);
    tokio::time::sleep(knobs.startup_delay).await;

    let listener = match TcpListener::bind(("0.0.0.0", knobs.port)).await {
        Ok(l) => l,
        Err(e) => fail(&format!("hello: cannot listen on port {}: {e}", knobs.port)),
    };
    log(&format!("hello {version} listening on port {}", knobs.port));
    let stop_delay = knobs.stop_delay;
    let app = Arc::new(App::new(version, hostname, knobs).with_db(db::Db::from_env()));
    app::serve(listener, app, stop_signal()).await;
    if !stop_delay.is_zero() {
        log(&format!(
            "hello: finishing for {stop_delay:?} as HELLO_STOP_DELAY asks"
        ));
        tokio::time::sleep(stop_delay).await;
    }
    log("hello stopped: in-flight requests finished");
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => log("hello: SIGTERM, finishing in-flight requests"),
        _ = int.recv() => log("hello: SIGINT, finishing in-flight requests"),
    }
}

#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("{line}");
}

fn fail(line: &str) -> ! {
    log(line);
    std::process::exit(1)
}
