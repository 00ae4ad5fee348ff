//! The admin API's answers: success or a sentence saying what went wrong,
//! and what each command reports.

use serde::{Deserialize, Serialize};

/// The proxy's answer to any command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminResponse {
    /// Whether the command did what it was asked.
    pub ok: bool,
    /// Why not, and what to do next (only when `ok` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a successful `deploy` did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployReport>,
    /// What a successful `remove` drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainReport>,
    /// The proxy's routes (answer to `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    /// The certificate a successful `certificate` set, as `status` lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
}

impl AdminResponse {
    /// A bare success.
    pub fn ok() -> AdminResponse {
        AdminResponse {
            ok: true,
            ..AdminResponse::default()
        }
    }

    /// A failure that says why.
    pub fn error(message: impl Into<String>) -> AdminResponse {
        AdminResponse {
            ok: false,
            error: Some(message.into()),
            ..AdminResponse::default()
        }
    }
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployReport {
    /// The service deployed.
    pub service: String,
    /// The targets that now receive its traffic.
    pub targets: Vec<String>,
    /// How long the new targets took to pass their health check.
    pub healthy_after_ms: u64,
    /// How the old targets were drained.
    pub drain: DrainReport,
}

/// How old targets were drained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// The targets that no longer receive traffic.
    pub drained: Vec<String>,
    /// Requests (and tunnels) still open when the drain timeout ran out;
    /// 0 means every in-flight request finished.
    pub unfinished: u64,
    /// How long the drain took.
    pub elapsed_ms: u64,
}

/// Every service the proxy routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The proxy's version (the ballast version it was built from).
    pub version: String,
    /// The services, sorted by name.
    pub services: Vec<ServiceStatus>,
    /// This proxy process (changes when another process takes over, e.g.
    /// after a handoff), so ballast can tell which one answered.
    #[serde(default)]
    pub instance: String,
    /// The addresses it accepts clients on (`http://0.0.0.0:80`, `https://…`).
    #[serde(default)]
    pub listeners: Vec<String>,
    /// The certificates it serves, sorted by service.
    #[serde(default)]
    pub certificates: Vec<CertificateStatus>,
}

/// One certificate the proxy serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// The service it belongs to.
    pub service: String,
    /// The host names it is served for.
    pub names: Vec<String>,
    /// When the leaf expires, in seconds since the Unix epoch.
    pub not_after_unix: u64,
    /// SHA-256 of the leaf certificate (DER), lowercase hex.
    pub fingerprint: String,
}

/// One service as the proxy routes it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// The host names it answers for (none: the default service).
    pub hosts: Vec<String>,
    /// The path prefix it answers under.
    pub path_prefix: String,
    /// Its targets and their in-flight requests.
    pub targets: Vec<TargetStatus>,
    /// Whether its maintenance page is on.
    pub maintenance: bool,
    /// Whether its new requests are being held.
    pub paused: bool,
    /// Requests answered for it since this proxy process started (or the
    /// service was last added): a counter that only goes up, and starts
    /// again from 0 with a new process. Older proxies do not report it.
    #[serde(default)]
    pub requests: u64,
    /// Of those, the ones answered 5xx: by its target, or by the proxy
    /// itself (502 target unreachable, 503 no target or maintenance, 504
    /// target too slow).
    #[serde(default)]
    pub responses_5xx: u64,
}

/// One target and its load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `ip:port` of the target.
    pub addr: String,
    /// Requests and tunnels in flight to it now.
    pub in_flight: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip_and_omit_empty_parts() {
        let response = AdminResponse {
            ok: true,
            deploy: Some(DeployReport {
                service: "web".into(),
                targets: vec!["127.0.0.1:1".into()],
                healthy_after_ms: 12,
                drain: DrainReport {
                    drained: vec!["127.0.0.1:2".into()],
                    unfinished: 0,
                    elapsed_ms: 3,
                },
            }),
            ..AdminResponse::default()
        };
        let text = serde_json::to_string(&response).unwrap();
        assert!(!text.contains("error"), "{text}");
        assert_eq!(
            serde_json::from_str::<AdminResponse>(&text).unwrap(),
            response
        );
        let error = serde_json::to_string(&AdminResponse::error("no")).unwrap();
        assert_eq!(error, r#"{"ok":false,"error":"no"}"#);
    }

    #[test]
    fn answers_of_older_proxies_still_parse() {
        // Before certificates: no `certificate` answer, a status without
        // instance, listeners or certificates.
        let old = r#"{"ok":true,"status":{"version":"0.1.0","services":[]}}"#;
        let parsed: AdminResponse = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.certificate, None);
        assert_eq!(parsed.status.unwrap().certificates, []);
        // Before request counters: a service without them counts 0.
        let old = r#"{"ok":true,"status":{"version":"0.1.0","services":[{"name":"web",
            "hosts":[],"path_prefix":"/","targets":[],"maintenance":false,"paused":false}]}}"#;
        let parsed: AdminResponse = serde_json::from_str(old).unwrap();
        let service = &parsed.status.unwrap().services[0];
        assert_eq!((service.requests, service.responses_5xx), (0, 0));
        let set = AdminResponse {
            certificate: Some(CertificateStatus {
                service: "web".into(),
                names: vec!["a.test".into()],
                not_after_unix: 1,
                fingerprint: "ab".into(),
            }),
            ..AdminResponse::ok()
        };
        let text = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<AdminResponse>(&text).unwrap(), set);
    }
}
