//! What the XDP program and user space share: the layouts of the BPF maps, the counter
//! indices, and the ARP/NDP answering logic itself ([`responder`]), which runs unchanged in
//! the kernel (over packet memory) and in user space (over a byte slice, for tests and the
//! differential check against the loaded program).
#![no_std]

#[cfg(test)]
extern crate std;

pub mod checksum;
#[cfg(any(test, feature = "frames"))]
pub mod frames;
pub mod responder;

/// Name of the map of announced IPv4 addresses: [`KeyV4`] → [`Entry`] (per-CPU hash).
pub const MAP_ANNOUNCE_V4: &str = "ANNOUNCE_V4";
/// Name of the map of announced IPv6 addresses: [`KeyV6`] → [`Entry`] (per-CPU hash).
pub const MAP_ANNOUNCE_V6: &str = "ANNOUNCE_V6";
/// Name of the per-interface counter map: ifindex (u32) → [`Counters`] (per-CPU hash).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the liveness map: an array of two u64, see [`LIVENESS_HEARTBEAT`] and [`LIVENESS_MAX_AGE`].
pub const MAP_LIVENESS: &str = "LIVENESS";
/// Name of the responder program in the object file.
pub const PROG_RESPONDER: &str = "l2announcer";
/// Name of a program that passes every frame. Tests attach it to the peer of a veth so that
/// native-mode `XDP_TX` on the other end is delivered (veth needs XDP on both ends for that).
pub const PROG_PASS: &str = "xdp_pass";
/// Name of the benchmark floor: a program that only swaps the Ethernet addresses and returns
/// `XDP_TX`. `cargo xtask bench` states the responder's cost as a multiple of it; the agent
/// never loads or attaches it.
pub const PROG_FLOOR: &str = "xdp_floor";

/// Capacity of each announcement map.
pub const MAX_ANNOUNCEMENTS: u32 = 16_384;
/// Capacity of the counter map (interfaces the program is attached to).
pub const MAX_INTERFACES: u32 = 256;

/// Index in [`MAP_LIVENESS`] of the agent's last heartbeat, `CLOCK_MONOTONIC` nanoseconds
/// (what `bpf_ktime_get_ns` returns). Zero means "never": the program answers nothing.
pub const LIVENESS_HEARTBEAT: u32 = 0;
/// Index in [`MAP_LIVENESS`] of the largest heartbeat age, in nanoseconds, at which the
/// program still answers. Older than that, user space is presumed hung and nothing is answered.
pub const LIVENESS_MAX_AGE: u32 = 1;

/// Key of [`MAP_ANNOUNCE_V4`]: an address on one interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyV4 {
    /// The address in network byte order.
    pub ip: [u8; 4],
    /// The interface it is answered on (the frame's ingress ifindex).
    pub ifindex: u32,
}

/// Key of [`MAP_ANNOUNCE_V6`]: an address on one interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyV6 {
    /// The address in network byte order.
    pub ip: [u8; 16],
    /// The interface it is answered on (the frame's ingress ifindex).
    pub ifindex: u32,
}

/// Value of both announcement maps. Per CPU: user space writes `mac` to every CPU's copy and
/// sums the counters; the program updates its own CPU's copy without atomics.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The MAC to answer with: the interface's own address.
    pub mac: [u8; 6],
    /// Explicit padding: map values must have no implicit padding.
    pub _pad: [u8; 2],
    /// Replies sent for this entry.
    pub replies: u64,
    /// ARP or NA frames from another MAC that claimed this address.
    pub conflicts: u64,
    /// The MAC of the last such claimant.
    pub conflict_mac: [u8; 6],
    /// Explicit padding.
    pub _pad2: [u8; 2],
}

impl Entry {
    /// An entry that answers with `mac`, counters at zero.
    pub const fn new(mac: [u8; 6]) -> Self {
        Self {
            mac,
            _pad: [0; 2],
            replies: 0,
            conflicts: 0,
            conflict_mac: [0; 6],
            _pad2: [0; 2],
        }
    }
}

/// The program's counters, one per [`Counter`], kept per interface and per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters(pub [u64; Counter::COUNT]);

impl Default for Counters {
    fn default() -> Self {
        Self([0; Counter::COUNT])
    }
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)+) => {
        /// What the program counts. Every ARP or NDP frame it looks at gets a result counter
        /// (a reply or the reason it was passed); requests also count as seen.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)+];
            /// How many counters there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's name in metrics and `l2announcer status`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)+
                }
            }
        }
    };
}

counters! {
    /// ARP requests seen (well-formed Ethernet/IPv4 requests).
    ArpRequests => "arp_requests",
    /// Neighbor Solicitations seen (ICMPv6 type 135).
    NsRequests => "ns_requests",
    /// ARP replies sent.
    ArpReplies => "arp_replies",
    /// Solicited Neighbor Advertisements sent.
    NaReplies => "na_replies",
    /// Neighbor Advertisements sent to all-nodes in answer to a DAD probe.
    DadReplies => "dad_replies",
    /// Passed: the target is not announced on this interface.
    PassNotAnnounced => "pass_not_announced",
    /// Passed: truncated frame, wrong lengths or sizes, malformed options.
    PassMalformed => "pass_malformed",
    /// Passed: VLAN-tagged frame (answered by the VLAN interface, if selected).
    PassVlan => "pass_vlan",
    /// Passed: NDP with a hop limit other than 255.
    PassBadHopLimit => "pass_bad_hop_limit",
    /// Passed: ICMPv6 checksum wrong.
    PassBadChecksum => "pass_bad_checksum",
    /// Passed: the agent's heartbeat is stale, so nothing is answered.
    PassStaleLiveness => "pass_stale_liveness",
    /// Passed: not addressed to broadcast, the solicited-node group or this interface.
    PassNotAddressed => "pass_not_addressed",
    /// Passed: an ARP frame that is not a request (replies, other opcodes) or a gratuitous one.
    PassNotRequest => "pass_not_request",
    /// Passed: a valid NS this program does not rewrite (options longer than it checks).
    PassUnsupported => "pass_unsupported",
    /// Another MAC claimed an announced address (ARP with its sender address, or an NA).
    Conflicts => "conflicts",
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::KeyV4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KeyV6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Entry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counters {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn map_layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<KeyV4>(), 8);
        assert_eq!(size_of::<KeyV6>(), 20);
        assert_eq!(size_of::<Entry>(), 6 + 2 + 8 + 8 + 6 + 2);
        assert_eq!(size_of::<Counters>(), 8 * Counter::COUNT);
    }

    #[test]
    fn counter_indices_follow_all() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
