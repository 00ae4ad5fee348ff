//! Answers the proxy gives before a request body is read: a body declared
//! larger than its route's limit is answered 413 at once, and every client
//! sees that answer, over HTTP/2 as over HTTP/1.1, however much of the body
//! it is still sending.

use crate::common;

use std::sync::atomic::Ordering;

use ballast_proxy::AdminRequest;
use common::*;

/// A proxy whose route `web` takes request bodies of at most 16 bytes.
async fn proxy_limiting_requests(dir: &std::path::Path) -> (TestProxy, Upstream) {
    let proxy = TestProxy::start_with(TestProxy::config(dir)).await;
    let v1 = Upstream::start("v1").await;
    let mut request = deploy_request("web", &[], None, &[&v1], 5000, 1000);
    request.max_request_body_bytes = Some(16);
    proxy.admin(AdminRequest::Deploy(request)).await.unwrap();
    (proxy, v1)
}

/// `curl` uploading `file` to `url` with `args`; its exit code, the status
/// it printed and its error output.
async fn curl_upload(
    url: String,
    file: std::path::PathBuf,
    args: &[&str],
) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "20",
            ])
            .args(&args)
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(url)
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_oversized_upload_over_http2_is_answered_413_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_limiting_requests(dir.path()).await;
    // Far more than the stream and connection windows: curl is still
    // sending when the answer comes. Before the proxy read the rest, curl
    // 7.88 failed all 50 with "Stream error in the HTTP/2 framing layer":
    // h2 ended the stream with the 413 and RST_STREAM(NO_ERROR), as RFC
    // 9113 §8.1 allows, and curl drops the answer on such a reset.
    let file = dir.path().join("body");
    std::fs::write(&file, vec![b'x'; 4 << 20]).unwrap();
    let url = format!("http://{}/echo", proxy.addr());
    let mut failures = Vec::new();
    for _ in 0..50 {
        let (code, status, stderr) =
            curl_upload(url.clone(), file.clone(), &["--http2-prior-knowledge"]).await;
        if (code, status.as_str()) != (0, "413") {
            failures.push(format!("exit {code}, status {status}: {stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 50: {failures:#?}",
        failures.len()
    );
    assert_eq!(v1.hits.load(Ordering::SeqCst), 0, "never forwarded");
    proxy.started.stop().await;
}

#[tokio::test]
async fn an_oversized_upload_over_http1_is_answered_413_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_limiting_requests(dir.path()).await;
    // curl waits for `100 Continue` before a body this large, and gets the
    // 413 instead.
    let file = dir.path().join("body");
    std::fs::write(&file, vec![b'x'; 4 << 20]).unwrap();
    let url = format!("http://{}/echo", proxy.addr());
    let mut failures = Vec::new();
    for _ in 0..50 {
        let (code, status, stderr) = curl_upload(url.clone(), file.clone(), &["--http1.1"]).await;
        if (code, status.as_str()) != (0, "413") {
            failures.push(format!("exit {code}, status {status}: {stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 50: {failures:#?}",
        failures.len()
    );
    assert_eq!(v1.hits.load(Ordering::SeqCst), 0, "never forwarded");
    proxy.started.stop().await;
}
