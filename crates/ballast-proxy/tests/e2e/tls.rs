//! TLS: HTTPS with a certificate and key from files (HTTP/1.1 and HTTP/2 by
//! ALPN), and plain HTTP redirected to HTTPS.

use crate::common;

use std::sync::Arc;

use ballast_proxy::TlsFiles;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::{header, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

/// Writes a self-signed certificate for `localhost` into `dir`.
fn self_signed(dir: &std::path::Path) -> (TlsFiles, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, certified.cert.pem()).unwrap();
    std::fs::write(&files.key, certified.signing_key.serialize_pem()).unwrap();
    (files, certified.cert.der().clone())
}

/// A TLS connection to `addr` that trusts only `ca`, offering `alpn`.
async fn connect(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn https_is_served_and_plain_http_is_redirected() {
    let dir = tempfile::tempdir().unwrap();
    let (files, ca) = self_signed(dir.path());
    let mut config = TestProxy::config(dir.path());
    config.https = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls = Some(files);
    let proxy = TestProxy::start_with(config).await;
    let https = proxy.started.https_addr().unwrap();
    let v1 = Upstream::start("v1").await;
    proxy
        .deploy("web", &["localhost"], None, &[&v1], 5000, 1000)
        .await
        .unwrap();

    // HTTP/1.1 over TLS.
    let tls = connect(https, &ca, b"http/1.1").await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/headers")
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https");

    // HTTP/2 over TLS, chosen by ALPN.
    let tls = connect(https, &ca, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("https://localhost:{}/", https.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "v1");

    // Plain HTTP only redirects, keeping host, path and query.
    let (status, headers, _) = get_full(&client(), proxy.addr(), "localhost", "/cart?id=7").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        headers[header::LOCATION],
        format!("https://localhost:{}/cart?id=7", https.port()).as_str()
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn tls_without_an_https_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = self_signed(dir.path());
    let mut config = TestProxy::config(dir.path());
    config.tls = Some(files);
    let err = ballast_proxy::start(config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid proxy configuration: TLS files are given but no HTTPS address to listen on"
    );
}
