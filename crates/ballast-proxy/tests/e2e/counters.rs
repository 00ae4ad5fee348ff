//! The request counters `status` reports per service: every answer
//! counts, and 5xx answers (the target's own and the proxy's 502) count
//! apart; a redeploy of the service keeps them; another service's
//! requests are not its.

use crate::common;

use ballast_proxy::AdminRequest;
use common::*;
use hyper::StatusCode;

/// `(requests, responses_5xx)` of `service`, as `status` reports them.
async fn counted(proxy: &TestProxy, service: &str) -> (u64, u64) {
    let status = proxy
        .admin(AdminRequest::Status)
        .await
        .unwrap()
        .status
        .unwrap();
    let s = status
        .services
        .into_iter()
        .find(|s| s.name == service)
        .unwrap_or_else(|| panic!("no service {service}"));
    (s.requests, s.responses_5xx)
}

/// Waits until `service` counts `want`: a request is counted once its
/// response body is finished, which the client may see a moment before.
async fn wait_counted(proxy: &TestProxy, service: &str, want: (u64, u64)) {
    eventually(&format!("{service} counts {want:?}"), || async {
        counted(proxy, service).await == want
    })
    .await;
    assert_eq!(counted(proxy, service).await, want);
}

#[tokio::test]
async fn status_counts_answers_and_5xx_per_service() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_serving_v1(TestProxy::config(dir.path())).await;
    let other = Upstream::start("other").await;
    proxy
        .deploy("other", &["other.test"], None, &[&other], 5000, 1000)
        .await
        .unwrap();
    assert_eq!(counted(&proxy, "web").await, (0, 0));
    let c = client();
    let addr = proxy.addr();

    // A 200, then a 500 from the target.
    let (status, _) = get(&c, addr, "x.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&c, addr, "x.test", "/fail").await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    wait_counted(&proxy, "web", (2, 1)).await;
    // The other service's request is its own.
    get(&c, addr, "other.test", "/").await.unwrap();
    wait_counted(&proxy, "other", (1, 0)).await;
    assert_eq!(counted(&proxy, "web").await, (2, 1));

    // A redeploy to another target keeps the counts going up.
    let v2 = Upstream::start("v2").await;
    proxy
        .deploy("web", &[], None, &[&v2], 5000, 1000)
        .await
        .unwrap();
    drop(v1);
    assert_eq!(counted(&proxy, "web").await, (2, 1));

    // The target down: the proxy's own 502 counts as a 5xx.
    v2.stop();
    let (status, _) = get(&c, addr, "x.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    wait_counted(&proxy, "web", (3, 2)).await;
    proxy.started.stop().await;
}
