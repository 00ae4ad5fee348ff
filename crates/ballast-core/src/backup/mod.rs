//! Backups of a container's data, streamed over the host's connection to
//! a file on the operator's machine, and restores from such a file.
//!
//! Two methods:
//! - [`Method::Dump`]: a command in the running container writes the dump
//!   to its stdout (`pg_dump`, `redis-cli --rdb -`); restoring feeds the
//!   file to another command's stdin (`psql`). The service keeps running.
//! - [`Method::Archive`]: the data directories, read through the engine's
//!   archive API while the container is stopped (the caller stops it and
//!   starts it again), stored as one tar of one tar per directory.
//!
//! The file's format and checks live in [`file`]; a restore calls
//! [`file::verify`] before anything on the host changes.

pub mod file;

use std::io::Write;
use std::path::Path;

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::exec;
use crate::host::Host;
use crate::redact::redact;

pub use file::{verify, Summary};

/// How a container's data is backed up and put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Commands run in the running container: `backup` prints the dump,
    /// `restore` reads it on stdin.
    Dump {
        backup: Vec<String>,
        restore: Vec<String>,
    },
    /// The container's data directories (paths inside the container),
    /// copied while it is stopped.
    Archive { paths: Vec<String> },
}

impl Method {
    /// Whether the container must be stopped while this runs.
    pub fn needs_stop(&self) -> bool {
        matches!(self, Method::Archive { .. })
    }
}

/// Called with the bytes of data moved so far.
pub type OnBytes<'a> = &'a mut (dyn FnMut(u64) + Send);

/// Backs up `container` on `host` into `to` (see [`file`]).
pub async fn take(
    host: &Host,
    container: &str,
    method: &Method,
    to: &Path,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
) -> Result<Summary> {
    let mut writer = file::Writer::create(to)?;
    let taken = match method {
        Method::Dump { backup, .. } => {
            dump(host, container, backup, &mut writer, on_bytes, cancel).await
        }
        Method::Archive { paths } => archive(host, container, paths, &mut writer, on_bytes).await,
    };
    match taken {
        Ok(()) => writer.finish(),
        Err(e) => {
            drop(writer);
            let _ = std::fs::remove_file(partial(to));
            Err(e)
        }
    }
}

/// Puts the data of `from` back into `container` on `host`, after
/// checking the file end to end.
pub async fn put_back(
    host: &Host,
    container: &str,
    method: &Method,
    from: &Path,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
) -> Result<Summary> {
    let summary = verify(from)?;
    match method {
        Method::Dump { restore, .. } => {
            feed_dump(host, container, restore, from, on_bytes, cancel).await?
        }
        Method::Archive { .. } => unpack(host, container, from, on_bytes).await?,
    }
    Ok(summary)
}

fn partial(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// The last bytes a command wrote to stderr, kept for its error.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    const KEEP: usize = 2048;

    fn push(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
        if self.0.len() > Self::KEEP {
            self.0.drain(..self.0.len() - Self::KEEP);
        }
    }

    /// The tail in words, secrets redacted.
    fn text(&self) -> String {
        redact(String::from_utf8_lossy(&self.0).trim()).into_owned()
    }
}

fn command(argv: &[String], stdin: bool) -> exec::Command {
    exec::Command {
        argv: argv.to_vec(),
        stdin,
        tty: None,
    }
}

/// A command that exited non-zero, with what it said.
fn exit_error(host: &Host, step: &str, code: i64, tail: &Tail) -> Error {
    let said = tail.text();
    let cause = if said.is_empty() {
        format!("it exited with code {code}")
    } else {
        format!("it exited with code {code}: {said}")
    };
    Error::failed(step, cause).on(host.name())
}

async fn dump(
    host: &Host,
    container: &str,
    argv: &[String],
    writer: &mut file::Writer,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
) -> Result<()> {
    let step = format!("dump the data of {container} with {:?}", argv.join(" "));
    let mut tail = Tail::default();
    let mut failed: Option<Error> = None;
    let mut output = |out: exec::Output| match out {
        exec::Output::Stdout(chunk) if failed.is_none() => match writer.write(&chunk) {
            Ok(n) => on_bytes(n),
            Err(e) => failed = Some(e),
        },
        exec::Output::Stdout(_) => {}
        exec::Output::Stderr(chunk) => tail.push(&chunk),
    };
    let io = exec::Io {
        input: None,
        resizes: None,
        output: &mut output,
        cancel,
    };
    let code = exec::run(host, container, &command(argv, false), io).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    if code != 0 {
        return Err(exit_error(host, &step, code, &tail));
    }
    Ok(())
}

async fn feed_dump(
    host: &Host,
    container: &str,
    argv: &[String],
    from: &Path,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
) -> Result<()> {
    let step = format!("restore the data of {container} with {:?}", argv.join(" "));
    let (input, chunks) = mpsc::channel::<Bytes>(8);
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<u64>();
    let mut reader = file::reader(from)?;
    // Reading and decompressing is blocking work: its own thread, a
    // bounded channel so memory stays small whatever the file's size.
    let reading = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        let mut sent = 0u64;
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if input
                .blocking_send(Bytes::copy_from_slice(&buf[..n]))
                .is_err()
            {
                return Ok(());
            }
            sent += n as u64;
            let _ = sent_tx.send(sent);
        }
    });
    let mut tail = Tail::default();
    let mut output = |out: exec::Output| {
        while let Ok(n) = sent_rx.try_recv() {
            on_bytes(n);
        }
        let (exec::Output::Stderr(chunk) | exec::Output::Stdout(chunk)) = out;
        tail.push(&chunk);
    };
    let io = exec::Io {
        input: Some(chunks),
        resizes: None,
        output: &mut output,
        cancel,
    };
    let code = exec::run(host, container, &command(argv, true), io).await?;
    match reading.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(Error::failed(
                &step,
                format_args!("reading {}: {e}", from.display()),
            ))
        }
        Err(e) => return Err(Error::failed(&step, e)),
    }
    while let Ok(n) = sent_rx.try_recv() {
        on_bytes(n);
    }
    if code != 0 {
        return Err(exit_error(host, &step, code, &tail));
    }
    Ok(())
}

/// Lets [`tar::Builder`] write into the backup file.
struct Sink<'a> {
    writer: &'a mut file::Writer,
    on_bytes: OnBytes<'a>,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self
            .writer
            .write(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        (self.on_bytes)(n);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The entry name of a container path in the outer tar, and back.
fn entry_name(path: &str) -> String {
    format!("{}.tar", path.trim_matches('/'))
}

fn container_path(entry: &str) -> Option<String> {
    let inner = entry.strip_suffix(".tar")?;
    (!inner.is_empty() && !inner.split('/').any(|p| p == ".." || p.is_empty()))
        .then(|| format!("/{inner}"))
}

async fn archive(
    host: &Host,
    container: &str,
    paths: &[String],
    writer: &mut file::Writer,
    on_bytes: OnBytes<'_>,
) -> Result<()> {
    let engine = host.engine();
    let mut outer = tar::Builder::new(Sink { writer, on_bytes });
    for path in paths {
        let step = format!("copy {path} out of {container}");
        // Spooled to a local file first: the outer tar needs each inner
        // one's size before its bytes.
        let mut spool = tempfile::tempfile().map_err(|e| Error::failed(&step, e))?;
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = engine
            .docker()
            .download_from_container(container, Some(options));
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| engine.error(&step, e))?;
            spool
                .write_all(&chunk)
                .map_err(|e| Error::failed(&step, e))?;
            size += chunk.len() as u64;
        }
        std::io::Seek::rewind(&mut spool).map_err(|e| Error::failed(&step, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_cksum();
        outer
            .append_data(&mut header, entry_name(path), spool)
            .map_err(|e| Error::failed(&step, e))?;
    }
    outer
        .into_inner()
        .map(|_| ())
        .map_err(|e| Error::failed("finish the backup archive", e))
}

async fn unpack(host: &Host, container: &str, from: &Path, on_bytes: OnBytes<'_>) -> Result<()> {
    let engine = host.engine();
    let mut outer = tar::Archive::new(file::reader(from)?);
    let step = "read the backup archive";
    let entries = outer.entries().map_err(|e| Error::input(step, e))?;
    let mut moved = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::input(step, e))?;
        let name = entry.path().map_err(|e| Error::input(step, e))?;
        let name = name.to_string_lossy().into_owned();
        let path = container_path(&name).ok_or_else(|| {
            Error::input(
                step,
                format_args!("unexpected entry {name:?}: not a backup made by ballast"),
            )
        })?;
        let parent = Path::new(&path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let put = format!("put {path} back into {container}");
        // Spooled to a local file and streamed from there: memory stays
        // small whatever the data's size.
        let mut spool = tempfile::tempfile().map_err(|e| Error::failed(&put, e))?;
        moved += std::io::copy(&mut entry, &mut spool).map_err(|e| Error::input(step, e))?;
        std::io::Seek::rewind(&mut spool).map_err(|e| Error::failed(&put, e))?;
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(spool));
        let options = UploadToContainerOptionsBuilder::default()
            .path(&parent)
            .build();
        engine
            .call(
                &put,
                engine.docker().upload_to_container(
                    container,
                    Some(options),
                    bollard::body_try_stream(body),
                ),
            )
            .await?;
        on_bytes(moved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_survive_the_outer_tar_and_nothing_else_gets_in() {
        for p in ["/var/lib/postgresql/data", "/data", "/srv/a/b/"] {
            let back = container_path(&entry_name(p)).unwrap();
            assert_eq!(back, format!("/{}", p.trim_matches('/')));
        }
        assert_eq!(container_path("../etc.tar"), None);
        assert_eq!(container_path("a/../../b.tar"), None);
        assert_eq!(container_path("data"), None);
        assert_eq!(container_path(".tar"), None);
    }

    #[test]
    fn only_archives_stop_the_container() {
        assert!(Method::Archive { paths: vec![] }.needs_stop());
        let dump = Method::Dump {
            backup: vec!["pg_dump".into()],
            restore: vec!["psql".into()],
        };
        assert!(!dump.needs_stop());
    }

    #[test]
    fn a_failed_command_names_its_code_and_keeps_only_the_tail() {
        let mut t = Tail::default();
        t.push(&vec![b'x'; 5000]);
        t.push(b"pg_dump: error: connection refused");
        assert!(t.0.len() <= Tail::KEEP);
        assert!(t.text().ends_with("connection refused"));
    }
}
