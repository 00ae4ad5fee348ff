//! Health checks of candidate targets, before any traffic is switched to them.
//!
//! A check is `GET <path>` to the target; any 2xx answer within the check's
//! timeout means healthy. Checks repeat every interval until one passes or
//! the deploy's deadline is reached; the last failure is kept so the error
//! can say what the target answered.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{header, Method, Request};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::proxy::{empty, UpstreamClient};
use crate::wire::HealthSpec;

/// A target that never passed its health check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "target {target} did not become healthy within {waited_ms} ms \
     ({attempts} checks of GET {path}; last: {last})"
)]
pub struct HealthError {
    /// The target checked.
    pub target: String,
    /// The path checked.
    pub path: String,
    /// How many checks were made.
    pub attempts: u32,
    /// How long it was given.
    pub waited_ms: u64,
    /// What the last check saw.
    pub last: String,
}

/// Waits until every target passes its health check, checking them side by
/// side; the first failure to reach `deadline` is the error.
pub async fn wait_all_healthy(
    client: &UpstreamClient,
    targets: &[String],
    spec: &HealthSpec,
    deadline: Instant,
) -> Result<Duration, HealthError> {
    let start = Instant::now();
    let mut checks = JoinSet::new();
    for target in targets {
        let (client, target, spec) = (client.clone(), target.clone(), spec.clone());
        checks.spawn(async move { wait_healthy(&client, &target, &spec, deadline).await });
    }
    while let Some(result) = checks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e), // dropping the set stops the others
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(start.elapsed())
}

/// Checks one target until it is healthy or `deadline` is reached.
pub async fn wait_healthy(
    client: &UpstreamClient,
    target: &str,
    spec: &HealthSpec,
    deadline: Instant,
) -> Result<(), HealthError> {
    let start = Instant::now();
    let mut attempts = 0;
    let mut last = "no check finished".to_string();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        attempts += 1;
        let timeout = spec.timeout().min(deadline - now);
        match tokio::time::timeout(timeout, check(client, target, &spec.path)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => last = reason,
            Err(_) => last = format!("no answer within {} ms", timeout.as_millis()),
        }
        let next = Instant::now() + spec.interval();
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    Err(HealthError {
        target: target.to_string(),
        path: spec.path.clone(),
        attempts,
        waited_ms: start.elapsed().as_millis() as u64,
        last,
    })
}

/// One check: `Ok` on a 2xx answer, else what was seen.
async fn check(client: &UpstreamClient, target: &str, path: &str) -> Result<(), String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{target}{path}"))
        .header(header::HOST, target)
        .header(header::USER_AGENT, "ballast-proxy health check")
        .body(empty())
        .map_err(|e| format!("cannot build the check request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| describe_client_error(&e))?;
    let status = response.status();
    // Read the (small) body so the connection can be reused.
    let _ = response.into_body().collect().await.map(|b| b.to_bytes());
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// A client error with its cause chain, e.g. `connection refused`.
pub fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream_client;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A server answering 503 to the first `sick` requests, then 200.
    async fn server(sick: u32) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let status = if n < sick { 503 } else { 200 };
                            hyper::Response::builder()
                                .status(status)
                                .body(http_body_util::Full::new(Bytes::from("x")))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        addr
    }

    fn spec() -> HealthSpec {
        HealthSpec {
            path: "/up".into(),
            interval_ms: 10,
            timeout_ms: 1000,
        }
    }

    #[tokio::test]
    async fn a_target_that_recovers_becomes_healthy() {
        let addr = server(3).await;
        let client = upstream_client(Duration::from_secs(1), Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(20);
        wait_all_healthy(&client, &[addr], &spec(), deadline)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_sick_target_fails_with_what_it_answered() {
        let addr = server(u32::MAX).await;
        let client = upstream_client(Duration::from_secs(1), Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = wait_all_healthy(&client, std::slice::from_ref(&addr), &spec(), deadline)
            .await
            .unwrap_err();
        assert_eq!(err.target, addr);
        assert_eq!(err.last, "answered 503 Service Unavailable");
        assert!(err.attempts >= 1);
        assert!(err.to_string().contains("did not become healthy"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_the_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = upstream_client(Duration::from_secs(1), Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_millis(100);
        let err = wait_healthy(&client, &addr, &spec(), deadline)
            .await
            .unwrap_err();
        assert!(err.last.contains("refused"), "{}", err.last);
    }
}
