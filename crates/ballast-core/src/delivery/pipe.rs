//! The bytes that cross the wire: the save tarball, filtered and gzipped on a
//! blocking thread, handed to the HTTP body chunk by chunk through a bounded
//! channel, so an image of any size is sent without being held in memory.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::archive;

/// Size of one chunk of the body.
const CHUNK: usize = 256 << 10;
/// Chunks compressed ahead of the network.
const CHUNKS_AHEAD: usize = 8;

/// A running compression of a filtered tarball.
pub struct Pipe {
    /// The gzipped archive, chunk by chunk; an error ends the body.
    pub body: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    /// Compressed bytes handed to the body so far.
    pub sent: Arc<AtomicU64>,
    /// The compressing thread; its error, if any, is the real cause.
    pub producer: JoinHandle<io::Result<()>>,
    /// Set to make the compressing thread stop at its next chunk.
    pub cancel: Arc<AtomicBool>,
}

/// Starts compressing `tarball` without the entries in `skip`.
pub fn start(tarball: PathBuf, skip: HashSet<String>) -> Pipe {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_AHEAD);
    let cancel = Arc::new(AtomicBool::new(false));
    let cancelled = cancel.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let sink = ChunkSender {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            cancelled,
        };
        let result = (|| {
            let gz = GzEncoder::new(sink, Compression::default());
            let gz = archive::write_filtered(&tarball, &skip, gz)?;
            gz.finish()?.flush()
        })();
        if let Err(e) = &result {
            // Fail the body too, so the engine does not load a cut archive.
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .inspect(move |item| {
        if let Ok(chunk) = item {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    Pipe {
        body: Box::pin(body),
        sent,
        producer,
        cancel,
    }
}

/// A writer that sends what it is given down the channel in chunks.
struct ChunkSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    cancelled: Arc<AtomicBool>,
}

impl ChunkSender {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading");
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test]
    async fn the_body_is_the_gzipped_filtered_archive() {
        let dir = tempfile::tempdir().unwrap();
        let fake = archive::tests::Fake {
            layers: vec![
                archive::tests::layer_tar("big", &vec![1; 600_000]),
                archive::tests::layer_tar("VERSION", b"2\n"),
            ],
            oci: false,
            repeat_first: false,
        };
        let (path, _) = fake.write(dir.path());
        let saved = archive::read(&path).unwrap();
        let skip = archive::skipped_entries(&saved.layers, 1);
        let mut pipe = start(path.clone(), skip.clone());
        let mut gz = Vec::new();
        while let Some(chunk) = pipe.body.next().await {
            gz.extend_from_slice(&chunk.unwrap());
        }
        pipe.producer.await.unwrap().unwrap();
        assert_eq!(pipe.sent.load(Ordering::Relaxed), gz.len() as u64);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(
            plain,
            archive::write_filtered(&path, &skip, Vec::new()).unwrap()
        );
        assert!(
            gz.len() < 4096,
            "the big layer stayed home: {} bytes",
            gz.len()
        );
    }

    #[tokio::test]
    async fn a_missing_tarball_fails_the_body_and_says_why() {
        let mut pipe = start(PathBuf::from("/no/such/image.tar"), HashSet::new());
        let first = pipe.body.next().await.unwrap();
        assert!(first.is_err());
        let e = pipe.producer.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn cancelling_stops_the_compressing_thread() {
        let dir = tempfile::tempdir().unwrap();
        // Incompressible, and more than the channel holds.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let big: Vec<u8> = (0..4_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let fake = archive::tests::Fake {
            layers: vec![archive::tests::layer_tar("noise", &big)],
            oci: true,
            repeat_first: false,
        };
        let (path, _) = fake.write(dir.path());
        let mut pipe = start(path, HashSet::new());
        pipe.body.next().await.unwrap().unwrap();
        pipe.cancel.store(true, Ordering::Relaxed);
        let mut body = pipe.body;
        // Drain what was already queued; the thread then stops by itself.
        let drain = tokio::spawn(async move { while body.next().await.is_some() {} });
        let e = pipe.producer.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        drain.await.unwrap();
    }
}
