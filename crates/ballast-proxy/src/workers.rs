//! The data path's threads: one single-threaded runtime per core (a lane),
//! each with its own upstream connections and access-log batch.
//!
//! The accept loops hand every new connection to the lane with the fewest
//! open connections; from then on the connection, its requests and the
//! upstream connections they use stay on that lane's thread. Nothing on the
//! request path wakes another thread, which on a busy host is what a
//! work-stealing runtime spends most of its time on (measured in
//! BENCHMARKS.md). The control path (admin API, health checks) stays on the
//! caller's runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use crate::proxy::DataPath;

/// One lane: its runtime, what its requests share, its open connections.
struct Lane {
    runtime: Handle,
    data: Arc<DataPath>,
    /// Connections handed to this lane and not yet closed.
    open: Arc<AtomicUsize>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The lanes of the data path.
pub struct Workers {
    lanes: Vec<Lane>,
    /// Where the next tie between equally loaded lanes starts looking.
    next: AtomicUsize,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

/// The number of lanes for `asked` (0: one per core the process may use).
pub fn lane_count(asked: usize) -> usize {
    if asked > 0 {
        return asked;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Workers {
    /// Starts `count` lanes, each with the data path `make(lane)` builds.
    pub fn start(
        count: usize,
        mut make: impl FnMut(usize) -> DataPath,
    ) -> std::io::Result<Workers> {
        let mut lanes = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("proxy-lane-{index}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    // Dropping the runtime drops the connections still open.
                })?;
            lanes.push(Lane {
                runtime: handle,
                data: Arc::new(make(index)),
                open: Arc::new(AtomicUsize::new(0)),
                stop: Mutex::new(Some(stop)),
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Workers {
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `serve(data)` for one new connection on the least busy lane.
    pub fn spawn<F, Fut>(&self, serve: F)
    where
        F: FnOnce(Arc<DataPath>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let lane = self.least_busy();
        let open = Arc::clone(&lane.open);
        open.fetch_add(1, Ordering::Relaxed);
        let data = Arc::clone(&lane.data);
        lane.runtime.spawn(async move {
            let _closed = Closed(open);
            serve(data).await;
        });
    }

    fn least_busy(&self) -> &Lane {
        let n = self.lanes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &self.lanes[(start + i) % n])
            .min_by_key(|lane| lane.open.load(Ordering::Relaxed))
            .expect("there is at least one lane")
    }

    /// Open connections per lane, for tests and status.
    pub fn open_connections(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .map(|l| l.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops every lane (dropping what is still open), writes out their
    /// access-log batches and waits for their threads.
    pub async fn stop(&self) {
        for lane in &self.lanes {
            if let Some(stop) = take(&lane.stop) {
                let _ = stop.send(());
            }
        }
        let threads: Vec<JoinHandle<()>> =
            self.lanes.iter().filter_map(|l| take(&l.thread)).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        for lane in &self.lanes {
            lane.data.log.ship();
        }
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// Counts a connection as closed when its task ends, however it ends.
struct Closed(Arc<AtomicUsize>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
