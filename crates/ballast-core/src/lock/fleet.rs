//! The lock on a set of hosts: [`FleetLock`] takes it on the host whose name
//! sorts first, then on the others; gives back exactly what it took when one
//! refuses; and renews the lease in the background until released.
//! [`give_back`] cleans up after a command stopped while taking it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::{stream, StreamExt};

use super::{acquire, release, renew, LockInfo, Takeover, RENEW_EVERY, UNREACHABLE_HINT};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::host::Host;

/// The deploy lock held on a set of hosts, its lease renewed in the
/// background until [`FleetLock::release`]. Dropping it stops the renewal
/// but leaves the lock on the hosts (dropping cannot run commands): the
/// lease then expires, and a later run on this machine takes it over once
/// this process is gone.
pub struct FleetLock {
    service: String,
    info: LockInfo,
    /// The hosts it holds, sorted.
    hosts: Vec<String>,
    takeovers: Vec<Takeover>,
    fleet: Arc<Fleet>,
    /// How many hosts are renewed and released at once.
    concurrency: usize,
    /// Hosts where the lock was taken away while held.
    lost: Arc<Mutex<Vec<Error>>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl FleetLock {
    /// Takes the lock of `service` with `info` on each host of `hosts` (all
    /// connected in `fleet`): first on the one whose name sorts first, then
    /// on the others, `concurrency` at a time. If one refuses, the locks taken
    /// are given back and the refusal returned. Unless `info` is manual, the
    /// lease is renewed every [`RENEW_EVERY`] until released or dropped.
    pub async fn acquire(
        fleet: &Arc<Fleet>,
        hosts: &[String],
        service: &str,
        info: LockInfo,
        concurrency: usize,
    ) -> Result<FleetLock> {
        let mut names = hosts.to_vec();
        names.sort();
        names.dedup();
        let takeovers = take_all(
            &names,
            concurrency,
            &info.token,
            |name| {
                let info = &info;
                async move { acquire(connected(fleet, &name)?, service, info).await }
            },
            |name| {
                let token = &info.token;
                async move {
                    release(connected(fleet, &name)?, service, token)
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
        let lost = Arc::new(Mutex::new(Vec::new()));
        let renewer = (!info.manual).then(|| {
            tokio::spawn(renew_every(
                Arc::clone(fleet),
                names.clone(),
                service.to_string(),
                info.token.clone(),
                concurrency,
                Arc::clone(&lost),
            ))
        });
        Ok(FleetLock {
            service: service.to_string(),
            info,
            hosts: names,
            takeovers,
            fleet: Arc::clone(fleet),
            concurrency,
            lost,
            renewer,
        })
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The hosts it holds, sorted by name.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Locks of gone holders removed to take this one: for the audit log.
    pub fn takeovers(&self) -> &[Takeover] {
        &self.takeovers
    }

    /// Hosts where someone removed or took the lock while it was held.
    pub fn lost(&self) -> Vec<Error> {
        self.lost.lock().expect("lost list").clone()
    }

    /// Stops the renewal and gives the lock back on every host, by token.
    /// Fails naming each host where that did not work.
    pub async fn release(mut self) -> Result<()> {
        if let Some(task) = self.renewer.take() {
            task.abort();
            let _ = task.await;
        }
        let (fleet, hosts, token) = (&self.fleet, &self.hosts, &self.info.token);
        let failures = give_back(fleet, hosts, &self.service, token, self.concurrency).await;
        let mut failures = failures.into_iter();
        match (failures.next(), failures.len()) {
            (None, _) => Ok(()),
            (Some(one), 0) => Err(one),
            (Some(first), _) => Err(many_failed(
                "release the deploy lock",
                std::iter::once(first).chain(failures).collect(),
            )),
        }
    }
}

/// Releases the lock held under `token` on each of `hosts`, `concurrency` at
/// a time, and returns the failures: for cleaning up after a command that was
/// stopped while taking the lock. A host where someone else holds the lock
/// fails with `Conflict` (that lock is left alone: it may never have been
/// this command's); a free host is no failure.
pub async fn give_back(
    fleet: &Fleet,
    hosts: &[String],
    service: &str,
    token: &str,
    concurrency: usize,
) -> Vec<Error> {
    stream::iter(hosts)
        .map(|name| async move {
            release(connected(fleet, name)?, service, token)
                .await
                .map(drop)
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
    }
}

fn connected<'f>(fleet: &'f Fleet, name: &str) -> Result<&'f Host> {
    fleet.get(name).ok_or_else(|| {
        Error::new(
            ErrorKind::Unreachable,
            "take the deploy lock",
            "the host is not connected",
        )
        .on(name)
        .hint(UNREACHABLE_HINT)
    })
}

fn many_failed(step: &str, failures: Vec<Error>) -> Error {
    let lines: Vec<String> = failures.iter().map(|e| format!("  {e}")).collect();
    Error::failed(
        step,
        format_args!("{} hosts failed:\n{}", failures.len(), lines.join("\n")),
    )
    .hint(UNREACHABLE_HINT)
}

/// Takes the lock on `names` (sorted): the first alone, then the rest
/// `concurrency` at a time. On a refusal, gives back exactly the ones taken
/// and returns the refusal (a conflict before other failures).
async fn take_all<T, TF, G, GF>(
    names: &[String],
    concurrency: usize,
    token: &str,
    take: T,
    untake: G,
) -> Result<Vec<Takeover>>
where
    T: Fn(String) -> TF,
    TF: Future<Output = Result<Option<Takeover>>>,
    G: Fn(String) -> GF,
    GF: Future<Output = Result<()>>,
{
    let Some((first, rest)) = names.split_first() else {
        return Ok(Vec::new());
    };
    let mut taken = Vec::new();
    let mut takeovers: Vec<Takeover> = take(first.clone()).await?.into_iter().collect();
    taken.push(first.clone());
    let mut results: Vec<(String, Result<Option<Takeover>>)> = stream::iter(rest.iter().cloned())
        .map(|name| {
            let fut = take(name.clone());
            async move { (name, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut refusals = Vec::new();
    for (name, result) in results {
        match result {
            Ok(t) => {
                taken.push(name);
                takeovers.extend(t);
            }
            Err(e) => refusals.push(e),
        }
    }
    if refusals.is_empty() {
        return Ok(takeovers);
    }
    let kept: Vec<Error> = stream::iter(taken)
        .map(&untake)
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    Err(refusal(refusals, kept, token))
}

/// The error of a failed [`take_all`]: the first conflict (or failure), the
/// other hosts that refused, and any lock that could not be given back.
fn refusal(mut refusals: Vec<Error>, kept: Vec<Error>, token: &str) -> Error {
    let first = refusals
        .iter()
        .position(|e| e.kind == ErrorKind::Conflict)
        .unwrap_or(0);
    let mut error = refusals.remove(first);
    if !refusals.is_empty() {
        let others: Vec<&str> = refusals.iter().filter_map(|e| e.host.as_deref()).collect();
        error.cause.push_str(&format!(
            " (refused on {} more: {})",
            refusals.len(),
            others.join(", ")
        ));
    }
    if !kept.is_empty() {
        let hosts: Vec<&str> = kept.iter().filter_map(|e| e.host.as_deref()).collect();
        error.cause.push_str(&format!(
            "; the locks it took on {} could not be given back",
            hosts.join(", ")
        ));
        error.hint = Some(format!(
            "{}; then release the locks left behind with `ballast lock release --token {token}`",
            error.hint.unwrap_or_default()
        ));
    }
    error
}

/// Renews the lease on `hosts` every [`RENEW_EVERY`] until aborted. A host
/// where the lock was removed or taken is recorded in `lost` and no longer
/// renewed; other failures are retried at the next tick (the lease outlasts
/// several).
async fn renew_every(
    fleet: Arc<Fleet>,
    mut hosts: Vec<String>,
    service: String,
    token: String,
    concurrency: usize,
    lost: Arc<Mutex<Vec<Error>>>,
) {
    let start = tokio::time::Instant::now() + RENEW_EVERY;
    let mut tick = tokio::time::interval_at(start, RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !hosts.is_empty() {
        tick.tick().await;
        let (fleet, service, token) = (&fleet, &service, &token);
        let results: Vec<(String, Result<()>)> = stream::iter(hosts.iter().cloned())
            .map(|name| async move {
                let r = match connected(fleet, &name) {
                    Ok(host) => renew(host, service, token).await,
                    Err(e) => Err(e),
                };
                (name, r)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (name, result) in results {
            match result {
                Ok(()) => {}
                Err(e) if matches!(e.kind, ErrorKind::Conflict | ErrorKind::NotFound) => {
                    tracing::warn!(host = %name, "{e}");
                    hosts.retain(|h| h != &name);
                    lost.lock().expect("lost list").push(e);
                }
                Err(e) => tracing::warn!(host = %name, "lease not renewed, will retry: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::fixtures::Scratch;
    use crate::lock::read;

    /// Runs `take_all` over fake hosts: `refuse` refuse, `stuck` cannot give
    /// back; returns the result and the log of calls.
    async fn take_fakes(
        names: &[&str],
        refuse: &[&str],
        stuck: &[&str],
    ) -> (Result<Vec<Takeover>>, Vec<String>) {
        let log = Mutex::new(Vec::new());
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let result = take_all(
            &names,
            4,
            "tok",
            |name| {
                let log = &log;
                async move {
                    log.lock().unwrap().push(format!("take {name}"));
                    tokio::task::yield_now().await;
                    log.lock().unwrap().push(format!("took {name}"));
                    match refuse.contains(&name.as_str()) {
                        true => Err(Error::new(ErrorKind::Conflict, "take", "held").on(name)),
                        false => Ok(None),
                    }
                }
            },
            |name| {
                let log = &log;
                async move {
                    log.lock().unwrap().push(format!("give back {name}"));
                    match stuck.contains(&name.as_str()) {
                        true => Err(Error::failed("give back", "no").on(name)),
                        false => Ok(()),
                    }
                }
            },
        )
        .await;
        (result, log.into_inner().unwrap())
    }

    #[tokio::test]
    async fn the_first_host_by_name_is_taken_alone_before_the_rest() {
        let (result, log) = take_fakes(&["a", "b", "c"], &[], &[]).await;
        assert!(result.unwrap().is_empty());
        assert_eq!(&log[..2], ["take a", "took a"]);
        assert_eq!(log.len(), 6);
    }

    #[tokio::test]
    async fn a_refusal_gives_back_exactly_the_locks_taken() {
        let (result, log) = take_fakes(&["a", "b", "c"], &["b"], &[]).await;
        let e = result.unwrap_err();
        assert_eq!(
            (e.kind, e.host.as_deref()),
            (ErrorKind::Conflict, Some("b"))
        );
        let mut given: Vec<&String> = log.iter().filter(|l| l.starts_with("give")).collect();
        given.sort();
        assert_eq!(given, ["give back a", "give back c"]);
    }

    #[tokio::test]
    async fn a_refusal_on_the_first_host_touches_no_other() {
        let (result, log) = take_fakes(&["a", "b"], &["a"], &[]).await;
        assert_eq!(result.unwrap_err().host.as_deref(), Some("a"));
        assert_eq!(log, ["take a", "took a"]);
    }

    #[tokio::test]
    async fn a_lock_left_behind_is_named_with_the_token_to_release_it() {
        let (result, _) = take_fakes(&["a", "b", "c"], &["b", "c"], &["a"]).await;
        let e = result.unwrap_err();
        assert_eq!(
            e.cause,
            "held (refused on 1 more: c); the locks it took on a could not be given back"
        );
        assert!(e
            .hint
            .unwrap()
            .ends_with("`ballast lock release --token tok`"));
    }

    #[tokio::test]
    async fn a_fleet_lock_starts_its_renewal_and_releases_by_token() {
        let svc = Scratch::new();
        let names = vec![crate::host::LOCAL.to_string()];
        let fleet = Arc::new(Fleet::connect(&names, &Default::default(), 1).await);
        let info = LockInfo::new("deploy", None).unwrap();
        let lock = FleetLock::acquire(&fleet, &names, &svc.0, info.clone(), 4)
            .await
            .unwrap();
        assert!(lock.renewer.is_some());
        assert_eq!((lock.hosts(), lock.takeovers()), (&names[..], &[][..]));
        let host = fleet.get("local").unwrap();
        let found = read(host, &svc.0).await.unwrap().unwrap();
        assert_eq!(found.info, Some(info));
        lock.release().await.unwrap();
        assert_eq!(read(host, &svc.0).await.unwrap(), None);
        assert!(
            Arc::try_unwrap(fleet).is_ok(),
            "the renewal let go of the fleet"
        );
    }
}
