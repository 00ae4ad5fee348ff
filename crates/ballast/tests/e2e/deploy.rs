//! End-to-end tests of deploy, rollback, status, releases, lock and audit on
//! a 3-host lab: web on hosts 1 and 2 (publishing a port), worker on host 3.
//! Every check asks the containers themselves which version they run.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ballast_core::health;
use ballast_core::host::Host;
use ballast_core::release;
use ballast_lab::Inventory;

use common::*;

const WEB_PORT: u16 = 18080;

/// Writes ballast.yml for the lab into `dir` and returns its path.
fn write_config(dir: &Path, inv: &Inventory, known_hosts: &Path) -> PathBuf {
    let ip = |n: usize| inv.hosts[n].ip.clone();
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
    publish: [\"{WEB_PORT}:8080\"]
  worker:
    hosts: [{h3}]
    port: 8080
deploy:
  health_timeout: 12s
",
        h1 = ip(0),
        h2 = ip(1),
        h3 = ip(2),
    );
    lab_config(dir, inv, known_hosts, "hello", "hello", &rest)
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    run_with_config(config, args)
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    Command::new(ballast_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// Connects to a lab host and lists the service's running containers there.
async fn running_on(
    inv: &Inventory,
    h: &ballast_lab::LabHost,
) -> (Host, Vec<release::AppContainer>) {
    let host = Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap();
    let running = release::observe(host.engine(), "hello")
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.running)
        .collect();
    (host, running)
}

/// Asks every container which version it runs: web through its published
/// port from the machine, worker through its host (as health checks do).
fn versions(inv: &Inventory) -> Vec<String> {
    runtime().block_on(async {
        let mut seen = Vec::new();
        for h in &inv.hosts[..2] {
            let (status, body) = http_get(&format!("http://{}:{WEB_PORT}/", h.ip))
                .await
                .unwrap_or((0, String::new()));
            seen.push(if status == 200 {
                body.trim().to_string()
            } else {
                format!("HTTP {status}")
            });
        }
        let h3 = &inv.hosts[2];
        let (host, running) = running_on(inv, h3).await;
        assert_eq!(
            running.len(),
            1,
            "worker host runs exactly one container: {running:?}"
        );
        let ip = health::container_ip(&host, &running[0].name).await.unwrap();
        let (_, body) = health::http_get(&host, &ip, 8080, "/", Duration::from_secs(5))
            .await
            .unwrap();
        seen.push(body.trim().to_string());
        host.close().await;
        seen
    })
}

fn all(version: &str) -> Vec<String> {
    vec![version.to_string(); 3]
}

/// A 3-host lab with hello v1 deployed; returns the lab, the directory of
/// its config, and the config's path.
fn deployed_lab(tag: &str) -> (Lab, tempfile::TempDir, PathBuf) {
    hello_image("v1");
    let lab = Lab::up(tag, 3);
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &lab.inventory, &lab.inventory.known_hosts);
    ok(run(&config, &["deploy", "--version", "v1"]));
    (lab, work, config)
}

/// Starts a stopped lab host again and deploys `version` until its sshd
/// and engine answer and the deploy succeeds (90 s at most).
fn start_and_deploy(config: &Path, container: &str, version: &str) {
    let start = Command::new("docker")
        .args(["start", container])
        .output()
        .unwrap();
    assert!(start.status.success(), "{}", text(&start));
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let out = run(config, &["deploy", "--version", version]);
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < until, "never converged:\n{}", text(&out));
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Waits until the lock is taken on every host, each with its holder's
/// record written (a holder killed between the two leaves a lock with no
/// record, which is another case).
fn wait_for_lock(config: &Path) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let out = run(config, &["--json", "lock", "status"]);
        let result = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "result");
        let hosts = result
            .and_then(|r| r["hosts"].as_array().cloned())
            .unwrap_or_default();
        let taken = |h: &serde_json::Value| h["state"] == "held" && h["pid"].is_u64();
        if !hosts.is_empty() && hosts.iter().all(taken) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the lock was never taken");
}

#[test]
fn deploy_rollback_redeploy_and_a_version_that_never_gets_healthy() {
    require_engine!();
    let v1 = hello_image("v1");
    let _v2 = hello_image("v2");
    let _v3 = hello_image_with("unhealthy", "HELLO_FAIL_HEALTH=1");
    assert_eq!(v1, "hello:v1");
    let lab = Lab::up("deploy", 3);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &inv, &inv.known_hosts);

    let started = Instant::now();
    ok(run(&config, &["deploy", "--version", "v1"]));
    eprintln!(
        "measure: first deploy of v1 to 3 hosts took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(versions(&inv), all("v1"));

    let status = ok(run(&config, &["--json", "status"]));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let rows = status["hosts"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{status}");
    assert!(
        rows.iter()
            .all(|r| r["version"] == "v1" && r["state"] == "running"),
        "{status}"
    );

    let started = Instant::now();
    ok(run(&config, &["deploy", "--version", "v2"]));
    eprintln!(
        "measure: deploy of v2 (one changed layer) took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(versions(&inv), all("v2"));

    ok(run(&config, &["rollback"]));
    assert_eq!(versions(&inv), all("v1"));

    ok(run(&config, &["deploy", "--version", "v2"]));
    assert_eq!(versions(&inv), all("v2"));

    let releases = ok(run(&config, &["--json", "releases"]));
    let releases: serde_json::Value = serde_json::from_slice(&releases.stdout).unwrap();
    let listed: Vec<&str> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"v1") && listed.contains(&"v2"),
        "{releases}"
    );

    // "unhealthy" never gets healthy: deploy fails naming the host, shows the app's
    // last log lines, and every host still serves v2.
    let out = run(&config, &["deploy", "--version", "unhealthy"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&inv.hosts[0].ip),
        "names the host:\n{stderr}"
    );
    assert!(
        stderr.contains("hello unhealthy listening"),
        "shows the container's logs:\n{stderr}"
    );
    assert_eq!(versions(&inv), all("v2"));

    // The audit log recorded each action with its outcome.
    let audit = ok(run(&config, &["--json", "audit"]));
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let records = audit["records"].as_array().unwrap();
    assert!(records.len() >= 5, "{audit}");
    let last = records.last().unwrap();
    assert_eq!(last["version"], "unhealthy");
    assert!(
        last["outcome"].as_str().unwrap().starts_with("failed"),
        "{last}"
    );

    // A host presenting another key than known_hosts holds is refused.
    let wrong = work.path().join("wrong_known_hosts");
    let h1 = &inv.hosts[0];
    let mut lines = std::fs::read_to_string(&inv.known_hosts).unwrap();
    lines = lines.replace(&h1.host_key, &inv.hosts[1].host_key);
    std::fs::write(&wrong, lines).unwrap();
    let bad_config = write_config(&work.path().join("bad"), &inv, &wrong);
    let out = run(&bad_config, &["deploy", "--version", "v1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("host key verification failed") && stderr.contains(&h1.ip),
        "{stderr}"
    );
    assert!(
        stderr.contains("ED25519 key SHA256:"),
        "shows the presented key's fingerprint:\n{stderr}"
    );
    assert_eq!(versions(&inv), all("v2"));
}

#[test]
fn the_lock_refuses_a_second_deploy_and_survives_a_killed_one() {
    require_engine!();
    hello_image_with("slow", "HELLO_STARTUP_DELAY=5s");
    let (lab, _work, config) = deployed_lab("lock");
    let inv = lab.inventory.clone();

    // A second deploy while one runs is refused, naming the holder.
    let first = spawn(&config, &["deploy", "--version", "slow", "-m", "first one"]);
    wait_for_lock(&config);
    let second = run(&config, &["deploy", "--version", "v1"]);
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("held by") && stderr.contains("first one"),
        "{stderr}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(versions(&inv), all("slow"));

    // A killed deploy leaves its lock: status names the holder and says it
    // is gone; a plain release refuses without its token, --force clears it.
    let mut killed = spawn(&config, &["deploy", "--version", "v1"]);
    wait_for_lock(&config);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let status = ok(run(&config, &["lock", "status"]));
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains("held by")
            && said.contains(&format!("pid {}", killed.id()))
            && said.contains("gone"),
        "{said}"
    );
    let refused = run(&config, &["lock", "release"]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    ok(run(&config, &["lock", "release", "--force"]));
    let status = ok(run(&config, &["lock", "status"]));
    assert!(!String::from_utf8_lossy(&status.stdout).contains("held by"));
    ok(run(&config, &["deploy", "--version", "v1"]));
    assert_eq!(versions(&inv), all("v1"));

    // SIGTERM (a CI runner cancelling the job) during a deploy is handled
    // like Ctrl-C: undone, the lock released, the interruption recorded.
    let interrupted = spawn(&config, &["deploy", "--version", "slow"]);
    wait_for_lock(&config);
    let sigterm = Command::new("kill")
        .args(["-TERM", &interrupted.id().to_string()])
        .status()
        .unwrap();
    assert!(sigterm.success());
    let interrupted = interrupted.wait_with_output().unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(130),
        "{}",
        text(&interrupted)
    );
    let status = ok(run(&config, &["lock", "status"]));
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("held by"),
        "{}",
        text(&status)
    );
    let audit = ok(run(&config, &["--json", "audit", "--tail", "1"]));
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("\"outcome\":\"interrupted"),
        "{}",
        text(&audit)
    );
    ok(run(&config, &["deploy", "--version", "v1"]));
    assert_eq!(versions(&inv), all("v1"));

    // Logs: merged across hosts, prefixed by host and role, filterable.
    let logs = ok(run(&config, &["logs", "--tail", "20"]));
    let logs = String::from_utf8_lossy(&logs.stdout);
    for (h, role) in [
        (&inv.hosts[0], "web"),
        (&inv.hosts[1], "web"),
        (&inv.hosts[2], "worker"),
    ] {
        let line = format!("{} {role} | hello v1 listening", h.ip);
        assert!(logs.contains(&line), "missing {line:?} in:\n{logs}");
    }
    let only = ok(run(
        &config,
        &["logs", "--role", "worker", "--grep", "listening"],
    ));
    let only = String::from_utf8_lossy(&only.stdout);
    assert!(
        !only.is_empty()
            && only
                .lines()
                .all(|l| l.contains(" worker | ") && l.contains("listening")),
        "{only}"
    );
    let bad = run(&config, &["logs", "--role", "nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let mut follow = spawn(&config, &["logs", "-f", "--tail", "1"]);
    std::thread::sleep(Duration::from_secs(4));
    follow.kill().unwrap();
    let followed = follow.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&followed.stdout);
    for h in &inv.hosts {
        assert!(followed.contains(&h.ip), "-f shows every host:\n{followed}");
    }
}

#[test]
fn a_host_stopped_mid_deploy_is_named_and_the_rest_stay_whole() {
    require_engine!();
    hello_image_with("slow2", "HELLO_STARTUP_DELAY=4s");
    let (lab, _work, config) = deployed_lab("stop");
    let inv = lab.inventory.clone();

    let deploy = spawn(&config, &["deploy", "--version", "slow2"]);
    wait_for_lock(&config);
    std::thread::sleep(Duration::from_secs(2));
    let stopped_at = Instant::now();
    let victim = &inv.hosts[1];
    let stop = Command::new("docker")
        .args(["stop", "-t", "2", &victim.container])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    let out = deploy.wait_with_output().unwrap();
    eprintln!(
        "measure: the deploy ended {:.1}s after the host stopped",
        stopped_at.elapsed().as_secs_f64()
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&victim.ip),
        "names the stopped host:\n{stderr}"
    );
    // In the user's words, never a transport library's alone.
    assert!(!stderr.contains("hyper"), "{stderr}");
    assert!(stopped_at.elapsed() < Duration::from_secs(120));

    // The hosts still up each run one version, whole; the lock is free.
    let lock = run(&config, &["lock", "status"]);
    assert!(
        !String::from_utf8_lossy(&lock.stdout).contains("held by"),
        "{}",
        text(&lock)
    );
    runtime().block_on(async {
        for h in [&inv.hosts[0], &inv.hosts[2]] {
            let (host, running) = running_on(&inv, h).await;
            assert_eq!(running.len(), 1, "{}: {running:?}", h.name);
            host.close().await;
        }
    });

    // Once the host is back, running the deploy again converges.
    start_and_deploy(&config, &victim.container, "slow2");
    assert_eq!(versions(&inv), all("slow2"));
}

/// The token `ballast lock acquire` printed.
fn token_of(out: &std::process::Output) -> String {
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["token"].as_str().unwrap().to_string()
}

#[test]
fn the_lock_belongs_to_its_holder_wherever_the_config_puts_roles() {
    require_engine!();
    hello_image("v1");
    let lab = Lab::up("owner", 3);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let ip = |n: usize| inv.hosts[n].ip.clone();
    let rest = format!(
        "roles:\n  web:\n    hosts: [{}, {}]\n    port: 8080\n",
        ip(0),
        ip(1)
    );
    let a = lab_config(
        &work.path().join("a"),
        &inv,
        &inv.known_hosts,
        "hello",
        "hello",
        &rest,
    );
    ok(run(&a, &["deploy", "--version", "v1"]));

    // Operator A takes the lock by hand.
    let taken = ok(run(
        &a,
        &["--json", "lock", "acquire", "-m", "A: maintenance"],
    ));
    let token = token_of(&taken);

    // Operator B's config has one more role, named to sort first, on a
    // third host: the lock is still A's, and B's deploy is refused.
    let b_rest = format!(
        "roles:\n  api:\n    hosts: [{}]\n    port: 8080\n  web:\n    hosts: [{}, {}]\n    port: 8080\n",
        ip(2),
        ip(0),
        ip(1)
    );
    let b = lab_config(
        &work.path().join("b"),
        &inv,
        &inv.known_hosts,
        "hello",
        "hello",
        &b_rest,
    );
    let refused = run(&b, &["deploy", "--version", "v1"]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("A: maintenance"),
        "{}",
        text(&refused)
    );

    // B interrupts its deploy while it still connects (one of its hosts
    // hangs): A's lock is untouched.
    freeze_host(&inv.hosts[2].container);
    let b2 = lab_config(
        &work.path().join("b2"),
        &inv,
        &inv.known_hosts,
        "hello",
        "hello",
        &b_rest,
    );
    let mut text_b2 = std::fs::read_to_string(&b2).unwrap();
    text_b2 = text_b2.replace("ssh:\n", "ssh:\n  connect_timeout: 60s\n");
    std::fs::write(&b2, text_b2).unwrap();
    let connecting = spawn(&b2, &["deploy", "--version", "v1"]);
    std::thread::sleep(Duration::from_secs(2));
    let sent = Command::new("kill")
        .args(["-INT", &connecting.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let out = connecting.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the interrupt took too long"
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let unpaused = Command::new("docker")
        .args(["unpause", &inv.hosts[2].container])
        .output()
        .unwrap();
    assert!(unpaused.status.success(), "{}", text(&unpaused));
    let status = ok(run(&a, &["lock", "status"]));
    let said = String::from_utf8_lossy(&status.stdout);
    assert_eq!(said.matches("A: maintenance").count(), 2, "{said}");
    assert!(said.contains("held manually"), "{said}");

    // Only A's token gives it back.
    let wrong = run(
        &a,
        &[
            "lock",
            "release",
            "--token",
            "0123456789abcdef0123456789abcdef",
        ],
    );
    assert_eq!(wrong.status.code(), Some(4), "{}", text(&wrong));
    ok(run(&a, &["lock", "release", "--token", &token]));
    ok(run(&b, &["deploy", "--version", "v1"]));
}

#[test]
fn with_a_host_down_the_others_roll_back_and_a_later_deploy_converges() {
    require_engine!();
    hello_image("v1");
    hello_image("v2");
    let lab = Lab::up("partial", 3);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let ip = |n: usize| inv.hosts[n].ip.clone();
    let rest = format!(
        "roles:\n  worker:\n    hosts: [{}, {}, {}]\n    port: 8080\n",
        ip(0),
        ip(1),
        ip(2)
    );
    let config = lab_config(work.path(), &inv, &inv.known_hosts, "hello", "hello", &rest);
    ok(run(&config, &["deploy", "--version", "v1"]));
    ok(run(&config, &["deploy", "--version", "v2"]));

    let down = &inv.hosts[2];
    let stop = Command::new("docker")
        .args(["stop", "-t", "1", &down.container])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop));

    // Without the flag, rollback says which host is down and how to go on.
    let refused = run(&config, &["rollback"]);
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&down.ip) && stderr.contains("--skip-unreachable"),
        "{stderr}"
    );
    let rolled = ok(run(&config, &["rollback", "--skip-unreachable"]));
    let said = text(&rolled);
    assert!(
        said.contains(&format!("{} ", down.ip)) && said.contains("skipped"),
        "{said}"
    );
    // The audit log is read from every host that answers; the one that
    // does not is named.
    let audit = ok(run(&config, &["--json", "audit", "--tail", "1"]));
    let audit = String::from_utf8_lossy(&audit.stdout);
    // With --json, the warning is a progress line on stdout.
    let warned = audit
        .lines()
        .find(|l| l.contains("audit log not read"))
        .unwrap_or_else(|| panic!("no warning about the host that is down:\n{audit}"));
    assert!(
        warned.contains(&format!("\"host\":\"{}\"", down.ip)),
        "{warned}"
    );
    assert!(
        audit.contains(&format!("\"skipped\":[\"{}\"]", down.ip)),
        "{audit}"
    );
    runtime().block_on(async {
        for h in &inv.hosts[..2] {
            let (host, running) = running_on(&inv, h).await;
            assert_eq!(running.len(), 1, "{}: {running:?}", h.name);
            assert_eq!(running[0].version, "v1", "{}", h.name);
            host.close().await;
        }
    });

    // Back up, a plain deploy of v1 brings the skipped host in line.
    start_and_deploy(&config, &down.container, "v1");
    runtime().block_on(async {
        for h in &inv.hosts {
            let (host, running) = running_on(&inv, h).await;
            assert_eq!(running.len(), 1, "{}: {running:?}", h.name);
            assert_eq!(running[0].version, "v1", "{}", h.name);
            host.close().await;
        }
    });
}

/// Service containers of `hello` on a lab host, running or not.
fn containers_on(inv: &Inventory, n: usize) -> Vec<release::AppContainer> {
    runtime().block_on(async {
        let h = &inv.hosts[n];
        let host = Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap();
        let all = release::observe(host.engine(), "hello").await.unwrap();
        host.close().await;
        all
    })
}

fn hook(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let hooks = dir.join(".ballast/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let path = hooks.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn destinations_hooks_and_aliases_from_one_config() {
    require_engine!();
    hello_image("v1");
    hello_image("v2");
    let lab = Lab::up("dest", 2);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // The base has no hosts: each destination brings its own.
    let config = lab_config(
        dir,
        &inv,
        &inv.known_hosts,
        "hello",
        "hello",
        "roles:\n  web:\n    hosts: []\n    port: 8080\nrequire_destination: true\naliases:\n  web-status: \"status --roles web\"\n",
    );
    for (name, n) in [("staging", 0), ("production", 1)] {
        std::fs::write(
            dir.join(format!("ballast.{name}.yml")),
            format!("roles:\n  web:\n    hosts: [{}]\n", inv.hosts[n].ip),
        )
        .unwrap();
    }

    // Without -d the config is refused, naming the destinations.
    let refused = run(&config, &["deploy", "--version", "v1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("requires a destination") && stderr.contains("production, staging"),
        "{stderr}"
    );

    ok(run(
        &config,
        &["-d", "staging", "deploy", "--version", "v1"],
    ));
    assert_eq!(containers_on(&inv, 0).len(), 1);
    assert!(containers_on(&inv, 1).is_empty(), "production was touched");

    // Each destination has its own lock: production's does not stop staging.
    let taken = ok(run(
        &config,
        &["-d", "production", "--json", "lock", "acquire"],
    ));
    let token = token_of(&taken);
    ok(run(
        &config,
        &["-d", "staging", "deploy", "--version", "v2"],
    ));
    let held = run(&config, &["-d", "production", "deploy", "--version", "v1"]);
    assert_eq!(held.status.code(), Some(4), "{}", text(&held));
    ok(run(
        &config,
        &["-d", "production", "lock", "release", "--token", &token],
    ));

    // A pre-deploy hook that fails stops the deploy before any host changes.
    hook(dir, "pre-deploy", "#!/bin/sh\necho checks failed\nexit 1\n");
    let stopped = run(&config, &["-d", "production", "deploy", "--version", "v1"]);
    assert_eq!(stopped.status.code(), Some(1), "{}", text(&stopped));
    let said = text(&stopped);
    assert!(
        said.contains("pre-deploy") && said.contains("checks failed"),
        "{said}"
    );
    assert!(containers_on(&inv, 1).is_empty(), "a host changed:\n{said}");
    std::fs::remove_file(dir.join(".ballast/hooks/pre-deploy")).unwrap();

    // post-deploy sees the outcome, the version and the destination.
    hook(
        dir,
        "post-deploy",
        "#!/bin/sh\necho \"$BALLAST_OUTCOME $BALLAST_VERSION $BALLAST_DESTINATION $BALLAST_HOSTS\" > post-deploy.out\n",
    );
    ok(run(
        &config,
        &["-d", "production", "deploy", "--version", "v1"],
    ));
    let seen = std::fs::read_to_string(dir.join("post-deploy.out")).unwrap();
    assert_eq!(seen.trim(), format!("ok v1 production {}", inv.hosts[1].ip));

    // An alias runs the command it names, for the destination given.
    let status = ok(run(&config, &["-d", "staging", "--json", "web-status"]));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&inv.hosts[0].ip) && !status.contains(&inv.hosts[1].ip),
        "{status}"
    );

    // Bad input: an unknown key in a destination file is located there; an
    // alias to no command is located in the base file.
    std::fs::write(dir.join("ballast.broken.yml"), "deploy:\n  retian: 3\n").unwrap();
    let bad = run(&config, &["-d", "broken", "status"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("ballast.broken.yml: 2:3") && stderr.contains("`retain`"),
        "{stderr}"
    );
    let text_now = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_now.replace("status --roles web", "shell web -- sh"),
    )
    .unwrap();
    let bad = run(&config, &["-d", "staging", "status"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("`shell` is not a ballast command"),
        "{stderr}"
    );
}
