//! Upgraded connections (WebSocket and other `Upgrade:` protocols): once both
//! the client and the upstream switched protocols, bytes are copied both
//! ways until either side closes, the target's drain time is over, the
//! proxy shuts down, or a side stops reading.
//!
//! A tunnel may stay quiet for as long as its peers like: nothing waits to
//! be written, so nothing runs out. But a side that stops reading while the
//! other keeps writing would hold both connections (and the copy's buffer)
//! forever: once a write to either side is refused, some byte must go out
//! within `Timeouts::response_send`, or the tunnel is closed (the same
//! watch as client connections, see `conn` and `send`). Both sides are bounded alike:
//! an upstream that stops reading its client is no better.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::send::{SendWatch, SendWatched};
use crate::target::Target;

/// Joins the two upgraded connections and copies until one of them ends,
/// or a side takes nothing for `send`. The error says why the tunnel ended
/// early, for the access log.
pub async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    target: &Target,
    send: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (client, upstream) =
        tokio::try_join!(client, upstream).map_err(|e| format!("upgrade failed: {e}"))?;
    let (to_client, to_upstream) = (Arc::new(SendWatch::new()), Arc::new(SendWatch::new()));
    let mut client = SendWatched::new(TokioIo::new(client), Arc::clone(&to_client));
    let mut upstream = SendWatched::new(TokioIo::new(upstream), Arc::clone(&to_upstream));
    let ms = send.as_millis();
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            copied.map(|_| ()).map_err(|e| format!("tunnel broke: {e}"))
        }
        () = to_client.stalled(send) => Err(format!("tunnel closed: the client took nothing for {ms} ms")),
        () = to_upstream.stalled(send) => Err(format!("tunnel closed: the upstream took nothing for {ms} ms")),
        () = target.until_cut() => Err("tunnel closed: drain timeout of its target".into()),
        () = crate::server::stopped(&mut shutdown) => Err("tunnel closed: proxy shutting down".into()),
    }
}
