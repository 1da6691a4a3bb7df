//! Gratuitous ARP and unsolicited Neighbor Advertisements, and the solicited-node multicast
//! memberships IPv6 addresses need.
//!
//! Frames are built with etherparse (maintained, no I/O of its own, ARP and ICMPv6 with the
//! checksum) and sent on a send-only `AF_PACKET` socket (protocol 0: the kernel copies no
//! received frames to it, unlike pnet's `ETH_P_ALL` channel, and nothing goes promiscuous).

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder,
    icmpv6::NeighborAdvertisementHeader,
};
use l2announcer_common::responder::{ALL_NODES, multicast_mac, solicited_node};

/// Errors building or sending announcements.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("AF_PACKET socket: {0} (CAP_NET_RAW is needed)")]
    Socket(#[source] io::Error),
    #[error("sending on interface {ifindex}: {source}")]
    Send {
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    #[error("building the frame: {0}")]
    Build(String),
    #[error("multicast membership of {group} on interface {ifindex}: {source}")]
    Multicast {
        group: Ipv6Addr,
        ifindex: u32,
        #[source]
        source: io::Error,
    },
}

/// Gratuitous ARP in its request form (RFC 5227 §3: sender and target address both the
/// announced one, target hardware address zero), broadcast.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Result<Vec<u8>, AnnounceError> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &mac,
        &ip.octets(),
        &[0; 6],
        &ip.octets(),
    )
    .map_err(|e| AnnounceError::Build(e.to_string()))?;
    let mut frame = Vec::with_capacity(42);
    PacketBuilder::ethernet2(mac, [0xff; 6])
        .arp(arp)
        .write_to_vec(&mut frame)
        .map_err(|e| AnnounceError::Build(e.to_string()))?;
    Ok(frame)
}

/// Unsolicited Neighbor Advertisement to all nodes: override set, solicited not, with the
/// target link-layer address option (RFC 4861 §7.2.6).
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Result<Vec<u8>, AnnounceError> {
    let mut payload = [0u8; 24];
    payload[..16].copy_from_slice(&ip.octets());
    payload[16] = 2;
    payload[17] = 1;
    payload[18..].copy_from_slice(&mac);
    let mut frame = Vec::with_capacity(86);
    PacketBuilder::ethernet2(mac, multicast_mac(&ALL_NODES))
        .ipv6(ip.octets(), ALL_NODES, 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(
            NeighborAdvertisementHeader {
                router: false,
                solicited: false,
                r#override: true,
            },
        ))
        .write(&mut frame, &payload)
        .map_err(|e| AnnounceError::Build(e.to_string()))?;
    Ok(frame)
}

/// The announcement frame for an address.
pub fn announcement(mac: [u8; 6], ip: IpAddr) -> Result<Vec<u8>, AnnounceError> {
    match ip {
        IpAddr::V4(ip) => gratuitous_arp(mac, ip),
        IpAddr::V6(ip) => unsolicited_na(mac, ip),
    }
}

/// A send-only raw Ethernet socket.
pub struct PacketSocket(OwnedFd);

impl PacketSocket {
    pub fn new() -> Result<Self, AnnounceError> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(AnnounceError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends a whole Ethernet frame out of `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> Result<(), AnnounceError> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6.min(frame.len())]);
        // SAFETY: buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(AnnounceError::Send {
                ifindex,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// Solicited-node group memberships, counted: addresses that share their last 24 bits share
/// a group. Joining makes the NIC accept the group's frames (and the kernel send MLD reports
/// for snooping switches); without it a real NIC may filter the solicitations away.
pub struct MulticastGroups {
    socket: UdpSocket,
    joined: BTreeMap<(Ipv6Addr, u32), usize>,
}

impl MulticastGroups {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind("[::]:0")?,
            joined: BTreeMap::new(),
        })
    }

    /// One more address on `ifindex` needs the solicited-node group of `ip`.
    pub fn join(&mut self, ip: Ipv6Addr, ifindex: u32) -> Result<(), AnnounceError> {
        let group = Ipv6Addr::from(solicited_node(&ip.octets()));
        let count = self.joined.entry((group, ifindex)).or_insert(0);
        if *count == 0 {
            self.socket
                .join_multicast_v6(&group, ifindex)
                .map_err(|source| AnnounceError::Multicast {
                    group,
                    ifindex,
                    source,
                })?;
        }
        *count += 1;
        Ok(())
    }

    /// One address fewer on `ifindex` needs the group of `ip`; the last one leaves it.
    /// Leaving a group of an interface that is gone fails harmlessly.
    pub fn leave(&mut self, ip: Ipv6Addr, ifindex: u32) {
        let group = Ipv6Addr::from(solicited_node(&ip.octets()));
        if let Some(count) = self.joined.get_mut(&(group, ifindex)) {
            *count -= 1;
            if *count == 0 {
                self.joined.remove(&(group, ifindex));
                let _ = self.socket.leave_multicast_v6(&group, ifindex);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn gratuitous_arp_is_a_broadcast_request_for_itself() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(192, 0, 2, 10)).unwrap();
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[192, 0, 2, 10]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[192, 0, 2, 10]);
    }

    #[test]
    fn unsolicited_na_is_valid_with_override_and_target_option() {
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = unsolicited_na(MAC, ip).unwrap();
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv6(ipv6)) = p.net else {
            panic!()
        };
        assert_eq!(ipv6.header().hop_limit(), 255);
        assert_eq!(ipv6.header().destination(), ALL_NODES);
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!()
        };
        assert!(icmp.is_checksum_valid(ip.octets(), ALL_NODES));
        let Icmpv6Type::NeighborAdvertisement(h) = icmp.icmp_type() else {
            panic!()
        };
        assert!(h.r#override && !h.solicited && !h.router);
        assert_eq!(&icmp.payload()[16..24], &[2, 1, 2, 0, 0, 0, 0, 1]);
    }
}
