//! This process's side of takeovers: the socket the next process asks, and
//! the answer that hands the listeners over and starts the drain.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::watch;

use super::channel::{receive, send, Reply, Request};
use super::{Listener, TakeoverError, STEP_TIMEOUT};
pub use crate::control::Refusal;
use crate::server::Phase;

/// This process's side of takeovers: the socket later processes ask.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
}

/// Hands the state over to the new process: runs the closure it is given
/// (which tells the new process `released`) and, only if that succeeded,
/// switches this process to [`Phase::Draining`] so it saves nothing more;
/// both under the control's write lock (`Control::release_state`).
pub type Release =
    Arc<dyn Fn(&mut dyn FnMut() -> Result<(), String>) -> Result<(), Refusal> + Send + Sync>;

/// What this process hands to the next one.
pub struct Offer {
    /// This process's instance id.
    pub instance: String,
    /// Its listeners with a duplicate of each socket.
    pub listeners: Vec<(Listener, OwnedFd)>,
}

/// Replaces whatever is at `path` (a stale socket, or the one of the
/// process just taken over, which no longer answers) and binds it, 0600.
pub fn bind(path: &Path) -> Result<Server, TakeoverError> {
    let failed = |action| {
        move |source| TakeoverError::Socket {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed("replace")(e))?,
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(failed("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(failed("restrict"))?;
    Ok(Server { listener })
}

/// Answers takeovers until one completes (then `phase` is
/// [`Phase::Draining`]) or this process stops serving. One exchange at a
/// time: a second new process waits for the first to finish or fail.
pub async fn serve(
    server: Server,
    offer: Offer,
    phase: Arc<watch::Sender<Phase>>,
    release: Release,
) {
    let offer = Arc::new(offer);
    let mut watching = phase.subscribe();
    loop {
        let stream = tokio::select! {
            accepted = server.listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "takeover socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::server::left_serving(&mut watching) => break,
        };
        let stream = match stream.into_std().and_then(|s| {
            s.set_nonblocking(false)?;
            Ok(s)
        }) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot answer a takeover");
                continue;
            }
        };
        let (offered, phase, release) =
            (Arc::clone(&offer), Arc::clone(&phase), Arc::clone(&release));
        match tokio::task::spawn_blocking(move || answer(&stream, &offered, &phase, &release)).await
        {
            Ok(Ok(())) => {
                tracing::info!("taken over by a new proxy process; draining");
                break;
            }
            Ok(Err(reason)) => {
                tracing::warn!(%reason, "a takeover did not complete; this proxy keeps serving")
            }
            Err(e) => tracing::warn!(error = %e, "a takeover failed inside the proxy"),
        }
    }
}

/// One exchange with a new process; `Ok` once it took over.
fn answer(
    stream: &UnixStream,
    offer: &Offer,
    phase: &watch::Sender<Phase>,
    release: &Release,
) -> Result<(), String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let refuse = |reason: String| {
        let refused = Reply::Refused {
            reason: reason.clone(),
        };
        let _ = send(stream, &refused, &[], deadline);
        reason
    };
    match receive::<Request>(stream, deadline) {
        Ok((Request::Listeners, _)) => {}
        Ok((Request::Accepting, _)) => return Err(refuse("`accepting` before `listeners`".into())),
        Err(e) => return Err(refuse(format!("unreadable request: {e}"))),
    }
    if *phase.borrow() != Phase::Serving {
        return Err(refuse("this proxy is shutting down".into()));
    }
    let fds: Vec<BorrowedFd<'_>> = offer.listeners.iter().map(|(_, fd)| fd.as_fd()).collect();
    let listeners = Reply::Listeners {
        instance: offer.instance.clone(),
        listeners: offer.listeners.iter().map(|(l, _)| *l).collect(),
    };
    send(stream, &listeners, &fds, deadline)?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    match receive::<Request>(stream, deadline) {
        Ok((Request::Accepting, _)) => {}
        Ok((Request::Listeners, _)) => return Err(refuse("`listeners` asked twice".into())),
        Err(e) => return Err(format!("the new process did not confirm: {e}")),
    }
    // Under the control's write lock: a route or certificate change is
    // either saved before the new process reads the state, or refused.
    // `released` goes out first and this process stops accepting only if
    // it went out: when the new process died after `accepting` (or gave
    // up), the send fails and this one keeps serving, instead of letting
    // go with nobody accepting. What remains is a new process that dies
    // after the kernel took `released` and before it reads it: nothing
    // this side can tell from one that reads it.
    let mut tell = || {
        if fail::eval("takeover-before-released", |_| ()).is_some() {
            return Err("the test hook `takeover-before-released` failed the send".into());
        }
        send(stream, &Reply::Released, &[], deadline)
    };
    match release(&mut tell) {
        Ok(()) => Ok(()),
        Err(Refusal::NotServing) => Err(refuse("this proxy is shutting down".into())),
        // Said in case the new process still listens (it gave up waiting
        // otherwise), so it exits at once rather than at its deadline.
        Err(Refusal::NotTold(reason)) => Err(refuse(format!(
            "the new process could not be told it took over ({reason}); this proxy did not \
             let go"
        ))),
    }
}
