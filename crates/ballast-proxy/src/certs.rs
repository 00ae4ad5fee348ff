//! The certificates the proxy serves, chosen by SNI, and what plain HTTP
//! answers before proxying (ACME challenges, redirects to HTTPS).
//!
//! Each service may have one certificate, served for the host names it was
//! set for; a name belongs to one service's certificate at most. The set is
//! an immutable snapshot behind an `ArcSwap`, like the routing table: a
//! handshake reads it without a lock, and the control path swaps in a new
//! one, so new handshakes get the new certificate while open connections
//! keep the one they were made with.
//!
//! Which certificate a handshake gets: the one whose names hold the SNI
//! name exactly, else one set for `*.<parent>`, else the certificate given
//! on the command line (`--tls-cert`); without SNI, that one or else the
//! first by service. None: the handshake fails (the HTTPS listener may run
//! before any certificate is set).

mod challenge;
mod check;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use challenge::{Challenges, CHALLENGE_PATH};
pub use check::{check, covers, leaf_facts, refusal, Checked, Leaf};

use crate::proxy::{full, ProxyBody};
use crate::state::StateStore;
use crate::table::normalize_host;
use crate::tls;
use crate::wire::CertificateStatus;

/// A certificate served whatever the name: the command line's.
pub struct Fallback {
    /// Its chain and key.
    pub key: Arc<CertifiedKey>,
    /// Its leaf, whose names plain HTTP redirects to HTTPS.
    pub leaf: Leaf,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("leaf", &self.leaf)
            .finish_non_exhaustive()
    }
}

/// One snapshot of the certificates set through the admin API.
#[derive(Default)]
struct Set {
    /// By service (so status lists them sorted).
    services: BTreeMap<String, Arc<Checked>>,
    /// By served name (`*.example.com` included), for the handshake.
    names: HashMap<String, Arc<Checked>>,
}

impl Set {
    fn new(services: BTreeMap<String, Arc<Checked>>) -> Set {
        let names = services
            .values()
            .flat_map(|c| c.names.iter().map(move |n| (n.clone(), Arc::clone(c))))
            .collect();
        Set { services, names }
    }

    /// The certificate served for `name` (exact, then a wildcard).
    fn find(&self, name: &str) -> Option<&Arc<Checked>> {
        self.names.get(name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.names.get(&format!("*.{parent}"))
        })
    }

    /// A name of `names` another service's certificate is served for.
    fn claimed(&self, service: &str, names: &[String]) -> Option<(String, String)> {
        names.iter().find_map(|n| {
            self.names
                .get(n)
                .filter(|c| c.service != service)
                .map(|c| (n.clone(), c.service.clone()))
        })
    }
}

/// The certificates the HTTPS listener serves.
pub struct Certificates {
    /// What handshakes read.
    current: ArcSwap<Set>,
    /// The command line's certificate.
    fallback: Option<Fallback>,
    /// Held while a new set is checked, saved and swapped, so no two
    /// writers lose each other's change or both claim a name.
    write: Mutex<()>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.current.load();
        f.debug_struct("Certificates")
            .field("services", &set.services.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Certificates {
    /// A store with no certificate but `fallback`.
    pub fn new(fallback: Option<Fallback>) -> Certificates {
        Certificates {
            current: ArcSwap::from_pointee(Set::default()),
            fallback,
            write: Mutex::new(()),
        }
    }

    /// Serves `checked` for its service, in place of the one it had, once
    /// `save` succeeded; refused when another service's certificate is
    /// served for one of its names.
    pub fn set(
        &self,
        checked: Checked,
        save: impl FnOnce(&Checked) -> Result<(), String>,
    ) -> Result<(), String> {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        if let Some((name, other)) = current.claimed(&checked.service, &checked.names) {
            return Err(refusal(
                &checked.service,
                &format!(
                    "host name `{name}` is already served by the certificate of service \
                     `{other}`; hint: take it out of one of the two (set that service's \
                     certificate with other names, or remove_certificate)"
                ),
            ));
        }
        save(&checked)?;
        let mut services = current.services.clone();
        services.insert(checked.service.clone(), Arc::new(checked));
        self.current.store(Arc::new(Set::new(services)));
        Ok(())
    }

    /// Stops serving `service`'s certificate once `delete` succeeded.
    pub fn remove(
        &self,
        service: &str,
        delete: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        if !current.services.contains_key(service) {
            let known: Vec<&str> = current.services.keys().map(String::as_str).collect();
            return Err(if known.is_empty() {
                format!("no certificate for service `{service}`: the proxy serves none yet")
            } else {
                format!(
                    "no certificate for service `{service}`; the proxy serves those of: {}",
                    known.join(", ")
                )
            });
        }
        delete()?;
        let mut services = current.services.clone();
        services.remove(service);
        self.current.store(Arc::new(Set::new(services)));
        Ok(())
    }

    /// Every certificate set through the admin API, sorted by service.
    pub fn status(&self) -> Vec<CertificateStatus> {
        self.current
            .load()
            .services
            .values()
            .map(|c| CertificateStatus {
                service: c.service.clone(),
                names: c.names.clone(),
                not_after_unix: c.leaf.not_after_unix.max(0) as u64,
                fingerprint: c.leaf.fingerprint.clone(),
            })
            .collect()
    }

    /// Whether a request for `host` (a Host header) is served over HTTPS:
    /// a certificate (or the command line's) covers it.
    pub fn covers(&self, host: &str) -> bool {
        let name = normalize_host(host);
        self.current.load().find(&name).is_some()
            || self
                .fallback
                .as_ref()
                .is_some_and(|f| f.leaf.dns_names.iter().any(|san| covers(san, &name)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        let fallback = self.fallback.as_ref().map(|f| Arc::clone(&f.key));
        match hello.server_name() {
            // rustls hands SNI over lower case and without a trailing dot.
            Some(name) => set.find(name).map(|c| Arc::clone(&c.key)).or(fallback),
            None => fallback.or_else(|| set.services.values().next().map(|c| Arc::clone(&c.key))),
        }
    }
}

/// What plain HTTP answers before proxying.
#[derive(Debug)]
pub struct PlainHttp {
    /// Whose host names are redirected to HTTPS.
    pub certificates: Arc<Certificates>,
    /// The ACME challenges answered.
    pub challenges: Arc<Challenges>,
    /// The HTTPS listener's port; `None` (no HTTPS): nothing is redirected.
    pub https_port: Option<u16>,
}

impl PlainHttp {
    /// The proxy's own answer to `req`, or `None` to proxy it: an ACME
    /// challenge's key authorization (404 for an unknown token), else a
    /// redirect to HTTPS for a host a certificate covers.
    pub fn answer<B>(&self, req: &Request<B>) -> Option<Response<ProxyBody>> {
        if let Some(token) = req.uri().path().strip_prefix(CHALLENGE_PATH) {
            let answer = (req.method() == Method::GET || req.method() == Method::HEAD)
                .then(|| self.challenges.answer(token))
                .flatten();
            let mut response = match answer {
                Some(key_authorization) => Response::new(full(key_authorization)),
                None => {
                    let mut response = Response::new(full("no such ACME challenge\n"));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                }
            };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Some(response);
        }
        let port = self.https_port?;
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())?;
        self.certificates
            .covers(host)
            .then(|| tls::redirect(req, port))
    }
}

/// Serves the certificates saved in `store` in place of those served now
/// (at start, and again after a takeover: the old process may have changed
/// them meanwhile). One that cannot be read, is no longer valid or claims a
/// name one loaded before claims is logged and skipped: a stale certificate
/// must not keep the proxy from starting.
pub fn load_saved(certificates: &Certificates, store: &StateStore) {
    let now = SystemTime::now();
    let mut loaded = Set::default();
    for saved in store.load_certificates() {
        let checked = saved.map_err(|e| e.to_string()).and_then(|request| {
            let checked = check(&request, now)?;
            match loaded.claimed(&checked.service, &checked.names) {
                Some((name, other)) => Err(refusal(
                    &checked.service,
                    &format!("host name `{name}` is already served by service `{other}`"),
                )),
                None => Ok(checked),
            }
        });
        match checked {
            Ok(checked) => {
                let mut services = std::mem::take(&mut loaded.services);
                services.insert(checked.service.clone(), Arc::new(checked));
                loaded = Set::new(services);
            }
            Err(e) => tracing::warn!(error = %e, "a saved certificate is skipped"),
        }
    }
    let _write = certificates.write.lock().unwrap_or_else(|e| e.into_inner());
    certificates.current.store(Arc::new(loaded));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CertificateRequest;

    fn checked(service: &str, sans: &[&str], names: &[&str]) -> Checked {
        let sans: Vec<String> = sans.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(sans)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let request = CertificateRequest {
            service: service.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        check(&request, SystemTime::now()).unwrap()
    }

    fn served_for(certs: &Certificates, name: &str) -> Option<String> {
        let set = certs.current.load();
        set.find(name).map(|c| c.service.clone())
    }

    #[test]
    fn exact_names_win_over_wildcards_and_a_name_has_one_owner() {
        let certs = Certificates::new(None);
        let wild = checked("wild", &["*.a.test", "a.test"], &["*.a.test", "a.test"]);
        certs.set(wild, |_| Ok(())).unwrap();
        let api = checked("api", &["api.a.test"], &["api.a.test"]);
        certs.set(api, |_| Ok(())).unwrap();
        assert_eq!(served_for(&certs, "api.a.test").as_deref(), Some("api"));
        assert_eq!(served_for(&certs, "www.a.test").as_deref(), Some("wild"));
        assert_eq!(served_for(&certs, "a.test").as_deref(), Some("wild"));
        assert_eq!(served_for(&certs, "x.www.a.test"), None);
        assert!(certs.covers("WWW.a.test:80") && !certs.covers("b.test"));

        let clash = checked("other", &["a.test"], &["a.test"]);
        let err = certs.set(clash, |_| Ok(())).unwrap_err();
        assert!(
            err.contains(
                "host name `a.test` is already served by the certificate of service `wild`"
            ),
            "{err}"
        );
        // A failed save changes nothing either.
        let renewed = checked("api", &["api.a.test"], &["api.a.test"]);
        let fingerprint = renewed.leaf.fingerprint.clone();
        let err = certs.set(renewed, |_| Err("disk full".into())).unwrap_err();
        assert_eq!(err, "disk full");
        assert_ne!(certs.status()[0].fingerprint, fingerprint);
        let names: Vec<_> = certs.status().into_iter().map(|c| c.service).collect();
        assert_eq!(names, ["api", "wild"]);
    }

    #[test]
    fn debug_output_shows_no_key() {
        let c = checked("web", &["a.test"], &["a.test"]);
        let text = format!("{c:?}");
        assert!(
            text.contains("a.test") && !text.contains("PRIVATE"),
            "{text}"
        );
    }
}
