//! The routing table: an immutable snapshot of services and route lookup.
//!
//! The data path only reads a [`Table`] (through an `ArcSwap`); the control
//! path builds a new one with [`Table::with_service`] or
//! [`Table::without_service`] and swaps it in. Targets, round-robin cursors
//! and pause gates are shared by `Arc` between snapshots, so a swap keeps
//! in-flight counts and turns.
//!
//! A paused service holds its new requests at its [`PauseGate`], up to a
//! limit per service (the data path's `max_held_requests`); past it, a
//! request is refused at once (503) rather than left to pile up.
//!
//! Lookup: the services naming the request's host exactly come first; when
//! none of them matches the path, the default services (no hosts) are tried.
//! Among the matches, the longest path prefix wins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::counters::RequestCounters;
use crate::target::Target;

/// One snapshot of every route.
#[derive(Debug, Default)]
pub struct Table {
    /// Sorted by name; names are unique.
    services: Vec<Arc<Service>>,
}

/// A service: where its requests come from and which targets serve them.
#[derive(Debug, Clone)]
pub struct Service {
    /// Unique name: the key the admin API uses.
    pub name: String,
    /// Lower-case host names without port; empty makes this a default service.
    pub hosts: Vec<String>,
    /// Normalised path prefix (see [`normalize_prefix`]).
    pub path_prefix: String,
    /// Where requests go, round robin.
    pub targets: Vec<Arc<Target>>,
    /// Answer 503 with a maintenance page instead of forwarding.
    pub maintenance: bool,
    /// When set, new requests wait at this gate before being forwarded.
    pub pause: Option<Arc<PauseGate>>,
    /// The largest request and response bodies the service takes and sends.
    pub body_limits: BodyLimits,
    /// Requests answered and 5xx answers; kept across snapshots and
    /// redeploys of the service (see `control`), so they only go up.
    pub counters: Arc<RequestCounters>,
    /// Round-robin cursor, kept across snapshots.
    cursor: Arc<AtomicUsize>,
}

impl Service {
    /// A service with a fresh round-robin cursor.
    pub fn new(
        name: String,
        hosts: Vec<String>,
        path_prefix: String,
        targets: Vec<Arc<Target>>,
    ) -> Service {
        Service {
            name,
            hosts,
            path_prefix,
            targets,
            maintenance: false,
            pause: None,
            body_limits: BodyLimits::default(),
            counters: Arc::new(RequestCounters::default()),
            cursor: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The next target in round-robin order.
    pub fn pick(&self) -> Option<&Arc<Target>> {
        if self.targets.is_empty() {
            return None;
        }
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.targets.get(turn % self.targets.len())
    }

    /// Whether new requests are held now (a gate past its limit holds none).
    pub fn is_paused(&self) -> bool {
        self.pause.as_ref().is_some_and(|gate| gate.is_holding())
    }

    /// Whether `path` is under this service's prefix.
    fn matches_path(&self, path: &str) -> bool {
        prefix_matches(&self.path_prefix, path)
    }
}

/// A route's body size limits, in bytes (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyLimits {
    /// Larger request bodies are refused with 413.
    pub request: Option<u64>,
    /// Larger response bodies are refused with 502, or cut off.
    pub response: Option<u64>,
}

/// Holds a paused service's requests until resumed or until a time limit.
#[derive(Debug)]
pub struct PauseGate {
    /// Held requests go on at this instant even without a resume.
    until: Instant,
    /// `true` once resumed.
    released: watch::Sender<bool>,
    /// Requests waiting at the gate now, on every lane.
    held: AtomicUsize,
}

/// One request waiting at a [`PauseGate`]; dropping it leaves the queue.
#[derive(Debug)]
pub struct Held(Arc<PauseGate>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PauseGate {
    /// A closed gate that opens by itself at `until`.
    pub fn new(until: Instant) -> Arc<PauseGate> {
        Arc::new(PauseGate {
            until,
            released: watch::Sender::new(false),
            held: AtomicUsize::new(0),
        })
    }

    /// Joins the queue of held requests, unless `max` already wait.
    pub fn hold(self: &Arc<Self>, max: usize) -> Option<Held> {
        if self.held.fetch_add(1, Ordering::Relaxed) >= max {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Held(Arc::clone(self)))
    }

    /// Requests waiting at the gate now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Opens the gate: every held request goes on.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Whether the gate still holds requests.
    pub fn is_holding(&self) -> bool {
        !*self.released.borrow() && Instant::now() < self.until
    }

    /// Waits until the gate opens (resume or time limit).
    pub async fn wait(&self) {
        let mut released = self.released.subscribe();
        let _ = tokio::time::timeout_at(self.until, released.wait_for(|r| *r)).await;
    }
}

impl Table {
    /// A table of these services (sorted by name here).
    pub fn new(mut services: Vec<Service>) -> Table {
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Table {
            services: services.into_iter().map(Arc::new).collect(),
        }
    }

    /// Every service, sorted by name.
    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name == name)
    }

    /// A copy of this table with `service` added, or replacing the one of
    /// the same name.
    pub fn with_service(&self, service: Service) -> Table {
        let mut services: Vec<Arc<Service>> = self
            .services
            .iter()
            .filter(|s| s.name != service.name)
            .cloned()
            .collect();
        services.push(Arc::new(service));
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Table { services }
    }

    /// A copy of this table without the named service.
    pub fn without_service(&self, name: &str) -> Table {
        Table {
            services: self
                .services
                .iter()
                .filter(|s| s.name != name)
                .cloned()
                .collect(),
        }
    }

    /// The service that answers a request for `host` (a Host header, port
    /// allowed) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Service>> {
        // Hosts in the table are lower case; comparing without case spares
        // the request path an allocation.
        let host = host_name(host);
        let best = |named: bool| {
            self.services
                .iter()
                .filter(|s| {
                    if named {
                        s.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
                    } else {
                        s.hosts.is_empty()
                    }
                })
                .filter(|s| s.matches_path(path))
                .max_by_key(|s| s.path_prefix.len())
        };
        best(true).or_else(|| best(false))
    }

    /// Another service already answering `hosts` under `prefix`, if any:
    /// two services may not share a host name (or both be the default)
    /// with the same path prefix, or one would never be reached.
    pub fn conflict(&self, name: &str, hosts: &[String], prefix: &str) -> Option<String> {
        self.services
            .iter()
            .filter(|s| s.name != name && s.path_prefix == prefix)
            .find_map(|s| {
                if hosts.is_empty() && s.hosts.is_empty() {
                    return Some(format!(
                        "the default route (no host names) with path prefix {prefix} is \
                         already served by service `{}`; give one of them host names or \
                         another path_prefix",
                        s.name
                    ));
                }
                hosts.iter().find(|h| s.hosts.contains(h)).map(|h| {
                    format!(
                        "host name {h} with path prefix {prefix} is already served by service \
                         `{}`; give one of them another host name or path_prefix",
                        s.name
                    )
                })
            })
    }
}

/// A service name: the key of its route, certificate and state files.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(format!(
            "service name `{name}` must be 1–128 letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(())
}

/// A Host header's host name: lower case, without port or trailing dot.
pub fn normalize_host(host: &str) -> String {
    host_name(host).to_ascii_lowercase()
}

/// The name part of a Host header: no port, no brackets, no trailing dot.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    name.trim_end_matches('.')
}

/// A path prefix in canonical form: leading `/`, no trailing `/` (but `/`).
pub fn normalize_prefix(prefix: Option<&str>) -> Result<String, String> {
    let prefix = prefix.unwrap_or("/").trim();
    if !prefix.starts_with('/') {
        return Err(format!("path prefix `{prefix}` must start with `/`"));
    }
    if prefix.contains(['?', '#', ' ']) {
        return Err(format!(
            "path prefix `{prefix}` must be a plain path (no `?`, `#` or space)"
        ));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// Whether `path` is `prefix` itself or below it (`/api` covers `/api/x`,
/// not `/apix`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, hosts: &[&str], prefix: &str) -> Service {
        Service::new(
            name.into(),
            hosts.iter().map(|h| h.to_string()).collect(),
            prefix.into(),
            vec![Target::new(format!("{name}:80"))],
        )
    }

    fn table() -> Table {
        Table::new(vec![
            service("shop", &["shop.example.com"], "/"),
            service("shop-api", &["shop.example.com"], "/api"),
            service("shop-api-v2", &["shop.example.com"], "/api/v2"),
            service("blog", &["blog.example.com", "www.blog.example.com"], "/"),
            service("fallback", &[], "/"),
            service("status", &[], "/status"),
        ])
    }

    fn routed(table: &Table, host: &str, path: &str) -> Option<String> {
        table.route(host, path).map(|s| s.name.clone())
    }

    #[test]
    fn exact_host_and_longest_prefix_win() {
        let t = table();
        assert_eq!(routed(&t, "shop.example.com", "/").as_deref(), Some("shop"));
        assert_eq!(
            routed(&t, "shop.example.com", "/cart").as_deref(),
            Some("shop")
        );
        assert_eq!(
            routed(&t, "shop.example.com", "/api").as_deref(),
            Some("shop-api")
        );
        assert_eq!(
            routed(&t, "shop.example.com", "/api/x").as_deref(),
            Some("shop-api")
        );
        assert_eq!(
            routed(&t, "shop.example.com", "/api/v2/y").as_deref(),
            Some("shop-api-v2")
        );
        assert_eq!(
            routed(&t, "shop.example.com", "/apix").as_deref(),
            Some("shop")
        );
        assert_eq!(
            routed(&t, "www.blog.example.com", "/a").as_deref(),
            Some("blog")
        );
    }

    #[test]
    fn host_matching_ignores_case_port_and_trailing_dot() {
        let t = table();
        assert_eq!(
            routed(&t, "SHOP.example.com:8080", "/api").as_deref(),
            Some("shop-api")
        );
        assert_eq!(
            routed(&t, "blog.example.com.", "/").as_deref(),
            Some("blog")
        );
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("127.0.0.1:9"), "127.0.0.1");
    }

    #[test]
    fn unknown_hosts_go_to_the_default_services() {
        let t = table();
        assert_eq!(
            routed(&t, "other.example.com", "/").as_deref(),
            Some("fallback")
        );
        assert_eq!(
            routed(&t, "127.0.0.1:80", "/status/x").as_deref(),
            Some("status")
        );
        assert_eq!(routed(&t, "", "/").as_deref(), Some("fallback"));
    }

    #[test]
    fn without_a_default_unknown_hosts_find_nothing() {
        let t = table().without_service("fallback");
        assert_eq!(routed(&t, "other.example.com", "/"), None);
        // A named host whose prefixes miss the path falls through to defaults.
        let t = Table::new(vec![
            service("api", &["a.example.com"], "/api"),
            service("default", &[], "/"),
        ]);
        assert_eq!(
            routed(&t, "a.example.com", "/web").as_deref(),
            Some("default")
        );
    }

    #[test]
    fn with_service_replaces_by_name_and_keeps_order() {
        let t = table().with_service(service("blog", &["new.example.com"], "/"));
        let names: Vec<_> = t.services().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "blog",
                "fallback",
                "shop",
                "shop-api",
                "shop-api-v2",
                "status"
            ]
        );
        assert_eq!(routed(&t, "new.example.com", "/").as_deref(), Some("blog"));
        assert_eq!(
            routed(&t, "blog.example.com", "/").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn round_robin_spreads_requests_and_survives_a_swap() {
        let mut s = service("web", &[], "/");
        s.targets = vec![Target::new("a:1"), Target::new("b:1"), Target::new("c:1")];
        let picks: Vec<_> = (0..6)
            .map(|_| s.pick().unwrap().addr().to_string())
            .collect();
        assert_eq!(picks, ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]);
        let t = Table::new(vec![s.clone()]);
        let next = t.service("web").unwrap().pick().unwrap();
        assert_eq!(next.addr(), "a:1");
        assert_eq!(s.pick().unwrap().addr(), "b:1");
    }

    #[test]
    fn conflicts_name_the_other_service() {
        let t = table();
        let clash = t.conflict("new", &["shop.example.com".into()], "/api");
        assert_eq!(
            clash.as_deref(),
            Some(
                "host name shop.example.com with path prefix /api is already served by service \
                 `shop-api`; give one of them another host name or path_prefix"
            )
        );
        assert!(t
            .conflict("shop-api", &["shop.example.com".into()], "/api")
            .is_none());
        assert!(t
            .conflict("new", &["shop.example.com".into()], "/new")
            .is_none());
        let clash = t.conflict("new", &[], "/");
        assert_eq!(
            clash.as_deref(),
            Some(
                "the default route (no host names) with path prefix / is already served by \
                 service `fallback`; give one of them host names or another path_prefix"
            )
        );
    }

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix(None).unwrap(), "/");
        assert_eq!(normalize_prefix(Some("/")).unwrap(), "/");
        assert_eq!(normalize_prefix(Some("/api/")).unwrap(), "/api");
        assert!(normalize_prefix(Some("api")).is_err());
        assert!(normalize_prefix(Some("/a?b")).is_err());
        assert!(prefix_matches("/api", "/api?x=1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_gate_opens_on_release_or_at_its_limit() {
        let gate = PauseGate::new(Instant::now() + std::time::Duration::from_secs(10));
        assert!(gate.is_holding());
        gate.release();
        gate.wait().await;
        assert!(!gate.is_holding());

        let gate = PauseGate::new(Instant::now() + std::time::Duration::from_secs(10));
        let start = Instant::now();
        gate.wait().await; // the paused clock jumps to the limit
        assert!(start.elapsed() >= std::time::Duration::from_secs(10));
        assert!(!gate.is_holding());
    }

    #[test]
    fn a_pause_gate_holds_at_most_its_limit() {
        let gate = PauseGate::new(Instant::now() + std::time::Duration::from_secs(10));
        let first = gate.hold(2).unwrap();
        let second = gate.hold(2).unwrap();
        assert!(gate.hold(2).is_none(), "a third request is refused");
        assert_eq!(gate.held(), 2);
        drop(first);
        let third = gate.hold(2).expect("a place came free");
        drop((second, third));
        assert_eq!(gate.held(), 0);
    }
}
