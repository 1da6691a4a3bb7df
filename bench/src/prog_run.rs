//! Per-packet cost of the loaded XDP program, timed by the kernel with `BPF_PROG_RUN`, beside
//! the floor: a program that only swaps the Ethernet addresses and returns `XDP_TX`.
//!
//! Each run is a single repetition (`repeat = 1`): the responder rewrites a request into its
//! reply in place, so a kernel-side repeat loop would time it answering its own reply after
//! the first pass. The kernel's timer then also counts one clock read per run, the same for
//! both programs, so the report gives both the multiple and the difference in nanoseconds.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::Context as _;
use aya::programs::XdpMode;
use l2announcer::dataplane::{Announcement, Dataplane, XdpModeSetting};
use l2announcer_common::frames::{self, NsKind};
use l2announcer_common::{PROG_FLOOR, PROG_PASS, PROG_RESPONDER};
use l2announcer_tests::{Netns, ifindex, in_netns};
use serde_json::json;

use crate::{
    Ctx,
    report::{Headline, Section, Table},
    stats::{Summary, fmt},
    svg::{Plot, PlotKind},
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const VIP4: [u8; 4] = [192, 0, 2, 10];
const OTHER4: [u8; 4] = [192, 0, 2, 77];
const CLIENT4: [u8; 4] = [192, 0, 2, 1];
const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const CLIENT6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];

/// One kind of packet and the verdict it must get.
struct Case {
    label: &'static str,
    frame: Vec<u8>,
    program: &'static str,
    verdict: u32,
}

fn cases() -> Vec<Case> {
    let arp = frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4)
        .bytes()
        .to_vec();
    vec![
        Case {
            label: "floor: swap MACs, XDP_TX (ARP request)",
            frame: arp.clone(),
            program: PROG_FLOOR,
            verdict: XDP_TX,
        },
        Case {
            label: "ARP request for an announced IP → reply",
            frame: arp,
            program: PROG_RESPONDER,
            verdict: XDP_TX,
        },
        Case {
            label: "IPv6 NS for an announced IP → NA",
            frame: frames::ns(NsKind::Resolve, CLIENT_MAC, CLIENT6, VIP6, OUR_MAC)
                .bytes()
                .to_vec(),
            program: PROG_RESPONDER,
            verdict: XDP_TX,
        },
        Case {
            label: "ARP request for another host → pass",
            frame: frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, OTHER4)
                .bytes()
                .to_vec(),
            program: PROG_RESPONDER,
            verdict: XDP_PASS,
        },
        Case {
            label: "IPv4 UDP packet → pass",
            frame: udp4_frame(),
            program: PROG_RESPONDER,
            verdict: XDP_PASS,
        },
        Case {
            label: "empty program: XDP_PASS (ARP request)",
            frame: frames::arp_request([0xff; 6], CLIENT_MAC, CLIENT4, VIP4)
                .bytes()
                .to_vec(),
            program: PROG_PASS,
            verdict: XDP_PASS,
        },
    ]
}

/// An ordinary data packet: what every non-ARP/NDP frame on the interface costs.
fn udp4_frame() -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&OUR_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4: version/IHL, TOS, total length 46 (20 + 8 + 18), id, flags, TTL 64, UDP.
    f.extend_from_slice(&[0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&CLIENT4);
    f.extend_from_slice(&VIP4);
    // UDP 40000 → 53, length 26, no checksum, 18 bytes of payload.
    f.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 26, 0, 0]);
    f.extend_from_slice(&[0u8; 18]);
    f
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let rounds = ctx.reps(30, 5);
    let runs = ctx.reps(20_000, 2_000);
    let ns = Netns::new();
    // A veth pair inside the namespace: the kernel here has no dummy interfaces.
    ns.sh(&[
        "ip", "link", "add", "bench0", "type", "veth", "peer", "name", "bench1",
    ]);
    ns.sh(&["ip", "link", "set", "bench0", "up"]);
    ns.sh(&[
        "ip", "link", "add", "bench2", "type", "veth", "peer", "name", "bench3",
    ]);
    for i in ["bench1", "bench2", "bench3"] {
        ns.sh(&["ip", "link", "set", i, "up"]);
    }
    // BPF_PROG_RUN resolves the ingress ifindex in the caller's namespace: run in the lab's.
    let samples = in_netns(&ns, move || measure(rounds, runs))?;

    let cases = cases();
    let summaries: Vec<Summary> = samples
        .iter()
        .map(|s| Summary::of(s).context("no samples"))
        .collect::<anyhow::Result<_>>()?;
    let floor = summaries[0].p50;
    let empty = summaries[5].p50;
    let mut table = Table::new(
        &format!(
            "Nanoseconds per packet: median of {rounds} rounds of {runs} runs each (min–max of the round means)."
        ),
        &[
            "packet",
            "verdict",
            "ns per packet",
            "min–max",
            "× floor",
            "ns above the empty program",
        ],
    );
    for (case, s) in cases.iter().zip(&summaries) {
        table.row(vec![
            case.label.into(),
            if case.verdict == XDP_TX {
                "XDP_TX"
            } else {
                "XDP_PASS"
            }
            .into(),
            fmt(s.p50),
            format!("{}–{}", fmt(s.min), fmt(s.max)),
            format!("{:.2}", s.p50 / floor),
            fmt(s.p50 - empty),
        ]);
    }
    let headline = vec![
        Headline::new(
            "XDP cost per ARP request answered",
            format!("{} ns", fmt(summaries[1].p50)),
            format!("{} ns (floor: swap MACs + XDP_TX)", fmt(floor)),
            format!("{:.2}× the floor", summaries[1].p50 / floor),
        ),
        Headline::new(
            "XDP cost per IPv6 NS answered",
            format!("{} ns", fmt(summaries[2].p50)),
            format!("{} ns (floor)", fmt(floor)),
            format!("{:.2}× the floor", summaries[2].p50 / floor),
        ),
        Headline::new(
            "XDP cost per passed data packet",
            format!("{} ns", fmt(summaries[4].p50)),
            format!("{} ns (floor)", fmt(floor)),
            format!("{:.2}× the floor", summaries[4].p50 / floor),
        ),
    ];
    let raw = json!({
        "rounds": rounds,
        "runs_per_round": runs,
        "cases": cases.iter().zip(&samples).map(|(c, s)| json!({
            "packet": c.label, "ns_per_round": s,
        })).collect::<Vec<_>>(),
    });
    Ok(Section {
        method: format!(
            "The agent's XDP object is loaded as the agent loads it, with one IPv4 and one IPv6 \
             address announced and the program attached (generic mode) to a veth in a fresh \
             namespace, so that its per-interface counters are updated as in production. \
             Each packet is run through the program by `BPF_PROG_RUN` with `repeat = 1` \
             ({runs} runs per round, {rounds} rounds, the kinds interleaved within a round); \
             the figure is the kernel's own timing of the run, not the syscall. The floor is \
             `xdp_floor` from the same object: swap the Ethernet addresses, return `XDP_TX`. \
             Every run's verdict is checked.",
        ),
        tables: vec![table],
        plots: vec![Plot {
            file: "prog-run.svg".into(),
            title: "XDP program: ns per packet (BPF_PROG_RUN), one dot per round".into(),
            unit: "nanoseconds per packet".into(),
            kind: PlotKind::Samples(
                cases
                    .iter()
                    .zip(&samples)
                    .map(|(c, s)| (c.label.to_string(), s.clone()))
                    .collect(),
            ),
        }],
        headline,
        notes: vec![
            "With `repeat = 1` the kernel's timer includes a clock read and the call per run, \
             the same for every program: the empty program (`xdp_pass`, returns at once) \
             measures that fixed part, and \"ns above the empty program\" is each program's \
             own work."
                .into(),
            "BPF_PROG_RUN runs the program on a kernel-built frame: it leaves out the driver, \
             which the end-to-end benchmark includes."
                .into(),
        ],
        raw,
        ..Section::default()
    })
}

/// Per case, the mean ns per run of each round.
fn measure(rounds: usize, runs: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut dp = Dataplane::load(Duration::from_secs(3600)).context("loading the XDP object")?;
    let ifindex = ifindex("bench0");
    dp.attach(ifindex, XdpModeSetting::Generic)?;
    // Every timed program is attached somewhere, so the kernel's XDP dispatcher calls each
    // one directly (unattached, each BPF_PROG_RUN would rebuild the dispatcher around it).
    dp.attach_floor(l2announcer_tests::ifindex("bench1"), XdpMode::Skb)?;
    dp.attach_pass(l2announcer_tests::ifindex("bench2"), XdpMode::Skb)?;
    let desired: BTreeMap<Announcement, [u8; 6]> = [IpAddr::from(VIP4), IpAddr::from(VIP6)]
        .into_iter()
        .map(|ip| (Announcement { ip, ifindex }, OUR_MAC))
        .collect();
    dp.apply(&desired)?;
    dp.heartbeat()?;
    let cases = cases();
    let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (case, out) in cases.iter().zip(samples.iter_mut()) {
            let mut total = Duration::ZERO;
            for _ in 0..runs {
                let (verdict, took) = dp.timed_run(case.program, ifindex, &case.frame)?;
                anyhow::ensure!(
                    verdict == case.verdict,
                    "{}: verdict {verdict}, expected {}",
                    case.label,
                    case.verdict
                );
                total += took;
            }
            out.push(total.as_nanos() as f64 / runs as f64);
        }
    }
    dp.shutdown()?;
    Ok(samples)
}
