//! Lease names per IP: valid object names that cannot collide.
//!
//! Cilium names its leases `cilium-l2announce-<namespace>-<name>`, which collides for `a-b/c`
//! and `a/b-c`. Ours are per IP and derived from the canonical address text, with an inverse
//! ([`ip_of_lease_name`]), so two IPs never share a name:
//! - IPv4: `l2announcer-v4-192.0.2.10`;
//! - IPv6: `l2announcer-v6-` and the text with `:` replaced by `-`, e.g. `2001:db8::10` gives
//!   `l2announcer-v6-2001-db8--10`. A canonical text ending in `::` (`2001:db8::`) would end
//!   the name with `-`, which DNS-1123 forbids, so a `0` is appended (`...2001-db8--0`); that
//!   still reads back as the same address, and `2001:db8::0` is never the canonical text.
//!
//! The names are DNS-1123 subdomains (lowercase alphanumerics, `-` and `.`, alphanumeric at
//! both ends of every dot-separated part), at most 54 characters.

use std::net::IpAddr;

/// Prefix of every lease name, for listing and garbage collection.
pub const LEASE_NAME_PREFIX: &str = "l2announcer-";
const V4_PREFIX: &str = "l2announcer-v4-";
const V6_PREFIX: &str = "l2announcer-v6-";

/// The name of the Lease electing the node that announces `ip`.
pub fn lease_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{V4_PREFIX}{a}"),
        IpAddr::V6(a) => {
            let mut text = a.to_string().to_ascii_lowercase().replace(':', "-");
            if text.ends_with('-') {
                text.push('0');
            }
            format!("{V6_PREFIX}{text}")
        }
    }
}

/// The IP a lease name stands for, `None` if it is not one of ours.
pub fn ip_of_lease_name(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_prefix(V4_PREFIX) {
        return rest.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
    }
    let rest = name.strip_prefix(V6_PREFIX)?;
    rest.replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::is_dns1123_subdomain;
    use proptest::prelude::*;

    fn name(s: &str) -> String {
        lease_name(s.parse().unwrap())
    }

    #[test]
    fn examples() {
        assert_eq!(name("192.0.2.10"), "l2announcer-v4-192.0.2.10");
        assert_eq!(name("0.0.0.0"), "l2announcer-v4-0.0.0.0");
        assert_eq!(name("2001:db8::10"), "l2announcer-v6-2001-db8--10");
        assert_eq!(name("2001:DB8::A"), "l2announcer-v6-2001-db8--a");
        assert_eq!(name("2001:db8::"), "l2announcer-v6-2001-db8--0");
        assert_eq!(name("::"), "l2announcer-v6---0");
        assert_eq!(name("::1"), "l2announcer-v6---1");
        assert_eq!(name("::ffff:192.0.2.1"), "l2announcer-v6---ffff-192.0.2.1");
        assert_eq!(
            name("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "l2announcer-v6-ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff"
        );
        for s in [
            "2001:db8::",
            "2001:db8::0",
            "::",
            "::1",
            "::ffff:192.0.2.1",
            "192.0.2.10",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(ip_of_lease_name(&lease_name(ip)), Some(ip), "{s}");
            assert!(is_dns1123_subdomain(&lease_name(ip)), "{s}");
        }
        assert_eq!(ip_of_lease_name("cilium-l2announce-default-svc"), None);
        assert_eq!(ip_of_lease_name("l2announcer-v4-300.0.0.1"), None);
        assert_eq!(ip_of_lease_name("l2announcer-v6-zz"), None);
    }

    proptest! {
        #[test]
        fn names_are_valid_and_read_back(ip in any::<IpAddr>()) {
            let n = lease_name(ip);
            prop_assert!(is_dns1123_subdomain(&n), "{}", n);
            prop_assert!(n.len() <= 63, "{}", n);
            prop_assert!(n.starts_with(LEASE_NAME_PREFIX));
            prop_assert_eq!(ip_of_lease_name(&n), Some(ip));
        }

        #[test]
        fn distinct_ips_get_distinct_names(a in any::<IpAddr>(), b in any::<IpAddr>()) {
            prop_assert_eq!(a == b, lease_name(a) == lease_name(b));
        }

        /// Addresses that differ only a little (the likely neighbours in one pool).
        #[test]
        fn neighbouring_ips_get_distinct_names(base in any::<u128>(), delta in 1u128..65536) {
            let a = IpAddr::V6(base.into());
            let b = IpAddr::V6(base.wrapping_add(delta).into());
            prop_assert_ne!(lease_name(a), lease_name(b));
            let a4 = IpAddr::V4((base as u32).into());
            let b4 = IpAddr::V4((base as u32).wrapping_add(delta as u32).into());
            prop_assert_ne!(lease_name(a4), lease_name(b4));
        }
    }
}
