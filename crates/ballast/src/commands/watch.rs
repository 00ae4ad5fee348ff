//! `ballast watch`: loads the config, hands the watcher its SSH settings,
//! state file and a stop signal (SIGINT, SIGTERM, SIGHUP), serves its
//! metrics and status page beside it, and prints what it says until it
//! stops; then the incidents still open.

use std::path::Path;

use ballast_core::watch::{self, serve::Server, status::Status, Options};
use ballast_core::Result;
use tokio::sync::mpsc;

use super::service;
use crate::cli::WatchArgs;
use crate::output::Printer;

pub async fn run(
    config: &Path,
    accept_new_host_keys: bool,
    args: WatchArgs,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let w = &loaded.config.watch;
    let listen = w.listen_addr(args.listen.as_deref())?;
    let reach = service::reach(&loaded, accept_new_host_keys);
    let state_file = args
        .state
        .unwrap_or_else(|| loaded.dir.join(".ballast/watch-state.json"));
    let (status_tx, status_rx) = tokio::sync::watch::channel(Status::default());
    let server = Server::start(listen, status_rx, w.interval, w.deadline).await?;
    let addr = server.addr();
    out.progress(
        None,
        &format!("serving http://{addr}/ (status page), /metrics and /healthz"),
    );
    let options = Options {
        state_file,
        concurrency: service::concurrency(&loaded),
        status: Some(status_tx),
    };
    let stop = crate::signals::cancel_on_signals();
    let (say, mut said) = mpsc::unbounded_channel();
    let watching = watch::run(&loaded, reach, options, stop.cancelled_owned(), say);
    let printing = async {
        while let Some((host, line)) = said.recv().await {
            out.progress(host.as_deref(), &line);
        }
    };
    let (status, ()) = tokio::join!(watching, printing);
    server.stop().await;
    let status = status?;
    out.result(&status, &summary(&status));
    Ok(())
}

/// The incidents left open when watch stops.
fn summary(status: &Status) -> String {
    if status.incidents.is_empty() {
        return "stopped: no incident open".into();
    }
    let mut text = format!("stopped with {} incidents open:\n", status.incidents.len());
    for i in &status.incidents {
        text.push_str(&format!(
            "  {} since {}: {}\n",
            i.key,
            watch::rfc3339(i.opened_at),
            i.cause
        ));
    }
    text
}
