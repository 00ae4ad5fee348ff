//! The bytes that cross the wire: the save tarball, filtered and compressed
//! (as `delivery.compression` says) once per set of layers left out, on a
//! blocking thread, into a file next
//! to the tarball; every host lacking the same layers reads that file as it
//! grows and hands it to its HTTP body chunk by chunk. One compression
//! feeds a whole batch (compressing per host cost a level-6 gzip of the
//! missing layers per host, on the cores the hosts' engines need), and an
//! image of any size is sent without being held in memory.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flate2::write::GzEncoder;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::{archive, oci};
use crate::config::Compression;

/// Size of one chunk of the body, and how often the compressor says how
/// far it got.
const CHUNK: usize = 256 << 10;

/// How far a compression got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Bytes written so far; more to come.
    Writing(u64),
    /// Finished: this many bytes in all.
    Done(u64),
    /// Failed: its kind and why.
    Failed(io::ErrorKind, String),
}

/// The archive written from the save tarball before it is compressed.
#[derive(Debug, Clone)]
pub enum Written {
    /// The tarball itself, filtered.
    Save,
    /// Its OCI layout.
    Oci(Arc<oci::Layout>),
}

impl Written {
    fn write<W: Write>(&self, tarball: &Path, skip: &HashSet<String>, out: W) -> io::Result<W> {
        match self {
            Written::Save => archive::write_filtered(tarball, skip, out),
            Written::Oci(layout) => layout.write(tarball, skip, out),
        }
    }
}

/// One compression of a filtered tarball, shared by every host that lacks
/// the same layers.
#[derive(Debug)]
pub struct Shared {
    path: PathBuf,
    progress: watch::Receiver<Stage>,
    cancel: Arc<AtomicBool>,
}

impl Shared {
    /// Starts compressing the archive `written` from `tarball`, without
    /// the layer entries in `skip`, into `dest`.
    pub fn start(
        tarball: PathBuf,
        written: Written,
        skip: HashSet<String>,
        dest: PathBuf,
        compression: Compression,
    ) -> Shared {
        let (tx, progress) = watch::channel(Stage::Writing(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled = cancel.clone();
        let path = dest.clone();
        tokio::task::spawn_blocking(move || {
            let result = (|| {
                let file = std::fs::File::create(&dest)?;
                let sink = Counting {
                    file: io::BufWriter::with_capacity(CHUNK, file),
                    written: 0,
                    told: 0,
                    tx: &tx,
                    cancelled: &cancelled,
                };
                let level = match compression {
                    // Resolved by size before it gets here.
                    Compression::GzipFast | Compression::Auto => Some(flate2::Compression::fast()),
                    Compression::Gzip => Some(flate2::Compression::default()),
                    Compression::None => None,
                };
                let mut sink = match level {
                    Some(level) => {
                        let gz = GzEncoder::new(sink, level);
                        written.write(&tarball, &skip, gz)?.finish()?
                    }
                    None => written.write(&tarball, &skip, sink)?,
                };
                sink.file.flush()?;
                Ok::<u64, io::Error>(sink.written)
            })();
            let _ = tx.send(match result {
                Ok(total) => Stage::Done(total),
                Err(e) => Stage::Failed(e.kind(), e.to_string()),
            });
        });
        Shared {
            path,
            progress,
            cancel,
        }
    }

    /// Makes the compressing thread stop at its next chunk (nobody will
    /// read the rest).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// A body reading the compression from its start, as it grows.
    pub fn reader(&self) -> Reader {
        let sent = Arc::new(AtomicU64::new(0));
        let state = ReadState {
            path: self.path.clone(),
            progress: self.progress.clone(),
            file: None,
            offset: 0,
            sent: sent.clone(),
        };
        let body = futures_util::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        Reader {
            body: Box::pin(body),
            sent,
            progress: Progress {
                progress: self.progress.clone(),
            },
        }
    }
}

/// One host's reading of a shared compression.
pub struct Reader {
    /// The compressed archive, chunk by chunk; an error ends the body.
    pub body: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    /// Compressed bytes handed to the body so far.
    pub sent: Arc<AtomicU64>,
    /// How the compression goes.
    pub progress: Progress,
}

/// How a shared compression goes, as one reader sees it.
pub struct Progress {
    progress: watch::Receiver<Stage>,
}

impl Progress {
    /// How the compression ended, if it has.
    pub fn outcome_now(&self) -> Option<io::Result<()>> {
        match &*self.progress.borrow() {
            Stage::Done(_) => Some(Ok(())),
            Stage::Failed(kind, why) => Some(Err(io::Error::new(*kind, why.clone()))),
            Stage::Writing(_) => None,
        }
    }

    /// How the compression ended, once it has: its error is the real cause
    /// of a failed load. Waits for it.
    pub async fn outcome(&mut self) -> io::Result<()> {
        loop {
            match &*self.progress.borrow_and_update() {
                Stage::Done(_) => return Ok(()),
                Stage::Failed(kind, why) => return Err(io::Error::new(*kind, why.clone())),
                Stage::Writing(_) => {}
            }
            if self.progress.changed().await.is_err() {
                return Err(io::Error::other(
                    "the compressing thread ended without a word",
                ));
            }
        }
    }
}

struct ReadState {
    path: PathBuf,
    progress: watch::Receiver<Stage>,
    file: Option<tokio::fs::File>,
    offset: u64,
    sent: Arc<AtomicU64>,
}

impl ReadState {
    /// The next chunk written past `offset`, waiting for the compressor
    /// when it has not written one yet; `None` at the end.
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let (ready, done) = match &*self.progress.borrow_and_update() {
                Stage::Writing(n) => (*n, false),
                Stage::Done(n) => (*n, true),
                Stage::Failed(kind, why) => return Err(io::Error::new(*kind, why.clone())),
            };
            if self.offset < ready {
                let want = usize::try_from(ready - self.offset)
                    .unwrap_or(CHUNK)
                    .min(CHUNK);
                let chunk = self.read(want).await?;
                self.offset += chunk.len() as u64;
                self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                return Ok(Some(chunk));
            }
            if done {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                return Err(io::Error::other(
                    "the compressing thread ended without a word",
                ));
            }
        }
    }

    async fn read(&mut self, want: usize) -> io::Result<Bytes> {
        if self.file.is_none() {
            let mut file = tokio::fs::File::open(&self.path).await?;
            file.seek(io::SeekFrom::Start(self.offset)).await?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        let mut buf = vec![0; want];
        file.read_exact(&mut buf).await?;
        Ok(Bytes::from(buf))
    }
}

/// The compressed file as it is written: counts what is on disk, flushed,
/// and tells the readers every chunk.
struct Counting<'a> {
    file: io::BufWriter<std::fs::File>,
    written: u64,
    told: u64,
    tx: &'a watch::Sender<Stage>,
    cancelled: &'a AtomicBool,
}

impl Write for Counting<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "no host reads the image any more",
            ));
        }
        let n = self.file.write(data)?;
        self.written += n as u64;
        if self.written - self.told >= CHUNK as u64 {
            self.file.flush()?;
            self.told = self.written;
            let _ = self.tx.send(Stage::Writing(self.written));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Read;

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    async fn read_all(mut reader: Reader) -> (Vec<u8>, u64) {
        let mut gz = Vec::new();
        while let Some(chunk) = reader.body.next().await {
            gz.extend_from_slice(&chunk.unwrap());
        }
        reader.progress.outcome().await.unwrap();
        (gz, reader.sent.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn every_reader_gets_the_one_compressed_filtered_archive() {
        for compression in [Compression::GzipFast, Compression::Gzip, Compression::None] {
            let dir = tempfile::tempdir().unwrap();
            let fake = archive::tests::Fake {
                layers: vec![
                    archive::tests::layer_tar("big", &vec![1; 600_000]),
                    archive::tests::layer_tar("noise", &noise(1_500_000)),
                    archive::tests::layer_tar("VERSION", b"2\n"),
                ],
                oci: false,
                repeat_first: false,
            };
            let (path, _) = fake.write(dir.path());
            let saved = archive::read(&path).unwrap();
            let skip = archive::skipped_entries(&saved.layers, 1);
            let out = dir.path().join("out");
            let shared = Shared::start(
                path.clone(),
                Written::Save,
                skip.clone(),
                out.clone(),
                compression,
            );
            // Readers that start together and one that starts late all get
            // the whole compression, made once.
            let (a, b) = tokio::join!(read_all(shared.reader()), read_all(shared.reader()));
            let c = read_all(shared.reader()).await;
            assert_eq!(a, b);
            assert_eq!(a, c);
            let (sent_bytes, sent) = a;
            assert_eq!(sent, sent_bytes.len() as u64);
            assert_eq!(sent_bytes, std::fs::read(&out).unwrap());
            let mut plain = Vec::new();
            match compression {
                Compression::None => plain = sent_bytes.clone(),
                Compression::Gzip | Compression::GzipFast | Compression::Auto => {
                    flate2::read::GzDecoder::new(sent_bytes.as_slice())
                        .read_to_end(&mut plain)
                        .unwrap();
                }
            }
            assert_eq!(
                plain,
                archive::write_filtered(&path, &skip, Vec::new()).unwrap(),
                "{compression:?}"
            );
            assert!(
                sent_bytes.len() < 1_600_000,
                "{compression:?}: the big layer stayed home: {} bytes",
                sent_bytes.len()
            );
        }
    }

    #[tokio::test]
    async fn a_missing_tarball_fails_every_body_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::start(
            PathBuf::from("/no/such/image.tar"),
            Written::Save,
            HashSet::new(),
            dir.path().join("out.gz"),
            Compression::default(),
        );
        let mut reader = shared.reader();
        let first = reader.body.next().await.unwrap();
        assert!(first.is_err());
        let e = reader.progress.outcome().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(shared.reader().body.next().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn cancelling_stops_the_compressing_thread() {
        let dir = tempfile::tempdir().unwrap();
        let fake = archive::tests::Fake {
            layers: vec![archive::tests::layer_tar("noise", &noise(8_000_000))],
            oci: true,
            repeat_first: false,
        };
        let (path, _) = fake.write(dir.path());
        let shared = Shared::start(
            path,
            Written::Save,
            HashSet::new(),
            dir.path().join("out.gz"),
            Compression::default(),
        );
        let mut reader = shared.reader();
        reader.body.next().await.unwrap().unwrap();
        shared.cancel();
        let e = reader.progress.outcome().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
