//! What `ballast watch --listen` serves, read by the tools people read it
//! with, on a real 2-host lab with one host stopped:
//! - the status page loaded in headless Chromium (Debian's `chromium`): the
//!   rendered DOM shows the stopped host down with its containers unknown,
//!   the other host up with web healthy at the deployed version; a
//!   screenshot is kept in `target/test-artifacts/watch-status.png`, and
//!   its pixels carry the page's red for "down" and green for "up";
//! - `/metrics` parsed by a real Prometheus parser (Python's
//!   `prometheus_client`, Debian's `python3-prometheus-client`), made
//!   strict: every sample belongs to a family declared by `# TYPE` with a
//!   `# HELP`, no family twice, no series twice; the host-up gauge says one
//!   host of two is down and its incident is open.
//!
//! Without Chromium or the Python module the test is skipped, saying so;
//! with `BALLAST_REQUIRE_ENGINE=1` (CI) it fails instead.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;
// Shared with other tests once `common/mod.rs` declares it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::browser::{self, try_run_within, Element, TOOL_DEADLINE};
use common::webhook::{free_port, http_get, metric};
use common::*;

/// The Pythons tried for `prometheus_client`: Debian's first, where
/// `python3-prometheus-client` installs it, then whichever is on `PATH`.
const PYTHONS: [&str; 2] = ["/usr/bin/python3", "python3"];

/// The first of [`PYTHONS`] that imports `prometheus_client`.
fn python() -> Option<&'static str> {
    PYTHONS.into_iter().find(|py| {
        let mut cmd = Command::new(py);
        cmd.args(["-c", "import prometheus_client"]);
        try_run_within(cmd, b"", TOOL_DEADLINE).is_ok_and(|o| o.status.success())
    })
}

/// Why the tools this test reads the page with are missing, if they are.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    if !browser::chromium_answers() {
        missing.push("`chromium` (Debian package chromium)");
    }
    if python().is_none() {
        missing.push("Python's prometheus_client (Debian package python3-prometheus-client)");
    }
    match missing.is_empty() {
        true => None,
        false => Some(format!(
            "skipped: watch_page needs {}; install: apt-get install -y chromium python3-prometheus-client",
            missing.join(" and ")
        )),
    }
}

/// Parses Prometheus text from stdin with `prometheus_client`, then holds
/// it to what the lenient parser lets through; prints the samples as JSON.
const READ_METRICS: &str = r##"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
typed, helped = {}, set()
for line in text.splitlines():
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ", 3)
        assert name not in typed, f"TYPE twice for {name}"
        typed[name] = kind
    elif line.startswith("# HELP "):
        helped.add(line.split(" ", 3)[2])
families = list(text_string_to_metric_families(text))
seen_families, seen_series, samples = set(), set(), []
for f in families:
    assert f.type in ("gauge", "counter"), f"{f.name}: type {f.type}: a sample without its TYPE line?"
    assert f.name not in seen_families, f"family {f.name} twice: its samples are not together"
    seen_families.add(f.name)
    assert f.documentation, f"{f.name}: no HELP"
    for s in f.samples:
        assert s.name in typed, f"sample {s.name} has no TYPE line"
        assert s.name in helped, f"sample {s.name} has no HELP line"
        assert typed[s.name] == f.type, f"{s.name}: TYPE {typed[s.name]}, parsed as {f.type}"
        assert math.isfinite(s.value), f"{s.name} {s.labels}: {s.value}"
        if f.type == "counter":
            assert s.value >= 0, f"{s.name} {s.labels}: negative counter"
        key = (s.name, tuple(sorted(s.labels.items())))
        assert key not in seen_series, f"series twice: {key}"
        seen_series.add(key)
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps({"families": len(families), "samples": samples}))
"##;

/// Where test artifacts are kept: `test-artifacts` in the target
/// directory of this build (the outermost holding cargo's `CACHEDIR.TAG`:
/// with `--target`, the triple's directory has one too).
fn artifacts_dir() -> PathBuf {
    let bin = ballast_bin();
    let target = bin
        .ancestors()
        .filter(|d| d.join("CACHEDIR.TAG").is_file())
        .last()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(dir: &Path, lab: &Lab) -> PathBuf {
    let inv = &lab.inventory;
    let (h1, h2) = (&inv.hosts[0].ip, &inv.hosts[1].ip);
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
deploy:
  health_timeout: 20s
watch:
  interval: 1s
  deadline: 3s
  failures: 2
  recover_after: 5s
  escalate_after: 10m
"
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// Waits until watch's `/metrics` show `done`, at most `within`; the
/// last text seen.
fn wait_metrics(http: u16, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (code, m) = http_get(http, "/metrics");
        assert_eq!(code, 200, "{m}");
        if done(&m) {
            eprintln!(
                "measure: {what} after {:.1}s",
                start.elapsed().as_secs_f64()
            );
            return m;
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `metrics` say `host` answered the last look (`1`) or not (`0`).
fn host_up(metrics: &str, host: &str) -> Option<f64> {
    metric(
        metrics,
        &format!("ballast_watch_host_up{{service=\"hello\",host=\"{host}\"}}"),
    )
}

/// Whether `metrics` say web is healthy on `host`.
fn web_healthy(metrics: &str, host: &str) -> bool {
    let series = format!(
        "ballast_watch_container_condition{{service=\"hello\",host=\"{host}\",kind=\"role\",name=\"web\",condition=\"healthy\"}}"
    );
    metric(metrics, &series) == Some(1.0)
}

/// The open `host_down` incidents `metrics` count.
fn hosts_down_open(metrics: &str) -> Option<f64> {
    metric(
        metrics,
        "ballast_watch_incidents_open{service=\"hello\",kind=\"host_down\"}",
    )
}

/// The cells of the row of `host`: the host's, then one per role.
fn row<'a>(page: &'a [Element], host: &str) -> (&'a Element, Vec<&'a Element>) {
    let at = page
        .iter()
        .position(|e| e.tag == "tr" && e.attr("data-host") == Some(host))
        .unwrap_or_else(|| panic!("no row for {host} in {page:#?}"));
    let cells = page.iter().filter(|e| e.parent == Some(at)).collect();
    (&page[at], cells)
}

/// The cell of role `role` among `cells`.
fn role_cell<'a>(cells: &[&'a Element], role: &str) -> &'a Element {
    cells
        .iter()
        .find(|c| c.attr("data-kind") == Some("role") && c.attr("data-name") == Some(role))
        .unwrap_or_else(|| panic!("no {role} cell in {cells:#?}"))
}

/// The rendered page: the stopped host down and its web unknown, the
/// other up with web healthy at v1, the summary red.
fn check_page(page: &[Element], up: &str, down: &str) {
    let hosts = page.iter().filter(|e| e.attr("data-host").is_some());
    assert_eq!(hosts.count(), 2, "{page:#?}");

    let (tr, cells) = row(page, down);
    assert_eq!(tr.attr("data-state"), Some("down"), "{tr:#?}");
    assert!(cells[0].has_class("down"), "{cells:#?}");
    assert!(
        cells[0].text.starts_with(&format!("{down} down ")),
        "{cells:#?}"
    );
    let web = role_cell(&cells, "web");
    assert_eq!(web.attr("data-condition"), Some("unknown"), "{web:#?}");
    assert_eq!(web.text, "unknown host not answering");

    let (tr, cells) = row(page, up);
    assert_eq!(tr.attr("data-state"), Some("up"), "{tr:#?}");
    assert!(cells[0].has_class("up"), "{cells:#?}");
    // The host's name and state first, then what else the look read
    // (its Docker disk, its proxy).
    assert!(cells[0].text.starts_with(&format!("{up} up")), "{cells:#?}");
    let web = role_cell(&cells, "web");
    assert_eq!(web.attr("data-condition"), Some("healthy"), "{web:#?}");
    assert!(web.text.starts_with("v1 healthy running, up "), "{web:#?}");

    let summary = page.iter().find(|e| e.has_class("summary"));
    let summary = summary.unwrap_or_else(|| panic!("no summary in {page:#?}"));
    assert!(summary.has_class("down"), "{summary:#?}");
    assert!(
        summary
            .text
            .starts_with("1 of 2 hosts up · 1 incidents open"),
        "{summary:#?}"
    );
}

/// `/metrics` through the strict parser: one host of two up, the stopped
/// one's incident open, web healthy on the other.
fn check_metrics(parsed: &Value, up: &str, down: &str) {
    let samples = parsed["samples"].as_array().unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .and_then(|s| s["value"].as_f64())
    };
    assert!(samples.iter().all(|s| s["labels"]["service"] == "hello"));
    assert_eq!(value("ballast_watch_host_up", &[("host", up)]), Some(1.0));
    assert_eq!(value("ballast_watch_host_up", &[("host", down)]), Some(0.0));
    let hosts_up: f64 = samples
        .iter()
        .filter(|s| s["name"] == "ballast_watch_host_up")
        .filter_map(|s| s["value"].as_f64())
        .sum();
    assert_eq!(hosts_up, 1.0, "{parsed:#}");
    let open = value("ballast_watch_incidents_open", &[("kind", "host_down")]);
    assert_eq!(open, Some(1.0), "{parsed:#}");
    let healthy = [
        ("host", up),
        ("kind", "role"),
        ("name", "web"),
        ("condition", "healthy"),
    ];
    assert_eq!(
        value("ballast_watch_container_condition", &healthy),
        Some(1.0),
        "{parsed:#}"
    );
    let looks = value("ballast_watch_looks_total", &[]).unwrap_or(0.0);
    assert!(looks >= 2.0, "{parsed:#}");
}

#[test]
fn the_status_page_in_chromium_and_the_metrics_in_a_prometheus_parser_show_a_stopped_host_down() {
    require_engine!();
    if let Some(why) = missing_tools() {
        if common::engine::required() {
            panic!("{why} (BALLAST_REQUIRE_ENGINE=1: not skipped)");
        }
        common::engine::say_skipped(&why);
        return;
    }
    hello_image("v1");
    let lab = Lab::up("watchpage", 2);
    let inv = lab.inventory.clone();
    let (up, down) = (inv.hosts[0].ip.as_str(), inv.hosts[1].ip.as_str());
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &lab);
    let binary = static_ballast();
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);

    let http = free_port();
    let state = work.path().join("watch-state.json");
    let watch = common::watch::start(&config, &binary, &state, http, 2, "hello");
    // Both hosts judged, web healthy on each, before one goes away.
    wait_metrics(
        http,
        "web healthy on both hosts",
        Duration::from_secs(30),
        |m| web_healthy(m, up) && web_healthy(m, down),
    );
    let stop = Command::new("docker")
        .args(["stop", "-t", "1", &inv.hosts[1].container])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    let metrics = wait_metrics(
        http,
        "stopped host down, its incident open",
        Duration::from_secs(30),
        |m| {
            host_up(m, down) == Some(0.0)
                && hosts_down_open(m) == Some(1.0)
                && host_up(m, up) == Some(1.0)
                && web_healthy(m, up)
        },
    );

    let url = format!("http://127.0.0.1:{http}/");
    let loading = Instant::now();
    let dom = browser::dump_dom(&url);
    eprintln!(
        "measure: chromium --dump-dom took {:.1}s",
        loading.elapsed().as_secs_f64()
    );
    check_page(&browser::elements(&dom), up, down);

    let shot = artifacts_dir().join("watch-status.png");
    browser::screenshot(&url, &shot, (1280, 900));
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    eprintln!("artifact: {} ({} bytes)", shot.display(), png.len());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "{} bytes: a blank page?", png.len());
    // The borders of the page's down and up host cells, as drawn.
    let (red, green) = ("#c62828", "#2e7d32");
    let seen = browser::count_colours(&png, &[red, green]);
    eprintln!("measure: screenshot {seen:?}");
    assert_eq!((seen.width, seen.height), (1280, 900));
    assert!(seen.counts[red] > 100, "no red for down: {seen:?}");
    assert!(seen.counts[green] > 100, "no green for up: {seen:?}");

    let python = python().expect("checked by missing_tools");
    let parsed = browser::python_json(python, READ_METRICS, &[], metrics.as_bytes());
    eprintln!(
        "measure: prometheus_client read {} families, {} samples",
        parsed["families"],
        parsed["samples"].as_array().map_or(0, Vec::len)
    );
    check_metrics(&parsed, up, down);

    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
}
