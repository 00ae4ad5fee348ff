//! `watch:` in `ballast.yml`: how `ballast watch` polls the hosts, heals
//! what fell over (backoff, circuit breaker, a share of a role's hosts at
//! a time) and alerts (channels, escalation). The types (the schema of the
//! section and its reference), their defaults, and their semantic checks.

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::parse_percent;
use super::node::shorten;
use super::schema::Config;
use super::validate::Checker;

/// How `ballast watch` watches, heals and alerts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// Time between two looks at every host.
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub interval: Duration,
    /// How long one host may take to answer one look (SSH, engine, health
    /// checks); past it, the host counts as not answering.
    #[serde(default = "defaults::deadline", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub deadline: Duration,
    /// Looks in a row a host must fail to answer, or a container its health
    /// check, before it counts as down or unhealthy.
    #[serde(default = "defaults::failures")]
    pub failures: u32,
    /// How long a problem must stay gone before its incident closes (and
    /// the recovery notice goes out), so a flapping container is one
    /// incident, not many.
    #[serde(default = "defaults::recover_after", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub recover_after: Duration,
    /// The most of a role's hosts watch restarts containers on at once, as
    /// a share such as `"34%"` (at least one host): a restarted container
    /// must be healthy again before the next host's is touched.
    #[serde(default = "defaults::max_share")]
    pub max_share: String,
    /// Waits between restarts of the same container.
    #[serde(default)]
    pub backoff: WatchBackoff,
    /// When watch stops restarting a container and leaves it to a human.
    #[serde(default)]
    pub breaker: WatchBreaker,
    /// An incident still open after this long is escalated: sent again
    /// with a report (what, where, since when, what was tried, the
    /// container's last log lines with secrets redacted).
    #[serde(default = "defaults::escalate_after", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub escalate_after: Duration,
    /// Where alerts go: each incident's opening, escalation and recovery
    /// (and each rollback watch makes) is sent to every channel.
    #[serde(default)]
    pub alerts: Vec<AlertChannel>,
    /// Deadline of one delivery to a channel.
    #[serde(default = "defaults::alert_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub alert_timeout: Duration,
    /// Deliveries tried per alert and channel before it is given up
    /// (logged); the waits between them double from 1s.
    #[serde(default = "defaults::alert_attempts")]
    pub alert_attempts: u32,
    /// Where watch serves its metrics (`GET /metrics`, Prometheus text),
    /// its status page (`GET /`) and its own health check
    /// (`GET /healthz`), as `address:port`; `--listen` overrides it.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Allow `listen` on an address other than loopback. The page and the
    /// metrics name hosts, containers and incidents, with no login: only
    /// expose them on a network you trust.
    #[serde(default)]
    pub listen_public: bool,
    /// Run `ballast rollback` (on the hosts of the role, under the deploy
    /// lock) when a role's container crash-loops or stays unhealthy on
    /// every host within `rollback_window` of its deploy; the incident
    /// says what was done. Off: the alert only suggests it.
    #[serde(default)]
    pub auto_rollback: bool,
    /// How soon after a deploy a crash loop is blamed on the new release.
    #[serde(default = "defaults::rollback_window", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub rollback_window: Duration,
    /// Used share of the filesystem holding Docker's data root at which a
    /// host gets a `disk_full` incident, in percent.
    #[serde(default = "defaults::disk_full_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub disk_full_percent: u8,
    /// Time between two runs of doctor's rules on fresh facts from every
    /// host; a rule that blocks opens an incident.
    #[serde(default = "defaults::doctor_every", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub doctor_every: Duration,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            interval: defaults::interval(),
            deadline: defaults::deadline(),
            failures: defaults::failures(),
            recover_after: defaults::recover_after(),
            max_share: defaults::max_share(),
            backoff: WatchBackoff::default(),
            breaker: WatchBreaker::default(),
            escalate_after: defaults::escalate_after(),
            alerts: Vec::new(),
            alert_timeout: defaults::alert_timeout(),
            alert_attempts: defaults::alert_attempts(),
            listen: defaults::listen(),
            listen_public: false,
            auto_rollback: false,
            rollback_window: defaults::rollback_window(),
            disk_full_percent: defaults::disk_full_percent(),
            doctor_every: defaults::doctor_every(),
        }
    }
}

impl Watch {
    /// `max_share` as a percentage (validated when the config loads).
    pub fn max_share_percent(&self) -> u32 {
        parse_percent(&self.max_share).unwrap_or(34)
    }

    /// The address to serve on: `flag` (`--listen`) if given, else
    /// `listen`; refused unless loopback or `listen_public` allows it.
    pub fn listen_addr(&self, flag: Option<&str>) -> crate::Result<SocketAddr> {
        let (text, from) = match flag {
            Some(f) => (f, "--listen"),
            None => (self.listen.as_str(), "watch.listen"),
        };
        check_listen(text, self.listen_public).map_err(|(cause, hint)| {
            crate::Error::input("read the listen address", format!("{from}: {cause}")).hint(hint)
        })
    }
}

/// `text` as an address to serve on: a cause and a hint when it is not
/// one, or is public while `public` is not allowed.
fn check_listen(text: &str, public: bool) -> Result<SocketAddr, (String, &'static str)> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        (
            format!("`{}` is not an address and port", shorten(text)),
            "write an IP address and a port such as `127.0.0.1:9465`",
        )
    })?;
    if !public && !addr.ip().is_loopback() {
        return Err((
            format!("`{addr}` is not a loopback address"),
            "the page and metrics have no login: serve them on 127.0.0.1, or set `watch.listen_public: true` to expose them",
        ));
    }
    Ok(addr)
}

/// Capped exponential backoff between restarts of one container.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchBackoff {
    /// Wait before the second restart; each further restart waits twice
    /// the one before.
    #[serde(default = "defaults::backoff_initial", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub initial: Duration,
    /// The longest wait between two restarts.
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub max: Duration,
    /// A container healthy this long starts again from `initial`.
    #[serde(default = "defaults::backoff_reset", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub reset_after: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            initial: defaults::backoff_initial(),
            max: defaults::backoff_max(),
            reset_after: defaults::backoff_reset(),
        }
    }
}

/// The circuit breaker: this many restarts (watch's and Docker's own)
/// within `window` and watch stops restarting the container; its incident
/// stays open and is escalated at once.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchBreaker {
    /// Restarts within `window` that open the breaker.
    #[serde(default = "defaults::breaker_restarts")]
    pub restarts: u32,
    /// The window restarts are counted in.
    #[serde(default = "defaults::breaker_window", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub window: Duration,
}

impl Default for WatchBreaker {
    fn default() -> Self {
        WatchBreaker {
            restarts: defaults::breaker_restarts(),
            window: defaults::breaker_window(),
        }
    }
}

/// One place alerts go.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertChannel {
    /// What kind of channel this is.
    #[serde(rename = "type")]
    pub kind: AlertKind,
    /// The URL alerts are POSTed to (`webhook` and `slack`), `http://` or
    /// `https://`.
    #[serde(default)]
    pub url: Option<String>,
    /// The program and its arguments (`command`), as a list: run on this
    /// machine with the alert's JSON on stdin, no shell, e.g. `[/usr/local/bin/page, --team, ops]`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// The kinds of alert channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// POST the alert as JSON (the incident, and the report when escalated
    /// or rolled back).
    Webhook,
    /// POST a Slack-compatible `{"text": ...}` payload (an incoming webhook).
    Slack,
    /// Run `command` with the alert's JSON on stdin.
    Command,
}

impl AlertKind {
    pub fn word(self) -> &'static str {
        match self {
            AlertKind::Webhook => "webhook",
            AlertKind::Slack => "slack",
            AlertKind::Command => "command",
        }
    }
}

/// Defaults, named so serde and the reference agree.
pub mod defaults {
    use std::time::Duration;

    pub fn interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn deadline() -> Duration {
        Duration::from_secs(10)
    }
    pub fn failures() -> u32 {
        2
    }
    pub fn recover_after() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_share() -> String {
        "34%".into()
    }
    pub fn backoff_initial() -> Duration {
        Duration::from_secs(10)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(300)
    }
    pub fn backoff_reset() -> Duration {
        Duration::from_secs(600)
    }
    pub fn breaker_restarts() -> u32 {
        5
    }
    pub fn breaker_window() -> Duration {
        Duration::from_secs(600)
    }
    pub fn escalate_after() -> Duration {
        Duration::from_secs(300)
    }
    pub fn alert_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn alert_attempts() -> u32 {
        5
    }
    pub fn listen() -> String {
        "127.0.0.1:9465".into()
    }
    pub fn rollback_window() -> Duration {
        Duration::from_secs(10 * 60)
    }
    pub fn disk_full_percent() -> u8 {
        90
    }
    pub fn doctor_every() -> Duration {
        Duration::from_secs(10 * 60)
    }
}

impl Checker<'_> {
    /// The share, the channels' settings, and durations that only make
    /// sense in order.
    pub(super) fn watch(&mut self, config: &Config) {
        let w = &config.watch;
        if !matches!(parse_percent(&w.max_share), Some(1..=100)) {
            self.error(
                &["watch", "max_share"],
                format!(
                    "watch.max_share: `{}` is not a share from 1% to 100%",
                    shorten(&w.max_share)
                ),
            )
            .set_hint("write a percentage of a role's hosts such as `\"34%\"`: at least one host is always allowed");
        }
        if w.backoff.initial > w.backoff.max {
            self.error(
                &["watch", "backoff", "initial"],
                "watch.backoff.initial is longer than watch.backoff.max".into(),
            )
            .set_hint(
                "the first wait cannot be longer than the longest: lower `initial` or raise `max`",
            );
        }
        if w.deadline > w.interval.saturating_mul(10) {
            self.error(
                &["watch", "deadline"],
                "watch.deadline is more than 10 times watch.interval".into(),
            )
            .set_hint("a host that has not answered within 10 looks is down: shorten the deadline or lengthen the interval");
        }
        if w.doctor_every < w.interval {
            self.error(
                &["watch", "doctor_every"],
                "watch.doctor_every is shorter than watch.interval".into(),
            )
            .set_hint(
                "doctor's rules run at most once a look: lengthen doctor_every (default 10m)",
            );
        }
        if let Err((cause, hint)) = check_listen(&w.listen, w.listen_public) {
            self.error(&["watch", "listen"], format!("watch.listen: {cause}"))
                .set_hint(hint);
        }
        for (i, alert) in w.alerts.iter().enumerate() {
            let idx = i.to_string();
            let at = |key: &'static str| ["watch", "alerts", idx.as_str(), key];
            match alert.kind {
                AlertKind::Webhook | AlertKind::Slack => {
                    let ok = alert.url.as_deref().is_some_and(|u| {
                        (u.starts_with("http://") || u.starts_with("https://"))
                            && u.parse::<hyper::Uri>().is_ok_and(|p| p.host().is_some())
                    });
                    if !ok {
                        let kind = alert.kind.word();
                        self.error(
                            &at("url"),
                            format!("watch.alerts[{i}]: a `{kind}` channel needs `url`, an http:// or https:// URL"),
                        )
                        .set_hint("write `url: https://hooks.example.com/...`");
                    }
                }
                AlertKind::Command => {
                    if alert
                        .command
                        .as_ref()
                        .is_none_or(|c| c.is_empty() || c[0].is_empty())
                    {
                        self.error(
                            &at("command"),
                            format!("watch.alerts[{i}]: a `command` channel needs `command`, a program and its arguments"),
                        )
                        .set_hint("write `command: [/usr/local/bin/page, --team, ops]`: it gets the alert's JSON on stdin");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n";

    #[test]
    fn defaults_are_the_documented_policy() {
        let w = parse_yaml(HEAD).unwrap().config.watch;
        assert_eq!(w, Watch::default());
        assert_eq!(w.interval, Duration::from_secs(5));
        assert_eq!(w.backoff.initial, Duration::from_secs(10));
        assert_eq!(w.backoff.max, Duration::from_secs(300));
        assert_eq!(w.backoff.reset_after, Duration::from_secs(600));
        assert_eq!(
            (w.breaker.restarts, w.breaker.window),
            (5, Duration::from_secs(600))
        );
        assert_eq!(w.escalate_after, Duration::from_secs(300));
        assert_eq!(w.max_share_percent(), 34);
        assert_eq!(w.listen_addr(None).unwrap().to_string(), "127.0.0.1:9465");
    }

    #[test]
    fn a_public_listen_address_needs_consent() {
        let yaml = format!("{HEAD}watch:\n  listen: 0.0.0.0:9465\n");
        assert_error(
            &yaml,
            7,
            11,
            "watch.listen: `0.0.0.0:9465` is not a loopback address",
            "listen_public: true",
        );
        let yaml = format!("{HEAD}watch:\n  listen: localhost\n");
        assert_error(
            &yaml,
            7,
            11,
            "`localhost` is not an address and port",
            "127.0.0.1:9465",
        );
        let yaml = format!("{HEAD}watch:\n  listen: 0.0.0.0:9465\n  listen_public: true\n");
        let w = parse_yaml(&yaml).unwrap().config.watch;
        assert_eq!(w.listen_addr(None).unwrap().to_string(), "0.0.0.0:9465");
        let w = Watch::default();
        let e = w.listen_addr(Some("10.0.0.1:80")).unwrap_err();
        assert_eq!(e.cause, "--listen: `10.0.0.1:80` is not a loopback address");
        assert_eq!(
            w.listen_addr(Some("[::1]:0")).unwrap().to_string(),
            "[::1]:0"
        );
    }

    #[test]
    fn channels_are_read() {
        let yaml = format!(
            "{HEAD}watch:\n  interval: 1s\n  alerts:\n    - {{type: webhook, url: \"http://127.0.0.1:9/x\"}}\n    - {{type: slack, url: \"https://hooks.slack.com/services/T/B/X\"}}\n    - {{type: command, command: [/bin/page, --now]}}\n"
        );
        let w = parse_yaml(&yaml).unwrap().config.watch;
        assert_eq!(w.interval, Duration::from_secs(1));
        let kinds: Vec<AlertKind> = w.alerts.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [AlertKind::Webhook, AlertKind::Slack, AlertKind::Command]
        );
        assert_eq!(
            w.alerts[2].command.as_deref().unwrap(),
            ["/bin/page", "--now"]
        );
    }

    #[test]
    fn bad_settings_are_refused_where_written() {
        let yaml = format!("{HEAD}watch:\n  max_share: half\n");
        assert_error(
            &yaml,
            7,
            14,
            "watch.max_share: `half` is not a share",
            "\"34%\"",
        );
        let yaml = format!("{HEAD}watch:\n  alerts:\n    - {{type: webhook}}\n");
        assert_error(
            &yaml,
            8,
            7,
            "a `webhook` channel needs `url`",
            "url: https://",
        );
        let yaml = format!("{HEAD}watch:\n  alerts:\n    - {{type: command, command: []}}\n");
        assert_error(
            &yaml,
            8,
            32,
            "a `command` channel needs `command`",
            "JSON on stdin",
        );
        let yaml = format!("{HEAD}watch:\n  backoff: {{initial: 10m, max: 1m}}\n");
        assert_error(
            &yaml,
            7,
            22,
            "initial is longer than watch.backoff.max",
            "lower `initial`",
        );
    }
}
