//! Upgraded connections (WebSocket and other `Upgrade:` protocols): once both
//! the client and the upstream switched protocols, bytes are copied both
//! ways until either side closes, the target's drain time is over, or the
//! proxy shuts down.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::target::Target;

/// Joins the two upgraded connections and copies until one of them ends.
/// The error says why the tunnel ended early, for the access log.
pub async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    target: &Target,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (client, upstream) =
        tokio::try_join!(client, upstream).map_err(|e| format!("upgrade failed: {e}"))?;
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            copied.map(|_| ()).map_err(|e| format!("tunnel broke: {e}"))
        }
        () = target.until_cut() => Err("tunnel closed: drain timeout of its target".into()),
        () = crate::server::stopped(&mut shutdown) => Err("tunnel closed: proxy shutting down".into()),
    }
}
