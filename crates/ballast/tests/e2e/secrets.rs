//! Secrets never leak, on a real lab: a build whose context holds
//! `.ballast/secrets` and copies everything, then a deploy that fails and
//! one that succeeds, run at `-vv` and with `RUST_LOG=debug` (the Docker
//! client logs request bodies, a container's environment included), while
//! the operator's process list is watched. The value is looked for in
//! everything ballast printed, the audit log (as printed and as stored on
//! the host), the containers' labels, command and arguments, and the
//! image's layers. And the digest that tells a changed secret is keyed
//! with a key kept on the host (made by the first deploy, never by a plan).
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ballast_core::host::Host;

use common::child::Watched;
use common::*;

const SECRET: &str = "s3cr3t-lab-value-7f3a91";

fn ballast_cmd(config: &Path, args: &[&str], rust_log: Option<&str>) -> Command {
    let mut cmd = Command::new(ballast_bin());
    cmd.arg("--config").arg(config).args(args);
    match rust_log {
        Some(level) => cmd.env("RUST_LOG", level),
        None => cmd.env_remove("RUST_LOG"),
    };
    cmd.env_remove("DATABASE_PASSWORD");
    cmd
}

/// Runs ballast while another thread lists this machine's processes every
/// 50 ms; returns how it ended, all it printed, and every command line seen.
fn watched(cmd: Command) -> (std::process::ExitStatus, String, String) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let ps = std::thread::spawn(move || {
        let mut seen = String::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(out) = Command::new("ps").args(["-eo", "args"]).output() {
                seen.push_str(&String::from_utf8_lossy(&out.stdout));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    });
    let (status, said) = Watched::spawn(cmd).finish(Duration::from_secs(180));
    done.store(true, Ordering::Relaxed);
    (status, said, ps.join().unwrap())
}

#[test]
fn a_secret_appears_in_no_output_label_argument_audit_or_image() {
    require_engine!();
    let base = hello_image("v1");
    let lab = Lab::up("secrets", 1);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // The build context is the config's directory, secrets file included,
    // and the Dockerfile copies all of it.
    std::fs::create_dir_all(dir.join(".ballast")).unwrap();
    std::fs::write(
        dir.join(".ballast/secrets"),
        format!("DATABASE_PASSWORD={SECRET}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {base}\nCOPY . /app\n"),
    )
    .unwrap();
    let host = &inv.hosts[0];
    let role = |health: &str| {
        format!(
            "build: {{ context: . }}\nroles:\n  web:\n    hosts: [{ip}]\n    port: 8080\n    healthcheck: {{ path: {health} }}\n    env:\n      secret: [DATABASE_PASSWORD]\n  files:\n    hosts: [{ip}]\n    port: 8080\n    secret_files: true\n    env:\n      secret: [DATABASE_PASSWORD]\ndeploy:\n  health_timeout: 6s\n",
            ip = host.ip
        )
    };
    // First a version that never gets healthy (its check path 404s), then
    // one that does.
    let config = lab_config(dir, &inv, &inv.known_hosts, "hello", "shop", &role("/nope"));
    let mut printed = String::new();
    let mut processes = String::new();
    let (status, said, ps) = watched(ballast_cmd(
        &config,
        &["-vv", "deploy", "--version", "bad"],
        None,
    ));
    assert_eq!(status.code(), Some(1), "{said}");
    printed.push_str(&said);
    processes.push_str(&ps);
    let config = lab_config(dir, &inv, &inv.known_hosts, "hello", "shop", &role("/up"));
    let (status, said, ps) = watched(ballast_cmd(
        &config,
        &["--json", "deploy", "--version", "good"],
        Some("debug"),
    ));
    assert!(status.success(), "{said}");
    printed.push_str(&said);
    processes.push_str(&ps);
    // The debug logs did carry the environment: redacted, not absent.
    assert!(
        printed.contains("[redacted]"),
        "nothing was redacted:\n{printed}"
    );
    for args in [
        &["--json", "audit"][..],
        &["-vv", "releases"][..],
        &["config"][..],
    ] {
        let out = run_with_config(&config, args);
        printed.push_str(&text(&out));
    }
    assert!(
        !printed.contains(SECRET),
        "a secret was printed:\n{printed}"
    );
    assert!(
        !processes.contains(SECRET),
        "a secret was in a process's arguments"
    );

    runtime().block_on(async {
        let h = Host::connect(&host.ip, &inv.ssh_target(host))
            .await
            .unwrap();
        let audit = h
            .run(
                "cat",
                &["/var/lib/ballast/hello/audit.log"],
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(!audit.stdout.is_empty());
        assert!(
            !audit.stdout.contains(SECRET),
            "in the audit log on the host"
        );
        let docker = h.engine().docker();
        let mut files_env = Vec::new();
        for c in ballast_core::release::observe(h.engine(), "hello")
            .await
            .unwrap()
        {
            let inspected = docker.inspect_container(&c.name, None).await.unwrap();
            let config = inspected.config.unwrap_or_default();
            let shown = format!(
                "{:?} {:?} {:?} {:?}",
                config.labels, config.cmd, config.entrypoint, inspected.args
            );
            assert!(!shown.contains(SECRET), "{}: {shown}", c.name);
            if c.role == "files" {
                // With secret_files, not even the environment holds it.
                let env = config.env.unwrap_or_default().join(" ");
                assert!(!env.contains(SECRET), "{}: {env}", c.name);
                files_env.push(env);
            }
        }
        assert!(
            files_env
                .iter()
                .any(|e| e.contains("DATABASE_PASSWORD_FILE=/run/secrets/DATABASE_PASSWORD")),
            "{files_env:?}"
        );
        // Each secret file is 0400 in a root-only directory (a retained
        // release keeps its files, to start again on rollback).
        let found = h
            .run(
                "find",
                &[
                    "/var/lib/ballast/hello/secrets",
                    "-mindepth",
                    "1",
                    "-printf",
                    "%m %P\\n",
                ],
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let lines: Vec<&str> = found.stdout.lines().collect();
        assert!(
            lines.iter().any(|l| l.starts_with("700 hello-files-good-")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(
                |l| l.starts_with("400 hello-files-good-") && l.ends_with("/DATABASE_PASSWORD")
            ),
            "{lines:?}"
        );
        h.close().await;
    });

    // The image built from that context holds no trace of the secrets file.
    let saved = Command::new("docker")
        .args(["save", "shop:good"])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", text(&saved));
    let bytes = saved.stdout;
    let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
    assert!(!found, "the secret is in the image's layers");
    let _ = Command::new("docker")
        .args(["rmi", "shop:good", "shop:bad"])
        .output();
}

/// What the digest-key test looks at on its host: the key file's mode,
/// owner and text, and the service's running containers (name, id, digest
/// label, environment).
struct Seen {
    /// `MODE OWNER` of the key file; empty when there is none.
    mode: String,
    key: String,
    containers: Vec<(String, String, String, Vec<String>)>,
}

fn seen(inv: &ballast_lab::Inventory, service: &str) -> Seen {
    let host = &inv.hosts[0];
    runtime().block_on(async {
        let h = Host::connect(&host.ip, &inv.ssh_target(host))
            .await
            .unwrap();
        let path = format!("/var/lib/ballast/{service}/digest.key");
        let stat = h
            .run(
                "stat",
                &["-c", "%a %U", &path],
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let text = h
            .run("cat", &[&path], None, Duration::from_secs(10))
            .await
            .unwrap();
        let (mode, key) = match stat.success() {
            true => (
                stat.stdout.trim().to_string(),
                text.stdout.trim().to_string(),
            ),
            false => (String::new(), String::new()),
        };
        let mut containers = Vec::new();
        for c in ballast_core::release::observe(h.engine(), service)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.running)
        {
            let inspected = h
                .engine()
                .docker()
                .inspect_container(&c.name, None)
                .await
                .unwrap();
            let env = inspected.config.and_then(|c| c.env).unwrap_or_default();
            containers.push((c.role, c.id, c.config_digest, env));
        }
        containers.sort();
        h.close().await;
        Seen {
            mode,
            key,
            containers,
        }
    })
}

/// Issue 11: the digest that tells a changed secret is keyed with a key
/// kept on the host. `plan` does not make the key; the first deploy does
/// (0600, root); a second deploy with the same secret changes nothing; a
/// changed secret replaces the role that has it, and only that one.
#[test]
fn the_secret_digest_is_keyed_on_the_host_and_follows_the_value() {
    require_engine!();
    hello_image("v1");
    let lab = Lab::up("digestkey", 1);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let secrets = |value: &str| {
        std::fs::create_dir_all(dir.join(".ballast")).unwrap();
        std::fs::write(
            dir.join(".ballast/secrets"),
            format!("KEYED_TOKEN={value}\n"),
        )
        .unwrap();
    };
    let rest = format!(
        "roles:\n  web:\n    hosts: [{ip}]\n    port: 8080\n    env:\n      secret: [KEYED_TOKEN]\n  plain:\n    hosts: [{ip}]\n    port: 8080\n",
        ip = inv.hosts[0].ip
    );
    let config = lab_config(dir, &inv, &inv.known_hosts, "keyed", "hello", &rest);
    let deploy = || {
        let out = run_with_config(&config, &["deploy", "--version", "v1"]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    secrets("first-token-value");

    // A plan reads only: no key is made, and the role with a secret shows
    // as to be replaced once the deploy has made one.
    let plan = run_with_config(&config, &["plan", "--version", "v1"]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains("config pending"), "{}", text(&plan));
    assert_eq!(seen(&inv, "keyed").mode, "", "plan made the key");

    let printed = deploy();
    let first = seen(&inv, "keyed");
    assert_eq!(first.mode, "600 root");
    let key = first.key.as_str();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "the key file holds 64 hex digits"
    );
    assert!(!printed.contains(key), "the key was printed");
    assert_eq!(first.containers.len(), 2, "{:?}", first.containers.len());
    for (_, _, digest, _) in &first.containers {
        assert!(!digest.contains(key) && digest.len() == 16);
    }

    // The same secret again: nothing changes, the key is read back.
    deploy();
    let second = seen(&inv, "keyed");
    assert_eq!(
        (&second.mode, &second.key),
        (&first.mode, &first.key),
        "the key was made again"
    );
    let ids = |s: &Seen| -> Vec<(String, String)> {
        s.containers
            .iter()
            .map(|(role, id, _, _)| (role.clone(), id.clone()))
            .collect()
    };
    assert_eq!(
        ids(&second),
        ids(&first),
        "a second deploy replaced a container"
    );

    // A changed secret rolls out to the role that has it, not the other.
    secrets("second-token-value");
    deploy();
    let third = seen(&inv, "keyed");
    let (plain_before, web_before) = (&first.containers[0], &first.containers[1]);
    let (plain_after, web_after) = (&third.containers[0], &third.containers[1]);
    assert_eq!(
        (&plain_after.0, &web_after.0),
        (&"plain".to_string(), &"web".to_string())
    );
    assert_eq!(
        plain_after.1, plain_before.1,
        "the role without secrets stays"
    );
    assert_ne!(
        web_after.1, web_before.1,
        "the role with the secret is replaced"
    );
    assert_ne!(web_after.2, web_before.2);
    assert!(web_after
        .3
        .contains(&"KEYED_TOKEN=second-token-value".to_string()));
    assert!(web_before
        .3
        .contains(&"KEYED_TOKEN=first-token-value".to_string()));
}
