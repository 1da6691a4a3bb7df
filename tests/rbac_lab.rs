//! The agent's RBAC in deploy/ proven both ways against an API server that enforces RBAC (the
//! test kit with `.rbac(true)`): the real `l2announcer agent`, authenticated as its service
//! account `system:serviceaccount:l2announcer:l2announcer-agent` and holding only the
//! ClusterRole and Role of `deploy/kustomize/base/agent/rbac.yaml`, announces a VIP in a
//! namespace lab without a single 403; every (resource, verb) it is granted shows up in the
//! audit log of its requests (one documented exception) and every request it made is one the
//! rules grant; and with any one (resource, verb) taken out of the rules, a request the agent
//! needs is refused.
//!
//! The lab: a switch namespace with a bridge whose address the API test kit listens on, one
//! node namespace running the agent, and a client namespace that ARPs for the VIPs.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use kube_testkit::TestKit;
use l2announcer_tests::{
    Agent, Netns, arping, eventually, file_docs, in_netns, require_root, unique,
};
use serde_json::{Value, json};

const API_ADDR: &str = "198.51.100.1";
const NS: &str = "l2announcer";
const AGENT_USER: &str = "system:serviceaccount:l2announcer:l2announcer-agent";
const AGENT_TOKEN: &str = "rbac-lab-agent-token";
const OPERATOR_USER: &str = "system:serviceaccount:l2announcer:l2announcer-operator";
const OPERATOR_TOKEN: &str = "rbac-lab-operator-token";
const VIP: &str = "192.168.3.150";

/// Granted but not expected in a short run: kube-runtime's Recorder patches an event only when
/// the same event (same reason, action and regarded object *including its resourceVersion*)
/// repeats within 6 minutes, and a takeover changes the Service's resourceVersion (the
/// condition), so a repeat needs a failed condition write. The rule stays so that such a
/// repeat does not fail; this list keeps the exception explicit (the test fails if the agent
/// is ever seen to use it, or if anything else is granted and unused).
const GRANTED_NOT_EXERCISED: &[(&str, &str, &str)] = &[("events.k8s.io", "events", "patch")];

const SEED_POLICY: &str = r#"{
  "apiVersion": "cilium.io/v2alpha1",
  "kind": "CiliumL2AnnouncementPolicy",
  "metadata": {"name": "l2-policy-eno1", "labels": {"network.example.com/interface": "eno1"}},
  "spec": {
    "serviceSelector": {"matchLabels": {"network.example.com/interface": "eno1"}},
    "nodeSelector": {"matchLabels": {}},
    "interfaces": ["eno1"],
    "externalIPs": true,
    "loadBalancerIPs": true
  }
}"#;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn agent_rbac() -> Vec<Value> {
    file_docs(&deploy_dir().join("kustomize/base/agent/rbac.yaml"))
}

fn operator_rbac() -> Vec<Value> {
    file_docs(&deploy_dir().join("kustomize/base/operator/rbac.yaml"))
}

/// One permission: API group, resource (with `/subresource`), verb, and the namespace it is
/// granted in (`None`: cluster-wide).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
    /// `resourceNames` of the rule (empty: any name).
    names: Vec<String>,
}

/// Every (group, resource, verb) the ClusterRole and Role grant, one per combination.
fn grants(rbac: &[Value]) -> Vec<Grant> {
    let mut out = Vec::new();
    for doc in rbac {
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().unwrap().to_owned()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().unwrap() {
            let names: Vec<String> = rule["resourceNames"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect();
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        let grant = Grant {
                            group: g.as_str().unwrap().into(),
                            resource: r.as_str().unwrap().into(),
                            verb: v.as_str().unwrap().into(),
                            namespace: namespace.clone(),
                            names: names.clone(),
                        };
                        assert!(
                            !grant.group.contains('*')
                                && !grant.resource.contains('*')
                                && !grant.verb.contains('*'),
                            "wildcard in {grant:?}"
                        );
                        out.push(grant);
                    }
                }
            }
        }
    }
    out
}

/// The RBAC objects with one (group, resource, verb) taken out.
fn rbac_without(rbac: &[Value], without: &Grant) -> Vec<Value> {
    let mut out = rbac.to_vec();
    for doc in &mut out {
        let is_role = match doc["kind"].as_str() {
            Some("ClusterRole") => without.namespace.is_none(),
            Some("Role") => without.namespace.is_some(),
            _ => false,
        };
        if !is_role {
            continue;
        }
        let rules = doc["rules"].as_array().unwrap().clone();
        let mut kept = Vec::new();
        for rule in rules {
            let matches = rule["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == without.group.as_str())
                && rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == without.resource.as_str());
            if !matches {
                kept.push(rule);
                continue;
            }
            // Split the rule: the other resources keep every verb, this one loses `verb`.
            let others: Vec<Value> = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| *r != without.resource.as_str())
                .cloned()
                .collect();
            if !others.is_empty() {
                let mut r = rule.clone();
                r["resources"] = Value::Array(others);
                kept.push(r);
            }
            let verbs: Vec<Value> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| *v != without.verb.as_str())
                .cloned()
                .collect();
            if !verbs.is_empty() {
                let mut r = rule.clone();
                r["resources"] = json!([without.resource]);
                r["verbs"] = Value::Array(verbs);
                kept.push(r);
            }
        }
        doc["rules"] = Value::Array(kept);
    }
    out
}

/// Whether `grants` allow a request (as RBAC decides: group, resource/subresource, verb, the
/// namespace for namespaced grants, and `resourceNames`). The audit log does not record a
/// list/watch's field selector, so a named grant is taken to cover a list/watch without a
/// name; the API test kit itself refuses one not pinned to the name (no 403 is asserted too).
fn allowed(grants: &[Grant], e: &kube_testkit::audit::AuditEntry) -> bool {
    let resource = resource_of(e);
    grants.iter().any(|g| {
        g.group == e.group
            && g.resource == resource
            && g.verb == e.verb
            && g.namespace.as_deref().is_none_or(|ns| ns == e.namespace)
            && (g.names.is_empty()
                || g.names.contains(&e.name)
                || (e.name.is_empty() && matches!(e.verb.as_str(), "list" | "watch")))
    })
}

/// The audit of one user's requests against the rules it holds: none refused, each one
/// granted, and each grant used but for `not_exercised`. Returns the distinct
/// (group, resource, verb) used.
fn check_audit(
    requests: &[kube_testkit::audit::AuditEntry],
    rbac: &[Value],
    not_exercised: &[(&str, &str, &str)],
) -> BTreeSet<(String, String, String)> {
    assert!(!requests.is_empty(), "no request in the audit log");
    let refused: Vec<_> = requests
        .iter()
        .filter(|e| e.code == 401 || e.code == 403)
        .map(|e| format!("{} {} {}", e.code, e.verb, e.path))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:#?}");
    let granted = grants(rbac);
    // Every request is one the rules grant (resource requests only; discovery has an empty
    // resource and is open to every authenticated user).
    let mut used: BTreeSet<(String, String, String)> = BTreeSet::new();
    for e in requests.iter().filter(|e| !e.resource.is_empty()) {
        assert!(
            allowed(&granted, e),
            "a request the rules do not grant: {} {} {} {:?} in {:?}",
            e.verb,
            e.group,
            resource_of(e),
            e.name,
            e.namespace
        );
        used.insert((e.group.clone(), resource_of(e), e.verb.clone()));
    }
    // Every grant is used, but the documented exceptions (which must stay unused).
    let mut unused: Vec<(String, String, String)> = Vec::new();
    for g in &granted {
        let key = (g.group.clone(), g.resource.clone(), g.verb.clone());
        if !used.contains(&key) && !unused.contains(&key) {
            unused.push(key);
        }
    }
    let expected: Vec<(String, String, String)> = not_exercised
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    assert_eq!(unused, expected, "granted but never used (used: {used:#?})");
    used
}

struct Lab {
    switch: Netns,
    api: Option<TestKit>,
    admin_kubeconfig: String,
    agent_kubeconfig: String,
    operator_kubeconfig: String,
    node: Netns,
    client: Netns,
    agent: Option<Agent>,
}

impl Lab {
    fn new() -> Self {
        require_root();
        let switch = Netns::new();
        switch.sh(&["ip", "link", "add", "br1", "type", "bridge"]);
        switch.sh(&["ip", "link", "set", "br1", "up"]);
        switch.sh(&["ip", "addr", "add", &format!("{API_ADDR}/24"), "dev", "br1"]);
        let api_listen: SocketAddr = format!("{API_ADDR}:0").parse().unwrap();
        let api = in_netns(&switch, move || {
            TestKit::builder()
                .listen(api_listen)
                .rbac(true)
                .token(
                    AGENT_TOKEN,
                    AGENT_USER,
                    &[
                        "system:serviceaccounts",
                        "system:serviceaccounts:l2announcer",
                    ],
                )
                .token(
                    OPERATOR_TOKEN,
                    OPERATOR_USER,
                    &[
                        "system:serviceaccounts",
                        "system:serviceaccounts:l2announcer",
                    ],
                )
                .spawn_blocking()
                .expect("start the API test kit")
        });
        let admin_kubeconfig = api.kubeconfig_path().to_string_lossy().into_owned();
        let agent_kubeconfig = api
            .write_kubeconfig("agent", Some(AGENT_TOKEN), None)
            .expect("agent kubeconfig")
            .to_string_lossy()
            .into_owned();
        let operator_kubeconfig = api
            .write_kubeconfig("operator", Some(OPERATOR_TOKEN), None)
            .expect("operator kubeconfig")
            .to_string_lossy()
            .into_owned();
        let lab = Lab {
            operator_kubeconfig,
            switch,
            api: Some(api),
            admin_kubeconfig,
            agent_kubeconfig,
            node: Netns::new(),
            client: Netns::new(),
            agent: None,
        };
        lab.plug(&lab.node, "eno1", "198.51.100.11/24");
        lab.plug(&lab.client, "c1", "198.51.100.100/24");
        // As the administrator: the CRD, the node, and deploy's namespace, service account
        // and RBAC objects, verbatim.
        lab.apply(&serde_json::to_string(&l2announcer_api::l2_policy::crd()).unwrap());
        lab.apply(r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"}}"#);
        let agent_dir = deploy_dir().join("kustomize/base/agent");
        for file in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"] {
            let path = agent_dir.join(file).to_string_lossy().into_owned();
            lab.kubectl(&["apply", "-f", &path], None);
        }
        let operator_dir = deploy_dir().join("kustomize/base/operator");
        for file in ["serviceaccount.yaml", "rbac.yaml"] {
            let path = operator_dir.join(file).to_string_lossy().into_owned();
            lab.kubectl(&["apply", "-f", &path], None);
        }
        lab.apply(SEED_POLICY);
        lab
    }

    /// `l2announcer operator` in the switch namespace (where the API is), as `kubeconfig`'s
    /// user, its metrics on 127.0.0.1:9471 there. Killed on drop.
    fn start_operator(&self, kubeconfig: &str) -> Operator {
        let log = std::env::temp_dir().join(format!("{}.log", unique("l2a-operator-")));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.switch.name])
            .arg(l2announcer_tests::binary())
            .args(["operator", "--kubeconfig", kubeconfig])
            .args(["--metrics-addr", "127.0.0.1:9471"])
            .args([
                "--leader-election-namespace",
                NS,
                "--identity",
                "operator-1",
            ])
            .args(["--lease-duration", "3s", "--lease-renew-deadline", "1500ms"])
            .args(["--lease-retry-period", "500ms"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("l2announcer operator");
        Operator { child, log }
    }

    fn pool(&self, name: &str, start: &str, stop: &str, interface: &str) {
        self.apply(
            &json!({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumLoadBalancerIPPool",
                    "metadata": {"name": name},
                    "spec": {"blocks": [{"start": start, "stop": stop}],
                             "serviceSelector": {"matchLabels": {"network.example.com/interface": interface}}}})
            .to_string(),
        );
    }

    /// A LoadBalancer Service without an address, for the operator to allocate.
    fn plain_service(&self, name: &str, interface: &str) {
        self.apply(
            &json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": "default",
                                 "labels": {"network.example.com/interface": interface}},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
            .to_string(),
        );
    }

    fn service_ip(&self, name: &str) -> String {
        self.try_kubectl(
            &[
                "get",
                "service",
                name,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
            None,
        )
        .unwrap_or_default()
    }

    fn kit(&self) -> &TestKit {
        self.api.as_ref().unwrap()
    }

    fn plug(&self, ns: &Netns, ifname: &str, addr: &str) {
        l2announcer_tests::plug(&self.switch, "br1", ns, ifname, addr);
    }

    /// kubectl as the administrator, from the switch namespace.
    fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        l2announcer_tests::Kubectl {
            netns: Some(self.switch.name.clone()),
            kubeconfig: self.admin_kubeconfig.clone().into(),
        }
        .try_run(args, stdin)
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.try_kubectl(args, stdin)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    fn apply(&self, doc: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(doc));
    }

    fn apply_all(&self, docs: &[Value]) {
        let stream: Vec<String> = docs.iter().map(Value::to_string).collect();
        self.apply(&stream.join("\n---\n"));
    }

    /// A LoadBalancer Service the seed's eno1 policy selects, with `ip` in its status as the
    /// LB-IPAM operator would set it.
    fn service(&self, namespace: &str, name: &str, ip: &str) {
        if namespace != "default" {
            self.apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
                    .to_string(),
            );
        }
        self.apply(
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"network.example.com/interface": "eno1"}},
                "spec": {"type": "LoadBalancer", "selector": {"app": name},
                         "ports": [{"port": 80}]}
            })
            .to_string(),
        );
        self.set_lb_ip(namespace, name, Some(ip));
    }

    fn set_lb_ip(&self, namespace: &str, name: &str, ip: Option<&str>) {
        let ingress = match ip {
            Some(ip) => json!([{"ip": ip}]),
            None => json!([]),
        };
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}}).to_string();
        self.kubectl(
            &[
                "-n",
                namespace,
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

    fn lease_holder(&self, ip: &str) -> Option<String> {
        let name = format!("l2announcer-v4-{ip}");
        self.try_kubectl(
            &[
                "-n",
                NS,
                "get",
                "lease",
                &name,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        )
        .ok()
    }

    /// After an address lost its Service: waits until its lease is released, then changes
    /// the Node (an annotation) so that the agent selects again. The agent collects unwanted
    /// leases when it selects, and a lease it has just released is only collected at the
    /// next selection, which needs some change of Services, Nodes, slices or policies.
    fn release_and_collect(&self, ip: &str) {
        assert!(
            eventually(Duration::from_secs(15), || self.lease_holder(ip).as_deref()
                != Some("node-1")),
            "lease of {ip} not released"
        );
        let stamp = format!(
            "l2announcer.test/nudge={}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        self.kubectl(&["annotate", "node", "node-1", "--overwrite", &stamp], None);
    }

    fn start_agent(&mut self) {
        let args = [
            "agent",
            "--node-name",
            "node-1",
            "--kubeconfig",
            &self.agent_kubeconfig,
            "--lease-namespace",
            NS,
            "--xdp-mode",
            "generic",
            "--liveness-timeout",
            "2s",
            "--garp-interval",
            "200ms",
            "--lease-duration",
            "3s",
            "--lease-renew-deadline",
            "1500ms",
            "--lease-retry-period",
            "500ms",
        ];
        self.agent = Some(Agent::start(&self.node, &args));
    }

    fn answers(&self, ip: &str) -> bool {
        let mac = self.node.mac("eno1");
        arping(&self.client, "c1", ip, 1) == vec![mac]
    }

    fn wait_answer(&self, ip: &str) {
        assert!(
            eventually(Duration::from_secs(20), || self.answers(ip)),
            "node-1 does not answer {ip}"
        );
    }

    /// A user's requests since `since`.
    fn requests_of(&self, user: &str, since: SystemTime) -> Vec<kube_testkit::audit::AuditEntry> {
        self.kit()
            .audit()
            .entries()
            .into_iter()
            .filter(|e| e.user == user && e.time >= since)
            .collect()
    }
}

struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.agent.take());
        drop(self.api.take());
    }
}

fn resource_of(e: &kube_testkit::audit::AuditEntry) -> String {
    if e.subresource.is_empty() {
        e.resource.clone()
    } else {
        format!("{}/{}", e.resource, e.subresource)
    }
}

#[test]
fn agent_works_with_deploy_rbac_and_is_granted_exactly_what_it_uses() {
    let start = SystemTime::now();
    let mut lab = Lab::new();
    lab.service("default", "web", VIP);
    lab.start_agent();

    // It works: it announces the VIP and holds its lease in its own namespace.
    lab.wait_answer(VIP);
    assert!(
        eventually(Duration::from_secs(10), || lab.lease_holder(VIP).as_deref()
            == Some("node-1")),
        "lease of {VIP} not held by node-1: {:?}",
        lab.lease_holder(VIP)
    );
    // A Service in another namespace: its condition and event are written there.
    lab.service("team", "api", "192.168.3.151");
    lab.wait_answer("192.168.3.151");
    // A policy with an invalid interface pattern gets a condition.
    lab.apply(
        &json!({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
                "metadata": {"name": "broken"},
                "spec": {"interfaces": ["(["], "loadBalancerIPs": true}})
        .to_string(),
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            lab.kubectl(
                &[
                    "get",
                    "ciliuml2announcementpolicy",
                    "broken",
                    "-o",
                    "jsonpath={.status.conditions}",
                ],
                None,
            )
            .contains("True")
        }),
        "no condition on the broken policy"
    );
    // An address no Service wants any more: its lease is released and deleted.
    lab.set_lb_ip("team", "api", None);
    lab.release_and_collect("192.168.3.151");
    assert!(
        eventually(Duration::from_secs(15), || lab
            .lease_holder("192.168.3.151")
            .is_none()),
        "lease of 192.168.3.151 not deleted"
    );
    // Graceful stop: the lease is handed back (holder cleared).
    let stopping = Instant::now();
    let (ok, log) = lab.agent.take().unwrap().stop_with_log();
    let stop_time = stopping.elapsed();
    assert!(ok, "agent did not exit cleanly:\n{log}");
    // Well within the DaemonSet's grace period, release included.
    let ds = file_docs(&deploy_dir().join("kustomize/base/agent/daemonset.yaml"));
    let grace = ds[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(
        stop_time < Duration::from_secs(grace) / 3,
        "SIGTERM to exit took {stop_time:?}, grace period {grace}s"
    );
    assert_eq!(
        lab.lease_holder(VIP).as_deref(),
        Some(""),
        "lease not released"
    );

    let requests = lab.requests_of(AGENT_USER, start);
    let used = check_audit(&requests, &agent_rbac(), GRANTED_NOT_EXERCISED);
    // Events went to both Services' namespaces (why events are cluster-wide, not in a Role).
    let event_namespaces: BTreeSet<&str> = requests
        .iter()
        .filter(|e| e.resource == "events" && e.verb == "create")
        .map(|e| e.namespace.as_str())
        .collect();
    assert!(
        event_namespaces.contains("default") && event_namespaces.contains("team"),
        "events in {event_namespaces:?}"
    );
    // Leases only in the agent's namespace.
    assert!(
        requests
            .iter()
            .filter(|e| e.resource == "leases")
            .all(|e| e.namespace == NS)
    );
    eprintln!(
        "rbac: {} requests by the agent, {} distinct (group, resource, verb), none refused; \
         SIGTERM to exit (leases released) in {stop_time:?}",
        requests.len(),
        used.len()
    );
}

/// With each (resource, verb) taken out of the rules in turn, the running agent's request that
/// needs it is refused (403 in the audit log). The rules are restored after each step.
#[test]
fn every_agent_rule_is_needed() {
    let mut lab = Lab::new();
    lab.service("default", "web", VIP);
    lab.start_agent();
    lab.wait_answer(VIP);
    let rbac = agent_rbac();
    let granted = grants(&rbac);
    let mut n = 0u32;
    let mut report = Vec::new();
    for g in &granted {
        if GRANTED_NOT_EXERCISED
            .iter()
            .any(|(gr, r, v)| *gr == g.group && *r == g.resource && *v == g.verb)
        {
            continue;
        }
        n += 1;
        // Something for the delete step to collect: a lease that is held, then not wanted.
        let delete_ip = format!("192.168.3.{}", 200 + n);
        if g.resource == "leases" && g.verb == "delete" {
            lab.service("default", &format!("gone{n}"), &delete_ip);
            lab.wait_answer(&delete_ip);
        }
        let since = SystemTime::now();
        lab.apply_all(&rbac_without(&rbac, g));
        let began = Instant::now();
        // Make the agent need the permission.
        match (g.resource.as_str(), g.verb.as_str()) {
            (_, "list") => {
                // Watches from a version older than the history get 410, then relist.
                lab.kit().faults().compact();
                lab.kit().faults().close_watches();
            }
            (_, "watch") => lab.kit().faults().close_watches(),
            ("leases", "update") => {} // renewals every retry period
            ("leases", "delete") => {
                lab.set_lb_ip("default", &format!("gone{n}"), None);
                lab.release_and_collect(&delete_ip);
            }
            ("ciliuml2announcementpolicies/status", "patch") => lab.apply(
                &json!({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
                        "metadata": {"name": format!("broken{n}")},
                        "spec": {"interfaces": ["(["], "loadBalancerIPs": true}})
                .to_string(),
            ),
            // A new address to take over: lease create, Service condition, event.
            _ => lab.service(
                "default",
                &format!("new{n}"),
                &format!("192.168.3.{}", 160 + n),
            ),
        }
        let refused = eventually(Duration::from_secs(20), || {
            lab.requests_of(AGENT_USER, since).iter().any(|e| {
                e.code == 403
                    && e.verb == g.verb
                    && e.group == g.group
                    && resource_of(e) == g.resource
            })
        });
        assert!(
            refused,
            "without {} {} {}, no request of the agent was refused: the rule would not be needed",
            g.verb, g.group, g.resource
        );
        report.push(format!(
            "{} {}/{}: refused after {:?}",
            g.verb,
            g.group,
            g.resource,
            began.elapsed()
        ));
        lab.apply_all(&rbac);
    }
    // Restored, the agent still works.
    lab.service("default", "after", "192.168.3.199");
    lab.wait_answer("192.168.3.199");
    lab.wait_answer(VIP);
    eprintln!("{}", report.join("\n"));
    assert_eq!(
        n as usize,
        granted.len() - GRANTED_NOT_EXERCISED.len(),
        "permissions checked"
    );
}

/// `GET /metrics` from inside a namespace.
fn scrape(ns: &Netns, port: u16) -> Option<String> {
    in_netns(ns, move || {
        use std::io::{Read as _, Write as _};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        conn.read_to_string(&mut body).ok()?;
        body.starts_with("HTTP/1.")
            .then(|| body.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
            .flatten()
    })
}

/// Sample names in an OpenMetrics text: every sample line's name, and for each `# TYPE`, the
/// names its samples take (counter `_total`, histogram `_bucket`/`_sum`/`_count`).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => drop(names.insert(format!("{name}_total"))),
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => drop(names.insert(name.to_owned())),
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Every `l2announcer_*` metric name written in the dashboard and the alert rules is one the
/// running agent or operator exports (scraped from the real binaries in the lab).
#[test]
fn dashboard_and_alerts_use_only_exported_metric_names() {
    let mut lab = Lab::new();
    lab.apply(&serde_json::to_string(&l2announcer_api::ip_pool::crd().unwrap()).unwrap());
    lab.service("default", "web", VIP);
    // A Service some policy selects but no node may announce (no node has the label).
    lab.apply(
        &json!({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
                "metadata": {"name": "nowhere"},
                "spec": {"serviceSelector": {"matchLabels": {"network.example.com/interface": "nowhere"}},
                         "nodeSelector": {"matchLabels": {"example.com/role": "none"}},
                         "interfaces": ["eno1"], "loadBalancerIPs": true}})
        .to_string(),
    );
    lab.apply(
        &json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "orphan", "namespace": "default",
                             "labels": {"network.example.com/interface": "nowhere"}},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
        .to_string(),
    );
    lab.set_lb_ip("default", "orphan", Some("192.168.3.170"));
    lab.start_agent();
    lab.wait_answer(VIP);
    let mut agent_metrics = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            agent_metrics = scrape(&lab.node, 9470).unwrap_or_default();
            agent_metrics.contains("l2announcer_service_no_eligible_node{")
        }),
        "agent /metrics: {agent_metrics}"
    );
    // The seed's pool for the operator (it then has per-pool metrics).
    lab.apply(
        &json!({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumLoadBalancerIPPool",
                "metadata": {"name": "ip-pool-eno1"},
                "spec": {"blocks": [{"start": "192.168.3.150", "stop": "192.168.3.250"}],
                         "serviceSelector": {"matchLabels": {"network.example.com/interface": "eno1"}}}})
        .to_string(),
    );
    // The operator, as the administrator, in the switch namespace.
    let operator = lab.start_operator(&lab.admin_kubeconfig.clone());
    let mut operator_metrics = String::new();
    let scraped = eventually(Duration::from_secs(20), || {
        operator_metrics = scrape(&lab.switch, 9471).unwrap_or_default();
        // Labelled families appear with their first child (pools, status writes).
        operator_metrics.contains("l2announcer_ipam_leader 1")
            && operator_metrics.contains("l2announcer_ipam_pool_addresses_total{")
            && operator_metrics.contains("l2announcer_ipam_status_writes_total{")
    });
    let log = operator.log_text();
    drop(operator);
    assert!(
        scraped,
        "operator metrics not served or not leader:\n{operator_metrics}\n{log}"
    );
    let mut exported = exported_names(&agent_metrics);
    exported.extend(exported_names(&operator_metrics));

    let re = regex_lite_names;
    for file in [
        "monitoring/grafana-dashboard.json",
        "monitoring/prometheusrule.yaml",
        "helm/l2announcer/files/alerts.yaml",
    ] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        let used = re(&text);
        assert!(used.len() >= 8, "{file}: only {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metric names nothing exports: {unknown:?}\nexported: {exported:#?}"
        );
    }
    // The dashboard covers every family the agent exports with an l2announcer_ prefix.
    let dashboard = re(&std::fs::read_to_string(
        deploy_dir().join("monitoring/grafana-dashboard.json"),
    )
    .unwrap());
    let families: BTreeSet<String> = agent_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("l2announcer_"))
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| !dashboard.iter().any(|d| d.starts_with(f.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "agent metrics not on the dashboard: {missing:?}"
    );
}

/// `l2announcer_[a-z0-9_]+` occurrences in a text.
fn regex_lite_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("l2announcer_") {
        let start = i + pos;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "l2announcer_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The operator with deploy's operator RBAC: it allocates, writes pool conditions and holds
/// its leader lease without a 403; every request is granted and every grant used.
#[test]
fn operator_works_with_deploy_rbac_and_is_granted_exactly_what_it_uses() {
    let start = SystemTime::now();
    let lab = Lab::new();
    lab.apply(&serde_json::to_string(&l2announcer_api::ip_pool::crd().unwrap()).unwrap());
    lab.pool("ip-pool-eno1", "192.168.3.150", "192.168.3.250", "eno1");
    lab.plain_service("web", "eno1");
    let operator = lab.start_operator(&lab.operator_kubeconfig.clone());
    assert!(
        eventually(Duration::from_secs(20), || lab
            .service_ip("web")
            .starts_with("192.168.3.")),
        "no address allocated:\n{}",
        operator.log_text()
    );
    assert!(
        eventually(Duration::from_secs(10), || lab
            .try_kubectl(
                &[
                    "get",
                    "ciliumloadbalancerippool",
                    "ip-pool-eno1",
                    "-o",
                    "jsonpath={.status.conditions}"
                ],
                None
            )
            .is_ok_and(|c| c.contains("cilium.io/IPsAvailable"))),
        "no pool conditions"
    );
    let holder = lab
        .try_kubectl(
            &[
                "-n",
                NS,
                "get",
                "lease",
                "l2announcer-operator",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        )
        .unwrap_or_default();
    assert_eq!(holder, "operator-1");
    // A renewal or two.
    std::thread::sleep(Duration::from_secs(2));
    drop(operator);
    let requests = lab.requests_of(OPERATOR_USER, start);
    let used = check_audit(&requests, &operator_rbac(), &[]);
    assert!(
        requests
            .iter()
            .filter(|e| e.resource == "leases")
            .all(|e| e.namespace == NS && (e.name.is_empty() || e.name == "l2announcer-operator")),
        "the operator touched another lease"
    );
    eprintln!(
        "rbac: {} requests by the operator, {} distinct (group, resource, verb), none refused",
        requests.len(),
        used.len()
    );
}

/// With each (resource, verb) of the operator's rules taken out in turn, a request the running
/// operator needs is refused.
#[test]
fn every_operator_rule_is_needed() {
    let lab = Lab::new();
    lab.apply(&serde_json::to_string(&l2announcer_api::ip_pool::crd().unwrap()).unwrap());
    lab.pool("ip-pool-eno1", "192.168.3.150", "192.168.3.250", "eno1");
    lab.plain_service("web", "eno1");
    let operator = lab.start_operator(&lab.operator_kubeconfig.clone());
    assert!(
        eventually(Duration::from_secs(20), || lab
            .service_ip("web")
            .starts_with("192.168.3.")),
        "no address allocated:\n{}",
        operator.log_text()
    );
    let rbac = operator_rbac();
    let granted = grants(&rbac);
    let mut report = Vec::new();
    for (n, g) in granted.iter().enumerate() {
        let since = SystemTime::now();
        lab.apply_all(&rbac_without(&rbac, g));
        let began = Instant::now();
        match (g.resource.as_str(), g.verb.as_str()) {
            (_, "list") => {
                lab.kit().faults().compact();
                lab.kit().faults().close_watches();
            }
            (_, "watch") => lab.kit().faults().close_watches(),
            ("leases", "update") => {} // renewals every retry period
            ("leases", "create") => {
                lab.kubectl(&["-n", NS, "delete", "lease", "l2announcer-operator"], None);
            }
            ("ciliumloadbalancerippools/status", "patch") => lab.pool(
                &format!("pool{n}"),
                &format!("10.{n}.0.1"),
                &format!("10.{n}.0.9"),
                &format!("net{n}"),
            ),
            // A Service to allocate for.
            _ => lab.plain_service(&format!("new{n}"), "eno1"),
        }
        let refused = eventually(Duration::from_secs(20), || {
            lab.requests_of(OPERATOR_USER, since).iter().any(|e| {
                e.code == 403
                    && e.verb == g.verb
                    && e.group == g.group
                    && resource_of(e) == g.resource
            })
        });
        assert!(
            refused,
            "without {} {} {}, no request of the operator was refused:\n{}",
            g.verb,
            g.group,
            g.resource,
            operator.log_text()
        );
        report.push(format!(
            "{} {}/{}: refused after {:?}",
            g.verb,
            g.group,
            g.resource,
            began.elapsed()
        ));
        lab.apply_all(&rbac);
    }
    // Restored, the operator still allocates.
    lab.plain_service("after", "eno1");
    assert!(
        eventually(Duration::from_secs(30), || lab
            .service_ip("after")
            .starts_with("192.168.3.")),
        "no allocation after the rules were restored:\n{}",
        operator.log_text()
    );
    eprintln!("{}", report.join("\n"));
    assert_eq!(report.len(), granted.len());
}
