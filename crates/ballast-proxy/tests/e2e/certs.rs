//! Many services behind one proxy: certificates chosen by SNI, set and
//! renewed through the admin API without a restart (under HTTPS load),
//! refused when wrong (the proxy keeps what it had), saved across restarts;
//! route conflicts refused; ACME challenges answered on plain HTTP.

#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ballast_proxy::wire::{CertificateStatus, ChallengeRequest, RemoveCertificateRequest};
use ballast_proxy::{AdminError, AdminRequest};
use common::tls::*;
use common::*;
use hyper::{header, StatusCode};

/// A proxy with an HTTPS listener and no certificate on its command line.
async fn https_proxy(dir: &std::path::Path) -> TestProxy {
    let mut config = TestProxy::config(dir);
    config.https = vec!["127.0.0.1:0".parse().unwrap()];
    TestProxy::start_with(config).await
}

async fn certificates(proxy: &TestProxy) -> Vec<CertificateStatus> {
    let response = proxy.admin(AdminRequest::Status).await.unwrap();
    response.status.unwrap().certificates
}

/// The admin API's error sentence for `request`.
async fn refused(proxy: &TestProxy, request: AdminRequest) -> String {
    match proxy.admin(request).await {
        Err(AdminError::Refused { message, .. }) => message,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn two_services_get_their_own_certificate_and_backend_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = https_proxy(dir.path()).await;
    let https = proxy.started.https_addr().unwrap();
    let (a, b) = (issue(&["a.test"]), issue(&["b.test", "*.b.test"]));
    let roots = [&a, &b];

    // Listening with no certificate: handshakes fail, the proxy runs on.
    let err = connect(https, Some("a.test"), &roots).await.err().unwrap();
    assert!(err.starts_with("handshake:"), "{err}");

    let (up_a, up_b) = (Upstream::start("A").await, Upstream::start("B").await);
    proxy
        .deploy("svc-a", &["a.test"], None, &[&up_a], 5000, 1000)
        .await
        .unwrap();
    let hosts_b = ["b.test", "x.b.test"];
    proxy
        .deploy("svc-b", &hosts_b, None, &[&up_b], 5000, 1000)
        .await
        .unwrap();
    let set = proxy.admin(a.request("svc-a", &["A.test."])).await.unwrap();
    assert_eq!(set.certificate.unwrap().fingerprint, a.fingerprint());
    proxy
        .admin(b.request("svc-b", &["b.test", "*.b.test"]))
        .await
        .unwrap();

    for (host, cert, body) in [
        ("a.test", &a, "A"),
        ("b.test", &b, "B"),
        ("x.b.test", &b, "B"),
    ] {
        let got = https_get(https, host, "/", &roots).await.unwrap();
        assert_eq!(got, (cert.fingerprint(), 200, body.to_string()), "{host}");
    }
    // An independent client (curl on OpenSSL) trusting only b's
    // certificate gets it, and b's backend, for b.test.
    let ca = dir.path().join("b.pem");
    std::fs::write(&ca, &b.cert_pem).unwrap();
    let port = https.port();
    let curl = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("x.b.test:{port}:127.0.0.1")])
            .arg(format!("https://x.b.test:{port}/"))
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&curl.stderr);
    assert!(curl.status.success(), "curl failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "B");

    // A name no certificate is set for gets none (no --tls-cert here).
    assert!(connect(https, Some("c.test"), &roots).await.is_err());

    assert_eq!(
        certificates(&proxy).await,
        [
            CertificateStatus {
                service: "svc-a".into(),
                names: vec!["a.test".into()],
                not_after_unix: YEAR_4096,
                fingerprint: a.fingerprint(),
            },
            CertificateStatus {
                service: "svc-b".into(),
                names: vec!["b.test".into(), "*.b.test".into()],
                not_after_unix: YEAR_4096,
                fingerprint: b.fingerprint(),
            },
        ]
    );
    proxy.started.stop().await;
}

/// rcgen's default end of validity, 4096-01-01, in Unix seconds.
const YEAR_4096: u64 = 67_090_118_400;

#[tokio::test]
async fn renewal_under_https_load_fails_nothing_and_new_handshakes_see_it() {
    const CLIENTS: u64 = 4;
    const PER_CLIENT: u64 = 1000;
    const PER_CONNECTION: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let proxy = https_proxy(dir.path()).await;
    let https = proxy.started.https_addr().unwrap();
    let up = Upstream::start("web").await;
    proxy
        .deploy("web", &["shop.test"], None, &[&up], 5000, 1000)
        .await
        .unwrap();
    let (old, new) = (issue(&["shop.test"]), issue(&["shop.test"]));
    proxy
        .admin(old.request("web", &["shop.test"]))
        .await
        .unwrap();

    // Opened before the renewal, used after it.
    let early = connect(https, Some("shop.test"), &[&old]).await.unwrap();
    assert_eq!(served(&early), old.fingerprint());
    let mut early = http1(early).await.unwrap();

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        let roots = [old.clone(), new.clone()];
        load.spawn(async move {
            let roots: Vec<&Issued> = roots.iter().collect();
            let mut seen = Vec::new();
            let mut sent = 0;
            while sent < PER_CLIENT {
                // A new TLS connection every PER_CONNECTION requests; a
                // failed connection counts all the requests it was for.
                let batch = PER_CONNECTION.min(PER_CLIENT - sent);
                sent += batch;
                let connected = match connect(https, Some("shop.test"), &roots).await {
                    Ok(tls) => {
                        seen.push(served(&tls));
                        http1(tls).await
                    }
                    Err(e) => Err(e),
                };
                let mut sender = match connected {
                    Ok(sender) => sender,
                    Err(e) => {
                        eprintln!("connection failed: {e}");
                        failed.fetch_add(batch, Ordering::SeqCst);
                        continue;
                    }
                };
                for _ in 0..batch {
                    match send(&mut sender, "shop.test", "/").await {
                        Ok((200, body)) if body == "web" => done.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("request failed: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            }
            seen
        });
    }
    eventually("a quarter of the load is done", || {
        let done = done.load(Ordering::SeqCst);
        async move { done >= CLIENTS * PER_CLIENT / 4 }
    })
    .await;
    proxy
        .admin(new.request("web", &["shop.test"]))
        .await
        .unwrap();
    let after_renewal = done.load(Ordering::SeqCst);
    let fresh = connect(https, Some("shop.test"), &[&new]).await.unwrap();
    assert_eq!(served(&fresh), new.fingerprint(), "a new handshake");
    let mut seen = Vec::new();
    while let Some(client) = load.join_next().await {
        let client = client.unwrap();
        // Once a client was served the new one, it never got the old one.
        if let Some(first_new) = client.iter().position(|f| *f == new.fingerprint()) {
            assert!(client[first_new..].iter().all(|f| *f == new.fingerprint()));
        }
        seen.extend(client);
    }
    let elapsed = start.elapsed();
    let (done, failed) = (done.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!(
        "{done} requests ({} connections) in {elapsed:?}: {:.0} req/s, {failed} failed; \
         {after_renewal} done before the renewal",
        seen.len(),
        done as f64 / elapsed.as_secs_f64(),
    );
    assert_eq!((done, failed), (CLIENTS * PER_CLIENT, 0));
    assert!(
        after_renewal < CLIENTS * PER_CLIENT,
        "the renewal came mid-load"
    );
    assert!(seen.contains(&old.fingerprint()) && seen.contains(&new.fingerprint()));
    assert_eq!(certificates(&proxy).await[0].fingerprint, new.fingerprint());

    // The connection opened before the renewal still works, on its own.
    let (status, body) = send(&mut early, "shop.test", "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "web"));
    proxy.started.stop().await;
}

#[tokio::test]
async fn bad_certificates_and_clashing_routes_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = https_proxy(dir.path()).await;
    let https = proxy.started.https_addr().unwrap();
    let up_a = Upstream::start("A").await;
    proxy
        .deploy("svc-a", &["a.test"], None, &[&up_a], 5000, 1000)
        .await
        .unwrap();
    let good = issue(&["a.test"]);
    proxy
        .admin(good.request("svc-a", &["a.test"]))
        .await
        .unwrap();
    let before = certificates(&proxy).await;

    let other = issue(&["a.test"]);
    let mismatched = Issued {
        key_pem: issue(&["a.test"]).key_pem,
        ..other.clone()
    };
    let expired = issue_between(&["a.test"], 2019, 2021);
    let future = issue_between(&["a.test"], 4000, 4001);
    let cases = [
        (
            mismatched.request("svc-a", &["a.test"]),
            "cannot use the certificate of service `svc-a`: key_pem is not the private key of \
             the leaf certificate in cert_pem; hint: send the key the certificate was issued \
             for; nothing was changed: the proxy serves the certificates it had",
        ),
        (
            expired.request("svc-a", &["a.test"]),
            "cannot use the certificate of service `svc-a`: the certificate expired at \
             2021-01-01T00:00:00Z; hint: renew it and send the new one; nothing was changed: \
             the proxy serves the certificates it had",
        ),
        (
            future.request("svc-a", &["a.test"]),
            "cannot use the certificate of service `svc-a`: the certificate is not valid \
             before 4000-01-01T00:00:00Z; hint: check this host's clock, or send it once it \
             is valid; nothing was changed: the proxy serves the certificates it had",
        ),
        (
            other.request("svc-a", &["a.test", "c.test"]),
            "cannot use the certificate of service `svc-a`: the certificate does not cover \
             host name `c.test` (its names are: a.test); hint: list only names the \
             certificate is issued for, or get one that covers `c.test`; nothing was \
             changed: the proxy serves the certificates it had",
        ),
        (
            other.request("svc-b", &["a.test"]),
            "cannot use the certificate of service `svc-b`: host name `a.test` is already \
             served by the certificate of service `svc-a`; hint: take it out of one of the \
             two (set that service's certificate with other names, or remove_certificate); \
             nothing was changed: the proxy serves the certificates it had",
        ),
        (
            AdminRequest::Certificate(ballast_proxy::wire::CertificateRequest {
                cert_pem: "not pem".into(),
                ..match other.request("svc-a", &["a.test"]) {
                    AdminRequest::Certificate(r) => r,
                    _ => unreachable!(),
                }
            }),
            "cannot use the certificate of service `svc-a`: cert_pem holds no `-----BEGIN \
             CERTIFICATE-----` block; hint: send the chain as PEM, leaf first; nothing was \
             changed: the proxy serves the certificates it had",
        ),
    ];
    let up_b = Upstream::start("B").await;
    for (request, sentence) in cases {
        let err = refused(&proxy, request).await;
        assert_eq!(err, sentence);
        assert!(!err.contains("PRIVATE KEY"), "{err}");
        assert_eq!(certificates(&proxy).await, before);
        let got = https_get(https, "a.test", "/", &[&good]).await.unwrap();
        assert_eq!(got, (good.fingerprint(), 200, "A".to_string()));
    }

    // Two services may not route the same host name and path prefix.
    let err = refused(
        &proxy,
        AdminRequest::Deploy(deploy_request(
            "svc-b",
            &["a.test"],
            None,
            &[&up_b],
            5000,
            1000,
        )),
    )
    .await;
    assert_eq!(
        err,
        "cannot deploy `svc-b`: host name a.test with path prefix / is already served by \
         service `svc-a`; give one of them another host name or path_prefix"
    );
    assert_eq!(proxy.targets_of("svc-b").await, Vec::<String>::new());
    assert_eq!(proxy.targets_of("svc-a").await, [up_a.target()]);
    let got = https_get(https, "a.test", "/", &[&good]).await.unwrap();
    assert_eq!(got.2, "A");
    // Another prefix is another route; the same service redeploying is fine.
    let deploy_b = deploy_request("svc-b", &["a.test"], Some("/b"), &[&up_b], 5000, 1000);
    proxy.admin(AdminRequest::Deploy(deploy_b)).await.unwrap();
    proxy
        .deploy("svc-a", &["a.test"], None, &[&up_a], 5000, 1000)
        .await
        .unwrap();
    assert_eq!(
        https_get(https, "a.test", "/b/x", &[&good])
            .await
            .unwrap()
            .2,
        "B"
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn plain_http_answers_challenges_redirects_certificate_hosts_and_proxies_others() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = https_proxy(dir.path()).await;
    let https_port = proxy.started.https_addr().unwrap().port();
    let (up_a, up_p) = (Upstream::start("A").await, Upstream::start("P").await);
    proxy
        .deploy("svc-a", &["a.test"], None, &[&up_a], 5000, 1000)
        .await
        .unwrap();
    proxy
        .deploy("plain", &["plain.test"], None, &[&up_p], 5000, 1000)
        .await
        .unwrap();
    proxy
        .admin(issue(&["a.test"]).request("svc-a", &["a.test"]))
        .await
        .unwrap();
    let challenge = |token: &str, answer: Option<&str>| {
        AdminRequest::Challenge(ChallengeRequest {
            token: token.into(),
            key_authorization: answer.map(str::to_string),
        })
    };
    proxy
        .admin(challenge("tok_1-x", Some("tok_1-x.thumb")))
        .await
        .unwrap();
    let c = client();
    let path = "/.well-known/acme-challenge/tok_1-x";

    // Answered whatever the host: one with a certificate, one without, any.
    for host in ["a.test", "plain.test", "new.test"] {
        let (status, headers, body) = get_full(&c, proxy.addr(), host, path).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "tok_1-x.thumb"),
            "{host}"
        );
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain");
    }
    let unknown = get(
        &c,
        proxy.addr(),
        "a.test",
        "/.well-known/acme-challenge/nope",
    )
    .await;
    assert_eq!(unknown.unwrap().0, StatusCode::NOT_FOUND);

    // A host a certificate covers moves to HTTPS; others are proxied.
    let (status, headers, _) = get_full(&c, proxy.addr(), "a.test", "/cart?id=7").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        headers[header::LOCATION],
        format!("https://a.test:{https_port}/cart?id=7").as_str()
    );
    let (status, body) = get(&c, proxy.addr(), "plain.test", "/").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "P"));

    // Cleared: no longer answered. Bad tokens are refused.
    proxy.admin(challenge("tok_1-x", None)).await.unwrap();
    assert_eq!(
        get(&c, proxy.addr(), "a.test", path).await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    let err = refused(&proxy, challenge("../x", Some("../x.k"))).await;
    assert!(err.starts_with("challenge token `../x` must be"), "{err}");

    // Without its certificate, a host is proxied on plain HTTP again.
    let remove = AdminRequest::RemoveCertificate(RemoveCertificateRequest {
        service: "svc-a".into(),
    });
    proxy.admin(remove.clone()).await.unwrap();
    let (status, body) = get(&c, proxy.addr(), "a.test", "/").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "A"));
    let err = refused(&proxy, remove).await;
    assert_eq!(
        err,
        "no certificate for service `svc-a`: the proxy serves none yet"
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn certificates_survive_a_restart_privately_and_bad_saved_ones_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = https_proxy(dir.path()).await;
    let (a, b) = (issue(&["a.test"]), issue(&["b.test"]));
    proxy.admin(a.request("svc-a", &["a.test"])).await.unwrap();
    proxy.admin(b.request("svc-b", &["b.test"])).await.unwrap();
    proxy
        .admin(AdminRequest::RemoveCertificate(RemoveCertificateRequest {
            service: "svc-b".into(),
        }))
        .await
        .unwrap();
    let before = certificates(&proxy).await;
    proxy.started.stop().await;

    let state = dir.path().join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let file = state.join("certificate.svc-a.json");
    assert_eq!(mode(&file), 0o600);
    assert!(!state.join("certificate.svc-b.json").exists(), "removed");
    // Saved by hand or by an older proxy: corrupt, and expired since.
    std::fs::write(state.join("certificate.broken.json"), "{").unwrap();
    let expired = issue_between(&["e.test"], 2019, 2021);
    let saved = serde_json::json!({
        "format": 1, "service": "old", "names": ["e.test"],
        "cert_pem": expired.cert_pem, "key_pem": expired.key_pem,
    });
    std::fs::write(state.join("certificate.old.json"), saved.to_string()).unwrap();

    let proxy = https_proxy(dir.path()).await;
    let https = proxy.started.https_addr().unwrap();
    assert_eq!(certificates(&proxy).await, before);
    let tls = connect(https, Some("a.test"), &[&a]).await.unwrap();
    assert_eq!(served(&tls), a.fingerprint());
    // Without SNI, the only certificate is served.
    let ip = issue(&["a.test", "127.0.0.1"]);
    proxy.admin(ip.request("svc-a", &["a.test"])).await.unwrap();
    let tls = connect(https, None, &[&ip]).await.unwrap();
    assert_eq!(served(&tls), ip.fingerprint());
    proxy.started.stop().await;
}

#[tokio::test]
async fn the_command_line_certificate_serves_names_without_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = issue(&["localhost", "127.0.0.1"]);
    let files = ballast_proxy::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, &fallback.cert_pem).unwrap();
    std::fs::write(&files.key, &fallback.key_pem).unwrap();
    let mut config = TestProxy::config(dir.path());
    config.https = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls = Some(files);
    let proxy = TestProxy::start_with(config).await;
    let https = proxy.started.https_addr().unwrap();
    let a = issue(&["a.test"]);
    proxy.admin(a.request("svc-a", &["a.test"])).await.unwrap();

    let roots = [&fallback, &a];
    let served_for = |name: Option<&'static str>| {
        let roots = roots.map(Clone::clone);
        async move {
            let roots: Vec<&Issued> = roots.iter().collect();
            served(&connect(https, name, &roots).await.unwrap())
        }
    };
    assert_eq!(served_for(Some("a.test")).await, a.fingerprint());
    assert_eq!(served_for(Some("localhost")).await, fallback.fingerprint());
    assert_eq!(served_for(None).await, fallback.fingerprint());
    // Only certificates set through the admin API are listed.
    assert_eq!(certificates(&proxy).await.len(), 1);
    proxy.started.stop().await;
}
