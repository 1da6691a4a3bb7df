//! The loaded XDP program, run by the kernel on crafted frames (`BPF_PROG_RUN`): exact reply
//! bytes for ARP, NS, NUD and DAD, malformed frames passed, and a differential check against
//! the same logic run in user space on random and mutated frames.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use l2announcer::dataplane::{Announcement, Dataplane};
use l2announcer_common::{
    Entry, KeyV4, KeyV6,
    frames::{self, NsKind},
    responder::{self, BufFrame, Liveness, Table, Verdict},
};
use l2announcer_tests::require_root;
use proptest::prelude::*;

/// Loopback: BPF_PROG_RUN needs the ingress interface to exist, and it always does.
const IF: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const VIP4: [u8; 4] = [192, 0, 2, 10];
const CLIENT4: [u8; 4] = [192, 0, 2, 1];
const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const CLIENT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];

fn loaded() -> Dataplane {
    require_root();
    let mut dp = Dataplane::load(Duration::from_secs(30)).expect("load the XDP program");
    let desired: BTreeMap<Announcement, [u8; 6]> = [
        (
            Announcement {
                ip: IpAddr::from(VIP4),
                ifindex: IF,
            },
            OUR_MAC,
        ),
        (
            Announcement {
                ip: IpAddr::from(VIP6),
                ifindex: IF,
            },
            OUR_MAC,
        ),
    ]
    .into();
    dp.apply(&desired).expect("program the maps");
    dp.heartbeat().expect("heartbeat");
    dp
}

/// The user-space twin of the loaded program's state.
struct UserTable(BTreeMap<KeyV4, Entry>, BTreeMap<KeyV6, Entry>);

impl UserTable {
    fn new() -> Self {
        Self(
            [(
                KeyV4 {
                    ip: VIP4,
                    ifindex: IF,
                },
                Entry::new(OUR_MAC),
            )]
            .into(),
            [(
                KeyV6 {
                    ip: VIP6,
                    ifindex: IF,
                },
                Entry::new(OUR_MAC),
            )]
            .into(),
        )
    }
}

impl Table for UserTable {
    fn v4(&mut self, key: &KeyV4) -> Option<&mut Entry> {
        self.0.get_mut(key)
    }
    fn v6(&mut self, key: &KeyV6) -> Option<&mut Entry> {
        self.1.get_mut(key)
    }
}

struct Live;
impl Liveness for Live {
    fn live(&self) -> bool {
        true
    }
}

fn kernel(dp: &Dataplane, frame: &BufFrame) -> (u32, Vec<u8>) {
    dp.test_run(IF, frame.bytes()).expect("BPF_PROG_RUN")
}

fn user(frame: &BufFrame) -> (u32, Vec<u8>) {
    let mut f = frame.clone();
    let out = responder::respond(&mut f, IF, &mut UserTable::new(), &Live);
    let action = match out.verdict {
        Verdict::Tx => XDP_TX,
        Verdict::Pass => XDP_PASS,
    };
    (action, f.bytes().to_vec())
}

#[test]
fn arp_reply_bytes() {
    let dp = loaded();
    let (action, out) = kernel(
        &dp,
        &frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4),
    );
    assert_eq!(action, XDP_TX);
    let mut want = Vec::new();
    want.extend_from_slice(&CLIENT_MAC);
    want.extend_from_slice(&OUR_MAC);
    want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    want.extend_from_slice(&OUR_MAC);
    want.extend_from_slice(&VIP4);
    want.extend_from_slice(&CLIENT_MAC);
    want.extend_from_slice(&CLIENT4);
    assert_eq!(out, want);
    let stats = dp
        .entry_stats(&Announcement {
            ip: IpAddr::from(VIP4),
            ifindex: IF,
        })
        .unwrap();
    assert_eq!(stats.replies, 1, "per-entry reply counter");
}

#[test]
fn ns_nud_and_dad_reply_bytes_match_user_space() {
    let dp = loaded();
    for kind in [NsKind::Resolve, NsKind::Nud, NsKind::Dad] {
        let frame = frames::ns(kind, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC);
        let (action, out) = kernel(&dp, &frame);
        assert_eq!(action, XDP_TX, "{kind:?}");
        assert_eq!(out.len(), responder::NA_FRAME_LEN, "{kind:?}");
        // The user-space run's bytes are checked field by field (and by etherparse) in
        // agent-common's tests; the kernel must produce exactly the same.
        assert_eq!((action, out), user(&frame), "{kind:?}");
    }
}

#[test]
fn malformed_and_unaddressed_frames_are_passed_unchanged() {
    let dp = loaded();
    let arp = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4);
    let ns = frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    cases.push(arp.bytes()[..41].to_vec()); // truncated
    let mut b = arp.bytes().to_vec();
    b[18] = 8; // hardware address length
    cases.push(b);
    let mut b = arp.bytes().to_vec();
    b[21] = 2; // a reply
    cases.push(b);
    let mut b = arp.bytes().to_vec();
    b[0..6].copy_from_slice(&CLIENT_MAC); // unicast to someone else
    cases.push(b);
    let mut vlan = arp.bytes()[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    vlan.extend_from_slice(&arp.bytes()[12..]);
    cases.push(vlan);
    let mut b = ns.bytes().to_vec();
    b[21] = 64; // hop limit
    cases.push(b);
    let mut b = ns.bytes().to_vec();
    b[57] ^= 0xff; // checksum
    cases.push(b);
    let mut b = ns.bytes().to_vec();
    b[79] = 0; // option length zero
    cases.push(b);
    cases.push(ns.bytes()[..70].to_vec()); // truncated
    for (i, case) in cases.iter().enumerate() {
        let frame = BufFrame::new(case).unwrap();
        let (action, out) = kernel(&dp, &frame);
        assert_eq!(action, XDP_PASS, "case {i}");
        assert_eq!(&out, case, "case {i} must be passed unchanged");
    }
}

#[test]
fn stale_heartbeat_answers_nothing() {
    let mut dp = loaded();
    let frame = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4);
    assert_eq!(kernel(&dp, &frame).0, XDP_TX);
    dp.set_heartbeat(0).unwrap();
    assert_eq!(kernel(&dp, &frame).0, XDP_PASS, "never written");
    let long_ago = l2announcer::dataplane::monotonic_ns() - 60_000_000_000;
    dp.set_heartbeat(long_ago).unwrap();
    assert_eq!(kernel(&dp, &frame).0, XDP_PASS, "older than the bound");
}

#[test]
fn removed_entries_are_not_answered() {
    let mut dp = loaded();
    dp.apply(&BTreeMap::new()).unwrap();
    let (action, _) = kernel(
        &dp,
        &frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4),
    );
    assert_eq!(action, XDP_PASS);
}

fn seeds() -> Vec<BufFrame> {
    vec![
        frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4),
        frames::arp_request(OUR_MAC, CLIENT_MAC, [0; 4], VIP4),
        frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
        frames::ns(NsKind::Nud, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
        frames::ns(NsKind::Dad, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC),
        frames::na([0x02, 0, 0, 0, 0, 0x66], VIP6, VIP6),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Same verdict and same bytes from the kernel and from user space, on mutated requests.
    #[test]
    fn kernel_and_user_space_agree_on_mutated_requests(
        seed in 0usize..6,
        flips in proptest::collection::vec((0usize..96, any::<u8>()), 0..4),
        truncate in proptest::option::of(14usize..96),
    ) {
        let dp = loaded_once();
        let mut b = seeds()[seed].bytes().to_vec();
        for (i, v) in flips {
            if let Some(x) = b.get_mut(i) { *x = v; }
        }
        if let Some(n) = truncate { b.truncate(n.max(14)); }
        let frame = BufFrame::new(&b).unwrap();
        prop_assert_eq!(kernel(dp, &frame), user(&frame));
    }

    /// And on random frames with an ARP or IPv6 ethertype.
    #[test]
    fn kernel_and_user_space_agree_on_random_frames(
        mut bytes in proptest::collection::vec(any::<u8>(), 14..120),
        ipv6 in any::<bool>(),
    ) {
        let dp = loaded_once();
        bytes[12..14].copy_from_slice(if ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x06] });
        let frame = BufFrame::new(&bytes).unwrap();
        prop_assert_eq!(kernel(dp, &frame), user(&frame));
    }
}

/// One loaded program for all proptest cases (loading takes tens of milliseconds). Its
/// heartbeat bound is long enough for the whole run.
fn loaded_once() -> &'static Dataplane {
    static DP: std::sync::OnceLock<std::sync::Mutex<Option<&'static Dataplane>>> =
        std::sync::OnceLock::new();
    let cell = DP.get_or_init(|| std::sync::Mutex::new(None));
    let mut guard = cell.lock().unwrap();
    *guard.get_or_insert_with(|| Box::leak(Box::new(loaded())))
}
