//! Interrupts: Ctrl-C, SIGTERM (a CI runner cancelling a job) and SIGHUP (a
//! closed terminal) all ask the running command to stop cleanly — undo what
//! is half done, release the lock, write the audit line. A second signal
//! exits at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::exit;

/// A token cancelled on the first SIGINT, SIGTERM or SIGHUP.
pub fn cancel_on_signals() -> CancellationToken {
    watch_signals(Second::Exits)
}

/// A token cancelled on SIGINT, SIGTERM or SIGHUP, any number of times:
/// with the terminal in raw mode the process must never exit before it is
/// restored, so a second signal does not end it at once (the caller stops
/// what runs after its grace instead).
pub fn cancel_on_any_signal() -> CancellationToken {
    watch_signals(Second::Ignored)
}

/// What a second signal does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Second {
    /// Exits at once: the user insists.
    Exits,
    /// Nothing more: cleanup must finish first.
    Ignored,
}

fn watch_signals(second: Second) -> CancellationToken {
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
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            if cancel.is_cancelled() && second == Second::Exits {
                std::process::exit(exit::INTERRUPTED);
            }
            cancel.cancel();
        }
    });
    token
}
