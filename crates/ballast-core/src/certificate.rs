//! A certificate chain and its key as ballast checks them before they
//! leave the operator's machine: the key matches the leaf, the leaf has not
//! expired, and its names cover the role's host names. Also the leaf's
//! fingerprint, the one the proxy reports, so an unchanged certificate is
//! not sent again.

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A checked certificate chain and its private key. `Debug` never shows
/// the key.
#[derive(Clone)]
pub struct Certificate {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM private key of the leaf (a secret: registered for redaction).
    pub key_pem: String,
    /// SHA-256 of the leaf (DER), lowercase hex, as the proxy reports it.
    pub fingerprint: String,
    pub not_after_unix: u64,
    /// The leaf's issuer, as a distinguished name.
    pub issuer: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .field("not_after_unix", &self.not_after_unix)
            .field("issuer", &self.issuer)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Why a certificate cannot be served, in the user's words (the caller
/// says which files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No `CERTIFICATE` block in the chain.
    NoCertificate,
    /// The leaf is not a readable X.509 certificate.
    Unreadable(String),
    /// The key is not a PEM private key.
    NoKey,
    /// The key belongs to another certificate.
    KeyMismatch,
    /// The leaf's validity ended at this Unix time.
    Expired(u64),
    /// A host name the leaf does not name.
    NameNotCovered(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoCertificate => write!(f, "holds no PEM certificate"),
            Problem::Unreadable(why) => write!(f, "is not a readable certificate ({why})"),
            Problem::NoKey => write!(f, "holds no PEM private key"),
            Problem::KeyMismatch => write!(f, "does not match the key"),
            Problem::Expired(at) => write!(f, "expired on {}", unix_date(*at)),
            Problem::NameNotCovered(name) => write!(f, "does not name `{name}`"),
        }
    }
}

/// The date of a Unix time, as `2026-12-01 20:07 UTC`.
pub fn unix_date(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    format!(
        "{} UTC",
        text.trim_end_matches('Z')
            .replacen('T', " ", 1)
            .get(..16)
            .unwrap_or(&text)
    )
}

/// Registers the key with the redaction layer: the whole PEM and each of
/// its base64 lines, so no part of it is ever printed.
pub fn register_secret(key_pem: &str) {
    crate::redact::register([key_pem.trim()]);
    crate::redact::register(
        key_pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----") && l.len() >= 16),
    );
}

/// Checks `chain_pem` and `key_pem` for serving `names` at `now_unix`.
pub fn check(
    chain_pem: &str,
    key_pem: &str,
    names: &[String],
    now_unix: u64,
) -> Result<Certificate, Problem> {
    register_secret(key_pem);
    let leaf_der = x509_parser::pem::Pem::iter_from_buffer(chain_pem.as_bytes())
        .filter_map(|p| p.ok())
        .find(|p| p.label == "CERTIFICATE")
        .ok_or(Problem::NoCertificate)?
        .contents;
    let (_, leaf) =
        X509Certificate::from_der(&leaf_der).map_err(|e| Problem::Unreadable(e.to_string()))?;
    if !key_pem.contains("PRIVATE KEY-----") {
        return Err(Problem::NoKey);
    }
    // rcgen reads PKCS#8 keys; another format (PKCS#1 RSA) is left for the
    // proxy to check, which reads them all.
    if let Ok(key) = rcgen::KeyPair::from_pem(key_pem) {
        if rcgen::PublicKeyData::subject_public_key_info(&key)
            != leaf.tbs_certificate.subject_pki.raw
        {
            return Err(Problem::KeyMismatch);
        }
    }
    let not_after = leaf.validity().not_after.timestamp().max(0) as u64;
    if not_after <= now_unix {
        return Err(Problem::Expired(not_after));
    }
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(name) = names.iter().find(|n| !covers(&sans, n)) {
        return Err(Problem::NameNotCovered(name.clone()));
    }
    Ok(Certificate {
        chain_pem: chain_pem.to_string(),
        key_pem: key_pem.to_string(),
        fingerprint: fingerprint(&leaf_der),
        not_after_unix: not_after,
        issuer: leaf.issuer().to_string(),
    })
}

/// SHA-256 of DER bytes, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a SAN list names `host`, a wildcard covering one label.
fn covers(sans: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    sans.iter().any(|san| match san.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => *san == host,
    })
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_current_certificate_passes() {
        let (cert, key) = made(&["a.test", "*.b.test"]);
        let names = vec!["a.test".to_string(), "x.b.test".to_string()];
        let c = check(&cert, &key, &names, now_unix()).unwrap();
        assert_eq!(c.fingerprint.len(), 64);
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }

    #[test]
    fn mismatch_expiry_and_names_are_told_apart() {
        let (cert, _) = made(&["a.test"]);
        let (_, other_key) = made(&["a.test"]);
        let names = vec!["a.test".to_string()];
        assert_eq!(
            check(&cert, &other_key, &names, now_unix()).unwrap_err(),
            Problem::KeyMismatch
        );
        let (cert, key) = made(&["a.test"]);
        let far = 253_402_300_800; // rcgen's default not_after is 4096; past it
        assert!(matches!(
            check(&cert, &key, &names, far * 100),
            Err(Problem::Expired(_))
        ));
        let names = vec!["y.z.b.test".to_string()];
        let (cert, key) = made(&["*.b.test"]);
        assert_eq!(
            check(&cert, &key, &names, now_unix()).unwrap_err(),
            Problem::NameNotCovered("y.z.b.test".into())
        );
        assert_eq!(
            check("nothing", &key, &names, 0).unwrap_err(),
            Problem::NoCertificate
        );
    }
}
