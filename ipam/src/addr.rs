//! Addresses as integers, inclusive ranges, pool blocks, and the free-address index.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        // Ranges of the V4 family only ever hold values below 2^32.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    family: Family,
    first: u128,
    last: u128,
}

impl IpRange {
    /// `first..=last`; `None` when the families differ or `last < first`.
    pub fn new(first: IpAddr, last: IpAddr) -> Option<IpRange> {
        let family = Family::of(first);
        if Family::of(last) != family || to_u128(last) < to_u128(first) {
            return None;
        }
        Some(IpRange {
            family,
            first: to_u128(first),
            last: to_u128(last),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn first(&self) -> IpAddr {
        from_u128(self.family, self.first)
    }

    pub fn last(&self) -> IpAddr {
        from_u128(self.family, self.last)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && (self.first..=self.last).contains(&to_u128(ip))
    }

    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    /// Number of addresses; saturates at `u128::MAX` for `::/0`.
    pub fn size(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }
}

impl fmt::Display for IpRange {
    /// Cilium's format in conflict messages: `first - last`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", self.first(), self.last())
    }
}

/// A parsed pool block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub range: IpRange,
    /// Prefix length when the block was given as `cidr`, `None` for start/stop.
    pub prefix_len: Option<u8>,
}

/// Why a block of a pool cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("error parsing cidr '{0}'")]
    Cidr(String),
    #[error("error parsing start ip '{0}'")]
    Start(String),
    #[error("error parsing stop ip '{0}'")]
    Stop(String),
    #[error("range '{0}' - '{1}' is empty or mixes families")]
    Range(String, String),
    #[error("block has neither cidr nor start")]
    Empty,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

impl Block {
    /// Parses a block as Cilium does: a non-empty `cidr` wins (masked to its network), else
    /// `start` with an optional `stop` (a lone start is one address).
    pub fn parse(
        cidr: Option<&str>,
        start: Option<&str>,
        stop: Option<&str>,
    ) -> Result<Block, BlockError> {
        if let Some(cidr) = non_empty(cidr) {
            let err = || BlockError::Cidr(cidr.to_string());
            let (addr, len) = cidr.split_once('/').ok_or_else(err)?;
            let addr: IpAddr = addr.parse().map_err(|_| err())?;
            let len: u8 = len.parse().map_err(|_| err())?;
            let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
            if len > bits {
                return Err(err());
            }
            let host_bits = u32::from(bits - len);
            let host_mask: u128 = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let family = Family::of(addr);
            let first = to_u128(addr) & !host_mask;
            let range = IpRange {
                family,
                first,
                last: first | host_mask,
            };
            return Ok(Block {
                range,
                prefix_len: Some(len),
            });
        }
        let start_s = non_empty(start).ok_or(BlockError::Empty)?;
        let first: IpAddr = start_s
            .parse()
            .map_err(|_| BlockError::Start(start_s.to_string()))?;
        let last = match non_empty(stop) {
            None => first,
            Some(s) => s.parse().map_err(|_| BlockError::Stop(s.to_string()))?,
        };
        let range = IpRange::new(first, last)
            .ok_or_else(|| BlockError::Range(first.to_string(), last.to_string()))?;
        Ok(Block {
            range,
            prefix_len: None,
        })
    }

    /// The addresses `allowFirstLastIPs: No` reserves: network and broadcast of CIDR blocks
    /// with more than two addresses (so never for /31, /32, /127, /128 or start/stop).
    pub fn reserved_when_first_last_disallowed(&self) -> Vec<IpAddr> {
        if self.prefix_len.is_none() || self.range.last - self.range.first < 2 {
            return Vec::new();
        }
        vec![self.range.first(), self.range.last()]
    }
}

/// Free addresses of one range as disjoint inclusive intervals (start -> end), so finding the
/// lowest free address, taking or returning one are O(log n) whatever the range's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FreeSet {
    family: Family,
    intervals: BTreeMap<u128, u128>,
    free: u128,
}

impl FreeSet {
    pub(crate) fn new(range: IpRange) -> FreeSet {
        FreeSet {
            family: range.family,
            intervals: BTreeMap::from([(range.first, range.last)]),
            free: range.size(),
        }
    }

    pub(crate) fn free_count(&self) -> u128 {
        self.free
    }

    pub(crate) fn lowest_free(&self) -> Option<IpAddr> {
        self.intervals
            .first_key_value()
            .map(|(&start, _)| from_u128(self.family, start))
    }

    pub(crate) fn is_free(&self, ip: IpAddr) -> bool {
        let a = to_u128(ip);
        Family::of(ip) == self.family
            && self
                .intervals
                .range(..=a)
                .next_back()
                .is_some_and(|(_, &end)| a <= end)
    }

    /// Marks `ip` used; false if it was not free.
    pub(crate) fn take(&mut self, ip: IpAddr) -> bool {
        if !self.is_free(ip) {
            return false;
        }
        let a = to_u128(ip);
        let Some((&start, &end)) = self.intervals.range(..=a).next_back() else {
            return false;
        };
        self.intervals.remove(&start);
        if start < a {
            self.intervals.insert(start, a - 1);
        }
        if a < end {
            self.intervals.insert(a + 1, end);
        }
        self.free -= 1;
        true
    }

    /// Marks `ip` free again (the caller knows it lies in the range); false if already free.
    pub(crate) fn give_back(&mut self, ip: IpAddr) -> bool {
        if Family::of(ip) != self.family || self.is_free(ip) {
            return false;
        }
        let a = to_u128(ip);
        let mut start = a;
        let mut end = a;
        if a > 0
            && let Some((&s, &e)) = self.intervals.range(..a).next_back()
            && e == a - 1
        {
            start = s;
            self.intervals.remove(&s);
        }
        if a < u128::MAX
            && let Some(&e) = self.intervals.get(&(a + 1))
        {
            end = e;
            self.intervals.remove(&(a + 1));
        }
        self.intervals.insert(start, end);
        self.free += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_are_masked_and_sized() {
        let b = Block::parse(Some("10.0.10.7/24"), None, None).unwrap();
        assert_eq!(
            (b.range.first(), b.range.last()),
            (ip("10.0.10.0"), ip("10.0.10.255"))
        );
        assert_eq!(b.range.size(), 256);
        let b = Block::parse(Some("2001:db8::/64"), None, None).unwrap();
        assert_eq!(b.range.size(), 1u128 << 64);
        assert_eq!(
            Block::parse(Some("::/0"), None, None).unwrap().range.size(),
            u128::MAX
        );
        assert_eq!(
            Block::parse(Some("0.0.0.0/0"), None, None)
                .unwrap()
                .range
                .size(),
            1u128 << 32
        );
    }

    #[test]
    fn start_stop_blocks_and_lone_start() {
        let b = Block::parse(Some(""), Some("192.168.3.150"), Some("192.168.3.250")).unwrap();
        assert_eq!(b.range.size(), 101);
        assert_eq!(b.prefix_len, None);
        let lone = Block::parse(None, Some("1.2.3.4"), None).unwrap();
        assert_eq!(
            (lone.range.first(), lone.range.last(), lone.range.size()),
            (ip("1.2.3.4"), ip("1.2.3.4"), 1)
        );
    }

    #[test]
    fn bad_blocks_are_errors() {
        assert_eq!(
            Block::parse(Some("10.0.0.0"), None, None),
            Err(BlockError::Cidr("10.0.0.0".into()))
        );
        assert_eq!(
            Block::parse(Some("10.0.0.0/33"), None, None),
            Err(BlockError::Cidr("10.0.0.0/33".into()))
        );
        assert_eq!(
            Block::parse(None, Some("x"), None),
            Err(BlockError::Start("x".into()))
        );
        assert_eq!(
            Block::parse(None, Some("10.0.0.1"), Some("y")),
            Err(BlockError::Stop("y".into()))
        );
        assert!(matches!(
            Block::parse(None, Some("10.0.0.5"), Some("10.0.0.1")),
            Err(BlockError::Range(..))
        ));
        assert!(matches!(
            Block::parse(None, Some("10.0.0.5"), Some("::1")),
            Err(BlockError::Range(..))
        ));
        assert_eq!(
            Block::parse(None, None, Some("10.0.0.1")),
            Err(BlockError::Empty)
        );
    }

    #[test]
    fn reserved_first_last_only_for_cidrs_larger_than_two() {
        let r = |c: &str| {
            Block::parse(Some(c), None, None)
                .unwrap()
                .reserved_when_first_last_disallowed()
        };
        assert_eq!(r("10.0.0.0/30"), vec![ip("10.0.0.0"), ip("10.0.0.3")]);
        assert_eq!(
            r("2001:db8::/126"),
            vec![ip("2001:db8::"), ip("2001:db8::3")]
        );
        for small in [
            "10.0.0.0/31",
            "10.0.0.1/32",
            "2001:db8::/127",
            "2001:db8::1/128",
        ] {
            assert!(r(small).is_empty(), "{small}");
        }
        let range = Block::parse(None, Some("10.0.0.0"), Some("10.0.0.255")).unwrap();
        assert!(range.reserved_when_first_last_disallowed().is_empty());
    }

    #[test]
    fn free_set_takes_lowest_and_merges_on_return() {
        let range = IpRange::new(ip("10.0.0.0"), ip("10.0.0.9")).unwrap();
        let mut f = FreeSet::new(range);
        assert_eq!(f.free_count(), 10);
        assert!(f.take(ip("10.0.0.0")));
        assert!(!f.take(ip("10.0.0.0")));
        assert!(f.take(ip("10.0.0.5")));
        assert_eq!(f.lowest_free(), Some(ip("10.0.0.1")));
        for i in 1..5 {
            assert!(f.take(ip(&format!("10.0.0.{i}"))));
        }
        assert_eq!(f.lowest_free(), Some(ip("10.0.0.6")));
        assert_eq!(f.free_count(), 4);
        assert!(f.give_back(ip("10.0.0.5")));
        assert!(!f.give_back(ip("10.0.0.5")));
        assert!(f.give_back(ip("10.0.0.4")));
        assert_eq!(
            f.intervals,
            BTreeMap::from([(to_u128(ip("10.0.0.4")), to_u128(ip("10.0.0.9")))])
        );
        assert!(!f.take(ip("::1")));
    }

    #[test]
    fn free_set_handles_huge_ipv6_ranges_without_materialising() {
        let b = Block::parse(Some("::/0"), None, None).unwrap();
        let mut f = FreeSet::new(b.range);
        assert!(f.take(ip("::")));
        assert!(f.take(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert_eq!(f.lowest_free(), Some(ip("::1")));
        assert!(f.give_back(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(f.give_back(ip("::")));
        assert_eq!(f.intervals.len(), 1);
    }
}
