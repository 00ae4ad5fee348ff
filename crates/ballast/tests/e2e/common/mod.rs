//! The shared harness of the end-to-end tests: run the ballast binary, bring
//! labs up and always down again, build hello images, speak HTTP to hosts;
//! skip what needs a Docker engine where none answers ([`engine`],
//! [`require_engine!`]); snapshot what the binary prints ([`snapshot`]).
#![allow(dead_code)]

pub mod browser;
pub mod child;
pub mod engine;
pub mod load;
pub mod pebble;
pub mod postgres;
pub mod report;
pub mod snapshot;
pub mod tls_load;
pub mod watch;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use ballast_core::Engine;
use ballast_lab::Inventory;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptionsBuilder;

/// Skips the test that calls it when no Docker engine answers: it prints
/// `skipped: TEST needs a Docker engine (...)` to stderr and returns. With
/// `BALLAST_REQUIRE_ENGINE=1` (as `.ci/run` sets) it fails instead, so CI
/// never passes by skipping. Every test that uses Docker (labs, images, the
/// local engine) starts with it.
#[macro_export]
macro_rules! require_engine {
    () => {{
        fn here() {}
        if let Some(why) = $crate::common::engine::missing(::std::any::type_name_of_val(&here)) {
            if $crate::common::engine::required() {
                panic!("{why} (BALLAST_REQUIRE_ENGINE=1: not skipped)");
            }
            $crate::common::engine::say_skipped(&why);
            return;
        }
    }};
}

/// Labs made by tests carry this prefix, so `.ci/run` can sweep leftovers
/// without touching a developer's own labs.
pub const TEST_LAB_PREFIX: &str = "e2e-";

/// The ballast binary under test.
pub fn ballast_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ballast"))
}

/// `ballast ARGS` with labs kept under `lab_home`; never reads stdin.
pub fn command(lab_home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ballast_bin());
    cmd.args(args)
        .env("BALLAST_LAB_HOME", lab_home)
        .env_remove("BALLAST_LAB")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Runs `ballast ARGS` with labs kept under `lab_home`; never reads stdin.
pub fn ballast(lab_home: &Path, args: &[&str]) -> Output {
    command(lab_home, args)
        .output()
        .expect("run the ballast binary")
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A lab name unique to this test process.
pub fn lab_name(tag: &str) -> String {
    format!("{TEST_LAB_PREFIX}{tag}-{}", std::process::id())
}

/// A lab started for one test and taken down when the test ends, pass or fail.
pub struct Lab {
    pub name: String,
    pub home: tempfile::TempDir,
    pub inventory: Inventory,
}

impl Lab {
    pub fn up(tag: &str, hosts: usize) -> Lab {
        let home = tempfile::tempdir().expect("temp dir");
        let name = lab_name(tag);
        let hosts = hosts.to_string();
        let out = ballast(
            home.path(),
            &["lab", "up", "--name", &name, "--hosts", &hosts],
        );
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        let inventory = Inventory::load(&home.path().join(&name)).expect("inventory written");
        Lab {
            name,
            home,
            inventory,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.home.path().join(&self.name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = ballast(self.home.path(), &["lab", "down", "--name", &self.name]);
    }
}

/// Builds `hello:VERSION` once per test process with the project's script.
pub fn hello_image(version: &str) -> String {
    hello_image_with(version, "")
}

/// Builds `hello:VERSION` with knobs baked in (`HELLO_FAIL_HEALTH=1 ...`).
pub fn hello_image_with(version: &str, baked_env: &str) -> String {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let tag = format!("hello:{version}");
    if !built.contains(&tag) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new(root.join("examples/hello/build-image"))
            .arg(version)
            .env("BALLAST", ballast_bin())
            .env("HELLO_IMAGE_ENV", baked_env)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run examples/hello/build-image");
        assert!(
            out.status.success(),
            "building {tag} failed:\n{}",
            text(&out)
        );
        built.push(tag.clone());
    }
    tag
}

pub async fn local_engine() -> Engine {
    Engine::local()
        .await
        .expect("the local Docker engine answers")
}

/// GET `url` (http only) within 10 s; returns status and body.
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let work = async {
        let resp = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| format!("{url}: no answer within 10s"))?
}

/// Retries `http_get` until it answers 200 or `deadline` passes.
pub async fn wait_http_ok(url: &str, deadline: Duration) -> (u16, String) {
    let until = std::time::Instant::now() + deadline;
    loop {
        match http_get(url).await {
            Ok((200, body)) => return (200, body),
            other if std::time::Instant::now() >= until => {
                panic!("{url} did not answer 200 within {deadline:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs hello from `image` as container `name` on `engine`, publishing its
/// port 8080 on `port` of the host.
pub async fn run_hello(engine: &Engine, image: &str, name: &str, port: u16) {
    let docker = engine.docker();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        exposed_ports: Some(vec!["8080/tcp".into()]),
        host_config: Some(HostConfig {
            port_bindings: Some(std::collections::HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(port.to_string()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(options), body)
        .await
        .expect("create hello");
    docker
        .start_container(name, None)
        .await
        .expect("start hello");
}

/// A multi-threaded runtime for tests that mix the binary and async checks.
/// Freezes a lab host (`docker pause`): its address still takes TCP, and
/// nothing on it answers. The cgroup freezer can refuse while the machine
/// is busy ("unable to freeze"), so a refusal is tried again a few times.
pub fn freeze_host(container: &str) {
    let mut last = String::new();
    for _ in 0..5 {
        let out = Command::new("docker")
            .args(["pause", container])
            .output()
            .expect("docker runs");
        if out.status.success() {
            return;
        }
        last = text(&out);
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("docker pause {container} failed five times: {last}");
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The ballast under test, which is static (`.cargo/config.toml`), so it is
/// also the binary the proxy image is built from: one compilation serves
/// the tests and the hosts' proxies. Passed as `BALLAST_PROXY_BINARY` where
/// a test runs ballast from elsewhere.
pub fn static_ballast() -> PathBuf {
    ballast_bin()
}

/// Writes `dir/ballast.yml` reaching a lab's hosts over SSH with its key and
/// `known_hosts`, for `service` from `image`, followed by `rest` (roles and
/// whatever else the test needs) as written.
pub fn lab_config(
    dir: &Path,
    inv: &Inventory,
    known_hosts: &Path,
    service: &str,
    image: &str,
    rest: &str,
) -> PathBuf {
    let text = format!(
        "service: {service}\nimage: {image}\nssh:\n  user: root\n  identity_file: {}\n  known_hosts: {}\n{rest}",
        inv.key.display(),
        known_hosts.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("ballast.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ballast --config CONFIG ARGS` building the proxy image from `binary`
/// (`BALLAST_PROXY_BINARY`); stdin closed, stdout and stderr captured.
pub fn ballast_cmd(config: &Path, binary: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ballast_bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("BALLAST_PROXY_BINARY", binary)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Runs [`ballast_cmd`]; fails the test unless it succeeds.
pub fn run_ok(config: &Path, binary: &Path, args: &[&str]) -> Output {
    assert_ok(args, ballast_cmd(config, binary, args).output().unwrap())
}

/// `out` of the command run with `args`; fails the test unless it
/// succeeded, showing what it printed.
#[track_caller]
pub fn assert_ok(args: &[&str], out: Output) -> Output {
    assert!(out.status.success(), "{args:?}\n{}", text(&out));
    out
}

/// `out` of the command run with `args`; fails the test unless it failed
/// with `message` in its stderr.
#[track_caller]
pub fn assert_refused(args: &[&str], out: Output, message: &str) -> Output {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(message),
        "{args:?} should fail with {message:?}:\n{}",
        text(&out)
    );
    out
}

/// Runs `ballast --config CONFIG ARGS`.
pub fn run_with_config(config: &Path, args: &[&str]) -> Output {
    let mut full = vec!["--config", config.to_str().unwrap()];
    full.extend_from_slice(args);
    ballast(config.parent().unwrap(), &full)
}
