//! Builders of the request frames the responder answers, for tests and benchmarks (feature
//! `frames`). The replies are checked with an independent parser (etherparse) in the tests,
//! so the checksum here comes from the crate's own code without making the tests circular.

use crate::{
    checksum::{add_words, finish, pseudo_header_v6},
    responder::{BufFrame, multicast_mac, solicited_node},
};

/// An ARP request from `sha`/`spa` for `tpa`, sent to `eth_dst`.
pub fn arp_request(eth_dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> BufFrame {
    arp(eth_dst, 1, sha, spa, [0; 6], tpa)
}

/// Any Ethernet/IPv4 ARP frame.
pub fn arp(
    eth_dst: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> BufFrame {
    let mut b = [0u8; 42];
    b[0..6].copy_from_slice(&eth_dst);
    b[6..12].copy_from_slice(&sha);
    b[12..14].copy_from_slice(&[0x08, 0x06]);
    b[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, (op >> 8) as u8, op as u8]);
    b[22..28].copy_from_slice(&sha);
    b[28..32].copy_from_slice(&spa);
    b[32..38].copy_from_slice(&tha);
    b[38..42].copy_from_slice(&tpa);
    BufFrame::new(&b).expect("42 bytes fit")
}

/// How a Neighbor Solicitation is addressed.
#[derive(Clone, Copy, Debug)]
pub enum NsKind {
    /// Address resolution: to the target's solicited-node group, with a source link-layer option.
    Resolve,
    /// Unicast reachability probe to the target and our MAC, without the source option.
    Nud,
    /// Duplicate address detection: from `::` to the solicited-node group, no source option.
    Dad,
}

/// A Neighbor Solicitation for `target` from `src_mac`/`src` (ignored for DAD), hop limit 255,
/// with a valid checksum. `our_mac` is where a NUD probe is sent.
pub fn ns(
    kind: NsKind,
    src_mac: [u8; 6],
    src: [u8; 16],
    target: [u8; 16],
    our_mac: [u8; 6],
) -> BufFrame {
    let group = solicited_node(&target);
    let (eth_dst, ip_src, ip_dst, with_sll) = match kind {
        NsKind::Resolve => (multicast_mac(&group), src, group, true),
        NsKind::Nud => (our_mac, src, target, false),
        NsKind::Dad => (multicast_mac(&group), [0; 16], group, false),
    };
    let mut options = [0u8; 8];
    let mut opt_len = 0;
    if with_sll {
        options[0] = 1;
        options[1] = 1;
        options[2..8].copy_from_slice(&src_mac);
        opt_len = 8;
    }
    ns_raw(
        eth_dst,
        src_mac,
        ip_src,
        ip_dst,
        255,
        0,
        target,
        &options[..opt_len],
    )
}

/// A Neighbor Solicitation with every field chosen by the caller; the checksum is valid.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field under test"
)]
pub fn ns_raw(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    code: u8,
    target: [u8; 16],
    options: &[u8],
) -> BufFrame {
    let icmp_len = 24 + options.len();
    let mut b = [0u8; 256];
    b[0..6].copy_from_slice(&eth_dst);
    b[6..12].copy_from_slice(&eth_src);
    b[12..14].copy_from_slice(&[0x86, 0xdd]);
    b[14] = 0x60;
    b[18..20].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    b[20] = 58;
    b[21] = hop_limit;
    b[22..38].copy_from_slice(&src);
    b[38..54].copy_from_slice(&dst);
    b[54] = 135;
    b[55] = code;
    b[62..78].copy_from_slice(&target);
    b[78..78 + options.len()].copy_from_slice(options);
    let mut sum = pseudo_header_v6(&src, &dst, icmp_len as u32, 58);
    let mut i = 54;
    while i < 54 + icmp_len {
        sum = add_words(sum, &[b[i], b.get(i + 1).copied().unwrap_or(0)]);
        i += 2;
    }
    let c = finish(sum).to_be_bytes();
    b[56] = c[0];
    b[57] = c[1];
    BufFrame::new(&b[..54 + icmp_len]).expect("fits")
}

/// A Neighbor Advertisement for `target` from `eth_src`, as another node claiming it sends.
pub fn na(eth_src: [u8; 6], src: [u8; 16], target: [u8; 16]) -> BufFrame {
    let mut b = [0u8; 86];
    b[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    b[6..12].copy_from_slice(&eth_src);
    b[12..14].copy_from_slice(&[0x86, 0xdd]);
    b[14] = 0x60;
    b[18..20].copy_from_slice(&32u16.to_be_bytes());
    b[20] = 58;
    b[21] = 255;
    b[22..38].copy_from_slice(&src);
    b[38..54].copy_from_slice(&crate::responder::ALL_NODES);
    b[54] = 136;
    b[58] = 0x20;
    b[62..78].copy_from_slice(&target);
    b[78] = 2;
    b[79] = 1;
    b[80..86].copy_from_slice(&eth_src);
    BufFrame::new(&b).expect("fits")
}
