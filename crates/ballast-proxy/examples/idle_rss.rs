//! Measures the proxy's resident memory (VmRSS) at idle: right after start,
//! and again after a deploy and 1,000 requests through it. Loopback only.
//!
//! `cargo run --release -p ballast-proxy --example idle_rss`

#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::time::Duration;

use ballast_proxy::wire::{DeployRequest, HealthSpec};
use ballast_proxy::{admin_request, AccessLog, AdminRequest, ProxyConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let before = rss();
    let mut config = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("proxy.sock"),
        dir.path().join("state"),
    );
    config.access_log = AccessLog::Off;
    let proxy = ballast_proxy::start(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("before start:            VmRSS {before}");
    println!("idle after start:        VmRSS {}", rss());

    // A tiny upstream (measured together with the proxy: same process).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("v1"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let deploy = AdminRequest::Deploy(DeployRequest {
        service: "web".into(),
        hosts: vec![],
        path_prefix: None,
        targets: vec![upstream.to_string()],
        health: HealthSpec {
            path: "/up".into(),
            interval_ms: 50,
            timeout_ms: 1000,
        },
        deploy_timeout_ms: 5000,
        drain_timeout_ms: 1000,
        max_request_body_bytes: None,
        max_response_body_bytes: None,
    });
    admin_request(proxy.admin_socket(), &deploy, Duration::from_secs(10))
        .await
        .unwrap();
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let uri: hyper::Uri = format!("http://{}/", proxy.http_addr()).parse().unwrap();
    for _ in 0..1000 {
        let response = client.get(uri.clone()).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("idle after 1000 requests: VmRSS {}", rss());
    proxy.stop().await;
}
