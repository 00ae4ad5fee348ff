//! `ballast watch`: loads the config, hands the watcher its SSH settings,
//! state file and a stop signal (SIGINT, SIGTERM, SIGHUP), and prints what
//! it says until it stops; then the incidents still open.

use std::path::Path;

use ballast_core::watch::{self, status::Status, Options};
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
    let reach = service::reach(&loaded, accept_new_host_keys);
    let state_file = args
        .state
        .unwrap_or_else(|| loaded.dir.join(".ballast/watch-state.json"));
    let options = Options {
        state_file,
        concurrency: service::concurrency(&loaded),
        status: None,
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
