//! What `ballast status` and `ballast releases` print, pinned as
//! snapshots: tables built by `ballast_core::status::table` and
//! `ballast_core::release::table` from fixed containers, as text and as
//! `--json`.

use std::path::Path;
use std::time::Duration;

use ballast_core::config::{self, SecretSource};
use ballast_core::release::{AppContainer, ContainerState};
use ballast_core::scope::Scope;
use ballast_core::{release, status, Error, ErrorKind, Result};

use super::{releases_json, render_releases, render_status, status_json};
use crate::output::result_json;

const CONFIG: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [web-1, web-2, web-3]
  worker:
    hosts: [worker-1, worker-2, worker-3]
";

fn config() -> config::Config {
    config::parse(Path::new("ballast.yml"), CONFIG, SecretSource::Env)
        .expect("the fixture config is valid")
        .config
}

fn container(
    role: &str,
    version: &str,
    state: ContainerState,
    status: &str,
    deployed_at: &str,
) -> AppContainer {
    let digit = &version[1..];
    AppContainer {
        id: format!("{digit}f0c2a9d7e41b{digit}"),
        name: format!("shop-{role}-{version}"),
        role: role.into(),
        version: version.into(),
        image_id: format!("sha256:{}", digit.repeat(64)),
        config_digest: "cfg-7f3a".into(),
        image_source: String::new(),
        running: state == ContainerState::Running,
        state,
        ip: None,
        status: status.into(),
        created: 0,
        deployed_by: "ana@laptop".into(),
        deployed_at: deployed_at.into(),
    }
}

const V1_AT: &str = "2026-11-18T16:42:10Z";
const V2_AT: &str = "2026-11-20T09:15:03Z";

/// web-1 serves v2 and keeps v1; web-2 is mid-deploy (both run); worker-1
/// crash-loops on v2; worker-2 has nothing; web-3's engine did not answer.
fn found() -> Vec<(String, Result<Vec<AppContainer>>)> {
    use ContainerState::{Exited, Restarting, Running};
    vec![
        (
            "web-1".into(),
            Ok(vec![
                container("web", "v2", Running, "Up 3 hours (healthy)", V2_AT),
                container("web", "v1", Exited, "Exited (0) 3 hours ago", V1_AT),
            ]),
        ),
        (
            "web-2".into(),
            Ok(vec![
                container("web", "v2", Running, "Up 5 seconds (health: starting)", V2_AT),
                container("web", "v1", Running, "Up 2 days (healthy)", V1_AT),
            ]),
        ),
        (
            "web-3".into(),
            Err(Error::failed(
                "list the service's containers",
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            )
            .on("web-3")),
        ),
        (
            "worker-1".into(),
            Ok(vec![container(
                "worker",
                "v2",
                Restarting,
                "Restarting (1) 4 seconds ago",
                V2_AT,
            )]),
        ),
        ("worker-2".into(), Ok(vec![])),
    ]
}

/// worker-3 did not connect.
fn not_connected() -> Vec<Error> {
    vec![Error::new(
        ErrorKind::Unreachable,
        "connect over SSH",
        "ssh: connect to host worker-3 port 22: Connection refused",
    )
    .on("worker-3")
    .hint("check that the host is up and reachable on its SSH port")]
}

#[test]
fn status_text_and_json() {
    let table = status::table(&config(), &Scope::all(), &found(), &not_connected());
    insta::assert_snapshot!("status_text", render_status(&table));
    insta::assert_json_snapshot!("status_json", result_json(&status_json("shop", &table)));
}

#[test]
fn releases_text_and_json() {
    // `releases` needs every host that connected to answer: here web-3
    // did not connect at all.
    let found: Vec<_> = found().into_iter().filter(|(h, _)| h != "web-3").collect();
    let rows = release::table(&found, &Scope::all()).expect("every host answered");
    let mut silent = vec![Error::timeout("connect over SSH", Duration::from_secs(15))
        .on("web-3")
        .kind(ErrorKind::Unreachable)];
    silent.extend(not_connected());
    let unreachable: Vec<String> = silent.iter().map(Error::to_string).collect();
    insta::assert_snapshot!("releases_text", render_releases(&rows, &unreachable));
    insta::assert_json_snapshot!(
        "releases_json",
        result_json(&releases_json(&rows, &unreachable))
    );
}

#[test]
fn nothing_deployed_yet() {
    let found: Vec<_> = [
        "web-1", "web-2", "web-3", "worker-1", "worker-2", "worker-3",
    ]
    .into_iter()
    .map(|h| (h.to_string(), Ok(vec![])))
    .collect();
    let table = status::table(&config(), &Scope::all(), &found, &[]);
    let rows = release::table(&found, &Scope::all()).unwrap();
    let shown = format!(
        "--- status\n{}--- releases\n{}",
        render_status(&table),
        render_releases(&rows, &[])
    );
    insta::assert_snapshot!(shown);
}
