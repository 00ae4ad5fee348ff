//! Tests of the access log: line format, batching, and drop accounting
//! against a writer that can be made to stall.

use super::*;

fn entry() -> AccessEntry {
    AccessEntry {
        time: SystemTime::now(),
        client: "127.0.0.1".parse().unwrap(),
        scheme: "http",
        protocol: Version::HTTP_11,
        method: Method::GET,
        host: HeaderValue::from_static("shop.example.com"),
        path: PathAndQuery::from_static("/cart?id=1"),
        status: 200,
        service: None,
        target: Some(Target::new("10.0.0.1:80")),
        duration_ms: 3,
        error: None,
        dropped: 0,
    }
}

#[tokio::test]
async fn each_request_is_one_json_line() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let logger = AccessLogger::start(&AccessLog::Channel(tx));
    logger.log(entry());
    let line = rx.recv().await.unwrap();
    assert!(!line.contains('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["status"], 200);
    assert_eq!(value["protocol"], "HTTP/1.1");
    assert_eq!(value["method"], "GET");
    assert_eq!(value["host"], "shop.example.com");
    assert_eq!(value["target"], "10.0.0.1:80");
    assert_eq!(value["path"], "/cart?id=1");
    assert!(value.get("service").is_none());
    assert!(value.get("error").is_none());
    assert!(value.get("dropped").is_none());
    assert!(value["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn lines_that_cannot_be_sent_are_counted_on_the_next() {
    let (tx, rx) = mpsc::unbounded_channel();
    let logger = AccessLogger::start(&AccessLog::Channel(tx));
    drop(rx);
    logger.log(entry());
    logger.log(entry());
    assert_eq!(logger.dropped.load(Ordering::Relaxed), 2);
}

/// A logger batching into a writer thread that writes to `out`.
fn batched(out: impl Write + Send + 'static, queue: usize) -> AccessLogger {
    let (writer, chunks) = sync_channel(queue);
    std::thread::spawn(move || write_chunks(chunks, out));
    AccessLogger {
        sink: Sink::Batched {
            batch: Arc::default(),
            writer,
        },
        dropped: Arc::default(),
    }
}

/// A `Write` whose bytes tests can read, that can be made to stall,
/// and that says when a write begins.
#[derive(Clone)]
struct Shared {
    bytes: Arc<Mutex<Vec<u8>>>,
    gate: Arc<Mutex<()>>,
    began: std::sync::mpsc::Sender<()>,
}

impl Shared {
    fn new() -> (Shared, Receiver<()>) {
        let (began, writes) = std::sync::mpsc::channel();
        let shared = Shared {
            bytes: Arc::default(),
            gate: Arc::default(),
            began,
        };
        (shared, writes)
    }

    fn text(&self) -> String {
        String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.began.send(());
        let _open = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn lines_travel_in_batches_and_finish_waits_for_them() {
    let (out, _writes) = Shared::new();
    let logger = batched(out.clone(), QUEUE);
    for _ in 0..3 {
        logger.log(entry());
    }
    let waiting = || match &logger.sink {
        Sink::Batched { batch, .. } => lock(batch).lines,
        _ => unreachable!(),
    };
    assert_eq!(waiting(), 3, "lines wait for the batch to be handed over");
    tokio::time::sleep(FLUSH_AFTER * 2).await;
    assert_eq!(waiting(), 0, "handed over after FLUSH_AFTER");
    let lane = logger.lane();
    lane.log(entry());
    tokio::task::spawn_blocking(move || finish(&[lane]))
        .await
        .unwrap();
    let text = out.text();
    assert_eq!(text.lines().count(), 4, "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[tokio::test]
async fn a_stalled_writer_drops_batches_and_counts_their_lines() {
    let (out, writes) = Shared::new();
    let stall = out.gate.lock().unwrap();
    let logger = batched(out.clone(), 1);
    let log_now = |logger: &AccessLogger| {
        logger.log(entry());
        logger.ship();
    };
    log_now(&logger);
    writes.recv().unwrap(); // the writer holds line 1, stalled
    log_now(&logger); // line 2 waits in the queue
    for _ in 0..3 {
        log_now(&logger); // lines 3 to 5 find the queue full
    }
    drop(stall);
    let finisher = logger.clone();
    tokio::task::spawn_blocking(move || finish(&[finisher]))
        .await
        .unwrap();
    logger.log(entry());
    let finisher = logger.clone();
    tokio::task::spawn_blocking(move || finish(&[finisher]))
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = out
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[..2].iter().all(|l| l.get("dropped").is_none()));
    assert_eq!(lines[2]["dropped"], 3, "the last line counts lines 3 to 5");
}

#[test]
fn a_stuck_stdout_does_not_hold_the_shutdown() {
    let (out, writes) = Shared::new();
    let _stuck = out.gate.lock().unwrap();
    let logger = batched(out.clone(), 1);
    // Outside a runtime each line is handed over at once.
    logger.log(entry());
    writes.recv().unwrap(); // the writer is stuck on line 1
    logger.log(entry()); // line 2 fills the queue
    logger.log(entry()); // line 3 finds it full
    let started = std::time::Instant::now();
    finish_within(std::slice::from_ref(&logger), Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        logger.dropped.load(Ordering::Relaxed),
        1,
        "line 3 is counted"
    );
}
