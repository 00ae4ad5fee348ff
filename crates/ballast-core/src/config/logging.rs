//! Checks of `logging` (the service's, and a role's own): the options each
//! log driver takes, the ones it needs, and the shape of the addresses and
//! sizes Docker would otherwise refuse on every host at container creation,
//! in the middle of a deploy. The driver itself is a choice of the schema
//! ([`LogDriver`]), so an unknown one is refused by the shape check.
//!
//! An option no driver here knows is passed through as written: newer
//! engines add options, and the engine says what it does not take.

use super::hints::closest;
use super::node::shorten;
use super::schema::*;
use super::validate::Checker;

/// Options every driver takes (handled by the engine, not the driver).
const GENERIC: &[&str] = &[
    "mode",
    "max-buffer-size",
    "cache-disabled",
    "cache-max-size",
    "cache-max-file",
    "cache-compress",
];

/// Options of the drivers that tag and label what they send.
const ATTRIBUTES: &[&str] = &["tag", "labels", "labels-regex", "env", "env-regex"];

/// The options of `driver` besides [`GENERIC`] ones, as Docker 20.10+
/// takes them.
fn own_options(driver: LogDriver) -> Vec<&'static str> {
    let own: &[&str] = match driver {
        LogDriver::Local => &["max-size", "max-file", "compress"],
        LogDriver::JsonFile => &["max-size", "max-file", "compress"],
        LogDriver::Journald => &[],
        LogDriver::Syslog => &[
            "syslog-address",
            "syslog-facility",
            "syslog-format",
            "syslog-tls-ca-cert",
            "syslog-tls-cert",
            "syslog-tls-key",
            "syslog-tls-skip-verify",
        ],
        LogDriver::Gelf => &[
            "gelf-address",
            "gelf-compression-type",
            "gelf-compression-level",
            "gelf-tcp-max-reconnect",
            "gelf-tcp-reconnect-delay",
        ],
        LogDriver::Fluentd => &[
            "fluentd-address",
            "fluentd-async",
            "fluentd-async-connect",
            "fluentd-buffer-limit",
            "fluentd-retry-wait",
            "fluentd-max-retries",
            "fluentd-sub-second-precision",
            "fluentd-request-ack",
        ],
    };
    let mut all = own.to_vec();
    if driver != LogDriver::Local {
        all.extend_from_slice(ATTRIBUTES);
    }
    all
}

/// Options `driver` cannot do without.
fn required(driver: LogDriver) -> &'static [&'static str] {
    match driver {
        LogDriver::Gelf => &["gelf-address"],
        _ => &[],
    }
}

/// Why an option's value would be refused, and how to write it; `None`
/// when it looks right (or ballast has no rule for it).
pub(crate) fn value_problem(option: &str, value: &str) -> Option<(String, &'static str)> {
    let v = value.trim();
    let (ok, expected, hint) = match option {
        "max-size" | "cache-max-size" | "max-buffer-size" => (
            is_size(v),
            "a size",
            "write a number with `k`, `m` or `g`, e.g. `10m`",
        ),
        "max-file" | "cache-max-file" => (
            v.parse::<u32>().is_ok_and(|n| n >= 1),
            "a whole number of files, at least 1",
            "write a whole number such as `\"5\"`",
        ),
        "mode" => (
            matches!(v, "blocking" | "non-blocking"),
            "`blocking` or `non-blocking`",
            "`non-blocking` drops lines rather than stall the app when the driver is slow",
        ),
        "gelf-address" => (
            address(v, &["udp", "tcp"], true),
            "`udp://HOST:PORT` or `tcp://HOST:PORT`",
            "write it like `udp://graylog.internal:12201`",
        ),
        "syslog-address" => (
            address(v, &["udp", "tcp", "tcp+tls"], true) || path_address(v, &["unix", "unixgram"]),
            "`udp://`, `tcp://` or `tcp+tls://HOST:PORT`, or `unix://` or `unixgram:///PATH`",
            "write it like `udp://logs.internal:514`",
        ),
        "fluentd-address" => (
            address(v, &["tcp"], false) || host_port(v) || path_address(v, &["unix"]),
            "`HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH`",
            "write it like `fluentd.internal:24224`",
        ),
        _ => return None,
    };
    (!ok).then(|| (format!("`{}` is not {expected}", shorten(value)), hint))
}

/// `10m`, `512k`, `1g`, `2048`, `1.5MB`: what Docker's size parser takes.
fn is_size(v: &str) -> bool {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = v[digits.len()..].to_ascii_lowercase();
    let number_ok = !digits.is_empty()
        && digits.parse::<f64>().is_ok_and(|n| n > 0.0)
        && !digits.starts_with('.');
    let unit_ok = matches!(
        unit.as_str(),
        "" | "b" | "k" | "kb" | "kib" | "m" | "mb" | "mib" | "g" | "gb" | "gib"
    );
    number_ok && unit_ok
}

/// `SCHEME://HOST:PORT` with one of `schemes` (the port optional unless
/// `port_needed`).
fn address(v: &str, schemes: &[&str], port_needed: bool) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    if !schemes.contains(&scheme) || rest.is_empty() || rest.contains('/') {
        return false;
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => !port_needed,
    }
}

/// `SCHEME:///ABSOLUTE/PATH` with one of `schemes`.
fn path_address(v: &str, schemes: &[&str]) -> bool {
    v.split_once("://")
        .is_some_and(|(s, path)| schemes.contains(&s) && path.len() > 1 && path.starts_with('/'))
}

/// `HOST:PORT` without a scheme.
fn host_port(v: &str) -> bool {
    !v.contains("://") && address(&format!("tcp://{v}"), &["tcp"], true)
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Checker<'_> {
    /// The service's `logging` and every role's own.
    pub(super) fn logging(&mut self, config: &Config) {
        self.logging_at(&["logging"], "logging", &config.logging);
        for (name, role) in &config.roles {
            if let Some(logging) = &role.logging {
                let at = format!("roles.{name}.logging");
                self.logging_at(&["roles", name, "logging"], &at, logging);
            }
        }
    }

    /// Checks `logging`, found at `path` (written `at` in messages).
    fn logging_at(&mut self, path: &[&str], at: &str, logging: &Logging) {
        let driver = logging.driver;
        let own = own_options(driver);
        for option in required(driver) {
            if !logging.options.contains_key(*option) {
                let driver_path: Vec<&str> = path.iter().copied().chain(["driver"]).collect();
                self.error(
                    &driver_path,
                    format!("{at}: the `{driver}` driver needs the option `{option}`"),
                )
                .set_label(format!("needs `{option}`"))
                .set_hint(format!(
                    "add `options: {{ {option}: \"udp://HOST:PORT\" }}` to `{at}`: where Docker sends the logs"
                ));
            }
        }
        for (option, value) in &logging.options {
            let option_path: Vec<&str> = path
                .iter()
                .copied()
                .chain(["options", option.as_str()])
                .collect();
            if own.contains(&option.as_str()) || GENERIC.contains(&option.as_str()) {
                if let Some((problem, hint)) = value_problem(option, value) {
                    self.error(&option_path, format!("{at}.options.{option}: {problem}"))
                        .set_hint(hint);
                }
                continue;
            }
            let others: Vec<&str> = LogDriver::ALL
                .into_iter()
                .filter(|d| *d != driver && own_options(*d).contains(&option.as_str()))
                .map(LogDriver::as_str)
                .collect();
            let mut takes = own.clone();
            takes.extend_from_slice(GENERIC);
            if !others.is_empty() {
                self.key_error(
                    &option_path,
                    format!(
                        "{at}.options: `{option}` is not an option of the `{driver}` driver (it is one of {})",
                        list(&others)
                    ),
                )
                .set_label(format!("not taken by `{driver}`"))
                .set_hint(format!(
                    "remove it, or use a driver that takes it; `{driver}` takes {}",
                    list(&takes)
                ));
            } else if let Some(near) = closest(option, takes.iter().copied()) {
                self.key_error(
                    &option_path,
                    format!(
                        "{at}.options: `{}` is not an option of the `{driver}` driver",
                        shorten(option)
                    ),
                )
                .set_label("unknown option")
                .set_hint(format!("did you mean `{near}`?"));
            }
        }
        if logging.options.contains_key("max-buffer-size")
            && logging.options.get("mode").map(String::as_str) != Some("non-blocking")
        {
            let option_path: Vec<&str> = path
                .iter()
                .copied()
                .chain(["options", "max-buffer-size"])
                .collect();
            self.key_error(
                &option_path,
                format!("{at}.options: `max-buffer-size` only applies with `mode: non-blocking`"),
            )
            .set_hint("add `mode: non-blocking`, or remove `max-buffer-size`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n";

    #[test]
    fn the_default_is_local_with_rotation() {
        let loaded = parse_yaml(HEAD).unwrap();
        let logging = &loaded.config.logging;
        assert_eq!(logging.driver, LogDriver::Local);
        assert_eq!(
            logging.options.clone(),
            [("max-file", "5"), ("max-size", "10m")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into()
        );
    }

    #[test]
    fn given_options_override_the_rotation_defaults_of_file_drivers_only() {
        let yaml = format!("{HEAD}logging: {{driver: json-file, options: {{max-size: 50m}}}}\n");
        let loaded = parse_yaml(&yaml).unwrap();
        let options = loaded.config.logging.options.clone();
        assert_eq!(options["max-size"], "50m");
        assert_eq!(options["max-file"], "5");
        let yaml = format!(
            "{HEAD}logging: {{driver: gelf, options: {{gelf-address: \"udp://10.0.0.9:12201\"}}}}\n"
        );
        let loaded = parse_yaml(&yaml).unwrap();
        assert_eq!(
            loaded
                .config
                .logging
                .options
                .clone()
                .keys()
                .collect::<Vec<_>>(),
            ["gelf-address"]
        );
    }

    #[test]
    fn an_unknown_driver_lists_the_supported_ones() {
        let yaml = format!("{HEAD}logging:\n  driver: splunk\n");
        assert_error(
            &yaml,
            7,
            11,
            "logging.driver: expected one of `local`, `json-file`, `journald`, `syslog`, `gelf`, `fluentd`, found the string `splunk`",
            "use one of `local`, `json-file`, `journald`, `syslog`, `gelf`, `fluentd`",
        );
        let yaml = format!("{HEAD}logging: {{driver: json_file}}\n");
        assert_error(&yaml, 6, 19, "expected one of", "did you mean `json-file`?");
    }

    #[test]
    fn gelf_needs_its_address_and_checks_it() {
        let yaml = format!("{HEAD}logging:\n  driver: gelf\n");
        assert_error(
            &yaml,
            7,
            11,
            "logging: the `gelf` driver needs the option `gelf-address`",
            "add `options: { gelf-address: \"udp://HOST:PORT\" }` to `logging`",
        );
        let yaml = format!(
            "{HEAD}logging:\n  driver: gelf\n  options:\n    gelf-address: \"http://graylog:12201\"\n"
        );
        assert_error(
            &yaml,
            9,
            19,
            "logging.options.gelf-address: `http://graylog:12201` is not `udp://HOST:PORT` or `tcp://HOST:PORT`",
            "udp://graylog.internal:12201",
        );
        let yaml = format!(
            "{HEAD}logging: {{driver: gelf, options: {{gelf-address: \"udp://graylog\"}}}}\n"
        );
        assert_error(&yaml, 6, 49, "is not `udp://HOST:PORT`", "udp://");
        let ok = format!(
            "{HEAD}logging: {{driver: gelf, options: {{gelf-address: \"tcp://graylog:12201\", tag: web}}}}\n"
        );
        assert!(parse_yaml(&ok).is_ok());
    }

    #[test]
    fn fluentd_and_syslog_addresses_take_their_forms() {
        for good in [
            "fluentd:24224",
            "tcp://10.0.0.5:24224",
            "unix:///run/fluent.sock",
        ] {
            assert_eq!(value_problem("fluentd-address", good), None, "{good}");
        }
        for bad in ["http://fluentd:24224", "fluentd", "fluentd:port", "unix://"] {
            assert!(value_problem("fluentd-address", bad).is_some(), "{bad}");
        }
        for good in [
            "udp://logs:514",
            "tcp+tls://logs:6514",
            "unixgram:///dev/log",
        ] {
            assert_eq!(value_problem("syslog-address", good), None, "{good}");
        }
        assert!(value_problem("syslog-address", "logs:514").is_some());
        let yaml = format!(
            "{HEAD}logging: {{driver: fluentd, options: {{fluentd-address: \"http://fluentd\"}}}}\n"
        );
        assert_error(
            &yaml,
            6,
            55,
            "logging.options.fluentd-address: `http://fluentd` is not `HOST:PORT`",
            "fluentd.internal:24224",
        );
        let ok =
            format!("{HEAD}logging: {{driver: fluentd, options: {{fluentd-async: \"true\"}}}}\n");
        assert!(parse_yaml(&ok).is_ok());
    }

    #[test]
    fn an_option_of_another_driver_is_refused_where_it_is_written() {
        let yaml = format!("{HEAD}logging:\n  driver: journald\n  options:\n    max-size: 10m\n");
        assert_error(
            &yaml,
            9,
            5,
            "logging.options: `max-size` is not an option of the `journald` driver (it is one of `local`, `json-file`)",
            "`journald` takes `tag`, `labels`",
        );
        let yaml = format!(
            "{HEAD}    logging:\n      driver: syslog\n      options: {{gelf-address: \"udp://g:1\"}}\n"
        );
        assert_error(
            &yaml,
            8,
            17,
            "roles.web.logging.options: `gelf-address` is not an option of the `syslog` driver (it is one of `gelf`)",
            "remove it",
        );
    }

    #[test]
    fn a_misspelt_option_gets_a_suggestion_and_a_new_one_passes() {
        let yaml = format!("{HEAD}logging: {{options: {{max-szie: 10m}}}}\n");
        assert_error(
            &yaml,
            6,
            21,
            "logging.options: `max-szie` is not an option of the `local` driver",
            "did you mean `max-size`?",
        );
        // An option no driver here knows: a newer engine's; the engine judges.
        let yaml =
            format!("{HEAD}logging: {{driver: json-file, options: {{some-future-option: x}}}}\n");
        assert!(parse_yaml(&yaml).is_ok());
    }

    #[test]
    fn sizes_counts_and_modes_are_checked() {
        for good in ["10m", "512k", "1g", "2048", "1.5MB", "100KiB"] {
            assert!(is_size(good), "{good}");
        }
        for bad in ["", "m", "ten", "10x", "-1m", "0"] {
            assert!(!is_size(bad), "{bad}");
        }
        let yaml = format!("{HEAD}logging: {{options: {{max-file: \"0\"}}}}\n");
        assert_error(
            &yaml,
            6,
            31,
            "logging.options.max-file: `0` is not a whole number of files, at least 1",
            "\"5\"",
        );
        let yaml = format!("{HEAD}logging: {{options: {{max-size: big}}}}\n");
        assert_error(&yaml, 6, 31, "`big` is not a size", "`10m`");
        let yaml = format!("{HEAD}logging: {{options: {{max-buffer-size: 4m}}}}\n");
        assert_error(
            &yaml,
            6,
            21,
            "`max-buffer-size` only applies with `mode: non-blocking`",
            "add `mode: non-blocking`",
        );
        let ok =
            format!("{HEAD}logging: {{options: {{mode: non-blocking, max-buffer-size: 4m}}}}\n");
        assert!(parse_yaml(&ok).is_ok());
    }

    #[test]
    fn a_role_may_log_its_own_way() {
        let yaml = format!(
            "{HEAD}    init: false\n    logging: {{driver: syslog}}\n  worker:\n    hosts: [b]\n"
        );
        let loaded = parse_yaml(&yaml).unwrap();
        let c = &loaded.config;
        assert_eq!(c.logging_of("web").driver, LogDriver::Syslog);
        assert_eq!(c.logging_of("worker").driver, LogDriver::Local);
        assert!(!c.roles["web"].init);
        assert!(c.roles["worker"].init);
    }
}
