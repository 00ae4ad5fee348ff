//! Exit codes, in one table: every code ballast exits with and the one thing
//! it means, whatever the command. Errors map to codes here by their kind;
//! `ballast doctor` picks among its own codes in `commands/doctor.rs`.
//!
//! Made from this table: README.md's "Exit codes" (a test below fails when
//! it differs), the man page's EXIT STATUS and `ballast doctor --help`.

use ballast_core::ErrorKind;

/// Declares [`Exit`] from rows `Name = code => "meaning"`, so that the enum,
/// its list [`Exit::ALL`] and [`Exit::meaning`] cannot disagree.
macro_rules! exit_codes {
    ($($(#[$attr:meta])* $name:ident = $code:literal => $meaning:literal,)+) => {
        /// Every code ballast exits with; each means one thing only.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Exit {
            $(#[doc = $meaning] $(#[$attr])* $name = $code,)+
        }

        impl Exit {
            /// The whole table, in the order written (ascending codes).
            pub const ALL: &'static [Exit] = &[$(Exit::$name),+];

            /// What the code means, as README.md and the man page say it.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Exit::$name => $meaning,)+
                }
            }
        }
    };
}

exit_codes! {
    Success = 0 => "success",
    Failed = 1 => "an operation failed",
    Input = 2 => "bad input (arguments, names, config); nothing was changed",
    NotFound = 3 => "not found (e.g. no such lab)",
    Conflict = 4 => "conflict (already exists, or held by someone else)",
    Unreachable = 5 => "a host or engine did not answer",
    Timeout = 6 => "a wait ran past its deadline",
    /// Doctor's findings get codes of their own, apart from the general
    /// 1 and 2, so a script can tell "hosts need care" from "doctor failed".
    DoctorWarnings = 10 => "doctor: warnings only; every host answered and none is blocked",
    /// See [`Exit::DoctorWarnings`].
    DoctorBlocked = 11 => "doctor: a host is blocked; deploy would refuse it",
    Interrupted = 130 => "interrupted; what was started was undone",
}

impl Exit {
    /// The number the process exits with.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

impl From<ErrorKind> for Exit {
    fn from(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::Failed => Exit::Failed,
            ErrorKind::Input => Exit::Input,
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::Conflict => Exit::Conflict,
            ErrorKind::Unreachable => Exit::Unreachable,
            ErrorKind::Timeout => Exit::Timeout,
            ErrorKind::Interrupted => Exit::Interrupted,
        }
    }
}

pub const SUCCESS: i32 = Exit::Success.code();
pub const INTERRUPTED: i32 = Exit::Interrupted.code();

/// The code for an error of this kind.
pub fn code(kind: ErrorKind) -> i32 {
    Exit::from(kind).code()
}

/// The codes `ballast doctor` decides from what it found, in the order they
/// win (see `commands::doctor::exit_code`), then success. Its failures
/// before any host is checked (a bad config: 2) exit as any command's do.
pub const DOCTOR: &[Exit] = &[
    Exit::DoctorBlocked,
    Exit::Unreachable,
    Exit::DoctorWarnings,
    Exit::Success,
];

/// `ballast exec`'s code once its command ran: the command's own, as
/// `docker exec` gives it, so scripts can act on it; one outside 0 to 255
/// (never given by the engine) is [`Exit::Failed`]. Failures before the
/// command runs exit with this table's codes.
pub fn of_command(code: i64) -> i32 {
    u8::try_from(code).map_or(Exit::Failed.code(), i32::from)
}

/// The exit codes part of `ballast exec --help`.
pub fn exec_help() -> String {
    format!(
        "Exit code: the command's own once it ran (with --all, the first \
         non-zero in host order); before it runs, ballast's (`ballast man` \
         lists them: {} for a bad role or host, {} when no container of the \
         role runs, {} for a host that does not answer).",
        Exit::Input.code(),
        Exit::NotFound.code(),
        Exit::Unreachable.code()
    )
}

/// The exit codes part of `ballast doctor --help`, from the table.
pub fn doctor_help() -> String {
    let mut text = String::from("Exit codes (the first that applies):\n");
    for e in DOCTOR {
        text.push_str(&format!("  {:<4}{}\n", e.code(), e.meaning()));
    }
    text.push_str(
        "\nFailures before any host is checked exit as any command's do \
         (2: bad config or arguments); `ballast man` lists every code.",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as README.md writes it.
    fn markdown() -> String {
        let mut text = String::from("| code | meaning |\n| --- | --- |\n");
        for e in Exit::ALL {
            text.push_str(&format!("| {} | {} |\n", e.code(), e.meaning()));
        }
        text
    }

    /// The (code, meaning) rows of a markdown table, header and rule left out.
    fn rows(table: &str) -> Vec<(String, String)> {
        table
            .lines()
            .filter(|l| l.trim_start().starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
                let cell = |i: usize| cells.get(i).map(|c| c.trim().to_string());
                (cell(0).unwrap_or_default(), cell(1).unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn readme_lists_the_same_exit_codes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let readme = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let section = readme
            .split_once("\n## Exit codes\n")
            .map(|(_, rest)| rest.split("\n#").next().unwrap_or(rest))
            .expect("README.md has an `## Exit codes` section");
        assert_eq!(
            rows(section),
            rows(&markdown()),
            "README.md's exit codes differ from src/exit.rs; its table should read:\n\n{}",
            markdown()
        );
    }

    #[test]
    fn codes_are_unique_and_ascending() {
        let codes: Vec<i32> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "{codes:?}");
        assert!(codes.iter().all(|c| (0..=255).contains(c)), "{codes:?}");
    }

    #[test]
    fn exec_passes_the_commands_code_through() {
        assert_eq!(of_command(0), 0);
        assert_eq!(of_command(3), 3);
        assert_eq!(of_command(137), 137);
        assert_eq!(of_command(-1), Exit::Failed.code());
        assert_eq!(of_command(256), Exit::Failed.code());
    }

    #[test]
    fn doctor_help_shows_its_codes() {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        let help = cli
            .find_subcommand_mut("doctor")
            .expect("a doctor command")
            .render_help()
            .to_string();
        for e in DOCTOR {
            let line = format!("  {:<4}{}", e.code(), e.meaning());
            assert!(help.contains(&line), "no `{line}` in:\n{help}");
        }
    }
}
