//! `GET /metrics`: a [`Status`] in the Prometheus text format (0.0.4).
//! Every series has the `service` label; a container's have `host`,
//! `kind` (`role` or `accessory`) and `name`. States and conditions are
//! one series per possible value, 1 for the current one, so that a query
//! sees a container leave a state as well as enter it. The proxies'
//! series (`ballast_proxy_*`) have `host`, and their counters `role`;
//! those counters are the proxy's own, so they start again from 0 when a
//! new proxy process does (Prometheus takes that as a counter reset).

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use super::super::assess::Condition;
use super::super::proxy_look::RouteCounts;
use super::super::status::{ContainerStatus, Status};
use super::super::{Kind, Subject};
use crate::release::ContainerState;

/// The media type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The states a container's series are written for; `missing`: there is
/// no container of it on the host.
const STATES: [Option<ContainerState>; 8] = [
    Some(ContainerState::Created),
    Some(ContainerState::Running),
    Some(ContainerState::Restarting),
    Some(ContainerState::Paused),
    Some(ContainerState::Exited),
    Some(ContainerState::Dead),
    Some(ContainerState::Removing),
    None,
];

const CONDITIONS: [&str; 4] = ["healthy", "pending", "failing", "stopped"];

const KINDS: [Kind; 6] = [
    Kind::HostDown,
    Kind::ContainerFailing,
    Kind::RoleDown,
    Kind::ProxyDown,
    Kind::DiskFull,
    Kind::DoctorBlock,
];

/// The metric type, as the `# TYPE` line says it.
#[derive(Clone, Copy)]
enum Type {
    Gauge,
    Counter,
}

/// The text being written, with the service label on every series.
struct Out {
    text: String,
    service: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: Type, help: &str) {
        let kind = match kind {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        let _ = write!(self.text, "{name}{{service=\"{}\"", label(&self.service));
        for (k, v) in labels {
            let _ = write!(self.text, ",{k}=\"{}\"", label(v));
        }
        let _ = writeln!(self.text, "}} {value}");
    }
}

/// A label value escaped as the format wants: `\`, `"` and newlines.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `kind` and `name` of a subject.
fn subject(s: &Subject) -> [(&'static str, &str); 2] {
    match s {
        Subject::Role(r) => [("kind", "role"), ("name", r)],
        Subject::Accessory(a) => [("kind", "accessory"), ("name", a)],
    }
}

/// `host`, `kind` and `name` of a container.
fn labels(c: &ContainerStatus) -> [(&'static str, &str); 3] {
    let [kind, name] = subject(&c.subject);
    [("host", c.host.as_str()), kind, name]
}

fn condition_word(c: &Condition) -> &'static str {
    match c {
        Condition::Healthy => "healthy",
        Condition::Pending => "pending",
        Condition::Failing(_) => "failing",
        Condition::Stopped => "stopped",
    }
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::HostDown => "host_down",
        Kind::ContainerFailing => "container_failing",
        Kind::RoleDown => "role_down",
        Kind::ProxyDown => "proxy_down",
        Kind::DiskFull => "disk_full",
        Kind::DoctorBlock => "doctor_block",
    }
}

fn bit(b: bool) -> u8 {
    u8::from(b)
}

/// `status` as Prometheus text.
pub fn render(status: &Status) -> String {
    let mut out = Out {
        text: String::new(),
        service: status.service.clone(),
    };
    let o = &mut out;
    o.family(
        "ballast_watch_last_look_timestamp_seconds",
        Type::Gauge,
        "When the last look at the hosts started (0: none yet).",
    );
    o.sample(
        "ballast_watch_last_look_timestamp_seconds",
        &[],
        format_args!("{:.3}", status.at as f64 / 1000.0),
    );
    o.family(
        "ballast_watch_locked",
        Type::Gauge,
        "1 while a deploy holds the lock and watch stands aside.",
    );
    o.sample("ballast_watch_locked", &[], bit(status.locked.is_some()));
    hosts(o, status);
    proxies(o, status);
    containers(o, status);
    counters(o, status);
    out.text
}

fn hosts(o: &mut Out, status: &Status) {
    o.family(
        "ballast_watch_host_up",
        Type::Gauge,
        "1 if the host answered the last look.",
    );
    for (host, h) in &status.hosts {
        o.sample("ballast_watch_host_up", &[("host", host)], bit(h.up));
    }
    o.family(
        "ballast_host_disk_used_percent",
        Type::Gauge,
        "Used share of the filesystem holding the engine's data root, in percent, as the last look read it.",
    );
    for (host, h) in &status.hosts {
        if let Some(p) = h.disk_used_percent {
            o.sample("ballast_host_disk_used_percent", &[("host", host)], p);
        }
    }
    o.family(
        "ballast_watch_check_latency_seconds",
        Type::Gauge,
        "How long the last look at the host took (SSH, engine, health checks).",
    );
    for (host, h) in &status.hosts {
        if let Some(ms) = h.latency_ms {
            let secs = format_args!("{:.3}", ms as f64 / 1000.0);
            o.sample(
                "ballast_watch_check_latency_seconds",
                &[("host", host)],
                secs,
            );
        }
    }
}

/// Reads one of a route's counts.
type Count = fn(&RouteCounts) -> u64;

fn proxies(o: &mut Out, status: &Status) {
    o.family(
        "ballast_proxy_up",
        Type::Gauge,
        "1 if the host's ballast-proxy runs and answered its admin API in the last look.",
    );
    for (host, p) in &status.proxies {
        o.sample("ballast_proxy_up", &[("host", host)], bit(p.up));
    }
    let counters: [(&str, &str, Count); 2] = [
        (
            "ballast_proxy_requests_total",
            "Requests the host's proxy answered for the role, since the proxy process started.",
            |c| c.requests,
        ),
        (
            "ballast_proxy_responses_5xx_total",
            "Of those, answered 5xx (by the app, or 502/503/504 by the proxy itself).",
            |c| c.responses_5xx,
        ),
    ];
    for (name, help, value) in counters {
        o.family(name, Type::Counter, help);
        for (host, p) in &status.proxies {
            for (role, c) in &p.routes {
                o.sample(name, &[("host", host), ("role", role)], value(c));
            }
        }
    }
}

fn containers(o: &mut Out, status: &Status) {
    o.family(
        "ballast_watch_container_state",
        Type::Gauge,
        "1 for the Docker state of a role's or accessory's current container on a host (missing: none).",
    );
    for c in &status.containers {
        for s in STATES {
            let [h, k, n] = labels(c);
            let word = s.map_or("missing", ContainerState::word);
            let on = bit(c.state == s);
            o.sample(
                "ballast_watch_container_state",
                &[h, k, n, ("state", word)],
                on,
            );
        }
    }
    o.family(
        "ballast_watch_container_condition",
        Type::Gauge,
        "1 for what watch makes of the container: healthy, pending, failing or stopped (on purpose).",
    );
    for c in &status.containers {
        for word in CONDITIONS {
            let [h, k, n] = labels(c);
            let on = bit(condition_word(&c.condition) == word);
            o.sample(
                "ballast_watch_container_condition",
                &[h, k, n, ("condition", word)],
                on,
            );
        }
    }
    o.family(
        "ballast_watch_breaker_open",
        Type::Gauge,
        "1 once watch gave up restarting the container (its circuit breaker opened).",
    );
    for c in &status.containers {
        o.sample(
            "ballast_watch_breaker_open",
            &labels(c),
            bit(c.breaker_open),
        );
    }
}

fn counters(o: &mut Out, status: &Status) {
    let c = &status.counters;
    o.family(
        "ballast_watch_restarts_total",
        Type::Counter,
        "Restarts (and starts) watch made, by role or accessory.",
    );
    let mut of: BTreeMap<&Subject, u64> = c.restarts_of.iter().map(|(s, n)| (s, *n)).collect();
    for container in &status.containers {
        of.entry(&container.subject).or_insert(0);
    }
    for (s, n) in of {
        o.sample("ballast_watch_restarts_total", &subject(s), n);
    }
    let totals: [(&str, &str, u64); 7] = [
        (
            "ballast_watch_restarts_failed_total",
            "Restarts watch tried that failed.",
            c.restarts_failed,
        ),
        (
            "ballast_watch_docker_restarts_total",
            "Restarts seen made by Docker's restart policy.",
            c.docker_restarts,
        ),
        (
            "ballast_watch_looks_total",
            "Looks at the hosts since watch started.",
            c.looks,
        ),
        (
            "ballast_watch_docker_events_total",
            "Docker events about the service's containers, each bringing a look at its host forward.",
            c.events,
        ),
        (
            "ballast_watch_incidents_opened_total",
            "Incidents opened since watch started.",
            c.incidents_opened,
        ),
        (
            "ballast_watch_notices_total",
            "Notices (opened, escalated, recovered) sent.",
            c.notices,
        ),
        (
            "ballast_watch_alert_deliveries_failed_total",
            "Alert deliveries given up after every attempt.",
            c.deliveries_failed,
        ),
    ];
    for (name, help, n) in totals {
        o.family(name, Type::Counter, help);
        o.sample(name, &[], n);
    }
    o.family(
        "ballast_watch_incidents_open",
        Type::Gauge,
        "Incidents open, by kind.",
    );
    for k in KINDS {
        let n = status.incidents.iter().filter(|i| i.key.kind == k).count();
        o.sample("ballast_watch_incidents_open", &[("kind", kind_word(k))], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn a_small_status_renders_exactly() {
        let text = render(&super::super::sample());
        let expected = include_str!("metrics.expected.txt");
        assert_eq!(text, expected, "got:\n{text}");
    }
}
