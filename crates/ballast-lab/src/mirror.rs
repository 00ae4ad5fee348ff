//! Which Debian mirror debootstrap fetches from: `BALLAST_LAB_MIRROR`, else
//! the main archive this machine's apt already uses.

use std::path::PathBuf;

/// The Debian mirror this machine's apt already uses (or `BALLAST_LAB_MIRROR`);
/// `None` lets debootstrap use its own default.
pub fn mirror() -> Option<String> {
    if let Ok(m) = std::env::var("BALLAST_LAB_MIRROR") {
        if !m.trim().is_empty() {
            return Some(m.trim().to_string());
        }
    }
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("list") | Some("sources")) {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    texts.push(t);
                }
            }
        }
    }
    texts.iter().find_map(|t| mirror_in(t))
}

/// Finds the main Debian archive in an apt sources text, in either the
/// one-line (`deb URI suite ...`) or the deb822 (`URIs:`) format. Security and
/// updates archives are skipped: debootstrap needs the main one.
pub fn mirror_in(text: &str) -> Option<String> {
    let main_suite =
        |s: &str| !s.contains("-security") && !s.contains("-updates") && !s.contains("-backports");
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        // Skip an options block such as [signed-by=...].
        let rest: Vec<&str> = if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
            rest[end + 1..].to_vec()
        } else {
            rest
        };
        if let [uri, suite, ..] = rest[..] {
            if main_suite(suite) && uri.contains("debian") {
                return Some(uri.to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if field("Enabled:").is_some_and(|v| v == "no") {
            continue;
        }
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
            continue;
        };
        if suites.split_whitespace().any(main_suite) {
            if let Some(uri) = uris.split_whitespace().find(|u| u.contains("debian")) {
                return Some(uri.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_one_line_sources() {
        let text = "# comment\ndeb [signed-by=/k.gpg] http://mirror.example/debian-security bookworm-security main\ndeb http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_from_deb822_sources() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("Types: deb\nURIs: http://x/debian-security\nSuites: bookworm-security\n"),
            None
        );
        assert_eq!(mirror_in(""), None);
    }
}
