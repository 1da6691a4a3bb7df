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
