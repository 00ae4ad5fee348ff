//! What hello answers: its routes, the counter in its data directory, and the
//! server loop that finishes in-flight requests when asked to stop. `/db`
//! is answered by [`crate::db`].

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::db::Db;
use crate::knobs::Knobs;

/// The longest `/slow/<ms>` will wait, so a typo cannot park a request forever.
const MAX_SLOW: Duration = Duration::from_secs(600);

/// What every request handler shares.
pub struct App {
    /// The version baked into the image, answered by `GET /`.
    pub version: String,
    /// The host name, sent back in `X-Hello-Host` so tests can tell replicas apart.
    pub hostname: String,
    pub knobs: Knobs,
    /// The database `/db` writes to and reads from (`DATABASE_*`).
    pub db: Db,
    /// Serializes appends to the counter file.
    counter_lock: Mutex<()>,
}

impl App {
    pub fn new(version: String, hostname: String, knobs: Knobs) -> App {
        App {
            version,
            hostname,
            knobs,
            db: Db::Unset,
            counter_lock: Mutex::new(()),
        }
    }

    /// The same app with `/db` answered from `db`.
    pub fn with_db(self, db: Db) -> App {
        App { db, ..self }
    }

    /// Answers `/db`, which needs the request's query and body.
    pub async fn handle_db<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let (status, text) = self
            .db
            .respond(&parts.method, parts.uri.query(), body, &self.version)
            .await;
        self.text(status, text)
    }

    /// Answers one request. Never fails: every problem is a status code.
    pub async fn handle(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        match (method, path) {
            (&Method::GET, "/") => {
                // Even a zero sleep waits for the timer's next 1 ms tick.
                if !self.knobs.response_delay.is_zero() {
                    tokio::time::sleep(self.knobs.response_delay).await;
                }
                self.text(StatusCode::OK, format!("{}\n", self.version))
            }
            (&Method::GET, "/up") => match self.knobs.health_failure() {
                Some(why) => self.text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("unhealthy: {why}\n"),
                ),
                None => self.text(StatusCode::OK, "ok\n".into()),
            },
            (&Method::GET, "/count") => match self.count().await {
                Ok(n) => self.text(StatusCode::OK, format!("{n}\n")),
                Err(e) => self.text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            },
            (&Method::POST, "/count") => match self.increment().await {
                Ok(n) => self.text(StatusCode::OK, format!("{n}\n")),
                Err(e) => self.text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            },
            (&Method::GET, p) if p.starts_with("/slow/") => {
                match p["/slow/".len()..].parse::<u64>() {
                    Ok(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms).min(MAX_SLOW)).await;
                        self.text(StatusCode::OK, format!("{}\n", self.version))
                    }
                    Err(_) => self.text(
                        StatusCode::BAD_REQUEST,
                        "use /slow/<milliseconds>, e.g. /slow/3000\n".into(),
                    ),
                }
            }
            _ => self.text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    fn text(&self, status: StatusCode, body: String) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .header("x-hello-version", &self.version)
            .header("x-hello-host", &self.hostname)
            .body(Full::new(Bytes::from(body)))
            .expect("static headers are valid")
    }

    fn counter_file(&self) -> Result<PathBuf, String> {
        self.knobs
            .data_dir
            .as_ref()
            .map(|d| d.join("counter"))
            .ok_or_else(|| "no data directory: set HELLO_DATA_DIR".to_string())
    }

    /// How many times `/count` was posted to, across every container that
    /// shared the data directory.
    async fn count(&self) -> Result<usize, String> {
        let file = self.counter_file()?;
        match tokio::fs::read_to_string(&file).await {
            Ok(text) => Ok(text.lines().count()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(format!("reading {}: {e}", file.display())),
        }
    }

    /// Appends the next number as a line, so the file is its own history.
    async fn increment(&self) -> Result<usize, String> {
        let _guard = self.counter_lock.lock().await;
        let next = self.count().await? + 1;
        let file = self.counter_file()?;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .await
            .map_err(|e| format!("opening {}: {e}", file.display()))?;
        f.write_all(format!("{next}\n").as_bytes())
            .await
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
        f.sync_data()
            .await
            .map_err(|e| format!("syncing {}: {e}", file.display()))?;
        Ok(next)
    }
}

/// Serves until `shutdown` resolves, then stops accepting and waits for the
/// requests already in flight to finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let app = app.clone();
                    async move {
                        if req.uri().path() == "/ws" && crate::ws::is_upgrade(&req) {
                            return Ok::<_, Infallible>(crate::ws::accept(req, app.version.clone()));
                        }
                        if req.uri().path() == "/db" {
                            return Ok::<_, Infallible>(app.handle_db(req).await);
                        }
                        Ok::<_, Infallible>(app.handle(req.method(), req.uri().path()).await)
                    }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;

    fn app(knobs: Knobs) -> App {
        App::new("v7".into(), "box".into(), knobs)
    }

    async fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn root_answers_the_version() {
        let resp = app(Knobs::default()).handle(&Method::GET, "/").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-hello-host"], "box");
        assert_eq!(body(resp).await, "v7\n");
    }

    #[tokio::test]
    async fn health_follows_the_knob() {
        let ok = app(Knobs::default()).handle(&Method::GET, "/up").await;
        assert_eq!(ok.status(), StatusCode::OK);
        let failing = Knobs {
            fail_health: true,
            ..Knobs::default()
        };
        let bad = app(failing).handle(&Method::GET, "/up").await;
        assert_eq!(bad.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn health_fails_on_the_named_shard_only() {
        let on = |shard: &str| Knobs {
            fail_health_shard: Some("3".into()),
            shard: Some(shard.into()),
            ..Knobs::default()
        };
        let ok = app(on("2")).handle(&Method::GET, "/up").await;
        assert_eq!(ok.status(), StatusCode::OK);
        let bad = app(on("3")).handle(&Method::GET, "/up").await;
        assert_eq!(bad.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(bad).await,
            "unhealthy: SHARD=3 and HELLO_FAIL_HEALTH_SHARD=3\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn response_delay_slows_root() {
        let knobs = Knobs {
            response_delay: Duration::from_secs(5),
            ..Knobs::default()
        };
        let started = tokio::time::Instant::now();
        let resp = app(knobs).handle(&Method::GET, "/").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn counter_appends_to_the_data_dir_and_survives_a_new_app() {
        let dir = tempfile::tempdir().unwrap();
        let knobs = Knobs {
            data_dir: Some(dir.path().to_path_buf()),
            ..Knobs::default()
        };
        let first = app(knobs.clone());
        for expected in 1..=3 {
            let resp = first.handle(&Method::POST, "/count").await;
            assert_eq!(body(resp).await, format!("{expected}\n"));
        }
        let second = app(knobs);
        assert_eq!(
            body(second.handle(&Method::GET, "/count").await).await,
            "3\n"
        );
        let file = std::fs::read_to_string(dir.path().join("counter")).unwrap();
        assert_eq!(file, "1\n2\n3\n");
    }

    #[tokio::test]
    async fn counter_without_data_dir_says_what_to_set() {
        let resp = app(Knobs::default()).handle(&Method::POST, "/count").await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(resp).await.contains("HELLO_DATA_DIR"));
    }

    #[tokio::test]
    async fn unknown_paths_and_bad_slow_values() {
        let a = app(Knobs::default());
        assert_eq!(
            a.handle(&Method::GET, "/nope").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            a.handle(&Method::GET, "/slow/abc").await.status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn websocket_echo_names_the_version() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(app(Knobs::default())),
            std::future::pending(),
        ));
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), "v7 hi");
        server.abort();
    }

    /// `/db` is routed with its query and body; without a database it
    /// answers 503 and every other route works as before.
    #[tokio::test]
    async fn db_route_without_a_database_answers_503() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(app(Knobs::default())),
            std::future::pending(),
        ));
        for request in [
            "POST /db?payload=x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nrow",
            "GET /db HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ] {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(answer.contains("x-hello-version: v7"), "{answer}");
            assert!(answer.ends_with("no database: set DATABASE_HOST\n"), "{answer}");
        }
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }

    /// A request in flight when the stop signal arrives still gets its answer,
    /// and the server stops accepting new connections.
    #[tokio::test]
    async fn shutdown_finishes_in_flight_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(app(Knobs::default())),
            async move {
                let _ = stop_rx.await;
            },
        ));

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow/700 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(()).unwrap();

        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("v7\n"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops after the last request")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
