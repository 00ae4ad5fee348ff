//! The dockerd settings ballast relies on, written into
//! `/etc/docker/daemon.json`: log rotation, live restore (where Swarm is
//! not active: the two do not mix) and an init process by default. Only
//! what is missing is added; a setting the operator made, in the file or
//! on dockerd's command line, is never changed. Pure: the current file in,
//! the new file and its diff out.

use serde_json::{json, Map, Value};

/// Where dockerd reads its settings.
pub const PATH: &str = "/etc/docker/daemon.json";

/// What the host's dockerd has now, as far as the settings are concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current<'a> {
    /// The file's text; `None` when there is no file.
    pub file: Option<&'a str>,
    /// dockerd's command line, if it runs: a setting given there must not
    /// be repeated in the file (dockerd refuses to start).
    pub args: &'a str,
    /// Whether this engine is a Swarm node.
    pub swarm: bool,
}

/// The file with ballast's settings added: `Ok(None)` when it already has
/// them, `Err` when it cannot be read as settings (so it is left alone).
pub fn wanted(current: &Current) -> Result<Option<String>, String> {
    let mut settings = match current.file.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(format!("{PATH} is not a JSON object")),
            Err(e) => return Err(format!("{PATH} is not valid JSON: {e}")),
        },
    };
    let before = settings.clone();
    let on_command_line = |flag: &str| {
        current
            .args
            .split_whitespace()
            .any(|w| w == flag || w.starts_with(&format!("{flag}=")))
    };
    let driver = settings
        .get("log-driver")
        .and_then(Value::as_str)
        .unwrap_or("json-file");
    let rotates = settings
        .get("log-opts")
        .and_then(Value::as_object)
        .is_some_and(|o| o.contains_key("max-size"));
    // A driver chosen on the command line (Fedora's journald) takes
    // options of its own; json-file's would stop dockerd.
    let driver_flag = on_command_line("--log-driver");
    if driver == "json-file" && !rotates && !driver_flag && !on_command_line("--log-opt") {
        let opts = settings
            .entry("log-opts")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(opts) = opts {
            opts.insert("max-size".into(), json!("10m"));
            opts.entry("max-file").or_insert(json!("5"));
        }
    }
    if !current.swarm
        && !settings.contains_key("live-restore")
        && !on_command_line("--live-restore")
    {
        settings.insert("live-restore".into(), json!(true));
    }
    if !settings.contains_key("init") && !on_command_line("--init") {
        settings.insert("init".into(), json!(true));
    }
    if settings == before && current.file.is_some() {
        return Ok(None);
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(settings))
        .map_err(|e| format!("cannot write the settings: {e}"))?;
    text.push('\n');
    Ok(Some(text))
}

/// The change from `before` (no file: `None`) to `after`, as unified diff
/// lines, for the operator to read before anything is written.
pub fn diff(before: Option<&str>, after: &str) -> String {
    let before = before.unwrap_or("");
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header(if before.is_empty() { "/dev/null" } else { PATH }, PATH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(file: Option<&str>) -> Current<'_> {
        Current {
            file,
            args: "/usr/sbin/dockerd -H fd://",
            swarm: false,
        }
    }

    #[test]
    fn a_host_without_settings_gets_all_three() {
        let text = wanted(&current(None)).unwrap().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"init": true, "live-restore": true, "log-opts": {"max-file": "5", "max-size": "10m"}})
        );
        assert!(diff(None, &text).starts_with("--- /dev/null\n+++ /etc/docker/daemon.json\n"));
    }

    #[test]
    fn settings_already_there_change_nothing() {
        let text = wanted(&current(None)).unwrap().unwrap();
        assert_eq!(wanted(&current(Some(&text))).unwrap(), None);
    }

    #[test]
    fn the_operators_own_choices_are_kept() {
        let file = r#"{"log-driver": "local", "live-restore": false, "init": false, "data-root": "/srv/docker"}"#;
        assert_eq!(wanted(&current(Some(file))).unwrap(), None);
        let file = r#"{"log-opts": {"max-file": "9"}, "debug": true}"#;
        let v: Value =
            serde_json::from_str(&wanted(&current(Some(file))).unwrap().unwrap()).unwrap();
        assert_eq!(v["log-opts"], json!({"max-file": "9", "max-size": "10m"}));
        assert_eq!(v["debug"], json!(true));
    }

    #[test]
    fn a_setting_on_the_command_line_is_not_repeated_in_the_file() {
        let c = Current {
            file: None,
            args: "/usr/sbin/dockerd --live-restore --init --log-opt max-size=1m",
            swarm: false,
        };
        let v: Value = serde_json::from_str(&wanted(&c).unwrap().unwrap()).unwrap();
        assert_eq!(v, json!({}));
        // Fedora's defaults file, as setup reads it (quotes dropped).
        let c = Current {
            file: None,
            args: "OPTIONS= --selinux-enabled --log-driver=journald --live-restore ",
            swarm: false,
        };
        let v: Value = serde_json::from_str(&wanted(&c).unwrap().unwrap()).unwrap();
        assert_eq!(v, json!({"init": true}));
    }

    #[test]
    fn a_swarm_node_gets_no_live_restore() {
        let c = Current {
            swarm: true,
            ..current(None)
        };
        let v: Value = serde_json::from_str(&wanted(&c).unwrap().unwrap()).unwrap();
        assert_eq!(v.get("live-restore"), None);
    }

    #[test]
    fn a_broken_file_is_left_alone_with_the_reason() {
        let why = wanted(&current(Some("{\"init\": tru"))).unwrap_err();
        assert!(
            why.starts_with("/etc/docker/daemon.json is not valid JSON"),
            "{why}"
        );
        let why = wanted(&current(Some("[1]"))).unwrap_err();
        assert_eq!(why, "/etc/docker/daemon.json is not a JSON object");
    }

    #[test]
    fn the_diff_shows_only_what_changes() {
        let before = "{\n  \"debug\": true\n}\n";
        let after = wanted(&current(Some(before))).unwrap().unwrap();
        let d = diff(Some(before), &after);
        assert!(d.contains("+  \"init\": true,"), "{d}");
        // The operator's own line stays, only followed by a comma now.
        assert!(d.contains("-  \"debug\": true\n+  \"debug\": true,"), "{d}");
        assert!(!d.contains("--- /dev/null"), "{d}");
    }
}
