//! The project's load client (`ballast_lab::load`), plus a handle that
//! starts and stops it from synchronous test code.

use std::time::Duration;

pub use ballast_lab::load::*;
use tokio::sync::watch;

/// A load started on a runtime from synchronous test code, until stopped.
pub struct Running {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<LoadReport>,
}

impl Running {
    /// Starts [`run`] on `rt` against `urls`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        urls: Vec<String>,
        rate: u32,
        workers: u32,
    ) -> Running {
        let urls = parse_urls(&urls).expect("load URLs");
        let (stop, stopped) = watch::channel(false);
        let handle = rt.spawn(run(urls, rate, workers, stopped));
        Running { stop, handle }
    }

    /// Lets the last requests land (300 ms), stops, and reports.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> LoadReport {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.send(true).unwrap();
        rt.block_on(self.handle).unwrap()
    }
}
