//! The one redaction layer: every secret value loaded is registered here,
//! and everything ballast writes — results, progress, errors (container log
//! tails included), logs at any verbosity whatever `RUST_LOG` says, since
//! libraries such as the Docker client log request bodies at debug level —
//! passes through [`redact`] on its way out, so a value is replaced by
//! `[redacted]` wherever it would have appeared.
//!
//! Values shorter than [`MIN_LEN`] are not matched: a one- or two-character
//! "secret" would blank out ordinary text and protects nothing anyway.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

use crate::config::secrets::REDACTED;

/// Values shorter than this are not looked for.
pub const MIN_LEN: usize = 3;

/// The values to hide, longest first (so a value containing another is
/// replaced whole).
static VALUES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `values` to what is hidden from every output.
pub fn register<'a>(values: impl IntoIterator<Item = &'a str>) {
    let mut all = VALUES.write().unwrap_or_else(|e| e.into_inner());
    for v in values {
        if v.len() >= MIN_LEN && !all.iter().any(|a| a == v) {
            all.push(v.to_string());
        }
    }
    all.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// `text` with every registered value replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let all = VALUES.read().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|v| text.contains(v.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for v in all.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    Cow::Owned(out)
}

/// A writer that redacts what passes through it. Each `write` is taken as
/// a whole (a log line, a printed result), so a value is never split.
pub struct Redacting<W: Write>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self
                .0
                .write_all(redact(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_replaced_everywhere() {
        register(["hunter2-redact-test", "hunter2-redact-test-longer", "ab"]);
        assert_eq!(
            redact("Env:[\"DB_PASSWORD=hunter2-redact-test-longer\"] and hunter2-redact-test"),
            "Env:[\"DB_PASSWORD=[redacted]\"] and [redacted]"
        );
        // Too short to look for.
        assert_eq!(redact("ab cd"), "ab cd");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
        let mut out = Vec::new();
        Redacting(&mut out)
            .write_all(b"value=hunter2-redact-test\n")
            .unwrap();
        assert_eq!(out, b"value=[redacted]\n");
    }
}
