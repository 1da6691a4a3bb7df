//! The answering logic: given an Ethernet frame that arrived on an interface, decide whether
//! it is an ARP request or Neighbor Solicitation for an announced address and, if so, rewrite
//! it in place into the reply.
//!
//! It is generic over how frame bytes are read and written ([`Frame`]) and how the
//! announcement table is looked up ([`Table`]), so the same code runs in the XDP program (over
//! packet memory and BPF maps) and in user space (over a `Vec<u8>` and a `BTreeMap`). Every
//! read is a fixed-size array at a bounded offset and every loop has a constant bound: that is
//! what the eBPF verifier needs, and it keeps the per-packet work constant-size.

use crate::{
    Counter, Entry, KeyV4, KeyV6,
    checksum::{add_words, finish},
};

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// ARP payload length for Ethernet/IPv4.
pub const ARP_LEN: usize = 28;
/// IPv6 header length.
pub const IPV6_LEN: usize = 40;
/// Offset of the ICMPv6 header in an untagged frame.
pub const ICMP6_OFF: usize = ETH_LEN + IPV6_LEN;
/// Length of an NS or NA without options.
pub const ND_LEN: usize = 24;
/// Length of the NA this program sends: the message plus one link-layer address option.
pub const NA_LEN: usize = ND_LEN + 8;
/// Length of the ARP reply frame (the request's length, padding kept as it came).
pub const ARP_FRAME_LEN: usize = ETH_LEN + ARP_LEN;
/// Length of the NA reply frame.
pub const NA_FRAME_LEN: usize = ICMP6_OFF + NA_LEN;
/// The longest NS whose checksum and options are checked here (the message, a source
/// link-layer address option and up to four more 8-byte options such as a nonce). Longer ones
/// are passed to the kernel, counted as [`Counter::PassUnsupported`].
pub const MAX_NS_LEN: usize = 64;

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const ETHERTYPE_VLAN: [u8; 2] = [0x81, 0x00];
const ETHERTYPE_QINQ: [u8; 2] = [0x88, 0xa8];
const IPPROTO_ICMPV6: u8 = 58;
const ICMP6_NS: u8 = 135;
const ICMP6_NA: u8 = 136;
const ND_OPT_SOURCE_LL: u8 = 1;
const ND_OPT_TARGET_LL: u8 = 2;
const NA_FLAG_SOLICITED: u8 = 0x40;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Byte access to one frame.
#[expect(
    clippy::len_without_is_empty,
    reason = "a frame is never empty where it is used"
)]
pub trait Frame {
    /// The frame's length in bytes.
    fn len(&self) -> usize;
    /// `N` bytes at `offset`, or `None` past the end.
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
    /// Writes `bytes` at `offset`; `None` past the end.
    fn store<const N: usize>(&mut self, offset: usize, bytes: &[u8; N]) -> Option<()>;
    /// Changes the length to `new_len`, keeping the first bytes; false if it cannot.
    fn resize(&mut self, new_len: usize) -> bool;

    /// Whether the `N` bytes at `offset` equal `bytes` (false past the end).
    #[inline(always)]
    fn equals<const N: usize>(&self, offset: usize, bytes: &[u8; N]) -> bool {
        self.load::<N>(offset).is_some_and(|v| v == *bytes)
    }

    /// Copies `N` bytes from `from` to `to` within the frame. Working on the frame in place,
    /// rather than on copies, keeps the eBPF stack small.
    #[inline(always)]
    fn copy<const N: usize>(&mut self, from: usize, to: usize) -> Option<()> {
        let v = self.load::<N>(from)?;
        self.store(to, &v)
    }

    /// Adds the 16-bit words of `len` bytes at `offset` to `sum`, 8 bytes at a time; `len`
    /// is a multiple of 8 and at most `MAX`.
    #[inline(always)]
    fn add_words_at<const MAX: usize>(
        &self,
        mut sum: u32,
        offset: usize,
        len: usize,
    ) -> Option<u32> {
        let mut off = 0;
        while off < MAX {
            if off >= len {
                break;
            }
            sum = add_words(sum, &self.load::<8>(offset + off)?);
            off += 8;
        }
        Some(sum)
    }
}

/// The announcement table, keyed by address and ingress interface.
pub trait Table {
    /// The entry for an IPv4 address on an interface.
    fn v4(&mut self, key: &KeyV4) -> Option<&mut Entry>;
    /// The entry for an IPv6 address on an interface.
    fn v6(&mut self, key: &KeyV6) -> Option<&mut Entry>;
}

/// Whether user space is alive enough to be trusted (its heartbeat is fresh).
pub trait Liveness {
    /// True when replies may be sent.
    fn live(&self) -> bool;
}

/// What to do with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give it to the kernel, unchanged.
    Pass,
    /// Send it back out of the interface it came in on: it has been rewritten into the reply.
    Tx,
}

/// The verdict and what to count for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What to do with the frame.
    pub verdict: Verdict,
    /// A request was seen ([`Counter::ArpRequests`] or [`Counter::NsRequests`]).
    pub seen: Option<Counter>,
    /// The reply sent or the reason for passing; `None` for frames that are not ARP or NDP.
    pub result: Option<Counter>,
}

impl Outcome {
    /// Not ARP or NDP: passed, counted nowhere.
    pub const UNRELATED: Outcome = Outcome {
        verdict: Verdict::Pass,
        seen: None,
        result: None,
    };

    #[inline(always)]
    fn pass(seen: Option<Counter>, reason: Counter) -> Self {
        Outcome {
            verdict: Verdict::Pass,
            seen,
            result: Some(reason),
        }
    }

    #[inline(always)]
    fn tx(seen: Counter, reply: Counter) -> Self {
        Outcome {
            verdict: Verdict::Tx,
            seen: Some(seen),
            result: Some(reply),
        }
    }
}

/// Decides on one frame that arrived on `ifindex` and, for [`Verdict::Tx`], rewrites it into
/// the reply. For [`Verdict::Pass`] the frame is left as it was.
#[inline(always)]
pub fn respond<F: Frame, T: Table, L: Liveness>(
    frame: &mut F,
    ifindex: u32,
    table: &mut T,
    liveness: &L,
) -> Outcome {
    let Some(ethertype) = frame.load::<2>(12) else {
        return Outcome::UNRELATED;
    };
    match ethertype {
        ETHERTYPE_ARP => arp(frame, ifindex, table, liveness),
        ETHERTYPE_IPV6 => ipv6(frame, ifindex, table, liveness),
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => vlan(frame),
        _ => Outcome::UNRELATED,
    }
}

/// A tagged frame is the VLAN interface's business: count it if it carries ARP or IPv6, pass it.
#[inline(always)]
fn vlan<F: Frame>(frame: &F) -> Outcome {
    match frame.load::<2>(16) {
        Some(ETHERTYPE_ARP | ETHERTYPE_IPV6 | ETHERTYPE_VLAN) => {
            Outcome::pass(None, Counter::PassVlan)
        }
        _ => Outcome::UNRELATED,
    }
}

#[inline(always)]
fn arp<F: Frame, T: Table, L: Liveness>(
    frame: &mut F,
    ifindex: u32,
    table: &mut T,
    liveness: &L,
) -> Outcome {
    // One `let … else` per field: with a tuple of Options LLVM may read a register on a path
    // where it was never set, which the verifier rejects.
    let Some(fixed) = frame.load::<8>(ETH_LEN) else {
        return Outcome::pass(None, Counter::PassMalformed);
    };
    let Some(sha) = frame.load::<6>(ETH_LEN + 8) else {
        return Outcome::pass(None, Counter::PassMalformed);
    };
    let Some(spa) = frame.load::<4>(ETH_LEN + 14) else {
        return Outcome::pass(None, Counter::PassMalformed);
    };
    let Some(tpa) = frame.load::<4>(ETH_LEN + 24) else {
        return Outcome::pass(None, Counter::PassMalformed);
    };
    // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses: anything else is not ours.
    if fixed[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return Outcome::pass(None, Counter::PassMalformed);
    }
    let op = [fixed[6], fixed[7]];

    // Somebody else saying it has an address we announce, in a request, reply or gratuitous ARP.
    let mut conflict = false;
    if spa != [0; 4]
        && let Some(entry) = table.v4(&KeyV4 { ip: spa, ifindex })
        && sha != entry.mac
    {
        entry.conflicts += 1;
        entry.conflict_mac = sha;
        conflict = true;
    }
    let passed = if conflict {
        Counter::Conflicts
    } else {
        Counter::PassNotRequest
    };
    if op != [0, 1] {
        return Outcome::pass(None, passed);
    }
    let seen = Some(Counter::ArpRequests);
    // A gratuitous request announces the sender's own address; it asks nothing.
    if spa == tpa {
        return Outcome::pass(seen, passed);
    }
    let Some(entry) = table.v4(&KeyV4 { ip: tpa, ifindex }) else {
        return Outcome::pass(seen, Counter::PassNotAnnounced);
    };
    let Some(eth_dst) = frame.load::<6>(0) else {
        return Outcome::pass(seen, Counter::PassMalformed);
    };
    if eth_dst != BROADCAST && eth_dst != entry.mac {
        return Outcome::pass(seen, Counter::PassNotAddressed);
    }
    // A group address cannot have asked.
    if sha[0] & 1 != 0 {
        return Outcome::pass(seen, Counter::PassMalformed);
    }
    if !liveness.live() {
        return Outcome::pass(seen, Counter::PassStaleLiveness);
    }

    // The reply, as the kernel's arp_send() fills it: to the sender's hardware address, from
    // ours; an RFC 5227 probe (sender address 0.0.0.0) is answered to 0.0.0.0 the same way.
    // Rewritten in place, in an order that reads each field before overwriting it.
    let mac = entry.mac;
    let written = frame.copy::<6>(ETH_LEN + 8, ETH_LEN + 18).is_some() // tha = sha
        && frame.copy::<4>(ETH_LEN + 14, ETH_LEN + 24).is_some() // tpa = spa
        && frame.store(ETH_LEN + 8, &mac).is_some() // sha = ours
        && frame.store(ETH_LEN + 14, &tpa).is_some() // spa = the announced address
        && frame.store(ETH_LEN + 6, &[0, 2]).is_some() // op = reply
        && frame.copy::<6>(ETH_LEN + 18, 0).is_some() // eth dst = requester
        && frame.store(6, &mac).is_some(); // eth src = ours
    if !written {
        return Outcome::pass(seen, Counter::PassMalformed);
    }
    entry.replies += 1;
    Outcome::tx(Counter::ArpRequests, Counter::ArpReplies)
}

/// Offsets in an untagged IPv6 frame.
const IP6_SRC: usize = ETH_LEN + 8;
const IP6_DST: usize = ETH_LEN + 24;
const ND_TARGET: usize = ICMP6_OFF + 8;

#[inline(always)]
fn ipv6<F: Frame, T: Table, L: Liveness>(
    frame: &mut F,
    ifindex: u32,
    table: &mut T,
    liveness: &L,
) -> Outcome {
    // Version, traffic class, flow label, payload length, next header, hop limit.
    let Some(fixed) = frame.load::<8>(ETH_LEN) else {
        return Outcome::UNRELATED;
    };
    if fixed[0] >> 4 != 6 || fixed[6] != IPPROTO_ICMPV6 {
        return Outcome::UNRELATED;
    }
    let Some([icmp_type, _]) = frame.load::<2>(ICMP6_OFF) else {
        return Outcome::UNRELATED;
    };
    let payload_len = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    let hop_limit = fixed[7];
    match icmp_type {
        ICMP6_NS => neighbor_solicitation(frame, payload_len, hop_limit, ifindex, table, liveness),
        ICMP6_NA => neighbor_advertisement(frame, hop_limit, ifindex, table),
        _ => Outcome::UNRELATED,
    }
}

/// An NA for an address we announce from another MAC is somebody else claiming it.
#[inline(always)]
fn neighbor_advertisement<F: Frame, T: Table>(
    frame: &F,
    hop_limit: u8,
    ifindex: u32,
    table: &mut T,
) -> Outcome {
    // Only on-link senders (hop limit 255) can claim a neighbour (RFC 4861 §7.1.2).
    if hop_limit != 255 {
        return Outcome::UNRELATED;
    }
    let Some(eth_src) = frame.load::<6>(6) else {
        return Outcome::UNRELATED;
    };
    let Some(target) = frame.load::<16>(ND_TARGET) else {
        return Outcome::UNRELATED;
    };
    match table.v6(&KeyV6 {
        ip: target,
        ifindex,
    }) {
        Some(entry) if entry.mac != eth_src => {
            entry.conflicts += 1;
            entry.conflict_mac = eth_src;
            Outcome::pass(None, Counter::Conflicts)
        }
        _ => Outcome::UNRELATED,
    }
}

/// The solicited-node multicast address of `target` (RFC 4291 §2.7.1).
#[inline(always)]
pub fn solicited_node(target: &[u8; 16]) -> [u8; 16] {
    [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, target[13], target[14], target[15],
    ]
}

/// The Ethernet group address of an IPv6 multicast address (RFC 2464 §7).
#[inline(always)]
pub fn multicast_mac(group: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// The ICMPv6 checksum of the `len`-byte message in the frame, pseudo-header included
/// (addresses read from the frame's IPv6 header); zero when a received message is intact.
#[inline(always)]
fn icmp6_checksum<F: Frame, const MAX: usize>(frame: &F, len: usize) -> Option<u16> {
    // Source and destination addresses are contiguous: 32 bytes from IP6_SRC.
    let sum = frame.add_words_at::<32>(0, IP6_SRC, 32)?;
    let sum = add_words(sum, &(len as u32).to_be_bytes());
    let sum = add_words(sum, &[0, IPPROTO_ICMPV6]);
    Some(finish(frame.add_words_at::<MAX>(sum, ICMP6_OFF, len)?))
}

#[inline(always)]
fn neighbor_solicitation<F: Frame, T: Table, L: Liveness>(
    frame: &mut F,
    payload_len: usize,
    hop_limit: u8,
    ifindex: u32,
    table: &mut T,
    liveness: &L,
) -> Outcome {
    let seen = Some(Counter::NsRequests);
    // RFC 4861 §7.1.1 validity checks, cheapest first; the checksum comes after the table
    // lookup so that solicitations for other hosts cost no more than a lookup.
    if payload_len < ND_LEN
        || !payload_len.is_multiple_of(8)
        || ICMP6_OFF + payload_len > frame.len()
    {
        return Outcome::pass(seen, Counter::PassMalformed);
    }
    if hop_limit != 255 {
        return Outcome::pass(seen, Counter::PassBadHopLimit);
    }
    let Some([_, code]) = frame.load::<2>(ICMP6_OFF) else {
        return Outcome::pass(seen, Counter::PassMalformed);
    };
    let Some([src0]) = frame.load::<1>(IP6_SRC) else {
        return Outcome::pass(seen, Counter::PassMalformed);
    };
    let Some(target) = frame.load::<16>(ND_TARGET) else {
        return Outcome::pass(seen, Counter::PassMalformed);
    };
    if code != 0 || target[0] == 0xff || src0 == 0xff {
        return Outcome::pass(seen, Counter::PassMalformed);
    }
    let key = KeyV6 {
        ip: target,
        ifindex,
    };
    let Some(entry) = table.v6(&key) else {
        return Outcome::pass(seen, Counter::PassNotAnnounced);
    };
    let mac = entry.mac;

    // Addressed to the target's solicited-node group or to the target itself, and on the wire
    // to that group's MAC or to this interface. A DAD probe (unspecified source) must go to
    // the group.
    let group = solicited_node(&key.ip);
    let dad = frame.equals(IP6_SRC, &[0u8; 16]);
    let to_group = frame.equals(IP6_DST, &group);
    let to_target = !dad && frame.equals(IP6_DST, &key.ip);
    if !(to_group || to_target)
        || !(frame.equals(0, &mac) || frame.equals(0, &multicast_mac(&group)))
    {
        return Outcome::pass(seen, Counter::PassNotAddressed);
    }
    if payload_len > MAX_NS_LEN {
        return Outcome::pass(seen, Counter::PassUnsupported);
    }
    match icmp6_checksum::<F, MAX_NS_LEN>(frame, payload_len) {
        Some(0) => {}
        Some(_) => return Outcome::pass(seen, Counter::PassBadChecksum),
        None => return Outcome::pass(seen, Counter::PassMalformed),
    }

    // Options: none may have length zero, they must fill the message exactly, and a DAD
    // probe carries no source link-layer address option.
    let mut off = ND_LEN;
    let mut steps = 0;
    while steps < (MAX_NS_LEN - ND_LEN) / 8 {
        if off >= payload_len {
            break;
        }
        let Some([kind, len8]) = frame.load::<2>(ICMP6_OFF + (off & (MAX_NS_LEN - 1))) else {
            return Outcome::pass(seen, Counter::PassMalformed);
        };
        if len8 == 0 || (dad && kind == ND_OPT_SOURCE_LL) {
            return Outcome::pass(seen, Counter::PassMalformed);
        }
        off += usize::from(len8) * 8;
        steps += 1;
    }
    if off != payload_len {
        return Outcome::pass(seen, Counter::PassMalformed);
    }

    if !liveness.live() {
        return Outcome::pass(seen, Counter::PassStaleLiveness);
    }

    // The advertisement, rewritten in place: solicited (S=1) back to the asker, or for a DAD
    // probe unsolicited (S=0) to all nodes; override set, router not; with our link-layer
    // address. The target stays where it is.
    if frame.len() != NA_FRAME_LEN && !frame.resize(NA_FRAME_LEN) {
        return Outcome::pass(seen, Counter::PassUnsupported);
    }
    let len = (NA_LEN as u16).to_be_bytes();
    let (addressed, flags, counter) = if dad {
        let to_all = frame.store(IP6_DST, &ALL_NODES).is_some()
            && frame.store(0, &multicast_mac(&ALL_NODES)).is_some();
        (to_all, NA_FLAG_OVERRIDE, Counter::DadReplies)
    } else {
        let to_asker =
            frame.copy::<16>(IP6_SRC, IP6_DST).is_some() && frame.copy::<6>(6, 0).is_some();
        (
            to_asker,
            NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
            Counter::NaReplies,
        )
    };
    let written = addressed
        && frame.store(6, &mac).is_some()
        && frame.copy::<16>(ND_TARGET, IP6_SRC).is_some()
        && frame
            .store(
                ETH_LEN,
                &[0x60, 0, 0, 0, len[0], len[1], IPPROTO_ICMPV6, 255],
            )
            .is_some()
        && frame
            .store(ICMP6_OFF, &[ICMP6_NA, 0, 0, 0, flags, 0, 0, 0])
            .is_some()
        && frame
            .store(
                ICMP6_OFF + ND_LEN,
                &[
                    ND_OPT_TARGET_LL,
                    1,
                    mac[0],
                    mac[1],
                    mac[2],
                    mac[3],
                    mac[4],
                    mac[5],
                ],
            )
            .is_some();
    let checksum = if written {
        icmp6_checksum::<F, NA_LEN>(frame, NA_LEN)
    } else {
        None
    };
    // Once resized the frame is committed to the reply and every access above is within
    // NA_FRAME_LEN, so this cannot fail; if it did, the kernel drops the half-written NA.
    let Some(checksum) = checksum else {
        return Outcome::pass(seen, Counter::PassMalformed);
    };
    if frame
        .store(ICMP6_OFF + 2, &checksum.to_be_bytes())
        .is_none()
    {
        return Outcome::pass(seen, Counter::PassMalformed);
    }
    entry.replies += 1;
    Outcome::tx(Counter::NsRequests, counter)
}

/// Capacity of a [`BufFrame`].
pub const BUF_CAP: usize = 256;

/// A frame in a fixed buffer: how user space runs [`respond`] (tests, the differential check
/// against the loaded program). Growing past [`BUF_CAP`] fails as `bpf_xdp_adjust_tail` would
/// past the tailroom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufFrame {
    bytes: [u8; BUF_CAP],
    len: usize,
}

impl BufFrame {
    /// A frame holding `bytes`, or `None` if they do not fit.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut buf = [0; BUF_CAP];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self {
            bytes: buf,
            len: bytes.len(),
        })
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Frame for BufFrame {
    fn len(&self) -> usize {
        self.len
    }

    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.bytes()
            .get(offset..offset.checked_add(N)?)?
            .try_into()
            .ok()
    }

    fn store<const N: usize>(&mut self, offset: usize, bytes: &[u8; N]) -> Option<()> {
        let len = self.len;
        self.bytes[..len]
            .get_mut(offset..offset.checked_add(N)?)?
            .copy_from_slice(bytes);
        Some(())
    }

    fn resize(&mut self, new_len: usize) -> bool {
        if new_len > BUF_CAP {
            return false;
        }
        // Growing exposes whatever was in the tailroom; zero it as the tests expect nothing.
        for b in &mut self.bytes[self.len.min(new_len)..new_len] {
            *b = 0;
        }
        self.len = new_len;
        true
    }
}

#[cfg(test)]
mod tests;
