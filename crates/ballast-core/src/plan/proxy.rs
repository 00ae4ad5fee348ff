//! What becomes of each host's proxy in a deploy or `setup`, from what runs
//! there and what this ballast and config want. A deploy starts a missing
//! proxy, reconfigures one whose settings differ (by takeover, keeping its
//! build), replaces a legacy one once, and leaves one of another build
//! running: moving proxies to another build is `ballast proxy upgrade`,
//! one host at a time, never a side effect of a deploy.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{HostState, Plan};
use crate::proxy::{Build, Listen, ProxyFound};

/// What a host's proxy should be, as this ballast and config see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedProxy {
    /// What the config needs there (merged with what runs by planning).
    pub listen: Listen,
    /// The build this ballast ships.
    pub build: Build,
}

/// What becomes of a host's proxy before its roles roll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ProxyChange {
    /// It runs with the wanted settings and this build.
    Current,
    /// There is none, or it is stopped: start one of this build.
    Start,
    /// Its settings differ (a port or trusted range to add, a longer drain
    /// time): a new process of the same build takes over, losing nothing.
    Reconfigure {
        /// It also runs another build than this ballast's: after this,
        /// `ballast proxy upgrade` is still due.
        upgrade_due: bool,
    },
    /// It runs another build, with the wanted settings: it is left as it is,
    /// and `ballast proxy upgrade` is due.
    UpgradeDue { running: Build, available: Build },
    /// A proxy from before host networking: it cannot hand its sockets
    /// over, so it is replaced stop-then-start, once, host by host.
    Legacy,
    /// Cannot be told (no static ballast binary to build the proxy from).
    Unknown { why: String },
}

impl ProxyChange {
    /// Whether carrying it out changes anything on the host.
    pub fn acts(&self) -> bool {
        !matches!(self, ProxyChange::Current | ProxyChange::UpgradeDue { .. })
    }
}

/// The proxy of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyPlan {
    pub host: String,
    #[serde(flatten)]
    pub change: ProxyChange,
    /// What it listens on once done: what runs merged with what the config
    /// needs, so one service never takes another's ports away.
    pub listen: Option<Listen>,
}

/// The plan for one host's proxy, given what runs there.
pub fn proxy_plan(
    host: &str,
    found: Option<&ProxyFound>,
    wanted: std::result::Result<&WantedProxy, &str>,
) -> ProxyPlan {
    let plan = |change, listen| ProxyPlan {
        host: host.to_string(),
        change,
        listen,
    };
    let w = match wanted {
        Ok(w) => w,
        Err(why) => return plan(ProxyChange::Unknown { why: why.into() }, None),
    };
    // What the proxy found there listens on, running or stopped, stays:
    // another service's ports are in it.
    let listen = match found.and_then(|f| f.listen.as_ref()) {
        Some(there) => there.union(&w.listen),
        None => w.listen.clone(),
    };
    let Some(f) = found.filter(|f| f.running) else {
        return plan(ProxyChange::Start, Some(listen));
    };
    if f.legacy {
        return plan(ProxyChange::Legacy, Some(listen));
    }
    let other_build = f.build.as_ref() != Some(&w.build);
    let change = if f.settings.as_deref() != Some(listen.digest().as_str()) {
        ProxyChange::Reconfigure {
            upgrade_due: other_build,
        }
    } else if other_build {
        ProxyChange::UpgradeDue {
            running: f.build.clone().unwrap_or_else(|| Build {
                version: "unknown".into(),
                build: "unknown".into(),
            }),
            available: w.build.clone(),
        }
    } else {
        ProxyChange::Current
    };
    plan(change, Some(listen))
}

/// What to do with the proxy of each host whose proxied roles change
/// (`Err` says why what is wanted is not known).
pub fn proxies(
    plan: &Plan,
    observed: &HashMap<String, HostState>,
    wanted: &std::result::Result<BTreeMap<String, WantedProxy>, String>,
) -> Vec<ProxyPlan> {
    let hosts: BTreeSet<&str> = plan
        .host_plans()
        .filter(|p| p.switch.route().is_some() && !p.is_current())
        .map(|p| p.host.as_str())
        .collect();
    hosts
        .into_iter()
        .filter_map(|host| {
            let found = observed.get(host).and_then(|s| s.proxy.as_ref());
            let wanted = match wanted {
                Ok(w) => Ok(w.get(host)?),
                Err(why) => Err(why.as_str()),
            };
            Some(proxy_plan(host, found, wanted))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn build(b: &str) -> Build {
        Build {
            version: "0.1.0".into(),
            build: b.into(),
        }
    }

    fn listen(http: &[u16]) -> Listen {
        Listen {
            http_ports: http.iter().copied().collect(),
            drain_timeout: Duration::from_secs(5),
            ..Listen::default()
        }
    }

    fn running(b: &str, l: &Listen) -> ProxyFound {
        ProxyFound {
            running: true,
            legacy: false,
            build: Some(build(b)),
            settings: Some(l.digest()),
            listen: Some(l.clone()),
        }
    }

    fn change(found: Option<ProxyFound>, wanted: &WantedProxy) -> ProxyPlan {
        proxy_plan("h1", found.as_ref(), Ok(wanted))
    }

    #[test]
    fn a_deploy_never_moves_a_proxy_to_another_build() {
        let wanted = WantedProxy {
            listen: listen(&[80]),
            build: build("new"),
        };
        assert_eq!(change(None, &wanted).change, ProxyChange::Start);
        let mut stopped = running("old", &listen(&[80]));
        stopped.running = false;
        assert_eq!(change(Some(stopped), &wanted).change, ProxyChange::Start);
        assert_eq!(
            change(Some(running("new", &listen(&[80]))), &wanted).change,
            ProxyChange::Current
        );
        assert_eq!(
            change(Some(running("old", &listen(&[80]))), &wanted).change,
            ProxyChange::UpgradeDue {
                running: build("old"),
                available: build("new")
            }
        );
        let legacy = ProxyFound {
            running: true,
            legacy: true,
            settings: Some("d0".into()),
            ..ProxyFound::default()
        };
        assert_eq!(change(Some(legacy), &wanted).change, ProxyChange::Legacy);
        let unknown = proxy_plan("h1", None, Err("no static binary"));
        assert_eq!(
            unknown.change,
            ProxyChange::Unknown {
                why: "no static binary".into()
            }
        );
        assert!(!ProxyChange::Current.acts());
        assert!(!change(Some(running("old", &listen(&[80]))), &wanted)
            .change
            .acts());
    }

    #[test]
    fn another_services_ports_are_kept_and_new_ones_added_by_takeover() {
        // Service A runs the proxy on 80 and 8443; service B needs 8080.
        let a = listen(&[80, 8443]);
        let wanted = WantedProxy {
            listen: listen(&[8080]),
            build: build("new"),
        };
        let p = change(Some(running("new", &a)), &wanted);
        assert_eq!(p.change, ProxyChange::Reconfigure { upgrade_due: false });
        assert_eq!(p.listen, Some(listen(&[80, 8080, 8443])));
        // Once it listens on all of them, B's deploy leaves it alone.
        let both = listen(&[80, 8080, 8443]);
        assert_eq!(
            change(Some(running("new", &both)), &wanted).change,
            ProxyChange::Current
        );
        // A stopped proxy starts again with A's ports as well as B's.
        let mut stopped = running("new", &a);
        stopped.running = false;
        let p = change(Some(stopped), &wanted);
        assert_eq!(p.change, ProxyChange::Start);
        assert_eq!(p.listen, Some(listen(&[80, 8080, 8443])));
        // Another build with other settings: reconfigured on its own build.
        assert_eq!(
            change(Some(running("old", &a)), &wanted).change,
            ProxyChange::Reconfigure { upgrade_due: true }
        );
    }
}
