//! The knobs that make hello misbehave on purpose, read from its environment.
//!
//! Tests of ballast need an app that starts slowly, fails its health check
//! (everywhere or on one host), crashes, answers slowly, writes data, leaves
//! orphaned processes or takes its time to stop; each of those is one
//! variable here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How one run of hello behaves. Built from `HELLO_*` environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    /// Port to listen on (`HELLO_PORT`, default 8080).
    pub port: u16,
    /// Wait this long before listening, like an app that boots slowly
    /// (`HELLO_STARTUP_DELAY`).
    pub startup_delay: Duration,
    /// Answer `/up` with 503 forever, like a version that never gets healthy
    /// (`HELLO_FAIL_HEALTH=1`).
    pub fail_health: bool,
    /// Answer `/up` with 503 forever on the host whose `SHARD` variable has
    /// this value, like a version that fails on one host of a role
    /// (`HELLO_FAIL_HEALTH_SHARD=3` with per-host env `SHARD=1,2,3`).
    pub fail_health_shard: Option<String>,
    /// This host's shard, as set per host by the deploy (`SHARD`).
    pub shard: Option<String>,
    /// Answer `/up` with 503 once hello has run this long, while it keeps
    /// running, like an app that wedges (`HELLO_FAIL_HEALTH_AFTER`): a new
    /// process (a restart) is healthy again for as long.
    pub fail_health_after: Option<Duration>,
    /// Exit with status 1 this long after start, like a crashing app
    /// (`HELLO_CRASH_AFTER`).
    pub crash_after: Option<Duration>,
    /// Delay every answer to `/` by this much, like a slow app
    /// (`HELLO_RESPONSE_DELAY`).
    pub response_delay: Duration,
    /// Directory where `/count` appends its counter, to test that data
    /// outlives containers (`HELLO_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// File holding the version baked into the image (`HELLO_VERSION_FILE`,
    /// default `/VERSION`).
    pub version_file: PathBuf,
    /// Leave this many orphaned child processes behind, one every 100 ms
    /// from start, each exiting at once without its parent waiting for it,
    /// like an app whose workers fork (`HELLO_SPAWN_ORPHANS`): whoever is
    /// PID 1 must reap them, or they stay zombies.
    pub spawn_orphans: u32,
    /// After SIGTERM, take this long to finish before exiting, like an app
    /// flushing its work (`HELLO_STOP_DELAY`).
    pub stop_delay: Duration,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            port: 8080,
            startup_delay: Duration::ZERO,
            fail_health: false,
            fail_health_shard: None,
            shard: None,
            fail_health_after: None,
            crash_after: None,
            response_delay: Duration::ZERO,
            data_dir: None,
            version_file: PathBuf::from("/VERSION"),
            spawn_orphans: 0,
            stop_delay: Duration::ZERO,
        }
    }
}

/// A knob whose value could not be read; names the variable and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnobError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl std::fmt::Display for KnobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for KnobError {}

impl Knobs {
    /// Reads the knobs from the process environment.
    pub fn from_env() -> Result<Knobs, KnobError> {
        started();
        Knobs::from_vars(&std::env::vars().collect())
    }

    /// Reads the knobs from a map of variables; unset variables keep defaults.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Knobs, KnobError> {
        let mut knobs = Knobs::default();
        if let Some(v) = vars.get("HELLO_PORT") {
            knobs.port = v.trim().parse().map_err(|_| KnobError {
                variable: "HELLO_PORT",
                value: v.clone(),
                expected: "a port number from 1 to 65535",
            })?;
            if knobs.port == 0 {
                return Err(KnobError {
                    variable: "HELLO_PORT",
                    value: v.clone(),
                    expected: "a port number from 1 to 65535",
                });
            }
        }
        if let Some(v) = vars.get("HELLO_STARTUP_DELAY") {
            knobs.startup_delay = duration("HELLO_STARTUP_DELAY", v)?;
        }
        if let Some(v) = vars.get("HELLO_FAIL_HEALTH") {
            knobs.fail_health = flag("HELLO_FAIL_HEALTH", v)?;
        }
        if let Some(v) = vars.get("HELLO_FAIL_HEALTH_SHARD") {
            knobs.fail_health_shard = shard("HELLO_FAIL_HEALTH_SHARD", v)?;
        }
        if let Some(v) = vars.get("SHARD") {
            knobs.shard = Some(v.trim().to_string()).filter(|s| !s.is_empty());
        }
        if let Some(v) = vars.get("HELLO_FAIL_HEALTH_AFTER") {
            knobs.fail_health_after = Some(duration("HELLO_FAIL_HEALTH_AFTER", v)?);
        }
        if let Some(v) = vars.get("HELLO_CRASH_AFTER") {
            knobs.crash_after = Some(duration("HELLO_CRASH_AFTER", v)?);
        }
        if let Some(v) = vars.get("HELLO_RESPONSE_DELAY") {
            knobs.response_delay = duration("HELLO_RESPONSE_DELAY", v)?;
        }
        if let Some(v) = vars.get("HELLO_DATA_DIR").filter(|v| !v.is_empty()) {
            knobs.data_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = vars.get("HELLO_VERSION_FILE").filter(|v| !v.is_empty()) {
            knobs.version_file = PathBuf::from(v);
        }
        if let Some(v) = vars.get("HELLO_SPAWN_ORPHANS") {
            knobs.spawn_orphans = v.trim().parse().map_err(|_| KnobError {
                variable: "HELLO_SPAWN_ORPHANS",
                value: v.clone(),
                expected: "a number of processes, such as 50",
            })?;
        }
        if let Some(v) = vars.get("HELLO_STOP_DELAY") {
            knobs.stop_delay = duration("HELLO_STOP_DELAY", v)?;
        }
        Ok(knobs)
    }

    /// Why `/up` must fail, or `None` when hello may say it is healthy.
    pub fn health_failure(&self) -> Option<String> {
        self.health_failure_after(started().elapsed())
    }

    /// Why `/up` must fail once hello has run for `up`.
    pub fn health_failure_after(&self, up: Duration) -> Option<String> {
        if self.fail_health {
            return Some("HELLO_FAIL_HEALTH is set".into());
        }
        if let Some(after) = self.fail_health_after.filter(|a| up >= *a) {
            return Some(format!("HELLO_FAIL_HEALTH_AFTER={after:?} has passed"));
        }
        match (&self.fail_health_shard, &self.shard) {
            (Some(failing), Some(mine)) if failing == mine => Some(format!(
                "SHARD={mine} and HELLO_FAIL_HEALTH_SHARD={failing}"
            )),
            _ => None,
        }
    }
}

/// When this process started (first asked: `main` reads the knobs first).
pub fn started() -> std::time::Instant {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(std::time::Instant::now)
}

/// Accepts `humantime` durations ("500ms", "2s", "1m") and bare seconds ("3").
fn duration(variable: &'static str, value: &str) -> Result<Duration, KnobError> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|_| KnobError {
        variable,
        value: value.to_string(),
        expected: "a duration such as 500ms, 2s or 1m",
    })
}

/// One shard value, compared with `SHARD` as written; empty means unset. A
/// list ("2,3") or spaces would never match, so they are refused.
fn shard(variable: &'static str, value: &str) -> Result<Option<String>, KnobError> {
    let v = value.trim();
    if v.contains(|c: char| c == ',' || c.is_whitespace()) {
        return Err(KnobError {
            variable,
            value: value.to_string(),
            expected: "one SHARD value, such as 3",
        });
    }
    Ok(Some(v.to_string()).filter(|v| !v.is_empty()))
}

fn flag(variable: &'static str, value: &str) -> Result<bool, KnobError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(KnobError {
            variable,
            value: value.to_string(),
            expected: "1/true/yes/on or 0/false/no/off",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_variables_give_defaults() {
        assert_eq!(Knobs::from_vars(&vars(&[])).unwrap(), Knobs::default());
    }

    #[test]
    fn every_knob_is_read() {
        let knobs = Knobs::from_vars(&vars(&[
            ("HELLO_PORT", "9000"),
            ("HELLO_STARTUP_DELAY", "1500ms"),
            ("HELLO_FAIL_HEALTH", "true"),
            ("HELLO_FAIL_HEALTH_SHARD", "3"),
            ("SHARD", "1"),
            ("HELLO_FAIL_HEALTH_AFTER", "20s"),
            ("HELLO_CRASH_AFTER", "10"),
            ("HELLO_RESPONSE_DELAY", "3s"),
            ("HELLO_DATA_DIR", "/data"),
            ("HELLO_VERSION_FILE", "/tmp/V"),
            ("HELLO_SPAWN_ORPHANS", "50"),
            ("HELLO_STOP_DELAY", "2s"),
        ]))
        .unwrap();
        assert_eq!(
            knobs,
            Knobs {
                port: 9000,
                startup_delay: Duration::from_millis(1500),
                fail_health: true,
                fail_health_shard: Some("3".into()),
                shard: Some("1".into()),
                fail_health_after: Some(Duration::from_secs(20)),
                crash_after: Some(Duration::from_secs(10)),
                response_delay: Duration::from_secs(3),
                data_dir: Some(PathBuf::from("/data")),
                version_file: PathBuf::from("/tmp/V"),
                spawn_orphans: 50,
                stop_delay: Duration::from_secs(2),
            }
        );
    }

    #[test]
    fn flags_accept_common_spellings() {
        for on in ["1", "yes", "ON", "True"] {
            let k = Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH", on)])).unwrap();
            assert!(k.fail_health, "{on} should mean on");
        }
        for off in ["0", "no", "off", ""] {
            let k = Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH", off)])).unwrap();
            assert!(!k.fail_health, "{off} should mean off");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("HELLO_PORT", "eighty"),
            ("HELLO_PORT", "0"),
            ("HELLO_PORT", "70000"),
            ("HELLO_STARTUP_DELAY", "soon"),
            ("HELLO_CRASH_AFTER", "-1s"),
            ("HELLO_FAIL_HEALTH", "maybe"),
            ("HELLO_FAIL_HEALTH_SHARD", "2,3"),
            ("HELLO_FAIL_HEALTH_SHARD", "2 3"),
            ("HELLO_SPAWN_ORPHANS", "many"),
            ("HELLO_STOP_DELAY", "later"),
        ];
        for (var, value) in cases {
            let err = Knobs::from_vars(&vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var), "{err}");
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn empty_data_dir_means_none() {
        let k = Knobs::from_vars(&vars(&[("HELLO_DATA_DIR", "")])).unwrap();
        assert_eq!(k.data_dir, None);
    }

    #[test]
    fn health_fails_only_on_the_named_shard() {
        let on = |shard: &str| {
            Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH_SHARD", "3"), ("SHARD", shard)]))
                .unwrap()
                .health_failure()
        };
        assert_eq!(on("1"), None);
        assert_eq!(on("2"), None);
        assert_eq!(
            on("3"),
            Some("SHARD=3 and HELLO_FAIL_HEALTH_SHARD=3".to_string())
        );
        let no_shard = Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH_SHARD", "3")])).unwrap();
        assert_eq!(no_shard.health_failure(), None);
        let everywhere = Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH", "1")])).unwrap();
        assert_eq!(
            everywhere.health_failure(),
            Some("HELLO_FAIL_HEALTH is set".to_string())
        );
    }

    #[test]
    fn health_fails_once_the_time_has_passed() {
        let k = Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH_AFTER", "8s")])).unwrap();
        assert_eq!(k.health_failure_after(Duration::from_secs(7)), None);
        assert_eq!(
            k.health_failure_after(Duration::from_secs(8)),
            Some("HELLO_FAIL_HEALTH_AFTER=8s has passed".to_string())
        );
        assert!(Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH_AFTER", "soon")])).is_err());
    }

    #[test]
    fn empty_fail_health_shard_means_none() {
        let k =
            Knobs::from_vars(&vars(&[("HELLO_FAIL_HEALTH_SHARD", " "), ("SHARD", "")])).unwrap();
        assert_eq!(k.fail_health_shard, None);
        assert_eq!(k.health_failure(), None);
    }
}
