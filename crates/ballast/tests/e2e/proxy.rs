//! Zero-downtime HTTP on a real 2-host lab: ballast-proxy on each host, a
//! load client counting every response through a deploy v1 → v2 and a version
//! that never becomes healthy, a slow request across the switch, the admin
//! socket kept off the network, and a proxy that comes back after a crash.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ballast_core::host::Host;
use ballast_core::proxy;

use common::*;

fn write_config(dir: &Path, lab: &Lab) -> PathBuf {
    let inv = &lab.inventory;
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
    proxy:
      drain_timeout: 10s
deploy:
  health_timeout: 10s
",
        h1 = inv.hosts[0].ip,
        h2 = inv.hosts[1].ip,
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// Runs `ballast deploy --version V` under load; returns its output and
/// what the load saw while it ran.
async fn deploy_under_load(
    config: &Path,
    binary: &Path,
    version: &str,
    urls: &[String],
) -> (std::process::Output, load::LoadReport) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let urls = load::parse_urls(urls).expect("load URLs");
    let load = tokio::spawn(load::run(urls, 300, 6, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let child = ballast_cmd(config, binary, &["deploy", "--version", version])
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    (out, load.await.unwrap())
}

/// Every answer of a burst of requests, after a deploy returned.
async fn answers(urls: &[String], n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for i in 0..n {
        let (status, body) = http_get(&urls[i % urls.len()]).await.unwrap();
        seen.push(format!("{status} {}", body.trim()));
    }
    seen
}

#[test]
fn deploys_through_the_proxy_fail_no_request() {
    require_engine!();
    let binary = static_ballast();
    hello_image("v1");
    hello_image("v2");
    hello_image_with("unhealthy", "HELLO_FAIL_HEALTH=1");
    let lab = Lab::up("proxy", 2);
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &lab);
    let inv = lab.inventory.clone();
    let urls: Vec<String> = inv
        .hosts
        .iter()
        .map(|h| format!("http://{}:80/", h.ip))
        .collect();

    run_ok(&config, &binary, &["setup"]);
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);

    runtime().block_on(async {
        assert!(answers(&urls, 4).await.iter().all(|a| a == "200 v1"));

        // A 3 s request in flight at the switch completes with 200.
        let slow_url = format!("http://{}:80/slow/3000", inv.hosts[0].ip);
        let slow = tokio::spawn(async move { http_get(&slow_url).await });

        let (out, seen) = deploy_under_load(&config, &binary, "v2", &urls).await;
        assert!(out.status.success(), "{}", text(&out));
        eprintln!(
            "measure: v1 -> v2 under load: {} requests in {:.1}s ({:.0}/s), {} failed, versions {:?}",
            seen.sent, seen.seconds, seen.rate(), seen.failed, seen.versions
        );
        assert_eq!(seen.failed, 0, "failed requests: {:?}", seen.failures);
        // The count of failed requests is the measure; the rate only
        // guards that the load was real (a busy 2-core CI sends ~180/s).
        assert!(seen.rate() >= 120.0, "load too light: {:.0}/s", seen.rate());
        assert!(answers(&urls, 20).await.iter().all(|a| a == "200 v2"));
        let slow = slow.await.unwrap().unwrap();
        assert_eq!(slow, (200, "v1\n".to_string()), "the slow request finished on the old version");

        // A version that never gets healthy takes no traffic and fails no request.
        let (out, seen) = deploy_under_load(&config, &binary, "unhealthy", &urls).await;
        assert!(!out.status.success(), "{}", text(&out));
        eprintln!(
            "measure: a never healthy version under load: {} requests ({:.0}/s), {} failed, versions {:?}",
            seen.sent, seen.rate(), seen.failed, seen.versions
        );
        assert_eq!(seen.failed, 0, "failed requests: {:?}", seen.failures);
        assert_eq!(seen.versions.keys().collect::<Vec<_>>(), ["v2"]);
        assert!(answers(&urls, 10).await.iter().all(|a| a == "200 v2"));

        let h1 = &inv.hosts[0];
        let host = Host::connect(&h1.ip, &inv.ssh_target(h1)).await.unwrap();

        // The admin socket is a unix socket only: nothing but sshd and the
        // proxy's HTTP port listens on the network (loopback aside).
        let listening = host.run("ss", &["-Hltn"], None, Duration::from_secs(10)).await.unwrap();
        for line in listening.stdout.lines() {
            let local = line.split_whitespace().nth(3).unwrap_or_default();
            let (addr, port) = local.rsplit_once(':').unwrap_or_default();
            if addr.starts_with("127.") || addr == "[::1]" {
                continue;
            }
            assert!(["22", "80"].contains(&port), "unexpected listener: {line}");
        }

        // A malformed admin request is refused, and the proxy keeps serving.
        let socket = host.unix(proxy::ADMIN_SOCKET, Duration::from_secs(10)).await.unwrap();
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        stream.write_all(b"POST /v1/deploy HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{not json").await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(answers(&urls, 4).await.iter().all(|a| a == "200 v2"));

        // The proxy's process killed: back within seconds, routes intact.
        let kill = host.run("pkill", &["-KILL", "-f", "/ballast proxy run"], None, Duration::from_secs(10)).await.unwrap();
        assert!(kill.success(), "{kill:?}");
        let killed_at = Instant::now();
        let back = loop {
            if let Ok((200, body)) = http_get(&urls[0]).await {
                break body;
            }
            assert!(killed_at.elapsed() < Duration::from_secs(30), "the proxy did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!("measure: proxy back {:.1}s after its process was killed", killed_at.elapsed().as_secs_f64());
        assert_eq!(back.trim(), "v2");
        host.close().await;
    });

    // A WebSocket opened before a switch keeps working until drained, while
    // new requests already reach the new version.
    let ws_url = format!("ws://{}:80/ws", inv.hosts[0].ip);
    let http_url = urls[0].clone();
    let rollback = runtime().block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.unwrap();
        ws.send(Message::text("before")).await.unwrap();
        let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert_eq!(first.as_str(), "v2 before");
        let child = ballast_cmd(&config, &binary, &["rollback"]).spawn().unwrap();
        let rollback = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
        let started = Instant::now();
        let mut switched_at = None;
        let mut echoes_after_switch = 0;
        while started.elapsed() < Duration::from_secs(30) {
            if switched_at.is_none() && http_get(&http_url).await.map(|(_, b)| b.trim() == "v1").unwrap_or(false) {
                switched_at = Some(Instant::now());
            }
            if ws.send(Message::text("tick")).await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    assert_eq!(t.as_str(), "v2 tick", "the connection stays on the old version");
                    if switched_at.is_some() {
                        echoes_after_switch += 1;
                    }
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(switched_at.is_some(), "new requests never reached v1");
        eprintln!("measure: the WebSocket answered {echoes_after_switch} messages on v2 after the switch to v1");
        assert!(echoes_after_switch >= 3, "the WebSocket did not outlive the switch");
        rollback.await.unwrap()
    });
    assert!(rollback.status.success(), "{}", text(&rollback));

    // Operators see each proxy's routes and logs, and can restart or
    // upgrade them host by host; routes survive both.
    let status = run_ok(&config, &binary, &["--json", "proxy", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    for h in &inv.hosts {
        assert!(status.contains(&h.ip), "{status}");
    }
    assert_eq!(
        status.matches("\"name\":\"hello-web\"").count(),
        2,
        "{status}"
    );
    let logs = run_ok(&config, &binary, &["proxy", "logs", "--tail", "5"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.lines()
            .any(|l| l.contains(" proxy | ") && l.contains("\"status\":200")),
        "{logs}"
    );
    run_ok(&config, &binary, &["proxy", "restart"]);
    run_ok(&config, &binary, &["proxy", "upgrade"]);
    runtime().block_on(async {
        assert!(answers(&urls, 4).await.iter().all(|a| a == "200 v1"));
    });
}

#[test]
fn https_with_the_configured_certificate_and_plain_http_redirected() {
    require_engine!();
    let binary = static_ballast();
    hello_image("v1");
    let lab = Lab::up("tls", 1);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let openssl = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=hello.test",
            "-addext",
            "subjectAltName=DNS:hello.test",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(openssl.status.success(), "{}", text(&openssl));
    let inv = &lab.inventory;
    let ip = inv.hosts[0].ip.clone();
    let rest = format!(
        "roles:\n  web:\n    hosts: [{ip}]\n    port: 8080\n    proxy:\n      hosts: [hello.test]\n      tls: {{ cert: cert.pem, key: key.pem }}\n      max_request_body: 1KiB\n      trusted_proxies: [192.0.2.0/24]\n"
    );
    let config = lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest);
    let setup = run_ok(&config, &binary, &["setup"]);
    let deploy = run_ok(&config, &binary, &["deploy", "--version", "v1"]);
    for out in [&setup, &deploy] {
        let all = text(out);
        assert!(!all.contains("PRIVATE KEY"), "the key was printed:\n{all}");
    }

    let https = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(dir.join("cert.pem"))
        .args([
            "--resolve",
            &format!("hello.test:443:{ip}"),
            "https://hello.test/",
        ])
        .output()
        .unwrap();
    assert!(https.status.success(), "{}", text(&https));
    assert_eq!(String::from_utf8_lossy(&https.stdout), "v1\n");

    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["-H", "Host: hello.test", &format!("http://{ip}/")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "301 https://hello.test/",
        "{}",
        text(&plain)
    );

    runtime().block_on(async {
        let host = Host::connect(&ip, &inv.ssh_target(&inv.hosts[0]))
            .await
            .unwrap();
        // The proxy keeps the certificate and key it was sent in its state
        // directory, readable by root only.
        let mode = host
            .run(
                "stat",
                &[
                    "-c",
                    "%a",
                    "/var/lib/ballast/proxy",
                    "/var/lib/ballast/proxy/certificate.hello-web.json",
                ],
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            mode.stdout.split_whitespace().collect::<Vec<_>>(),
            ["700", "600"],
            "the key is readable by root only: {}",
            mode.stderr
        );
        // The config's trusted proxies reach the proxy's command line.
        let inspected = host
            .engine()
            .docker()
            .inspect_container(proxy::CONTAINER, None)
            .await
            .unwrap();
        let cmd = inspected.config.unwrap().cmd.unwrap_or_default().join(" ");
        assert!(cmd.contains("--trusted-proxy 192.0.2.0/24"), "{cmd}");
        host.close().await;
    });

    // The role's body limit: a body over 1 KiB is refused by the proxy.
    // (Over HTTP/1.1: over HTTP/2 curl may report the proxy's early answer
    // as a stream error; noted for the proxy issue.)
    let big = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(dir.join("cert.pem"))
        .args(["--resolve", &format!("hello.test:443:{ip}")])
        .args(["--http1.1", "--data-binary", &"x".repeat(2048)])
        .arg("https://hello.test/count")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&big.stdout),
        "413",
        "{}",
        text(&big)
    );
}
