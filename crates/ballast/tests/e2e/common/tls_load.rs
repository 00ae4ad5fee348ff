//! HTTPS for the certificate tests: a load client that speaks TLS with SNI
//! to one address, trusting a test CA, and counts every request (a failed
//! connect or handshake included); the leaf a proxy serves for a name, read
//! with `openssl s_client`; and a test CA that issues leaves with rcgen.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::sync::watch;

use super::load::{drive, status_and_body, within_deadline, LoadReport};

/// A CA made for a test, and leaves it signs.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert_pem: String,
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ballast test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid from
    /// `not_before` to `not_after` (Unix seconds): (cert PEM, key PEM).
    pub fn leaf_between(
        &self,
        names: &[&str],
        not_before: i64,
        not_after: i64,
    ) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        let at = |secs: i64| {
            let days = secs.div_euclid(86_400);
            // Civil date from days since the epoch (Howard Hinnant's algorithm).
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
            let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
            let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
            rcgen::date_time_ymd(y, m, d)
        };
        params.not_before = at(not_before);
        params.not_after = at(not_after);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf for `names`, valid from yesterday for 90 days.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let now = now_unix();
        self.leaf_between(names, now - 86_400, now + 90 * 86_400)
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The leaf a TLS server at `ip:port` presents for `name` (SNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// SHA-256 of the DER, lowercase hex without colons.
    pub fingerprint: String,
    /// `issuer=...` as openssl prints it.
    pub issuer: String,
}

/// Reads the leaf served for `name` with `openssl s_client -servername`.
pub fn served_leaf(ip: &str, port: u16, name: &str) -> Result<Leaf, String> {
    use std::process::{Command, Stdio};
    let hello = Command::new("openssl")
        .args(["s_client", "-connect", &format!("{ip}:{port}")])
        .args(["-servername", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&hello.stdout).to_string();
    let begin = stdout.find("-----BEGIN CERTIFICATE-----").ok_or_else(|| {
        format!(
            "no certificate from {ip}:{port} for {name}: {}",
            String::from_utf8_lossy(&hello.stderr)
        )
    })?;
    let end = stdout[begin..].find("-----END CERTIFICATE-----").unwrap() + begin + 25;
    let pem = &stdout[begin..end];
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-issuer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = x509.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut leaf = Leaf {
        fingerprint: String::new(),
        issuer: String::new(),
    };
    for line in text.lines() {
        if let Some((_, fp)) = line.split_once("Fingerprint=") {
            leaf.fingerprint = fp.replace(':', "").to_ascii_lowercase();
        } else if line.starts_with("issuer") {
            leaf.issuer = line.to_string();
        }
    }
    Ok(leaf)
}

/// The client side of TLS trusting `ca_pem` only.
pub fn connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>;

/// Opens a keep-alive HTTPS connection to `addr` asking for `name`.
async fn open(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let stream = tls
        .connect(server, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends `rate` requests per second to `https://name/` at `addr` from
/// `workers` keep-alive connections until `stop` turns true. A broken
/// connection is counted as a failure, then opened again.
pub async fn run(
    addr: SocketAddr,
    name: String,
    ca_pem: String,
    rate: u32,
    workers: u32,
    stop: watch::Receiver<bool>,
) -> LoadReport {
    let tls = connector(&ca_pem);
    drive(rate, workers, stop, move |_, mut pace, report| {
        let (tls, name) = (tls.clone(), name.clone());
        async move {
            let mut conn: Option<Sender> = None;
            while pace.next_tick().await {
                let outcome = within_deadline(async {
                    let mut request = hyper::Request::get("/")
                        .header("host", name.as_str())
                        .body(Empty::new())
                        .unwrap();
                    // Like hyper-util's pooled client: a request the server
                    // closed the idle connection under, before it was
                    // written, goes once on a fresh connection.
                    let mut fresh = false;
                    let resp = loop {
                        if !conn.as_ref().is_some_and(|s| s.is_ready()) {
                            conn = Some(open(&tls, addr, &name).await?);
                            fresh = true;
                        }
                        let sender = conn.as_mut().expect("just opened");
                        match sender.try_send_request(request).await {
                            Ok(resp) => break resp,
                            Err(mut e) => match e.take_message() {
                                Some(unsent) if !fresh => {
                                    request = unsent;
                                    conn = None;
                                }
                                _ => return Err(e.into_error().to_string()),
                            },
                        }
                    };
                    status_and_body(resp).await
                })
                .await;
                if outcome.is_err() {
                    conn = None;
                }
                report
                    .lock()
                    .unwrap()
                    .count(format_args!("https://{name}/ at {addr}"), outcome);
            }
        }
    })
    .await
}
