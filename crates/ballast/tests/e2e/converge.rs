//! The unhappy path of deploys through ballast-proxy, on a real lab under
//! load (every response and connection error counted): deploys interrupted
//! with SIGINT and SIGKILL at named steps and then simply run again, a
//! crash-looping version, a step failing after the proxy switched, an
//! interrupt after every switch while the old containers were to stop, and
//! `deploy.on_failure: revert` on a version that fails on one host of three,
//! and containers started ahead of batches that never ran removed.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ballast_core::host::Host;
use ballast_core::{proxy, release};
use ballast_lab::Inventory;

use common::child::Watched;
use common::*;

/// `ballast --config CONFIG ARGS`, with the static binary for the proxy
/// image and `faults` armed (`BALLAST_FAILPOINTS`).
fn ballast_cmd(config: &Path, args: &[&str], faults: &str) -> Command {
    let mut cmd = Command::new(ballast_bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("BALLAST_PROXY_BINARY", static_ballast())
        .env("BALLAST_FAILPOINTS", faults);
    cmd
}

/// Starts a deploy of the slow-starting image as `version` with `faults`
/// armed, and waits until it says `line`.
fn deploy_until(config: &Path, version: &str, faults: &str, line: &str) -> Watched {
    tag("hello:slowstart", &format!("hello:{version}"));
    let mut deploy = Watched::spawn(ballast_cmd(
        config,
        &["deploy", "--version", version],
        faults,
    ));
    deploy.wait_for(line, Duration::from_secs(60));
    deploy
}

fn run_ok(config: &Path, args: &[&str]) -> String {
    let (status, said) =
        Watched::spawn(ballast_cmd(config, args, "")).finish(Duration::from_secs(180));
    assert!(status.success(), "{args:?} failed:\n{said}");
    said
}

fn tag(from: &str, to: &str) {
    let out = Command::new("docker")
        .args(["tag", from, to])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// Host `n`'s running (or restarting) containers of `service` and where
/// its proxy routes the web role.
async fn observed(
    inv: &Inventory,
    n: usize,
    service: &str,
) -> (Vec<release::AppContainer>, Option<Vec<String>>) {
    let h = &inv.hosts[n];
    let host = Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap();
    let active: Vec<release::AppContainer> = release::observe(host.engine(), service)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.state.is_active())
        .collect();
    let routes = proxy::routes(&host).await.remove(&format!("{service}-web"));
    host.close().await;
    (active, routes)
}

/// Where the proxy should route to reach `c`.
fn target_of(c: &release::AppContainer) -> Vec<String> {
    vec![format!("{}:8080", c.ip.clone().unwrap_or_default())]
}

/// The web role on each host runs exactly `version`, and the host's proxy
/// routes to that container and nothing else.
async fn assert_converged(inv: &Inventory, hosts: &[usize], service: &str, version: &str) {
    for &n in hosts {
        let name = &inv.hosts[n].name;
        let (running, routes) = observed(inv, n, service).await;
        assert_eq!(running.len(), 1, "{name}: {running:?}");
        assert_eq!(running[0].version, version, "{name}: {running:?}");
        assert!(running[0].running, "{name}: {running:?}");
        let want = target_of(&running[0]);
        assert_eq!(routes, Some(want), "{name}: the proxy routes elsewhere");
    }
}

/// The proxy of each host routes to the container of `version` alone,
/// while an older one still runs beside it.
async fn assert_switched_beside_old(
    inv: &Inventory,
    hosts: &[usize],
    service: &str,
    version: &str,
) {
    for &n in hosts {
        let name = &inv.hosts[n].name;
        let (active, routes) = observed(inv, n, service).await;
        let running: Vec<_> = active.into_iter().filter(|c| c.running).collect();
        let (new, old): (Vec<_>, Vec<_>) = running.iter().partition(|c| c.version == version);
        assert_eq!((new.len(), old.len()), (1, 1), "{name}: {running:?}");
        let want = target_of(new[0]);
        assert_eq!(routes, Some(want), "{name}: the proxy routes elsewhere");
    }
}

/// Load on the proxies of the given hosts, until stopped.
fn start_load(rt: &tokio::runtime::Runtime, inv: &Inventory, hosts: &[usize]) -> load::Running {
    let urls: Vec<String> = hosts
        .iter()
        .map(|&n| format!("http://{}:80/", inv.hosts[n].ip))
        .collect();
    load::Running::start(rt, urls, 120, 4)
}

fn web_config(dir: &Path, inv: &Inventory, hosts: &str, deploy: &str) -> PathBuf {
    let rest = format!(
        "roles:\n  web:\n    hosts: {hosts}\n    port: 8080\n    proxy:\n      drain_timeout: 5s\ndeploy:\n  health_timeout: 8s\n{deploy}"
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// Where a deploy is stopped, and how the test gets it there.
struct Point {
    name: &'static str,
    /// Fault armed so the deploy waits there.
    faults: &'static str,
    /// The line that says the deploy reached the point.
    line: &'static str,
    /// How long to wait after the line before the signal.
    pause: Duration,
}

const POINTS: [Point; 4] = [
    Point {
        name: "after create",
        faults: "after-create=return(hold)",
        line: "create hello-web-",
        pause: Duration::ZERO,
    },
    Point {
        name: "after start",
        faults: "after-start=return(hold)",
        line: "start hello-web-",
        pause: Duration::ZERO,
    },
    // The image starts listening 2 s after its start: the proxy is still
    // checking it when the signal arrives.
    Point {
        name: "during the health wait",
        faults: "",
        line: "start hello-web-",
        pause: Duration::from_millis(700),
    },
    Point {
        name: "right after the switch",
        faults: "after-route=return(hold)",
        line: "switch the proxy to hello-web-",
        pause: Duration::ZERO,
    },
];

#[test]
fn interrupted_deploys_converge_on_a_plain_rerun_with_no_failed_request() {
    require_engine!();
    hello_image_with("slowstart", "HELLO_STARTUP_DELAY=2s");
    hello_image_with("crashloop", "HELLO_CRASH_AFTER=0s");
    hello_image_with("unhealthy", "HELLO_FAIL_HEALTH_AFTER=0s");
    let lab = Lab::up("converge", 2);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let hosts = format!("[{}, {}]", inv.hosts[0].ip, inv.hosts[1].ip);
    let config = web_config(work.path(), &inv, &hosts, "");
    tag("hello:slowstart", "hello:c0");
    run_ok(&config, &["setup"]);
    run_ok(&config, &["deploy", "--version", "c0"]);

    let rt = runtime();
    let load = start_load(&rt, &inv, &[0, 1]);
    let mut round = 0;
    for signal in ["INT", "KILL"] {
        for point in &POINTS {
            round += 1;
            let version = format!("c{round}");
            let deploy = deploy_until(&config, &version, point.faults, point.line);
            std::thread::sleep(point.pause);
            deploy.signal(signal);
            let (status, said) = deploy.finish(Duration::from_secs(90));
            eprintln!(
                "measure: SIG{signal} {}: exit {:?}",
                point.name,
                status.code()
            );
            if signal == "INT" {
                assert_eq!(status.code(), Some(130), "{}:\n{said}", point.name);
                // Interrupted cleanly: the lock is free, nothing half done.
                let lock = run_ok(&config, &["lock", "status"]);
                assert!(!lock.contains("held by"), "{}:\n{lock}", point.name);
            }
            let again = run_ok(&config, &["deploy", "--version", &version]);
            if signal == "KILL" {
                assert!(
                    again.contains("took over") || again.contains("gone"),
                    "the killed holder's lock was not recognised:\n{again}"
                );
            }
            rt.block_on(assert_converged(&inv, &[0, 1], "hello", &version));
        }
    }

    // Interrupted after every host switched, while the drained old
    // containers were to stop: the hosts stay on the new version (the
    // deploy succeeded, exit 0, the lock is free), the old containers keep
    // running without traffic, and the rerun stops them.
    round += 1;
    let version = format!("c{round}");
    let deploy = deploy_until(
        &config,
        &version,
        "before-stop=return(hold)",
        "to stop their old containers",
    );
    deploy.signal("INT");
    let (status, said) = deploy.finish(Duration::from_secs(90));
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(
        said.contains("old containers not stopped yet keep running"),
        "{said}"
    );
    let lock = run_ok(&config, &["lock", "status"]);
    assert!(!lock.contains("held by"), "{lock}");
    rt.block_on(assert_switched_beside_old(&inv, &[0, 1], "hello", &version));
    let again = run_ok(&config, &["deploy", "--version", &version]);
    assert!(again.contains("stop hello-web-c"), "{again}");
    rt.block_on(assert_converged(&inv, &[0, 1], "hello", &version));
    let last = format!("c{round}");

    // A version that crash-loops once started, or runs but never turns
    // healthy, is never taken for running: killed right after its start,
    // the rerun checks it again and fails, stops it (whether it was caught
    // running or between restarts), and the last good version keeps
    // serving.
    for (image, version) in [("hello:crashloop", "bad"), ("hello:unhealthy", "wedged")] {
        tag(image, &format!("hello:{version}"));
        let mut deploy = Watched::spawn(ballast_cmd(
            &config,
            &["deploy", "--version", version],
            "after-start=return(hold)",
        ));
        deploy.wait_for(
            &format!("start hello-web-{version}"),
            Duration::from_secs(60),
        );
        std::thread::sleep(Duration::from_secs(2));
        deploy.signal("KILL");
        deploy.finish(Duration::from_secs(30));
        let (status, said) =
            Watched::spawn(ballast_cmd(&config, &["deploy", "--version", version], ""))
                .finish(Duration::from_secs(120));
        eprintln!("the rerun of {version} said:\n{said}");
        assert_eq!(status.code(), Some(1), "{said}");
        assert!(!said.contains("already runs"), "{said}");
        rt.block_on(assert_converged(&inv, &[0, 1], "hello", &last));
    }

    // The proxy switched, then the next step fails: the proxy goes back to
    // the old container, which serves on.
    tag("hello:slowstart", "hello:late");
    let (status, said) = Watched::spawn(ballast_cmd(
        &config,
        &["deploy", "--version", "late"],
        "before-stop=return(fail)",
    ))
    .finish(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("switch the proxy back"), "{said}");
    rt.block_on(assert_converged(&inv, &[0, 1], "hello", &last));

    let seen = load.stop(&rt);
    eprintln!(
        "measure: {round} interrupted deploys, their reruns, a crash loop and a failed step under load: {} requests ({:.0}/s), {} failed",
        seen.sent,
        seen.rate(),
        seen.failed
    );
    assert_eq!(seen.failed, 0, "failed requests: {:?}", seen.failures);
    assert!(seen.sent > 1000, "too little load: {}", seen.sent);
}

#[test]
fn on_failure_revert_puts_switched_hosts_back_with_no_failed_request() {
    require_engine!();
    hello_image("v1");
    hello_image_with("shard3bad", "HELLO_FAIL_HEALTH_SHARD=3");
    hello_image_with("shard1bad", "HELLO_FAIL_HEALTH_SHARD=1");
    let lab = Lab::up("revert", 3);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let ip = |n: usize| inv.hosts[n].ip.clone();
    let hosts = format!(
        "\n      - {{ host: {}, env: {{ SHARD: \"1\" }} }}\n      - {{ host: {}, env: {{ SHARD: \"2\" }} }}\n      - {{ host: {}, env: {{ SHARD: \"3\" }} }}",
        ip(0),
        ip(1),
        ip(2)
    );
    let config = web_config(work.path(), &inv, &hosts, "  on_failure: revert\n");
    run_ok(&config, &["setup"]);
    run_ok(&config, &["deploy", "--version", "v1"]);
    // The same release again changes nothing, per-host variables included.
    let again = run_ok(&config, &["deploy", "--version", "v1"]);
    assert_eq!(
        again.matches("already runs hello-web-v1").count(),
        3,
        "{again}"
    );

    let rt = runtime();
    let load = start_load(&rt, &inv, &[0, 1, 2]);
    let (status, said) = Watched::spawn(ballast_cmd(
        &config,
        &["deploy", "--version", "shard3bad"],
        "",
    ))
    .finish(Duration::from_secs(180));
    let seen = load.stop(&rt);
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("reverted"), "{said}");
    eprintln!(
        "measure: a version failing on host 3 of 3, reverted: {} requests ({:.0}/s), {} failed, versions {:?}",
        seen.sent,
        seen.rate(),
        seen.failed,
        seen.versions
    );
    assert_eq!(seen.failed, 0, "failed requests: {:?}", seen.failures);
    rt.block_on(assert_converged(&inv, &[0, 1, 2], "hello", "v1"));

    // Started ahead on every host, failing on the first batch's: the
    // later batches never switch, and their new containers are removed.
    let load = start_load(&rt, &inv, &[0, 1, 2]);
    let (status, said) = Watched::spawn(ballast_cmd(
        &config,
        &["deploy", "--version", "shard1bad"],
        "",
    ))
    .finish(Duration::from_secs(180));
    let seen = load.stop(&rt);
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.contains("starting the new containers on 3 host(s) ahead"),
        "{said}"
    );
    assert_eq!(said.matches("not run").count(), 2, "{said}");
    assert_eq!(seen.failed, 0, "failed requests: {:?}", seen.failures);
    rt.block_on(assert_converged(&inv, &[0, 1, 2], "hello", "v1"));
    for n in 0..3 {
        let h = &inv.hosts[n];
        let left: Vec<String> = rt.block_on(async {
            let host = Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap();
            let all = release::observe(host.engine(), "hello").await.unwrap();
            host.close().await;
            all.into_iter()
                .filter(|c| c.version == "shard1bad")
                .map(|c| c.name)
                .collect()
        });
        assert!(left.is_empty(), "{}: left behind: {left:?}\n{said}", h.name);
    }
}
