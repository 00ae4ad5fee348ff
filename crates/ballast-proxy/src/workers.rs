//! The data path's threads: one single-threaded runtime per core (a lane),
//! each with its own upstream connections and access-log batch.
//!
//! The accept loops hand every new connection to the lane with the fewest
//! open connections (a WebSocket tunnel counts as one); from then on the
//! connection, its requests and the upstream connections they use stay on
//! that lane's thread. So the streams of one HTTP/2 connection (a load
//! balancer in front, say) share one core. Nothing on the
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

use crate::access_log::AccessLogger;
use crate::proxy::DataPath;

/// One lane: its runtime, what its requests share, its open connections.
struct Lane {
    runtime: Handle,
    data: Arc<DataPath>,
    /// Connections and tunnels on this lane now.
    open: Load,
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
    /// Starts `count` lanes, each with the data path `make(load)` builds
    /// (`load` is the lane's count of connections and tunnels).
    pub fn start(count: usize, mut make: impl FnMut(Load) -> DataPath) -> std::io::Result<Workers> {
        let mut lanes = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (stop, stopped) = oneshot::channel::<()>();
            let (runtime_tx, runtime_rx) = std::sync::mpsc::channel();
            // The runtime is built, run and dropped on its own thread: a
            // runtime must never be dropped inside another one.
            let thread = std::thread::Builder::new()
                .name(format!("proxy-lane-{index}"))
                .spawn(move || {
                    let runtime = match Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = runtime_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = runtime_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    // Dropping the runtime drops the connections still open.
                })?;
            let runtime = runtime_rx.recv().map_err(|_| {
                std::io::Error::other(format!("proxy lane {index} ended before it started"))
            })??;
            let open = Load::default();
            lanes.push(Lane {
                runtime,
                data: Arc::new(make(open.clone())),
                open,
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
        let counted = lane.open.count();
        let data = Arc::clone(&lane.data);
        lane.runtime.spawn(async move {
            let _counted = counted;
            serve(data).await;
        });
    }

    fn least_busy(&self) -> &Lane {
        let n = self.lanes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &self.lanes[(start + i) % n])
            .min_by_key(|lane| lane.open.now())
            .expect("there is at least one lane")
    }

    /// Open connections per lane, for tests and status.
    pub fn open_connections(&self) -> Vec<usize> {
        self.lanes.iter().map(|l| l.open.now()).collect()
    }

    /// Waits until no connection or tunnel is open on any lane, or until
    /// `deadline`.
    pub async fn until_idle(&self, deadline: tokio::time::Instant) {
        // Polled: the counts change on every lane's thread, and a drain is
        // rare enough that a wake-up per connection would cost more.
        while self.open_connections().iter().sum::<usize>() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Each lane's access logger, to write out their batches at the end.
    pub fn loggers(&self) -> Vec<AccessLogger> {
        self.lanes.iter().map(|l| l.data.log.clone()).collect()
    }

    /// Stops every lane (dropping what is still open) and waits for their
    /// threads.
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
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// How many connections and tunnels a lane holds; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Load(Arc<AtomicUsize>);

impl Load {
    /// Counts one more until the returned guard is dropped.
    pub fn count(&self) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(&self.0))
    }

    fn now(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One connection or tunnel counted in its lane's [`Load`], however it ends.
#[derive(Debug)]
pub struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
