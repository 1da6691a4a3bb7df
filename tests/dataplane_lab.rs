//! The real `l2announcer standalone` in a network-namespace lab: a node and clients on veths.
//! Clients ask with arping, ndisc6 and their own kernel; every behaviour is checked in native
//! and generic XDP mode where the mode matters.

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    process::{Command, Stdio},
    time::Duration,
};

use l2announcer_tests::{
    Agent, Netns, PeerXdp, arping, eventually, kernel_resolves, ndisc6, require_root, send_frame,
    unique, veth,
};

const VIP4: &str = "192.0.2.10";
const VIP6: &str = "2001:db8::10";

/// A node and a client on one veth pair. In native mode the client's end runs the pass
/// program, without which native `XDP_TX` on a veth is dropped.
struct Lab {
    node: Netns,
    client: Netns,
    node_if: String,
    client_if: String,
    _peer: Option<PeerXdp>,
}

impl Lab {
    fn new(native: bool) -> Self {
        require_root();
        let node = Netns::new();
        let client = Netns::new();
        let node_if = unique("n");
        let client_if = unique("c");
        veth(
            &node,
            &node_if,
            &["192.0.2.1/24", "2001:db8::1/64"],
            &client,
            &client_if,
            &["192.0.2.2/24", "2001:db8::2/64"],
        );
        let peer = native.then(|| PeerXdp::attach(&client, &client_if));
        Lab {
            node,
            client,
            node_if,
            client_if,
            _peer: peer,
        }
    }

    fn mode(native: bool) -> &'static str {
        if native { "native" } else { "generic" }
    }

    fn start(&self, native: bool, extra: &[&str]) -> Agent {
        let pattern = format!("^{}$", self.node_if);
        let mut args = vec![
            "standalone",
            "--interface",
            &pattern,
            "--ip",
            VIP4,
            "--ip",
            VIP6,
            "--xdp-mode",
            Self::mode(native),
            "--liveness-timeout",
            "2s",
        ];
        args.extend_from_slice(extra);
        Agent::start(&self.node, &args)
    }

    fn node_mac(&self) -> String {
        self.node.mac(&self.node_if)
    }
}

fn answered_by_xdp(native: bool) {
    let lab = Lab::new(native);
    let agent = lab.start(native, &[]);
    let mac = lab.node_mac();
    assert_eq!(
        arping(&lab.client, &lab.client_if, VIP4, 2),
        vec![mac.clone()]
    );
    assert_eq!(ndisc6(&lab.client, &lab.client_if, VIP6), Some(mac.clone()));
    assert_eq!(
        kernel_resolves(&lab.client, &lab.client_if, VIP4.parse().unwrap()),
        Some(mac.clone()),
        "the client's kernel resolves the IPv4 VIP"
    );
    assert_eq!(
        kernel_resolves(&lab.client, &lab.client_if, VIP6.parse::<IpAddr>().unwrap()),
        Some(mac.clone()),
        "the client's kernel accepts our NA"
    );
    let status = agent.status();
    assert_eq!(status["interfaces"][0]["xdp_mode"], Lab::mode(native));
    let replies: u64 = status["announcements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["replies"].as_u64().unwrap())
        .sum();
    assert!(replies >= 4, "replies counted per entry: {status}");
    // The solicited-node group of the IPv6 VIP is joined on the interface (real NICs filter
    // multicast they have not joined).
    let maddr = lab
        .node
        .sh(&["ip", "-6", "maddr", "show", "dev", &lab.node_if]);
    assert!(
        String::from_utf8_lossy(&maddr.stdout).contains("ff02::1:ff00:10"),
        "solicited-node group joined"
    );
    // The node's kernel has neither VIP: every answer came from XDP.
    let addrs = lab.node.sh(&["ip", "addr"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(!addrs.contains(VIP4) && !addrs.contains(VIP6));
    assert!(agent.stop(), "clean exit on SIGTERM");
    assert!(
        arping(&lab.client, &lab.client_if, VIP4, 1).is_empty(),
        "nothing answers after a graceful stop"
    );
}

#[test]
fn arp_and_ndp_answered_generic() {
    answered_by_xdp(false);
}

#[test]
fn arp_and_ndp_answered_native() {
    answered_by_xdp(true);
}

#[test]
fn an_unselected_interface_stays_silent() {
    let lab = Lab::new(false);
    // A second client on a second node interface that the pattern does not select.
    let other = Netns::new();
    let other_node_if = unique("x");
    let other_if = unique("o");
    veth(
        &lab.node,
        &other_node_if,
        &["192.0.2.129/25"],
        &other,
        &other_if,
        &["192.0.2.130/25"],
    );
    let _agent = lab.start(false, &[]);
    assert_eq!(arping(&lab.client, &lab.client_if, VIP4, 1).len(), 1);
    assert!(
        arping(&other, &other_if, VIP4, 2).is_empty(),
        "not selected: silent"
    );
    assert_eq!(ndisc6(&other, &other_if, VIP6), None);
}

#[test]
fn killing_the_agent_stops_all_answers() {
    for native in [false, true] {
        let lab = Lab::new(native);
        let mut agent = lab.start(native, &[]);
        assert_eq!(arping(&lab.client, &lab.client_if, VIP4, 1).len(), 1);
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
        assert!(
            arping(&lab.client, &lab.client_if, VIP4, 2).is_empty(),
            "kill -9 leaves nothing answering ({})",
            Lab::mode(native)
        );
        assert_eq!(ndisc6(&lab.client, &lab.client_if, VIP6), None);
    }
}

#[test]
fn a_stale_heartbeat_stops_all_answers() {
    let lab = Lab::new(false);
    let agent = lab.start(false, &[]);
    assert_eq!(arping(&lab.client, &lab.client_if, VIP4, 1).len(), 1);
    // A hung agent: stopped, its maps intact, its program attached.
    agent.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2500));
    let silent = arping(&lab.client, &lab.client_if, VIP4, 2).is_empty();
    let ndp_silent = ndisc6(&lab.client, &lab.client_if, VIP6).is_none();
    agent.signal(libc::SIGCONT);
    assert!(silent && ndp_silent, "stale heartbeat: nothing answered");
    assert!(
        eventually(Duration::from_secs(5), || arping(
            &lab.client,
            &lab.client_if,
            VIP4,
            1
        )
        .len()
            == 1),
        "answers again once the heartbeat is fresh"
    );
}

#[test]
fn a_removed_vip_stops_being_answered() {
    let lab = Lab::new(false);
    let config = std::env::temp_dir().join(format!("{}.yaml", unique("l2cfg")));
    let write = |ips: &str| {
        let mut f = fs::File::create(&config).unwrap();
        write!(
            f,
            "groups:\n  - interfaces: ['^{}$']\n    ips: [{ips}]\n",
            lab.node_if
        )
        .unwrap();
    };
    write(&format!("{VIP4}, '192.0.2.11'"));
    let path = config.to_string_lossy().into_owned();
    let agent = Agent::start(
        &lab.node,
        &["standalone", "--config", &path, "--xdp-mode", "generic"],
    );
    assert_eq!(
        arping(&lab.client, &lab.client_if, "192.0.2.11", 1).len(),
        1
    );
    write(VIP4);
    agent.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || arping(
            &lab.client,
            &lab.client_if,
            "192.0.2.11",
            1
        )
        .is_empty()),
        "removed VIP no longer answered"
    );
    assert_eq!(
        arping(&lab.client, &lab.client_if, VIP4, 1).len(),
        1,
        "the other stays"
    );
    let _ = fs::remove_file(&config);
}

#[test]
fn gratuitous_arp_and_na_are_sent_on_takeover() {
    let lab = Lab::new(false);
    let capture = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client.name,
            "tcpdump",
            "-l",
            "-nn",
            "-e",
            "-i",
        ])
        .arg(&lab.client_if)
        .args(["arp or icmp6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1000));
    let agent = lab.start(false, &["--garp-count", "3", "--garp-interval", "300ms"]);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(capture.id() as i32, libc::SIGINT) };
    let out = capture.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = lab.node_mac();
    let garps = text
        .lines()
        .filter(|l| l.contains(&mac) && l.contains(&format!("who-has {VIP4} tell {VIP4}")))
        .count();
    let nas = text
        .lines()
        .filter(|l| l.contains(&mac) && l.contains("neighbor advertisement") && l.contains(VIP6))
        .count();
    assert_eq!(garps, 3, "three gratuitous ARPs:\n{text}");
    assert_eq!(nas, 3, "three unsolicited NAs:\n{text}");
    let status = agent.status();
    assert_eq!(status["interfaces"][0]["gratuitous_sent"], 6);
}

#[test]
fn another_mac_claiming_the_vip_is_counted_as_a_conflict() {
    let lab = Lab::new(false);
    let agent = lab.start(false, &[]);
    // The client claims both VIPs with a gratuitous ARP and an unsolicited NA of its own.
    let client_mac = lab.client.mac(&lab.client_if);
    let mac_bytes: Vec<u8> = client_mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mac: [u8; 6] = mac_bytes.try_into().unwrap();
    for ip in [VIP4, VIP6] {
        let frame = l2announcer::announce::announcement(mac, ip.parse().unwrap()).unwrap();
        send_frame(&lab.client, &lab.client_if, frame);
    }
    assert!(eventually(Duration::from_secs(3), || {
        let s = agent.status();
        s["announcements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["conflicts"].as_u64() == Some(1) && a["conflict_mac"] == client_mac)
    }));
    let metrics = lab.node.sh(&[
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/9470; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
    ]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains(&format!(
            "l2announcer_conflicts_total{{ip=\"{VIP4}\",interface=\"{}\"}} 1",
            lab.node_if
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("l2announcer_xdp_packets_total"),
        "{metrics}"
    );
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure() {
    require_root();
    let ns = Netns::new();
    for (args, expect) in [
        (
            vec!["standalone", "--interface", "^nosuchif$", "--ip", VIP4],
            "matches no interface",
        ),
        (
            vec!["standalone", "--interface", "lo", "--ip", "300.1.2.3"],
            "invalid value",
        ),
        (
            vec!["standalone", "--interface", "(", "--ip", VIP4],
            "interface pattern",
        ),
        (vec!["standalone"], "nothing to announce"),
    ] {
        let out = ns.run(
            &[l2announcer_tests::binary().to_str().unwrap()]
                .into_iter()
                .chain(args.iter().copied())
                .collect::<Vec<_>>(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn links_are_followed_mac_changes_new_and_removed_interfaces() {
    let lab = Lab::new(false);
    // The pattern also matches interfaces that do not exist yet.
    let pattern = format!("^({}|late0)$", lab.node_if);
    let agent = Agent::start(
        &lab.node,
        &[
            "standalone",
            "--interface",
            &pattern,
            "--ip",
            VIP4,
            "--xdp-mode",
            "generic",
        ],
    );
    assert_eq!(
        arping(&lab.client, &lab.client_if, VIP4, 1),
        vec![lab.node_mac()]
    );
    // A MAC change: answers follow it.
    lab.node.sh(&[
        "ip",
        "link",
        "set",
        "dev",
        &lab.node_if,
        "address",
        "02:00:00:00:be:ef",
    ]);
    assert!(
        eventually(Duration::from_secs(5), || arping(
            &lab.client,
            &lab.client_if,
            VIP4,
            1
        ) == vec![
            "02:00:00:00:be:ef".to_owned()
        ]),
        "answers with the new MAC"
    );
    // An interface that appears later and matches: announced there too.
    let late_client = Netns::new();
    veth(
        &lab.node,
        "late0",
        &["192.0.2.201/24"],
        &late_client,
        "lc0",
        &["192.0.2.202/24"],
    );
    let late_mac = lab.node.mac("late0");
    assert!(
        eventually(Duration::from_secs(5), || arping(
            &late_client,
            "lc0",
            VIP4,
            1
        ) == vec![late_mac.clone()]),
        "a new matching interface is announced on"
    );
    // Down: not announced there any more; removed: forgotten without trouble.
    lab.node.sh(&["ip", "link", "set", "late0", "down"]);
    assert!(eventually(Duration::from_secs(5), || {
        agent.status()["interfaces"].as_array().unwrap().len() == 1
    }));
    lab.node.sh(&["ip", "link", "del", "late0"]);
    assert_eq!(arping(&lab.client, &lab.client_if, VIP4, 1).len(), 1);
}
