//! Kubernetes mode end to end: three node namespaces and a client on two L2 segments
//! (bridges for "eno1" and "eno2"), each node running the real `l2announcer agent` against one
//! API test kit. The client's ARP shows which node answers each VIP.
//!
//! The seed's policies and Services are applied verbatim with kubectl; the Services' load
//! balancer addresses are set in their status as the LB-IPAM operator would (the first
//! address of the seed's pools).

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use kube_testkit::TestKit;
use l2announcer_tests::{
    Agent, ArpProbe, Kubectl, Netns, answer_sequence, arping, eventually, in_netns, require_root,
};

const API_ADDR: &str = "198.51.100.1";
const INTERNAL_VIP: &str = "192.168.3.150";
const PUBLIC_VIP: &str = "192.168.4.150";

/// Fast lease timings so that failover tests take seconds (valid by Cilium's rules).
const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--lease-renew-deadline",
    "1500ms",
    "--lease-retry-period",
    "500ms",
];

const SEED_POLICIES: &str = include_str!("fixtures/seed/policies.yaml");

const SEED_SERVICES: &str = include_str!("fixtures/seed/services.yaml");

struct Node {
    ns: Netns,
    name: String,
    agent: Option<Agent>,
}

/// The lab: a switch namespace with two bridges (the API server listens on the first), three
/// nodes with `eno1` and `eno2` on them, and a client on both.
struct Cluster {
    switch: Netns,
    api: Option<TestKit>,
    kubeconfig: String,
    nodes: Vec<Node>,
    client: Netns,
}

impl Cluster {
    fn new() -> Self {
        require_root();
        let switch = Netns::new();
        for br in ["br1", "br2"] {
            switch.sh(&["ip", "link", "add", br, "type", "bridge"]);
            switch.sh(&["ip", "link", "set", br, "up"]);
        }
        switch.sh(&["ip", "addr", "add", &format!("{API_ADDR}/24"), "dev", "br1"]);
        let api_listen: SocketAddr = format!("{API_ADDR}:0").parse().unwrap();
        // The server threads start inside the switch namespace, so they listen there.
        let api = in_netns(&switch, move || {
            TestKit::builder()
                .listen(api_listen)
                .spawn_blocking()
                .expect("start the API test kit")
        });
        let kubeconfig = api.kubeconfig_path().to_string_lossy().into_owned();
        let mut cluster = Cluster {
            switch,
            api: Some(api),
            kubeconfig,
            nodes: Vec::new(),
            client: Netns::new(),
        };
        for i in 1..=3 {
            let ns = Netns::new();
            cluster.plug(&ns, "eno1", "br1", &format!("198.51.100.{}/24", 10 + i));
            cluster.plug(&ns, "eno2", "br2", &format!("203.0.113.{}/24", 10 + i));
            cluster.nodes.push(Node {
                ns,
                name: format!("node-{i}"),
                agent: None,
            });
        }
        let client = Netns::new();
        cluster.plug(&client, "c1", "br1", "198.51.100.100/24");
        cluster.plug(&client, "c2", "br2", "203.0.113.100/24");
        cluster.client = client;
        cluster.install_crds();
        cluster
    }

    /// A veth from `ns` (named `ifname`) to a bridge of the switch.
    fn plug(&self, ns: &Netns, ifname: &str, bridge: &str, addr: &str) {
        l2announcer_tests::plug(&self.switch, bridge, ns, ifname, addr);
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        Kubectl {
            netns: Some(self.switch.name.clone()),
            kubeconfig: self.kubeconfig.clone().into(),
        }
        .run(args, stdin)
    }

    fn apply(&self, yaml: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(yaml));
    }

    fn install_crds(&self) {
        let crd = serde_json::to_string(&l2announcer_api::l2_policy::crd()).unwrap();
        self.apply(&crd);
        self.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-system\n");
        self.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let labels = if i == 0 {
                "\n  labels:\n    node.kubernetes.io/control-plane: \"\""
            } else {
                ""
            };
            self.apply(&format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}{labels}\n",
                node.name
            ));
        }
    }

    /// Sets a Service's load balancer address, as the LB-IPAM operator does.
    fn set_lb_ip(&self, name: &str, ip: &str) {
        let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#);
        self.kubectl(
            &[
                "patch",
                "service",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        );
    }

    fn start(&mut self, i: usize) {
        self.start_with(i, &TIMINGS);
    }

    /// Starts node `i`'s agent with these lease timing flags.
    fn start_with(&mut self, i: usize, timings: &[&str]) {
        let node = &mut self.nodes[i];
        let mut args = vec![
            "agent",
            "--node-name",
            &node.name,
            "--kubeconfig",
            &self.kubeconfig,
            "--lease-namespace",
            "kube-system",
            "--xdp-mode",
            "generic",
            "--liveness-timeout",
            "2s",
            "--garp-interval",
            "200ms",
        ];
        args.extend_from_slice(timings);
        node.agent = Some(Agent::start(&node.ns, &args));
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    fn mac(&self, i: usize, ifname: &str) -> String {
        self.nodes[i].ns.mac(ifname)
    }

    /// Which node's interface MAC answers `vip` (arping from the client's `ifname`).
    fn answering(&self, client_if: &str, vip: &str, node_if: &str) -> Vec<usize> {
        let macs = arping(&self.client, client_if, vip, 2);
        macs.iter()
            .map(|m| {
                (0..self.nodes.len())
                    .find(|i| self.mac(*i, node_if) == *m)
                    .unwrap_or_else(|| panic!("{m} answered {vip} but is no node's {node_if}"))
            })
            .collect()
    }

    fn wait_single_answer(&self, client_if: &str, vip: &str, node_if: &str) -> usize {
        let mut last = Vec::new();
        let ok = eventually(Duration::from_secs(20), || {
            last = self.answering(client_if, vip, node_if);
            last.len() == 1
        });
        assert!(ok, "{vip}: expected one node to answer, got {last:?}");
        last[0]
    }

    fn lease_holder(&self, vip: &str) -> Option<String> {
        self.lease_holder_named(&l2announcer_k8s_select_name(vip))
    }

    fn lease_holder_named(&self, name: &str) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.switch.name,
                "kubectl",
                "--kubeconfig",
                &self.kubeconfig,
            ])
            .args([
                "-n",
                "kube-system",
                "get",
                "lease",
                &name,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .output()
            .ok()?;
        let holder = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!holder.is_empty()).then_some(holder)
    }
}

fn l2announcer_k8s_select_name(vip: &str) -> String {
    // The lease name is the address with dots (IPv4) or dashes (IPv6): see k8s-select.
    format!("l2announcer-v4-{vip}")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            drop(node.agent.take());
        }
        drop(self.api.take());
    }
}

fn seeded_cluster() -> Cluster {
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    c.apply(SEED_SERVICES);
    c.set_lb_ip("api-internal", INTERNAL_VIP);
    c.set_lb_ip("api-external", PUBLIC_VIP);
    c.start_all();
    c
}

#[test]
fn seed_manifests_one_node_answers_each_vip_on_the_right_interface() {
    let c = seeded_cluster();
    let internal = c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
    // The public policy selects control-plane nodes only: node-1.
    let public = c.wait_single_answer("c2", PUBLIC_VIP, "eno2");
    assert_eq!(public, 0, "only the control-plane node announces on eno2");
    // Nothing answers a VIP on the other segment.
    assert!(arping(&c.client, "c2", INTERNAL_VIP, 1).is_empty());
    assert!(arping(&c.client, "c1", PUBLIC_VIP, 1).is_empty());
    assert_eq!(
        c.lease_holder(INTERNAL_VIP),
        Some(c.nodes[internal].name.clone())
    );
    let conditions = c.kubectl(
        &[
            "get",
            "service",
            "api-internal",
            "-o",
            "jsonpath={.status.conditions}",
        ],
        None,
    );
    assert!(
        conditions.contains("l2announcer.io/Announced")
            && conditions.contains(&c.nodes[internal].name),
        "{conditions}"
    );
}

/// Stops or kills the holder, measures until another node answers, and checks that the
/// client never hears two MACs for the VIP: a prober asks every 50 ms throughout.
fn failover(graceful: bool) {
    let mut c = seeded_cluster();
    let mut times = Vec::new();
    for round in 0..3 {
        let holder = c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
        let old_mac = c.mac(holder, "eno1");
        let probe = ArpProbe::start_answered(&c.client, "c1", INTERNAL_VIP, 30);
        let agent = c.nodes[holder].agent.take().unwrap();
        let started = Instant::now();
        if graceful {
            assert!(agent.stop(), "clean exit");
        } else {
            let mut agent = agent;
            agent.child.kill().unwrap();
            agent.child.wait().unwrap();
        }
        assert!(
            eventually(Duration::from_secs(20), || probe
                .first_other(started, &old_mac)
                .is_some()),
            "round {round}: nobody took over"
        );
        let (at, new_mac) = probe.first_other(started, &old_mac).unwrap();
        times.push(at.duration_since(started));
        // Keep listening a little: the old MAC must not come back.
        std::thread::sleep(Duration::from_millis(500));
        let seq = answer_sequence(&probe.replies());
        assert_eq!(
            seq,
            vec![old_mac.clone(), new_mac.clone()],
            "round {round}: answers {seq:?}"
        );
        drop(probe);
        c.start(holder);
    }
    times.sort();
    eprintln!(
        "takeover after {} (lease 3s, retry 500ms), sorted: {:?}",
        if graceful { "SIGTERM" } else { "kill -9" },
        times
    );
}

#[test]
fn graceful_stop_of_the_holder_moves_the_vip() {
    failover(true);
}

#[test]
fn kill_of_the_holder_moves_the_vip_after_lease_expiry() {
    failover(false);
}

/// The node that answers a VIP, waiting until exactly `want` answers (by index).
fn wait_answer_is(c: &Cluster, vip: &str, want: Option<usize>) {
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(20), || {
        last = c.answering("c1", vip, "eno1");
        last == want.into_iter().collect::<Vec<_>>()
    });
    assert!(ok, "{vip}: expected {want:?} to answer, got {last:?}");
}

#[test]
fn external_traffic_policy_local_follows_the_endpoints() {
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: local-svc\n  labels:\n    network.example.com/interface: eno1\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports:\n    - port: 80\n",
    );
    c.set_lb_ip("local-svc", "192.168.3.160");
    c.start_all();
    let slice = |node: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: local-svc-a\n  namespace: default\n  labels:\n    kubernetes.io/service-name: local-svc\naddressType: IPv4\nendpoints:\n  - addresses: [\"10.0.0.1\"]\n    conditions:\n      ready: true\n    nodeName: {node}\nports:\n  - port: 80\n    protocol: TCP\n"
        )
    };
    // No endpoint anywhere: no node may announce (Cilium would announce anyway).
    std::thread::sleep(Duration::from_secs(2));
    assert!(arping(&c.client, "c1", "192.168.3.160", 1).is_empty());
    c.apply(&slice("node-3"));
    wait_answer_is(&c, "192.168.3.160", Some(2));
    c.apply(&slice("node-2"));
    wait_answer_is(&c, "192.168.3.160", Some(1));
}

#[test]
fn services_sharing_an_ip_follow_one_node() {
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    for name in ["web-http", "web-https"] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    network.example.com/interface: eno1\n  annotations:\n    lbipam.cilium.io/sharing-key: web\nspec:\n  type: LoadBalancer\n  ports:\n    - port: {}\n",
            if name == "web-http" { 80 } else { 443 }
        ));
        c.set_lb_ip(name, "192.168.3.170");
    }
    c.start_all();
    let holder = c.wait_single_answer("c1", "192.168.3.170", "eno1");
    // One election for the address, so one lease, and both Services say who announces them.
    assert_eq!(
        c.lease_holder("192.168.3.170"),
        Some(c.nodes[holder].name.clone())
    );
    for name in ["web-http", "web-https"] {
        let conditions = c.kubectl(
            &[
                "get",
                "service",
                name,
                "-o",
                "jsonpath={.status.conditions}",
            ],
            None,
        );
        assert!(
            conditions.contains(&c.nodes[holder].name),
            "{name}: {conditions}"
        );
    }
    // Over a few stops of the holder, the answer always comes from a single MAC.
    let probe = ArpProbe::start_answered(&c.client, "c1", "192.168.3.170", 10);
    let agent = c.nodes[holder].agent.take().unwrap();
    let stopped = Instant::now();
    let (ok, log) = agent.stop_with_log();
    assert!(ok, "{log}");
    std::thread::sleep(Duration::from_secs(2));
    let seq = answer_sequence(&probe.replies());
    let replies = probe.replies();
    assert_eq!(
        seq.len(),
        2,
        "one handover, never two answerers: {seq:?} ({} replies, last {:?} after the stop)",
        replies.len(),
        replies
            .last()
            .map(|r| r.0.saturating_duration_since(stopped))
    );
}

#[test]
fn policy_interface_and_selector_changes_take_effect() {
    let c = seeded_cluster();
    c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
    // An interface pattern that matches nothing on any node: nobody may announce.
    c.kubectl(
        &[
            "patch",
            "ciliuml2announcementpolicy",
            "l2-policy-eno1",
            "--type=merge",
            "-p",
            r#"{"spec":{"interfaces":["^nomatch$"]}}"#,
        ],
        None,
    );
    wait_answer_is(&c, INTERNAL_VIP, None);
    // Back, restricted to the nodes labelled for it: node-2 only.
    c.kubectl(
        &["label", "node", "node-2", "lab.example.com/announce=yes"],
        None,
    );
    c.kubectl(
        &["patch", "ciliuml2announcementpolicy", "l2-policy-eno1", "--type=merge", "-p",
          r#"{"spec":{"interfaces":["eno1"],"nodeSelector":{"matchLabels":{"lab.example.com/announce":"yes"}}}}"#],
        None,
    );
    wait_answer_is(&c, INTERNAL_VIP, Some(1));
    // The Service leaves the policy (relabelled for eno2: control-plane node-1 on eno2).
    c.kubectl(
        &[
            "label",
            "service",
            "api-internal",
            "network.example.com/interface=eno2",
            "--overwrite",
        ],
        None,
    );
    wait_answer_is(&c, INTERNAL_VIP, None);
    assert_eq!(c.answering("c2", INTERNAL_VIP, "eno2"), vec![0]);
    // A bad regex is reported on the policy, as Cilium does.
    c.kubectl(
        &[
            "patch",
            "ciliuml2announcementpolicy",
            "l2-policy-eno1",
            "--type=merge",
            "-p",
            r#"{"spec":{"interfaces":["("]}}"#,
        ],
        None,
    );
    assert!(eventually(Duration::from_secs(10), || {
        c.kubectl(&["get", "ciliuml2announcementpolicy", "l2-policy-eno1", "-o",
                    "jsonpath={.status.conditions[?(@.type==\"io.cilium/bad-interface-regex\")].status}"], None)
            == "True"
    }));
}

#[test]
fn an_api_outage_does_not_take_the_network_down() {
    let c = seeded_cluster();
    let holder = c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
    let old_mac = c.mac(holder, "eno1");
    let probe = ArpProbe::start_answered(&c.client, "c1", INTERNAL_VIP, 30);
    let api = c.api.as_ref().unwrap();
    api.faults().outage(true);
    // Three lease durations without any renewal: the holder keeps answering, nobody else does.
    std::thread::sleep(Duration::from_secs(9));
    api.faults().outage(false);
    std::thread::sleep(Duration::from_secs(3));
    let replies = probe.replies();
    assert_eq!(
        answer_sequence(&replies),
        vec![old_mac],
        "only the holder answered"
    );
    // No gap: at least one answer in every second of the outage.
    let times: Vec<Instant> = replies.iter().map(|(t, _)| *t).collect();
    let largest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        largest_gap < Duration::from_secs(1),
        "answers stopped for {largest_gap:?}"
    );
    assert_eq!(
        c.lease_holder(INTERNAL_VIP),
        Some(c.nodes[holder].name.clone())
    );
}

#[test]
fn a_holder_that_loses_carrier_releases_and_another_node_takes_over() {
    let c = seeded_cluster();
    let holder = c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
    // The switch port goes down: the holder's eno1 loses carrier (cilium#35507).
    c.nodes[holder]
        .ns
        .sh(&["ip", "link", "set", "eno1", "down"]);
    let mut now = Vec::new();
    let ok = eventually(Duration::from_secs(15), || {
        now = c.answering("c1", INTERNAL_VIP, "eno1");
        now.len() == 1 && now[0] != holder
    });
    assert!(
        ok,
        "another node answers once the holder's interface is down: {now:?}"
    );
    assert_ne!(
        c.lease_holder(INTERNAL_VIP),
        Some(c.nodes[holder].name.clone())
    );
}

#[test]
fn addresses_spread_over_the_nodes() {
    // The agents run first, then Services come: the case where Cilium piles every new
    // Service onto whichever node asks first.
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    c.start_all();
    std::thread::sleep(Duration::from_secs(1));
    let count = 12;
    for i in 0..count {
        c.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  labels:\n    network.example.com/interface: eno1\nspec:\n  type: LoadBalancer\n  ports:\n    - port: 80\n"
        ));
        c.set_lb_ip(&format!("svc-{i}"), &format!("192.168.3.{}", 180 + i));
    }
    let mut holders = std::collections::BTreeMap::<String, usize>::new();
    assert!(eventually(Duration::from_secs(20), || {
        holders.clear();
        for i in 0..count {
            if let Some(h) = c.lease_holder(&format!("192.168.3.{}", 180 + i)) {
                *holders.entry(h).or_default() += 1;
            }
        }
        holders.values().sum::<usize>() == count
    }));
    eprintln!("leases per node for {count} addresses: {holders:?}");
    assert_eq!(holders.len(), 3, "every node holds some: {holders:?}");
    assert!(holders.values().all(|n| *n <= 7), "no pile-up: {holders:?}");
}

#[test]
fn an_ipv6_vip_is_answered_by_one_node_with_ndp() {
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: api-v6\n  labels:\n    network.example.com/interface: eno1\nspec:\n  type: LoadBalancer\n  ipFamilies: [IPv6]\n  ports:\n    - port: 443\n",
    );
    c.set_lb_ip("api-v6", "2001:db8:3::150");
    c.start_all();
    let macs: Vec<String> = (0..3).map(|i| c.mac(i, "eno1")).collect();
    let mut answer = None;
    assert!(
        eventually(Duration::from_secs(20), || {
            answer = l2announcer_tests::ndisc6(&c.client, "c1", "2001:db8:3::150");
            answer.is_some()
        }),
        "the IPv6 VIP is resolved"
    );
    let answer = answer.unwrap();
    let holder = macs
        .iter()
        .position(|m| *m == answer)
        .expect("a node's eno1 MAC");
    assert_eq!(
        c.lease_holder_named("l2announcer-v6-2001-db8-3--150"),
        Some(c.nodes[holder].name.clone())
    );
}

#[test]
fn a_deleted_service_stops_being_answered_and_its_lease_is_deleted() {
    let c = seeded_cluster();
    c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
    assert!(c.lease_holder(INTERNAL_VIP).is_some());
    c.kubectl(&["delete", "service", "api-internal"], None);
    wait_answer_is(&c, INTERNAL_VIP, None);
    let lease = format!("l2announcer-v4-{INTERNAL_VIP}");
    assert!(
        eventually(Duration::from_secs(10), || {
            !c.kubectl(&["-n", "kube-system", "get", "leases", "-o", "name"], None)
                .contains(&lease)
        }),
        "the released lease is deleted without waiting for another change"
    );
}

/// A release that fails (the API answers errors just when the Services go) must not leave
/// the leases behind for good: no later change would trigger a clean-up.
#[test]
fn leases_of_deleted_services_are_deleted_even_when_the_release_fails() {
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    c.start_all();
    let count = 6;
    let names: Vec<String> = (0..count).map(|i| format!("svc-gc-{i}")).collect();
    let leases: Vec<String> = (0..count)
        .map(|i| format!("l2announcer-v4-192.168.3.{}", 200 + i))
        .collect();
    for (i, name) in names.iter().enumerate() {
        c.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    network.example.com/interface: eno1\nspec:\n  type: LoadBalancer\n  ports:\n    - port: 80\n"
        ));
        c.set_lb_ip(name, &format!("192.168.3.{}", 200 + i));
    }
    assert!(
        eventually(Duration::from_secs(20), || leases
            .iter()
            .all(|l| c.lease_holder_named(l).is_some())),
        "every address is held"
    );
    let kit = c.api.as_ref().unwrap();
    kit.faults().errors(500, 1.0);
    // The Services go behind the fault's back; the agents see it on their open watches and
    // their releases fail.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let api: kube::Api<k8s_openapi::api::core::v1::Service> =
                kube::Api::namespaced(kit.backdoor_client(), "default");
            for name in &names {
                api.delete(name, &Default::default()).await.unwrap();
            }
        });
    std::thread::sleep(Duration::from_secs(2));
    kit.faults().clear();
    let mut left = String::new();
    let gone = eventually(Duration::from_secs(20), || {
        left = c.kubectl(&["-n", "kube-system", "get", "leases", "-o", "name"], None);
        leases.iter().all(|l| !left.contains(l.as_str()))
    });
    assert!(gone, "leases of deleted Services left behind: {left}");
}

#[test]
fn lease_api_cost_at_ciliums_default_timings() {
    // 12 addresses, 3 nodes, Cilium's default timings (15 s / 5 s / 2 s): holders renew every
    // 5 s, candidates only watch. Cilium at the same timings (shared/reference/cilium.md
    // §2.10): 0.5 PUT/s per lease from the holder and about 0.31 GET/s per lease from each
    // other candidate, about 1.12 requests per address per second on 3 nodes.
    let mut c = Cluster::new();
    c.apply(SEED_POLICIES);
    for i in 0..3 {
        c.start_with(i, &[]);
    }
    let count = 12;
    for i in 0..count {
        c.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  labels:\n    network.example.com/interface: eno1\nspec:\n  type: LoadBalancer\n  ports:\n    - port: 80\n"
        ));
        c.set_lb_ip(&format!("svc-{i}"), &format!("192.168.3.{}", 180 + i));
    }
    assert!(eventually(Duration::from_secs(20), || {
        (0..count).all(|i| c.lease_holder(&format!("192.168.3.{}", 180 + i)).is_some())
    }));
    let audit = c.api.as_ref().unwrap().audit();
    let started = std::time::SystemTime::now();
    let window = Duration::from_secs(20);
    std::thread::sleep(window);
    let lease_requests: Vec<_> = audit
        .entries()
        .into_iter()
        .filter(|e| e.time >= started && e.resource == "leases" && e.verb != "watch")
        .collect();
    let per_address_per_second = lease_requests.len() as f64 / count as f64 / window.as_secs_f64();
    eprintln!(
        "lease API requests: {} in {:?} for {count} addresses on 3 nodes = {per_address_per_second:.3}/address/s (Cilium's cadence for the same: about 1.12/address/s)",
        lease_requests.len(),
        window
    );
    assert!(
        lease_requests.iter().all(|e| e.verb == "update"),
        "candidates do not poll: only the holders' renewals ({:?})",
        lease_requests
            .iter()
            .map(|e| &e.verb)
            .collect::<BTreeSet<_>>()
    );
    // One renewal per 5 s per address, with a little slack for the window's edges.
    assert!(per_address_per_second <= 0.25, "{per_address_per_second}");
    assert!(per_address_per_second >= 0.15, "{per_address_per_second}");
}

#[test]
fn a_holder_cut_off_from_the_api_stops_when_another_node_claims_the_address() {
    // Only the holder loses the API (a partition): it keeps answering (it cannot tell this
    // from an outage) until another node, which took the expired lease, announces the address
    // on the wire; the XDP conflict counter sees that, and the holder stops.
    let c = seeded_cluster();
    let holder = c.wait_single_answer("c1", INTERNAL_VIP, "eno1");
    let old_mac = c.mac(holder, "eno1");
    let probe = ArpProbe::start_answered(&c.client, "c1", INTERNAL_VIP, 30);
    c.nodes[holder]
        .ns
        .sh(&["ip", "route", "add", "blackhole", &format!("{API_ADDR}/32")]);
    let cut = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || probe
            .first_other(cut, &old_mac)
            .is_some()),
        "another node takes over"
    );
    let (took_over, _) = probe.first_other(cut, &old_mac).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let last_old = probe
        .replies()
        .into_iter()
        .filter(|(_, m)| *m == old_mac)
        .map(|(t, _)| t)
        .max()
        .unwrap();
    let overlap = last_old.saturating_duration_since(took_over);
    eprintln!(
        "partition: takeover {:?} after the cut, old holder answered {overlap:?} longer",
        took_over.duration_since(cut)
    );
    assert!(
        overlap < Duration::from_millis(1500),
        "the cut-off holder stops soon after the takeover ({overlap:?})"
    );
}
