//! Rendezvous (highest random weight) ranking of the nodes eligible for an IP.
//!
//! Every node computes the same order from the same inputs, with no coordination: each
//! (IP, node) pair gets a score from a fixed hash, and nodes are ordered by score. IPs spread
//! evenly over nodes, and when a node leaves only the IPs it ranked first for move.
//! The election uses the rank to delay lower-ranked nodes' acquisition attempts, so leases
//! land on the preferred node instead of piling onto the first node to ask.
//!
//! The hash is FNV-1a (64-bit) followed by the MurmurHash3 `fmix64` finalizer (FNV alone
//! mixes the last bytes poorly, and node names often differ only there). Both are fixed
//! algorithms, so the order is stable across versions, platforms and restarts.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// FNV-1a, 64-bit.
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The score of `node` for `ip`: family tag, address bytes, node name.
pub fn score(ip: IpAddr, node: &str) -> u64 {
    let (tag, addr): (u8, Vec<u8>) = match ip {
        IpAddr::V4(a) => (4, a.octets().to_vec()),
        IpAddr::V6(a) => (6, a.octets().to_vec()),
    };
    let bytes = std::iter::once(tag).chain(addr).chain(node.bytes());
    fmix64(fnv1a64(bytes))
}

/// The sort key of a node for an IP: a greater key is preferred. Equal scores (practically
/// impossible) fall back to the name, smaller first, so the order is total.
fn preference(ip: IpAddr, node: &str) -> (u64, Reverse<&str>) {
    (score(ip, node), Reverse(node))
}

/// The rank of `node` for `ip` among `eligible` (0 = preferred). A node not in `eligible`
/// ranks after all of them, at `eligible.len()`.
pub fn rank(ip: IpAddr, node: &str, eligible: &BTreeSet<String>) -> usize {
    if !eligible.contains(node) {
        return eligible.len();
    }
    eligible
        .iter()
        .filter(|other| preference(ip, other) > preference(ip, node))
        .count()
}

/// The eligible nodes for `ip`, preferred first.
pub fn ranking(ip: IpAddr, eligible: &BTreeSet<String>) -> Vec<&str> {
    let mut nodes: Vec<&str> = eligible.iter().map(String::as_str).collect();
    nodes.sort_by_key(|n| Reverse(preference(ip, n)));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn hash_is_the_published_fnv1a_and_fixed() {
        // FNV-1a 64 test vectors (Fowler/Noll/Vo reference).
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
        // The score must never change between versions: every node must agree.
        assert_eq!(
            score("192.0.2.10".parse().unwrap(), "node-1"),
            fmix64(fnv1a64([
                4, 192, 0, 2, 10, b'n', b'o', b'd', b'e', b'-', b'1'
            ]))
        );
        assert_ne!(
            score("192.0.2.10".parse().unwrap(), "node-1"),
            score("192.0.2.10".parse().unwrap(), "node-2")
        );
    }

    #[test]
    fn rank_outside_the_set_is_last() {
        let set = nodes(&["a", "b", "c"]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(rank(ip, "z", &set), 3);
        assert_eq!(rank(ip, "a", &nodes(&["a"])), 0);
        assert_eq!(rank(ip, "a", &BTreeSet::new()), 0);
    }

    #[test]
    fn ips_spread_evenly_over_nodes() {
        let set = nodes(&["cp-1", "cp-2", "worker-1", "worker-2", "worker-3"]);
        for ips in [
            (0..1000u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(0xc0a8_0300 + i)))
                .collect::<Vec<_>>(),
            (0..1000u128)
                .map(|i| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i)))
                .collect(),
        ] {
            let mut firsts: BTreeMap<&str, usize> = BTreeMap::new();
            for ip in &ips {
                *firsts.entry(ranking(*ip, &set)[0]).or_default() += 1;
            }
            assert_eq!(firsts.len(), 5, "{firsts:?}");
            for (node, n) in &firsts {
                assert!(
                    (150..=250).contains(n),
                    "{node} first for {n} of 1000: {firsts:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn ranks_are_a_permutation_consistent_with_ranking(
            ip in any::<IpAddr>(),
            set in proptest::collection::btree_set("[a-z0-9-]{1,12}", 1..12),
        ) {
            let mut ranks: Vec<usize> = set.iter().map(|n| rank(ip, n, &set)).collect();
            ranks.sort();
            prop_assert_eq!(ranks, (0..set.len()).collect::<Vec<_>>());
            for (i, n) in ranking(ip, &set).iter().enumerate() {
                prop_assert_eq!(rank(ip, n, &set), i);
            }
        }

        /// Rendezvous property: removing a node changes the preferred node only for IPs that
        /// node was preferred for, and the relative order of the others stays.
        #[test]
        fn removing_a_node_moves_only_its_ips(
            ip in any::<IpAddr>(),
            set in proptest::collection::btree_set("[a-z0-9-]{1,12}", 2..12),
            victim in any::<prop::sample::Index>(),
        ) {
            let order = ranking(ip, &set);
            let gone = victim.get(&order).to_string();
            let mut rest = set.clone();
            rest.remove(&gone);
            let expected: Vec<&str> = order.iter().copied().filter(|n| *n != gone).collect();
            prop_assert_eq!(ranking(ip, &rest), expected);
        }
    }
}
