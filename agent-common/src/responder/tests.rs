//! The responder's behaviour on hand-made frames, checked against an independent parser
//! (etherparse), and fuzzed with proptest.

use std::{collections::BTreeMap, vec::Vec};

use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

use super::*;
use crate::frames::{self, NsKind};

const IF: u32 = 7;
const OTHER_IF: u32 = 8;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const INTRUDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
const VIP4: [u8; 4] = [192, 0, 2, 10];
const CLIENT4: [u8; 4] = [192, 0, 2, 1];
const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const CLIENT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];

#[derive(Default)]
struct MapTable {
    v4: BTreeMap<KeyV4, Entry>,
    v6: BTreeMap<KeyV6, Entry>,
}

impl Table for MapTable {
    fn v4(&mut self, key: &KeyV4) -> Option<&mut Entry> {
        self.v4.get_mut(key)
    }
    fn v6(&mut self, key: &KeyV6) -> Option<&mut Entry> {
        self.v6.get_mut(key)
    }
}

struct Live(bool);

impl Liveness for Live {
    fn live(&self) -> bool {
        self.0
    }
}

fn table() -> MapTable {
    let mut t = MapTable::default();
    t.v4.insert(
        KeyV4 {
            ip: VIP4,
            ifindex: IF,
        },
        Entry::new(OUR_MAC),
    );
    t.v6.insert(
        KeyV6 {
            ip: VIP6,
            ifindex: IF,
        },
        Entry::new(OUR_MAC),
    );
    t
}

fn run(frame: &mut BufFrame, t: &mut MapTable) -> Outcome {
    respond(frame, IF, t, &Live(true))
}

fn assert_passed_unchanged(mut frame: BufFrame, reason: Counter) {
    let before = frame.clone();
    let out = run(&mut frame, &mut table());
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(out.result, Some(reason));
    assert_eq!(frame, before, "a passed frame is not modified");
}

#[test]
fn arp_request_is_answered_as_the_kernel_does() {
    let mut t = table();
    let mut f = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4);
    let out = run(&mut f, &mut t);
    assert_eq!(out, Outcome::tx(Counter::ArpRequests, Counter::ArpReplies));
    let mut want = Vec::new();
    want.extend_from_slice(&CLIENT_MAC); // to the requester
    want.extend_from_slice(&OUR_MAC); // from the interface
    want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    want.extend_from_slice(&OUR_MAC);
    want.extend_from_slice(&VIP4);
    want.extend_from_slice(&CLIENT_MAC);
    want.extend_from_slice(&CLIENT4);
    assert_eq!(f.bytes(), &want[..]);
    assert_eq!(
        t.v4[&KeyV4 {
            ip: VIP4,
            ifindex: IF
        }]
            .replies,
        1
    );
}

#[test]
fn arp_request_unicast_to_our_mac_is_answered() {
    let mut f = frames::arp_request(OUR_MAC, CLIENT_MAC, CLIENT4, VIP4);
    assert_eq!(run(&mut f, &mut table()).verdict, Verdict::Tx);
}

#[test]
fn arp_probe_is_answered_to_zero_address() {
    // RFC 5227 probe: sender address 0.0.0.0. Answering defends the address.
    let mut f = frames::arp_request([0xff; 6], CLIENT_MAC, [0; 4], VIP4);
    assert_eq!(run(&mut f, &mut table()).verdict, Verdict::Tx);
    assert_eq!(&f.bytes()[0..6], &CLIENT_MAC);
    assert_eq!(&f.bytes()[38..42], &[0; 4]);
}

#[test]
fn arp_not_answered_cases() {
    assert_passed_unchanged(
        frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, [192, 0, 2, 11]),
        Counter::PassNotAnnounced,
    );
    assert_passed_unchanged(
        frames::arp_request(CLIENT_MAC, CLIENT_MAC, CLIENT4, VIP4),
        Counter::PassNotAddressed,
    );
    assert_passed_unchanged(
        frames::arp(OUR_MAC, 2, CLIENT_MAC, CLIENT4, OUR_MAC, VIP4),
        Counter::PassNotRequest,
    );
    assert_passed_unchanged(
        frames::arp_request([0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], CLIENT4, VIP4),
        Counter::PassMalformed,
    );
    // Truncated: one byte short.
    let f = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4);
    assert_passed_unchanged(
        BufFrame::new(&f.bytes()[..41]).unwrap(),
        Counter::PassMalformed,
    );
    // Wrong hardware or protocol sizes.
    for (i, v) in [(18, 8), (19, 16), (14, 6), (16, 0x86)] {
        let mut b = f.bytes().to_vec();
        b[i] = v;
        assert_passed_unchanged(BufFrame::new(&b).unwrap(), Counter::PassMalformed);
    }
}

#[test]
fn arp_on_another_interface_is_not_answered() {
    let mut f = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4);
    let out = respond(&mut f, OTHER_IF, &mut table(), &Live(true));
    assert_eq!(out.result, Some(Counter::PassNotAnnounced));
}

#[test]
fn stale_liveness_answers_nothing() {
    let mut t = table();
    for mut f in [
        frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4),
        frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
    ] {
        let before = f.clone();
        let out = respond(&mut f, IF, &mut t, &Live(false));
        assert_eq!(out.verdict, Verdict::Pass);
        assert_eq!(out.result, Some(Counter::PassStaleLiveness));
        assert_eq!(f, before);
    }
}

#[test]
fn vlan_tagged_frames_are_passed() {
    let f = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4);
    let mut b = f.bytes()[..12].to_vec();
    b.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    b.extend_from_slice(&f.bytes()[12..]);
    assert_passed_unchanged(BufFrame::new(&b).unwrap(), Counter::PassVlan);
}

#[test]
fn conflicting_arp_from_another_mac_is_counted() {
    let mut t = table();
    // Gratuitous ARP request and reply from another node claiming our VIP.
    for mut f in [
        frames::arp([0xff; 6], 1, INTRUDER_MAC, VIP4, [0; 6], VIP4),
        frames::arp([0xff; 6], 2, INTRUDER_MAC, VIP4, [0xff; 6], VIP4),
    ] {
        let out = run(&mut f, &mut t);
        assert_eq!(out.verdict, Verdict::Pass);
        assert_eq!(out.result, Some(Counter::Conflicts));
    }
    let e = t.v4[&KeyV4 {
        ip: VIP4,
        ifindex: IF,
    }];
    assert_eq!(
        (e.conflicts, e.conflict_mac, e.replies),
        (2, INTRUDER_MAC, 0)
    );
}

/// Checks an NA with an independent parser and returns (eth dst, ip dst, solicited).
fn parse_na(f: &BufFrame) -> ([u8; 6], [u8; 16], bool) {
    let p = SlicedPacket::from_ethernet(f.bytes()).expect("parses");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
        panic!("not ethernet")
    };
    assert_eq!(eth.source(), OUR_MAC);
    let Some(NetSlice::Ipv6(ip)) = p.net else {
        panic!("not ipv6")
    };
    let h = ip.header();
    assert_eq!(h.hop_limit(), 255);
    assert_eq!(h.source(), VIP6);
    assert_eq!(h.payload_length(), 32);
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!("not icmpv6")
    };
    assert!(
        icmp.is_checksum_valid(h.source(), h.destination()),
        "checksum"
    );
    let Icmpv6Type::NeighborAdvertisement(na) = icmp.icmp_type() else {
        panic!("not an NA")
    };
    assert!(!na.router);
    assert!(na.r#override);
    let payload = icmp.payload();
    assert_eq!(&payload[0..16], &VIP6, "target");
    assert_eq!(&payload[16..18], &[2, 1], "target link-layer option");
    assert_eq!(&payload[18..24], &OUR_MAC);
    (eth.destination(), h.destination(), na.solicited)
}

#[test]
fn ns_is_answered_with_a_solicited_na() {
    let mut t = table();
    let mut f = frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC);
    assert_eq!(f.len(), NA_FRAME_LEN);
    let out = run(&mut f, &mut t);
    assert_eq!(out, Outcome::tx(Counter::NsRequests, Counter::NaReplies));
    assert_eq!(parse_na(&f), (CLIENT_MAC, CLIENT6, true));
    assert_eq!(
        t.v6[&KeyV6 {
            ip: VIP6,
            ifindex: IF
        }]
            .replies,
        1
    );
}

#[test]
fn nud_probe_without_source_option_is_answered() {
    let mut f = frames::ns(NsKind::Nud, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC);
    assert_eq!(f.len(), NA_FRAME_LEN - 8);
    assert_eq!(run(&mut f, &mut table()).verdict, Verdict::Tx);
    assert_eq!(f.len(), NA_FRAME_LEN, "grown by the option");
    assert_eq!(parse_na(&f), (CLIENT_MAC, CLIENT6, true));
}

#[test]
fn dad_probe_is_answered_to_all_nodes_unsolicited() {
    let mut f = frames::ns(NsKind::Dad, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC);
    let out = run(&mut f, &mut table());
    assert_eq!(out, Outcome::tx(Counter::NsRequests, Counter::DadReplies));
    assert_eq!(parse_na(&f), ([0x33, 0x33, 0, 0, 0, 1], ALL_NODES, false));
}

#[test]
fn ns_with_a_nonce_option_is_answered_and_shrunk() {
    let group = solicited_node(&VIP6);
    let opts = [1, 1, 2, 0, 0, 0, 0, 0x99, 14, 1, 1, 2, 3, 4, 5, 6];
    let mut f = frames::ns_raw(
        multicast_mac(&group),
        CLIENT_MAC,
        CLIENT6,
        group,
        255,
        0,
        VIP6,
        &opts,
    );
    assert_eq!(run(&mut f, &mut table()).verdict, Verdict::Tx);
    assert_eq!(parse_na(&f), (CLIENT_MAC, CLIENT6, true));
}

#[test]
fn ns_not_answered_cases() {
    let group = solicited_node(&VIP6);
    let gmac = multicast_mac(&group);
    let sll = [1, 1, 2, 0, 0, 0, 0, 0x99];
    let ns = |eth_dst, src, dst, hop, code, target, opts: &[u8]| {
        frames::ns_raw(eth_dst, CLIENT_MAC, src, dst, hop, code, target, opts)
    };
    assert_passed_unchanged(
        ns(gmac, CLIENT6, group, 254, 0, VIP6, &sll),
        Counter::PassBadHopLimit,
    );
    assert_passed_unchanged(
        ns(gmac, CLIENT6, group, 255, 1, VIP6, &sll),
        Counter::PassMalformed,
    );
    let other = solicited_node(&CLIENT6);
    assert_passed_unchanged(
        ns(multicast_mac(&other), CLIENT6, other, 255, 0, VIP6, &sll),
        Counter::PassNotAddressed,
    );
    assert_passed_unchanged(
        ns(CLIENT_MAC, CLIENT6, VIP6, 255, 0, VIP6, &[]),
        Counter::PassNotAddressed,
    );
    assert_passed_unchanged(
        ns(gmac, CLIENT6, group, 255, 0, CLIENT6, &sll),
        Counter::PassNotAnnounced,
    );
    // Option with length zero; DAD with a source link-layer option.
    assert_passed_unchanged(
        ns(
            gmac,
            CLIENT6,
            group,
            255,
            0,
            VIP6,
            &[1, 0, 0, 0, 0, 0, 0, 0],
        ),
        Counter::PassMalformed,
    );
    assert_passed_unchanged(
        ns(gmac, [0; 16], group, 255, 0, VIP6, &sll),
        Counter::PassMalformed,
    );
    // DAD must go to the solicited-node group.
    assert_passed_unchanged(
        ns(OUR_MAC, [0; 16], VIP6, 255, 0, VIP6, &[]),
        Counter::PassNotAddressed,
    );
    // Options longer than the program checks.
    let long = [
        [1u8, 6, 0, 0, 0, 0, 0, 0],
        [0; 8],
        [0; 8],
        [0; 8],
        [0; 8],
        [0; 8],
    ]
    .concat();
    assert_passed_unchanged(
        ns(gmac, CLIENT6, group, 255, 0, VIP6, &long),
        Counter::PassUnsupported,
    );
    // Bad checksum.
    let mut b = frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC)
        .bytes()
        .to_vec();
    b[57] ^= 1;
    assert_passed_unchanged(BufFrame::new(&b).unwrap(), Counter::PassBadChecksum);
    // Payload length larger than the frame.
    let mut b = frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC)
        .bytes()
        .to_vec();
    b[19] = 40;
    assert_passed_unchanged(BufFrame::new(&b).unwrap(), Counter::PassMalformed);
}

#[test]
fn conflicting_na_is_counted() {
    let mut t = table();
    let mut f = frames::na(INTRUDER_MAC, VIP6, VIP6);
    let out = run(&mut f, &mut t);
    assert_eq!(
        (out.verdict, out.result),
        (Verdict::Pass, Some(Counter::Conflicts))
    );
    assert_eq!(
        t.v6[&KeyV6 {
            ip: VIP6,
            ifindex: IF
        }]
            .conflict_mac,
        INTRUDER_MAC
    );
}

#[test]
fn unrelated_traffic_is_passed_uncounted() {
    let mut b = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4)
        .bytes()
        .to_vec();
    b[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut f = BufFrame::new(&b).unwrap();
    assert_eq!(run(&mut f, &mut table()), Outcome::UNRELATED);
    let mut empty = BufFrame::new(&[]).unwrap();
    assert_eq!(run(&mut empty, &mut table()), Outcome::UNRELATED);
}

/// Frames worth fuzzing: valid requests of every kind, then mutated.
fn seed_frames() -> Vec<BufFrame> {
    std::vec![
        frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4),
        frames::arp_request([0xff; 6], CLIENT_MAC, [0; 4], VIP4),
        frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
        frames::ns(NsKind::Nud, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
        frames::ns(NsKind::Dad, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
        frames::na(INTRUDER_MAC, VIP6, VIP6),
    ]
}

/// What every answer must be, whatever the input: a well-formed reply from our MAC.
fn check_reply(f: &BufFrame) {
    match f.load::<2>(12) {
        Some([0x08, 0x06]) => {
            assert_eq!(f.len(), ARP_FRAME_LEN);
            assert_eq!(&f.bytes()[6..12], &OUR_MAC);
            assert_eq!(&f.bytes()[20..22], &[0, 2]);
            assert_eq!(&f.bytes()[22..28], &OUR_MAC);
            assert_eq!(&f.bytes()[28..32], &VIP4);
        }
        Some([0x86, 0xdd]) => {
            parse_na(f);
        }
        other => panic!("answered a frame of type {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic_and_answers_are_well_formed(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut f = BufFrame::new(&bytes).unwrap();
        let before = f.clone();
        match run(&mut f, &mut table()).verdict {
            Verdict::Pass => prop_assert_eq!(f, before),
            Verdict::Tx => check_reply(&f),
        }
    }

    #[test]
    fn mutated_requests_are_answered_correctly_or_passed_unchanged(
        seed in 0usize..6,
        flips in proptest::collection::vec((0usize..100, any::<u8>()), 1..4),
        truncate in proptest::option::of(0usize..100),
    ) {
        let mut b = seed_frames()[seed].bytes().to_vec();
        for (i, v) in flips {
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
        }
        if let Some(n) = truncate {
            b.truncate(n);
        }
        let mut f = BufFrame::new(&b).unwrap();
        let before = f.clone();
        match run(&mut f, &mut table()).verdict {
            Verdict::Pass => prop_assert_eq!(f, before),
            Verdict::Tx => check_reply(&f),
        }
    }
}
