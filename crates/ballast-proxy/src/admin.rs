//! The admin API: HTTP/1.1 + JSON over a unix socket, never TCP.
//!
//! The socket lives in a host directory (ballast reaches it over SSH stream
//! forwarding) and is made readable and writable by its owner only. One
//! route per command, `/v1/<command>` (see [`crate::wire`]); every answer is
//! an [`AdminResponse`], and a malformed request gets an error while the
//! socket keeps serving. The client, [`crate::admin_request`], lives in the
//! wire crate with the types.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::control::Control;
use crate::server::Phase;
use crate::wire::{AdminRequest, AdminResponse};

/// The largest request body the admin API reads.
const MAX_BODY: usize = 1 << 20;

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    /// Another process answers on the socket.
    #[error(
        "another proxy is already listening on {}; hint: stop it first, or give this one \
         another admin socket",
        path.display()
    )]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Creating, replacing or binding the socket failed.
    #[error("cannot {action} admin socket {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Binds the admin socket at `path`, replacing a stale one left by a proxy
/// that died, and restricts it to its owner.
pub async fn bind(path: &Path) -> Result<UnixListener, AdminSocketError> {
    let io = |action| {
        let path = path.to_path_buf();
        move |source| AdminSocketError::Io {
            action,
            path,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io("restrict the directory of"))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AdminSocketError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io("remove the stale"))?;
    }
    // A test hook (see `BALLAST_FAILPOINTS`): the bind fails, as in a
    // directory that is full or read-only.
    if fail::eval("admin-bind", |_| ()).is_some() {
        return Err(io("bind")(std::io::Error::other(
            "the test hook `admin-bind`",
        )));
    }
    let listener = UnixListener::bind(path).map_err(io("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("restrict"))?;
    Ok(listener)
}

/// Serves the admin API while the process is [`Phase::Serving`]. Once it
/// leaves it, no admin connection is accepted any more (after a takeover
/// the new process answers at the socket's path). Taken over
/// ([`Phase::Draining`]), the requests under way still get their answer:
/// cutting one would cut another service's deploy mid-drain, and ballast,
/// seeing no answer, would believe the switch failed and remove the
/// container the saved route points to. Those answered, the connections
/// close; whatever is still open at [`Phase::Closing`] (a stop, or the end
/// of the drain) is cut.
pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::server::left_serving(&mut phase) => break,
        };
        connections.spawn(connection(stream, Arc::clone(&control), phase.clone()));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    loop {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() {
                break;
            },
            () = closing(&mut phase) => break,
        }
    }
    connections.shutdown().await;
}

/// Resolves at [`Phase::Closing`] (or once the sender is gone).
async fn closing(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|now| *now == Phase::Closing).await;
}

/// Serves one admin connection; once the process leaves
/// [`Phase::Serving`], it answers the request under way (if any) and
/// closes instead of waiting for another.
async fn connection(stream: UnixStream, control: Arc<Control>, mut phase: watch::Receiver<Phase>) {
    let service = hyper::service::service_fn(move |req| {
        let control = Arc::clone(&control);
        async move { Ok::<_, Infallible>(answer(req, &control).await) }
    });
    let served =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => return,
        () = crate::server::left_serving(&mut phase) => {}
    }
    served.as_mut().graceful_shutdown();
    let _ = served.await;
}

/// Answers one admin request.
async fn answer(req: Request<Incoming>, control: &Arc<Control>) -> Response<Full<Bytes>> {
    let (status, response) = match parse(req).await {
        Ok(request) => {
            let response = control.execute(request).await;
            let status = if response.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, response)
        }
        Err((status, message)) => (status, AdminResponse::error(message)),
    };
    let body = serde_json::to_vec(&response).expect("responses always serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a request into a command, or says what is wrong with it.
async fn parse(req: Request<Incoming>) -> Result<AdminRequest, (StatusCode, String)> {
    let path = req.uri().path().to_string();
    let Some(command) = path.strip_prefix("/v1/") else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("unknown route `{path}`; commands live under /v1/<command>"),
        ));
    };
    let command = command.to_string();
    let expected = if command == "status" {
        Method::GET
    } else {
        Method::POST
    };
    if req.method() != expected && crate::wire::COMMANDS.contains(&command.as_str()) {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("`{command}` takes {expected}, not {}", req.method()),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the request body: {e}"),
            )
        })?
        .to_bytes();
    AdminRequest::from_route(&command, &body).map_err(|e| {
        let status = if crate::wire::COMMANDS.contains(&command.as_str()) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::NOT_FOUND
        };
        (status, e)
    })
}
