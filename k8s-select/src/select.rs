//! Which IPs a node competes for, on which interfaces, and which nodes compete for each IP.
//!
//! The unit of election is the IP, not the Service: Services that share an IP (LB-IPAM
//! sharing keys, or the same external IP) share one candidacy, so exactly one node answers for
//! it (Cilium elects per Service, cilium#48419).
//!
//! Rules, as Cilium's `pkg/l2announcer` except where noted:
//! - a policy applies on a node when its `nodeSelector` matches the node's labels (nil = all);
//! - it selects a Service when its `serviceSelector` matches the Service's labels plus the
//!   pseudo-labels (nil = all) and the Service's `loadBalancerClass` is unset or
//!   `io.cilium/l2-announcer`;
//! - it announces the Service's LB ingress IPs if `loadBalancerIPs`, its external IPs if
//!   `externalIPs`, on the interfaces its `interfaces` regexes select (empty = all);
//! - with several policies, the union of their IP types × interfaces;
//! - (ours) `externalTrafficPolicy: Local`: a node is eligible for an IP only if one of the
//!   Services it would announce that IP for can serve it there: a `Cluster` Service always, a
//!   `Local` one only with a ready endpoint on the node (or one with no node, see
//!   [`ServiceEndpoints`]). Cilium ignores the traffic policy (cilium#27800).
//!
//! Node eligibility here knows labels and endpoints, not interfaces: whether another node has
//! an interface up that its policies select is only known to that node. A node with no
//! matching interface up should therefore stay out of the election itself (skip the
//! candidacy), and the other nodes' rankings treat it as eligible until its lease shows
//! otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::{EndpointIndex, ServiceEndpoints, ServiceInfo, ServiceKey};
use crate::policy::{Interfaces, PolicyInfo};
use crate::selector::Labels;

/// What one node competes for on one IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidacy {
    /// Services that want this IP announced by this node (by a policy applying here).
    pub services: BTreeSet<ServiceKey>,
    /// Union over the matching policies of their interfaces for this IP.
    pub interfaces: Interfaces,
    /// Every Service on this IP has `externalTrafficPolicy: Local`.
    pub traffic_local: bool,
    /// Nodes eligible for this IP as far as labels and endpoints tell (this node included),
    /// for ranking. Interfaces of other nodes are unknown, so this is a hint: a node in the set
    /// may still not compete.
    pub eligible_nodes: BTreeSet<String>,
}

/// One reason an IP is wanted: a policy announces it for a Service.
#[derive(Debug, Clone)]
struct Want {
    policy: usize,
    service: usize,
}

/// Node-independent part of selection: which (policy, Service) pairs announce which IP.
/// Build it once per change of policies or Services, then ask per node.
#[derive(Debug, Clone)]
pub struct Selection<'a> {
    policies: &'a [PolicyInfo],
    services: &'a [ServiceInfo],
    by_ip: BTreeMap<IpAddr, Vec<Want>>,
}

impl<'a> Selection<'a> {
    pub fn new(policies: &'a [PolicyInfo], services: &'a [ServiceInfo]) -> Selection<'a> {
        let mut by_ip: BTreeMap<IpAddr, Vec<Want>> = BTreeMap::new();
        for (p, policy) in policies.iter().enumerate() {
            for (s, service) in services.iter().enumerate() {
                for ip in policy.announced_ips(service) {
                    by_ip.entry(ip).or_default().push(Want {
                        policy: p,
                        service: s,
                    });
                }
            }
        }
        Selection {
            policies,
            services,
            by_ip,
        }
    }

    /// Every IP some policy announces for some Service, on some node.
    pub fn ips(&self) -> impl Iterator<Item = &IpAddr> {
        self.by_ip.keys()
    }

    /// Whether `node` is eligible for `ip`, and the wants that apply on it.
    fn wants_on_node<'w>(
        &self,
        wants: &'w [Want],
        node: &str,
        node_labels: &Labels,
        endpoints: &EndpointIndex,
    ) -> Option<Vec<&'w Want>> {
        let applying: Vec<&Want> = wants
            .iter()
            .filter(|w| self.policies[w.policy].selects_node(node_labels))
            .collect();
        let servable = applying.iter().any(|w| {
            let service = &self.services[w.service];
            !service.traffic_local
                || endpoints
                    .get(&service.key)
                    .is_some_and(|e: &ServiceEndpoints| e.serves_locally(node))
        });
        servable.then_some(applying)
    }

    /// For each IP, the nodes eligible for it among `nodes` (name → labels): a policy that
    /// applies on the node announces the IP for a Service that the node can serve (see the
    /// module documentation for `Local`). Interfaces are not known here.
    pub fn eligible_nodes(
        &self,
        nodes: &BTreeMap<String, Labels>,
        endpoints: &EndpointIndex,
    ) -> BTreeMap<IpAddr, BTreeSet<String>> {
        self.by_ip
            .iter()
            .map(|(ip, wants)| {
                let eligible = nodes
                    .iter()
                    .filter(|(name, labels)| {
                        self.wants_on_node(wants, name, labels, endpoints).is_some()
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                (*ip, eligible)
            })
            .filter(|(_, eligible): &(IpAddr, BTreeSet<String>)| !eligible.is_empty())
            .collect()
    }

    /// The IPs `node` competes for, with their Services, interfaces and eligible nodes.
    /// `nodes` is the cluster's Node list (for `eligible_nodes`); this node's own labels are
    /// `node_labels`, whether or not it is in `nodes`.
    pub fn candidacies(
        &self,
        node: &str,
        node_labels: &Labels,
        nodes: &BTreeMap<String, Labels>,
        endpoints: &EndpointIndex,
    ) -> BTreeMap<IpAddr, Candidacy> {
        let mut out = BTreeMap::new();
        for (ip, wants) in &self.by_ip {
            let Some(applying) = self.wants_on_node(wants, node, node_labels, endpoints) else {
                continue;
            };
            let mut services = BTreeSet::new();
            let mut interfaces: Option<Interfaces> = None;
            for w in &applying {
                services.insert(self.services[w.service].key.clone());
                let theirs = &self.policies[w.policy].interfaces;
                match &mut interfaces {
                    None => interfaces = Some(theirs.clone()),
                    Some(mine) => mine.union(theirs),
                }
            }
            let Some(interfaces) = interfaces else {
                continue;
            };
            let traffic_local = applying
                .iter()
                .all(|w| self.services[w.service].traffic_local);
            let mut eligible_nodes: BTreeSet<String> = nodes
                .iter()
                .filter(|(name, _)| name.as_str() != node)
                .filter(|(name, labels)| {
                    self.wants_on_node(wants, name, labels, endpoints).is_some()
                })
                .map(|(name, _)| name.clone())
                .collect();
            eligible_nodes.insert(node.to_string());
            out.insert(
                *ip,
                Candidacy {
                    services,
                    interfaces,
                    traffic_local,
                    eligible_nodes,
                },
            );
        }
        out
    }
}

/// All Services selected for announcement anywhere, with the IPs announced for them (for a
/// "no eligible node" report or a Service condition).
pub fn services_by_ip(selection: &Selection<'_>) -> BTreeMap<IpAddr, BTreeSet<ServiceKey>> {
    selection
        .by_ip
        .iter()
        .map(|(ip, wants)| {
            let keys = wants
                .iter()
                .map(|w| selection.services[w.service].key.clone())
                .collect();
            (*ip, keys)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::endpoint_index;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use l2announcer_api::CiliumL2AnnouncementPolicy;
    use serde_json::{Value, json};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(name: &str, spec: Value) -> PolicyInfo {
        PolicyInfo::new(name, &serde_json::from_value(spec).unwrap())
    }

    fn service(v: Value) -> ServiceInfo {
        ServiceInfo::from(&serde_json::from_value::<Service>(v).unwrap())
    }

    /// Candidacies of one node, with no other nodes and no endpoints known.
    fn on_node(
        policies: &[PolicyInfo],
        services: &[ServiceInfo],
        node: &Labels,
    ) -> BTreeMap<IpAddr, Candidacy> {
        Selection::new(policies, services).candidacies(
            "node",
            node,
            &BTreeMap::new(),
            &EndpointIndex::new(),
        )
    }

    fn summary(c: &BTreeMap<IpAddr, Candidacy>) -> Vec<(String, Vec<String>, Option<Vec<String>>)> {
        c.iter()
            .map(|(ip, c)| {
                (
                    ip.to_string(),
                    c.services.iter().map(|k| k.to_string()).collect(),
                    c.interfaces
                        .patterns()
                        .map(|p| p.iter().map(|s| s.to_string()).collect()),
                )
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    // ---- Cilium's l2announcer_test.go cases that concern selection ----

    fn blue_policy() -> Value {
        json!({
            "nodeSelector": {"matchLabels": {"color": "blue"}},
            "serviceSelector": {"matchLabels": {"color": "blue"}},
            "externalIPs": true,
            "interfaces": ["eno01"]
        })
    }

    fn blue_service() -> Value {
        json!({
            "metadata": {"namespace": "default", "name": "blue-service", "labels": {"color": "blue"}},
            "spec": {"externalIPs": ["192.168.2.1"]}
        })
    }

    fn blue_node() -> Labels {
        labels(&[("color", "blue")])
    }

    #[test]
    fn cilium_happy_path() {
        let c = on_node(
            &[policy("blue-policy", blue_policy())],
            &[service(blue_service())],
            &blue_node(),
        );
        assert_eq!(
            summary(&c),
            [(
                "192.168.2.1".into(),
                s(&["default/blue-service"]),
                Some(s(&["eno01"]))
            )]
        );
        let cand = &c[&ip("192.168.2.1")];
        assert!(!cand.traffic_local);
        assert_eq!(cand.eligible_nodes, BTreeSet::from(["node".to_string()]));
    }

    #[test]
    fn cilium_policy_redundancy() {
        let both = [
            policy("blue-policy", blue_policy()),
            policy("second-blue-policy", blue_policy()),
        ];
        let svc = [service(blue_service())];
        let expected = [(
            "192.168.2.1".to_string(),
            s(&["default/blue-service"]),
            Some(s(&["eno01"])),
        )];
        assert_eq!(summary(&on_node(&both, &svc, &blue_node())), expected);
        // Deleting one of the two keeps the service selected.
        assert_eq!(summary(&on_node(&both[..1], &svc, &blue_node())), expected);
    }

    #[test]
    fn cilium_update_host_labels() {
        let mut cyan = blue_policy();
        cyan["nodeSelector"]["matchLabels"] = json!({"hue": "cyan"});
        cyan["serviceSelector"]["matchLabels"] = json!({"hue": "cyan"});
        let policies = [
            policy("blue-policy", blue_policy()),
            policy("cyan-policy", cyan),
        ];
        let mut cyan_svc = blue_service();
        cyan_svc["metadata"]["name"] = json!("cyan-service");
        cyan_svc["metadata"]["labels"] = json!({"hue": "cyan"});
        cyan_svc["spec"]["externalIPs"] = json!(["192.168.2.2"]);
        let services = [service(blue_service()), service(cyan_svc)];
        // NoMatch: the node's label changes so that no policy applies.
        assert!(on_node(&policies, &services, &labels(&[("color", "cyan")])).is_empty());
        // AdditionalMatch: one policy, then both once the node gains the label.
        assert_eq!(on_node(&policies, &services, &blue_node()).len(), 1);
        let both = on_node(
            &policies,
            &services,
            &labels(&[("color", "blue"), ("hue", "cyan")]),
        );
        assert_eq!(
            summary(&both),
            [
                (
                    "192.168.2.1".into(),
                    s(&["default/blue-service"]),
                    Some(s(&["eno01"]))
                ),
                (
                    "192.168.2.2".into(),
                    s(&["default/cyan-service"]),
                    Some(s(&["eno01"]))
                ),
            ]
        );
    }

    #[test]
    fn cilium_update_policy_selectors_and_interfaces() {
        let mut cyan_svc = blue_service();
        cyan_svc["metadata"]["name"] = json!("cyan-service");
        cyan_svc["metadata"]["labels"] = json!({"color": "cyan"});
        cyan_svc["spec"]["externalIPs"] = json!(["192.168.2.2"]);
        let services = [service(blue_service()), service(cyan_svc)];
        // NoMatch: the service selector no longer matches.
        let mut red = blue_policy();
        red["serviceSelector"]["matchLabels"]["color"] = json!("red");
        assert!(on_node(&[policy("p", red)], &services, &blue_node()).is_empty());
        // AdditionalMatch: an In expression selects both.
        let mut either = blue_policy();
        either["serviceSelector"] = json!({"matchExpressions": [{"key": "color", "operator": "In", "values": ["blue", "cyan"]}]});
        assert_eq!(
            on_node(&[policy("p", either)], &services, &blue_node()).len(),
            2
        );
        // ChangeInterfaces: the entry moves to the new interface.
        let mut eth0 = blue_policy();
        eth0["interfaces"] = json!(["eth0"]);
        assert_eq!(
            summary(&on_node(&[policy("p", eth0)], &services, &blue_node())),
            [(
                "192.168.2.1".into(),
                s(&["default/blue-service"]),
                Some(s(&["eth0"]))
            )]
        );
    }

    #[test]
    fn cilium_policy_selection_and_ip_types() {
        let both_types = {
            let mut p = blue_policy();
            p["loadBalancerIPs"] = json!(true);
            policy("p", p)
        };
        let no_types = {
            let mut p = blue_policy();
            p["externalIPs"] = json!(false);
            policy("p", p)
        };
        let lb_only = {
            let mut p = blue_policy();
            p["externalIPs"] = json!(false);
            p["loadBalancerIPs"] = json!(true);
            policy("p", p)
        };
        assert_eq!(
            on_node(
                std::slice::from_ref(&both_types),
                &[service(blue_service())],
                &blue_node()
            )
            .len(),
            1
        );
        // A service with no external IP and no LB IP is never selected.
        let mut bare = blue_service();
        bare["spec"] = json!({});
        assert!(
            on_node(
                std::slice::from_ref(&both_types),
                &[service(bare.clone())],
                &blue_node()
            )
            .is_empty()
        );
        // Neither IP type enabled: nothing, whatever the service has.
        let mut ext = bare.clone();
        ext["spec"]["externalIPs"] = json!(["192.168.2.2"]);
        ext["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.2.7"}]}});
        assert!(
            on_node(
                std::slice::from_ref(&no_types),
                &[service(ext.clone())],
                &blue_node()
            )
            .is_empty()
        );
        // LB IPs only: only the LB IP is announced.
        assert_eq!(
            summary(&on_node(
                std::slice::from_ref(&lb_only),
                &[service(ext.clone())],
                &blue_node()
            )),
            [(
                "192.168.2.7".into(),
                s(&["default/blue-service"]),
                Some(s(&["eno01"]))
            )]
        );
        // A hostname-only or empty LB ingress is no IP.
        for ingress in [json!([{"hostname": "example.com"}]), json!([{"ip": ""}])] {
            let mut svc = bare.clone();
            svc["status"] = json!({"loadBalancer": {"ingress": ingress}});
            assert!(
                on_node(
                    std::slice::from_ref(&lb_only),
                    &[service(svc)],
                    &blue_node()
                )
                .is_empty()
            );
        }
    }

    #[test]
    fn cilium_update_service_ips_labels_and_deletion() {
        let p = [policy("p", blue_policy())];
        let mut two = blue_service();
        two["spec"]["externalIPs"] = json!(["192.168.2.1", "192.168.2.2"]);
        assert_eq!(on_node(&p, &[service(two)], &blue_node()).len(), 2);
        let mut none = blue_service();
        none["spec"]["externalIPs"] = json!([]);
        assert!(on_node(&p, &[service(none)], &blue_node()).is_empty());
        let mut red = blue_service();
        red["metadata"]["labels"]["color"] = json!("red");
        assert!(on_node(&p, &[service(red)], &blue_node()).is_empty());
        assert!(on_node(&p, &[], &blue_node()).is_empty(), "deleted service");
    }

    #[test]
    fn cilium_load_balancer_class() {
        let p = [policy("p", blue_policy())];
        let with_class = |class: &str| {
            let mut svc = blue_service();
            svc["spec"]["loadBalancerClass"] = json!(class);
            on_node(&p, &[service(svc)], &blue_node()).len()
        };
        assert_eq!(with_class("io.cilium/l2-announcer"), 1);
        assert_eq!(with_class("unsupported.io/lb-class"), 0);
        assert_eq!(with_class("io.cilium/bgp-control-plane"), 0);
    }

    // ---- The seed's manifests ----

    const SEED_POLICIES: &str = include_str!("../../tests/fixtures/seed/policies.yaml");

    fn seed_policies() -> Vec<PolicyInfo> {
        SEED_POLICIES
            .split("\n---\n")
            .map(|d| {
                PolicyInfo::from(&serde_yaml::from_str::<CiliumL2AnnouncementPolicy>(d).unwrap())
            })
            .collect()
    }

    /// The seed's Services (`my-service`, `api-internal`, `api-external`), with the addresses
    /// LB-IPAM gives them from the seed's pools.
    fn seed_services() -> Vec<ServiceInfo> {
        [
            ("my-service", "eno1", "192.168.3.150"),
            ("api-internal", "eno1", "192.168.3.151"),
            ("api-external", "eno2", "192.168.4.150"),
        ]
        .iter()
        .map(|(name, iface, addr)| {
            service(json!({
                "metadata": {"namespace": "default", "name": name, "labels": {"network.example.com/interface": iface}},
                "spec": {"type": "LoadBalancer", "selector": {"app": "api"}, "ports": [{"port": 80}]},
                "status": {"loadBalancer": {"ingress": [{"ip": addr, "ipMode": "VIP"}]}}
            }))
        })
        .collect()
    }

    fn seed_nodes() -> BTreeMap<String, Labels> {
        BTreeMap::from([
            (
                "cp-1".to_string(),
                labels(&[
                    ("node.kubernetes.io/control-plane", ""),
                    ("kubernetes.io/hostname", "cp-1"),
                ]),
            ),
            (
                "worker-1".to_string(),
                labels(&[("kubernetes.io/hostname", "worker-1")]),
            ),
            (
                "worker-2".to_string(),
                labels(&[("kubernetes.io/hostname", "worker-2")]),
            ),
        ])
    }

    #[test]
    fn seed_internal_on_all_nodes_public_on_control_plane_only() {
        let (policies, services, nodes) = (seed_policies(), seed_services(), seed_nodes());
        assert!(policies.iter().all(|p| p.problems.is_empty()));
        let sel = Selection::new(&policies, &services);
        let endpoints = EndpointIndex::new();
        let cp = sel.candidacies("cp-1", &nodes["cp-1"], &nodes, &endpoints);
        assert_eq!(
            summary(&cp),
            [
                (
                    "192.168.3.150".into(),
                    s(&["default/my-service"]),
                    Some(s(&["eno1"]))
                ),
                (
                    "192.168.3.151".into(),
                    s(&["default/api-internal"]),
                    Some(s(&["eno1"]))
                ),
                (
                    "192.168.4.150".into(),
                    s(&["default/api-external"]),
                    Some(s(&["eno2"]))
                ),
            ]
        );
        let all: BTreeSet<String> = nodes.keys().cloned().collect();
        assert_eq!(cp[&ip("192.168.3.150")].eligible_nodes, all);
        assert_eq!(
            cp[&ip("192.168.4.150")].eligible_nodes,
            BTreeSet::from(["cp-1".to_string()])
        );
        for worker in ["worker-1", "worker-2"] {
            let w = sel.candidacies(worker, &nodes[worker], &nodes, &endpoints);
            assert_eq!(
                w.keys().map(|i| i.to_string()).collect::<Vec<_>>(),
                ["192.168.3.150", "192.168.3.151"],
                "{worker}"
            );
            assert!(
                w.values()
                    .all(|c| c.interfaces.matches("eno1") && !c.interfaces.matches("eno2"))
            );
        }
        let eligible = sel.eligible_nodes(&nodes, &endpoints);
        assert_eq!(eligible[&ip("192.168.3.151")], all);
        assert_eq!(
            eligible[&ip("192.168.4.150")],
            BTreeSet::from(["cp-1".to_string()])
        );
        // A service labelled for no interface is selected by neither policy.
        let stray = [service(json!({
            "metadata": {"namespace": "default", "name": "stray"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.3.200"}]}}
        }))];
        assert!(
            Selection::new(&policies, &stray)
                .eligible_nodes(&nodes, &endpoints)
                .is_empty()
        );
    }

    // ---- Ours: per-IP election, Local traffic, unions, pseudo-labels, bad policies ----

    #[test]
    fn services_sharing_an_ip_share_one_candidacy() {
        let p = [policy(
            "all",
            json!({"loadBalancerIPs": true, "interfaces": ["eno1"]}),
        )];
        let svc = |name: &str, port: u16| {
            service(json!({
                "metadata": {"namespace": "web", "name": name,
                             "annotations": {"lbipam.cilium.io/sharing-key": "shared"}},
                "spec": {"type": "LoadBalancer", "ports": [{"port": port}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
            }))
        };
        let c = on_node(&p, &[svc("http", 80), svc("dns", 53)], &Labels::new());
        assert_eq!(
            summary(&c),
            [(
                "192.0.2.10".into(),
                s(&["web/dns", "web/http"]),
                Some(s(&["eno1"]))
            )]
        );
    }

    fn local_service(name: &str, addr: &str, local: bool) -> ServiceInfo {
        service(json!({
            "metadata": {"namespace": "web", "name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": if local { "Local" } else { "Cluster" }},
            "status": {"loadBalancer": {"ingress": [{"ip": addr}]}}
        }))
    }

    fn slices(v: Value) -> EndpointIndex {
        endpoint_index(&serde_json::from_value::<Vec<EndpointSlice>>(v).unwrap())
    }

    fn three_nodes() -> BTreeMap<String, Labels> {
        ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), Labels::new()))
            .collect()
    }

    #[test]
    fn local_traffic_needs_a_ready_local_endpoint() {
        let p = [policy("all", json!({"loadBalancerIPs": true}))];
        let services = [local_service("web", "192.0.2.20", true)];
        let sel = Selection::new(&p, &services);
        let nodes = three_nodes();
        let endpoints = slices(json!([{
            "metadata": {"namespace": "web", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.1.1"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.0.2.1"], "nodeName": "n2", "conditions": {"ready": false}}
            ]
        }]));
        let on = |n: &str| sel.candidacies(n, &Labels::new(), &nodes, &endpoints);
        let c1 = on("n1");
        let cand = &c1[&ip("192.0.2.20")];
        assert!(cand.traffic_local);
        assert_eq!(cand.interfaces, Interfaces::All);
        assert_eq!(cand.eligible_nodes, BTreeSet::from(["n1".to_string()]));
        assert!(on("n2").is_empty(), "endpoint not ready");
        assert!(on("n3").is_empty(), "no endpoint");
        assert_eq!(
            sel.eligible_nodes(&nodes, &endpoints)[&ip("192.0.2.20")],
            BTreeSet::from(["n1".to_string()])
        );
        // No endpoints at all: no node is eligible, and the IP has no entry.
        assert!(sel.eligible_nodes(&nodes, &EndpointIndex::new()).is_empty());
        // The same Service with Cluster traffic: every node.
        let cluster = [local_service("web", "192.0.2.20", false)];
        let sel = Selection::new(&p, &cluster);
        assert_eq!(
            sel.eligible_nodes(&nodes, &EndpointIndex::new())[&ip("192.0.2.20")].len(),
            3
        );
        let c3 = sel.candidacies("n3", &Labels::new(), &nodes, &EndpointIndex::new());
        assert!(!c3[&ip("192.0.2.20")].traffic_local);
    }

    #[test]
    fn local_traffic_endpoint_without_node_is_reachable_anywhere() {
        let p = [policy("all", json!({"loadBalancerIPs": true}))];
        let services = [local_service("gateway", "192.0.2.30", true)];
        let endpoints = slices(json!([{
            "metadata": {"namespace": "web", "name": "gw", "labels": {"kubernetes.io/service-name": "gateway"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.192.192.192"], "conditions": {"ready": true}}]
        }]));
        let eligible = Selection::new(&p, &services).eligible_nodes(&three_nodes(), &endpoints);
        assert_eq!(eligible[&ip("192.0.2.30")].len(), 3);
    }

    #[test]
    fn shared_ip_eligibility_is_the_union_over_its_services() {
        let p = [policy("all", json!({"loadBalancerIPs": true}))];
        let endpoints = slices(json!([
            {"metadata": {"namespace": "web", "name": "a-1", "labels": {"kubernetes.io/service-name": "a"}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1"}]},
            {"metadata": {"namespace": "web", "name": "b-1", "labels": {"kubernetes.io/service-name": "b"}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.2"], "nodeName": "n2"}]}
        ]));
        let nodes = three_nodes();
        let both_local = [
            local_service("a", "192.0.2.40", true),
            local_service("b", "192.0.2.40", true),
        ];
        let sel = Selection::new(&p, &both_local);
        let eligible = &sel.eligible_nodes(&nodes, &endpoints)[&ip("192.0.2.40")];
        assert_eq!(
            eligible,
            &BTreeSet::from(["n1".to_string(), "n2".to_string()])
        );
        let c = sel.candidacies("n2", &Labels::new(), &nodes, &endpoints);
        assert_eq!(c[&ip("192.0.2.40")].services.len(), 2);
        assert!(c[&ip("192.0.2.40")].traffic_local);
        // One Cluster Service on the IP makes every node able to serve it.
        let mixed = [
            local_service("a", "192.0.2.40", true),
            local_service("b", "192.0.2.40", false),
        ];
        let sel = Selection::new(&p, &mixed);
        assert_eq!(
            sel.eligible_nodes(&nodes, &endpoints)[&ip("192.0.2.40")].len(),
            3
        );
        assert!(
            !sel.candidacies("n3", &Labels::new(), &nodes, &endpoints)[&ip("192.0.2.40")]
                .traffic_local
        );
    }

    #[test]
    fn several_policies_union_ip_types_and_interfaces() {
        let policies = [
            policy(
                "lb-on-eno1",
                json!({"loadBalancerIPs": true, "interfaces": ["eno1"]}),
            ),
            policy(
                "ext-on-eno2",
                json!({"externalIPs": true, "interfaces": ["eno2", "^bond"]}),
            ),
        ];
        let services = [service(json!({
            "metadata": {"namespace": "d", "name": "s"},
            "spec": {"externalIPs": ["198.51.100.1", "192.0.2.1"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.2"}]}}
        }))];
        assert_eq!(
            summary(&on_node(&policies, &services, &Labels::new())),
            [
                (
                    "192.0.2.1".into(),
                    s(&["d/s"]),
                    Some(s(&["^bond", "eno1", "eno2"]))
                ),
                ("192.0.2.2".into(), s(&["d/s"]), Some(s(&["eno1"]))),
                (
                    "198.51.100.1".into(),
                    s(&["d/s"]),
                    Some(s(&["^bond", "eno2"]))
                ),
            ]
        );
        // A policy with no interface list makes it "all interfaces" for the IPs it announces.
        let with_all = [
            policies[0].clone(),
            policies[1].clone(),
            policy("lb-anywhere", json!({"loadBalancerIPs": true})),
        ];
        let c = on_node(&with_all, &services, &Labels::new());
        assert_eq!(c[&ip("192.0.2.2")].interfaces, Interfaces::All);
        assert_eq!(
            c[&ip("198.51.100.1")].interfaces.patterns(),
            Some(vec!["^bond", "eno2"])
        );
        // A policy that does not apply on this node contributes no interfaces.
        let elsewhere = [
            policies[0].clone(),
            policy(
                "cp-only",
                json!({"loadBalancerIPs": true, "nodeSelector": {"matchLabels": {"cp": ""}}}),
            ),
        ];
        assert_eq!(
            on_node(&elsewhere, &services, &Labels::new())[&ip("192.0.2.2")]
                .interfaces
                .patterns(),
            Some(vec!["eno1"])
        );
    }

    #[test]
    fn pseudo_labels_select_by_namespace_and_name() {
        let services = [
            local_service("web", "192.0.2.1", false),
            service(json!({"metadata": {"namespace": "prod", "name": "web"},
                           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}]}}})),
            service(json!({"metadata": {"namespace": "prod", "name": "db"},
                           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.3"}]}}})),
        ];
        let by_ns = policy(
            "ns",
            json!({"loadBalancerIPs": true,
            "serviceSelector": {"matchLabels": {"io.kubernetes.service.namespace": "prod"}}}),
        );
        assert_eq!(
            on_node(&[by_ns], &services, &Labels::new())
                .keys()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            ["192.0.2.2", "192.0.2.3"]
        );
        let by_name = policy(
            "name",
            json!({"loadBalancerIPs": true, "serviceSelector": {"matchExpressions": [
                {"key": "io.kubernetes.service.name", "operator": "In", "values": ["web"]},
                {"key": "io.kubernetes.service.namespace", "operator": "NotIn", "values": ["web"]}
            ]}}),
        );
        assert_eq!(
            summary(&on_node(&[by_name], &services, &Labels::new())),
            [("192.0.2.2".into(), s(&["prod/web"]), None)]
        );
    }

    #[test]
    fn bad_policies_select_nothing_anywhere() {
        let services = [local_service("web", "192.0.2.1", false)];
        let nodes = three_nodes();
        for spec in [
            json!({"loadBalancerIPs": true, "nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
            json!({"loadBalancerIPs": true, "serviceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}}),
            json!({"loadBalancerIPs": true, "interfaces": ["eno1", "*"]}),
        ] {
            let p = [policy("bad", spec.clone())];
            assert!(!p[0].problems.is_empty(), "{spec}");
            let sel = Selection::new(&p, &services);
            assert!(
                sel.eligible_nodes(&nodes, &EndpointIndex::new()).is_empty(),
                "{spec}"
            );
            assert!(
                sel.candidacies("n1", &Labels::new(), &nodes, &EndpointIndex::new())
                    .is_empty()
            );
            // A good policy next to it still works.
            let with_good = [
                p[0].clone(),
                policy(
                    "good",
                    json!({"loadBalancerIPs": true, "interfaces": ["eno9"]}),
                ),
            ];
            let c = on_node(&with_good, &services, &Labels::new());
            assert_eq!(
                c[&ip("192.0.2.1")].interfaces.patterns(),
                Some(vec!["eno9"])
            );
        }
    }

    #[test]
    fn eligible_nodes_include_this_node_even_if_the_list_lacks_it() {
        let p = [policy("all", json!({"externalIPs": true}))];
        let services = [service(
            json!({"metadata": {"namespace": "d", "name": "s"}, "spec": {"externalIPs": ["2001:db8::1"]}}),
        )];
        let nodes = BTreeMap::from([("other".to_string(), Labels::new())]);
        let c = Selection::new(&p, &services).candidacies(
            "me",
            &Labels::new(),
            &nodes,
            &EndpointIndex::new(),
        );
        assert_eq!(
            c[&ip("2001:db8::1")].eligible_nodes,
            BTreeSet::from(["me".to_string(), "other".to_string()])
        );
        assert_eq!(
            services_by_ip(&Selection::new(&p, &services))[&ip("2001:db8::1")].len(),
            1
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

    fn node_labels() -> impl Strategy<Value = Labels> {
        (any::<bool>(), prop_oneof![Just("a"), Just("b")]).prop_map(|(cp, zone)| {
            let mut l = Labels::from([("zone".to_string(), zone.to_string())]);
            if cp {
                l.insert("cp".into(), String::new());
            }
            l
        })
    }

    fn policy() -> impl Strategy<Value = PolicyInfo> {
        let node_selector = prop_oneof![
            Just(json!(null)),
            Just(json!({"matchLabels": {"zone": "a"}})),
            Just(json!({"matchExpressions": [{"key": "cp", "operator": "Exists"}]})),
            Just(json!({"matchExpressions": [{"key": "cp", "operator": "DoesNotExist"}]})),
            Just(json!({"matchExpressions": [{"key": "cp", "operator": "In"}]})),
        ];
        let service_selector = prop_oneof![
            Just(json!(null)),
            Just(json!({"matchLabels": {"app": "x"}})),
            Just(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]})
            ),
            Just(json!({"matchLabels": {"io.kubernetes.service.name": "s1"}})),
        ];
        let interfaces = prop_oneof![
            Just(json!([])),
            Just(json!(["eno1"])),
            Just(json!(["eno2", "^bond"])),
            Just(json!(["[bad"])),
        ];
        (
            node_selector,
            service_selector,
            any::<bool>(),
            any::<bool>(),
            interfaces,
        )
            .prop_map(|(n, s, lb, ext, i)| {
                PolicyInfo::new(
                    "p",
                    &serde_json::from_value(json!({
                        "nodeSelector": n, "serviceSelector": s,
                        "loadBalancerIPs": lb, "externalIPs": ext, "interfaces": i
                    }))
                    .unwrap(),
                )
            })
    }

    fn ips() -> impl Strategy<Value = Vec<IpAddr>> {
        proptest::collection::vec((1u8..5).prop_map(|i| IpAddr::from([192, 0, 2, i])), 0..3)
    }

    fn services() -> impl Strategy<Value = Vec<ServiceInfo>> {
        proptest::collection::vec(
            (
                prop_oneof![Just("x"), Just("y"), Just("z")],
                prop_oneof![
                    Just(None),
                    Just(Some("io.cilium/l2-announcer")),
                    Just(Some("other"))
                ],
                ips(),
                ips(),
                any::<bool>(),
            ),
            1..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (app, class, lb, ext, local))| ServiceInfo {
                    key: ServiceKey::new("ns", format!("s{i}")),
                    labels: Labels::from([("app".to_string(), app.to_string())]),
                    load_balancer_class: class.map(String::from),
                    lb_ingress_ips: lb,
                    external_ips: ext,
                    traffic_local: local,
                })
                .collect()
        })
    }

    fn universe() -> impl Strategy<
        Value = (
            BTreeMap<String, Labels>,
            Vec<PolicyInfo>,
            Vec<ServiceInfo>,
            EndpointIndex,
        ),
    > {
        (
            proptest::collection::vec(node_labels(), NODES.len()),
            proptest::collection::vec(policy(), 0..4),
            services(),
        )
            .prop_flat_map(|(labels, policies, services)| {
                let n = services.len();
                let endpoints = proptest::collection::vec(
                    (
                        proptest::collection::btree_set(0..NODES.len(), 0..3),
                        any::<bool>(),
                    ),
                    n,
                );
                (Just(labels), Just(policies), Just(services), endpoints)
            })
            .prop_map(|(labels, policies, services, endpoints)| {
                let nodes = NODES.iter().map(|n| n.to_string()).zip(labels).collect();
                let index = services
                    .iter()
                    .zip(endpoints)
                    .map(|(s, (on, nowhere))| {
                        (
                            s.key.clone(),
                            ServiceEndpoints {
                                ready_nodes: on.into_iter().map(|i| NODES[i].to_string()).collect(),
                                ready_without_node: nowhere,
                            },
                        )
                    })
                    .collect();
                (nodes, policies, services, index)
            })
    }

    proptest! {
        /// Every node's own view agrees with the cluster view, and every candidacy is backed
        /// by a policy that applies on the node and a Service of ours that has the IP.
        #[test]
        fn node_view_agrees_with_cluster_view((nodes, policies, services, endpoints) in universe()) {
            let sel = Selection::new(&policies, &services);
            let eligible = sel.eligible_nodes(&nodes, &endpoints);
            for (name, labels) in &nodes {
                let c = sel.candidacies(name, labels, &nodes, &endpoints);
                for ip in sel.ips() {
                    let in_cluster_view = eligible.get(ip).is_some_and(|e| e.contains(name));
                    prop_assert_eq!(c.contains_key(ip), in_cluster_view, "{} {}", name, ip);
                }
                for (ip, cand) in &c {
                    prop_assert_eq!(&cand.eligible_nodes, &eligible[ip]);
                    prop_assert!(!cand.services.is_empty());
                    for key in &cand.services {
                        let svc = services.iter().find(|s| &s.key == key).unwrap();
                        prop_assert!(svc.class_is_ours());
                        prop_assert!(policies.iter().any(|p| p.selects_node(labels) && p.announced_ips(svc).contains(ip)));
                    }
                }
            }
        }

        /// The order in which policies and Services arrive changes nothing (Cilium's
        /// TestHappyPathPermutations, generalised).
        #[test]
        fn order_of_inputs_does_not_matter((nodes, policies, services, endpoints) in universe()) {
            let forward = Selection::new(&policies, &services);
            let rev_p: Vec<_> = policies.iter().rev().cloned().collect();
            let rev_s: Vec<_> = services.iter().rev().cloned().collect();
            let backward = Selection::new(&rev_p, &rev_s);
            prop_assert_eq!(forward.eligible_nodes(&nodes, &endpoints), backward.eligible_nodes(&nodes, &endpoints));
            for (name, labels) in &nodes {
                prop_assert_eq!(
                    forward.candidacies(name, labels, &nodes, &endpoints),
                    backward.candidacies(name, labels, &nodes, &endpoints)
                );
            }
        }
    }
}
