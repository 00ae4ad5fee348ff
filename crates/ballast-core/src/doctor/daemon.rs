//! Conditions about dockerd's settings: logging, live restore, where the
//! API listens, seccomp, experimental features, daemon.json itself, and
//! the default init process.

use super::facts::Facts;

/// The value of a dockerd flag on its command line: `--flag=v`, `--flag v`,
/// or for one-letter flags `-Hv` / `-H v`. Every occurrence.
fn flag_values<'a>(args: &'a str, long: &str, short: Option<&str>) -> Vec<&'a str> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next = || words.get(i + 1).copied();
        if let Some(v) = w.strip_prefix(long) {
            match v.strip_prefix('=') {
                Some(v) => out.push(v),
                None if v.is_empty() => out.extend(next()),
                None => {}
            }
        } else if let Some(s) = short {
            if let Some(v) = w.strip_prefix(s) {
                match v.strip_prefix('=') {
                    Some(v) => out.push(v),
                    None if v.is_empty() => out.extend(next()),
                    None => out.push(v),
                }
            }
        }
    }
    out
}

fn has_flag(args: &str, flag: &str) -> bool {
    args.split_whitespace()
        .any(|w| w == flag || w == format!("{flag}=true"))
}

pub fn log_no_rotation(f: &Facts) -> Option<String> {
    let json = f.daemon_json.as_ref();
    let driver = f
        .engine
        .as_ref()
        .and_then(|e| e.logging_driver.as_deref())
        .or_else(|| json.and_then(|d| d.log_driver.as_deref()))?;
    if driver != "json-file" {
        return None;
    }
    let in_json = json.is_some_and(|d| d.log_opts.contains_key("max-size"));
    let in_args = f.daemon_args.as_deref().is_some_and(|a| {
        flag_values(a, "--log-opt", None)
            .iter()
            .any(|v| v.starts_with("max-size="))
    });
    (!in_json && !in_args).then(|| {
        if json.is_some() {
            "the default log driver is json-file and /etc/docker/daemon.json sets no max-size"
        } else {
            "the default log driver is json-file and there is no /etc/docker/daemon.json to set max-size"
        }
        .to_string()
    })
}

pub fn live_restore_off(f: &Facts) -> Option<String> {
    (f.engine.as_ref()?.live_restore == Some(false)).then(|| "live-restore is disabled".to_string())
}

pub fn api_tcp_without_tls(f: &Facts) -> Option<String> {
    let json = f.daemon_json.as_ref();
    let args = f.daemon_args.as_deref().unwrap_or("");
    let mut tcp: Vec<String> = json
        .map(|d| d.hosts.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(
            flag_values(args, "--host", Some("-H"))
                .into_iter()
                .map(str::to_string),
        )
        .filter(|h| h.starts_with("tcp://"))
        .collect();
    tcp.dedup();
    if tcp.is_empty() {
        return None;
    }
    let verify = json.and_then(|d| d.tlsverify) == Some(true) || has_flag(args, "--tlsverify");
    if verify {
        return None;
    }
    let tls = json.and_then(|d| d.tls) == Some(true) || has_flag(args, "--tls");
    Some(format!(
        "the API listens on {} {}",
        tcp.join(", "),
        if tls {
            "with TLS but without client verification (tlsverify)"
        } else {
            "without TLS"
        }
    ))
}

pub fn seccomp_off(f: &Facts) -> Option<String> {
    let e = f.engine.as_ref()?;
    match e.security_option("seccomp") {
        None => Some("the engine reports no seccomp support".into()),
        Some(opts) if opts.contains("profile=unconfined") => {
            Some("the default seccomp profile is disabled (profile=unconfined)".into())
        }
        Some(_) => None,
    }
}

pub fn experimental(f: &Facts) -> Option<String> {
    (f.engine.as_ref()?.experimental == Some(true))
        .then(|| "experimental features are enabled".to_string())
}

pub fn daemon_json_invalid(f: &Facts) -> Option<String> {
    f.daemon_json_error
        .as_ref()
        .map(|e| format!("/etc/docker/daemon.json: {e}"))
}

pub fn no_default_init(f: &Facts) -> Option<String> {
    // Only judged on a host whose daemon settings were read.
    f.engine.as_ref()?;
    let json = f.daemon_json.as_ref().and_then(|d| d.init) == Some(true);
    let args = f
        .daemon_args
        .as_deref()
        .is_some_and(|a| has_flag(a, "--init"));
    (!json && !args).then(|| "dockerd gives containers no init process by default".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_every_spelling() {
        let args = "/usr/bin/dockerd -H fd:// -Htcp://0.0.0.0:2375 --host=unix:///x --host tcp://1.2.3.4:2376 --log-opt max-size=10m";
        assert_eq!(
            flag_values(args, "--host", Some("-H")),
            [
                "fd://",
                "tcp://0.0.0.0:2375",
                "unix:///x",
                "tcp://1.2.3.4:2376"
            ]
        );
        assert_eq!(flag_values(args, "--log-opt", None), ["max-size=10m"]);
        assert!(has_flag("dockerd --tlsverify", "--tlsverify"));
        assert!(has_flag("dockerd --tlsverify=true", "--tlsverify"));
        assert!(!has_flag("dockerd --tlsverifyx", "--tlsverify"));
    }
}
