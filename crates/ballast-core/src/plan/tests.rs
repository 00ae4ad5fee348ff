//! Plans computed from fixed observed states, compared step by step.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::*;
use crate::proxy::Route;
use crate::release::{AppContainer, ContainerState};
use crate::spec::{HealthMode, RoleSpec};

const NOW: i64 = 1000;

fn settings(retain: usize) -> Settings {
    Settings {
        batch: BatchSize::Count(1),
        retain,
        now: NOW,
        start_ahead: false,
    }
}

fn route() -> Route {
    Route {
        service: "shop-web".into(),
        hosts: vec![],
        path_prefix: None,
        port: 8080,
        health: ballast_proxy_wire::HealthSpec {
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

fn http() -> HealthMode {
    HealthMode::Http {
        port: 8080,
        path: "/up".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    }
}

fn spec() -> RoleSpec {
    RoleSpec {
        role: "web".into(),
        cmd: None,
        env_clear: BTreeMap::new(),
        env_secret: vec![],
        publish: vec![],
        volumes: vec![],
        log_driver: "local".into(),
        log_options: BTreeMap::new(),
        stop_timeout: Duration::from_secs(30),
        network: None,
        secret_files: false,
        init: true,
    }
}

fn target(version: &str, switch: Switch, hosts: &[&str]) -> RoleTarget {
    RoleTarget {
        role: "web".into(),
        version: version.into(),
        image_id: format!("sha256:{version}"),
        health: http(),
        health_timeout: Duration::from_secs(30),
        switch,
        hosts: hosts
            .iter()
            .map(|h| HostTarget {
                host: h.to_string(),
                spec: spec(),
                digest: "cfg".into(),
            })
            .collect(),
    }
}

fn container(version: &str, state: ContainerState, created: i64) -> AppContainer {
    AppContainer {
        config_digest: "cfg".into(),
        image_source: String::new(),
        ip: Some(format!("172.18.0.{created}")),
        created,
        ..crate::testing::app_container("web", version, state)
    }
}

use ContainerState::{Created, Exited, Restarting, Running};

fn on_host(containers: Vec<AppContainer>) -> HostState {
    HostState {
        containers,
        ..HostState::default()
    }
}

fn host_plan(t: RoleTarget, state: HostState, retain: usize) -> HostPlan {
    let observed = HashMap::from([("h1".to_string(), state)]);
    let p = plan(
        "shop",
        &t.version.clone(),
        "",
        &[t],
        settings(retain),
        &observed,
    );
    p.batches[0].hosts[0].clone()
}

fn steps_for(t: RoleTarget, state: HostState, retain: usize) -> Vec<Step> {
    host_plan(t, state, retain).steps
}

fn name(v: &str) -> String {
    format!("shop-web-{v}")
}
fn create(v: &str) -> Step {
    Step::Create { name: name(v) }
}
fn start(v: &str) -> Step {
    Step::Start { name: name(v) }
}
fn healthy(v: &str) -> Step {
    Step::AwaitHealthy { name: name(v) }
}
fn routed(v: &str) -> Step {
    Step::Route { name: name(v) }
}
fn stop(v: &str) -> Step {
    Step::Stop { name: name(v) }
}
fn remove(v: &str) -> Step {
    Step::Remove { name: name(v) }
}

fn proxied(version: &str) -> RoleTarget {
    target(version, Switch::Proxy(route()), &["h1"])
}

/// The proxy on h1 routes `shop-web` to the container of `v` (created at
/// `created`, which gives its address).
fn routing_to(created: i64) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(
        "shop-web".to_string(),
        vec![format!("172.18.0.{created}:8080")],
    )])
}

#[test]
fn first_deploy_creates_starts_and_waits() {
    let p = host_plan(
        target("v1", Switch::StartFirst, &["h1"]),
        on_host(vec![]),
        5,
    );
    assert_eq!(p.steps, [create("v1"), start("v1"), healthy("v1")]);
    assert!(p.deliver, "the host lacks the image");
    assert_eq!(p.health, http());
    assert_eq!(p.previous, None);
}

#[test]
fn delivery_is_planned_only_where_the_image_is_missing() {
    let mut state = on_host(vec![]);
    state.images.insert("sha256:v1".into());
    let p = host_plan(target("v1", Switch::StartFirst, &["h1"]), state, 5);
    assert!(!p.deliver);
    // A rollback to a retained container creates nothing: nothing to send.
    let p = host_plan(
        target("v1", Switch::StartFirst, &["h1"]),
        on_host(vec![
            container("v2", Running, 2),
            container("v1", Exited, 1),
        ]),
        5,
    );
    assert!(!p.deliver);
}

#[test]
fn upgrade_starts_new_before_stopping_old() {
    let p = host_plan(
        target("v2", Switch::StartFirst, &["h1"]),
        on_host(vec![container("v1", Running, 1)]),
        5,
    );
    assert_eq!(
        p.steps,
        [create("v2"), start("v2"), healthy("v2"), stop("v1")]
    );
    assert_eq!(p.old, [name("v1")]);
    assert_eq!(p.previous.unwrap().version, "v1");
}

#[test]
fn publishing_roles_stop_old_first_to_free_the_port() {
    let steps = steps_for(
        target("v2", Switch::StopFirst, &["h1"]),
        on_host(vec![container("v1", Running, 1)]),
        5,
    );
    assert_eq!(
        steps,
        [create("v2"), stop("v1"), start("v2"), healthy("v2")]
    );
}

#[test]
fn proxied_roles_switch_through_the_proxy_before_stopping_old() {
    let mut state = on_host(vec![container("v1", Running, 1)]);
    state.routes = routing_to(1);
    let p = host_plan(proxied("v2"), state, 5);
    assert_eq!(
        p.steps,
        [create("v2"), start("v2"), routed("v2"), stop("v1")]
    );
    assert_eq!(p.switch, Switch::Proxy(route()));
}

#[test]
fn a_host_already_on_the_target_has_nothing_to_do() {
    let mut state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Exited, 1),
    ]);
    state.proven.insert(name("v2"));
    assert_eq!(
        steps_for(target("v2", Switch::StartFirst, &["h1"]), state, 5),
        []
    );
    let mut state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Exited, 1),
    ]);
    state.routes = routing_to(2);
    assert_eq!(steps_for(proxied("v2"), state, 5), []);
}

#[test]
fn a_running_target_never_proven_is_checked_again() {
    // Interrupted during the health wait of a publishing role: the old one
    // was stopped, the new one runs alone but was never found healthy.
    let state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Exited, 1),
    ]);
    assert_eq!(
        steps_for(target("v2", Switch::StopFirst, &["h1"]), state, 5),
        [healthy("v2")]
    );
}

#[test]
fn interrupted_before_the_switch_the_rerun_switches_then_stops_old() {
    // Started but killed while the proxy checked it: the proxy still routes
    // to v1, so v2 goes through the switch before v1 stops.
    let mut state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(1);
    let p = host_plan(proxied("v2"), state, 5);
    assert_eq!(p.steps, [routed("v2"), stop("v1")]);
    assert!(!p.deliver);
}

#[test]
fn interrupted_right_after_the_switch_the_rerun_only_stops_old() {
    let mut state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(2);
    assert_eq!(steps_for(proxied("v2"), state, 5), [stop("v1")]);
}

#[test]
fn interrupted_after_create_the_rerun_starts_the_created_container() {
    let mut state = on_host(vec![
        container("v2", Created, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(1);
    let p = host_plan(proxied("v2"), state, 5);
    assert!(p.reuses);
    assert_eq!(p.steps, [start("v2"), routed("v2"), stop("v1")]);
}

#[test]
fn a_crash_looping_target_is_never_taken_for_running() {
    let mut state = on_host(vec![
        container("v2", Restarting, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(1);
    let steps = steps_for(proxied("v2"), state, 5);
    assert_eq!(
        steps,
        [
            remove("v2"),
            create("v2"),
            start("v2"),
            routed("v2"),
            stop("v1")
        ]
    );
    // A crash-looping old container still holds resources: it is stopped.
    let state = on_host(vec![container("v1", Restarting, 1)]);
    assert_eq!(
        steps_for(target("v2", Switch::StartFirst, &["h1"]), state, 5),
        [create("v2"), start("v2"), healthy("v2"), stop("v1")]
    );
}

#[test]
fn an_unproven_target_left_running_is_stopped_if_its_gate_fails_while_another_serves() {
    // Killed after the start of a version that never turns healthy (or
    // crash-loops and was caught between restarts): the proxy still routes
    // to v1, so a failed gate stops v2.
    let mut state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(1);
    let p = host_plan(proxied("v2"), state, 5);
    assert_eq!(p.steps, [routed("v2"), stop("v1")]);
    assert!(p.stop_unproven);
    // Alone, it is all the role has: it is left running.
    let alone = host_plan(proxied("v2"), on_host(vec![container("v2", Running, 2)]), 5);
    assert_eq!(alone.steps, [routed("v2")]);
    assert!(!alone.stop_unproven);
    // Stop-first: the old container the killed run stopped serves again.
    let p = host_plan(
        target("v2", Switch::StopFirst, &["h1"]),
        on_host(vec![
            container("v2", Running, 2),
            container("v1", Exited, 1),
        ]),
        5,
    );
    assert!(p.stop_unproven);
    assert!(p.fallback.is_some());
    // A target this run starts is stopped by the run's own undo.
    let mut state = on_host(vec![
        container("v2", Created, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(1);
    assert!(!host_plan(proxied("v2"), state, 5).stop_unproven);
}

#[test]
fn start_ahead_runs_a_proxy_role_up_to_its_switch_before_the_batches_and_its_stops_after() {
    let mut state = on_host(vec![container("v1", Running, 1)]);
    state.routes = routing_to(1);
    let mut ahead = settings(5);
    ahead.start_ahead = true;
    let targets = [proxied("v2")];
    let observed = HashMap::from([("h1".to_string(), state.clone())]);
    let p = &plan("shop", "v2", "sha256:v2", &targets, ahead, &observed).batches[0].hosts[0];
    assert_eq!(
        p.steps,
        [create("v2"), start("v2"), routed("v2"), stop("v1")]
    );
    assert_eq!(
        p.ahead, 2,
        "create and start run ahead; the switch waits for its batch"
    );
    assert_eq!(
        p.behind, 1,
        "stopping the drained v1 waits for the last batch, not the next"
    );
    // Without the proxy, starting early would put the new version to work
    // before its batch: nothing runs ahead.
    let t = [target("v2", Switch::StartFirst, &["h1"])];
    let p = &plan("shop", "v2", "sha256:v2", &t, ahead, &observed).batches[0].hosts[0];
    assert_eq!((p.ahead, p.behind), (0, 0));
    // Off: the whole plan runs in its batch.
    let p = &plan("shop", "v2", "sha256:v2", &targets, settings(5), &observed).batches[0].hosts[0];
    assert_eq!((p.ahead, p.behind), (0, 0));
    // Pruning past `retain` follows the stop, after the last batch too.
    let mut state = on_host(vec![
        container("v1", Running, 2),
        container("v0", Exited, 1),
    ]);
    state.routes = routing_to(2);
    let observed = HashMap::from([("h1".to_string(), state)]);
    let mut keep_two = ahead;
    keep_two.retain = 2;
    let p = &plan("shop", "v2", "sha256:v2", &targets, keep_two, &observed).batches[0].hosts[0];
    assert_eq!(
        p.steps,
        [
            create("v2"),
            start("v2"),
            routed("v2"),
            stop("v1"),
            remove("v0")
        ]
    );
    assert_eq!((p.ahead, p.behind), (2, 2));
    // A target already running only needs its switch.
    let mut state = on_host(vec![
        container("v2", Running, 2),
        container("v1", Running, 1),
    ]);
    state.routes = routing_to(1);
    let observed = HashMap::from([("h1".to_string(), state)]);
    let p = &plan("shop", "v2", "sha256:v2", &targets, ahead, &observed).batches[0].hosts[0];
    assert_eq!(p.steps, [routed("v2"), stop("v1")]);
    assert_eq!((p.ahead, p.behind), (0, 1));
}

#[test]
fn rollback_starts_the_retained_container() {
    let p = host_plan(
        target("v1", Switch::StartFirst, &["h1"]),
        on_host(vec![
            container("v2", Running, 2),
            container("v1", Exited, 1),
        ]),
        5,
    );
    assert!(p.reuses);
    assert_eq!(p.steps, [start("v1"), healthy("v1"), stop("v2")]);
}

#[test]
fn same_version_with_new_config_moves_the_running_one_aside() {
    let mut t = target("v2", Switch::StartFirst, &["h1"]);
    t.hosts[0].digest = "new".into();
    let steps = steps_for(t, on_host(vec![container("v2", Running, 2)]), 5);
    let aside = format!("shop-web-v2-replaced-{NOW}");
    assert_eq!(
        steps,
        [
            Step::Rename {
                from: name("v2"),
                to: aside.clone()
            },
            create("v2"),
            start("v2"),
            healthy("v2"),
            Step::Stop { name: aside },
        ]
    );
}

#[test]
fn a_container_moved_aside_is_what_a_revert_returns_to() {
    let mut t = proxied("v2");
    t.hosts[0].digest = "new".into();
    let mut before = on_host(vec![container("v2", Running, 2)]);
    before.routes = routing_to(2);
    let done = host_plan(t, before, 5);
    let aside = format!("shop-web-v2-replaced-{NOW}");
    assert_eq!(done.previous.as_ref().unwrap().name, aside);
    // After the switch: the new v2 serves, the old one is stopped aside.
    let mut new = container("v2", Running, 3);
    new.config_digest = "new".into();
    let mut old = container("v2", Exited, 2);
    old.name = aside.clone();
    let mut after = on_host(vec![new, old]);
    after.routes = routing_to(3);
    let back = revert(&done, &after, NOW + 5).unwrap();
    assert_eq!(
        back.steps,
        [
            Step::Start {
                name: aside.clone()
            },
            Step::Route { name: aside },
            stop("v2")
        ]
    );
}

#[test]
fn a_stale_stopped_container_in_the_way_is_removed() {
    let mut stale = container("v3", Exited, 3);
    stale.image_id = "sha256:other".into();
    let steps = steps_for(
        target("v3", Switch::StartFirst, &["h1"]),
        on_host(vec![stale, container("v2", Running, 2)]),
        5,
    );
    assert_eq!(
        steps,
        [
            remove("v3"),
            create("v3"),
            start("v3"),
            healthy("v3"),
            stop("v2")
        ]
    );
}

#[test]
fn releases_beyond_retain_are_pruned_oldest_first() {
    let observed = vec![
        container("v4", Running, 4),
        container("v3", Exited, 3),
        container("v2", Exited, 2),
        container("v1", Exited, 1),
    ];
    let steps = steps_for(
        target("v5", Switch::StartFirst, &["h1"]),
        on_host(observed),
        3,
    );
    // Kept: v5 (new), v4 (just stopped), v3. Removed: v2, v1.
    assert_eq!(
        steps,
        [
            create("v5"),
            start("v5"),
            healthy("v5"),
            stop("v4"),
            remove("v2"),
            remove("v1")
        ]
    );
}

#[test]
fn a_current_host_prunes_nothing_even_past_retain() {
    let mut state = on_host(vec![
        container("v3", Running, 3),
        container("v2", Exited, 2),
        container("v1", Exited, 1),
    ]);
    state.routes = routing_to(3);
    assert_eq!(steps_for(proxied("v3"), state, 1), []);
}

#[test]
fn batches_follow_count_and_percent() {
    assert_eq!(BatchSize::Count(2).of(5), 2);
    assert_eq!(BatchSize::Count(9).of(3), 3);
    assert_eq!(BatchSize::Count(0).of(3), 1);
    assert_eq!(BatchSize::Percent(50).of(3), 2);
    assert_eq!(BatchSize::Percent(25).of(10), 3);
    assert_eq!(BatchSize::Percent(1).of(3), 1);
    assert_eq!(BatchSize::Percent(100).of(usize::MAX), usize::MAX);
    let t = target("v1", Switch::StartFirst, &["a", "b", "c", "d", "e"]);
    let mut s = settings(5);
    s.batch = BatchSize::Count(2);
    let p = plan("shop", "v1", "", &[t], s, &HashMap::new());
    let sizes: Vec<usize> = p.batches.iter().map(|b| b.hosts.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
}

/// What `plan`'s result leaves on each host: the target running, proven.
fn result_of(p: &Plan) -> HashMap<String, HostState> {
    p.host_plans()
        .map(|hp| {
            let mut c = container(&hp.version, Running, 7);
            c.image_id = hp.image_id.clone();
            c.config_digest = hp.digest.clone();
            let mut state = on_host(vec![c]);
            state.images.insert(hp.image_id.clone());
            state.proven.insert(hp.target.clone());
            (hp.host.clone(), state)
        })
        .collect()
}

#[test]
fn per_host_variables_planned_twice_are_a_no_op_on_every_host() {
    let config = crate::testing::sharded_config();
    let role = &config.roles["web"];
    let hosts: Vec<HostTarget> = ["h1", "h2"]
        .iter()
        .map(|h| {
            let spec = RoleSpec::new(&config, "web", role, h);
            let key = crate::digest_key::DigestKey::from_bytes([7; 32]);
            let digest = spec.digest(Some(&key), &|_| Some("s3cret".into()));
            HostTarget {
                host: h.to_string(),
                spec,
                digest,
            }
        })
        .collect();
    assert_ne!(hosts[0].digest, hosts[1].digest, "h2 has its own variable");
    let mut t = target("v1", Switch::StartFirst, &[]);
    t.hosts = hosts;
    let first = plan(
        "shop",
        "v1",
        "sha256:v1",
        &[t.clone()],
        settings(5),
        &HashMap::new(),
    );
    assert!(first.host_plans().all(|p| p.steps.contains(&create("v1"))));
    let h2 = first.host_plans().find(|p| p.host == "h2").unwrap();
    assert_eq!(
        h2.spec.env_clear.get("SHARD").map(String::as_str),
        Some("2")
    );
    let again = plan(
        "shop",
        "v1",
        "sha256:v1",
        &[t],
        settings(5),
        &result_of(&first),
    );
    for p in again.host_plans() {
        assert_eq!(p.steps, [], "{} would change", p.host);
    }
    assert!(again.is_noop());
}

#[test]
fn revert_returns_a_switched_host_to_what_served_before() {
    let mut before = on_host(vec![container("v1", Running, 1)]);
    before.routes = routing_to(1);
    let done = host_plan(proxied("v2"), before, 5);
    // After the rollout: v2 serves and is routed, v1 is stopped and kept.
    let mut after = on_host(vec![
        container("v2", Running, 2),
        container("v1", Exited, 1),
    ]);
    after.routes = routing_to(2);
    let back = revert(&done, &after, NOW).unwrap();
    assert!(back.reuses);
    assert_eq!(back.target, name("v1"));
    assert_eq!(back.steps, [start("v1"), routed("v1"), stop("v2")]);
    // Nothing served before: nothing to revert to.
    let first = host_plan(proxied("v2"), on_host(vec![]), 5);
    assert_eq!(revert(&first, &after, NOW), None);
}

#[test]
fn proxies_are_planned_only_where_proxied_roles_change() {
    let mut before = on_host(vec![container("v1", Running, 1)]);
    before.routes = routing_to(1);
    let observed = HashMap::from([("h1".to_string(), before.clone())]);
    let p = plan("shop", "v2", "", &[proxied("v2")], settings(5), &observed);
    let wanted = Ok(BTreeMap::from([(
        "h1".to_string(),
        WantedProxy {
            listen: crate::proxy::Listen::default(),
            build: crate::proxy::Build {
                version: "0.1.0".into(),
                build: "b1".into(),
            },
        },
    )]));
    assert_eq!(
        proxies(&p, &observed, &wanted)[0].change,
        ProxyChange::Start
    );
    let unknown = proxies(&p, &observed, &Err("no static binary".into()));
    assert_eq!(
        unknown[0].change,
        ProxyChange::Unknown {
            why: "no static binary".into()
        }
    );
    // A host whose roles are current keeps its proxy as it is.
    let mut current = on_host(vec![container("v2", Running, 2)]);
    current.routes = routing_to(2);
    let observed = HashMap::from([("h1".to_string(), current)]);
    let p = plan("shop", "v2", "", &[proxied("v2")], settings(5), &observed);
    assert_eq!(proxies(&p, &observed, &wanted), []);
    // Roles without a proxy need none.
    let p = plan(
        "shop",
        "v2",
        "",
        &[target("v2", Switch::StartFirst, &["h1"])],
        settings(5),
        &HashMap::new(),
    );
    assert_eq!(proxies(&p, &HashMap::new(), &wanted), []);
}

#[test]
fn secret_files_are_written_before_the_container_is_created() {
    let mut t = target("v2", Switch::StartFirst, &["h1"]);
    t.hosts[0].spec.secret_files = true;
    t.hosts[0].spec.env_secret = vec!["DB_PASSWORD".into()];
    let steps = steps_for(t.clone(), on_host(vec![container("v1", Running, 1)]), 5);
    assert_eq!(
        steps,
        [
            Step::WriteSecrets { name: name("v2") },
            create("v2"),
            start("v2"),
            healthy("v2"),
            stop("v1")
        ]
    );
    // A retained container is started with the files it has.
    let mut old = container("v2", Exited, 1);
    old.config_digest = "cfg".into();
    let steps = steps_for(t, on_host(vec![container("v3", Running, 3), old]), 5);
    assert_eq!(steps, [start("v2"), healthy("v2"), stop("v3")]);
}
