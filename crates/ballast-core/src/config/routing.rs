//! Semantic checks of a role's proxy settings that the schema cannot
//! express: trusted proxy ranges (CIDR, no host bits) and body limits
//! (sizes such as `10MB`, within [`MAX_BODY`]); and reading them for the
//! proxy.

use std::net::IpAddr;

use super::node::shorten;
use super::schema::{Config, RoleProxy};
use super::validate::Checker;

/// The largest body limit that can be written: past it, write none.
pub const MAX_BODY: u64 = 1 << 40;

/// A size such as `10MB` or `512KiB`, in bytes.
pub fn body_bytes(text: &str) -> Option<u64> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .ok()
        .map(|b| b.as_u64())
}

/// Why `text` is not a CIDR range, if it is not one.
pub fn cidr_problem(text: &str) -> Option<String> {
    let Some((addr, len)) = text.split_once('/') else {
        return Some("is not a range written ADDRESS/BITS".into());
    };
    let Ok(ip) = addr.trim().parse::<IpAddr>() else {
        return Some(format!("`{}` is not an IP address", shorten(addr)));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let Ok(bits) = len.trim().parse::<u32>() else {
        return Some(format!("`{}` is not a prefix length", shorten(len)));
    };
    if bits > max {
        return Some(format!("/{bits} is longer than {max} bits"));
    }
    let host_bits = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) & u128::MAX.checked_shr(96 + bits).unwrap_or(0),
        IpAddr::V6(v6) => u128::from(v6) & u128::MAX.checked_shr(bits).unwrap_or(0),
    };
    (host_bits != 0).then(|| format!("has bits set past its /{bits} prefix"))
}

impl Checker<'_> {
    pub(super) fn proxies(&mut self, config: &Config) {
        for (name, role) in &config.roles {
            if let Some(proxy) = &role.proxy {
                self.proxy(name, proxy);
            }
        }
    }

    fn proxy(&mut self, role: &str, p: &RoleProxy) {
        for (i, range) in p.trusted_proxies.iter().enumerate() {
            if let Some(why) = cidr_problem(range) {
                let idx = i.to_string();
                self.error(
                    &["roles", role, "proxy", "trusted_proxies", &idx],
                    format!(
                        "roles.{role}.proxy.trusted_proxies[{i}]: `{}` {why}",
                        shorten(range)
                    ),
                )
                .set_hint("write a range such as `10.0.0.0/8` or `192.0.2.10/32` (one address)");
            }
        }
        for (key, value) in [
            ("max_request_body", &p.max_request_body),
            ("max_response_body", &p.max_response_body),
        ] {
            let Some(text) = value else { continue };
            let problem = match body_bytes(text) {
                None => Some(format!("`{}` is not a size", shorten(text))),
                Some(0) => Some("0 bytes would refuse every body".to_string()),
                Some(n) if n > MAX_BODY => Some(format!("`{}` is more than 1TiB", shorten(text))),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                self.error(
                    &["roles", role, "proxy", key],
                    format!("roles.{role}.proxy.{key}: {problem}"),
                )
                .set_hint("write a size such as `10MB`, `512KiB` or `1GB`, or leave the key out for no limit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const HEAD: &str =
        "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    port: 8080\n    proxy:\n";

    #[test]
    fn ranges_are_cidr_without_host_bits() {
        assert_eq!(cidr_problem("10.0.0.0/8"), None);
        assert_eq!(cidr_problem("192.0.2.10/32"), None);
        assert_eq!(cidr_problem("2001:db8::/32"), None);
        assert_eq!(cidr_problem("0.0.0.0/0"), None);
        assert_eq!(
            cidr_problem("10.1.2.3/8").unwrap(),
            "has bits set past its /8 prefix"
        );
        assert!(cidr_problem("10.0.0.0").unwrap().contains("ADDRESS/BITS"));
        assert!(cidr_problem("10.0.0.0/33")
            .unwrap()
            .contains("longer than 32"));
        assert!(cidr_problem("lb/8").unwrap().contains("not an IP address"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(body_bytes("10MB"), Some(10_000_000));
        assert_eq!(body_bytes("512KiB"), Some(512 * 1024));
        assert_eq!(body_bytes("lots"), None);
    }

    #[test]
    fn bad_proxy_settings_are_located() {
        let yaml = format!("{HEAD}      trusted_proxies: [10.0.0.0/8, 10.1.2.3/8]\n");
        assert_error(&yaml, 8, 37, "`10.1.2.3/8` has bits set", "10.0.0.0/8");
        let yaml = format!("{HEAD}      max_request_body: 10 parsecs\n");
        assert_error(&yaml, 8, 25, "`10 parsecs` is not a size", "`10MB`");
        let yaml = format!("{HEAD}      max_response_body: 0B\n");
        assert_error(&yaml, 8, 26, "0 bytes would refuse every body", "no limit");
        let ok = parse_yaml(&format!(
            "{HEAD}      trusted_proxies: [10.0.0.0/8]\n      max_request_body: 10MB\n"
        ))
        .unwrap();
        let proxy = ok.config.roles["web"].proxy.clone().unwrap();
        assert_eq!(
            body_bytes(proxy.max_request_body.as_deref().unwrap()),
            Some(10_000_000)
        );
    }
}
