//! A backup as it lies on the operator's machine: a gzip stream written to
//! `FILE.partial` and renamed to `FILE` only once complete, with its
//! SHA-256 in `FILE.sha256` in `sha256sum` format (so `sha256sum -c`
//! checks it too). Before a restore touches a host, the file is checked
//! end to end: the checksum, then a full decompression, so a truncated or
//! altered backup is refused while nothing has changed.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What a finished or verified backup holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The file's SHA-256, in hex.
    pub sha256: String,
    /// Bytes of the file (compressed).
    pub stored: u64,
    /// Bytes of what was backed up (uncompressed).
    pub raw: u64,
}

/// The checksum file beside `path`.
pub fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Counts and hashes the bytes that reach the file.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A backup being written. Dropped without [`Writer::finish`], it leaves
/// only `FILE.partial` behind, never a `FILE` that looks complete.
pub struct Writer {
    path: PathBuf,
    gz: GzEncoder<Hashing<File>>,
    raw: u64,
}

impl Writer {
    /// Starts `path` (as `path.partial`); refuses to overwrite a backup.
    pub fn create(path: &Path) -> Result<Writer> {
        let step = "start the backup file";
        if path.exists() {
            return Err(
                Error::input(step, format_args!("{} already exists", path.display())).hint(
                    "give another --to, or move the old backup away: a backup is never overwritten",
                ),
            );
        }
        let partial = partial_path(path);
        let file = File::create(&partial)
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", partial.display())))?;
        Ok(Writer {
            path: path.to_path_buf(),
            gz: GzEncoder::new(
                Hashing {
                    inner: file,
                    hash: Sha256::new(),
                    bytes: 0,
                },
                Compression::fast(),
            ),
            raw: 0,
        })
    }

    /// Appends backed-up bytes; returns how many so far.
    pub fn write(&mut self, chunk: &[u8]) -> Result<u64> {
        self.gz.write_all(chunk).map_err(|e| self.io_error(e))?;
        self.raw += chunk.len() as u64;
        Ok(self.raw)
    }

    /// Ends the stream, syncs it, renames it into place and writes the
    /// checksum beside it.
    pub fn finish(self) -> Result<Summary> {
        let step = "finish the backup file";
        let path = self.path.clone();
        let raw = self.raw;
        let hashing = self.gz.finish().map_err(|e| Error::failed(step, e))?;
        let Hashing {
            inner: file,
            hash,
            bytes,
        } = hashing;
        file.sync_all().map_err(|e| Error::failed(step, e))?;
        drop(file);
        let sha256 = hex(&hash.finalize());
        std::fs::rename(partial_path(&path), &path)
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sums = checksum_path(&path);
        std::fs::write(&sums, format!("{sha256}  {name}\n"))
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", sums.display())))?;
        Ok(Summary {
            sha256,
            stored: bytes,
            raw,
        })
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::failed(
            "write the backup file",
            format_args!("{}: {e}", partial_path(&self.path).display()),
        )
    }
}

/// Checks `path` against its `.sha256` and decompresses it to the end;
/// the error says which check failed.
pub fn verify(path: &Path) -> Result<Summary> {
    let step = "check the backup file";
    let sums = checksum_path(path);
    let expected = std::fs::read_to_string(&sums).map_err(|e| {
        Error::input(
            step,
            format_args!("no checksum beside it ({}: {e})", sums.display()),
        )
        .hint("a backup is restored only with the .sha256 file written beside it")
    })?;
    let expected = expected
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::input(step, format_args!("{} holds no SHA-256", sums.display())))?
        .to_ascii_lowercase();
    let (sha256, stored) = hash_file(path)?;
    if sha256 != expected {
        return Err(Error::input(
            step,
            format_args!(
                "{} does not match its checksum (SHA-256 {sha256}, expected {expected}): it was altered or cut short",
                path.display()
            ),
        )
        .hint("nothing was changed on the host; restore from an intact copy of the backup"));
    }
    let raw = std::io::copy(&mut reader(path)?, &mut std::io::sink()).map_err(|e| {
        Error::input(
            step,
            format_args!("{} is not a complete gzip stream: {e}", path.display()),
        )
        .hint("nothing was changed on the host; restore from an intact copy of the backup")
    })?;
    Ok(Summary {
        sha256,
        stored,
        raw,
    })
}

/// The backed-up bytes of `path`, decompressed as they are read.
pub fn reader(path: &Path) -> Result<GzDecoder<BufReader<File>>> {
    let file = File::open(path).map_err(|e| {
        Error::input(
            "open the backup file",
            format_args!("{}: {e}", path.display()),
        )
    })?;
    Ok(GzDecoder::new(BufReader::new(file)))
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let step = "check the backup file";
    let mut file = File::open(path)
        .map_err(|e| Error::input(step, format_args!("{}: {e}", path.display())))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hash.finalize()), bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(dir: &Path, content: &[u8]) -> PathBuf {
        let path = dir.join("db.backup.gz");
        let mut w = Writer::create(&path).unwrap();
        for chunk in content.chunks(1000) {
            w.write(chunk).unwrap();
        }
        let summary = w.finish().unwrap();
        assert_eq!(summary.raw, content.len() as u64);
        path
    }

    fn content() -> Vec<u8> {
        (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect()
    }

    #[test]
    fn a_finished_backup_verifies_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), &content());
        let summary = verify(&path).unwrap();
        assert_eq!(summary.raw, content().len() as u64);
        let sums = std::fs::read_to_string(checksum_path(&path)).unwrap();
        assert_eq!(sums, format!("{}  db.backup.gz\n", summary.sha256));
        let mut back = Vec::new();
        reader(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, content());
        assert!(!partial_path(&path).exists());
    }

    #[test]
    fn a_backup_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), b"x");
        let e = Writer::create(&path).err().unwrap();
        assert!(e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn an_unfinished_backup_leaves_no_complete_looking_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.gz");
        let mut w = Writer::create(&path).unwrap();
        w.write(b"half").unwrap();
        drop(w);
        assert!(!path.exists());
        assert!(verify(&path).is_err());
    }

    #[test]
    fn a_truncated_or_altered_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), &content());
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(e.to_string().contains("does not match its checksum"), "{e}");

        let mut altered = bytes.clone();
        altered[100] ^= 1;
        std::fs::write(&path, &altered).unwrap();
        assert!(verify(&path).is_err());

        // Cut short, with a checksum made to match: the gzip trailer catches it.
        let cut = &bytes[..bytes.len() - 20];
        std::fs::write(&path, cut).unwrap();
        let (sha, _) = hash_file(&path).unwrap();
        std::fs::write(checksum_path(&path), format!("{sha}  db.backup.gz\n")).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(e.to_string().contains("not a complete gzip stream"), "{e}");

        std::fs::write(&path, &bytes).unwrap();
        std::fs::remove_file(checksum_path(&path)).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(e.to_string().contains("no checksum beside it"), "{e}");
    }
}
