//! The hosts of a service, connected together with bounded concurrency. A
//! host that does not answer is recorded with its error instead of stopping
//! the others, so read commands show what they can and deploy can refuse
//! with the full list.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::{stream, StreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::host::{Host, Reach};

pub struct Fleet {
    /// Connected hosts by name, in config order of names.
    pub hosts: BTreeMap<String, Host>,
    /// Hosts that did not answer, with why.
    pub unreachable: Vec<Error>,
    /// Names in config order.
    pub order: Vec<String>,
    /// How many hosts are worked on at once (`ssh.concurrency`).
    pub concurrency: usize,
}

impl Fleet {
    /// Connects to every host in `names`, `concurrency` at a time.
    pub async fn connect(names: &[String], reach: &Reach, concurrency: usize) -> Fleet {
        let results: Vec<(String, Result<Host>)> = stream::iter(names.iter().cloned())
            .map(|name| async move {
                let target = reach.target(&name);
                let host = Host::connect(&name, &target).await;
                (name, host)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut fleet = Fleet {
            hosts: BTreeMap::new(),
            unreachable: Vec::new(),
            order: names.to_vec(),
            concurrency: concurrency.max(1),
        };
        for (name, result) in results {
            match result {
                Ok(host) => {
                    fleet.hosts.insert(name, host);
                }
                Err(e) => fleet.unreachable.push(e.on(name)),
            }
        }
        fleet.unreachable.sort_by(|a, b| a.host.cmp(&b.host));
        fleet
    }

    /// Fails unless every host answered, naming each one that did not.
    pub fn require_all(&self, step: &str) -> Result<()> {
        match self.unreachable.as_slice() {
            [] => Ok(()),
            [one] => Err(one.clone()),
            many => Err(Error::new(
                ErrorKind::Unreachable,
                step,
                format_args!(
                    "{} hosts did not answer:\n{}",
                    many.len(),
                    many.iter()
                        .map(|e| format!("  {e}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            )
            .hint("bring them back or fix their SSH settings, then try again")),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// The first host of the config that answered: it keeps the lock.
    pub fn primary(&self) -> Option<&Host> {
        self.order.iter().find_map(|n| self.hosts.get(n))
    }

    /// Runs `work` on every connected host, [`Fleet::concurrency`] at a
    /// time, and returns the results by host name.
    pub async fn each<'a, T, F, Fut>(&'a self, work: F) -> Vec<(String, T)>
    where
        F: Fn(&'a Host) -> Fut,
        Fut: Future<Output = T> + 'a,
    {
        let mut out: Vec<(String, T)> = stream::iter(self.hosts.values())
            .map(|h| {
                let fut = work(h);
                async move { (h.name().to_string(), fut.await) }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub async fn close(self) {
        for (_, host) in self.hosts {
            host.close().await;
        }
    }
}
