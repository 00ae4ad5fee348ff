//! The takeover exchange's messages and how they travel: one JSON line
//! each over the unix socket, listening sockets attached (`SCM_RIGHTS`),
//! every read and write within the step's deadline.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{Listener, STEP_TIMEOUT};

/// More listeners than this are refused (the kernel passes 253 at most).
const MAX_LISTENERS: usize = 64;
/// A longer message is garbage, not a list of listeners.
const MAX_MESSAGE: usize = 64 * 1024;

/// What the new process says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Request {
    /// Send me your listeners.
    Listeners,
    /// I accept from now on: stop.
    Accepting,
}

/// What the old process answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Reply {
    /// Its listeners, in the order of the attached descriptors.
    Listeners {
        instance: String,
        listeners: Vec<Listener>,
    },
    /// It stopped accepting and answering; it drains now.
    Released,
    /// It will not hand over (shutting down, or a malformed request).
    Refused { reason: String },
}

/// Sends `message` as one line, with `fds` attached to its first byte.
pub fn send<T: Serialize>(
    stream: &UnixStream,
    message: &T,
    fds: &[BorrowedFd<'_>],
    deadline: Instant,
) -> Result<(), String> {
    let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    line.push(b'\n');
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_LISTENERS || !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(format!(
            "{} listeners are more than a takeover carries",
            fds.len()
        ));
    }
    let mut sent = 0;
    while sent < line.len() {
        stream
            .set_write_timeout(Some(left(deadline)?))
            .map_err(|e| e.to_string())?;
        let n = rustix::net::sendmsg(
            stream,
            &[IoSlice::new(&line[sent..])],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .map_err(|e| timed_out_or(e, "the other side does not read"))?;
        // The descriptors went with the first bytes.
        control.clear();
        sent += n;
    }
    Ok(())
}

/// Receives one line and the descriptors sent with it.
pub fn receive<T: DeserializeOwned>(
    stream: &UnixStream,
    deadline: Instant,
) -> Result<(T, Vec<OwnedFd>), String> {
    let mut data = Vec::new();
    let mut fds = Vec::new();
    loop {
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| e.to_string())?;
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut chunk = [0u8; 4096];
        let received = rustix::net::recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut chunk)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| timed_out_or(e, "no answer"))?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(passed) = message {
                fds.extend(passed);
            }
        }
        if received.flags.contains(ReturnFlags::CTRUNC) {
            return Err(format!(
                "more than {MAX_LISTENERS} sockets were passed; they were dropped"
            ));
        }
        if received.bytes == 0 {
            return Err("the other side closed the connection".into());
        }
        data.extend_from_slice(&chunk[..received.bytes]);
        if let Some(end) = data.iter().position(|b| *b == b'\n') {
            if end + 1 != data.len() {
                return Err("more than one message at once".into());
            }
            let message = serde_json::from_slice(&data[..end])
                .map_err(|e| format!("not a takeover message ({e})"))?;
            return Ok((message, fds));
        }
        if data.len() > MAX_MESSAGE {
            return Err(format!("a message longer than {MAX_MESSAGE} bytes"));
        }
    }
}

fn left(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!("no answer within {STEP_TIMEOUT:?}"));
    }
    Ok(left)
}

fn timed_out_or(e: Errno, what: &str) -> String {
    if e == Errno::AGAIN {
        format!("{what} within {STEP_TIMEOUT:?}")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;
    use crate::takeover::ListenerKind;

    fn soon() -> Instant {
        Instant::now() + STEP_TIMEOUT
    }

    #[test]
    fn listening_sockets_travel_with_their_description() {
        let (old, new) = UnixStream::pair().unwrap();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let reply = Reply::Listeners {
            instance: "old".into(),
            listeners: vec![Listener {
                kind: ListenerKind::Http,
                addr,
            }],
        };
        send(&old, &reply, &[socket.as_fd()], soon()).unwrap();
        let (reply, fds) = receive::<Reply>(&new, soon()).unwrap();
        assert!(
            matches!(reply, Reply::Listeners { ref listeners, .. } if listeners[0].addr == addr)
        );
        assert_eq!(fds.len(), 1);
        let received = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(received.local_addr().unwrap(), addr);
        // The same kernel socket: a connection queued on it is accepted
        // through the received descriptor.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        drop(socket);
        received.accept().unwrap();
    }

    #[test]
    fn garbage_is_not_a_message() {
        let (mut old, new) = UnixStream::pair().unwrap();
        old.write_all(b"GET / HTTP/1.1\n").unwrap();
        let err = receive::<Request>(&new, soon()).unwrap_err();
        assert!(err.starts_with("not a takeover message"), "{err}");
    }

    #[test]
    fn silence_ends_at_the_deadline() {
        let (_old, new) = UnixStream::pair().unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = receive::<Request>(&new, deadline).unwrap_err();
        assert!(err.contains("within"), "{err}");
    }

    #[test]
    fn a_closed_peer_is_named() {
        let (old, new) = UnixStream::pair().unwrap();
        drop(old);
        let err = receive::<Request>(&new, soon()).unwrap_err();
        assert_eq!(err, "the other side closed the connection");
    }
}
