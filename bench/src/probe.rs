//! A fast ARP prober for the control-plane benchmarks: one thread inside the client's network
//! namespace sends a broadcast ARP request for every target address every `interval` from an
//! AF_PACKET socket, and timestamps every ARP reply (with `Instant`) as it is read. `arping`
//! asks one address at most every few tens of ms and through a pipe; this asks dozens of
//! addresses every few ms and keeps every reply.

use std::{
    fs,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use l2announcer_tests::Netns;

/// One ARP reply: when it was read, for which address (its sender protocol address), and
/// from which MAC (its sender hardware address).
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub at: Instant,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

#[derive(Default)]
struct Shared {
    targets: Vec<Ipv4Addr>,
    replies: Vec<Reply>,
    /// Requests sent so far (for the method text).
    sent: u64,
}

/// The running prober; stopped (and its thread joined) on drop.
pub struct Prober {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

const ETH_P_ARP: u16 = 0x0806;

impl Prober {
    /// Starts probing from `ifname` in `ns`, whose address is `src`, every `interval`.
    /// No targets yet: see [`Prober::set_targets`] and [`Prober::add_target`].
    pub fn start(ns: &Netns, ifname: &str, src: Ipv4Addr, interval: Duration) -> Self {
        let path = ns.path();
        let ifname = ifname.to_owned();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let setup = || -> Result<(Socket, [u8; 6]), String> {
                    let f = fs::File::open(&path).map_err(|e| format!("netns file: {e}"))?;
                    // SAFETY: setns on an fd we hold; it only affects this thread.
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(format!("setns: {}", std::io::Error::last_os_error()));
                    }
                    let index = l2announcer_tests::ifindex(&ifname);
                    let socket = Socket::open(index)?;
                    let mac = mac_of(&ifname)?;
                    Ok((socket, mac))
                };
                match setup() {
                    Ok((socket, mac)) => {
                        let _ = ready_tx.send(Ok(()));
                        run(socket, mac, src, interval, &shared, &stop);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("ARP prober: {e}"),
            Err(_) => panic!("ARP prober thread died"),
        }
        Prober {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set_targets(&self, targets: &[Ipv4Addr]) {
        self.shared.lock().unwrap().targets = targets.to_vec();
    }

    pub fn add_target(&self, ip: Ipv4Addr) {
        self.shared.lock().unwrap().targets.push(ip);
    }

    pub fn remove_target(&self, ip: Ipv4Addr) {
        self.shared.lock().unwrap().targets.retain(|t| *t != ip);
    }

    /// Every reply so far.
    pub fn replies(&self) -> Vec<Reply> {
        self.shared.lock().unwrap().replies.clone()
    }

    /// The first reply for `ip` at or after `since` whose MAC passes `mac_ok`.
    pub fn first(
        &self,
        ip: Ipv4Addr,
        since: Instant,
        mac_ok: impl Fn(&[u8; 6]) -> bool,
    ) -> Option<Reply> {
        self.shared
            .lock()
            .unwrap()
            .replies
            .iter()
            .find(|r| r.ip == ip && r.at >= since && mac_ok(&r.mac))
            .copied()
    }

    /// Forgets the replies so far (a long run keeps memory bounded).
    pub fn clear(&self) {
        self.shared.lock().unwrap().replies.clear();
    }

    pub fn sent(&self) -> u64 {
        self.shared.lock().unwrap().sent
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The MACs in the order they answered `ip`, consecutive repeats folded: one entry means one
/// answerer, two a handover, more means two nodes answered in turn.
pub fn sequence(replies: &[Reply], ip: Ipv4Addr) -> Vec<[u8; 6]> {
    let mut seq: Vec<[u8; 6]> = Vec::new();
    for r in replies.iter().filter(|r| r.ip == ip) {
        if seq.last() != Some(&r.mac) {
            seq.push(r.mac);
        }
    }
    seq
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

fn mac_of(ifname: &str) -> Result<[u8; 6], String> {
    // SIOCGIFHWADDR: sysfs would show the namespace it was mounted in, not this thread's.
    // SAFETY: a plain socket for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: zeroed ifreq is valid; the name fits (checked by the caller's ifindex lookup).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in ifname.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR writes into the ifreq we pass.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(format!("SIOCGIFHWADDR {ifname}: {err}"));
    }
    // SAFETY: the union member the ioctl filled.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for i in 0..6 {
        mac[i] = data[i] as u8;
    }
    Ok(mac)
}

/// An AF_PACKET socket bound to one interface, ARP frames only.
struct Socket {
    fd: libc::c_int,
}

impl Socket {
    fn open(ifindex: u32) -> Result<Socket, String> {
        let proto = ETH_P_ARP.to_be();
        // SAFETY: plain socket call.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto as libc::c_int,
            )
        };
        if fd < 0 {
            return Err(format!(
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let socket = Socket { fd };
        // SAFETY: a zeroed sockaddr_ll is valid; we fill the fields bind needs.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(format!("bind: {}", std::io::Error::last_os_error()));
        }
        // A large receive buffer: replies are read in bursts between sends.
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with an int option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        Ok(socket)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: the socket is bound; send the frame's bytes.
        unsafe {
            libc::send(
                self.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
    }

    /// Waits up to `timeout` for something to read.
    fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(1000) as libc::c_int;
        // SAFETY: poll on one pollfd we own.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// One received frame that is not one of ours, or None when there is nothing left.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: a zeroed sockaddr_ll for recvfrom to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: recvfrom into our buffer and address.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                return None;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Some(n as usize);
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.fd) };
    }
}

fn request(mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&src.octets());
    // Target hardware address zero, then the target address.
    f[38..42].copy_from_slice(&target.octets());
    f
}

fn run(
    socket: Socket,
    mac: [u8; 6],
    src: Ipv4Addr,
    interval: Duration,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
) {
    let mut buf = [0u8; 2048];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            let targets = shared.lock().unwrap().targets.clone();
            for t in &targets {
                socket.send(&request(mac, src, *t));
            }
            shared.lock().unwrap().sent += targets.len() as u64;
            next += interval;
            if next < now {
                // Fell behind (a busy machine): skip the missed rounds rather than burst.
                next = now + interval;
            }
        }
        if socket.wait(next.saturating_duration_since(Instant::now())) {
            let mut got = Vec::new();
            while let Some(n) = socket.recv(&mut buf) {
                let at = Instant::now();
                let f = &buf[..n];
                // ARP for IPv4 over Ethernet, op 2 (reply).
                if n >= 42 && f[12..14] == ETH_P_ARP.to_be_bytes() && f[20..22] == [0, 2] {
                    let mut sha = [0u8; 6];
                    sha.copy_from_slice(&f[22..28]);
                    let ip = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                    got.push(Reply { at, ip, mac: sha });
                }
            }
            if !got.is_empty() {
                let mut s = shared.lock().unwrap();
                // Only replies about addresses being asked for (or asked for until just now).
                s.replies.extend(got);
            }
        }
    }
}
