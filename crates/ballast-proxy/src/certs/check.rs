//! Checking a certificate before it is served: the PEM parses, the key is
//! the leaf's, the leaf is valid now, and it covers every name it is to be
//! served for. Every refusal is one sentence naming the service, the part
//! at fault and what to do; nothing is changed by a refused certificate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

use crate::table::check_service_name;
use crate::wire::CertificateRequest;

/// A certificate that passed every check, ready to serve.
pub struct Checked {
    /// The service it belongs to.
    pub service: String,
    /// The names it is served for, normalised (lower case, no trailing dot).
    pub names: Vec<String>,
    /// The chain and signing key rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The leaf's facts.
    pub leaf: Leaf,
}

// By hand, so no future field can print key material.
impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("service", &self.service)
            .field("names", &self.names)
            .field("leaf", &self.leaf)
            .finish_non_exhaustive()
    }
}

/// What the proxy needs to know of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Valid from, in seconds since the Unix epoch.
    pub not_before_unix: i64,
    /// Valid until, in seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// Its DNS subject alternative names, lower case (wildcards kept).
    pub dns_names: Vec<String>,
    /// SHA-256 of its DER, lowercase hex.
    pub fingerprint: String,
}

/// Checks `r` at `now`; see the module doc.
pub fn check(r: &CertificateRequest, now: SystemTime) -> Result<Checked, String> {
    check_service_name(&r.service)?;
    let refuse = |what: String| refusal(&r.service, &what);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(r.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            refuse(format!(
                "cert_pem is not a PEM certificate chain ({e}); hint: send the chain as PEM, \
                 leaf first"
            ))
        })?;
    let Some(leaf_der) = chain.first() else {
        return Err(refuse(
            "cert_pem holds no `-----BEGIN CERTIFICATE-----` block; hint: send the chain as \
             PEM, leaf first"
                .into(),
        ));
    };
    // The key's own parse error could quote key material: never shown.
    let key = PrivateKeyDer::from_pem_slice(r.key_pem.as_bytes()).map_err(|_| {
        refuse(
            "key_pem holds no PEM private key (PKCS#8, PKCS#1 or SEC1); hint: send the leaf's \
             private key as PEM"
                .into(),
        )
    })?;
    let leaf = leaf_facts(leaf_der).map_err(|e| refuse(format!("the leaf in cert_pem {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|_| {
        refuse(
            "key_pem is a private key of a kind rustls cannot sign with; hint: use an RSA, \
             ECDSA (P-256, P-384) or Ed25519 key"
                .into(),
        )
    })?;
    let key = CertifiedKey::new(chain.clone(), signing);
    if key.keys_match().is_err() {
        return Err(refuse(
            "key_pem is not the private key of the leaf certificate in cert_pem; hint: send \
             the key the certificate was issued for"
                .into(),
        ));
    }
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    if leaf.not_after_unix < now_unix {
        return Err(refuse(format!(
            "the certificate expired at {}; hint: renew it and send the new one",
            rfc3339(leaf.not_after_unix)
        )));
    }
    if leaf.not_before_unix > now_unix {
        return Err(refuse(format!(
            "the certificate is not valid before {}; hint: check this host's clock, or send \
             it once it is valid",
            rfc3339(leaf.not_before_unix)
        )));
    }
    if r.names.is_empty() {
        return Err(refuse(
            "names is empty; hint: list the host names to serve it for".into(),
        ));
    }
    let mut names = Vec::new();
    for name in &r.names {
        let name = normalize_name(name).map_err(&refuse)?;
        if !leaf.dns_names.iter().any(|san| covers(san, &name)) {
            return Err(refuse(format!(
                "the certificate does not cover host name `{name}` (its names are: {}); hint: \
                 list only names the certificate is issued for, or get one that covers `{name}`",
                if leaf.dns_names.is_empty() {
                    "none".to_string()
                } else {
                    leaf.dns_names.join(", ")
                }
            )));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Checked {
        service: r.service.clone(),
        names,
        key: Arc::new(key),
        leaf,
    })
}

/// The sentence of every refusal.
pub fn refusal(service: &str, what: &str) -> String {
    format!(
        "cannot use the certificate of service `{service}`: {what}; nothing was changed: the \
         proxy serves the certificates it had"
    )
}

/// Validity, DNS names and fingerprint of a DER leaf certificate.
pub fn leaf_facts(der: &CertificateDer<'_>) -> Result<Leaf, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("is not an X.509 certificate ({e})"))?;
    let validity = cert.validity();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("has a broken subject alternative name extension ({e})"))?;
    let dns_names = san
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.trim_end_matches('.').to_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Leaf {
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        dns_names,
        fingerprint: fingerprint(der),
    })
}

/// SHA-256 of `der`, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A host name as served: lower case, no trailing dot; `*.` allowed only
/// as the whole first label.
pub fn normalize_name(name: &str) -> Result<String, String> {
    let normal = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = normal.split('.').enumerate().all(|(i, label)| {
        (i == 0 && label == "*")
            || (!label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    });
    if normal.is_empty() || normal == "*" || normal.len() > 253 || !labels_ok {
        return Err(format!(
            "`{name}` is not a host name (letters, digits, `-` and dots; `*.` only first); \
             hint: give names like `shop.example.com` or `*.example.com`"
        ));
    }
    Ok(normal)
}

/// Whether a certificate name (`san`, maybe `*.example.com`) covers the
/// host `name`: the same name, or one label under a wildcard's domain.
pub fn covers(san: &str, name: &str) -> bool {
    if san.eq_ignore_ascii_case(name) {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(domain), Some((label, rest))) => {
            !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(domain)
        }
        _ => false,
    }
}

fn rfc3339(unix: i64) -> String {
    let at = if unix >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        SystemTime::UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("a.test", "A.test"));
        assert!(covers("*.a.test", "x.a.test"));
        assert!(covers("*.a.test", "*.a.test"));
        assert!(!covers("*.a.test", "a.test"));
        assert!(!covers("*.a.test", "y.x.a.test"));
        assert!(!covers("a.test", "b.test"));
    }

    #[test]
    fn names_are_normalised_or_refused() {
        assert_eq!(
            normalize_name("Shop.Example.COM.").unwrap(),
            "shop.example.com"
        );
        assert_eq!(normalize_name("*.example.com").unwrap(), "*.example.com");
        for bad in ["", "*", "a..b", "a.*.b", "a b", "a/b", "x:80"] {
            assert!(normalize_name(bad).is_err(), "{bad}");
        }
    }
}
