//! hello as a process among processes, for ballast's tests of init, stop
//! and exec: the orphans `HELLO_SPAWN_ORPHANS` leaves behind, and the small
//! tools a `FROM scratch` image has no shell for, run as `/hello TOOL ...`
//! (by `ballast exec`, or by hello itself for its orphans):
//!
//! - `echo ARGS...`: prints its arguments, like echo(1).
//! - `cat`: copies stdin to stdout until end of input.
//! - `exit CODE`: exits with CODE.
//! - `env NAME`: prints the variable NAME (empty when unset).
//! - `zombies`: prints how many processes of the container are zombies
//!   (state `Z` in `/proc/PID/stat`).
//! - `orphan-parent`: starts `orphan` and exits without waiting for it.
//! - `orphan`: exits at once.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the tool `args` names (`args[0]` is the tool), returning its exit
/// code; `None` when `args` names no tool (hello serves then).
pub fn tool(args: &[String]) -> Option<i32> {
    let (name, rest) = args.split_first()?;
    let code = match name.as_str() {
        "echo" => write_out(format!("{}\n", rest.join(" ")).as_bytes()),
        "cat" => cat(),
        "exit" => rest.first().and_then(|c| c.parse().ok()).unwrap_or(2),
        "env" => {
            let value = rest.first().and_then(std::env::var_os).unwrap_or_default();
            write_out(format!("{}\n", value.to_string_lossy()).as_bytes())
        }
        "zombies" => match zombies() {
            Ok(n) => write_out(format!("{n}\n").as_bytes()),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "hello zombies: {e}");
                1
            }
        },
        "orphan-parent" => {
            // Not waited for: it outlives this process, whose parent then is
            // PID 1's to reap.
            let _ = myself().arg("orphan").spawn();
            0
        }
        "orphan" => 0,
        _ => return None,
    };
    Some(code)
}

/// Leaves `count` orphans behind, one every 100 ms, on a thread of its own:
/// each comes from a child that starts it and exits at once (that child is
/// waited for, so only the orphans are left to PID 1).
pub fn spawn_orphans(count: u32, log: fn(&str)) {
    if count == 0 {
        return;
    }
    std::thread::spawn(move || {
        for _ in 0..count {
            match myself().arg("orphan-parent").status() {
                Ok(_) => {}
                Err(e) => return log(&format!("hello: cannot start a child: {e}")),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        log(&format!(
            "hello: left {count} orphans as HELLO_SPAWN_ORPHANS asks"
        ));
    });
}

/// This program again, with no input or output of its own.
fn myself() -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn write_out(bytes: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn cat() -> i32 {
    let mut input = std::io::stdin().lock();
    let mut buf = [0u8; 8192];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                if write_out(&buf[..n]) != 0 {
                    return 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return 1,
        }
    }
}

/// How many processes under `/proc` are zombies.
fn zombies() -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // A process gone since the listing is no zombie.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if state(&stat) == Some('Z') {
            count += 1;
        }
    }
    Ok(count)
}

/// The state letter of a `/proc/PID/stat` line: after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
fn state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn tools_are_named_and_anything_else_is_not_one() {
        assert_eq!(tool(&args(&["exit", "3"])), Some(3));
        assert_eq!(tool(&args(&["exit", "x"])), Some(2));
        assert_eq!(tool(&args(&["orphan"])), Some(0));
        assert_eq!(tool(&args(&["serve"])), None);
        assert_eq!(tool(&[]), None);
    }

    #[test]
    fn the_state_follows_the_command_name_whatever_it_holds() {
        assert_eq!(state("42 (hello) S 1 42 42 0"), Some('S'));
        assert_eq!(state("43 (a) b) (c) Z 1 43"), Some('Z'));
        assert_eq!(state("garbage"), None);
    }

    #[test]
    fn this_process_is_counted_without_error() {
        assert!(zombies().is_ok());
    }
}
