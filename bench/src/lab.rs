//! The Kubernetes lab of the control-plane benchmarks (as `tests/k8s_lab.rs` builds it): a
//! switch namespace with one bridge, the API test kit listening on it, N nodes (namespaces
//! with `eno1` on the bridge) running the real `l2announcer agent`, and a client namespace on
//! the bridge. Each node has its own token, so the kit's audit log counts requests per node.
//! Objects are created through the kit's in-process client (kubectl per object is far too
//! slow for thousands of Services). Everything is removed on drop.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node as K8sNode, Service},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use kube_testkit::TestKit;
use l2announcer_tests::{Agent, Netns, in_netns, plug, require_root};
use serde_json::json;

pub const API_ADDR: &str = "198.51.100.1";
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
pub const LEASE_NAMESPACE: &str = "kube-system";

/// Cilium's default lease timings (15 s / 5 s / 2 s): the agent's defaults, so no flags.
pub const DEFAULT_TIMINGS: [&str; 0] = [];
/// The fast timings of the k8s lab (3 s / 1500 ms / 500 ms; valid by Cilium's rules).
pub const FAST_TIMINGS: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--lease-renew-deadline",
    "1500ms",
    "--lease-retry-period",
    "500ms",
];

pub struct Node {
    pub ns: Netns,
    pub name: String,
    pub kubeconfig: PathBuf,
    pub mac: [u8; 6],
    pub agent: Option<Agent>,
}

pub struct Lab {
    pub rt: tokio::runtime::Runtime,
    /// The kit's in-process client that no fault affects (audited as the administrator).
    pub client: kube::Client,
    pub nodes: Vec<Node>,
    pub client_ns: Netns,
    kit: Option<TestKit>,
    _switch: Netns,
}

impl Lab {
    /// A lab with `nodes` nodes (no agent running yet), the policy CRD and one policy that
    /// selects every Service's load balancer address on `eno1` of every node.
    pub fn new(nodes: usize, history: usize) -> anyhow::Result<Lab> {
        require_root();
        let switch = Netns::new();
        switch.sh(&["ip", "link", "add", "br1", "type", "bridge"]);
        switch.sh(&["ip", "link", "set", "br1", "up"]);
        switch.sh(&["ip", "addr", "add", &format!("{API_ADDR}/24"), "dev", "br1"]);
        let listen: SocketAddr = format!("{API_ADDR}:0").parse()?;
        // The kit's threads start inside the switch namespace, so it listens there.
        let kit = in_netns(&switch, move || {
            let mut b = TestKit::builder().listen(listen).history_size(history);
            for i in 1..=nodes {
                b = b.token(&token(i), &node_name(i), &["system:nodes"]);
            }
            b.spawn_blocking()
        })
        .context("start the API test kit")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = {
            let _guard = rt.enter();
            kit.backdoor_client()
        };
        let client_ns = Netns::new();
        plug(
            &switch,
            "br1",
            &client_ns,
            "c1",
            &format!("{CLIENT_ADDR}/24"),
        );
        let mut lab = Lab {
            rt,
            client,
            nodes: Vec::new(),
            client_ns,
            kit: None,
            _switch: switch,
        };
        for i in 1..=nodes {
            let ns = Netns::new();
            plug(
                &lab._switch,
                "br1",
                &ns,
                "eno1",
                &format!("198.51.100.{}/24", 10 + i),
            );
            let kubeconfig = kit.write_kubeconfig(&node_name(i), Some(&token(i)), None)?;
            let mac = crate::probe::parse_mac(&ns.mac("eno1"));
            lab.nodes.push(Node {
                ns,
                name: node_name(i),
                kubeconfig,
                mac,
                agent: None,
            });
        }
        lab.kit = Some(kit);
        lab.install()?;
        Ok(lab)
    }

    pub fn kit(&self) -> &TestKit {
        self.kit.as_ref().expect("kit")
    }

    fn install(&self) -> anyhow::Result<()> {
        let client = self.client.clone();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        self.rt.block_on(async move {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            crds.create(&PostParams::default(), &l2announcer_api::l2_policy::crd())
                .await
                .context("create the policy CRD")?;
            let nodes: Api<K8sNode> = Api::all(client.clone());
            for name in names {
                let node: K8sNode = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                }))?;
                nodes.create(&PostParams::default(), &node).await?;
            }
            let policies: Api<DynamicObject> = Api::all_with(client, &policy_resource());
            let policy: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "cilium.io/v2alpha1",
                "kind": "CiliumL2AnnouncementPolicy",
                "metadata": {"name": "bench-eno1"},
                "spec": {"interfaces": ["^eno1$"], "loadBalancerIPs": true},
            }))?;
            policies
                .create(&PostParams::default(), &policy)
                .await
                .context("create the policy")?;
            anyhow::Ok(())
        })
    }

    /// Starts node `i`'s agent with these lease timing flags; waits until it is ready.
    pub fn start_agent(&mut self, i: usize, timings: &[&str]) {
        let node = &mut self.nodes[i];
        let kubeconfig = node.kubeconfig.to_string_lossy().into_owned();
        let mut args = vec![
            "agent",
            "--node-name",
            &node.name,
            "--kubeconfig",
            &kubeconfig,
            "--lease-namespace",
            LEASE_NAMESPACE,
            "--xdp-mode",
            "generic",
        ];
        args.extend_from_slice(timings);
        node.agent = Some(Agent::start(&node.ns, &args));
    }

    pub fn start_all(&mut self, timings: &[&str]) {
        for i in 0..self.nodes.len() {
            self.start_agent(i, timings);
        }
    }

    /// Creates a LoadBalancer Service (no address yet).
    pub fn create_service(&self, name: &str) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let svc = service(name)?;
        self.rt
            .block_on(api.create(&PostParams::default(), &svc))
            .with_context(|| format!("create service {name}"))?;
        Ok(())
    }

    /// Sets a Service's load balancer address in its status, as the LB-IPAM operator does;
    /// returns when the API answered.
    pub fn set_ip(&self, name: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string()}]}}});
        self.rt
            .block_on(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .with_context(|| format!("set the address of {name}"))?;
        Ok(())
    }

    /// Creates Services with their addresses, 8 at a time.
    pub fn create_services(&self, services: &[(String, Ipv4Addr)]) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let services = services.to_vec();
        self.rt.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let workers = 8;
            for w in 0..workers {
                let api = api.clone();
                let mine: Vec<(String, Ipv4Addr)> =
                    services.iter().skip(w).step_by(workers).cloned().collect();
                tasks.spawn(async move {
                    for (name, ip) in mine {
                        api.create(&PostParams::default(), &service(&name)?)
                            .await
                            .with_context(|| format!("create service {name}"))?;
                        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string()}]}}});
                        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .with_context(|| format!("set the address of {name}"))?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(r) = tasks.join_next().await {
                r??;
            }
            anyhow::Ok(())
        })
    }

    /// Deletes every Service in `default`.
    pub fn delete_services(&self) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
        self.rt.block_on(async move {
            api.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await?;
            anyhow::Ok(())
        })
    }

    /// The holder of every l2announcer lease with a holder, by address.
    pub fn holders(&self) -> anyhow::Result<BTreeMap<Ipv4Addr, String>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let list = self.rt.block_on(
            api.list(&ListParams::default().labels("app.kubernetes.io/managed-by=l2announcer")),
        )?;
        let mut out = BTreeMap::new();
        for lease in list.items {
            let ip = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("l2announcer.io/ip"))
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty());
            if let (Some(ip), Some(holder)) = (ip, holder) {
                out.insert(ip, holder);
            }
        }
        Ok(out)
    }

    /// The renew time of every l2announcer lease, by address.
    pub fn renew_times(&self) -> anyhow::Result<BTreeMap<Ipv4Addr, String>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let list = self.rt.block_on(
            api.list(&ListParams::default().labels("app.kubernetes.io/managed-by=l2announcer")),
        )?;
        let mut out = BTreeMap::new();
        for lease in list.items {
            let ip = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("l2announcer.io/ip"))
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let renew = lease
                .spec
                .and_then(|s| s.renew_time)
                .map(|t| t.0.to_string());
            if let (Some(ip), Some(renew)) = (ip, renew) {
                out.insert(ip, renew);
            }
        }
        Ok(out)
    }

    /// Waits until every address in `ips` has a lease holder; how long that took.
    pub fn wait_held(&self, ips: &[Ipv4Addr], timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let holders = self.holders()?;
            let missing = ips.iter().filter(|ip| !holders.contains_key(ip)).count();
            if missing == 0 {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "{missing} of {} addresses have no lease holder after {timeout:?}",
                ips.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Index of the node with this name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Agents first (they release their leases against a live API), then the API, then the
        // namespaces (fields, in order).
        for node in &mut self.nodes {
            drop(node.agent.take());
        }
        drop(self.kit.take());
    }
}

pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

fn token(i: usize) -> String {
    format!("bench-token-node-{i}")
}

fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cilium.io", "v2alpha1", "CiliumL2AnnouncementPolicy"),
        "ciliuml2announcementpolicies",
    )
}

fn service(name: &str) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))?)
}

/// Addresses `base.x.y` counting from `base.0.1`, skipping .0 and .255.
pub fn addresses(base: [u8; 2], n: usize) -> Vec<Ipv4Addr> {
    let mut out = Vec::with_capacity(n);
    let mut k: u32 = 0;
    while out.len() < n {
        let (hi, lo) = ((k / 254) as u8, (k % 254 + 1) as u8);
        out.push(Ipv4Addr::new(base[0], base[1], hi, lo));
        k += 1;
    }
    out
}

/// Resident and peak resident memory of a process in KiB (VmRSS, VmHWM).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of a process in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    l2announcer_tests::cpu_time(pid).as_secs_f64()
}
