//! What `ballast plan`, `deploy` and `rollback` print, pinned as snapshots:
//! a plan computed by `ballast_core::plan::plan` from fixed observed
//! states, and deploy reports of each ending (done, with skipped hosts,
//! failed, reverted, interrupted), as text, as the error that ends the
//! command, and as `--json`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ballast_core::delivery::DeliveryReport;
use ballast_core::deploy::{HostOutcome, Outcome, Report};
use ballast_core::plan::{
    self, BatchSize, HostState, HostTarget, Plan, ProxyFound, RoleTarget, Settings, Switch,
    WantedProxy,
};
use ballast_core::proxy::{Build, Listen, Route};
use ballast_core::release::{AppContainer, ContainerState};
use ballast_core::spec::{HealthMode, RoleSpec};
use ballast_proxy::wire::HealthSpec;

use super::{outcome, render_plan, render_report};
use crate::output::{error_json, error_text, result_json};

const IMAGE_V1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE_V2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn spec(role: &str, publish: Vec<(u16, u16)>, network: Option<&str>) -> RoleSpec {
    RoleSpec {
        role: role.into(),
        cmd: None,
        env_clear: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
        env_secret: vec!["DATABASE_PASSWORD".into()],
        publish,
        volumes: vec![],
        log_driver: "local".into(),
        log_options: BTreeMap::new(),
        stop_timeout: Duration::from_secs(10),
        network: network.map(str::to_string),
        secret_files: false,
        init: true,
    }
}

fn role(
    name: &str,
    health: HealthMode,
    switch: Switch,
    spec: &RoleSpec,
    hosts: &[&str],
) -> RoleTarget {
    RoleTarget {
        role: name.into(),
        version: "v2".into(),
        image_id: IMAGE_V2.into(),
        health,
        health_timeout: Duration::from_secs(30),
        switch,
        hosts: hosts
            .iter()
            .map(|h| HostTarget {
                host: h.to_string(),
                spec: spec.clone(),
                digest: "cfg-7f3a".into(),
            })
            .collect(),
    }
}

fn web_route() -> Route {
    Route {
        service: "shop-web".into(),
        hosts: vec!["shop.example.com".into()],
        path_prefix: None,
        port: 8080,
        health: HealthSpec {
            path: "/up".into(),
            interval_ms: 250,
            timeout_ms: 5000,
        },
        deploy_timeout: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(30),
        max_request_body_bytes: None,
        max_response_body_bytes: None,
    }
}

/// web (through the proxy) on two hosts, worker (the image's HEALTHCHECK)
/// and cron (publishes a port: stops first) on one each.
fn targets() -> Vec<RoleTarget> {
    let http = HealthMode::Http {
        port: 8080,
        path: "/up".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    };
    vec![
        role(
            "web",
            http,
            Switch::Proxy(web_route()),
            &spec("web", vec![], Some("ballast")),
            &["web-1", "web-2"],
        ),
        role(
            "worker",
            HealthMode::Docker,
            Switch::StartFirst,
            &spec("worker", vec![], None),
            &["worker-1"],
        ),
        role(
            "cron",
            HealthMode::Running(Duration::from_secs(5)),
            Switch::StopFirst,
            &spec("cron", vec![(9090, 9090)], None),
            &["cron-1"],
        ),
    ]
}

fn container(role: &str, version: &str, state: ContainerState, created: i64) -> AppContainer {
    AppContainer {
        id: format!("id-{role}-{version}"),
        name: format!("shop-{role}-{version}"),
        role: role.into(),
        version: version.into(),
        image_id: if version == "v2" { IMAGE_V2 } else { IMAGE_V1 }.into(),
        config_digest: "cfg-7f3a".into(),
        image_source: String::new(),
        running: state == ContainerState::Running,
        state,
        ip: Some(format!("172.18.0.{created}")),
        status: String::new(),
        created,
        deployed_by: "ana@laptop".into(),
        deployed_at: "2026-11-20T09:00:00Z".into(),
    }
}

/// web-1 serves v1 through an old proxy and keeps v0; web-2 is new;
/// worker-1 already runs v2, proven; cron-1 runs v1.
fn observed() -> HashMap<String, HostState> {
    use ContainerState::{Exited, Running};
    let mut web1 = HostState {
        containers: vec![
            container("web", "v1", Running, 3),
            container("web", "v0", Exited, 2),
        ],
        proxy: Some(ProxyFound {
            running: true,
            legacy: false,
            build: Some(proxy_build("0.1.0", "1a2b3c4d5e6f")),
            settings: Some(proxy_listen(&[80]).digest()),
            listen: Some(proxy_listen(&[80])),
        }),
        ..HostState::default()
    };
    web1.routes
        .insert("shop-web".into(), vec!["172.18.0.3:8080".into()]);
    web1.images.insert(IMAGE_V1.into());
    let mut worker = HostState {
        containers: vec![
            container("worker", "v2", Running, 5),
            container("worker", "v1", Exited, 4),
        ],
        ..HostState::default()
    };
    worker.proven.insert("shop-worker-v2".into());
    worker.images.insert(IMAGE_V2.into());
    let mut cron = HostState {
        containers: vec![container("cron", "v1", Running, 6)],
        ..HostState::default()
    };
    cron.images.insert(IMAGE_V2.into());
    HashMap::from([
        ("web-1".to_string(), web1),
        ("web-2".to_string(), HostState::default()),
        ("worker-1".to_string(), worker),
        ("cron-1".to_string(), cron),
    ])
}

fn settings() -> Settings {
    Settings {
        batch: BatchSize::Count(1),
        retain: 2,
        now: 1_795_000_000,
        start_ahead: true,
    }
}

fn proxy_build(version: &str, build: &str) -> Build {
    Build {
        version: version.into(),
        build: build.into(),
    }
}

fn proxy_listen(http: &[u16]) -> Listen {
    Listen {
        http_ports: http.iter().copied().collect(),
        drain_timeout: Duration::from_secs(30),
        ..Listen::default()
    }
}

/// What this ballast wants on each web host: HTTP on `http`, its build.
fn wanted(http: &[u16]) -> std::result::Result<BTreeMap<String, WantedProxy>, String> {
    let w = WantedProxy {
        listen: proxy_listen(http),
        build: proxy_build("0.1.0", "9f8e7d6c5b4a"),
    };
    Ok(BTreeMap::from([
        ("web-1".to_string(), w.clone()),
        ("web-2".to_string(), w),
    ]))
}

/// The plan `ballast plan --version v2` shows for [`observed`], with the
/// proxies as the deploy decides them: web-1's proxy is of another build
/// (left running, upgrade due), web-2 has none.
fn fixture_plan() -> Plan {
    let observed = observed();
    let mut p = plan::plan("shop", "v2", IMAGE_V2, &targets(), settings(), &observed);
    p.proxies = plan::proxies(&p, &observed, &wanted(&[80]));
    p
}

/// web-1's proxy lacks a port the config adds; web-2's is from before host
/// networking.
#[test]
fn plan_with_a_proxy_reconfigured_and_a_legacy_one() {
    let mut observed = observed();
    observed.get_mut("web-2").unwrap().proxy = Some(ProxyFound {
        running: true,
        legacy: true,
        settings: Some("0f1e2d3c".into()),
        ..ProxyFound::default()
    });
    let web = &targets()[..1];
    let mut p = plan::plan("shop", "v2", IMAGE_V2, web, settings(), &observed);
    p.proxies = plan::proxies(&p, &observed, &wanted(&[8080]));
    insta::assert_snapshot!(render_plan(&p, &[], &[]));
}

#[test]
fn plan_text() {
    insta::assert_snapshot!(render_plan(&fixture_plan(), &[], &[]));
}

/// Inventory variables show resolved at the top of the plan, with what
/// was written.
#[test]
fn plan_text_with_inventory_variables() {
    let references = [ballast_core::config::Reference {
        key: "roles.web.env.clear.DATABASE_URL".into(),
        written: "postgres://{{ accessories.db.host }}:{{ accessories.db.port }}/shop".into(),
        value: "postgres://10.0.0.20:5432/shop".into(),
    }];
    insta::assert_snapshot!(render_plan(&fixture_plan(), &[], &references));
}

#[test]
fn plan_json() {
    insta::assert_json_snapshot!(result_json(&fixture_plan()));
}

#[test]
fn plan_with_an_unknown_proxy_and_a_skipped_host() {
    let observed = observed();
    let web = &targets()[..1];
    let mut p = plan::plan("shop", "v2", IMAGE_V2, web, settings(), &observed);
    p.proxies = plan::proxies(&p, &observed, &Err("no static ballast binary".into()));
    insta::assert_snapshot!(render_plan(&p, &["web-3".to_string()], &[]));
}

#[test]
fn plan_with_nothing_to_do() {
    let observed = observed();
    let worker = &targets()[1..2];
    let p = plan::plan("shop", "v2", IMAGE_V2, worker, settings(), &observed);
    insta::assert_snapshot!(render_plan(&p, &[], &[]));
}

fn host(host: &str, role: &str, outcome: Outcome, error: Option<&str>) -> HostOutcome {
    HostOutcome {
        host: host.into(),
        role: role.into(),
        outcome,
        error: error.map(str::to_string),
    }
}

/// A deploy of v2 to the hosts of [`targets`] that ended with `hosts`.
fn report(hosts: Vec<HostOutcome>) -> Report {
    Report {
        version: "v2".into(),
        image_id: IMAGE_V2.into(),
        hosts,
        skipped: vec![],
        delivered: vec![DeliveryReport {
            host: "web-2".into(),
            image_id: IMAGE_V2.into(),
            layers_total: 7,
            layers_sent: 2,
            bytes_sent: 18_874_368,
            full: false,
            skipped: false,
        }],
        phases: vec![
            ("build".into(), 41.26),
            ("lock".into(), 0.31),
            ("deliver".into(), 6.04),
            ("roll".into(), 27.95),
        ],
        steps: vec![
            ("start".into(), 3.2),
            ("healthy".into(), 21.65),
            ("stop".into(), 3.1),
        ],
    }
}

/// What the terminal shows at the end of a deploy: the report on stdout,
/// then the error (if any) on stderr.
fn shown(report: &Report) -> String {
    let mut text = format!("--- stdout\n{}\n", render_report(report));
    if let Err(e) = outcome(report) {
        text.push_str(&format!("--- stderr\n{}", error_text(&e)));
    }
    text
}

#[test]
fn deploy_done_everywhere() {
    let r = report(vec![
        host("web-1", "web", Outcome::Updated, None),
        host("web-2", "web", Outcome::Updated, None),
        host("worker-1", "worker", Outcome::Current, None),
        host("cron-1", "cron", Outcome::Updated, None),
    ]);
    insta::assert_snapshot!(shown(&r));
    insta::assert_json_snapshot!("deploy_done_everywhere_json", result_json(&r));
}

#[test]
fn deploy_done_but_a_host_skipped() {
    let mut r = report(vec![
        host("web-1", "web", Outcome::Updated, None),
        host("worker-1", "worker", Outcome::Current, None),
    ]);
    r.skipped = vec!["web-2".into()];
    insta::assert_snapshot!(shown(&r));
}

#[test]
fn deploy_failed_on_a_host() {
    let r = report(vec![
        host("web-1", "web", Outcome::Updated, None),
        host(
            "web-2",
            "web",
            Outcome::Failed,
            Some("wait until shop-web-v2 is healthy: GET /up answered 503 for 30s"),
        ),
        host("worker-1", "worker", Outcome::NotRun, None),
        host("cron-1", "cron", Outcome::NotRun, None),
    ]);
    insta::assert_snapshot!(shown(&r));
    let e = outcome(&r).unwrap_err();
    insta::assert_json_snapshot!("deploy_failed_on_a_host_error_json", error_json(&e));
}

#[test]
fn deploy_failed_and_reverted() {
    let r = report(vec![
        host("web-1", "web", Outcome::Reverted, None),
        host(
            "web-2",
            "web",
            Outcome::Failed,
            Some("start shop-web-v2: the container exited with code 1"),
        ),
        host(
            "cron-1",
            "cron",
            Outcome::RevertFailed,
            Some("start shop-cron-v1: port 9090 is already allocated"),
        ),
    ]);
    insta::assert_snapshot!(shown(&r));
}

#[test]
fn deploy_interrupted() {
    let r = report(vec![
        host("web-1", "web", Outcome::Updated, None),
        host("web-2", "web", Outcome::Interrupted, None),
        host("worker-1", "worker", Outcome::NotRun, None),
    ]);
    insta::assert_snapshot!(shown(&r));
}
