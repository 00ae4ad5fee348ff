//! The decisions about a role's ACME certificate, from what each host of
//! the role shows ([`Seen`]): whether a served certificate is due or still
//! valid, whether to keep it, copy it from another host or order a new one
//! ([`decide`]), which hosts keep an order from happening ([`missing`],
//! [`refusal`]), and whether a renewal that did not happen is a warning or
//! an error ([`still_served`]). Pure functions of their inputs; the caller
//! ([`super`]) talks to the hosts and the CA.

use ballast_proxy_wire::CertificateStatus;

use crate::error::Error;

const STEP: &str = "renew the ACME certificate";

/// When an ACME certificate is obtained again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// When a host lacks it or it expires within `renew_before`.
    WhenDue,
    /// Now, whatever its expiry (`ballast proxy certs --force-renew`).
    Force,
}

/// What one host of a role shows, for the ACME decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) host: String,
    /// The certificate is wanted there by the caller (deploy's hosts).
    pub(super) target: bool,
    pub(super) state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Not in the command's scope (`--hosts`).
    OutOfScope,
    /// Not connected, or its proxy did not answer: why.
    Unreachable(String),
    /// Its proxy answered: the certificate it serves for the role.
    Serves(Option<CertificateStatus>),
}

impl Seen {
    pub(super) fn answered(&self) -> bool {
        matches!(self.state, State::Serves(_))
    }

    pub(super) fn served(&self) -> Option<&CertificateStatus> {
        match &self.state {
            State::Serves(c) => c.as_ref(),
            _ => None,
        }
    }
}

/// What to do about a role's ACME certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// No host the caller names is due.
    Keep,
    /// Some are, and this host serves one that is not: copy it.
    Copy { from: String },
    /// Order a new certificate (which needs every host of the role).
    Obtain,
}

pub(super) fn decide(
    seen: &[Seen],
    renewal: Renewal,
    names: &[String],
    renew_before: u64,
    now: u64,
) -> Decision {
    if renewal == Renewal::Force {
        return Decision::Obtain;
    }
    let due = |s: &Seen| {
        s.served()
            .is_none_or(|c| is_due(c, names, renew_before, now))
    };
    if !seen.iter().any(|s| s.target && s.answered() && due(s)) {
        return Decision::Keep;
    }
    match donor(seen, |c| !is_due(c, names, renew_before, now)) {
        Some(from) => Decision::Copy {
            from: from.to_string(),
        },
        None => Decision::Obtain,
    }
}

/// The first host (config order) serving a certificate that is `good`.
pub(super) fn donor(seen: &[Seen], good: impl Fn(&CertificateStatus) -> bool) -> Option<&str> {
    seen.iter()
        .find(|s| s.served().is_some_and(&good))
        .map(|s| s.host.as_str())
}

/// The hosts of the role that cannot answer the CA's challenges, with why.
pub(super) fn missing(seen: &[Seen]) -> Vec<(String, String)> {
    seen.iter()
        .filter_map(|s| match &s.state {
            State::Serves(_) => None,
            State::OutOfScope => Some((s.host.clone(), NOT_IN_SCOPE.to_string())),
            State::Unreachable(why) => Some((s.host.clone(), why.clone())),
        })
        .collect()
}

pub(super) const NOT_IN_SCOPE: &str = "not in scope (--hosts)";

/// Why no certificate is ordered while hosts of the role are missing.
pub(super) fn refusal(role: &str, role_hosts: &[&str], missing: &[(String, String)]) -> Error {
    let list: Vec<String> = missing
        .iter()
        .map(|(h, why)| format!("{h}: {why}"))
        .collect();
    let account = match role_hosts.first() {
        Some(first) if missing.iter().any(|(h, _)| h == first) => {
            format!("; {first}, the role's first host, keeps the ACME account")
        }
        _ => String::new(),
    };
    let hint = if missing.iter().any(|(_, why)| why == NOT_IN_SCOPE) {
        "run without --hosts, or `ballast proxy certs --renew`"
    } else {
        "bring the hosts back (or fix their SSH settings), then run `ballast proxy certs --renew`"
    };
    Error::failed(
        STEP,
        format_args!(
            "the CA may validate the names through any host of role `{role}`, so every one must answer its challenges; missing {}{account}",
            list.join(", ")
        ),
    )
    .hint(hint)
}

/// Whether the role is still served after a renewal that did not happen:
/// every host that answered serves an unexpired certificate for the
/// names (then the soonest expiry). Never with `--force-renew`.
pub(super) fn still_served(
    seen: &[Seen],
    renewal: Renewal,
    names: &[String],
    now: u64,
) -> Option<u64> {
    if renewal == Renewal::Force {
        return None;
    }
    let mut soonest = None::<u64>;
    for s in seen.iter().filter(|s| s.answered()) {
        let c = s.served().filter(|c| is_valid(c, names, now))?;
        soonest = Some(soonest.map_or(c.not_after_unix, |t| t.min(c.not_after_unix)));
    }
    soonest
}

fn same_names(served: &CertificateStatus, names: &[String]) -> bool {
    let mut have = served.names.clone();
    let mut want = names.to_vec();
    have.sort();
    want.sort();
    have == want
}

/// Whether a served certificate must be obtained again: for other names,
/// or expiring within `renew_before` seconds of `now`.
pub(super) fn is_due(
    served: &CertificateStatus,
    names: &[String],
    renew_before: u64,
    now: u64,
) -> bool {
    !same_names(served, names) || served.not_after_unix < now.saturating_add(renew_before)
}

/// Whether a served certificate still serves the names at `now`.
pub(super) fn is_valid(served: &CertificateStatus, names: &[String], now: u64) -> bool {
    same_names(served, names) && served.not_after_unix > now
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn names() -> Vec<String> {
        vec!["b.test".to_string(), "a.test".to_string()]
    }

    fn cert(names: &[&str], days_left: i64, fingerprint: &str) -> CertificateStatus {
        CertificateStatus {
            service: "shop-web".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            not_after_unix: (NOW as i64 + days_left * DAY as i64) as u64,
            fingerprint: fingerprint.repeat(32),
        }
    }

    fn serving(host: &str, days_left: i64) -> Seen {
        Seen {
            host: host.into(),
            target: true,
            state: State::Serves(Some(cert(&["a.test", "b.test"], days_left, "ab"))),
        }
    }

    fn bare(host: &str) -> Seen {
        Seen {
            host: host.into(),
            target: true,
            state: State::Serves(None),
        }
    }

    fn with(host: &str, state: State) -> Seen {
        Seen {
            host: host.into(),
            target: false,
            state,
        }
    }

    #[test]
    fn an_acme_certificate_is_due_when_expiring_or_for_other_names() {
        let n = names();
        let before = 30 * DAY;
        assert!(!is_due(
            &cert(&["a.test", "b.test"], 60, "ab"),
            &n,
            before,
            NOW
        ));
        assert!(is_due(
            &cert(&["a.test", "b.test"], 20, "ab"),
            &n,
            before,
            NOW
        ));
        assert!(is_due(&cert(&["a.test"], 60, "ab"), &n, before, NOW));
        assert!(is_valid(&cert(&["a.test", "b.test"], 20, "ab"), &n, NOW));
        assert!(!is_valid(&cert(&["a.test", "b.test"], -1, "ab"), &n, NOW));
        assert!(!is_valid(&cert(&["a.test"], 20, "ab"), &n, NOW));
    }

    #[test]
    fn nothing_is_ordered_while_every_target_is_current() {
        let seen = [serving("h1", 60), serving("h2", 60)];
        let d = decide(&seen, Renewal::WhenDue, &names(), 30 * DAY, NOW);
        assert_eq!(d, Decision::Keep);
        // Even with another host out of scope: nothing to order.
        let seen = [serving("h1", 60), with("h2", State::OutOfScope)];
        let d = decide(&seen, Renewal::WhenDue, &names(), 30 * DAY, NOW);
        assert_eq!(d, Decision::Keep);
        let d = decide(&seen, Renewal::Force, &names(), 30 * DAY, NOW);
        assert_eq!(d, Decision::Obtain);
    }

    #[test]
    fn a_host_lacking_the_certificate_gets_a_copy_of_one_not_due() {
        let seen = [bare("h1"), serving("h2", 60), serving("h3", 60)];
        let d = decide(&seen, Renewal::WhenDue, &names(), 30 * DAY, NOW);
        assert_eq!(d, Decision::Copy { from: "h2".into() });
        // Every one due (or lacking): a new order.
        let seen = [bare("h1"), serving("h2", 10)];
        let d = decide(&seen, Renewal::WhenDue, &names(), 30 * DAY, NOW);
        assert_eq!(d, Decision::Obtain);
    }

    #[test]
    fn an_order_needs_every_host_of_the_role() {
        let seen = [
            with("h1", State::OutOfScope),
            serving("h2", 10),
            with("h3", State::Unreachable("it did not answer".into())),
        ];
        let d = decide(&seen, Renewal::WhenDue, &names(), 30 * DAY, NOW);
        assert_eq!(d, Decision::Obtain);
        let gone = missing(&seen);
        assert_eq!(
            gone,
            vec![
                ("h1".to_string(), NOT_IN_SCOPE.to_string()),
                ("h3".to_string(), "it did not answer".to_string()),
            ]
        );
        let e = refusal("web", &["h1", "h2", "h3"], &gone);
        assert!(e.cause.contains("h1: not in scope (--hosts)"), "{e}");
        assert!(e.cause.contains("h3: it did not answer"), "{e}");
        assert!(
            e.cause
                .contains("h1, the role's first host, keeps the ACME account"),
            "{e}"
        );
        let hint = e.hint.unwrap();
        assert!(hint.contains("without --hosts") && hint.contains("ballast proxy certs --renew"));
        let e = refusal("web", &["h1", "h3"], &gone[1..]);
        assert!(!e.cause.contains("ACME account"), "{e}");
        assert!(e.hint.unwrap().contains("bring the hosts back"));
        assert!(missing(&[serving("h1", 10), bare("h2")]).is_empty());
    }

    #[test]
    fn a_failed_renewal_warns_while_every_host_serves_a_valid_certificate() {
        let n = names();
        let seen = [serving("h1", 10), serving("h2", 5)];
        assert_eq!(
            still_served(&seen, Renewal::WhenDue, &n, NOW),
            Some(NOW + 5 * DAY)
        );
        // Hosts that cannot be seen do not count; those that answered do.
        let seen = [serving("h1", 10), with("h2", State::OutOfScope)];
        assert!(still_served(&seen, Renewal::WhenDue, &n, NOW).is_some());
        // A host without one, with an expired one or one for other names:
        // an error.
        let seen = [serving("h1", 10), bare("h2")];
        assert_eq!(still_served(&seen, Renewal::WhenDue, &n, NOW), None);
        let seen = [serving("h1", 10), serving("h2", -1)];
        assert_eq!(still_served(&seen, Renewal::WhenDue, &n, NOW), None);
        let seen = [
            serving("h1", 10),
            with("h2", State::Serves(Some(cert(&["a.test"], 50, "cd")))),
        ];
        assert_eq!(still_served(&seen, Renewal::WhenDue, &n, NOW), None);
        // Asked for explicitly: always an error.
        let seen = [serving("h1", 10), serving("h2", 5)];
        assert_eq!(still_served(&seen, Renewal::Force, &n, NOW), None);
    }

    #[test]
    fn only_a_valid_certificate_is_copied_where_one_is_lacking() {
        let n = names();
        let seen = [
            bare("h1"),
            with("h2", State::Serves(Some(cert(&["a.test"], 50, "cd")))),
            serving("h3", 10),
        ];
        assert_eq!(donor(&seen, |c| is_valid(c, &n, NOW)), Some("h3"));
        assert_eq!(donor(&seen[..2], |c| is_valid(c, &n, NOW)), None);
    }
}
