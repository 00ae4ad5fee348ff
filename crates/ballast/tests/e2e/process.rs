//! Processes inside the containers, on a real 2-host lab: `init` reaps the
//! orphans an app leaves (and without it they stay zombies), SIGTERM
//! reaches the app and a stop finishes within the role's `stop_timeout`
//! (and is cut there when the app takes longer), and `ballast exec` runs
//! commands in the role's container (output, exit codes, `--all`, stdin with
//! `-i`, secret values redacted, and a clear error when no container runs);
//! `ballast logs` of roles whose log driver sends the lines away.
//!
//! hello leaves `HELLO_SPAWN_ORPHANS` orphans within its first seconds and
//! takes `HELLO_STOP_DELAY` to stop after SIGTERM; `/hello zombies` (run
//! with `ballast exec`) and `ps` on the host count the zombies.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ballast_core::host::Host;
use ballast_core::release;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;

use common::*;

/// Orphans each hello leaves: one every 100 ms, so all within 4 s.
const ORPHANS: usize = 40;
/// How long after the deploy the zombies are counted. The orphans are all
/// made and gone (each exits at once) within the first 4 s; a zombie
/// nobody reaps stays for good, so a count at 20 s shows what a count at
/// a minute would: 0 with init, every orphan without.
const SETTLED: Duration = Duration::from_secs(20);
/// The roles' stop timeout, and how long hello takes to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_DELAY: Duration = Duration::from_secs(2);
/// A secret of the web role: what a command prints of it is redacted.
const TOKEN: &str = "tok-process-test-5f2a9c";
/// The stop timeout of a role whose app takes longer than it to stop.
const SHORT_STOP_TIMEOUT: Duration = Duration::from_secs(2);

fn write_config(dir: &Path, lab: &Lab) -> PathBuf {
    let inv = &lab.inventory;
    let (h1, h2) = (&inv.hosts[0].ip, &inv.hosts[1].ip);
    let app_env = format!(
        "HELLO_SPAWN_ORPHANS: \"{ORPHANS}\", HELLO_STOP_DELAY: \"{}s\"",
        STOP_DELAY.as_secs()
    );
    let rest = format!(
        "roles:
  web:
    hosts: [{{host: {h1}, env: {{SHARD: \"1\"}}}}, {{host: {h2}, env: {{SHARD: \"2\"}}}}]
    port: 8080
    stop_timeout: {t}s
    env:
      clear: {{{app_env}}}
      secret: [HELLO_TOKEN]
  bare:
    hosts: [{h1}]
    port: 8080
    init: false
    stop_timeout: {t}s
    env:
      clear: {{{app_env}}}
  shipped:
    hosts: [{h1}]
    port: 8080
    logging: {{driver: gelf, options: {{gelf-address: \"udp://127.0.0.1:12201\"}}}}
  quiet:
    hosts: [{h1}]
    port: 8080
    logging:
      driver: syslog
      options: {{syslog-address: \"udp://127.0.0.1:514\", cache-disabled: \"true\"}}
  stubborn:
    hosts: [{h2}]
    port: 8080
    stop_timeout: {short}s
    env:
      clear: {{HELLO_STOP_DELAY: \"60s\"}}
deploy:
  health_timeout: 20s
",
        t = STOP_TIMEOUT.as_secs(),
        short = SHORT_STOP_TIMEOUT.as_secs(),
    );
    std::fs::create_dir_all(dir.join(".ballast")).unwrap();
    std::fs::write(
        dir.join(".ballast/secrets"),
        format!("HELLO_TOKEN={TOKEN}\n"),
    )
    .unwrap();
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

fn run(config: &Path, args: &[&str]) -> Output {
    run_with_config(config, args)
}

fn ok(config: &Path, args: &[&str]) -> Output {
    assert_ok(args, run(config, args))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ballast exec ARGS` with `input` on its stdin (a pipe, not a terminal).
fn exec_with_input(config: &Path, args: &[&str], input: Vec<u8>) -> Output {
    let mut child = Command::new(ballast_bin())
        .arg("--config")
        .arg(config)
        .arg("exec")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

async fn connect(lab: &Lab, n: usize) -> Host {
    let inv = &lab.inventory;
    let h = &inv.hosts[n];
    Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap()
}

/// The running container of `role` on `host`.
async fn container_of(host: &Host, role: &str) -> String {
    ballast_core::exec::role_container(host, "hello", role)
        .await
        .unwrap()
}

/// The zombies the host sees among the children of `container`'s first
/// process (docker-init, or the app as PID 1), with `ps` on the host:
/// `docker top` cannot tell, since an exited process leaves its cgroup
/// before it is reaped.
async fn zombies_seen_from_the_host(host: &Host, container: &str) -> usize {
    let inspected = host
        .engine()
        .docker()
        .inspect_container(container, None)
        .await
        .unwrap();
    let pid = inspected.state.and_then(|s| s.pid).unwrap().to_string();
    let ps = host
        .run(
            "ps",
            &["-o", "stat=", "--ppid", &pid],
            None,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    ps.stdout
        .lines()
        .filter(|l| l.trim().starts_with('Z'))
        .count()
}

/// How the engine saw `container` stop between `since` and `until` (Unix
/// seconds): seconds from the first kill (SIGTERM) to `die`, the signals
/// sent, and the exit code.
async fn stop_of(
    host: &Host,
    container: &str,
    since: u64,
    until: u64,
) -> (f64, Vec<String>, String) {
    let filters = HashMap::from([
        ("container", vec![container.to_string()]),
        ("type", vec!["container".to_string()]),
    ]);
    let options = EventsOptionsBuilder::default()
        .since(&since.to_string())
        .until(&until.to_string())
        .filters(&filters)
        .build();
    let events: Vec<_> = host
        .engine()
        .docker()
        .events(Some(options))
        .map(|e| e.unwrap())
        .collect()
        .await;
    let attr = |e: &bollard::models::EventMessage, k: &str| {
        e.actor
            .as_ref()
            .and_then(|a| a.attributes.as_ref())
            .and_then(|a| a.get(k).cloned())
            .unwrap_or_default()
    };
    let kills: Vec<_> = events
        .iter()
        .filter(|e| e.action.as_deref() == Some("kill"))
        .collect();
    let die = events
        .iter()
        .find(|e| e.action.as_deref() == Some("die"))
        .unwrap_or_else(|| panic!("{container} never died: {events:?}"));
    let first_kill = kills
        .first()
        .unwrap_or_else(|| panic!("{container} was never signalled: {events:?}"));
    let took = (die.time_nano.unwrap() - first_kill.time_nano.unwrap()) as f64 / 1e9;
    let signals = kills.iter().map(|k| attr(k, "signal")).collect();
    (took, signals, attr(die, "exitCode"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn init_reaps_orphans_sigterm_reaches_the_app_and_exec_runs_commands() {
    require_engine!();
    hello_image("v1");
    hello_image("v2");
    let lab = Lab::up("process", 2);
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &lab);
    let (h1, h2) = (
        lab.inventory.hosts[0].ip.clone(),
        lab.inventory.hosts[1].ip.clone(),
    );
    let rt = runtime();
    let (host1, host2) = rt.block_on(async { (connect(&lab, 0).await, connect(&lab, 1).await) });

    ok(&config, &["deploy", "--version", "v1"]);
    let deployed = Instant::now();

    // exec on one host: output, exit codes, the host chosen.
    let out = ok(
        &config,
        &["exec", "web", "--", "/hello", "echo", "hi", "there"],
    );
    assert_eq!(stdout(&out), "hi there\n", "{}", text(&out));
    let out = ok(&config, &["exec", "web", "--", "/hello", "env", "SHARD"]);
    assert_eq!(
        stdout(&out),
        "1\n",
        "the role's first host:\n{}",
        text(&out)
    );
    let out = ok(
        &config,
        &["exec", "web", "--host", &h2, "--", "/hello", "env", "SHARD"],
    );
    assert_eq!(stdout(&out), "2\n", "{}", text(&out));
    for all in [&[][..], &["--all"][..]] {
        let mut args = vec!["exec", "web"];
        args.extend_from_slice(all);
        args.extend_from_slice(&["--", "/hello", "env", "HELLO_TOKEN"]);
        let out = ok(&config, &args);
        assert!(
            !stdout(&out).contains(TOKEN) && stdout(&out).contains("[redacted]"),
            "a secret value printed by the command is redacted:\n{}",
            text(&out)
        );
    }
    let out = run(&config, &["exec", "web", "--", "/hello", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = run(&config, &["exec", "web", "--", "/no/such/program"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("no such file"),
        "a missing program fails and says so:\n{}",
        text(&out)
    );

    // --all: every host, lines prefixed by host; the first non-zero code.
    let out = ok(
        &config,
        &["exec", "web", "--all", "--", "/hello", "env", "SHARD"],
    );
    let mut lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    lines.sort();
    let mut want = vec![format!("{h1} | 1"), format!("{h2} | 2")];
    want.sort();
    assert_eq!(lines, want, "{}", text(&out));
    let out = run(
        &config,
        &["exec", "web", "--all", "--", "/hello", "exit", "4"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("{h1}: exit code 4"))
            && stdout(&out).contains(&format!("{h2}: exit code 4")),
        "{}",
        text(&out)
    );

    // -i with piped stdin: what is sent comes back whole, and the end of
    // input ends the command.
    let sent: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let started = Instant::now();
    let out = exec_with_input(&config, &["web", "-i", "--", "/hello", "cat"], sent.clone());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        out.stdout.len(),
        sent.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == sent, "cat echoed other bytes than were sent");
    eprintln!(
        "measure: exec -i of cat with {} KB took {:.1}s",
        sent.len() / 1024,
        started.elapsed().as_secs_f64()
    );

    // Logs sent away: read from the copy the host keeps, or said where
    // they went when it keeps none; never an engine error.
    let out = ok(&config, &["logs", "--role", "shipped,quiet", "--tail", "5"]);
    let (said, shown) = (String::from_utf8_lossy(&out.stderr), stdout(&out));
    assert!(
        shown.contains(&format!("{h1} shipped | hello v1 listening"))
            && !shown.contains(" quiet | "),
        "{}",
        text(&out)
    );
    assert!(
        said.contains("shipped logs go to gelf at udp://127.0.0.1:12201; shown here: the recent lines Docker keeps on each host")
            && said.contains("quiet logs go to syslog at udp://127.0.0.1:514, and the hosts keep no copy"),
        "{}",
        text(&out)
    );

    // Zombies: none with init, every orphan without, counted from inside
    // the container (`ballast exec`) and from the host (`ps`).
    std::thread::sleep(SETTLED.saturating_sub(deployed.elapsed()));
    let out = ok(
        &config,
        &["exec", "web", "--all", "--", "/hello", "zombies"],
    );
    let mut lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    lines.sort();
    let mut want = vec![format!("{h1} | 0"), format!("{h2} | 0")];
    want.sort();
    assert_eq!(lines, want, "init reaps the orphans:\n{}", text(&out));
    let out = ok(&config, &["exec", "bare", "--", "/hello", "zombies"]);
    assert_eq!(
        stdout(&out),
        format!("{ORPHANS}\n"),
        "without init every orphan stays a zombie:\n{}",
        text(&out)
    );
    rt.block_on(async {
        for (host, role, want) in [
            (&host1, "web", 0),
            (&host2, "web", 0),
            (&host1, "bare", ORPHANS),
        ] {
            let c = container_of(host, role).await;
            assert_eq!(
                zombies_seen_from_the_host(host, &c).await,
                want,
                "{role} on {}",
                host.name()
            );
        }
    });
    let logs = ok(&config, &["logs", "--role", "web", "--grep", "orphans"]);
    assert_eq!(
        stdout(&logs)
            .matches(&format!("left {ORPHANS} orphans"))
            .count(),
        2,
        "both web containers made their orphans:\n{}",
        text(&logs)
    );

    // Stop: deploying v2 stops each v1 container with SIGTERM; the app logs
    // it, takes its 2 s and exits cleanly, well within the stop timeout,
    // with init (web) and as PID 1 (bare); an app slower than its role's
    // stop timeout is killed at that timeout, not Docker's default 10 s.
    let olds = rt.block_on(async {
        let mut olds = Vec::new();
        for (host, role) in [
            (&host1, "web"),
            (&host2, "web"),
            (&host1, "bare"),
            (&host2, "stubborn"),
        ] {
            olds.push((host, role, container_of(host, role).await));
        }
        olds
    });
    let since = now().saturating_sub(1);
    ok(&config, &["deploy", "--version", "v2"]);
    let until = now() + 1;
    rt.block_on(async {
        for (host, role, name) in &olds {
            let (took, signals, exit_code) = stop_of(host, name, since, until).await;
            eprintln!("measure: {role} on {} stopped {took:.2}s after SIGTERM ({signals:?}, exit {exit_code})", host.name());
            assert_eq!(signals.first().map(String::as_str), Some("15"), "{role}: SIGTERM first");
            let logs = host.engine().log_tail(name, 20).await.unwrap();
            if *role == "stubborn" {
                assert_eq!(exit_code, "137", "killed at its stop timeout:\n{logs}");
                assert!(signals.iter().any(|s| s == "9"), "{signals:?}");
                let short = SHORT_STOP_TIMEOUT.as_secs_f64();
                assert!(took >= short - 0.5 && took < short + 3.0, "stubborn stopped after {took:.2}s");
                continue;
            }
            assert!(logs.contains("hello: SIGTERM"), "{role}: the app got SIGTERM:\n{logs}");
            assert!(logs.contains("HELLO_STOP_DELAY"), "{role}:\n{logs}");
            assert_eq!(exit_code, "0", "{role} exits cleanly:\n{logs}");
            assert_eq!(signals, ["15"], "{role} needed no SIGKILL");
            assert!(took >= STOP_DELAY.as_secs_f64() - 0.2, "{role}: took {took:.2}s");
            assert!(took < STOP_TIMEOUT.as_secs_f64(), "{role}: {took:.2}s is past the stop timeout");
        }
    });

    // No running container of the role on the host: the error names both.
    rt.block_on(async {
        let c = container_of(&host1, "bare").await;
        let engine = host1.engine();
        engine
            .docker()
            .stop_container(&c, None::<bollard::query_parameters::StopContainerOptions>)
            .await
            .unwrap();
        let running = release::observe(engine, "hello").await.unwrap();
        assert!(!running.iter().any(|x| x.role == "bare" && x.running));
    });
    let out = run(&config, &["exec", "bare", "--", "/hello", "echo", "x"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&h1)
            && stderr.contains("no container of role `bare` runs")
            && stderr.contains("ballast status"),
        "{stderr}"
    );
    let out = run(&config, &["exec", "nope", "--", "/hello", "echo", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    rt.block_on(async {
        host1.close().await;
        host2.close().await;
    });
}
