//! TLS helpers of the integration tests: certificates issued with rcgen,
//! a rustls client that says which certificate it was served, and HTTP/1.1
//! over it.

use std::net::SocketAddr;
use std::sync::Arc;

use ballast_proxy::wire::CertificateRequest;
use ballast_proxy::AdminRequest;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// A certificate and its key, as the admin API takes them.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Issued {
    /// SHA-256 of the DER, lowercase hex (what `status` lists).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// The `certificate` command serving this for `names` as `service`.
    pub fn request(&self, service: &str, names: &[&str]) -> AdminRequest {
        AdminRequest::Certificate(CertificateRequest {
            service: service.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        })
    }
}

/// A self-signed certificate for `names`, valid from 1975 to 4096.
pub fn issue(names: &[&str]) -> Issued {
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    sign(params)
}

/// A self-signed certificate for `names` valid between two years (Jan 1).
pub fn issue_between(names: &[&str], from_year: i32, until_year: i32) -> Issued {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(from_year, 1, 1);
    params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
    sign(params)
}

fn sign(params: rcgen::CertificateParams) -> Issued {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// SHA-256 of `der`, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to `addr` sending SNI `name` (none when `None`) and
/// trusting only `roots`, offering HTTP/1.1.
pub async fn connect(
    addr: SocketAddr,
    name: Option<&str>,
    roots: &[&Issued],
) -> Result<TlsStream, String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.der.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // An IP address as server name sends no SNI; the certificate is then
    // checked against the IP, so those tests trust a certificate for it.
    let server_name = match name {
        Some(name) => ServerName::try_from(name.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// The fingerprint of the leaf certificate the server sent.
pub fn served(tls: &TlsStream) -> String {
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    fingerprint(&certs[0])
}

/// HTTP/1.1 over `tls`.
pub async fn http1(tls: TlsStream) -> Result<SendRequest<Empty<Bytes>>, String> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `GET path` with `Host: host` on `sender`: the status and body.
pub async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One request for `host` on a new TLS connection with SNI `host`: the
/// fingerprint served, the status and the body.
pub async fn https_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    roots: &[&Issued],
) -> Result<(String, u16, String), String> {
    let tls = connect(addr, Some(host), roots).await?;
    let fingerprint = served(&tls);
    let mut sender = http1(tls).await?;
    let (status, body) = send(&mut sender, host, path).await?;
    Ok((fingerprint, status, body))
}
