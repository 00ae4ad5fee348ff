//! Proxies as real child processes, for the takeover tests: the test
//! program runs itself again as the ignored test `takeover::child_proxy`,
//! which reads its settings from [`CHILD_ENV`] and runs
//! `ballast_proxy::run` until SIGTERM or a takeover, then exits (0 on
//! success). Also a load client that counts every answer that is not 2xx
//! and every connection error or timeout.

#![allow(dead_code)]
#![allow(clippy::print_stderr)] // a child's failure and the load it measured are reported

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_proxy::wire::StatusReport;
use ballast_proxy::{admin_request, AccessLog, AdminRequest, ProxyConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{header, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

/// The variable that carries a child proxy's settings.
pub const CHILD_ENV: &str = "BALLAST_TAKEOVER_TEST_CHILD";

/// How a child proxy runs: `http` addresses, the state directory (the
/// admin socket is `admin.sock` in it), the drain time, fail points.
#[derive(Debug, Clone)]
pub struct Spec {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    pub drain: Duration,
    /// `name=action` pairs for `fail::cfg`, `;`-separated.
    pub failpoints: String,
}

impl Spec {
    pub fn new(state_dir: &Path, http: &[SocketAddr]) -> Spec {
        Spec {
            http: http.to_vec(),
            https: Vec::new(),
            state_dir: state_dir.to_path_buf(),
            drain: Duration::from_secs(3),
            failpoints: String::new(),
        }
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.state_dir.join("admin.sock")
    }

    fn encode(&self) -> String {
        let list = |addrs: &[SocketAddr]| {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            addrs.join(",")
        };
        format!(
            "{}|{}|{}|{}|{}",
            list(&self.http),
            list(&self.https),
            self.state_dir.display(),
            self.drain.as_millis(),
            self.failpoints
        )
    }

    fn decode(text: &str) -> Spec {
        let parts: Vec<&str> = text.splitn(5, '|').collect();
        let list = |text: &str| -> Vec<SocketAddr> {
            let addrs = text.split(',').filter(|a| !a.is_empty());
            addrs.map(|a| a.parse().unwrap()).collect()
        };
        Spec {
            http: list(parts[0]),
            https: list(parts[1]),
            state_dir: PathBuf::from(parts[2]),
            drain: Duration::from_millis(parts[3].parse().unwrap()),
            failpoints: parts[4].to_string(),
        }
    }
}

/// The body of the `child_proxy` test: runs a proxy as [`CHILD_ENV`] says
/// and exits the process with its outcome.
pub fn run_child_from_env() {
    let Ok(text) = std::env::var(CHILD_ENV) else {
        return; // run by hand with --ignored: nothing to do
    };
    let spec = Spec::decode(&text);
    for entry in spec.failpoints.split(';').filter(|e| !e.is_empty()) {
        let (name, action) = entry.split_once('=').unwrap();
        fail::cfg(name, action).unwrap();
    }
    let mut config = ProxyConfig::new(spec.http[0], spec.admin_socket(), &spec.state_dir);
    config.http = spec.http.clone();
    config.https = spec.https.clone();
    config.access_log = AccessLog::Off;
    config.workers = 1;
    config.timeouts.shutdown_grace = spec.drain;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        ballast_proxy::run(config, async move {
            term.recv().await;
        })
        .await
    });
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("proxy failed: {e}");
            std::process::exit(1)
        }
    }
}

/// A proxy running as a child process.
pub struct ProxyProcess {
    child: Child,
    pub spec: Spec,
}

impl ProxyProcess {
    /// Starts a child proxy (it is killed if the test panics).
    pub fn spawn(spec: &Spec) -> ProxyProcess {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "takeover::child_proxy",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, spec.encode())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        ProxyProcess {
            child,
            spec: spec.clone(),
        }
    }

    /// Waits until the admin socket is answered by an instance other than
    /// `not` (a new process, or the first one), and returns its status.
    pub async fn ready(&mut self, not: Option<&str>) -> StatusReport {
        for _ in 0..2000 {
            if let Ok(Some(code)) = self.child.try_wait() {
                panic!("the proxy exited before it answered: {code}");
            }
            if let Some(status) = status_of(&self.spec.admin_socket()).await {
                if Some(status.instance.as_str()) != not {
                    return status;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the proxy did not answer on its admin socket within 20 s");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Waits (at most 60 s) for the process to exit; its status and stderr.
    pub async fn exited(mut self) -> (ExitStatus, String) {
        let mut stderr = self.child.stderr.take().unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            (self.child.wait().await.unwrap(), text)
        });
        waited.await.expect("the proxy did not exit within 60 s")
    }

    /// Kills it (SIGKILL: no cleanup) and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The status of the proxy answering at `socket`, if one does.
pub async fn status_of(socket: &Path) -> Option<StatusReport> {
    let answer = admin_request(socket, &AdminRequest::Status, Duration::from_secs(5)).await;
    answer.ok().and_then(|a| a.status)
}

/// The address in a status listener such as `http://127.0.0.1:8080`.
pub fn listener_addr(listener: &str) -> SocketAddr {
    listener.split_once("://").unwrap().1.parse().unwrap()
}

/// How a load client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// Keeps one open and reuses it (a browser, a load balancer).
    KeepAlive,
    /// A new one per request: the connections a takeover catches just
    /// accepted, their request not read yet.
    OnePerRequest,
}

/// Steady load: `clients` clients, each sending one request per `every`,
/// counting everything.
pub struct Load {
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub errors: Arc<Mutex<Vec<String>>>,
    started: std::time::Instant,
    tasks: JoinSet<()>,
}

impl Load {
    pub fn start(
        addr: SocketAddr,
        clients: usize,
        every: Duration,
        connections: Connections,
    ) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        for _ in 0..clients {
            let (ok, failed, errors) = (ok.clone(), failed.clone(), errors.clone());
            tasks.spawn(async move {
                let idle = match connections {
                    Connections::KeepAlive => 1,
                    Connections::OnePerRequest => 0,
                };
                let client: Client<HttpConnector, Empty<Bytes>> =
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(idle)
                        .build(HttpConnector::new());
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match one_request(&client, addr).await {
                        Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            errors.lock().unwrap().push(e);
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            });
        }
        Load {
            ok,
            failed,
            errors,
            started: std::time::Instant::now(),
            tasks,
        }
    }

    pub fn total(&self) -> u64 {
        self.ok.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    /// Waits until `more` further requests were answered (at most 60 s).
    pub async fn wait_for_more(&self, more: u64) {
        let target = self.total() + more;
        for _ in 0..6000 {
            if self.total() >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the load did not reach {target} requests within 60 s");
    }

    /// Stops the clients; prints the rate; returns (answered 2xx, failed,
    /// the first errors).
    pub async fn stop(mut self) -> (u64, u64, Vec<String>) {
        self.tasks.shutdown().await;
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "load: {} requests in {seconds:.1} s ({:.0} requests/s)",
            self.total(),
            self.total() as f64 / seconds
        );
        let errors = self.errors.lock().unwrap();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors.iter().take(10).cloned().collect(),
        )
    }
}

async fn one_request(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
) -> Result<(), String> {
    let request = Request::get(format!("http://{addr}/"))
        .header(header::HOST, "app.test")
        .body(Empty::new())
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {:?}", body.to_bytes()));
        }
        Ok(())
    });
    answered
        .await
        .unwrap_or_else(|_| Err("no answer within 10 s".into()))
}
