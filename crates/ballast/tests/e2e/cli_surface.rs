//! The CLI's generated surface, with no Docker and no config: the bash
//! completion script registers with bash and completes subcommands and
//! values; the zsh and fish scripts name the subcommands; `ballast man`
//! renders with `man -l`, and `--dir` writes one page per command; an
//! unknown shell is refused with exit code 2, naming the supported ones.
#![allow(clippy::print_stderr)] // a skipped check says why

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `ballast ARGS` in an empty directory, with a config that does not
/// exist and a Docker socket that does not answer: the commands under
/// test must need neither.
fn ballast(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .current_dir(dir.path())
        .env("BALLAST_CONFIG", dir.path().join("absent.yml"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("BALLAST_DESTINATION")
        .stdin(Stdio::null())
        .output()
        .expect("run the ballast binary")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The stdout of a `ballast ARGS` that must succeed quietly.
fn generated(args: &[&str]) -> String {
    let out = ballast(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Whether `program` can be run here.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// What the bash completion in `script` offers for the command line
/// `words`, the last being the word under the cursor.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let probe = r#"
        source "$1" || exit 1
        shift
        spec=$(complete -p ballast) || exit 1
        fn=$(sed -n 's/.* -F \([^ ]*\) .*/\1/p' <<<"$spec")
        [[ -n $fn ]] || { echo "no -F function in: $spec" >&2; exit 1; }
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        prev=""
        (($# > 1)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
        "$fn" ballast "${COMP_WORDS[COMP_CWORD]}" "$prev"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(probe)
        .arg("bash")
        .arg(script)
        .args(words)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{words:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bash_script_registers_a_completion_for_ballast() {
    let script = generated(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ballast.bash");
    std::fs::write(&file, &script).unwrap();

    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && complete -p ballast"#)
        .arg("bash")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{}", text(&out));
    let spec = String::from_utf8_lossy(&out.stdout);
    assert!(
        spec.starts_with("complete ") && spec.trim_end().ends_with(" ballast"),
        "{spec}"
    );

    // And it completes what the clap definition holds.
    assert_eq!(bash_complete(&file, &["ballast", "depl"]), ["deploy"]);
    let lock = bash_complete(&file, &["ballast", "lock", ""]);
    for sub in ["status", "acquire", "release"] {
        assert!(lock.iter().any(|w| w == sub), "{lock:?}");
    }
    let shells = bash_complete(&file, &["ballast", "completions", ""]);
    let values: Vec<&String> = shells.iter().filter(|w| !w.starts_with('-')).collect();
    assert_eq!(values, ["bash", "zsh", "fish"], "{shells:?}");
}

#[test]
fn the_zsh_and_fish_scripts_name_the_subcommands() {
    let zsh = generated(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef ballast"), "{zsh}");
    let fish = generated(&["completions", "fish"]);
    assert!(fish.contains("complete -c ballast"), "{fish}");
    for script in [&zsh, &fish] {
        for sub in ["deploy", "doctor", "rollback", "completions", "man"] {
            assert!(script.contains(sub), "no {sub} in:\n{script}");
        }
    }

    // Where the shell is installed, it must parse its script.
    let dir = tempfile::tempdir().unwrap();
    for (shell, script, check) in [("zsh", &zsh, "-n"), ("fish", &fish, "--no-execute")] {
        if !have(shell) {
            eprintln!("{shell} is not installed: its script was not parsed");
            continue;
        }
        let file = dir.path().join(format!("ballast.{shell}"));
        std::fs::write(&file, script).unwrap();
        let out = Command::new(shell).arg(check).arg(&file).output().unwrap();
        assert!(out.status.success(), "{shell} {check}: {}", text(&out));
    }

    // With --json, the script comes as the result's value.
    let line = generated(&["--json", "completions", "zsh"]);
    let value: serde_json::Value = serde_json::from_str(line.trim()).expect(&line);
    assert_eq!(value["type"], "result", "{value}");
    assert_eq!(value["shell"], "zsh", "{value}");
    assert_eq!(
        value["script"].as_str().map(str::trim_end),
        Some(zsh.trim_end())
    );
}

#[test]
fn an_unknown_shell_is_refused_naming_the_supported_ones() {
    let out = ballast(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'tcsh'")
            && stderr.contains("[possible values: bash, zsh, fish]"),
        "{stderr}"
    );
}

/// The page in `file` as `man` shows it on an 80-column terminal, or `None`
/// where `man` is missing (CI installs it: there it must be found).
fn man(file: &Path) -> Option<String> {
    if !have("man") {
        assert!(
            std::env::var_os("CI").is_none(),
            "`man` is missing: .ci/run installs man-db"
        );
        eprintln!(
            "`man` is not installed here: {} was not rendered",
            file.display()
        );
        return None;
    }
    let out = Command::new("man")
        .arg("-l")
        .arg(file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .stdin(Stdio::null())
        .output()
        .expect("run man");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("warning"),
        "man -l {}: {}",
        file.display(),
        text(&out)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_man_page_renders() {
    let page = generated(&["man"]);
    assert!(page.contains("\n.TH ballast 1 "), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ballast.1");
    std::fs::write(&file, &page).unwrap();
    let Some(shown) = man(&file) else { return };
    for words in ["ballast", "deploy", "SUBCOMMANDS", "EXIT STATUS"] {
        assert!(shown.contains(words), "no {words:?} in:\n{shown}");
    }
    assert!(
        shown.contains("ballast-deploy(1)") && !shown.contains("ballast-help"),
        "{shown}"
    );
}

#[test]
fn man_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("share/man/man1");
    let said = generated(&["man", "--dir", pages.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        said.starts_with(&format!("wrote {} man pages to ", names.len())),
        "{said}"
    );
    for name in [
        "ballast.1",
        "ballast-deploy.1",
        "ballast-doctor.1",
        "ballast-lock-status.1",
        "ballast-proxy-run.1",
        "ballast-completions.1",
        "ballast-man.1",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".1") && !n.contains("help")),
        "{names:?}"
    );

    let Some(doctor) = man(&pages.join("ballast-doctor.1")) else {
        return;
    };
    assert!(doctor.contains("ballast doctor"), "{doctor}");
    assert!(doctor.contains("EXIT STATUS"), "{doctor}");
    // Its own codes, one per line as in --help.
    let line = |code: &str| doctor.lines().any(|l| l.trim_start().starts_with(code));
    assert!(line("11  doctor: a host is blocked"), "{doctor}");
    assert!(line("10  doctor: warnings only"), "{doctor}");
}
