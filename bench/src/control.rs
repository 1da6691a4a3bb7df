//! Control-plane benchmarks on the API test kit with the real binaries: the time from a
//! Service's address to the first ARP reply, takeover after a stop or a kill, the API requests
//! leases cost, how evenly addresses spread over the nodes, and the agent's memory and CPU.
//! Each builds a lab of network namespaces (`lab.rs`) and measures from a client namespace
//! with a fast ARP prober (`probe.rs`) or from the kit's audit log.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    Ctx,
    lab::{
        CLIENT_ADDR, DEFAULT_TIMINGS, FAST_TIMINGS, Lab, addresses, cpu_seconds, memory_kib,
        node_name,
    },
    probe::{Prober, sequence},
    report::{Headline, Section, Table},
    stats::{Summary, fmt, fmt_spread},
    svg::{Plot, PlotKind},
};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `later - earlier` in ms, negative if `later` is before `earlier`.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        ms(later - earlier)
    } else {
        -ms(earlier - later)
    }
}

fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The name of the node with this MAC on `eno1`, or the MAC itself.
fn who(lab: &Lab, mac: &[u8; 6]) -> String {
    lab.nodes
        .iter()
        .find(|n| n.mac == *mac)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| mac_str(mac))
}

fn summary(samples: &[f64]) -> anyhow::Result<Summary> {
    Summary::of(samples).ok_or_else(|| anyhow::anyhow!("no samples"))
}

/// n, p50, p99, min, max of samples (ms) as table cells after `label`.
fn dist_row(label: &str, s: &Summary) -> Vec<String> {
    vec![
        label.to_string(),
        s.n.to_string(),
        fmt(s.p50),
        fmt(s.p99),
        fmt(s.min),
        fmt(s.max),
    ]
}

const DIST_HEADER: [&str; 6] = ["", "n", "p50", "p99", "min", "max"];

// ---------------------------------------------------------------------------------------------

/// From a Service getting its address (the status patch returning) to the first ARP reply.
pub fn announce(ctx: &Ctx) -> anyhow::Result<Section> {
    let n = ctx.reps(100, 10);
    let pause = Duration::from_millis(200);
    let interval = Duration::from_millis(2);
    let mut lab = Lab::new(3, 20_000)?;
    lab.start_all(&DEFAULT_TIMINGS);
    let prober = Prober::start(&lab.client_ns, "c1", CLIENT_ADDR, interval);
    // The agents settle (lists, watches) before the first Service comes.
    sleep(Duration::from_secs(1));
    let ips = addresses([10, 50], n);
    let mut samples = Vec::new();
    let mut patch_ms = Vec::new();
    let mut raw = Vec::new();
    let mut by_node = BTreeMap::<String, usize>::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("announce-{i}");
        lab.create_service(&name)?;
        prober.add_target(*ip);
        let before = Instant::now();
        lab.set_ip(&name, *ip)?;
        let patched = Instant::now();
        let deadline = patched + Duration::from_secs(30);
        let reply = loop {
            if let Some(r) = prober.first(*ip, before, |_| true) {
                break r;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{ip} (service {name}) not answered within 30 s"
            );
            sleep(Duration::from_millis(1));
        };
        prober.remove_target(*ip);
        let sample = signed_ms(reply.at, patched);
        let node = who(&lab, &reply.mac);
        *by_node.entry(node.clone()).or_default() += 1;
        samples.push(sample);
        patch_ms.push(ms(patched - before));
        raw.push(json!({"service": name, "ip": ip.to_string(), "ms": sample,
                        "patch_call_ms": ms(patched - before), "answered_by": node}));
        sleep(pause);
    }
    let s = summary(&samples)?;
    let p = summary(&patch_ms)?;
    let mut table = Table::new(
        "Time from the status patch returning to the first ARP reply (ms)",
        &DIST_HEADER,
    );
    table.row(dist_row("Service address → first ARP reply", &s));
    table.row(dist_row("(the status patch call itself)", &p));
    let mut nodes = Table::new("Which node answered", &["node", "services"]);
    for (node, count) in &by_node {
        nodes.row(vec![node.clone(), count.to_string()]);
    }
    Ok(Section {
        method: format!(
            "Three node namespaces (`eno1` veths on one bridge) run the real `l2announcer agent` \
             (generic XDP, Cilium's default lease timings 15 s / 5 s / 2 s) against the API test \
             kit, which listens on the bridge; one `CiliumL2AnnouncementPolicy` selects every \
             Service's load balancer address on `^eno1$`. {n} LoadBalancer Services are created \
             one after another through the kit's in-process client; each gets its address \
             (`10.50.0.x`) by a merge patch of `status.loadBalancer.ingress`, as the LB-IPAM \
             operator does. From just before the patch, a prober in a client namespace on the \
             same bridge broadcasts an ARP request for the address every {} ms from an AF_PACKET \
             socket and timestamps every reply as it reads it. A sample is the time from the \
             patch call returning to the first reply read. The next Service follows {} ms after \
             the reply.",
            interval.as_millis(),
            pause.as_millis()
        ),
        tables: vec![table, nodes],
        plots: vec![
            Plot {
                file: "announce.svg".into(),
                title: "Service address → first ARP reply".into(),
                unit: "ms".into(),
                kind: PlotKind::Samples(vec![("3 nodes, default timings".into(), samples.clone())]),
            },
            Plot {
                file: "announce-cdf.svg".into(),
                title: "Service address → first ARP reply (CDF)".into(),
                unit: "ms".into(),
                kind: PlotKind::Cdf(vec![("3 nodes, default timings".into(), samples.clone())]),
            },
        ],
        headline: vec![Headline::new(
            "Service address → first ARP reply (p50 / p99)",
            format!("{} / {} ms", fmt(s.p50), fmt(s.p99)),
            "– (no documented Cilium figure)".into(),
            "–".into(),
        )],
        notes: vec![
            format!(
                "The prober asks every {} ms, so a sample includes up to that much waiting for the \
                 next request (half of it on average).",
                interval.as_millis()
            ),
            "The path measured: the kit's watch event to every agent, the best-ranked node \
             creating the lease (one API write over HTTP), then the XDP map entry. The kit is an \
             in-process API server on the same machine, so a real API server's latency (and etcd's \
             write) comes on top."
                .into(),
            "About 50 ms of each sample is the agent's deliberate coalescing of watch events \
             into one selection (`agent/src/k8s/controller.rs`), which keeps a burst of changes \
             from causing a burst of decisions."
                .into(),
            "Services come one at a time; a burst of new Services is not measured here.".into(),
        ],
        raw: json!({"samples_ms": raw, "probe_requests_sent": prober.sent()}),
        ..Section::default()
    })
}

// ---------------------------------------------------------------------------------------------

/// One cell of the takeover benchmark.
struct Cell {
    label: String,
    samples: Vec<f64>,
    trials: usize,
    /// Addresses that, in a trial, were answered by more than one MAC after the handover.
    dual: usize,
}

/// Takeover after a graceful stop and after kill -9 of the holder, at two timing sets.
pub fn takeover(ctx: &Ctx) -> anyhow::Result<Section> {
    let trials = ctx.reps(6, 1);
    let vips = 24;
    let interval = Duration::from_millis(5);
    let mut cells = Vec::new();
    let mut raw = Vec::new();
    for (timing, flags, duration) in [
        ("default 15s/5s/2s", &DEFAULT_TIMINGS[..], 15),
        ("fast 3s/1500ms/500ms", &FAST_TIMINGS[..], 3),
    ] {
        let mut graceful = Cell {
            label: format!("SIGTERM, {timing}"),
            samples: Vec::new(),
            trials: 0,
            dual: 0,
        };
        let mut kill = Cell {
            label: format!("kill -9, {timing}"),
            samples: Vec::new(),
            trials: 0,
            dual: 0,
        };
        takeover_lab(
            flags,
            Duration::from_secs(duration),
            trials,
            vips,
            interval,
            &mut graceful,
            &mut kill,
            &mut raw,
        )?;
        cells.push(graceful);
        cells.push(kill);
    }
    let mut table = Table::new(
        "Takeover: from the signal to the first ARP reply from another node (ms)",
        &[
            "",
            "trials",
            "n",
            "p50",
            "p99",
            "min",
            "max",
            "two answerers",
        ],
    );
    let mut summaries = Vec::new();
    for c in &cells {
        let s = summary(&c.samples)?;
        table.row(vec![
            c.label.clone(),
            c.trials.to_string(),
            s.n.to_string(),
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.min),
            fmt(s.max),
            c.dual.to_string(),
        ]);
        summaries.push(s);
    }
    let dual_total: usize = cells.iter().map(|c| c.dual).sum();
    let secs = |x: f64| format!("{:.2} s", x / 1000.0);
    let (term, killed) = (&summaries[0], &summaries[1]);
    let headline = vec![
        Headline::new(
            "Takeover after SIGTERM, default timings (p50 / p99)",
            format!("{} / {}", secs(term.p50), secs(term.p99)),
            "Cilium: the next candidate poll, ≈ 2–4.4 s (reference §2.8)".into(),
            if term.p99 < 2000.0 {
                "p99 below Cilium's shortest".into()
            } else {
                "–".into()
            },
        ),
        Headline::new(
            "Takeover after kill -9, default timings (p50 / p99)",
            format!("{} / {}", secs(killed.p50), secs(killed.p99)),
            "Cilium docs: 10–20 s window (reference §2.8)".into(),
            "both bound by the 15 s lease duration".into(),
        ),
    ];
    let series = |kill: bool| -> Vec<(String, Vec<f64>)> {
        cells
            .iter()
            .filter(|c| c.label.starts_with("kill") == kill)
            .map(|c| (c.label.clone(), c.samples.clone()))
            .collect()
    };
    Ok(Section {
        method: format!(
            "Three node namespaces run the real agent (generic XDP) against the API test kit, \
             with {vips} LoadBalancer Services (addresses `10.60.0.x`) selected on `eno1`. Two \
             lease timing sets: Cilium's defaults (duration 15 s, renew deadline 5 s, retry \
             period 2 s) and the test lab's fast ones (3 s / 1500 ms / 500 ms); a fresh lab for \
             each. A trial: wait until every address has a lease holder, pick the node holding \
             the most, probe its addresses from a client namespace (broadcast ARP request for \
             each every {} ms, every reply timestamped) until the holder answers each, then send \
             SIGTERM (and wait for the exit) or SIGKILL to its agent. Each of its addresses gives \
             one sample: the time from the signal to the first ARP reply from another node's MAC. \
             Then the agent is restarted (it takes nothing back: held leases are not moved) and \
             probing goes on for 1 s more; an address whose answers, consecutive repeats folded, \
             are more than [old holder, new holder] counts under \"two answerers\". Trials \
             alternate SIGTERM and kill -9; {trials} of each per timing set.",
            interval.as_millis()
        ),
        tables: vec![table],
        plots: vec![
            Plot {
                file: "takeover-sigterm.svg".into(),
                title: "Takeover after SIGTERM of the holder".into(),
                unit: "ms".into(),
                kind: PlotKind::Samples(series(false)),
            },
            Plot {
                file: "takeover-kill.svg".into(),
                title: "Takeover after kill -9 of the holder".into(),
                unit: "ms".into(),
                kind: PlotKind::Samples(series(true)),
            },
        ],
        headline,
        notes: vec![
            format!(
                "Addresses answered by more than one MAC after the handover, over all trials: \
                 {dual_total}."
            ),
            "What the design predicts: on SIGTERM the agent removes its XDP entries, then \
             releases its leases; a free lease is taken at once by the best-ranked remaining \
             node, and by a node ranked k after k × retry period / 2. The node that last held \
             a lease (released or expired) does not count in that ranking, so the next node \
             takes it at once: tens of ms. After kill -9 the others wait for the lease to \
             expire, judged from when they last saw it renewed (every 5 s at the defaults, \
             750 ms at the fast timings): duration − time since the last renewal, about \
             10–15 s at the defaults and 2.25–3 s at the fast ones."
                .into(),
            "The samples of one trial share one signal and so are not independent: the trials \
             column says how many independent events they come from."
                .into(),
            "Cilium's figures are from its documentation and client-go's cadence as summarised \
             in the project's reference (shared/reference/cilium.md §2.8), not measured here: \
             the documented failover window is leaseDuration − renewDeadline to leaseDuration + \
             renewDeadline (10–20 s at the defaults); a graceful stop releases the lease and \
             another node takes it at its next poll (about 2–4.4 s at the defaults)."
                .into(),
            format!(
                "The prober asks every {} ms per address: a sample includes up to that much.",
                interval.as_millis()
            ),
        ],
        raw: json!({"trials": raw}),
        ..Section::default()
    })
}

#[allow(clippy::too_many_arguments)]
fn takeover_lab(
    timings: &[&str],
    duration: Duration,
    trials: usize,
    vips: usize,
    interval: Duration,
    graceful: &mut Cell,
    kill: &mut Cell,
    raw: &mut Vec<Value>,
) -> anyhow::Result<()> {
    let mut lab = Lab::new(3, 20_000)?;
    lab.start_all(timings);
    let ips = addresses([10, 60], vips);
    let services: Vec<(String, Ipv4Addr)> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (format!("takeover-{i}"), *ip))
        .collect();
    lab.create_services(&services)?;
    let prober = Prober::start(&lab.client_ns, "c1", CLIENT_ADDR, interval);
    for t in 0..trials * 2 {
        let is_graceful = t % 2 == 0;
        lab.wait_held(&ips, Duration::from_secs(60))?;
        sleep(Duration::from_secs(1));
        let holders = lab.holders()?;
        let mut counts = BTreeMap::<String, usize>::new();
        for ip in &ips {
            *counts.entry(holders[ip].clone()).or_default() += 1;
        }
        let victim = counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(name, _)| name.clone())
            .ok_or_else(|| anyhow::anyhow!("no holders"))?;
        let v = lab
            .node_index(&victim)
            .ok_or_else(|| anyhow::anyhow!("holder {victim} is no node"))?;
        let affected: Vec<Ipv4Addr> = ips
            .iter()
            .filter(|ip| holders[*ip] == victim)
            .copied()
            .collect();
        let old_mac = lab.nodes[v].mac;
        prober.clear();
        prober.set_targets(&affected);
        let probing = Instant::now();
        let answered = l2announcer_tests::eventually(Duration::from_secs(10), || {
            affected
                .iter()
                .all(|ip| prober.first(*ip, probing, |m| *m == old_mac).is_some())
        });
        anyhow::ensure!(
            answered,
            "trial {t}: not every address held by {victim} is answered by it"
        );
        let agent = lab.nodes[v]
            .agent
            .take()
            .ok_or_else(|| anyhow::anyhow!("{victim} has no agent"))?;
        let signalled = Instant::now();
        if is_graceful {
            agent.stop();
        } else {
            let mut agent = agent;
            agent.child.kill()?;
            agent.child.wait()?;
        }
        let deadline = signalled + duration + Duration::from_secs(15);
        let firsts = loop {
            let firsts: Vec<Option<crate::probe::Reply>> = affected
                .iter()
                .map(|ip| prober.first(*ip, signalled, |m| *m != old_mac))
                .collect();
            if firsts.iter().all(Option::is_some) {
                break firsts.into_iter().flatten().collect::<Vec<_>>();
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "trial {t}: {} of {} addresses not taken over within {:?}",
                firsts.iter().filter(|f| f.is_none()).count(),
                affected.len(),
                deadline - signalled
            );
            sleep(Duration::from_millis(10));
        };
        lab.start_agent(v, timings);
        sleep(Duration::from_secs(1));
        let replies = prober.replies();
        prober.set_targets(&[]);
        let cell = if is_graceful {
            &mut *graceful
        } else {
            &mut *kill
        };
        cell.trials += 1;
        let mut per_ip = Vec::new();
        for (ip, first) in affected.iter().zip(&firsts) {
            let sample = signed_ms(first.at, signalled);
            let seq = sequence(&replies, *ip);
            let two = seq.len() > 2;
            if two {
                cell.dual += 1;
            }
            cell.samples.push(sample);
            per_ip.push(json!({
                "ip": ip.to_string(), "ms": sample, "new_holder": who(&lab, &first.mac),
                "answer_sequence": seq.iter().map(|m| who(&lab, m)).collect::<Vec<_>>(),
            }));
        }
        raw.push(json!({"cell": cell.label, "trial": t, "stopped": victim, "addresses": per_ip}));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Cilium's lease API cost for `services` on `nodes` candidates at retry period `retry` (s),
/// from client-go's cadence (reference §2.7, §2.10): (PUT/s, GET/s, LIST/s).
fn cilium_cost(services: f64, nodes: f64, retry: f64) -> (f64, f64, f64) {
    let put = services / retry;
    // Non-holders GET every retryPeriod × U[1, 2.2): mean 1.6 × retryPeriod.
    let get = services * (nodes - 1.0) / (1.6 * retry);
    // leaseGC: one LIST of the lease namespace per node per minute.
    let list = nodes / 60.0;
    (put, get, list)
}

/// API requests per second caused by leases: 100 services on 10 nodes at default timings.
pub fn api_cost(ctx: &Ctx) -> anyhow::Result<Section> {
    let nodes = 10;
    let services = 100;
    // A multiple of the 5 s renew interval (renewals of leases taken together come in bursts).
    let window = Duration::from_secs(ctx.reps(60, 15) as u64);
    let settle = Duration::from_secs(ctx.reps(10, 5) as u64);
    let mut lab = Lab::new(nodes, 20_000)?;
    lab.start_all(&DEFAULT_TIMINGS);
    let ips = addresses([10, 70], services);
    let svcs: Vec<(String, Ipv4Addr)> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (format!("cost-{i}"), *ip))
        .collect();
    lab.create_services(&svcs)?;
    lab.wait_held(&ips, Duration::from_secs(60))?;
    sleep(settle);
    let before = lab.holders()?;
    let audit = lab.kit().audit();
    audit.clear();
    let started = Instant::now();
    sleep(window);
    let counts = audit.by_user_verb_resource();
    let elapsed = started.elapsed().as_secs_f64();
    let after = lab.holders()?;
    let moved = ips
        .iter()
        .filter(|ip| before.get(ip) != after.get(ip))
        .count();

    let node_names: Vec<String> = (1..=nodes).map(node_name).collect();
    let mut by_verb = BTreeMap::<String, u64>::new();
    let mut by_node = BTreeMap::<String, (u64, u64)>::new(); // (lease requests, all requests)
    let mut other = BTreeMap::<String, u64>::new();
    for ((user, verb, resource), n) in &counts {
        if !node_names.contains(user) {
            continue;
        }
        let e = by_node.entry(user.clone()).or_default();
        e.1 += n;
        if resource == "leases" {
            *by_verb.entry(verb.clone()).or_default() += n;
            e.0 += n;
        } else {
            *other.entry(format!("{verb} {resource}")).or_default() += n;
        }
    }
    let lease_total: u64 = by_verb.values().sum();
    let ours = lease_total as f64 / elapsed;
    let (put, get, list) = cilium_cost(services as f64, nodes as f64, 2.0);
    let cilium = put + get + list;
    let docs = services as f64 / 5.0;

    let mut verbs = Table::new(
        &format!(
            "Lease requests by the agents in {elapsed:.1} s ({services} services, {nodes} nodes)"
        ),
        &["verb", "requests", "per second", "per address per second"],
    );
    for (verb, n) in &by_verb {
        let rate = *n as f64 / elapsed;
        verbs.row(vec![
            verb.clone(),
            n.to_string(),
            fmt(rate),
            fmt(rate / services as f64),
        ]);
    }
    verbs.row(vec![
        "**all**".into(),
        lease_total.to_string(),
        fmt(ours),
        fmt(ours / services as f64),
    ]);
    let mut cmp = Table::new(
        "Beside Cilium for the same case (computed, not measured)",
        &["", "requests per second", "per address per second"],
    );
    cmp.row(vec![
        "l2announcer, measured".into(),
        fmt(ours),
        fmt(ours / services as f64),
    ]);
    cmp.row(vec![
        "Cilium: holders' PUT (100 leases / 2 s retry period)".into(),
        fmt(put),
        fmt(put / services as f64),
    ]);
    cmp.row(vec![
        "Cilium: candidates' GET (100 × 9 / (1.6 × 2 s))".into(),
        fmt(get),
        fmt(get / services as f64),
    ]);
    cmp.row(vec![
        "Cilium: leaseGC LIST (10 nodes / 60 s)".into(),
        fmt(list),
        fmt(list / services as f64),
    ]);
    cmp.row(vec![
        "**Cilium, total**".into(),
        fmt(cilium),
        fmt(cilium / services as f64),
    ]);
    cmp.row(vec![
        "Cilium's docs formula: services / renewDeadline".into(),
        fmt(docs),
        fmt(docs / services as f64),
    ]);
    let mut per_node = Table::new(
        "Per node (requests per second)",
        &["node", "leases held", "lease requests/s", "all requests/s"],
    );
    for name in &node_names {
        let (l, a) = by_node.get(name).copied().unwrap_or_default();
        let held = after.values().filter(|h| *h == name).count();
        per_node.row(vec![
            name.clone(),
            held.to_string(),
            fmt(l as f64 / elapsed),
            fmt(a as f64 / elapsed),
        ]);
    }
    let mut bars: Vec<(String, f64)> = by_verb
        .iter()
        .map(|(v, n)| (format!("l2announcer {v}"), *n as f64 / elapsed))
        .collect();
    bars.push(("l2announcer, all lease requests".into(), ours));
    bars.push(("Cilium PUT (computed)".into(), put));
    bars.push(("Cilium GET (computed)".into(), get));
    bars.push(("Cilium total (computed)".into(), cilium));
    bars.push(("Cilium docs formula".into(), docs));
    Ok(Section {
        method: format!(
            "{nodes} node namespaces run the real agent at Cilium's default lease timings (15 s / \
             5 s / 2 s), each with its own token so that the API test kit's audit log counts \
             requests per node; {services} LoadBalancer Services with addresses, all selected on \
             `eno1` of every node (so every node is a candidate for every address). After every \
             address has a lease holder and {} s more, the audit counters are cleared and read \
             again {} s later: every request by the agents, by verb and resource (a watch counts \
             once, when it is opened). Cilium's cost for the same case is computed from client-go's \
             cadence as the project's reference gives it (shared/reference/cilium.md §2.7, \
             §2.10): the holder of a lease PUTs once per retry period (2 s), every other \
             candidate GETs once per retry period × U[1, 2.2) (mean 1.6 × 2 s), and each node \
             LISTs the leases once a minute; its documentation's sizing formula \
             (services / renewDeadline) is shown as what the docs claim.",
            settle.as_secs(),
            window.as_secs()
        ),
        tables: vec![verbs, cmp, per_node],
        plots: vec![Plot {
            file: "api-cost.svg".into(),
            title: format!("Lease API requests per second, {services} services on {nodes} nodes"),
            unit: "requests/s".into(),
            kind: PlotKind::Bars(bars),
        }],
        headline: vec![Headline::new(
            "Lease API requests/s, 100 services on 10 nodes, default timings",
            format!("{} req/s", fmt(ours)),
            format!("Cilium ≈ {} req/s (computed from its cadence)", fmt(cilium)),
            format!("{:.0}× fewer", cilium / ours.max(f64::MIN_POSITIVE)),
        )],
        notes: vec![
            format!(
                "Leases that changed holder during the window: {moved} (the window is steady state)."
            ),
            format!(
                "Other requests by the agents in the window: {}.",
                if other.is_empty() {
                    "none".to_string()
                } else {
                    other
                        .iter()
                        .map(|(k, n)| format!("{k}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            "Only holders write: each renews every min(duration / 3, (duration − deadline) / 2) \
             = 5 s at the default timings, and candidates watch the leases instead of polling \
             them. That the measured rate equals Cilium's docs formula (services / renewDeadline) \
             is a coincidence of the default timings (5 s renew interval = 5 s deadline)."
                .into(),
            "Cilium's figure is computed, not measured: Cilium cannot run here. Its docs' formula \
             (services / renewDeadline = 20 QPS) understates its own cost because client-go's \
             leader renews every retry period, not every renew deadline (reference §2.10)."
                .into(),
        ],
        raw: json!({
            "window_s": elapsed,
            "counts": counts.iter().map(|((u, v, r), n)| json!({"user": u, "verb": v, "resource": r, "count": n})).collect::<Vec<_>>(),
            "cilium_computed": {"put_per_s": put, "get_per_s": get, "list_per_s": list, "docs_formula_per_s": docs},
            "holders_moved": moved,
        }),
        ..Section::default()
    })
}

// ---------------------------------------------------------------------------------------------

/// Lease spread: the most and least addresses one node holds, 100 services on 5 nodes.
pub fn spread(ctx: &Ctx) -> anyhow::Result<Section> {
    let nodes = 5;
    let services = 100;
    let reps = ctx.reps(5, 2);
    let mut lab = Lab::new(nodes, 20_000)?;
    lab.start_all(&DEFAULT_TIMINGS);
    sleep(Duration::from_secs(1));
    let node_names: Vec<String> = (1..=nodes).map(node_name).collect();
    let mut header: Vec<&str> = vec!["round"];
    header.extend(node_names.iter().map(String::as_str));
    header.extend(["max", "min"]);
    let mut table = Table::new(
        &format!("Addresses held per node ({services} services, {nodes} nodes; even = 20)"),
        &header,
    );
    let (mut maxes, mut mins) = (Vec::new(), Vec::new());
    let mut bars = Vec::new();
    let mut raw = Vec::new();
    let (mut leftovers, mut left_notes) = (Vec::new(), Vec::new());
    // Seconds from the deletion of a round's Services until none of their leases is left.
    let mut clean_after = Vec::new();
    for r in 0..reps {
        let ips = addresses([10, 80 + r as u8], services);
        let svcs: Vec<(String, Ipv4Addr)> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spread-{r}-{i}"), *ip))
            .collect();
        lab.create_services(&svcs)?;
        lab.wait_held(&ips, Duration::from_secs(60))?;
        // A moment more: a lease held now is counted as it stays.
        sleep(Duration::from_secs(1));
        let holders = lab.holders()?;
        let counts: Vec<usize> = node_names
            .iter()
            .map(|n| ips.iter().filter(|ip| holders.get(ip) == Some(n)).count())
            .collect();
        let (max, min) = (
            *counts.iter().max().unwrap_or(&0),
            *counts.iter().min().unwrap_or(&0),
        );
        maxes.push(max as f64);
        mins.push(min as f64);
        let mut row = vec![(r + 1).to_string()];
        row.extend(counts.iter().map(|c| c.to_string()));
        row.extend([max.to_string(), min.to_string()]);
        table.row(row);
        for (n, c) in node_names.iter().zip(&counts) {
            bars.push((format!("round {} {n}", r + 1), *c as f64));
        }
        raw.push(json!({"round": r + 1, "per_node": node_names.iter().zip(&counts).map(|(n, c)| json!({"node": n, "held": c})).collect::<Vec<_>>()}));
        // Clean slate for the next round: the Services go, their leases are deleted.
        lab.delete_services()?;
        let deleted_at = Instant::now();
        let mut left = Vec::new();
        // A lease whose release failed is deleted by the holder's periodic garbage collection,
        // once per lease duration (15 s): wait for two.
        let gone = l2announcer_tests::eventually(Duration::from_secs(30), || {
            left = lab
                .holders()
                .map(|h| {
                    h.into_iter()
                        .filter(|(ip, _)| ips.contains(ip))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            left.is_empty()
        });
        clean_after.push(deleted_at.elapsed().as_secs_f64());
        if !gone {
            // Leases of deleted Services left with a holder: are they still being renewed, and
            // does the holder still announce the address? Reported, not fatal: the next round
            // counts only its own addresses.
            let before = lab.renew_times()?;
            sleep(Duration::from_secs(6));
            let after = lab.renew_times()?;
            // Renewed: still there, with a new renew time (a lease deleted meanwhile is not).
            let renewed = left
                .iter()
                .filter(|(ip, _)| {
                    matches!((before.get(ip), after.get(ip)), (Some(b), Some(a)) if a != b)
                })
                .count();
            let announced = left
                .iter()
                .filter(|(ip, holder)| {
                    lab.node_index(holder)
                        .and_then(|i| lab.nodes[i].agent.as_ref())
                        .is_some_and(|a| {
                            a.status()["announcements"]
                                .as_array()
                                .is_some_and(|v| v.iter().any(|e| e["ip"] == ip.to_string()))
                        })
                })
                .count();
            leftovers.push(json!({
                "round": r + 1,
                "leases": left.iter().map(|(ip, h)| json!({"ip": ip.to_string(), "holder": h})).collect::<Vec<_>>(),
                "still_renewed": renewed,
                "still_announced": announced,
            }));
            left_notes.push(format!(
                "Round {}: {} lease(s) of deleted Services still had a holder 30 s after the \
                 deletion ({}); {renewed} of them were still being renewed 6 s later, and \
                 {announced} still announced by the holder.",
                r + 1,
                left.len(),
                left.iter()
                    .map(|(ip, h)| format!("{ip} by {h}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let max = summary(&maxes)?;
    let min = summary(&mins)?;
    Ok(Section {
        method: format!(
            "{nodes} node namespaces run the real agent (default timings) against the API test \
             kit first; then {services} LoadBalancer Services with addresses come at once (8 \
             concurrent writers), all selected on `eno1` of every node. When every address has \
             a lease holder (and 1 s more) the holders are counted from the leases. Then the \
             Services are deleted (one delete-collection), the benchmark waits up to 30 s for \
             their leases to be gone (any left are reported below), and the next round uses \
             new addresses (`10.(80+r).0.x` in round r), since placement is a hash of address \
             and node. {reps} rounds."
        ),
        tables: vec![table],
        plots: vec![Plot {
            file: "spread.svg".into(),
            title: format!("Addresses held per node, {services} services on {nodes} nodes"),
            unit: "addresses".into(),
            kind: PlotKind::Bars(bars),
        }],
        headline: vec![Headline::new(
            "Most / least of 100 addresses held by one of 5 nodes (median over rounds)",
            format!("{} / {}", fmt(max.p50), fmt(min.p50)),
            "even split: 20 / 20".into(),
            format!("most = {:.2}× even", max.p50 / 20.0),
        )],
        notes: left_notes
            .into_iter()
            .chain([
            format!(
                "Over the rounds: most {}, least {} (median (min–max))",
                fmt_spread(&max),
                fmt_spread(&min)
            ),
            format!(
                "After each round's Services were deleted, all their leases were gone within \
                 {} s (worst round; up to one lease duration is the periodic garbage \
                 collection picking up a release that failed).",
                fmt(clean_after.iter().copied().fold(0.0, f64::max))
            ),
            "Placement is rendezvous hashing of the address over the nodes, so the counts follow \
             a multinomial spread around 20 rather than an exact split. Cilium has no spreading: \
             the first node to ask wins (issues #35395 and #28326; a homelab node won all 18 \
             lease elections after its peers restarted; reference §6). Nothing is measured for \
             Cilium here."
                .into(),
            "All nodes were running when the Services came; addresses held before a node joins \
             are not moved to it (README, Limits)."
                .into(),
        ])
        .collect(),
        raw: json!({"rounds": raw, "leases_left_after_deletion": leftovers, "seconds_until_leases_gone": clean_after}),
        ..Section::default()
    })
}

// ---------------------------------------------------------------------------------------------

/// Agent memory and CPU with 100, 1,000 and 10,000 selected services.
pub fn agent_resources(ctx: &Ctx) -> anyhow::Result<Section> {
    let sizes: &[usize] = if ctx.quick {
        &[100, 1_000]
    } else {
        &[100, 1_000, 10_000]
    };
    // A multiple of the 5 s renew interval: every lease renews the same number of times in it
    // (renewals of leases taken together come in bursts).
    let window = Duration::from_secs(ctx.reps(30, 10) as u64);
    let mut table = Table::new(
        "One node holding every address, default timings",
        &[
            "services",
            "all announced after (s)",
            "RSS (MiB)",
            "peak RSS (MiB)",
            "CPU (% of one core)",
            "API kit CPU (%)",
            "lease requests/s (needed: N / 5 s)",
            "leases lost in the window",
            "XDP entries at the end",
        ],
    );
    let mut rss_bars = Vec::new();
    let mut cpu_bars = Vec::new();
    let mut raw = Vec::new();
    let mut rows = Vec::new();
    let mut unsettled = Vec::new();
    for &n in sizes {
        let mut lab = Lab::new(1, 4 * n + 10_000)?;
        let ips = addresses([10, 90], n);
        let svcs: Vec<(String, Ipv4Addr)> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("res-{i}"), *ip))
            .collect();
        lab.create_services(&svcs)?;
        // From the agent's start (services already there) until every address is in its XDP
        // map (its status). Polled less often for large N: the status reads every map entry.
        let poll = Duration::from_millis(if n > 1_000 { 1_000 } else { 250 });
        let limit = Duration::from_secs(if n > 1_000 { 120 } else { 60 });
        let started = Instant::now();
        lab.start_agent(0, &DEFAULT_TIMINGS);
        let agent = lab.nodes[0].agent.as_ref().expect("agent");
        let count = |agent: &l2announcer_tests::Agent| {
            agent.status()["announcements"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
        };
        let mut most = 0;
        let all_announced = loop {
            let announced = count(agent);
            most = most.max(announced);
            if announced >= n {
                break Some(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > limit {
                break None;
            }
            sleep(poll);
        };
        if all_announced.is_some() {
            lab.wait_held(&ips, Duration::from_secs(60))?;
        }
        sleep(Duration::from_secs(3));
        let agent = lab.nodes[0].agent.as_ref().expect("agent");
        let pid = agent.child.id();
        let lost_before = lost_leases(&agent.log);
        let audit = lab.kit().audit();
        audit.clear();
        let cpu0 = cpu_seconds(pid);
        let kit0 = cpu_seconds(std::process::id());
        let t0 = Instant::now();
        sleep(window);
        let cpu1 = cpu_seconds(pid);
        let kit1 = cpu_seconds(std::process::id());
        let wall = t0.elapsed().as_secs_f64();
        let lease_requests: u64 = audit
            .by_user_verb_resource()
            .iter()
            .filter(|((u, _, r), _)| u == "node-1" && r == "leases")
            .map(|(_, n)| *n)
            .sum();
        let (rss, hwm) = memory_kib(pid);
        let lost = lost_leases(&agent.log).saturating_sub(lost_before);
        let entries = count(agent);
        let cpu_pct = (cpu1 - cpu0) / wall * 100.0;
        let kit_pct = (kit1 - kit0) / wall * 100.0;
        let lease_rate = lease_requests as f64 / wall;
        let label = fmt(n as f64);
        let announced_cell = match all_announced {
            Some(t) => format!("{t:.1}"),
            None => {
                unsettled.push(format!(
                    "{label} services: not all announced within {} s (at most {} at once); \
                     {lost} leases lost in the {} s window",
                    limit.as_secs(),
                    fmt(most as f64),
                    window.as_secs()
                ));
                format!("not within {} s (at most {})", limit.as_secs(), most)
            }
        };
        table.row(vec![
            label.clone(),
            announced_cell,
            fmt(rss as f64 / 1024.0),
            fmt(hwm as f64 / 1024.0),
            fmt(cpu_pct),
            fmt(kit_pct),
            format!("{} ({})", fmt(lease_rate), fmt(n as f64 / 5.0)),
            lost.to_string(),
            entries.to_string(),
        ]);
        rss_bars.push((format!("{label} services: RSS MiB"), rss as f64 / 1024.0));
        cpu_bars.push((format!("{label} services: CPU %"), cpu_pct));
        rows.push((n, rss, cpu_pct, all_announced.is_some()));
        raw.push(json!({
            "services": n, "all_announced_s": all_announced, "most_announced": most,
            "rss_kib": rss, "peak_rss_kib": hwm, "cpu_seconds": cpu1 - cpu0, "window_s": wall,
            "cpu_percent": cpu_pct, "kit_process_cpu_percent": kit_pct,
            "lease_requests": lease_requests, "leases_lost_in_window": lost,
            "xdp_entries_at_end": entries,
        }));
    }
    Ok(Section {
        method: format!(
            "One node namespace runs the real agent (default timings 15 s / 5 s / 2 s, generic \
             XDP) against the API test kit, with N LoadBalancer Services that have addresses and \
             are all selected on `eno1` (N = {}); a fresh lab for each N. The Services exist \
             before the agent starts; \"all announced after\" is from the agent's start until \
             `l2announcer status` lists N entries in the XDP map (polled every 250 ms, every 1 s \
             above 1,000; given up after 60 s, 120 s above 1,000). After every lease is held (or \
             the limit) and 3 s more, over a {} s window: CPU = (utime + stime) delta from \
             /proc/<pid>/stat over the wall time, for the agent and for the benchmark process, \
             which runs the API test kit; RSS and peak RSS (VmRSS, VmHWM) from /proc/<pid>/status \
             at its end; lease requests from the kit's audit log (the window is a multiple of the \
             5 s renew interval, so each held lease renews a fixed number of times in it); leases \
             lost are the agent's `lease lost` log lines.",
            sizes
                .iter()
                .map(|n| fmt(*n as f64))
                .collect::<Vec<_>>()
                .join(", "),
            window.as_secs()
        ),
        tables: vec![table],
        plots: vec![
            Plot {
                file: "agent-rss.svg".into(),
                title: "Agent resident memory by number of services".into(),
                unit: "MiB".into(),
                kind: PlotKind::Bars(rss_bars),
            },
            Plot {
                file: "agent-cpu.svg".into(),
                title: "Agent CPU in steady state by number of services".into(),
                unit: "% of one core".into(),
                kind: PlotKind::Bars(cpu_bars),
            },
        ],
        headline: rows
            .iter()
            .filter(|(n, _, _, _)| *n >= 1_000)
            .map(|(n, rss, cpu, settled)| {
                Headline::new(
                    &format!(
                        "Agent RSS / CPU holding {} addresses, default timings",
                        fmt(*n as f64)
                    ),
                    format!(
                        "{} MiB / {}% of a core{}",
                        fmt(*rss as f64 / 1024.0),
                        fmt(*cpu),
                        if *settled {
                            ""
                        } else {
                            " (did not hold them all: see notes)"
                        }
                    ),
                    "–".into(),
                    "–".into(),
                )
            })
            .collect(),
        notes: unsettled
            .into_iter()
            .chain([
            "One node holds every lease, so this is the holder's cost: renewals every 5 s per \
             lease at the default timings. A node that only watches (a candidate) does less."
                .into(),
            "The XDP maps hold up to 16,384 entries (per family), so 10,000 addresses fit on one node."
                .into(),
            "The RSS includes the loaded BPF object's user-space side only; the kernel memory of \
             the BPF maps is not in RSS."
                .into(),
            "The agent and the API test kit share this machine's cores: at large N the kit's \
             own CPU (a column above) competes with the agent's."
                .into(),
        ])
        .collect(),
        raw: json!({"sizes": raw}),
        ..Section::default()
    })
}

/// The agent's `lease lost` log lines so far.
fn lost_leases(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.contains("lease lost")).count())
        .unwrap_or(0)
}
