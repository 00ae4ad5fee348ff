//! Interrupts: Ctrl-C, SIGTERM (a CI runner cancelling a job) and SIGHUP (a
//! closed terminal) all ask the running command to stop cleanly — undo what
//! is half done, release the lock, write the audit line. A second signal
//! exits at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::exit;

/// A token cancelled on the first SIGINT, SIGTERM or SIGHUP.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        // Without handlers the default action (exit) stays: nothing better
        // can be done then.
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            if round == 0 {
                cancel.cancel();
            }
        }
        std::process::exit(exit::INTERRUPTED);
    });
    token
}
