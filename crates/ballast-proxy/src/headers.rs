//! Header rewriting between client and upstream: hop-by-hop headers, upgrade
//! detection and the forwarding headers.
//!
//! The proxy is the edge unless the client's address is in the configured
//! trusted proxies (see [`TrustedProxies`]). At the edge, whatever the
//! client sent in `X-Forwarded-For`, `X-Real-IP`, `Forwarded`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host` is replaced by what the proxy
//! saw: the client's address, the scheme it connected over and the Host it
//! asked for (a client cannot pass itself off as someone else). Behind a
//! trusted proxy, the client's address is appended to `X-Forwarded-For` and
//! `Forwarded` (after what that proxy sent, as nginx does), and its
//! `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host` are kept when
//! present. Header names are constants and values are formatted on the
//! stack, so the common case allocates only the values themselves.

use std::fmt;
use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::cidr::Cidr;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Real-IP`.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `Forwarded` (RFC 7239).
pub const FORWARDED: HeaderName = header::FORWARDED;

/// Headers that concern one connection only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// The protocol a request asks to upgrade to (`websocket`, …), if it does.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        strip_named_by_connection(headers);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn strip_named_by_connection(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Puts back the two headers an upgrade needs after [`strip_hop_by_hop`].
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// The proxies in front of this one whose forwarding headers are kept.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Trusts clients in any of `ranges`.
    pub fn new(ranges: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(ranges)
    }

    /// Whether a client at `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }
}

/// What the proxy saw of a request, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The TCP peer.
    pub client: IpAddr,
    /// The Host the client asked for (empty: none).
    pub host: &'a HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Whether the peer is a trusted proxy (see the module doc).
    pub trusted: bool,
}

/// Sets the forwarding headers of a request (see the module doc).
pub fn set_forwarded(headers: &mut HeaderMap, seen: Seen<'_>) {
    let client = seen.client;
    let proto = HeaderValue::from_static(scheme_value(seen.scheme));
    let host = (!seen.host.is_empty()).then_some(seen.host);
    // `host="…"` in `Forwarded`, when the Host can be quoted as it is.
    let quoted_host = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.contains(['"', '\\']));
    let ours = |out: &mut dyn fmt::Write| {
        write!(out, "for={}", ForNode(seen.client))?;
        if let Some(host) = quoted_host {
            write!(out, ";host=\"{host}\"")?;
        }
        write!(out, ";proto={}", scheme_value(seen.scheme))
    };
    if !seen.trusted {
        if let Some(ip) = value(|out| write!(out, "{client}")) {
            headers.insert(X_REAL_IP, ip.clone());
            headers.insert(X_FORWARDED_FOR, ip);
        }
        if let Some(forwarded) = value(ours) {
            headers.insert(FORWARDED, forwarded);
        }
        headers.insert(X_FORWARDED_PROTO, proto);
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(X_FORWARDED_HOST),
        };
        return;
    }
    let chain = value(|out| {
        for earlier in headers.get_all(&X_FORWARDED_FOR).iter() {
            if let Ok(earlier) = earlier.to_str() {
                write!(out, "{earlier}, ")?;
            }
        }
        write!(out, "{client}")
    });
    let forwarded = value(|out| {
        for earlier in headers.get_all(&FORWARDED).iter() {
            if let Ok(earlier) = earlier.to_str() {
                write!(out, "{earlier}, ")?;
            }
        }
        ours(out)
    });
    if let Some(chain) = chain {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if let Some(forwarded) = forwarded {
        headers.insert(FORWARDED, forwarded);
    }
    if !headers.contains_key(&X_REAL_IP) {
        if let Some(ip) = value(|out| write!(out, "{client}")) {
            headers.insert(X_REAL_IP, ip);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    if let (Some(host), false) = (host, headers.contains_key(&X_FORWARDED_HOST)) {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
}

fn scheme_value(scheme: &str) -> &'static str {
    if scheme == "https" {
        "https"
    } else {
        "http"
    }
}

/// An address as `Forwarded: for=` writes it: IPv6 quoted in brackets.
struct ForNode(IpAddr);

impl fmt::Display for ForNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "\"[{ip}]\""),
        }
    }
}

/// A header value written by `write`: formatted in a buffer on the stack,
/// or on the heap when it does not fit. `None` when it is no valid value.
fn value(write: impl Fn(&mut dyn fmt::Write) -> fmt::Result) -> Option<HeaderValue> {
    let mut stack = StackText::default();
    if write(&mut stack).is_ok() {
        return HeaderValue::from_bytes(stack.as_bytes()).ok();
    }
    let mut heap = String::new();
    write(&mut heap).ok()?;
    HeaderValue::from_str(&heap).ok()
}

/// Text in a fixed buffer; writing past its end fails.
struct StackText {
    buf: [u8; 256],
    len: usize,
}

impl Default for StackText {
    fn default() -> StackText {
        StackText {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn upgrades_are_recognised_and_restored() {
        let mut h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let protocol = upgrade_protocol(&h).unwrap();
        assert_eq!(protocol, "websocket");
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
        restore_upgrade(&mut h, protocol);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        // Upgrade without Connection: upgrade is not an upgrade.
        assert!(upgrade_protocol(&headers(&[("upgrade", "websocket")])).is_none());
    }

    fn seen<'a>(
        client: &str,
        host: &'a HeaderValue,
        scheme: &'static str,
        trusted: bool,
    ) -> Seen<'a> {
        Seen {
            client: client.parse().unwrap(),
            host,
            scheme,
            trusted,
        }
    }

    fn spoofed() -> HeaderMap {
        headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-real-ip", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7;proto=https"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example.com"),
        ])
    }

    #[test]
    fn at_the_edge_what_the_client_claims_is_replaced() {
        let mut h = spoofed();
        let host = HeaderValue::from_static("shop.example.com:8080");
        set_forwarded(&mut h, seen("192.0.2.10", &host, "http", false));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.10");
        assert_eq!(h["x-real-ip"], "192.0.2.10");
        assert_eq!(h.get_all("forwarded").iter().count(), 1);
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.10;host=\"shop.example.com:8080\";proto=http"
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example.com:8080");

        let mut h = spoofed();
        let none = HeaderValue::from_static("");
        set_forwarded(&mut h, seen("2001:db8::1", &none, "https", false));
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(h.get("x-forwarded-host").is_none());
    }

    #[test]
    fn behind_a_trusted_proxy_the_chain_is_kept_and_extended() {
        let mut h = spoofed();
        let host = HeaderValue::from_static("shop.example.com");
        set_forwarded(&mut h, seen("10.0.0.2", &host, "http", true));
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.1, 10.0.0.2");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.7;proto=https, for=10.0.0.2;host=\"shop.example.com\";proto=http"
        );
        assert_eq!(h["x-real-ip"], "203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil.example.com");

        // A trusted proxy that sent nothing: the proxy's own view.
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, seen("10.0.0.2", &host, "https", true));
        assert_eq!(h["x-forwarded-for"], "10.0.0.2");
        assert_eq!(h["x-real-ip"], "10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
    }

    #[test]
    fn long_values_and_unquotable_hosts_are_handled() {
        let long = "198.51.100.1, ".repeat(40);
        let mut h = headers(&[("x-forwarded-for", long.trim_end_matches(", "))]);
        let host = HeaderValue::from_static("a\"b");
        set_forwarded(&mut h, seen("10.0.0.2", &host, "http", true));
        let chain = h["x-forwarded-for"].to_str().unwrap();
        assert!(
            chain.len() > 256 && chain.ends_with(", 10.0.0.2"),
            "{chain}"
        );
        assert_eq!(h["forwarded"], "for=10.0.0.2;proto=http");
    }

    #[test]
    fn trust_follows_the_configured_ranges() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(trusted.contains("10.1.1.1".parse().unwrap()));
        assert!(!trusted.contains("192.0.2.1".parse().unwrap()));
        assert!(!TrustedProxies::default().contains("10.1.1.1".parse().unwrap()));
    }
}
