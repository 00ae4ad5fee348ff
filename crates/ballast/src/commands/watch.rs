//! `ballast watch`: loads the config, hands the watcher its SSH settings,
//! state file and a stop signal (SIGINT, SIGTERM, SIGHUP), serves its
//! metrics and status page beside it (and, with `watch.auto_rollback`,
//! the rollback guard), and prints what it says until it stops; then the
//! incidents still open.

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
    if let Some(url) = &args.check {
        return watch::image::check(url, std::time::Duration::from_secs(5)).await;
    }
    if args.image {
        return image(out).await;
    }
    let loaded = service::load(config)?;
    let w = &loaded.config.watch;
    let listen = w.listen_addr(args.listen.as_deref())?;
    let reach = service::reach(&loaded, accept_new_host_keys);
    let state_file = args
        .state
        .unwrap_or_else(|| loaded.dir.join(".ballast/watch-state.json"));
    let (status_tx, status_rx) = tokio::sync::watch::channel(Status::default());
    let guarded = status_tx.subscribe();
    let server = Server::start(listen, status_rx, w.interval, w.deadline).await?;
    let addr = server.addr();
    out.progress(
        None,
        &format!("serving http://{addr}/ (status page), /metrics and /healthz"),
    );
    let options = Options {
        state_file: state_file.clone(),
        concurrency: service::concurrency(&loaded),
        status: Some(status_tx),
    };
    let stop = crate::signals::cancel_on_signals();
    let (say, mut said) = mpsc::unbounded_channel();
    let guard_say = say.clone();
    let guarding = async {
        if !w.auto_rollback {
            return Ok(());
        }
        let (loaded, reach) = (loaded.clone(), reach.clone());
        let guarded =
            watch::guard::guard(loaded, reach, state_file, guarded, stop.clone(), guard_say).await;
        if guarded.is_err() {
            stop.cancel();
        }
        guarded
    };
    let watching = async {
        let status = watch::run(
            &loaded,
            reach.clone(),
            options,
            stop.clone().cancelled_owned(),
            say,
        )
        .await;
        // Without a watcher there is nothing left to guard.
        stop.cancel();
        status
    };
    let printing = async {
        while let Some((host, line)) = said.recv().await {
            out.progress(host.as_deref(), &line);
        }
    };
    let (status, guarded, ()) = tokio::join!(watching, guarding, printing);
    server.stop().await;
    let status = status?;
    guarded?;
    out.result(&status, &summary(&status));
    Ok(())
}

/// `watch --image`: the image watch runs from as an accessory, built on
/// this machine's engine; its tag.
async fn image(out: &Printer) -> Result<()> {
    let local = ballast_core::Engine::local().await?;
    out.phase("building the watch image");
    let tag = watch::image::image(&local).await?;
    out.finish();
    out.result(&serde_json::json!({ "image": tag }), &tag);
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
