//! `cargo xtask demo`: a node and a client in network namespaces on a veth pair; the node runs
//! `l2announcer standalone` for an IPv4 and an IPv6 VIP; the client checks what a network
//! engineer would: arping and ndisc6 answered with the node's MAC, its own kernel's neighbour
//! table, then the agent's status and metrics. Everything is removed at the end, on error and
//! on Ctrl-C.

use std::{
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::util::{self, step};

const NODE: &str = "l2demo-node";
const CLIENT: &str = "l2demo-client";
const NODE_IF: &str = "l2demo-n";
const CLIENT_IF: &str = "l2demo-c";
const VIP4: &str = "192.0.2.10";
const VIP6: &str = "2001:db8::10";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// The lab; dropping it removes the namespaces (and with them the veths and the agent's XDP).
struct Lab {
    agent: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
            let _ = agent.wait();
        }
        for ns in [NODE, CLIENT] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        eprintln!("\ndemo: lab removed");
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    util::run("ip", args)
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stderr(Stdio::inherit())
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("({e})"),
    }
}

fn show(ns: &str, args: &[&str]) -> String {
    println!("\n$ ip netns exec {ns} {}", args.join(" "));
    let out = in_ns(ns, args);
    print!("{out}");
    out
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    util::require_root("the demo creates network namespaces and loads XDP")?;
    let hold = args.iter().any(|a| a == "--hold");
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };

    step("building l2announcer");
    util::cargo(&["build", "--package", "l2announcer", "--bin", "l2announcer"])?;
    let bin = util::workspace_root()?.join("target/debug/l2announcer");

    step("building the lab: namespaces l2demo-node and l2demo-client on a veth pair");
    for ns in [NODE, CLIENT] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let mut lab = Lab { agent: None };
    ip(&["netns", "add", NODE])?;
    ip(&["netns", "add", CLIENT])?;
    ip(&[
        "link", "add", NODE_IF, "netns", NODE, "type", "veth", "peer", "name", CLIENT_IF, "netns",
        CLIENT,
    ])?;
    for (ns, ifname, v4, v6) in [
        (NODE, NODE_IF, "192.0.2.1/24", "2001:db8::1/64"),
        (CLIENT, CLIENT_IF, "192.0.2.2/24", "2001:db8::2/64"),
    ] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "addr", "add", v4, "dev", ifname])?;
        ip(&["-n", ns, "addr", "add", v6, "dev", ifname, "nodad"])?;
        ip(&["-n", ns, "link", "set", ifname, "up"])?;
    }
    let node_mac = in_ns(NODE, &["cat", &format!("/sys/class/net/{NODE_IF}/address")]);
    let node_mac = node_mac.trim().to_owned();
    println!("node {NODE_IF} has MAC {node_mac}; the VIPs {VIP4} and {VIP6} are on no interface");

    step("starting l2announcer standalone in the node");
    // Generic XDP: on a veth, native-mode XDP_TX only reaches the peer when the peer runs an
    // XDP program too, which a real NIC does not need. The tests cover both modes.
    let cmd = [
        "standalone",
        "--interface",
        &format!("^{NODE_IF}$"),
        "--ip",
        VIP4,
        "--ip",
        VIP6,
        "--xdp-mode",
        "generic",
    ];
    println!("$ ip netns exec {NODE} l2announcer {}", cmd.join(" "));
    let agent = Command::new("ip")
        .args(["netns", "exec", NODE])
        .arg(&bin)
        .args(cmd)
        .spawn()
        .context("starting l2announcer")?;
    lab.agent = Some(agent);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        check_interrupted()?;
        // Quietly: until it listens, `status` says it cannot reach it.
        let status = Command::new("ip")
            .args(["netns", "exec", NODE])
            .arg(&bin)
            .args(["status", "-o", "json"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if status.contains("\"ready\": true") {
            break;
        }
        if Instant::now() > deadline {
            bail!("l2announcer did not become ready");
        }
        thread::sleep(Duration::from_millis(200));
    }
    thread::sleep(Duration::from_millis(300));

    step("from the client: who has the VIPs?");
    check_interrupted()?;
    let arp = show(CLIENT, &["arping", "-c", "3", "-I", CLIENT_IF, VIP4]);
    check_interrupted()?;
    let nd = show(CLIENT, &["ndisc6", "-1", VIP6, CLIENT_IF]);
    check_interrupted()?;

    step("the client's own kernel resolves them (ping, then its neighbour table)");
    let _ = in_ns(CLIENT, &["ping", "-c", "1", "-W", "1", VIP4]);
    let _ = in_ns(CLIENT, &["ping", "-c", "1", "-W", "1", VIP6]);
    let neigh = show(CLIENT, &["ip", "neigh", "show", "dev", CLIENT_IF]);

    step("what the node says: l2announcer status");
    show(NODE, &[bin.to_str().unwrap_or("l2announcer"), "status"]);

    step("and its metrics (excerpt)");
    let metrics = in_ns(
        NODE,
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9470; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
    );
    for line in metrics.lines().filter(|l| {
        l.starts_with("l2announcer_replies")
            || l.starts_with("l2announcer_xdp_attached")
            || l.starts_with("l2announcer_gratuitous")
            || (l.starts_with("l2announcer_xdp_packets") && !l.ends_with(" 0"))
    }) {
        println!("{line}");
    }

    let mac_lower = node_mac.to_lowercase();
    let ok_arp = arp.to_lowercase().contains(&mac_lower);
    let ok_nd = nd.to_lowercase().contains(&mac_lower);
    let ok_neigh = neigh
        .lines()
        .filter(|l| l.to_lowercase().contains(&mac_lower))
        .count()
        >= 2;
    step("result");
    println!(
        "arping answered by the node's MAC: {}\nndisc6 answered by the node's MAC: {}\nclient kernel resolved both VIPs to it: {}",
        yes(ok_arp),
        yes(ok_nd),
        yes(ok_neigh)
    );
    if hold {
        println!(
            "\nthe lab stays up (try: ip netns exec {CLIENT} arping -I {CLIENT_IF} {VIP4}); Ctrl-C removes it"
        );
        while !INTERRUPTED.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    drop(lab);
    if !(ok_arp && ok_nd && ok_neigh) {
        bail!("the demo did not see every answer it expected");
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}
