//! Reading what `ballast --json doctor` printed: its result line, one
//! host's part of it, and the rules that host's findings name.

use serde_json::Value;

use super::text;

/// The result line of a `--json` run.
pub fn result(out: &std::process::Output) -> Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result line:\n{}", text(out)))
}

/// The part of `result` about the host at `ip`.
pub fn host<'a>(result: &'a Value, ip: &str) -> &'a Value {
    result["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == ip)
        .unwrap_or_else(|| panic!("{ip} missing from {result}"))
}

/// The rule of each finding of `host`.
pub fn rules(host: &Value) -> Vec<&str> {
    host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect()
}
