//! Choosing the lab network's subnet and its hosts' addresses.
//!
//! Labs live in 10.213.0.0/16, one /24 each, far from Docker's default pools
//! (172.17–31.x, 192.168.x), so a lab never collides with networks Docker
//! hands out by itself. Host `n` gets address `.10 + n`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use ballast_core::{Error, Result};

/// The range labs are carved from.
pub const LAB_RANGE: &str = "10.213.0.0/16";
/// The most hosts a lab can hold: addresses .11 to .210 of its /24.
pub const MAX_HOSTS: usize = 200;

/// The first /24 in [`LAB_RANGE`] that overlaps none of `taken`.
pub fn pick(taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    let range: Ipv4Net = LAB_RANGE.parse().expect("constant range parses");
    range
        .subnets(24)
        .expect("/24 fits in /16")
        .find(|candidate| !taken.iter().any(|t| overlaps(candidate, t)))
        .ok_or_else(|| {
            Error::failed(
                "choose a lab subnet",
                format_args!("every /24 of {LAB_RANGE} is in use"),
            )
            .hint("remove unused labs with `ballast lab down --name NAME`, or give --subnet")
        })
}

/// Parses the subnets Docker reports, skipping IPv6 and anything unreadable.
pub fn parse_taken<'a>(subnets: impl IntoIterator<Item = &'a str>) -> Vec<Ipv4Net> {
    subnets.into_iter().filter_map(|s| s.parse().ok()).collect()
}

/// Reads a subnet given by the user; it must be a /24 or larger to hold the
/// gateway and the hosts.
pub fn parse_user(text: &str, hosts: usize) -> Result<Ipv4Net> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        Error::input(
            "read --subnet",
            format_args!("{text:?} is not an IPv4 subnet"),
        )
        .hint("write it as ADDRESS/PREFIX, e.g. 10.213.7.0/24")
    })?;
    if net.prefix_len() > 24 {
        return Err(
            Error::input("read --subnet", format_args!("{net} is smaller than a /24"))
                .hint("give a /24 or larger"),
        );
    }
    let _ = host_ip(&net.trunc(), hosts)?;
    Ok(net.trunc())
}

/// The gateway Docker puts on the bridge: the first address.
pub fn gateway(subnet: &Ipv4Net) -> Ipv4Addr {
    nth(subnet, 1)
}

/// The address of host `n` (1-based).
pub fn host_ip(subnet: &Ipv4Net, n: usize) -> Result<Ipv4Addr> {
    if n == 0 || n > MAX_HOSTS {
        return Err(Error::input(
            "assign a host address",
            format_args!("host number {n} is outside 1..={MAX_HOSTS}"),
        ));
    }
    Ok(nth(subnet, 10 + n as u32))
}

fn nth(subnet: &Ipv4Net, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + offset)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn picks_the_first_free_slash_24() {
        assert_eq!(pick(&[]).unwrap().to_string(), "10.213.0.0/24");
        let taken = nets(&["10.213.0.0/24", "10.213.1.0/24", "172.17.0.0/16"]);
        assert_eq!(pick(&taken).unwrap().to_string(), "10.213.2.0/24");
    }

    #[test]
    fn a_wide_network_blocks_everything_it_covers() {
        assert!(pick(&nets(&["10.0.0.0/8"])).is_err());
        assert_eq!(
            pick(&nets(&["10.213.0.0/23"])).unwrap().to_string(),
            "10.213.2.0/24"
        );
    }

    #[test]
    fn hosts_start_at_dot_eleven() {
        let net: Ipv4Net = "10.213.4.0/24".parse().unwrap();
        assert_eq!(gateway(&net).to_string(), "10.213.4.1");
        assert_eq!(host_ip(&net, 1).unwrap().to_string(), "10.213.4.11");
        assert_eq!(host_ip(&net, 200).unwrap().to_string(), "10.213.4.210");
        assert!(host_ip(&net, 0).is_err());
        assert!(host_ip(&net, 201).is_err());
    }

    #[test]
    fn user_subnets_are_checked() {
        assert_eq!(
            parse_user("10.9.9.7/24", 3).unwrap().to_string(),
            "10.9.9.0/24"
        );
        assert!(parse_user("10.9.9.0/28", 3).is_err());
        let e = parse_user("banana", 3).unwrap_err();
        assert!(e.cause.contains("banana"));
        assert_eq!(
            parse_taken(["fd00::/64", "10.1.0.0/16", "junk"]),
            nets(&["10.1.0.0/16"])
        );
    }
}
