//! What the binary prints where no host and no Docker engine is needed,
//! pinned as snapshots of exit code, stdout and stderr: `init`, `config`
//! and `config --reference`; a config error of each kind (YAML syntax, an
//! unknown key with its suggestion, a wrong type, a missing key, a duration
//! out of range, an undefined secret, an alias to no command, a bad
//! destination file), also with `--json`; scopes naming no host or role
//! of the config, refused before any host is reached; and `secrets print`
//! (plain, `--json`, `--reveal`) with a secret that is a `$(...)` command,
//! one whose command fails and one that needs a shell.
//!
//! Each case runs in a temp dir of its own with `common::snapshot::isolated`
//! (nothing of this machine's environment, a Docker socket that does not
//! exist); `common::snapshot::settings` filters out the temp dir's path.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::snapshot;

/// A temp dir holding a `ballast.yml`, where the binary runs.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A case whose `ballast.yml` is `text`.
    fn with_config(text: &str) -> Case {
        let case = Case::new();
        case.write("ballast.yml", text);
        case
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("ballast.yml")
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a file in the dir")).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs `ballast --config DIR/ballast.yml ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut full = vec!["--config", config.to_str().expect("UTF-8 temp path")];
        full.extend_from_slice(args);
        snapshot::isolated(self.path(), &full)
    }

    /// Runs `ballast ARGS` and pins what it printed as snapshot `name`,
    /// described by the command line.
    fn snapshot(&self, name: &str, args: &[&str]) -> Output {
        let out = self.run(args);
        let mut settings = snapshot::settings(self.path());
        settings.set_description(format!(
            "ballast --config [TEMP]/ballast.yml {}",
            args.join(" ")
        ));
        settings.bind(|| insta::assert_snapshot!(name, snapshot::shown(&out)));
        out
    }
}

/// A valid config with one role, to which each error case adds its fault.
const BASE: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [web-1.example.com, web-2.example.com]
    port: 8080
";

#[test]
fn init_writes_a_starter_once() {
    let case = Case::new();
    case.snapshot("init", &["init"]);
    assert!(case.config().is_file());
    case.snapshot("init_again_is_a_conflict", &["init"]);
}

#[test]
fn config_shows_the_starter_without_its_secret_values() {
    let case = Case::new();
    case.run(&["init"]);
    // The starter lists DATABASE_PASSWORD, which nothing defines yet.
    case.snapshot("config_of_the_starter_without_its_secret", &["config"]);
    case.write(
        ".ballast/secrets",
        "DATABASE_PASSWORD=hunter2-very-secret\n",
    );
    let out = case.snapshot("config_of_the_starter", &["config"]);
    let all = snapshot::shown(&out);
    assert!(
        !all.contains("hunter2"),
        "a secret value was printed:\n{all}"
    );
}

#[test]
fn config_reference() {
    // The reference needs no config file.
    Case::new().snapshot("config_reference", &["config", "--reference"]);
}

#[test]
fn config_error_yaml_syntax() {
    let case = Case::with_config("service: shop\nimage: [shop\nroles:\n  web:\n    hosts: [a]\n");
    case.snapshot("config_error_yaml_syntax", &["config"]);
}

#[test]
fn config_error_unknown_key_with_suggestion() {
    let case = Case::with_config(&format!("{BASE}    helthcheck:\n      path: /up\n"));
    case.snapshot("config_error_unknown_key", &["config"]);
}

#[test]
fn config_error_unknown_key_as_json() {
    let case = Case::with_config(&format!("{BASE}    helthcheck:\n      path: /up\n"));
    let out = case.snapshot("config_error_unknown_key_json", &["--json", "config"]);
    // stdout is one JSON object, for scripts.
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(value["type"], "error", "{value}");
}

#[test]
fn config_error_wrong_type() {
    let case = Case::with_config(&format!("{BASE}deploy:\n  retain: many\n"));
    case.snapshot("config_error_wrong_type", &["config"]);
}

#[test]
fn config_error_unknown_log_driver() {
    let case = Case::with_config(&format!("{BASE}logging:\n  driver: splunk\n"));
    case.snapshot("config_error_unknown_log_driver", &["config"]);
}

#[test]
fn config_error_missing_key() {
    let case = Case::with_config("service: shop\nroles:\n  web:\n    hosts: [web-1.example.com]\n");
    case.snapshot("config_error_missing_key", &["config"]);
}

#[test]
fn config_error_duration_out_of_range() {
    // Far past what a duration can hold: refused as out of range, located.
    let case = Case::with_config(&format!("{BASE}deploy:\n  health_timeout: 584542046090y\n"));
    case.snapshot(
        "config_error_duration_out_of_range",
        &["deploy", "--version", "v1"],
    );
}

#[test]
fn config_error_undefined_secret() {
    let case = Case::with_config(&format!(
        "{BASE}    env:\n      secret: [SHOP_SNAPSHOT_API_KEY]\n"
    ));
    case.snapshot("config_error_undefined_secret", &["config"]);
}

#[test]
fn config_error_alias_to_no_command() {
    let case = Case::with_config(&format!(
        "{BASE}aliases:\n  console: \"exex --roles web -- sh\"\n"
    ));
    case.snapshot("config_error_alias_to_no_command", &["config"]);
}

#[test]
fn config_error_in_a_destination_file() {
    let case = Case::with_config(BASE);
    case.write(
        "ballast.staging.yml",
        "roles:\n  web:\n    hostz: [staging-1.example.com]\n",
    );
    case.snapshot(
        "config_error_destination_unknown_key",
        &["-d", "staging", "config"],
    );
}

#[test]
fn config_error_destination_required() {
    let case = Case::with_config(&format!("{BASE}require_destination: true\n"));
    case.write(
        "ballast.staging.yml",
        "roles:\n  web:\n    hosts: [staging-1.example.com]\n",
    );
    case.snapshot(
        "config_error_destination_required",
        &["deploy", "--version", "v1"],
    );
}

#[test]
fn scopes_name_hosts_and_roles_of_the_config() {
    let case = Case::with_config(&format!(
        "{BASE}  worker:\n    hosts: [worker-1.example.com]\n"
    ));
    case.snapshot(
        "scope_unknown_host",
        &["deploy", "--version", "v1", "--hosts", "web-9.example.com"],
    );
    case.snapshot("scope_unknown_role", &["rollback", "--roles", "wbe"]);
    for args in [
        &["status", "--roles", "db"][..],
        &["logs", "--hosts", "nope"][..],
    ] {
        let out = case.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            snapshot::shown(&out)
        );
    }
}

/// Roles using three secrets: one from the destination's file, one from
/// the shared file, one the output of a command. The shared file also has
/// a command no role uses, which must not run.
fn case_with_secrets(db_password: &str) -> Case {
    let case = Case::with_config(&format!(
        "{BASE}    env:\n      secret: [SHOP_DB_PASSWORD, SHOP_API_KEY]\n  worker:\n    hosts: [worker-1.example.com]\n    env:\n      secret: [SHOP_DB_PASSWORD, SHOP_SMTP_PASSWORD]\n"
    ));
    case.write(
        "ballast.staging.yml",
        "roles:\n  web:\n    hosts: [staging-1.example.com]\n",
    );
    case.write(
        ".ballast/secrets",
        &format!(
            "# shared\nSHOP_API_KEY=api-key-from-file\nSHOP_DB_PASSWORD={db_password}\nSHOP_SMTP_PASSWORD=shared-smtp\nSHOP_UNUSED=$(touch unused.ran)\n"
        ),
    );
    case.write(
        ".ballast/secrets.staging",
        "SHOP_SMTP_PASSWORD=staging-smtp\n",
    );
    case
}

/// The values `case_with_secrets` gives (with a command that works).
const SECRET_VALUES: [&str; 3] = [
    "db-password-from-command",
    "api-key-from-file",
    "staging-smtp",
];

#[test]
fn secrets_print_names_sources_never_values() {
    let case = case_with_secrets("$(echo db-password-from-command)");
    let out = case.snapshot("secrets_print", &["-d", "staging", "secrets", "print"]);
    let json = case.snapshot(
        "secrets_print_json",
        &["-d", "staging", "--json", "secrets", "print"],
    );
    for out in [&out, &json] {
        let all = snapshot::shown(out);
        for value in SECRET_VALUES {
            assert!(!all.contains(value), "{value} was printed:\n{all}");
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(value["secrets"][0]["source"]["kind"], "file", "{value}");
    assert!(!case.path().join("unused.ran").exists());
}

#[test]
fn secrets_print_reveal_shows_values_on_stdout_only() {
    let case = case_with_secrets("$(echo db-password-from-command)");
    let out = case.snapshot(
        "secrets_print_reveal",
        &["-d", "staging", "secrets", "print", "--reveal"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for value in SECRET_VALUES {
        assert!(stdout.contains(value), "{value} not revealed:\n{stdout}");
    }
    let json = case.run(&["-d", "staging", "--json", "secrets", "print", "--reveal"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    let values: Vec<&str> = value["secrets"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["value"].as_str().expect("a value"))
        .collect();
    assert_eq!(
        values,
        [
            "api-key-from-file",
            "db-password-from-command",
            "staging-smtp"
        ]
    );
}

#[test]
fn secret_command_that_fails_is_located_without_its_output() {
    let case = case_with_secrets("$(sh -c 'echo s3cr3t-printed; echo s3cr3t-err >&2; exit 3')");
    let out = case.snapshot("secret_command_failed", &["secrets", "print"]);
    let all = snapshot::shown(&out);
    assert!(
        !all.contains("s3cr3t"),
        "the command's output was shown:\n{all}"
    );
    assert!(!case.path().join("unused.ran").exists());
}

#[test]
fn secret_command_that_needs_a_shell_is_refused() {
    let case = case_with_secrets("\"$(op read op://shop/db/password | base64 -d)\"");
    case.snapshot(
        "secret_command_needs_a_shell",
        &["--json", "secrets", "print"],
    );
}
