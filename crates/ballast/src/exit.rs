//! Exit codes, decided in one place from the kind of error.

use ballast_core::ErrorKind;

/// Every code ballast exits with; README.md documents the same table.
pub const SUCCESS: i32 = 0;
pub const FAILED: i32 = 1;
pub const INPUT: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const CONFLICT: i32 = 4;
pub const UNREACHABLE: i32 = 5;
pub const TIMEOUT: i32 = 6;
pub const INTERRUPTED: i32 = 130;

pub fn code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Failed => FAILED,
        ErrorKind::Input => INPUT,
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::Conflict => CONFLICT,
        ErrorKind::Unreachable => UNREACHABLE,
        ErrorKind::Timeout => TIMEOUT,
        ErrorKind::Interrupted => INTERRUPTED,
    }
}
