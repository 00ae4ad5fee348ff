//! The admin API's commands: what ballast asks of the proxy, and the route
//! and JSON body each one travels as.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One command to the proxy's admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Hand a service over to new targets: health-check, switch, drain.
    Deploy(DeployRequest),
    /// Stop routing a service, draining its targets.
    Remove(RemoveRequest),
    /// Turn a service's maintenance page on or off.
    Maintenance(MaintenanceRequest),
    /// Hold a service's new requests until resumed (or `max_ms` passed).
    Pause(PauseRequest),
    /// Release a paused service's held requests.
    Resume(ResumeRequest),
    /// Report every service, its targets and their in-flight requests.
    Status,
    /// Serve a service's host names over HTTPS with this certificate (chosen
    /// by SNI); replaces the service's previous one for new handshakes only.
    Certificate(CertificateRequest),
    /// Stop serving a service's certificate.
    RemoveCertificate(RemoveCertificateRequest),
    /// Answer (or stop answering) one ACME HTTP-01 challenge on plain HTTP.
    Challenge(ChallengeRequest),
}

/// Every command's name, in the order the admin API lists them.
pub const COMMANDS: [&str; 9] = [
    "deploy",
    "remove",
    "maintenance",
    "pause",
    "resume",
    "status",
    "certificate",
    "remove_certificate",
    "challenge",
];

impl AdminRequest {
    /// The command's name, which is also the last part of its route.
    pub fn command(&self) -> &'static str {
        match self {
            AdminRequest::Deploy(_) => "deploy",
            AdminRequest::Remove(_) => "remove",
            AdminRequest::Maintenance(_) => "maintenance",
            AdminRequest::Pause(_) => "pause",
            AdminRequest::Resume(_) => "resume",
            AdminRequest::Status => "status",
            AdminRequest::Certificate(_) => "certificate",
            AdminRequest::RemoveCertificate(_) => "remove_certificate",
            AdminRequest::Challenge(_) => "challenge",
        }
    }

    /// The HTTP method and path the command is sent to.
    pub fn route(&self) -> (&'static str, String) {
        let method = match self {
            AdminRequest::Status => "GET",
            _ => "POST",
        };
        (method, format!("/v1/{}", self.command()))
    }

    /// The JSON body sent with the command (`None` for `GET` commands).
    pub fn body(&self) -> Option<serde_json::Value> {
        let value = match self {
            AdminRequest::Deploy(r) => serde_json::to_value(r),
            AdminRequest::Remove(r) => serde_json::to_value(r),
            AdminRequest::Maintenance(r) => serde_json::to_value(r),
            AdminRequest::Pause(r) => serde_json::to_value(r),
            AdminRequest::Resume(r) => serde_json::to_value(r),
            AdminRequest::Certificate(r) => serde_json::to_value(r),
            AdminRequest::RemoveCertificate(r) => serde_json::to_value(r),
            AdminRequest::Challenge(r) => serde_json::to_value(r),
            AdminRequest::Status => return None,
        };
        Some(value.expect("admin requests always serialize"))
    }

    /// Parses the body sent to `/v1/<command>` back into a request.
    pub fn from_route(command: &str, body: &[u8]) -> Result<AdminRequest, String> {
        fn parse<T: serde::de::DeserializeOwned>(command: &str, body: &[u8]) -> Result<T, String> {
            serde_json::from_slice(body).map_err(|e| format!("malformed `{command}` request: {e}"))
        }
        Ok(match command {
            "deploy" => AdminRequest::Deploy(parse(command, body)?),
            "remove" => AdminRequest::Remove(parse(command, body)?),
            "maintenance" => AdminRequest::Maintenance(parse(command, body)?),
            "pause" => AdminRequest::Pause(parse(command, body)?),
            "resume" => AdminRequest::Resume(parse(command, body)?),
            "status" => AdminRequest::Status,
            "certificate" => AdminRequest::Certificate(parse(command, body)?),
            "remove_certificate" => AdminRequest::RemoveCertificate(parse(command, body)?),
            "challenge" => AdminRequest::Challenge(parse(command, body)?),
            other => {
                return Err(format!(
                    "unknown command `{other}`; the commands are: {}",
                    COMMANDS.join(", ")
                ))
            }
        })
    }
}

/// How the proxy decides that a new target is ready for traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Path requested with `GET`; a 2xx answer means healthy.
    pub path: String,
    /// Pause between two checks.
    pub interval_ms: u64,
    /// How long one check may take before it counts as failed.
    pub timeout_ms: u64,
}

impl HealthSpec {
    /// The pause between two checks.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The time one check may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Route a service to new targets once they are healthy, then drain the old.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The service's name: the key of its route (one route per service).
    pub service: String,
    /// Host names the service answers for; none makes it the default service.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix the service answers under (`/` when absent).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The new targets, each `ip:port` (or `name:port`); requests are spread
    /// round robin across them. All must be healthy before any is switched in.
    pub targets: Vec<String>,
    /// The health check the new targets must pass.
    pub health: HealthSpec,
    /// How long the new targets have to become healthy.
    pub deploy_timeout_ms: u64,
    /// How long the old targets' in-flight requests have to finish.
    pub drain_timeout_ms: u64,
    /// The largest request body the service accepts, in bytes; a larger one
    /// is answered `413 Payload Too Large` (from its `Content-Length` before
    /// anything is forwarded, else once the streamed body passes the limit).
    /// Absent: no limit. Left out of the JSON when absent, so a proxy that
    /// predates the field still takes the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// The largest response body the service may send, in bytes; a larger
    /// one is answered `502 Bad Gateway` (from its `Content-Length`), or cut
    /// off once the streamed body passes the limit. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body_bytes: Option<u64>,
}

/// Stop routing a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The service to remove.
    pub service: String,
    /// How long its targets' in-flight requests have to finish.
    #[serde(default = "default_drain_ms")]
    pub drain_timeout_ms: u64,
}

fn default_drain_ms() -> u64 {
    30_000
}

/// Turn a service's maintenance page on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// The service concerned.
    pub service: String,
    /// `true` answers every request with 503 and a maintenance page.
    pub on: bool,
}

/// Hold a service's new requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// The service concerned.
    pub service: String,
    /// Held requests are released after this long even without `resume`.
    pub max_ms: u64,
}

/// Release a paused service's held requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The service concerned.
    pub service: String,
}

/// A service's certificate: served for `names` by SNI.
///
/// `Debug` never shows the key; the request travels only over the admin
/// socket, which only root can reach.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// The service the certificate belongs to (one per service).
    pub service: String,
    /// The host names it is served for (`*.example.com` too); each must be
    /// covered by the certificate's subject alternative names and claimed
    /// by no other service's certificate. Plain HTTP redirects them to
    /// HTTPS.
    pub names: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub cert_pem: String,
    /// PEM private key of the leaf.
    pub key_pem: String,
}

impl std::fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRequest")
            .field("service", &self.service)
            .field("names", &self.names)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Stop serving a service's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveCertificateRequest {
    /// The service concerned.
    pub service: String,
}

/// One ACME HTTP-01 challenge: `GET /.well-known/acme-challenge/<token>`
/// on plain HTTP answers `key_authorization`, whatever the host name.
///
/// Held in memory only, for an hour at most, and at most 1,000 at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The challenge's token (the last part of the path).
    pub token: String,
    /// What to answer (`<token>.<account key thumbprint>`); `None` stops
    /// answering the token.
    #[serde(default)]
    pub key_authorization: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> DeployRequest {
        DeployRequest {
            service: "shop-web".into(),
            hosts: vec!["shop.example.com".into()],
            path_prefix: Some("/api".into()),
            targets: vec!["172.18.0.5:8080".into()],
            health: HealthSpec {
                path: "/up".into(),
                interval_ms: 1000,
                timeout_ms: 5000,
            },
            deploy_timeout_ms: 30_000,
            drain_timeout_ms: 30_000,
            max_request_body_bytes: None,
            max_response_body_bytes: None,
        }
    }

    #[test]
    fn every_request_round_trips_through_its_route() {
        let requests = [
            AdminRequest::Deploy(deploy()),
            AdminRequest::Deploy(DeployRequest {
                max_request_body_bytes: Some(1 << 20),
                max_response_body_bytes: Some(8 << 20),
                ..deploy()
            }),
            AdminRequest::Remove(RemoveRequest {
                service: "a".into(),
                drain_timeout_ms: 10,
            }),
            AdminRequest::Maintenance(MaintenanceRequest {
                service: "a".into(),
                on: true,
            }),
            AdminRequest::Pause(PauseRequest {
                service: "a".into(),
                max_ms: 5000,
            }),
            AdminRequest::Resume(ResumeRequest {
                service: "a".into(),
            }),
            AdminRequest::Status,
            AdminRequest::Certificate(CertificateRequest {
                service: "a".into(),
                names: vec!["a.example.com".into()],
                cert_pem: "cert".into(),
                key_pem: "key".into(),
            }),
            AdminRequest::RemoveCertificate(RemoveCertificateRequest {
                service: "a".into(),
            }),
            AdminRequest::Challenge(ChallengeRequest {
                token: "t".into(),
                key_authorization: Some("t.k".into()),
            }),
        ];
        for request in requests {
            let (method, path) = request.route();
            let command = path.strip_prefix("/v1/").unwrap();
            assert_eq!(command, request.command());
            assert_eq!(method == "GET", request.body().is_none());
            let body = request
                .body()
                .map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default();
            assert_eq!(AdminRequest::from_route(command, &body).unwrap(), request);
            // The tagged form round-trips too.
            let tagged = serde_json::to_string(&request).unwrap();
            assert_eq!(
                serde_json::from_str::<AdminRequest>(&tagged).unwrap(),
                request
            );
        }
    }

    #[test]
    fn malformed_bodies_and_unknown_commands_say_what_is_wrong() {
        let err = AdminRequest::from_route("deploy", b"{not json").unwrap_err();
        assert!(err.starts_with("malformed `deploy` request"), "{err}");
        let err = AdminRequest::from_route("pause", br#"{"service":"a"}"#).unwrap_err();
        assert!(err.contains("missing field `max_ms`"), "{err}");
        let err = AdminRequest::from_route("resume", br#"{"service":"a","extra":1}"#).unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = AdminRequest::from_route("explode", b"{}").unwrap_err();
        assert_eq!(
            err,
            "unknown command `explode`; the commands are: \
             deploy, remove, maintenance, pause, resume, status, certificate, \
             remove_certificate, challenge"
        );
    }

    #[test]
    fn body_limits_are_optional_both_ways() {
        // An older ballast sends no limits: no limit.
        let mut old = serde_json::to_value(deploy()).unwrap();
        assert!(old.get("max_request_body_bytes").is_none(), "{old}");
        assert!(old.get("max_response_body_bytes").is_none(), "{old}");
        let parsed: DeployRequest = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(parsed, deploy());
        // A newer one may set them; unknown fields are still refused.
        old["max_request_body_bytes"] = 1024.into();
        let parsed: DeployRequest = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(parsed.max_request_body_bytes, Some(1024));
        assert_eq!(parsed.max_response_body_bytes, None);
        old["max_body"] = 1.into();
        let err = serde_json::from_value::<DeployRequest>(old).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_body`"),
            "{err}"
        );
    }

    #[test]
    fn remove_drain_defaults_to_thirty_seconds() {
        let r: RemoveRequest = serde_json::from_str(r#"{"service":"a"}"#).unwrap();
        assert_eq!(r.drain_timeout_ms, 30_000);
    }
}
