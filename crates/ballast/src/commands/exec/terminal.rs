//! The operator's side of an interactive `ballast exec`: the terminal put
//! in raw mode (every key goes to the command, Ctrl-C included) and put
//! back as it was on every way out, its size followed as it changes, and
//! stdin read into chunks for the command.

use std::io::{IsTerminal, Read};

use ballast_core::exec::TtySize;
use bytes::Bytes;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Whether stdin is a terminal, so the command gets one too.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The terminal in raw mode while this lives: dropped (on return, on an
/// error, in a panic's unwinding), it is restored as it was.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on stdin in raw mode.
    pub fn enable() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The terminal's size, from stdout (or stdin when stdout is redirected).
pub fn size() -> Option<TtySize> {
    let of = |ws: termios::Winsize| {
        (ws.ws_row > 0 && ws.ws_col > 0).then_some(TtySize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        })
    };
    termios::tcgetwinsize(std::io::stdout())
        .ok()
        .and_then(of)
        .or_else(|| termios::tcgetwinsize(std::io::stdin()).ok().and_then(of))
}

/// The terminal's new size each time it changes (SIGWINCH).
pub fn sizes() -> mpsc::Receiver<TtySize> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(s) = size() {
                if tx.send(s).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Stdin in chunks as they come, read on a thread of its own (a read
/// blocks); the channel closes at end of input.
pub fn input() -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    rx
}
