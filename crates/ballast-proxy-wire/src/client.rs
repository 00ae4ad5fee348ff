//! The admin API's client: one command sent as HTTP/1.1 + JSON over the
//! proxy's unix socket, its answer read back, all within a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::{AdminRequest, AdminResponse};

/// Why an admin request got no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be reached.
    #[error(
        "cannot reach the proxy's admin socket {}: {source}; hint: is ballast-proxy running \
         on this host?",
        socket.display()
    )]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// No answer came within the deadline.
    #[error("the proxy did not answer `{command}` within {} ms", deadline.as_millis())]
    Timeout {
        /// The command sent.
        command: &'static str,
        /// The deadline given.
        deadline: Duration,
    },
    /// The exchange broke off, or the answer was not an admin response.
    #[error("`{command}` to the proxy failed: {reason}")]
    Protocol {
        /// The command sent.
        command: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The proxy answered, with an error.
    #[error("the proxy refused `{command}`: {message}")]
    Refused {
        /// The command sent.
        command: &'static str,
        /// The proxy's explanation.
        message: String,
        /// The full answer.
        response: Box<AdminResponse>,
    },
}

/// Sends one command to the admin socket at `socket` and waits up to
/// `deadline` for its answer. A deploy answers only once switched and
/// drained, so give it the deploy and drain timeouts plus a margin. A deploy
/// or remove the proxy has started runs to its end even when the deadline
/// passes or the connection drops (ask `status` to see where it went).
pub async fn admin_request(
    socket: &Path,
    request: &AdminRequest,
    deadline: Duration,
) -> Result<AdminResponse, AdminError> {
    let command = request.command();
    match tokio::time::timeout(deadline, exchange(socket, request)).await {
        Err(_) => Err(AdminError::Timeout { command, deadline }),
        Ok(result) => result,
    }
}

async fn exchange(socket: &Path, request: &AdminRequest) -> Result<AdminResponse, AdminError> {
    let command = request.command();
    let protocol = |reason: String| AdminError::Protocol { command, reason };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| AdminError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let (method, path) = request.route();
    let body = request
        .body()
        .map(|b| Bytes::from(serde_json::to_vec(&b).expect("requests always serialize")))
        .unwrap_or_default();
    let http = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "ballast-proxy")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| protocol(e.to_string()))?;
    let answer = sender
        .send_request(http)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
        .to_bytes();
    driver.abort();
    let response: AdminResponse = serde_json::from_slice(&bytes).map_err(|e| {
        protocol(format!(
            "answer {status} is not an admin response ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })?;
    if response.ok {
        Ok(response)
    } else {
        Err(AdminError::Refused {
            command,
            message: response
                .error
                .clone()
                .unwrap_or_else(|| format!("answer {status} without a reason")),
            response: Box::new(response),
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    use super::*;

    /// A socket in a fresh directory that answers every connection with
    /// `answer` (raw HTTP), or never answers when `None`.
    fn serve(answer: Option<String>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    match answer {
                        Some(text) => stream.write_all(text.as_bytes()).await.unwrap(),
                        None => std::future::pending().await,
                    }
                });
            }
        });
        (dir, socket)
    }

    fn http(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_answer_with_ok_is_returned() {
        let (_dir, socket) = serve(Some(http("200 OK", r#"{"ok":true}"#)));
        let response = admin_request(&socket, &AdminRequest::Status, DEADLINE)
            .await
            .unwrap();
        assert_eq!(response, AdminResponse::ok());
    }

    #[tokio::test]
    async fn a_refusal_carries_the_proxys_sentence() {
        let body = r#"{"ok":false,"error":"no service `x`"}"#;
        let (_dir, socket) = serve(Some(http("422 Unprocessable Entity", body)));
        let err = admin_request(&socket, &AdminRequest::Status, DEADLINE)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the proxy refused `status`: no service `x`"
        );
        let AdminError::Refused { response, .. } = err else {
            panic!("not a refusal: {err:?}");
        };
        assert_eq!(*response, AdminResponse::error("no service `x`"));
    }

    #[tokio::test]
    async fn an_answer_that_is_not_json_is_a_protocol_error() {
        let (_dir, socket) = serve(Some(http("502 Bad Gateway", "upstream down")));
        let err = admin_request(&socket, &AdminRequest::Status, DEADLINE)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AdminError::Protocol {
                    command: "status",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(
                "`status` to the proxy failed: answer 502 Bad Gateway is not an admin response"
            ),
            "{err}"
        );
        assert!(err.to_string().ends_with(": upstream down"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_socket_asks_whether_the_proxy_runs() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let err = admin_request(&socket, &AdminRequest::Status, DEADLINE)
            .await
            .unwrap_err();
        assert!(matches!(err, AdminError::Connect { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("hint: is ballast-proxy running on this host?"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_proxy_times_out_at_the_deadline() {
        let (_dir, socket) = serve(None);
        let deadline = Duration::from_millis(1500);
        let err = admin_request(&socket, &AdminRequest::Status, deadline)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the proxy did not answer `status` within 1500 ms"
        );
    }
}
