//! TLS: the rustls server configuration (certificates chosen by SNI, see
//! `certs`), the command line's certificate from PEM files, and the
//! redirect plain HTTP answers for host names served over HTTPS.
//!
//! ALPN offers `h2` then `http/1.1`, so HTTP/2 clients get HTTP/2 over TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

use crate::certs::{self, Fallback};
use crate::proxy::{full, ProxyBody};
use crate::table::normalize_host;

/// The certificate chain and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {}: {reason}", path.display())]
    Pem {
        /// "certificates" or "a private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The command line's certificate and key, checked to belong together.
pub fn load_files(files: &TlsFiles) -> Result<Fallback, TlsError> {
    let pem_error = |what, path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            what,
            path,
            reason: e.to_string(),
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem_error("certificates", &files.cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_error("certificates", &files.cert))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::Pem {
            what: "certificates",
            path: files.cert.clone(),
            reason: "no CERTIFICATE block found".into(),
        });
    };
    let leaf = certs::leaf_facts(leaf).map_err(|reason| TlsError::Pem {
        what: "certificates",
        path: files.cert.clone(),
        reason: format!("the leaf {reason}"),
    })?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(pem_error("a private key", &files.key))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(certs, key, &provider).map_err(|e| TlsError::Pem {
        what: "a private key of the certificate",
        path: files.key.clone(),
        reason: format!("{e}; hint: give the key the certificate was issued for"),
    })?;
    Ok(Fallback {
        key: Arc::new(key),
        leaf,
    })
}

/// A server configuration choosing its certificate with `resolver` (by
/// SNI), offering HTTP/2 and HTTP/1.1.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The answer of plain HTTP for a host served over HTTPS: a permanent
/// redirect to the same host and path there (308 keeps the method and body
/// of non-GETs).
pub fn redirect<B>(req: &Request<B>, https_port: u16) -> Response<ProxyBody> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let name = normalize_host(&host);
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "/@?#".contains(c)) {
        let mut response = Response::new(full("HTTPS only: ask for a host name\n"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    }
    let name = if name.contains(':') {
        format!("[{name}]")
    } else {
        name
    };
    let authority = if https_port == 443 {
        name
    } else {
        format!("{name}:{https_port}")
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{authority}{path}");
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = Response::new(full(format!("moved to {location}\n")));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, host: &str, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .body(())
            .unwrap()
    }

    #[test]
    fn gets_move_permanently_to_https_with_path_and_query() {
        let r = redirect(&request(Method::GET, "Shop.Example.com", "/a?b=1"), 443);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://shop.example.com/a?b=1"
        );
    }

    #[test]
    fn other_methods_keep_their_method_and_a_custom_port_is_kept() {
        let r = redirect(&request(Method::POST, "127.0.0.1:8080", "/form"), 8443);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "https://127.0.0.1:8443/form");
        let r = redirect(&request(Method::GET, "[::1]:80", "/"), 8443);
        assert_eq!(r.headers()[header::LOCATION], "https://[::1]:8443/");
    }

    #[test]
    fn a_request_without_host_is_refused() {
        let r = redirect(&request(Method::GET, "", "/"), 443);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn missing_files_say_which_file() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = load_files(&files).unwrap_err().to_string();
        assert!(
            err.contains("cannot read certificates from /nonexistent/cert.pem"),
            "{err}"
        );
    }
}
