//! The proxy's own lifecycle on a real 3-host lab, under load through all
//! three proxies with every response and connection error counted:
//! `ballast proxy upgrade` to another build hands over without losing a
//! request while a WebSocket opened before keeps echoing until drained; a
//! deploy by a differently built ballast replaces no proxy and says the
//! upgrade is due; the proxy routes to each container's address on its
//! service's own network; a takeover interrupted half way is finished by
//! the next `proxy restart`, again losing nothing.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast_core::host::Host;
use ballast_core::{proxy, release};
use ballast_lab::Inventory;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use common::*;

/// The proxy's drain time in this test: short, so the test stays quick.
const DRAIN: Duration = Duration::from_secs(4);

fn write_config(dir: &Path, inv: &Inventory) -> PathBuf {
    let hosts: Vec<&str> = inv.hosts.iter().map(|h| h.ip.as_str()).collect();
    let rest = format!(
        "roles:\n  web:\n    hosts: [{}]\n    port: 8080\n    proxy:\n      drain_timeout: {}s\ndeploy:\n  health_timeout: 10s\n",
        hosts.join(", "),
        DRAIN.as_secs()
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// A copy of the static ballast with a few bytes appended: it runs the
/// same, but its hash, and so its proxy build, differs.
fn other_build(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("ballast-other-build");
    let mut bytes = std::fs::read(static_ballast()).unwrap();
    bytes.extend_from_slice(b"\nanother ballast build\n");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// One host's proxy as the test sees it.
#[derive(Debug, Clone, PartialEq)]
struct ProxyFacts {
    id: String,
    started_at: String,
    image: String,
    build: String,
    instance: String,
}

async fn connect(inv: &Inventory, n: usize) -> Host {
    let h = &inv.hosts[n];
    Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap()
}

async fn proxy_facts(inv: &Inventory) -> Vec<ProxyFacts> {
    let mut facts = Vec::new();
    for n in 0..inv.hosts.len() {
        let host = connect(inv, n).await;
        let c = host
            .engine()
            .docker()
            .inspect_container(proxy::CONTAINER, None)
            .await
            .unwrap();
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        let mode = c.host_config.and_then(|h| h.network_mode);
        assert_eq!(mode.as_deref(), Some("host"), "{}", inv.hosts[n].name);
        facts.push(ProxyFacts {
            id: c.id.unwrap_or_default(),
            started_at: c.state.and_then(|s| s.started_at).unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            build: labels
                .get("io.ballast.proxy.build")
                .cloned()
                .unwrap_or_default(),
            instance: proxy::admin::instance(&host).await.unwrap(),
        });
        host.close().await;
    }
    facts
}

/// Load through every host's proxy, until stopped.
fn start_load(rt: &tokio::runtime::Runtime, inv: &Inventory) -> load::Running {
    let urls: Vec<String> = inv
        .hosts
        .iter()
        .map(|h| format!("http://{}:80/", h.ip))
        .collect();
    load::Running::start(rt, urls, 400, 16)
}

/// Stops the load and prints what it saw.
fn stop_load(rt: &tokio::runtime::Runtime, load: load::Running, what: &str) -> load::LoadReport {
    let report = load.stop(rt);
    eprintln!(
        "measure: {what}: {} requests at {:.0}/s, {} failed (connection errors included): {:?}",
        report.sent,
        report.rate(),
        report.failed,
        report.failures
    );
    report
}

/// Echoes on a WebSocket through host 0's proxy while `child` runs;
/// returns the command's output and how many echoes came after host 0's
/// proxy process changed (the old one draining the socket).
async fn websocket_across(inv: &Inventory, child: std::process::Child) -> (Output, usize) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let host = connect(inv, 0).await;
    let before = proxy::admin::instance(&host).await.unwrap();
    let url = format!("ws://{}:80/ws", inv.hosts[0].ip);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(first.as_str(), "v1 before");
    let command = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let started = Instant::now();
    let mut took_over = false;
    let mut echoes_after = 0;
    while started.elapsed() < Duration::from_secs(120) {
        if !took_over {
            took_over = proxy::admin::instance(&host)
                .await
                .is_ok_and(|i| i != before);
        }
        if ws.send(Message::text("tick")).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                assert_eq!(t.as_str(), "v1 tick");
                if took_over {
                    echoes_after += 1;
                }
            }
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.close().await;
    (command.await.unwrap(), echoes_after)
}

/// The route of `hello-web` on each host goes to the running container's
/// address on `ballast-hello`, which is not its address on `ballast`.
async fn assert_routed_by_identity(inv: &Inventory, version: &str) {
    for n in 0..inv.hosts.len() {
        let host = connect(inv, n).await;
        let running: Vec<release::AppContainer> = release::observe(host.engine(), "hello")
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.running)
            .collect();
        assert_eq!(running.len(), 1, "{running:?}");
        assert_eq!(running[0].version, version);
        let c = host
            .engine()
            .docker()
            .inspect_container(&running[0].name, None)
            .await
            .unwrap();
        let nets: HashMap<String, String> = c
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, e)| (name, e.ip_address.unwrap_or_default()))
            .collect();
        let own = &nets[&proxy::service_network("hello")];
        let shared = &nets[proxy::NETWORK];
        assert_ne!(own, shared);
        let routes = proxy::routes(&host).await;
        assert_eq!(
            routes.get("hello-web"),
            Some(&vec![format!("{own}:8080")]),
            "{}: routed on the service's network ({nets:?})",
            inv.hosts[n].name
        );
        host.close().await;
    }
}

#[test]
fn proxy_upgrade_to_another_build_loses_no_request_and_deploys_leave_proxies_alone() {
    require_engine!();
    let binary = static_ballast();
    hello_image("v1");
    hello_image("v2");
    let lab = Lab::up("pxup", 3);
    let work = tempfile::tempdir().unwrap();
    let inv = lab.inventory.clone();
    let config = write_config(work.path(), &inv);
    let other = other_build(work.path());
    let rt = runtime();

    let first = ballast_cmd(&config, &binary, &["deploy", "--version", "v1"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let started = rt.block_on(proxy_facts(&inv));
    rt.block_on(assert_routed_by_identity(&inv, "v1"));

    // The upgrade to another build, under load, with a WebSocket open.
    let load = start_load(&rt, &inv);
    std::thread::sleep(Duration::from_millis(500));
    let child = ballast_cmd(&config, &other, &["proxy", "upgrade"])
        .spawn()
        .unwrap();
    let (upgrade, echoes_after) = rt.block_on(websocket_across(&inv, child));
    let report = stop_load(&rt, load, "proxy upgrade on 3 hosts");
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    // The load asks for 400/s. On CI's 2 cores, beside two other lanes of
    // lab tests, it reached 284/s once, all answered: still thousands of
    // requests across the three takeovers, which is what this guards.
    assert!(
        report.rate() >= 200.0 && report.sent >= 2000,
        "load too thin: {} requests at {:.0}/s",
        report.sent,
        report.rate()
    );
    eprintln!("measure: the WebSocket echoed {echoes_after} messages on the old process after the takeover");
    assert!(
        echoes_after >= 3,
        "the WebSocket did not outlive the takeover"
    );
    let upgraded = rt.block_on(proxy_facts(&inv));
    for (before, after) in started.iter().zip(&upgraded) {
        assert_ne!(before.instance, after.instance);
        assert_ne!(before.build, after.build);
        assert_ne!(before.image, after.image);
        // The tag names the build, so a proxy image another lane builds at
        // the same time from this version cannot move it.
        let shipped = format!(
            "ballast-proxy:{}-{}",
            env!("CARGO_PKG_VERSION"),
            after.build
        );
        let local = Command::new("docker")
            .args(["image", "inspect", "-f", "{{.Id}}", &shipped])
            .output()
            .unwrap();
        let local = String::from_utf8_lossy(&local.stdout).trim().to_string();
        assert_eq!(
            after.image, local,
            "runs the build just shipped ({shipped})"
        );
    }

    // A deploy by the original build: no proxy touched, the upgrade due.
    let load = start_load(&rt, &inv);
    std::thread::sleep(Duration::from_millis(500));
    let deploy = ballast_cmd(&config, &binary, &["deploy", "--version", "v2"])
        .output()
        .unwrap();
    let report = stop_load(&rt, load, "deploy v2 by another build");
    assert!(deploy.status.success(), "{}", text(&deploy));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let said = text(&deploy);
    for h in &inv.hosts {
        assert!(
            said.lines()
                .any(|l| l.contains(&h.ip) && l.contains("`ballast proxy upgrade` is due")),
            "{}: {said}",
            h.name
        );
    }
    let after_deploy = rt.block_on(proxy_facts(&inv));
    assert_eq!(after_deploy, upgraded, "no proxy was restarted or replaced");
    rt.block_on(assert_routed_by_identity(&inv, "v2"));

    // A takeover interrupted after its first steps (the new container
    // created, the old one's restart policy off) is finished by the next
    // command: `proxy restart` under load.
    rt.block_on(leave_an_interrupted_takeover(&inv));
    let load = start_load(&rt, &inv);
    std::thread::sleep(Duration::from_millis(500));
    let h0 = inv.hosts[0].ip.as_str();
    let restart = ballast_cmd(&config, &other, &["proxy", "restart", "--hosts", h0])
        .output()
        .unwrap();
    let report = stop_load(&rt, load, "proxy restart after an interrupted takeover");
    assert!(restart.status.success(), "{}", text(&restart));
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let restarted = rt.block_on(proxy_facts(&inv));
    assert_ne!(restarted[0].instance, after_deploy[0].instance);
    assert_eq!(restarted[0].image, after_deploy[0].image, "same image");
    assert_eq!(restarted[1..], after_deploy[1..], "other hosts untouched");
    rt.block_on(async {
        let host = connect(&inv, 0).await;
        let docker = host.engine().docker();
        assert!(docker.inspect_container(NEXT, None).await.is_err());
        let c = docker
            .inspect_container(proxy::CONTAINER, None)
            .await
            .unwrap();
        let policy = c
            .host_config
            .and_then(|h| h.restart_policy)
            .and_then(|p| p.name);
        assert_eq!(policy, Some(RestartPolicyNameEnum::ALWAYS));
        host.close().await;
    });

    // A proxy whose restart policy an interrupted run left at `no`, with
    // no `ballast-proxy-next` beside it: the next command that looks at
    // it (here `setup`, which has nothing to replace) sets `always` back
    // and leaves the process alone.
    rt.block_on(async {
        let host = connect(&inv, 1).await;
        set_policy(&host, RestartPolicyNameEnum::NO).await;
        host.close().await;
    });
    let setup = ballast_cmd(&config, &other, &["setup"]).output().unwrap();
    assert!(setup.status.success(), "{}", text(&setup));
    let set_up = rt.block_on(proxy_facts(&inv));
    assert_eq!(set_up, restarted, "no proxy was replaced");
    rt.block_on(async {
        let host = connect(&inv, 1).await;
        assert_eq!(
            policy_of(&host).await,
            Some(RestartPolicyNameEnum::ALWAYS),
            "Docker restarts the proxy again"
        );
        host.close().await;
    });
}

async fn set_policy(host: &Host, policy: RestartPolicyNameEnum) {
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(policy),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    host.engine()
        .docker()
        .update_container(proxy::CONTAINER, body)
        .await
        .unwrap();
}

async fn policy_of(host: &Host) -> Option<RestartPolicyNameEnum> {
    host.engine()
        .docker()
        .inspect_container(proxy::CONTAINER, None)
        .await
        .unwrap()
        .host_config
        .and_then(|h| h.restart_policy)
        .and_then(|p| p.name)
}

const NEXT: &str = "ballast-proxy-next";

/// What a takeover interrupted between its first steps leaves on host 0: a
/// new proxy container created but not started, and the old one's restart
/// policy off.
async fn leave_an_interrupted_takeover(inv: &Inventory) {
    let host = connect(inv, 0).await;
    let docker = host.engine().docker();
    let old = docker
        .inspect_container(proxy::CONTAINER, None)
        .await
        .unwrap();
    let body = ContainerCreateBody {
        image: old.image.clone(),
        cmd: old.config.and_then(|c| c.cmd),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{0}:{0}", proxy::STATE_DIR)]),
            network_mode: Some("host".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(NEXT).build();
    docker.create_container(Some(options), body).await.unwrap();
    set_policy(&host, RestartPolicyNameEnum::NO).await;
    host.close().await;
}
