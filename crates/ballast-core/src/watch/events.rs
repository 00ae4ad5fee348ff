//! Docker events in watch: each connected host's engine is followed over
//! the connection watch keeps (its forwarded socket), for the container
//! events that say one of the service's containers fell over or came
//! back (`die`, `oom`, `kill`, `stop`, `start`, `health_status`). Each such
//! event nudges the loop, which looks at that host at once instead of at
//! the next tick: detection takes about an event's latency, not up to an
//! interval. Polling stays the fallback: a stream that drops is
//! subscribed again after a wait that doubles (from the time it dropped,
//! so events meanwhile are replayed), and never stops the watcher.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, EventsOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::observe::Connections;
use crate::host::Host;

/// The container events that may change what a look sees.
pub const ACTIONS: [&str; 6] = ["die", "oom", "kill", "stop", "start", "health_status"];

/// Waits before subscribing again after a stream dropped: doubling from
/// the first to the second.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// A stream that lasted this long was healthy: the next drop waits the
/// shortest again.
const STEADY: Duration = Duration::from_secs(60);

/// What a follower tells the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nudge {
    /// A container of the service changed on the host: look at it now.
    Changed {
        host: String,
        action: String,
        container: String,
    },
    /// The host's event stream dropped: why (polling carries on).
    Dropped { host: String, why: String },
}

/// The filters of the subscription: container events of [`ACTIONS`],
/// since `since` (Unix seconds) when following again after a drop. The
/// service's containers are told apart from others by their labels on
/// this side ([`relevant`]): the engine ANDs label filters, and roles and
/// accessories carry different labels.
pub fn options(since: Option<i64>) -> EventsOptions {
    let filters = HashMap::from([("type", vec!["container"]), ("event", ACTIONS.to_vec())]);
    let builder = EventsOptionsBuilder::default().filters(&filters);
    match since {
        Some(s) => builder.since(&s.to_string()).build(),
        None => builder.build(),
    }
}

/// Whether `event` is about a role's or an accessory's container of
/// `service`: its action and the container's name, if so.
pub fn relevant(event: &EventMessage, service: &str) -> Option<(String, String)> {
    if event.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = event.action.as_deref()?;
    let word = action.split(':').next().unwrap_or(action);
    if !ACTIONS.contains(&word) {
        return None;
    }
    let attributes = event.actor.as_ref()?.attributes.as_ref()?;
    let ours = [
        crate::release::SERVICE_LABEL,
        crate::accessory::spec::SERVICE_LABEL,
    ]
    .iter()
    .any(|label| attributes.get(*label).is_some_and(|s| s == service));
    let name = attributes.get("name").cloned().unwrap_or_default();
    ours.then(|| (action.to_string(), name))
}

/// Follows the events of `host`'s engine (`docker`) until aborted,
/// sending a nudge for each one about `service`.
pub async fn follow(
    host: String,
    docker: Docker,
    service: String,
    tx: mpsc::UnboundedSender<Nudge>,
) {
    let mut wait = RETRY.0;
    let mut since = None;
    loop {
        let started = Instant::now();
        let mut stream = docker.events(Some(options(since)));
        let why = loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    if let Some((action, container)) = relevant(&event, &service) {
                        let nudge = Nudge::Changed {
                            host: host.clone(),
                            action,
                            container,
                        };
                        if tx.send(nudge).is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the engine closed the stream".to_string(),
            }
        };
        since = Some(unix_now());
        if started.elapsed() >= STEADY {
            wait = RETRY.0;
        }
        let nudge = Nudge::Dropped {
            host: host.clone(),
            why: format!("{why}; following again in {}", crate::error::humanize(wait)),
        };
        if tx.send(nudge).is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY.1);
    }
}

fn unix_now() -> i64 {
    i64::try_from(super::now() / 1000).unwrap_or(i64::MAX)
}

/// One follower per connected host, on that host's current connection.
pub struct Followers {
    service: String,
    tx: mpsc::UnboundedSender<Nudge>,
    /// The connection each follows (weak: a follower never keeps a
    /// connection open), and its task.
    tasks: BTreeMap<String, (Weak<Host>, JoinHandle<()>)>,
}

impl Followers {
    pub fn new(service: &str, tx: mpsc::UnboundedSender<Nudge>) -> Followers {
        Followers {
            service: service.to_string(),
            tx,
            tasks: BTreeMap::new(),
        }
    }

    /// Follows every host `conns` holds, on the connection it holds now:
    /// a host connected again gets a new follower, one no longer connected
    /// (down) loses its own.
    pub fn sync(&mut self, conns: &Connections) {
        let live: BTreeMap<String, Arc<Host>> = conns.iter().collect();
        self.tasks.retain(|name, (weak, task)| {
            let same = live
                .get(name)
                .is_some_and(|h| Weak::ptr_eq(weak, &Arc::downgrade(h)));
            if !same {
                task.abort();
            }
            same
        });
        for (name, host) in live {
            if self.tasks.contains_key(&name) {
                continue;
            }
            let task = tokio::spawn(follow(
                name.clone(),
                host.engine().docker().clone(),
                self.service.clone(),
                self.tx.clone(),
            ));
            self.tasks.insert(name, (Arc::downgrade(&host), task));
        }
    }

    /// Stops every follower.
    pub fn stop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.tasks) {
            task.abort();
        }
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, labels: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_services_containers_count() {
        let role = [
            ("io.ballast.service", "shop"),
            ("io.ballast.role", "web"),
            ("name", "shop-web-v1"),
        ];
        assert_eq!(
            relevant(&event("die", &role), "shop"),
            Some(("die".into(), "shop-web-v1".into()))
        );
        assert_eq!(relevant(&event("die", &role), "blog"), None);
        let accessory = [
            ("io.ballast.accessory.service", "shop"),
            ("name", "shop-db"),
        ];
        assert_eq!(
            relevant(&event("health_status: unhealthy", &accessory), "shop"),
            Some(("health_status: unhealthy".into(), "shop-db".into()))
        );
        assert_eq!(relevant(&event("die", &[("other", "x")]), "shop"), None);
        // Not a change a look would see.
        assert_eq!(relevant(&event("exec_start: sh", &role), "shop"), None);
        let mut image = event("die", &role);
        image.typ = Some(EventMessageTypeEnum::IMAGE);
        assert_eq!(relevant(&image, "shop"), None);
    }
}
