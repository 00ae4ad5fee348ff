//! Limits of every duration and count in `ballast.yml`: one table,
//! [`LIMITS`], that the shape check enforces at the offending value and
//! the reference cites; reading durations without humantime's overflow
//! panic; and the one limit between two keys (a health check must fit in
//! the health wait).

use std::time::Duration;

use serde_json::Value;

use super::error::{ConfigError, Source};
use super::node::{shorten, Located, Node};
use super::schema::Config;
use super::validate::Checker;

/// The allowed range of one key, and why it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The key as the reference writes it: `roles.<name>.stop_timeout`.
    pub key: &'static str,
    pub range: LimitRange,
    /// Why nothing shorter or smaller makes sense (empty when the least
    /// allowed is 0).
    pub below: &'static str,
    /// Why nothing longer or larger makes sense.
    pub above: &'static str,
}

/// The least and most a key accepts, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRange {
    Duration { min: Duration, max: Duration },
    Count { min: u64, max: u64 },
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every duration and count of `ballast.yml`, in the order of the file.
pub const LIMITS: &[Limit] = &[
    Limit {
        key: "ssh.connect_timeout",
        range: LimitRange::Duration { min: secs(1), max: secs(600) },
        below: "OpenSSH counts it in whole seconds, and 0 would mean no deadline at all",
        above: "a host that has not answered within 10 minutes is down, and the whole command waits for it",
    },
    Limit {
        key: "ssh.concurrency",
        range: LimitRange::Count { min: 1, max: 1000 },
        below: "0 hosts at a time would never get anything done",
        above: "every host worked on at once is an SSH connection opened from this machine",
    },
    Limit {
        key: "ssh.persist",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(3600) },
        below: "",
        above: "a kept connection is reused without checking the host key again: an hour is the most",
    },
    Limit {
        key: "roles.<name>.healthcheck.interval",
        range: LimitRange::Duration { min: Duration::from_millis(100), max: secs(300) },
        below: "checking more than 10 times a second only loads the app",
        above: "a container that is ready would wait that long before it takes over",
    },
    Limit {
        key: "roles.<name>.healthcheck.timeout",
        range: LimitRange::Duration { min: Duration::from_millis(100), max: secs(300) },
        below: "shorter fails the check on any network hiccup",
        above: "a check unanswered for 5 minutes has failed; it must also fit in `deploy.health_timeout`",
    },
    Limit {
        key: "roles.<name>.stop_timeout",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(3600) },
        below: "",
        above: "a deploy waits this long for each old container to stop",
    },
    Limit {
        key: "roles.<name>.proxy.drain_timeout",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(3600) },
        below: "",
        above: "a deploy waits this long at each switch for the old container's requests",
    },
    Limit {
        key: "roles.<name>.proxy.tls.acme.renew_before",
        range: LimitRange::Duration { min: secs(3600), max: secs(2 * 31_557_600) },
        below: "a certificate renewed less than an hour before it expires leaves no time to retry a failed renewal",
        above: "public CAs issue certificates for at most 398 days: longer would renew at every deploy",
    },
    Limit {
        key: "accessories.<name>.healthcheck.interval",
        range: LimitRange::Duration { min: Duration::from_millis(100), max: secs(300) },
        below: "checking more than 10 times a second only loads the accessory",
        above: "a booted accessory would wait that long before it counts as healthy",
    },
    Limit {
        key: "accessories.<name>.healthcheck.timeout",
        range: LimitRange::Duration { min: Duration::from_millis(100), max: secs(300) },
        below: "shorter fails the check whenever the accessory is busy for a moment",
        above: "a check unanswered for 5 minutes has failed",
    },
    Limit {
        key: "accessories.<name>.healthcheck.retries",
        range: LimitRange::Count { min: 1, max: 100 },
        below: "0 failed checks cannot make anything unhealthy",
        above: "an accessory failing 100 checks in a row is unhealthy",
    },
    Limit {
        key: "accessories.<name>.health_timeout",
        range: LimitRange::Duration { min: crate::spec::SETTLE, max: secs(3600) },
        below: "an accessory without a health check counts as healthy only once it has run 5s",
        above: "a boot or upgrade holds the service's lock while it waits",
    },
    Limit {
        key: "accessories.<name>.stop_timeout",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(3600) },
        below: "",
        above: "a reboot or upgrade waits this long for the old container to stop",
    },
    Limit {
        key: "deploy.batch",
        range: LimitRange::Count { min: 1, max: 10_000 },
        below: "a batch of 0 hosts would never deploy; a share of each role's hosts such as `\"25%\"` works too",
        above: "to switch every host of a role at once, write `\"100%\"`",
    },
    Limit {
        key: "deploy.health_timeout",
        range: LimitRange::Duration { min: crate::spec::SETTLE, max: secs(3600) },
        below: "a role without a port or health check counts as healthy only once it has run 5s",
        above: "a deploy holds the service's lock while it waits",
    },
    Limit {
        key: "deploy.retain",
        range: LimitRange::Count { min: 1, max: 100 },
        below: "0 would keep no release, not even the running one (2 or more makes rollback possible)",
        above: "each kept release is a stopped container and its image on the host's disk",
    },
    Limit {
        key: "hooks.timeout",
        range: LimitRange::Duration { min: secs(1), max: secs(3600) },
        below: "a hook gets at least a second to start",
        above: "the deploy waits for its hooks, holding the lock for `pre-deploy`",
    },
    Limit {
        key: "watch.interval",
        range: LimitRange::Duration { min: Duration::from_millis(200), max: secs(3600) },
        below: "looking at every host more than 5 times a second only loads them",
        above: "a crash would wait that long to be noticed",
    },
    Limit {
        key: "watch.deadline",
        range: LimitRange::Duration { min: Duration::from_millis(500), max: secs(600) },
        below: "shorter counts a host as down on any network hiccup",
        above: "a host that has not answered within 10 minutes is down",
    },
    Limit {
        key: "watch.failures",
        range: LimitRange::Count { min: 1, max: 100 },
        below: "0 failures cannot make anything down",
        above: "a host or container failing 100 looks in a row is down",
    },
    Limit {
        key: "watch.recover_after",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(3600) },
        below: "",
        above: "a recovered problem would wait that long for its recovery notice",
    },
    Limit {
        key: "watch.backoff.initial",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(3600) },
        below: "",
        above: "a container that fell over twice would stay down that long",
    },
    Limit {
        key: "watch.backoff.max",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(24 * 3600) },
        below: "",
        above: "a container would stay down a whole day between restarts",
    },
    Limit {
        key: "watch.backoff.reset_after",
        range: LimitRange::Duration { min: secs(1), max: secs(24 * 3600) },
        below: "a container must be healthy for a moment before its backoff starts over",
        above: "a day of health is proof enough",
    },
    Limit {
        key: "watch.breaker.restarts",
        range: LimitRange::Count { min: 1, max: 1000 },
        below: "0 restarts would never restart anything",
        above: "1000 restarts in a window is a restart storm",
    },
    Limit {
        key: "watch.breaker.window",
        range: LimitRange::Duration { min: secs(1), max: secs(24 * 3600) },
        below: "restarts must be counted over some time",
        above: "restarts a day apart are not a loop",
    },
    Limit {
        key: "watch.escalate_after",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(7 * 24 * 3600) },
        below: "",
        above: "an outage open a week has been escalated too late",
    },
    Limit {
        key: "watch.alert_timeout",
        range: LimitRange::Duration { min: Duration::from_millis(100), max: secs(300) },
        below: "shorter fails deliveries on any network hiccup",
        above: "a channel that has not answered within 5 minutes has failed",
    },
    Limit {
        key: "watch.alert_attempts",
        range: LimitRange::Count { min: 1, max: 20 },
        below: "0 attempts would send nothing",
        above: "the waits double: 20 attempts already span days",
    },
    Limit {
        key: "watch.rollback_window",
        range: LimitRange::Duration { min: Duration::ZERO, max: secs(24 * 3600) },
        below: "",
        above: "a crash loop a day after a deploy is not the deploy's",
    },
    Limit {
        key: "watch.disk_full_percent",
        range: LimitRange::Count { min: 1, max: 100 },
        below: "a share of a disk is at least 1%",
        above: "a disk is never more than 100% full",
    },
    Limit {
        key: "watch.doctor_every",
        range: LimitRange::Duration { min: secs(10), max: secs(24 * 3600) },
        below: "doctor's facts take a few commands per host: not more often than every 10 seconds",
        above: "a host that turned unsafe would wait a day to be noticed",
    },
];

/// The limit of the key at `path` (`roles.web.stop_timeout`), if it has one.
pub(crate) fn limit_for(path: &str) -> Option<&'static Limit> {
    LIMITS.iter().find(|l| matches(l.key, path))
}

/// Whether `path` is an instance of `pattern`, where `<name>` stands for
/// any non-empty name (dots included: names are checked elsewhere).
fn matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once("<name>") {
        None => pattern == path,
        Some((before, after)) => {
            path.len() > before.len() + after.len()
                && path.starts_with(before)
                && path.ends_with(after)
        }
    }
}

impl LimitRange {
    /// The least and the most, as the file would write them.
    pub fn ends(&self) -> (String, String) {
        match self {
            LimitRange::Duration { min, max } => (show(*min), show(*max)),
            LimitRange::Count { min, max } => (min.to_string(), max.to_string()),
        }
    }

    /// What to write, in words: "a duration from `5s` to `1h`".
    fn phrase(&self) -> String {
        let (min, max) = self.ends();
        match self {
            LimitRange::Duration { .. } => format!("a duration from `{min}` to `{max}`"),
            LimitRange::Count { .. } => format!("a whole number from {min} to {max}"),
        }
    }
}

/// A duration as `ballast.yml` would write it: `1h`, `100ms`, `0s`.
fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Why a duration could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadDuration {
    /// Not a duration at all, or finer than a nanosecond.
    Malformed,
    /// Longer than any limit (centuries or more).
    TooLong,
}

/// Longer than this is refused before humantime reads it. Far above every
/// limit, far below where humantime's arithmetic overflows.
const CEILING: Duration = secs(100 * 365 * 24 * 3600);

/// Reads a duration as humantime (and so serde) does, without its panic:
/// humantime 2.4 panics in `Duration::new` when the parts of a duration
/// such as `18446744073709551615s 500ms 500ms` add up past `u64::MAX`
/// seconds, so such values are refused before it sees them.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    if upper_bound_ns(text) > CEILING.as_nanos() {
        return Err(BadDuration::TooLong);
    }
    humantime::parse_duration(text).map_err(|_| BadDuration::Malformed)
}

/// At least what humantime adds up, in nanoseconds, while reading `text`
/// (valid or not). Follows its grammar: a number (digits, spaces between
/// them ignored), an optional fraction, a unit; unknown units add nothing
/// because humantime stops at them.
fn upper_bound_ns(text: &str) -> u128 {
    let mut total: u128 = 0;
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| !c.is_ascii_digit()).is_some() {}
        if chars.peek().is_none() {
            return total;
        }
        let mut whole: u128 = 0;
        while let Some(c) = chars.next_if(|c| c.is_ascii_digit() || c.is_whitespace()) {
            if let Some(d) = c.to_digit(10) {
                whole = whole.saturating_mul(10).saturating_add(d.into());
            }
        }
        // The fraction as `numerator / denominator`, or `None` when it has
        // too many digits to count exactly (it then adds at most one unit).
        let mut fraction = Some((0u128, 1u128));
        if chars.next_if_eq(&'.').is_some() {
            while let Some(c) = chars.next_if(|c| c.is_ascii_digit() || c.is_whitespace()) {
                if let (Some(d), Some((n, den))) = (c.to_digit(10), fraction) {
                    fraction = (den < 10u128.pow(18)).then(|| (n * 10 + u128::from(d), den * 10));
                }
            }
        }
        let mut unit = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphabetic() || *c == 'µ') {
            unit.push(c);
        }
        let per = unit_ns(&unit);
        let part = match fraction {
            Some((n, den)) => (n * per).div_ceil(den),
            None => per,
        };
        total = total
            .saturating_add(whole.saturating_mul(per))
            .saturating_add(part);
    }
}

/// Nanoseconds in one of humantime's units; 0 for a unit it refuses.
fn unit_ns(unit: &str) -> u128 {
    const S: u128 = 1_000_000_000;
    match unit {
        "nanos" | "nsec" | "ns" => 1,
        "usec" | "us" | "µs" => 1_000,
        "millis" | "msec" | "ms" => 1_000_000,
        "seconds" | "second" | "secs" | "sec" | "s" => S,
        "minutes" | "minute" | "min" | "mins" | "m" => 60 * S,
        "hours" | "hour" | "hr" | "hrs" | "h" => 3_600 * S,
        "days" | "day" | "d" => 86_400 * S,
        "weeks" | "week" | "wk" | "wks" | "w" => 604_800 * S,
        "months" | "month" | "M" => 2_630_016 * S,
        "years" | "year" | "yr" | "yrs" | "y" => 31_557_600 * S,
        _ => 0,
    }
}

/// The shape check's look at a key with a limit: the error if the value
/// at `node` is outside it, `None` if it fits or is not a value the limit
/// judges (a wrong type, a malformed duration: the shape check reports
/// those). `schema` is the one being walked at `node`: a quoted number is
/// a count only where serde reads it as one (not under a choice such as
/// `deploy.batch`, where it is a string).
pub(crate) fn violation(
    src: &Source,
    schema: &Value,
    node: &Located,
    path: &str,
) -> Option<ConfigError> {
    let limit = limit_for(path)?;
    let mut text = node.value.scalar_text()?;
    let above = match limit.range {
        LimitRange::Count { min, max } => {
            let value = match &node.value {
                Node::Int(i) => *i,
                // Only whole numbers out of range: others are wrong types.
                Node::Float(f) if f.fract() == 0.0 => {
                    text = src.written(node).to_string();
                    *f as i128
                }
                Node::Str(t) if reads_strings_as_numbers(schema) => t.trim().parse().ok()?,
                _ => return None,
            };
            if value < i128::from(min) {
                false
            } else if value > i128::from(max) {
                true
            } else {
                return None;
            }
        }
        LimitRange::Duration { min, max } => match parse_duration(&text) {
            Ok(d) if d < min => false,
            Ok(d) if d > max => true,
            Err(BadDuration::TooLong) => true,
            Ok(_) | Err(BadDuration::Malformed) => return None,
        },
    };
    Some(out_of_limit(src, node, path, limit, &text, above))
}

fn reads_strings_as_numbers(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    }
}

fn out_of_limit(
    src: &Source,
    node: &Located,
    path: &str,
    limit: &Limit,
    found: &str,
    above: bool,
) -> ConfigError {
    let found = shorten(found);
    let (min, max) = limit.range.ends();
    let duration = matches!(limit.range, LimitRange::Duration { .. });
    let (message, label) = match (duration, above) {
        (true, true) => (
            format!("`{found}` is longer than {max}, the longest allowed"),
            format!("longer than {max}"),
        ),
        (true, false) => (
            format!("`{found}` is shorter than {min}, the shortest allowed"),
            format!("shorter than {min}"),
        ),
        (false, true) => (
            format!("{found} is more than {max}, the most allowed"),
            format!("more than {max}"),
        ),
        (false, false) => (
            format!("{found} is less than {min}, the least allowed"),
            format!("less than {min}"),
        ),
    };
    let why = if above { limit.above } else { limit.below };
    src.error(node, format!("{path}: {message}"))
        .with_label(label)
        .with_hint(format!("write {}: {why}", limit.range.phrase()))
}

/// A duration past [`CEILING`] where no limit is known (every duration
/// key has one; this keeps a missing entry from reaching humantime).
pub(crate) fn too_long(src: &Source, node: &Located, path: &str) -> ConfigError {
    let found = node.value.scalar_text().unwrap_or_default();
    src.error(
        node,
        format!("{path}: `{}` is too long for a duration", shorten(&found)),
    )
    .with_label("too long")
    .with_hint("write a number of seconds, minutes or hours, e.g. `30s`")
}

impl Checker<'_> {
    /// One health check must be able to finish within the time a new
    /// container gets to become healthy. (The default check timeout, 5s,
    /// always fits: `deploy.health_timeout` is at least that.)
    pub(super) fn health_deadlines(&mut self, config: &Config) {
        let wait = config.deploy.health_timeout;
        for (name, role) in &config.roles {
            let Some(check) = &role.healthcheck else {
                continue;
            };
            if check.timeout > wait {
                let (timeout, wait) = (show(check.timeout), show(wait));
                self.error(
                    &["roles", name, "healthcheck", "timeout"],
                    format!("roles.{name}.healthcheck.timeout: {timeout} is longer than deploy.health_timeout ({wait})"),
                )
                .set_label("longer than deploy.health_timeout")
                .set_hint(format!("one check must fit in the time a new container gets to become healthy: write `{wait}` or less here, or raise deploy.health_timeout"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference::sections;
    use super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n";

    #[test]
    fn an_absurd_health_timeout_is_refused_where_it_is_written() {
        // Loaded before, then overflowed `Instant + deadline` mid-deploy.
        let yaml = format!("{HEAD}deploy: {{health_timeout: 584542046090y}}\n");
        assert_error(
            &yaml,
            6,
            26,
            "deploy.health_timeout: `584542046090y` is longer than 1h, the longest allowed",
            "write a duration from `5s` to `1h`: a deploy holds the service's lock",
        );
        let yaml = format!("{HEAD}deploy:\n  health_timeout: 2h\n");
        assert_error(&yaml, 7, 19, "`2h` is longer than 1h", "`5s` to `1h`");
        let yaml = format!("{HEAD}deploy:\n  health_timeout: 2s\n");
        assert_error(
            &yaml,
            7,
            19,
            "deploy.health_timeout: `2s` is shorter than 5s, the shortest allowed",
            "counts as healthy only once it has run 5s",
        );
    }

    #[test]
    fn durations_past_what_humantime_can_add_fail_cleanly() {
        // humantime 2.4 panics on this one (a carry past u64::MAX seconds).
        let yaml = format!("{HEAD}    stop_timeout: 18446744073709551615s 500ms 500ms\n");
        assert_error(
            &yaml,
            6,
            19,
            "roles.web.stop_timeout: `18446744073709551615s 500ms 500ms` is longer than 1h",
            "write a duration from `0s` to `1h`",
        );
        // humantime's own overflow error, and a number past u64.
        let yaml = format!("{HEAD}deploy: {{health_timeout: 584542046091y}}\n");
        assert_error(&yaml, 6, 26, "is longer than 1h", "`5s` to `1h`");
        let yaml = format!("{HEAD}ssh: {{connect_timeout: 99999999999999999999999s}}\n");
        assert_error(
            &yaml,
            6,
            24,
            "ssh.connect_timeout: `99999999999999999999999s` is longer than 10m",
            "`1s` to `10m`",
        );
        // Spaces inside a number join its digits, as humantime reads it.
        assert_eq!(
            parse_duration("18446744 073709551615s 1s"),
            Err(BadDuration::TooLong)
        );
        // Finer than a nanosecond is malformed, not long.
        let yaml = format!("{HEAD}    stop_timeout: 0.5ns\n");
        assert_error(
            &yaml,
            6,
            19,
            "roles.web.stop_timeout: expected a duration",
            "`ms`, `s`, `m` or `h`",
        );
    }

    #[test]
    fn the_upper_bound_never_undercounts() {
        for text in [
            "30s",
            "1h30m",
            "1 000 ms",
            "1.5h",
            "0.25s 2m",
            "2 hours 1 min",
            "3.000000000000000000000001s",
            "584542046090y",
        ] {
            let bound = upper_bound_ns(text);
            if let Ok(d) = humantime::parse_duration(text) {
                assert!(bound >= d.as_nanos(), "{text}: {bound} < {d:?}");
            }
        }
        assert_eq!(upper_bound_ns("1.5h"), 5_400_000_000_000);
        assert_eq!(upper_bound_ns("7 parsecs"), 0);
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration("5 parsecs"), Err(BadDuration::Malformed));
    }

    #[test]
    fn health_check_durations_have_floors_and_ceilings() {
        let yaml = format!("{HEAD}    healthcheck: {{interval: 0s}}\n");
        assert_error(
            &yaml,
            6,
            29,
            "roles.web.healthcheck.interval: `0s` is shorter than 100ms, the shortest allowed",
            "write a duration from `100ms` to `5m`: checking more than 10 times a second",
        );
        let yaml = format!("{HEAD}    healthcheck: {{timeout: 10m}}\n");
        assert_error(
            &yaml,
            6,
            28,
            "roles.web.healthcheck.timeout: `10m` is longer than 5m",
            "`100ms` to `5m`",
        );
        let yaml = format!("{HEAD}    port: 80\n    proxy: {{drain_timeout: 3h}}\n");
        assert_error(
            &yaml,
            7,
            28,
            "roles.web.proxy.drain_timeout: `3h` is longer than 1h",
            "waits this long at each switch",
        );
        let yaml = format!("{HEAD}ssh: {{connect_timeout: 500ms}}\n");
        assert_error(
            &yaml,
            6,
            24,
            "ssh.connect_timeout: `500ms` is shorter than 1s",
            "OpenSSH counts it in whole seconds",
        );
        let ok = format!("{HEAD}    stop_timeout: 0s\n    healthcheck: {{interval: 100ms, timeout: 5m}}\ndeploy: {{health_timeout: 1h}}\n");
        assert!(parse_yaml(&ok).is_ok());
    }

    #[test]
    fn counts_have_floors_and_ceilings() {
        let yaml = format!("{HEAD}ssh: {{concurrency: 0}}\n");
        assert_error(
            &yaml,
            6,
            20,
            "ssh.concurrency: 0 is less than 1, the least allowed",
            "write a whole number from 1 to 1000: 0 hosts at a time",
        );
        let yaml = format!("{HEAD}ssh: {{concurrency: 5000}}\n");
        assert_error(
            &yaml,
            6,
            20,
            "ssh.concurrency: 5000 is more than 1000, the most allowed",
            "from 1 to 1000",
        );
        let yaml = format!("{HEAD}deploy:\n  retain: 1000\n");
        assert_error(
            &yaml,
            7,
            11,
            "deploy.retain: 1000 is more than 100, the most allowed",
            "write a whole number from 1 to 100: each kept release",
        );
        let yaml = format!("{HEAD}deploy:\n  retain: \"-1\"\n");
        assert_error(&yaml, 7, 11, "-1 is less than 1", "from 1 to 100");
        let yaml = format!("{HEAD}deploy: {{batch: 20000}}\n");
        assert_error(
            &yaml,
            6,
            17,
            "deploy.batch: 20000 is more than 10000",
            "write `\"100%\"`",
        );
        // Past what serde could read: the limit, not a type error.
        let yaml = format!("{HEAD}ssh: {{concurrency: 99999999999999999999999}}\n");
        assert_error(
            &yaml,
            6,
            20,
            "ssh.concurrency: 99999999999999999999999 is more than 1000",
            "from 1 to 1000",
        );
        let yaml = format!("{HEAD}deploy: {{batch: -3}}\n");
        assert_error(&yaml, 6, 17, "-3 is less than 1", "a batch of 0 hosts");
        let ok = format!(
            "{HEAD}ssh: {{concurrency: 1000}}\ndeploy: {{batch: 10000, retain: \"100\"}}\n"
        );
        assert!(parse_yaml(&ok).is_ok());
        // Quoted, a batch is a percentage: `deploy.batch` says so, not the limit.
        let yaml = format!("{HEAD}deploy: {{batch: \"20000\"}}\n");
        assert_error(
            &yaml,
            6,
            17,
            "neither a number of hosts nor a percentage",
            "`N%`",
        );
    }

    #[test]
    fn a_health_check_must_fit_in_the_health_wait() {
        let yaml =
            format!("{HEAD}    healthcheck: {{timeout: 2m}}\ndeploy: {{health_timeout: 1m}}\n");
        assert_error(
            &yaml,
            6,
            28,
            "roles.web.healthcheck.timeout: 2m is longer than deploy.health_timeout (1m)",
            "write `1m` or less here, or raise deploy.health_timeout",
        );
        let ok =
            format!("{HEAD}    healthcheck: {{timeout: 1m}}\ndeploy: {{health_timeout: 1m}}\n");
        assert!(parse_yaml(&ok).is_ok());
    }

    #[test]
    fn every_duration_and_count_has_a_limit_and_every_limit_a_key() {
        let mut keys = Vec::new();
        for section in sections() {
            for key in section.keys {
                let path = match section.path.as_str() {
                    "" => key.name.clone(),
                    p => format!("{p}.{}", key.name),
                };
                // Ports are bounded by their type (1 to 65535).
                let count = key.ty.contains("integer") && !key.name.ends_with("port");
                if key.ty.starts_with("duration") || count {
                    assert!(limit_for(&path).is_some(), "no limit for {path}");
                }
                keys.push(path);
            }
        }
        for limit in LIMITS {
            assert!(
                keys.iter().any(|k| k == limit.key),
                "{} is no key",
                limit.key
            );
            let ordered = match limit.range {
                LimitRange::Duration { min, max } => min < max,
                LimitRange::Count { min, max } => min < max,
            };
            assert!(ordered, "{}", limit.key);
        }
        // The floor of the health wait is the settling time of a role
        // without a health check; the reason names it.
        let wait = limit_for("deploy.health_timeout").unwrap();
        assert!(wait.below.contains(&show(crate::spec::SETTLE)));
        assert!(matches(
            "roles.<name>.stop_timeout",
            "roles.a.b.stop_timeout"
        ));
        assert!(!matches("roles.<name>.stop_timeout", "roles..stop_timeout"));
        assert!(!matches(
            "roles.<name>.stop_timeout",
            "roles.web.proxy.drain_timeout"
        ));
    }
}
