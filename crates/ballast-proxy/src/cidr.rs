//! Address ranges in CIDR notation (`10.0.0.0/8`, `fd00::/8`): the proxies
//! in front of this one whose forwarding headers are believed.
//!
//! A bare address is a range of one. An IPv4 peer seen as an IPv4-mapped
//! IPv6 address (a dual-stack listener) matches IPv4 ranges. Host bits set
//! below the prefix (`10.1.2.3/8`) are refused rather than silently dropped,
//! with the range that was probably meant.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A range of addresses: `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The first address of the range (host bits are zero).
    addr: IpAddr,
    /// How many leading bits every address in the range shares.
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad =
            || format!("`{text}` is not an address range; write it like 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {bits}"))?,
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask_v4(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask_v6(prefix)).into()),
        };
        if network != addr {
            return Err(format!(
                "`{text}` has bits set past its /{prefix} prefix; did you mean {network}/{prefix}?"
            ));
        }
        Ok(Cidr {
            addr: network,
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let private = cidr("10.0.0.0/8");
        assert!(private.contains(ip("10.255.0.1")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(!private.contains(ip("::1")));
        // A dual-stack listener sees IPv4 peers as mapped IPv6 addresses.
        assert!(private.contains(ip("::ffff:10.1.2.3")));

        let v6 = cidr("fd00::/8");
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));

        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        let one = cidr("192.0.2.7");
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn malformed_ranges_say_what_is_wrong() {
        let err = |text: &str| text.parse::<Cidr>().unwrap_err();
        assert_eq!(
            err("10.0.0/8"),
            "`10.0.0/8` is not an address range; write it like 10.0.0.0/8 or fd00::/8"
        );
        assert_eq!(
            err("10.0.0.0/33"),
            "`10.0.0.0/33`: the prefix length must be 0 to 32"
        );
        assert_eq!(
            err("10.1.2.3/8"),
            "`10.1.2.3/8` has bits set past its /8 prefix; did you mean 10.0.0.0/8?"
        );
        assert_eq!(
            err("fd00::1/8"),
            "`fd00::1/8` has bits set past its /8 prefix; did you mean fd00::/8?"
        );
    }
}
