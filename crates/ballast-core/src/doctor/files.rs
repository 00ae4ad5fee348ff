//! Reading several small files of a host in one command: `head -v` prints
//! each file it can open after a `==> PATH <==` line, and says on standard
//! error which it cannot. One SSH session instead of one per file: doctor
//! gathers from every host at once, and over 30 hosts the sessions (each a
//! process on the host) were most of its time.

use std::collections::HashMap;

use super::shell::Shell;

/// More than any file doctor reads whole (a host's mountinfo with
/// thousands of containers is a few MB).
const MOST_BYTES: &str = "67108864";

/// What `head` said of each file asked for.
#[derive(Debug, Default)]
pub struct Files {
    read: HashMap<String, Result<String, String>>,
}

impl Files {
    /// The text of `path`, or why it could not be read.
    pub fn get(&self, path: &str) -> Result<&str, String> {
        match self.read.get(path) {
            Some(Ok(text)) => Ok(text),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("{path} was not asked for")),
        }
    }
}

/// Reads `paths` on the host with one `head` run. Fails only when `head`
/// could not be run at all; a file it cannot open gets its own error.
pub async fn read(shell: &Shell<'_>, paths: &[&str]) -> Result<Files, String> {
    let mut args = vec!["-v", "-c", MOST_BYTES, "--"];
    args.extend_from_slice(paths);
    let out = shell.run("head", &args).await?;
    Ok(split(paths, &out.stdout, &out.stderr))
}

/// Splits `head -v`'s output into its files. Each file's text follows its
/// header line; the files after the first are preceded by an empty line,
/// which is `head`'s, not the file's.
fn split(paths: &[&str], stdout: &str, stderr: &str) -> Files {
    // Where each header is, in the order asked for (a file not opened has
    // none), searched for from the end of the last one found.
    let mut found: Vec<(&str, usize, usize)> = Vec::new();
    let mut from = 0;
    for path in paths {
        let header = format!("==> {path} <==\n");
        if let Some(at) = stdout[from..].find(&header).map(|i| from + i) {
            found.push((path, at, at + header.len()));
            from = at + header.len();
        }
    }
    let mut read = HashMap::new();
    for (n, (path, _, start)) in found.iter().enumerate() {
        let end = match found.get(n + 1) {
            // The empty line `head` puts before the next header.
            Some((_, next, _)) => next.saturating_sub(1).max(*start),
            None => stdout.len(),
        };
        read.insert(path.to_string(), Ok(stdout[*start..end].to_string()));
    }
    for path in paths {
        if read.contains_key(*path) {
            continue;
        }
        let quoted = format!("'{path}'");
        let why = stderr
            .lines()
            .find(|l| l.contains(&quoted) || l.contains(path))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| format!("head printed nothing of {path}"));
        read.insert(path.to_string(), Err(why));
    }
    Files { read }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: [&str; 4] = [
        "/proc/sys/kernel/osrelease",
        "/etc/os-release",
        "/etc/docker/daemon.json",
        "/proc/1/comm",
    ];

    #[test]
    fn each_file_gets_its_own_text_and_a_missing_one_its_error() {
        let stdout = "==> /proc/sys/kernel/osrelease <==\n6.1.0-25-amd64\n\n\
                      ==> /etc/os-release <==\nID=debian\nVERSION_ID=\"12\"\n\n\
                      ==> /proc/1/comm <==\nsystemd\n";
        let stderr =
            "head: cannot open '/etc/docker/daemon.json' for reading: No such file or directory\n";
        let files = split(&PATHS, stdout, stderr);
        assert_eq!(files.get(PATHS[0]), Ok("6.1.0-25-amd64\n"));
        assert_eq!(files.get(PATHS[1]), Ok("ID=debian\nVERSION_ID=\"12\"\n"));
        assert_eq!(
            files.get(PATHS[2]),
            Err("head: cannot open '/etc/docker/daemon.json' for reading: No such file or directory".into())
        );
        assert_eq!(files.get(PATHS[3]), Ok("systemd\n"));
        assert!(files.get("/etc/hostname").is_err());
    }

    #[test]
    fn a_file_without_a_last_newline_and_an_empty_one_keep_their_text() {
        // daemon.json often lacks its last newline: `head` adds only the
        // separating empty line's newline.
        let stdout = "==> /etc/docker/daemon.json <==\n{\"live-restore\": true}\n\
                      ==> /proc/1/comm <==\n\n\
                      ==> /etc/os-release <==\nID=debian\n";
        let paths = ["/etc/docker/daemon.json", "/proc/1/comm", "/etc/os-release"];
        let files = split(&paths, stdout, "");
        assert_eq!(files.get(paths[0]), Ok("{\"live-restore\": true}"));
        assert_eq!(files.get(paths[1]), Ok(""));
        assert_eq!(files.get(paths[2]), Ok("ID=debian\n"));
    }

    #[test]
    fn nothing_printed_names_every_file_as_unread() {
        let files = split(&PATHS, "", "");
        for path in PATHS {
            let why = files.get(path).unwrap_err();
            assert!(why.contains(path), "{why}");
        }
    }
}
