//! Tests of the control path that need no upstream: validation, the
//! commands that only change the table, saving, and busy services.

use super::*;
use crate::proxy::upstream_client;
use crate::wire::HealthSpec;

fn control(dir: &std::path::Path, table: Table) -> Arc<Control> {
    Arc::new(Control::new(
        Arc::new(ArcSwap::from_pointee(table)),
        StateStore::new(dir),
        upstream_client(Duration::from_secs(1), Duration::from_secs(1)),
        Arc::new(Certificates::new(None)),
        Arc::new(Challenges::default()),
    ))
}

fn web() -> Table {
    Table::new(vec![Service::new(
        "web".into(),
        vec!["shop.example.com".into()],
        "/".into(),
        vec![Target::new("127.0.0.1:9")],
    )])
}

fn deploy() -> DeployRequest {
    DeployRequest {
        service: "web".into(),
        hosts: vec!["Shop.Example.com".into(), "shop.example.com".into()],
        path_prefix: Some("/api/".into()),
        targets: vec!["172.18.0.5:8080".into(), "[fd00::5]:80".into()],
        health: HealthSpec {
            path: "/up".into(),
            interval_ms: 100,
            timeout_ms: 1000,
        },
        deploy_timeout_ms: 1000,
        drain_timeout_ms: 1000,
        max_request_body_bytes: None,
        max_response_body_bytes: None,
    }
}

#[test]
fn a_deploy_is_put_in_canonical_form() {
    let plan = validate_deploy(&deploy()).unwrap();
    assert_eq!(
        plan,
        DeployPlan {
            hosts: vec!["shop.example.com".into()],
            prefix: "/api".into(),
            targets: vec!["172.18.0.5:8080".into(), "[fd00::5]:80".into()],
            body_limits: BodyLimits::default(),
        }
    );
    let limited = DeployRequest {
        max_request_body_bytes: Some(1024),
        ..deploy()
    };
    let plan = validate_deploy(&limited).unwrap();
    assert_eq!(
        plan.body_limits,
        BodyLimits {
            request: Some(1024),
            response: None
        }
    );
}

#[test]
fn bad_deploys_are_refused_with_the_reason() {
    type Change = fn(&mut DeployRequest);
    let cases: Vec<(Change, &str)> = vec![
        (|r| r.service = "".into(), "service name `` must be"),
        (|r| r.service = "a b".into(), "service name `a b` must be"),
        (
            |r| r.hosts = vec!["a/b".into()],
            "host `a/b` is not a host name",
        ),
        (
            |r| r.path_prefix = Some("api".into()),
            "path prefix `api` must start with `/`",
        ),
        (|r| r.targets.clear(), "at least one target"),
        (
            |r| r.targets = vec!["10.0.0.1".into()],
            "target `10.0.0.1` must be `ip:port`",
        ),
        (
            |r| r.targets = vec!["10.0.0.1:0".into()],
            "target `10.0.0.1:0` must be",
        ),
        (
            |r| r.targets = vec!["http://a:1".into()],
            "target `http://a:1` must be",
        ),
        (
            |r| r.targets = vec!["a:1/x".into()],
            "target `a:1/x` must be",
        ),
        (
            |r| r.health.path = "up".into(),
            "health check path `up` must start with `/`",
        ),
        (|r| r.health.interval_ms = 0, "must be above 0 ms"),
        (|r| r.deploy_timeout_ms = 0, "must be above 0 ms"),
        (
            |r| r.max_request_body_bytes = Some(0),
            "max_request_body_bytes must be above 0; hint: leave it out for no limit",
        ),
        (
            |r| r.max_response_body_bytes = Some(0),
            "max_response_body_bytes must be above 0",
        ),
    ];
    for (change, expected) in cases {
        let mut r = deploy();
        change(&mut r);
        let err = validate_deploy(&r).unwrap_err();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
}

#[tokio::test]
async fn commands_on_an_unknown_service_list_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path(), web());
    let response = control
        .execute(AdminRequest::Maintenance(MaintenanceRequest {
            service: "api".into(),
            on: true,
        }))
        .await;
    assert_eq!(
        response.error.as_deref(),
        Some("no service named `api`; the proxy routes: web")
    );
    let empty = self::control(dir.path(), Table::default());
    let response = empty
        .execute(AdminRequest::Resume(ResumeRequest {
            service: "api".into(),
        }))
        .await;
    assert_eq!(
        response.error.as_deref(),
        Some("no service named `api`: the proxy routes no service yet")
    );
}

#[tokio::test]
async fn maintenance_is_saved_and_shown_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path(), web());
    let response = control
        .execute(AdminRequest::Maintenance(MaintenanceRequest {
            service: "web".into(),
            on: true,
        }))
        .await;
    assert!(response.ok, "{response:?}");
    let status = control.status();
    assert!(status.services[0].maintenance);
    assert_eq!(status.services[0].targets[0].addr, "127.0.0.1:9");
    let saved = StateStore::new(dir.path()).load().unwrap();
    assert!(saved.service("web").unwrap().maintenance);
}

#[tokio::test]
async fn pause_and_resume_flip_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path(), web());
    let pause = |max_ms| {
        AdminRequest::Pause(PauseRequest {
            service: "web".into(),
            max_ms,
        })
    };
    let response = control.execute(pause(0)).await;
    assert!(response
        .error
        .unwrap()
        .contains("max_ms must be between 1 and"));
    assert!(control.execute(pause(60_000)).await.ok);
    let gate = control
        .table
        .load()
        .service("web")
        .unwrap()
        .pause
        .clone()
        .unwrap();
    assert!(control.status().services[0].paused);
    let resume = AdminRequest::Resume(ResumeRequest {
        service: "web".into(),
    });
    assert!(control.execute(resume.clone()).await.ok);
    assert!(!gate.is_holding());
    assert!(!control.status().services[0].paused);
    assert!(control.execute(resume).await.ok, "resume is idempotent");
}

#[tokio::test]
async fn remove_drains_and_forgets_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path(), web());
    let target = Arc::clone(&control.table.load().service("web").unwrap().targets[0]);
    let response = control
        .execute(AdminRequest::Remove(RemoveRequest {
            service: "web".into(),
            drain_timeout_ms: 1000,
        }))
        .await;
    assert!(response.ok, "{response:?}");
    let drain = response.drain.unwrap();
    assert_eq!(drain.drained, ["127.0.0.1:9"]);
    assert_eq!(drain.unfinished, 0);
    assert!(target.is_retired());
    assert!(control.status().services.is_empty());
    assert!(StateStore::new(dir.path())
        .load()
        .unwrap()
        .services()
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_drain_cuts_what_outlives_its_timeout() {
    let target = Target::new("127.0.0.1:9");
    let in_flight = target.enter().unwrap();
    let report = drain(std::slice::from_ref(&target), Duration::from_secs(30)).await;
    assert_eq!(report.unfinished, 1);
    assert!(report.elapsed_ms >= 30_000);
    target.until_cut().await; // cut: returns at once
    drop(in_flight);
}

#[tokio::test]
async fn a_failed_save_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let control = control(&file, web());
    let response = control
        .execute(AdminRequest::Maintenance(MaintenanceRequest {
            service: "web".into(),
            on: true,
        }))
        .await;
    let error = response.error.unwrap();
    assert!(error.contains("nothing was changed"), "{error}");
    assert!(!control.status().services[0].maintenance);
}

#[test]
fn one_deploy_per_service_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path(), web());
    let busy = control.claim("web").unwrap();
    let err = control.claim("web").err().unwrap();
    assert!(err.contains("already under way"), "{err}");
    assert!(control.claim("api").is_ok());
    drop(busy);
    assert!(control.claim("web").is_ok());
}

#[tokio::test]
async fn a_deploy_clashing_with_another_service_is_refused_before_any_check() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path(), web());
    let mut r = deploy();
    r.service = "shop".into();
    r.path_prefix = None;
    let response = control.execute(AdminRequest::Deploy(r)).await;
    assert_eq!(
        response.error.as_deref(),
        Some(
            "cannot deploy `shop`: host name shop.example.com with path prefix / is already \
             served by service `web`; give one of them another host name or path_prefix"
        )
    );
}

#[tokio::test]
async fn once_taken_over_nothing_is_saved_any_more() {
    let dir = tempfile::tempdir().unwrap();
    let (phase, _) = watch::channel(Phase::Serving);
    let phase = Arc::new(phase);
    let control = Arc::new(
        Arc::into_inner(control(dir.path(), web()))
            .unwrap()
            .owning_state_while(Arc::clone(&phase)),
    );
    let maintenance = |on| {
        AdminRequest::Maintenance(MaintenanceRequest {
            service: "web".into(),
            on,
        })
    };
    assert!(control.execute(maintenance(true)).await.ok);

    // The new process cannot be told (it died after `accepting`): this
    // one keeps serving and owning the state.
    let mut unreachable = || Err("the other side closed the connection".to_string());
    assert_eq!(
        control.release_state(&mut unreachable),
        Err(Refusal::NotTold(
            "the other side closed the connection".into()
        ))
    );
    assert_eq!(*phase.borrow(), Phase::Serving);
    assert!(control.execute(maintenance(true)).await.ok);
    let saved = std::fs::read(dir.path().join(crate::STATE_FILE)).unwrap();

    // Told while still Serving, under the write lock; Draining after.
    let watching = Arc::clone(&phase);
    let mut told = || {
        assert_eq!(*watching.borrow(), Phase::Serving);
        Ok(())
    };
    assert_eq!(control.release_state(&mut told), Ok(()));
    assert_eq!(*phase.borrow(), Phase::Draining);
    // A second new process cannot take over what was let go, and is not
    // told anything.
    let mut never = || -> Result<(), String> { panic!("told after the release") };
    assert_eq!(control.release_state(&mut never), Err(Refusal::NotServing));
    // The new process read the state at the release: a late change (a
    // switch that was under way) is refused, and the file stays as read.
    let response = control.execute(maintenance(false)).await;
    assert!(
        response
            .error
            .as_deref()
            .unwrap()
            .contains("taken over by a newer one"),
        "{response:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(crate::STATE_FILE)).unwrap(),
        saved
    );
}
