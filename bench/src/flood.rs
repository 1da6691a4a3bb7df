//! End to end on a namespace lab: a client asks a node for a VIP, over a veth, and the node
//! answers either with l2announcer's XDP program or with the Linux kernel itself (the VIP
//! configured on the interface: what keepalived and kube-vip rely on). Both are measured in
//! the same run, alternating, with the same client:
//!
//! - latency: one request at a time, timed from send to reply by the client;
//! - throughput: the client sends as fast as it can for a while and counts the replies;
//! - CPU: at a fixed 20,000 requests per second, the machine's busy time per reply, and for
//!   XDP the kernel's own run-time statistics of the program.

use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use l2announcer_common::frames::{self, NsKind};
use l2announcer_tests::{Agent, Netns, PeerXdp, ifindex, in_netns, veth};
use serde::Serialize;
use serde_json::json;

use crate::{
    Ctx,
    report::{Headline, Section, Table},
    stats::{Summary, fmt, percentile_sorted},
    svg::{Plot, PlotKind},
};

const NODE4: &str = "10.77.0.1";
const CLIENT4: [u8; 4] = [10, 77, 0, 2];
const VIP4: [u8; 4] = [10, 77, 0, 100];
const CLIENT6: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const VIP6: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0];
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
/// Requests per second for the CPU measurement: well below what either responder sustains.
const PACED_RATE: u64 = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
enum Responder {
    Kernel,
    L2announcer,
}

impl Responder {
    fn label(self) -> &'static str {
        match self {
            Responder::Kernel => "Linux kernel (VIP on the interface)",
            Responder::L2announcer => "l2announcer (XDP, native)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
enum Family {
    Arp,
    Ns,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Family::Arp => "ARP",
            Family::Ns => "IPv6 NS",
        }
    }

    fn ethertype(self) -> u16 {
        match self {
            Family::Arp => ETH_P_ARP,
            Family::Ns => ETH_P_IPV6,
        }
    }

    fn request(self, client_mac: [u8; 6]) -> Vec<u8> {
        match self {
            Family::Arp => frames::arp_request([0xff; 6], client_mac, CLIENT4, VIP4),
            Family::Ns => frames::ns(NsKind::Resolve, client_mac, CLIENT6, VIP6, [0; 6]),
        }
        .bytes()
        .to_vec()
    }

    /// The answer to our request: an ARP reply from the VIP to the client, or a solicited NA
    /// for the VIP (not a gratuitous ARP or an unsolicited NA).
    fn is_answer(self, f: &[u8]) -> bool {
        match self {
            Family::Arp => {
                f.len() >= 42
                    && f[12..14] == ETH_P_ARP.to_be_bytes()
                    && f[20..22] == [0, 2]
                    && f[28..32] == VIP4
                    && f[38..42] == CLIENT4
            }
            Family::Ns => {
                f.len() >= 78
                    && f[12..14] == ETH_P_IPV6.to_be_bytes()
                    && f[20] == 58
                    && f[54] == 136
                    && f[58] & 0x40 != 0
                    && f[62..78] == VIP6
            }
        }
    }
}

/// Everything measured for one responder and family.
#[derive(Debug, Default, Serialize)]
struct Measured {
    /// Round-trip times of single requests, microseconds.
    latency_us: Vec<f64>,
    /// Requests that got no answer within 200 ms in the latency runs.
    latency_lost: u64,
    /// Per flood round: replies per second and requests sent per second.
    flood_replies_per_s: Vec<f64>,
    flood_sent_per_s: Vec<f64>,
    /// Per paced round (XDP only): the program's own run time per packet, nanoseconds.
    xdp_ns_per_packet: Vec<f64>,
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let rounds = ctx.reps(5, 1);
    let latency_requests = ctx.reps(4_000, 500);
    let flood_for = Duration::from_secs(ctx.reps(3, 1) as u64);
    let paced_for = Duration::from_secs(ctx.reps(3, 1) as u64);

    let node = Netns::new();
    let client = Netns::new();
    veth(
        &client,
        "c0",
        &["10.77.0.2/24", "fd77::2/64"],
        &node,
        "n0",
        &[&format!("{NODE4}/24"), "fd77::1/64"],
    );
    // Native XDP_TX on a veth is delivered only when the peer runs XDP too. The client's end
    // keeps its pass program in both modes, so the client's path is the same for both.
    let _peer = PeerXdp::attach(&client, "c0");
    let client_mac = parse_mac(&client.mac("c0"))?;

    let mut results: BTreeMap<(Responder, Family), Measured> = BTreeMap::new();
    for round in 0..rounds {
        for responder in [Responder::Kernel, Responder::L2announcer] {
            eprintln!(
                "bench: flood: round {}/{rounds}: {}",
                round + 1,
                responder.label()
            );
            let agent = start(responder, &node);
            // Let the start-up announcements (gratuitous ARP, unsolicited NA) pass.
            thread::sleep(Duration::from_millis(300));
            for family in [Family::Arp, Family::Ns] {
                let m = results.entry((responder, family)).or_default();
                let request = family.request(client_mac);
                let (rtts, lost) = {
                    let request = request.clone();
                    in_netns(&client, move || latency(family, &request, latency_requests))?
                };
                m.latency_us.extend(rtts);
                m.latency_lost += lost;
                let flood = {
                    let request = request.clone();
                    in_netns(&client, move || blast(family, &request, flood_for, None))?
                };
                m.flood_replies_per_s
                    .push(flood.replies as f64 / flood_for.as_secs_f64());
                m.flood_sent_per_s
                    .push(flood.sent as f64 / flood_for.as_secs_f64());
                if responder == Responder::L2announcer {
                    // Run-time statistics cost two clock reads per program run: on only here.
                    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                        .context("enabling BPF run-time statistics")?;
                    let before = xdp_stats();
                    let paced = in_netns(&client, move || {
                        blast(family, &request, paced_for, Some(PACED_RATE))
                    })?;
                    let (time, runs) = xdp_stats();
                    drop(stats);
                    let runs = runs - before.1;
                    anyhow::ensure!(
                        runs > 0 && paced.replies > 0,
                        "no XDP runs or replies at {PACED_RATE}/s"
                    );
                    m.xdp_ns_per_packet
                        .push((time - before.0).as_nanos() as f64 / runs as f64);
                }
            }
            drop(agent);
        }
    }
    Ok(section(
        &results,
        rounds,
        latency_requests,
        flood_for,
        paced_for,
    ))
}

/// What answers for the VIPs in a round: l2announcer, or the addresses on the interface.
enum Started {
    Kernel(Netns2),
    L2announcer(Option<Agent>),
}

/// The node's namespace name, to remove the VIPs again.
struct Netns2(String);

impl Drop for Started {
    fn drop(&mut self) {
        match self {
            Started::Kernel(ns) => {
                for (family, addr) in [("-4", "10.77.0.100/32"), ("-6", "fd77::100/128")] {
                    let _ = std::process::Command::new("ip")
                        .args(["-n", &ns.0, family, "addr", "del", addr, "dev", "n0"])
                        .status();
                }
            }
            Started::L2announcer(agent) => {
                if let Some(a) = agent.take() {
                    a.stop();
                }
            }
        }
    }
}

fn start(responder: Responder, node: &Netns) -> Started {
    match responder {
        Responder::Kernel => {
            node.sh(&["ip", "addr", "add", "10.77.0.100/32", "dev", "n0"]);
            node.sh(&[
                "ip",
                "-6",
                "addr",
                "add",
                "fd77::100/128",
                "dev",
                "n0",
                "nodad",
            ]);
            Started::Kernel(Netns2(node.name.clone()))
        }
        Responder::L2announcer => Started::L2announcer(Some(Agent::start(
            node,
            &[
                "standalone",
                "--interface",
                "^n0$",
                "--ip",
                "10.77.0.100",
                "--ip",
                "fd77::100",
                "--xdp-mode",
                "native",
            ],
        ))),
    }
}

/// A raw socket on one interface that sees frames of one EtherType arriving (not its own).
struct RawSocket(OwnedFd);

impl RawSocket {
    fn open(ifname: &str, ethertype: u16) -> anyhow::Result<RawSocket> {
        let proto = ethertype.to_be();
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        anyhow::ensure!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let socket = RawSocket(unsafe { OwnedFd::from_raw_fd(fd) });
        socket.set(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        // A deep receive queue: the flood must count replies, not socket overflows.
        socket.set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20)?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: a timeval of the right size for SO_RCVTIMEO.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        anyhow::ensure!(rc == 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex(ifname) as i32;
        // SAFETY: binding to a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        anyhow::ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
        Ok(socket)
    }

    fn set(&self, level: i32, name: i32, value: i32) -> anyhow::Result<()> {
        // SAFETY: an int option.
        let rc = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                size_of::<i32>() as u32,
            )
        };
        anyhow::ensure!(
            rc == 0,
            "setsockopt {name}: {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: sending from a valid buffer on a bound socket.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        n == frame.len() as isize
    }

    /// One frame, or `None` after the 200 ms receive timeout.
    fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: receiving into a valid buffer of the given length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then(|| &buf[..n as usize])
    }
}

/// One request at a time; each timed from send to its answer. Returns the round-trip times
/// in microseconds and how many requests went unanswered.
fn latency(family: Family, request: &[u8], count: usize) -> anyhow::Result<(Vec<f64>, u64)> {
    let socket = RawSocket::open("c0", family.ethertype())?;
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::with_capacity(count);
    let mut lost = 0;
    for _ in 0..count {
        let sent = Instant::now();
        anyhow::ensure!(
            socket.send(request),
            "send: {}",
            std::io::Error::last_os_error()
        );
        loop {
            match socket.recv(&mut buf) {
                Some(f) if family.is_answer(f) => {
                    rtts.push(sent.elapsed().as_secs_f64() * 1e6);
                    break;
                }
                Some(_) => continue,
                None => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    Ok((rtts, lost))
}

struct Blast {
    sent: u64,
    replies: u64,
}

/// Sends `request` for `duration`, as fast as possible or at `rate` per second, while a
/// second thread counts the answers (and 200 ms of stragglers after the end).
fn blast(
    family: Family,
    request: &[u8],
    duration: Duration,
    rate: Option<u64>,
) -> anyhow::Result<Blast> {
    let rx = RawSocket::open("c0", family.ethertype())?;
    let tx = RawSocket::open("c0", family.ethertype())?;
    let done = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    let counter = {
        let done = done.clone();
        let replies = replies.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match rx.recv(&mut buf) {
                    Some(f) if family.is_answer(f) => {
                        replies.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(_) => {}
                    None if done.load(Ordering::Relaxed) => break,
                    None => {}
                }
            }
        })
    };
    let start = Instant::now();
    let mut sent = 0u64;
    match rate {
        None => {
            while start.elapsed() < duration {
                for _ in 0..64 {
                    sent += u64::from(tx.send(request));
                }
            }
        }
        Some(rate) => {
            // Batches every millisecond, sleeping in between: the client stays mostly idle.
            let per_ms = rate / 1000;
            let mut next = start;
            while start.elapsed() < duration {
                for _ in 0..per_ms {
                    sent += u64::from(tx.send(request));
                }
                next += Duration::from_millis(1);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    counter
        .join()
        .map_err(|_| anyhow::anyhow!("reply counter panicked"))?;
    Ok(Blast {
        sent,
        replies: replies.load(Ordering::Relaxed),
    })
}

/// The kernel's run-time statistics of the responder program: total run time and runs,
/// summed over every loaded copy (the client's pass program comes from the same object, so
/// this process holds an idle copy of the responder too).
fn xdp_stats() -> (Duration, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(l2announcer_common::PROG_RESPONDER))
        .fold((Duration::ZERO, 0), |(t, n), p| {
            (t + p.run_time(), n + p.run_count())
        })
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC {s:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("MAC {s:?} is not 6 bytes"))
}

/// At most 1,000 evenly spaced quantiles: enough for a CDF plot, small enough for an SVG.
fn quantiles(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.len() <= 1000 {
        return v;
    }
    (1..=1000)
        .map(|i| percentile_sorted(&v, i as f64 / 10.0))
        .collect()
}

fn section(
    results: &BTreeMap<(Responder, Family), Measured>,
    rounds: usize,
    latency_requests: usize,
    flood_for: Duration,
    paced_for: Duration,
) -> Section {
    let summary = |v: &[f64]| Summary::of(v);
    let cell = |s: Option<Summary>| s.map(|s| fmt(s.p50)).unwrap_or_else(|| "–".into());
    let range = |s: Option<Summary>| {
        s.map(|s| format!("{}–{}", fmt(s.min), fmt(s.max)))
            .unwrap_or_else(|| "–".into())
    };

    let mut latency = Table::new(
        &format!(
            "Reply latency seen by the client, one request at a time, microseconds \
             ({} requests per responder and family).",
            rounds * latency_requests
        ),
        &[
            "responder",
            "request",
            "n",
            "p50",
            "p99",
            "max",
            "unanswered",
        ],
    );
    let mut flood = Table::new(
        &format!(
            "Flood: one client thread sends as fast as it can for {} s per round, {rounds} \
             rounds; median (min–max) over rounds. Each send carries the request through the \
             node's responder and back to the client's socket on the same CPU, so the rate is \
             the inverse of the whole path's cost, and the client's share of it is the same for \
             both responders.",
            flood_for.as_secs()
        ),
        &[
            "responder",
            "request",
            "replies/s",
            "min–max",
            "answered",
            "µs per request, whole path",
        ],
    );
    let mut cpu = Table::new(
        &format!(
            "The XDP program's own run time per packet on the live path, from the kernel's \
             BPF run-time statistics, at {} requests/s for {} s per round. The kernel's own \
             ARP/NDP code has no such counter.",
            fmt(PACED_RATE as f64),
            paced_for.as_secs()
        ),
        &["responder", "request", "XDP ns per packet", "min–max"],
    );
    for ((responder, family), m) in results {
        let l = summary(&m.latency_us);
        latency.row(vec![
            responder.label().into(),
            family.label().into(),
            m.latency_us.len().to_string(),
            l.as_ref().map(|s| fmt(s.p50)).unwrap_or_default(),
            l.as_ref().map(|s| fmt(s.p99)).unwrap_or_default(),
            l.as_ref().map(|s| fmt(s.max)).unwrap_or_default(),
            m.latency_lost.to_string(),
        ]);
        let replies = summary(&m.flood_replies_per_s);
        let sent = summary(&m.flood_sent_per_s);
        let answered = match (&replies, &sent) {
            (Some(r), Some(s)) if s.p50 > 0.0 => format!("{:.0}%", 100.0 * r.p50 / s.p50),
            _ => "–".into(),
        };
        flood.row(vec![
            responder.label().into(),
            family.label().into(),
            cell(replies.clone()),
            range(replies.clone()),
            answered,
            replies
                .map(|r| fmt(1e6 / r.p50))
                .unwrap_or_else(|| "–".into()),
        ]);
        if *responder == Responder::L2announcer {
            cpu.row(vec![
                responder.label().into(),
                family.label().into(),
                cell(summary(&m.xdp_ns_per_packet)),
                range(summary(&m.xdp_ns_per_packet)),
            ]);
        }
    }

    let get = |r, f| results.get(&(r, f));
    let mut headline = Vec::new();
    for family in [Family::Arp, Family::Ns] {
        let (Some(ours), Some(kernel)) = (
            get(Responder::L2announcer, family),
            get(Responder::Kernel, family),
        ) else {
            continue;
        };
        if let (Some(o), Some(k)) = (
            summary(&ours.flood_replies_per_s),
            summary(&kernel.flood_replies_per_s),
        ) {
            headline.push(Headline::new(
                &format!("{} replies per second (flood, one veth)", family.label()),
                fmt(o.p50),
                format!("{} (Linux kernel)", fmt(k.p50)),
                format!("{:.2}× the kernel", o.p50 / k.p50),
            ));
        }
        if let (Some(o), Some(k)) = (summary(&ours.latency_us), summary(&kernel.latency_us)) {
            headline.push(Headline::new(
                &format!("{} reply latency p50 / p99", family.label()),
                format!("{} / {} µs", fmt(o.p50), fmt(o.p99)),
                format!("{} / {} µs (Linux kernel)", fmt(k.p50), fmt(k.p99)),
                format!("p50 {:+.1} µs", o.p50 - k.p50),
            ));
        }
    }

    let series = |pick: fn(&Measured) -> Vec<f64>| -> Vec<(String, Vec<f64>)> {
        results
            .iter()
            .map(|((r, f), m)| (format!("{} {}", short(*r), f.label()), pick(m)))
            .collect()
    };
    let plots = vec![
        Plot {
            file: "flood-latency.svg".into(),
            title: "Reply latency, one request at a time (CDF)".into(),
            unit: "microseconds from request sent to reply received".into(),
            kind: PlotKind::Cdf(series(|m| quantiles(&m.latency_us))),
        },
        Plot {
            file: "flood-replies.svg".into(),
            title: "Replies per second under a flood, one dot per round".into(),
            unit: "replies per second".into(),
            kind: PlotKind::Samples(series(|m| m.flood_replies_per_s.clone())),
        },
    ];
    let raw = json!({
        "rounds": rounds,
        "latency_requests_per_round": latency_requests,
        "flood_seconds": flood_for.as_secs_f64(),
        "paced_rate": PACED_RATE,
        "paced_seconds": paced_for.as_secs_f64(),
        "results": results.iter().map(|((r, f), m)| json!({
            "responder": r, "family": f, "measured": m,
        })).collect::<Vec<_>>(),
    });
    Section {
        method: format!(
            "Two namespaces joined by a veth: a client (`c0`) and a node (`n0`). The VIPs are \
             10.77.0.100 and fd77::100. Per round, first the kernel answers (the VIPs added to \
             `n0` as /32 and /128), then l2announcer does (`l2announcer standalone --interface \
             ^n0$ --ip 10.77.0.100 --ip fd77::100 --xdp-mode native`, the VIPs not on any \
             interface); {rounds} rounds. The client's end carries an XDP pass program in both \
             cases (native `XDP_TX` on a veth needs one), so its path is the same. The client \
             is this benchmark's own code on AF_PACKET sockets: ARP requests (broadcast) and \
             NS (to the solicited-node group, with a source link-layer option); it counts only \
             ARP replies to itself and solicited NAs for the VIP. Latency: {latency_requests} \
             requests per round, one at a time. Flood: {} s per round from one sending thread \
             while another counts replies. XDP run time: {} requests/s for {} s per round, with \
             the kernel's BPF statistics on (they are off for everything else).",
            flood_for.as_secs(),
            fmt(PACED_RATE as f64),
            paced_for.as_secs()
        ),
        tables: vec![latency, flood, cpu],
        plots,
        headline,
        notes: vec![
            "Client and node share this machine's cores, so under the flood the sender, the \
             node's responder and the client's receive path compete for the same 2 CPUs; the \
             ratio between the responders is the meaningful figure, not the absolute rate."
                .into(),
            "Latency is measured in user space on the client: it includes the client's own \
             send and receive system calls, the same for both responders."
                .into(),
            "A veth is not a NIC: there is no driver ring, interrupt or wire here. On real \
             hardware the XDP path also skips the skb allocation that the kernel's path needs."
                .into(),
        ],
        raw,
        ..Section::default()
    }
}

fn short(r: Responder) -> &'static str {
    match r {
        Responder::Kernel => "kernel",
        Responder::L2announcer => "l2announcer",
    }
}
