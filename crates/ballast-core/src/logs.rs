//! The logs of a service's containers, merged across hosts: which containers
//! to read (the app's running containers in a scope, its accessories', or
//! the proxies), and their lines as one stream of [`LogLine`]s. Without following, every
//! line is read first and handed over in time order; when following, lines
//! are handed over as they arrive. Roles whose log driver sends the lines
//! away (syslog, gelf, fluentd) are read from the copy Docker keeps on the
//! host, if it keeps one, and [`Elsewhere`] says where the lines went.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{LogsOptions, LogsOptionsBuilder};
use futures_util::future::ready;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use regex::Regex;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::scope::Scope;
use crate::{deploy, proxy, release};

mod elsewhere;

pub use elsewhere::{by_driver, Elsewhere};

/// A container whose log is read, and what to call it.
pub struct Source {
    /// The host it runs on, in front of each of its lines.
    pub host: String,
    /// Its role (`proxy` for the proxy), in front of each of its lines.
    pub role: String,
    /// The engine of its host.
    pub docker: bollard::Docker,
    /// Its ID or name.
    pub container: String,
}

/// Which part of the logs to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Keep reading as new lines come, until every container's log ends.
    pub follow: bool,
    /// How many of each container's last lines to start from.
    pub tail: usize,
    /// Unix seconds; only lines newer than this.
    pub since: Option<i32>,
}

impl Window {
    /// The Unix second `ago` before `now`, for [`Window::since`].
    pub fn cutoff(ago: Duration, now: SystemTime) -> i32 {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|n| n.as_secs())
            .unwrap_or(0);
        now.saturating_sub(ago.as_secs()) as i32
    }
}

/// One line of a container's log and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 time Docker put in front of the line; sorts as text.
    pub time: String,
    pub host: String,
    pub role: String,
    pub text: String,
}

impl LogLine {
    /// Reads a line as Docker sends it with timestamps: `<time> <text>`.
    pub fn parse(host: &str, role: &str, raw: &str) -> LogLine {
        let (time, text) = raw.split_once(' ').unwrap_or(("", raw));
        LogLine {
            time: time.into(),
            host: host.into(),
            role: role.into(),
            text: text.into(),
        }
    }
}

/// The running app containers of `service` on each connected host of
/// `fleet`, of the roles in `scope`, by host name.
pub async fn app_sources(fleet: &Fleet, service: &str, scope: &Scope) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for (name, found) in release::observe_fleet(fleet, service).await {
        let found = found?;
        let Some(host) = fleet.get(&name) else {
            continue;
        };
        for c in found {
            if c.running && scope.has_role(&c.role) {
                sources.push(Source {
                    host: name.clone(),
                    role: c.role.clone(),
                    docker: host.engine().docker().clone(),
                    container: c.id.clone(),
                });
            }
        }
    }
    Ok(sources)
}

/// The hosts `ballast logs` reads in `scope`: those of its roles, then,
/// when it names no role, those of the accessories among its hosts.
pub fn hosts(config: &Config, scope: &Scope) -> Vec<String> {
    let mut hosts = scope.hosts_of(config);
    for a in config.accessories.values() {
        let wanted = scope.roles.is_empty() && scope.has_host(a.host());
        if wanted && !hosts.iter().any(|h| h == a.host()) {
            hosts.push(a.host().to_string());
        }
    }
    hosts
}

/// The running accessory containers on the connected hosts of `fleet`,
/// when `scope` names no role (their prefix is the accessory's name).
pub async fn accessory_sources(
    loaded: &crate::config::Loaded,
    fleet: &Fleet,
    scope: &Scope,
) -> Result<Vec<Source>> {
    if !scope.roles.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = loaded
        .config
        .accessories
        .iter()
        .filter(|(_, a)| scope.has_host(a.host()))
        .map(|(n, _)| n.clone())
        .collect();
    crate::accessory::log_sources(loaded, fleet, &names, true).await
}

/// The proxy container of every proxied host of `config` that `fleet`
/// reached, by host name; their role is `proxy`.
pub fn proxy_sources(fleet: &Fleet, config: &Config) -> Vec<Source> {
    deploy::proxied_hosts(config)
        .keys()
        .filter_map(|name| fleet.get(name))
        .map(|host| Source {
            host: host.name().to_string(),
            role: "proxy".into(),
            docker: host.engine().docker().clone(),
            container: proxy::CONTAINER.into(),
        })
        .collect()
}

/// Reads the logs of every source within `window` and hands `each` their
/// lines that match `grep`: in time order, or as they arrive when
/// following. Returns once every log has ended.
pub async fn merge(
    sources: Vec<Source>,
    window: &Window,
    grep: Option<&Regex>,
    each: impl FnMut(LogLine),
) {
    let options = options(window);
    let streams = sources
        .into_iter()
        .map(|s| {
            let lines = raw_lines(&s, options.clone());
            (s.host, s.role, lines)
        })
        .collect();
    merge_lines(streams, window.follow, grep, each).await
}

/// What Docker is asked for: both outputs, with timestamps, within `window`.
fn options(window: &Window) -> LogsOptions {
    let mut options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .follow(window.follow)
        .tail(&window.tail.to_string());
    if let Some(s) = window.since {
        options = options.since(s);
    }
    options.build()
}

/// A container's log as Docker sends it, line by line, until it ends or
/// fails.
fn raw_lines(source: &Source, options: LogsOptions) -> BoxStream<'static, String> {
    source
        .docker
        .logs(&source.container, Some(options))
        .take_while(|chunk| ready(chunk.is_ok()))
        .flat_map(|chunk| {
            let text = chunk.map(|c| c.to_string()).unwrap_or_default();
            stream::iter(text.lines().map(String::from).collect::<Vec<_>>())
        })
        .boxed()
}

/// Merges the raw lines of `(host, role, lines)` streams, each read on its
/// own task: as they arrive when `follow`, else all of them by time (lines
/// of the same time in the order they came).
async fn merge_lines(
    streams: Vec<(String, String, BoxStream<'static, String>)>,
    follow: bool,
    grep: Option<&Regex>,
    mut each: impl FnMut(LogLine),
) {
    let (tx, mut rx) = mpsc::channel::<LogLine>(1024);
    for (host, role, mut lines) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(raw) = lines.next().await {
                if tx.send(LogLine::parse(&host, &role, &raw)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let keep = |l: &LogLine| grep.is_none_or(|g| g.is_match(&l.text));
    if follow {
        while let Some(line) = rx.recv().await {
            if keep(&line) {
                each(line);
            }
        }
        return;
    }
    let mut lines = Vec::new();
    while let Some(line) = rx.recv().await {
        if keep(&line) {
            lines.push(line);
        }
    }
    lines.sort_by(|a, b| a.time.cmp(&b.time));
    lines.into_iter().for_each(each);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, host: &str, role: &str, text: &str) -> LogLine {
        LogLine {
            time: time.into(),
            host: host.into(),
            role: role.into(),
            text: text.into(),
        }
    }

    fn source(host: &str, raw: &[&str]) -> (String, String, BoxStream<'static, String>) {
        let raw: Vec<String> = raw.iter().map(|r| r.to_string()).collect();
        (host.into(), "web".into(), stream::iter(raw).boxed())
    }

    async fn merged(
        streams: Vec<(String, String, BoxStream<'static, String>)>,
        follow: bool,
        grep: Option<&Regex>,
    ) -> Vec<LogLine> {
        let mut out = Vec::new();
        merge_lines(streams, follow, grep, |l| out.push(l)).await;
        out
    }

    #[test]
    fn a_line_splits_into_time_and_text() {
        assert_eq!(
            LogLine::parse("a", "web", "2024-05-01T10:00:00.000000001Z GET /up 200"),
            line("2024-05-01T10:00:00.000000001Z", "a", "web", "GET /up 200")
        );
        assert_eq!(
            LogLine::parse("a", "web", "no-timestamp"),
            line("", "a", "web", "no-timestamp")
        );
    }

    #[test]
    fn the_cutoff_counts_back_from_now() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(Window::cutoff(Duration::from_secs(600), now), 400);
        assert_eq!(Window::cutoff(Duration::from_secs(5_000), now), 0);
    }

    #[tokio::test]
    async fn without_follow_every_host_is_merged_in_time_order() {
        let streams = vec![
            source("a", &["2024-05-01T10:00:01Z a1", "2024-05-01T10:00:03Z a3"]),
            source("b", &["2024-05-01T10:00:02Z b2", "2024-05-01T10:00:04Z b4"]),
        ];
        assert_eq!(
            merged(streams, false, None).await,
            [
                line("2024-05-01T10:00:01Z", "a", "web", "a1"),
                line("2024-05-01T10:00:02Z", "b", "web", "b2"),
                line("2024-05-01T10:00:03Z", "a", "web", "a3"),
                line("2024-05-01T10:00:04Z", "b", "web", "b4"),
            ]
        );
    }

    #[tokio::test]
    async fn grep_keeps_the_lines_whose_text_matches() {
        let streams = vec![
            source(
                "a",
                &[
                    "2024-05-01T10:00:01Z GET /up",
                    "2024-05-01T10:00:02Z ERROR x",
                ],
            ),
            source(
                "b",
                &["2024-05-01T10:00:03Z ERROR y", "2024-05-01T10:00:04Z GET /"],
            ),
        ];
        // The time is not part of the text: "10" matches no line.
        let grep = Regex::new("ERROR|10").unwrap();
        assert_eq!(
            merged(streams, false, Some(&grep)).await,
            [
                line("2024-05-01T10:00:02Z", "a", "web", "ERROR x"),
                line("2024-05-01T10:00:03Z", "b", "web", "ERROR y"),
            ]
        );
    }

    #[tokio::test]
    async fn following_hands_lines_over_as_they_arrive() {
        let (a_tx, a_rx) = mpsc::channel::<String>(4);
        let (b_tx, b_rx) = mpsc::channel::<String>(4);
        let lines = |rx: mpsc::Receiver<String>| {
            stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) }).boxed()
        };
        let streams = vec![
            ("a".to_string(), "web".to_string(), lines(a_rx)),
            ("b".to_string(), "worker".to_string(), lines(b_rx)),
        ];
        let (out_tx, mut out) = mpsc::unbounded_channel();
        let merging = tokio::spawn(merge_lines(streams, true, None, move |l| {
            out_tx.send(l).unwrap();
        }));
        // b's later line comes first, and is shown first.
        b_tx.send("2024-05-01T10:00:02Z late".into()).await.unwrap();
        assert_eq!(
            out.recv().await.unwrap(),
            line("2024-05-01T10:00:02Z", "b", "worker", "late")
        );
        a_tx.send("2024-05-01T10:00:01Z early".into())
            .await
            .unwrap();
        assert_eq!(
            out.recv().await.unwrap(),
            line("2024-05-01T10:00:01Z", "a", "web", "early")
        );
        // It ends when every log has ended.
        drop((a_tx, b_tx));
        merging.await.unwrap();
        assert_eq!(out.recv().await, None);
    }

    #[tokio::test]
    async fn no_sources_end_at_once_with_no_lines() {
        assert_eq!(merged(Vec::new(), true, None).await, []);
    }
}
