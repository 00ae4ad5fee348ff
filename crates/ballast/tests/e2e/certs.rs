//! Certificates on a real 2-host lab through the proxies' admin API: two
//! services with their own certificates served by SNI on the same ports,
//! one deployed under HTTPS load on the other; a renewal under HTTPS load;
//! certificates refused before or by the proxy while the running one keeps
//! serving; and ACME against Pebble (issued, served, renewed by force, a
//! directory that does not answer).
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ballast_core::host::Host;
use common::load::LoadReport;
use common::pebble::Pebble;
use common::tls_load::{self, served_leaf, TestCa};
use common::*;

fn run(config: &Path, binary: &Path, args: &[&str]) -> Output {
    let out = ballast_cmd(config, binary, args).output().unwrap();
    let all = text(&out);
    assert!(!all.contains("PRIVATE KEY"), "a key was printed:\n{all}");
    out
}

fn run_ok(config: &Path, binary: &Path, args: &[&str]) -> Output {
    assert_ok(args, run(config, binary, args))
}

#[track_caller]
fn run_fails(config: &Path, binary: &Path, args: &[&str], says: &[&str]) -> String {
    let out = run(config, binary, args);
    let all = text(&out);
    assert!(!out.status.success(), "{args:?} should fail:\n{all}");
    for s in says {
        assert!(all.contains(s), "{args:?} does not say {s:?}:\n{all}");
    }
    all
}

/// A service `service` on both lab hosts, routed for `name`, with `tls`.
fn service_config(dir: &Path, lab: &Lab, service: &str, name: &str, tls: &str) -> PathBuf {
    let inv = &lab.inventory;
    let rest = format!(
        "roles:\n  web:\n    hosts: [{h1}, {h2}]\n    port: 8080\n    proxy:\n      hosts: [{name}]\n      drain_timeout: 5s\n      tls: {tls}\ndeploy:\n  health_timeout: 20s\n",
        h1 = inv.hosts[0].ip,
        h2 = inv.hosts[1].ip,
    );
    lab_config(dir, inv, &inv.known_hosts, service, "hello", &rest)
}

/// Writes a certificate and key as the config's files.
fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

fn fingerprint_of(cert_pem: &str, key_pem: &str) -> String {
    ballast_core::certificate::check(cert_pem, key_pem, &[], 0)
        .unwrap()
        .fingerprint
}

/// What the HTTPS answer for `name` at `ip` is, trusting `ca`.
fn https_body(ip: &str, name: &str, ca: &Path) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:443:{ip}")])
        .arg(format!("https://{name}/"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "https://{name}/ at {ip}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `ballast ARGS` while HTTPS load goes to `name` on every host.
fn under_load(
    config: &Path,
    binary: &Path,
    args: &[&str],
    hosts: &[String],
    name: &str,
    ca_pem: &str,
) -> (Output, LoadReport) {
    runtime().block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let loads: Vec<_> = hosts
            .iter()
            .map(|ip| {
                let addr: SocketAddr = format!("{ip}:443").parse().unwrap();
                tokio::spawn(tls_load::run(
                    addr,
                    name.to_string(),
                    ca_pem.to_string(),
                    150,
                    4,
                    stop_rx.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let child = ballast_cmd(config, binary, args).spawn().unwrap();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(true).unwrap();
        let mut total = LoadReport::default();
        for load in loads {
            let r = load.await.unwrap();
            total.sent += r.sent;
            total.ok += r.ok;
            total.failed += r.failed;
            total.failures.extend(r.failures);
            for (v, n) in r.versions {
                *total.versions.entry(v).or_default() += n;
            }
            total.seconds = total.seconds.max(r.seconds);
        }
        (out, total)
    })
}

#[test]
fn two_services_by_sni_renewal_and_bad_certificates_under_https_load() {
    require_engine!();
    let binary = static_ballast();
    for v in ["v1", "v2", "v3"] {
        hello_image(v);
    }
    let lab = Lab::up("certs", 2);
    let hosts: Vec<String> = lab.inventory.hosts.iter().map(|h| h.ip.clone()).collect();
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = work.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let files = "{ cert: cert.pem, key: key.pem }";
    let (dir_a, dir_b) = (work.path().join("alpha"), work.path().join("beta"));
    let a = service_config(&dir_a, &lab, "alpha", "a.test", files);
    let b = service_config(&dir_b, &lab, "beta", "b.test", files);
    let pair_a = ca.leaf(&["a.test"]);
    let pair_b = ca.leaf(&["b.test"]);
    write_pair(&dir_a, &pair_a);
    write_pair(&dir_b, &pair_b);
    let fp_a = fingerprint_of(&pair_a.0, &pair_a.1);
    let fp_b = fingerprint_of(&pair_b.0, &pair_b.1);

    run_ok(&a, &binary, &["setup"]);
    run_ok(&a, &binary, &["deploy", "--version", "v1"]);
    run_ok(&b, &binary, &["deploy", "--version", "v2"]);
    for ip in &hosts {
        assert_eq!(served_leaf(ip, 443, "a.test").unwrap().fingerprint, fp_a);
        assert_eq!(served_leaf(ip, 443, "b.test").unwrap().fingerprint, fp_b);
        assert_eq!(https_body(ip, "a.test", &ca_path), "v1");
        assert_eq!(https_body(ip, "b.test", &ca_path), "v2");
    }

    // Deploying the other service never interrupts this one.
    let (out, load) = under_load(
        &b,
        &binary,
        &["deploy", "--version", "v3"],
        &hosts,
        "a.test",
        &ca.cert_pem,
    );
    eprintln!(
        "deploy of beta under HTTPS load on alpha: {} sent, {} failed, {:.0} req/s",
        load.sent,
        load.failed,
        load.rate()
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(load.sent > 100, "too little load: {load:?}");
    assert_eq!(load.failed, 0, "{:?}", load.failures);
    assert_eq!(load.versions.keys().collect::<Vec<_>>(), ["v1"]);

    // Renewal: new files, a deploy; the running connections are not cut,
    // new handshakes see the new certificate.
    let renewed = ca.leaf(&["a.test"]);
    write_pair(&dir_a, &renewed);
    let fp_renewed = fingerprint_of(&renewed.0, &renewed.1);
    let (out, load) = under_load(
        &a,
        &binary,
        &["deploy", "--version", "v1"],
        &hosts,
        "a.test",
        &ca.cert_pem,
    );
    eprintln!(
        "certificate renewal under HTTPS load: {} sent, {} failed, {:.0} req/s",
        load.sent,
        load.failed,
        load.rate()
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("certificate for a.test installed"),
        "{}",
        text(&out)
    );
    assert!(load.sent > 100, "too little load: {load:?}");
    assert_eq!(load.failed, 0, "{:?}", load.failures);
    for ip in &hosts {
        assert_eq!(
            served_leaf(ip, 443, "a.test").unwrap().fingerprint,
            fp_renewed
        );
        assert_eq!(served_leaf(ip, 443, "b.test").unwrap().fingerprint, fp_b);
    }
    // Unchanged: nothing sent, nothing said.
    let again = run_ok(&a, &binary, &["proxy", "certs", "--renew"]);
    assert!(!text(&again).contains("installed"), "{}", text(&again));
    assert!(text(&again).contains(&fp_renewed[..16]), "{}", text(&again));

    // Bad input is refused, and the proxies keep serving what they served.
    let keeps_serving = || {
        for ip in &hosts {
            assert_eq!(
                served_leaf(ip, 443, "a.test").unwrap().fingerprint,
                fp_renewed
            );
            assert_eq!(https_body(ip, "a.test", &ca_path), "v1");
            assert_eq!(https_body(ip, "b.test", &ca_path), "v3");
        }
    };
    let other = ca.leaf(&["a.test"]);
    write_pair(&dir_a, &(other.0.clone(), pair_b.1.clone()));
    run_fails(
        &a,
        &binary,
        &["deploy", "--version", "v1"],
        &["the certificate in cert.pem does not match the key in key.pem"],
    );
    keeps_serving();
    let now = tls_load::now_unix();
    write_pair(
        &dir_a,
        &ca.leaf_between(&["a.test"], now - 10 * 86_400, now - 86_400),
    );
    run_fails(
        &a,
        &binary,
        &["deploy", "--version", "v1"],
        &["the certificate in cert.pem expired on"],
    );
    keeps_serving();
    write_pair(&dir_a, &ca.leaf(&["c.test"]));
    run_fails(
        &a,
        &binary,
        &["proxy", "certs", "--renew"],
        &["does not name `a.test`"],
    );
    keeps_serving();
    // A third service claiming alpha's name: the proxy refuses it.
    let dir_c = work.path().join("gamma");
    let c = service_config(&dir_c, &lab, "gamma", "a.test", files);
    write_pair(&dir_c, &ca.leaf(&["a.test"]));
    let said = run_fails(
        &c,
        &binary,
        &["deploy", "--version", "v2"],
        &["a.test", "already served"],
    );
    eprintln!("a name claimed twice: {said}");
    keeps_serving();
}

#[test]
fn acme_from_pebble_issued_served_renewed_and_a_silent_directory() {
    require_engine!();
    let binary = static_ballast();
    hello_image("v1");
    let lab = Lab::up("acme", 2);
    let inv = &lab.inventory;
    let hosts: Vec<String> = inv.hosts.iter().map(|h| h.ip.clone()).collect();
    // The CA reaches the name at the second host: not the one that keeps
    // the account, so the challenge must be answered on every host.
    let pebble = Pebble::start(&lab.name, inv, &[("shop.test", &hosts[1])]);
    let work = tempfile::tempdir().unwrap();
    let acme = |directory: &str| {
        format!(
            "{{ acme: {{ email: ops@example.com, directory: \"{directory}\", ca: {} }} }}",
            pebble.ca_path.display()
        )
    };
    let config = service_config(
        work.path(),
        &lab,
        "shop",
        "shop.test",
        &acme(&pebble.directory),
    );

    run_ok(&config, &binary, &["setup"]);
    let deployed = run(&config, &binary, &["deploy", "--version", "v1"]);
    assert!(
        deployed.status.success(),
        "{}\npebble:\n{}",
        text(&deployed),
        pebble.logs()
    );
    let first = served_leaf(&hosts[0], 443, "shop.test").unwrap();
    assert!(first.issuer.contains("Pebble"), "{first:?}");
    assert_eq!(served_leaf(&hosts[1], 443, "shop.test").unwrap(), first);

    // The account is kept on the first host, root only.
    runtime().block_on(async {
        let host = Host::connect(&hosts[0], &inv.ssh_target(&inv.hosts[0]))
            .await
            .unwrap();
        let modes = host
            .run(
                "find",
                &["/var/lib/ballast/acme", "-printf", "%y %m\n"],
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(modes.stdout.trim(), "d 700\nf 600", "{modes:?}");
    });

    // Not due: a second deploy orders nothing.
    let again = run_ok(&config, &binary, &["deploy", "--version", "v1"]);
    assert!(!text(&again).contains("ACME: ordered"), "{}", text(&again));

    let renewed = run_ok(&config, &binary, &["proxy", "certs", "--force-renew"]);
    let second = served_leaf(&hosts[0], 443, "shop.test").unwrap();
    assert_ne!(second.fingerprint, first.fingerprint, "{}", text(&renewed));
    assert!(second.issuer.contains("Pebble"), "{second:?}");
    assert_eq!(served_leaf(&hosts[1], 443, "shop.test").unwrap(), second);
    assert!(
        text(&renewed).contains(&second.fingerprint[..16]),
        "{}",
        text(&renewed)
    );

    // A directory that does not answer: an error naming it, within its
    // deadline; the proxies keep their certificate and routes.
    // It takes connections (on this machine's loopback) and never speaks.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("https://{}/dir", listener.local_addr().unwrap());
    let config = service_config(work.path(), &lab, "shop", "shop.test", &acme(&silent));
    let started = std::time::Instant::now();
    let said = run_fails(
        &config,
        &binary,
        &["proxy", "certs", "--force-renew"],
        &[&silent, "did not answer within"],
    );
    eprintln!(
        "a silent directory, told in {:.1}s: {said}",
        started.elapsed().as_secs_f64()
    );
    for ip in &hosts {
        assert_eq!(served_leaf(ip, 443, "shop.test").unwrap(), second);
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-k"])
            .args(["--resolve", &format!("shop.test:443:{ip}")])
            .arg("https://shop.test/")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "v1",
            "{}",
            text(&out)
        );
    }
}
