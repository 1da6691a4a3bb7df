//! The inputs of selection as plain Rust values, with thin conversions from the Kubernetes
//! objects they come from.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use l2announcer_api::l2_policy::L2_ANNOUNCER_LOAD_BALANCER_CLASS;

use crate::selector::Labels;

/// Pseudo-label carrying a Service's namespace, matched by `serviceSelector`.
pub const LABEL_SERVICE_NAMESPACE: &str = "io.kubernetes.service.namespace";
/// Pseudo-label carrying a Service's name, matched by `serviceSelector`.
pub const LABEL_SERVICE_NAME: &str = "io.kubernetes.service.name";
/// Label of an EndpointSlice naming the Service it belongs to.
pub const LABEL_ENDPOINTSLICE_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Identifies a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What selection needs to know about a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    pub key: ServiceKey,
    pub labels: Labels,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `status.loadBalancer.ingress[].ip`; empty entries, hostnames and unparsable text are
    /// left out (Cilium skips them too).
    pub lb_ingress_ips: Vec<IpAddr>,
    /// `spec.externalIPs` that parse as addresses.
    pub external_ips: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy == Local`.
    pub traffic_local: bool,
}

impl From<&Service> for ServiceInfo {
    fn from(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        let lb_ingress_ips = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref())
            .filter_map(parse_ip)
            .collect();
        let external_ips = spec
            .and_then(|s| s.external_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| parse_ip(ip))
            .collect();
        ServiceInfo {
            key: ServiceKey::new(
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            ),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
            load_balancer_class: spec.and_then(|s| s.load_balancer_class.clone()),
            lb_ingress_ips,
            external_ips,
            traffic_local: spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local"),
        }
    }
}

impl ServiceInfo {
    /// The Service's labels plus the pseudo-labels for its namespace and name, which override
    /// real labels of the same keys (as in Cilium's `svcAndMetaLabels`).
    pub fn selection_labels(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels.insert(LABEL_SERVICE_NAMESPACE.into(), self.key.namespace.clone());
        labels.insert(LABEL_SERVICE_NAME.into(), self.key.name.clone());
        labels
    }

    /// `loadBalancerClass` unset or `io.cilium/l2-announcer`; any other class belongs to
    /// another implementation and is never announced.
    pub fn class_is_ours(&self) -> bool {
        self.load_balancer_class
            .as_deref()
            .is_none_or(|c| c == L2_ANNOUNCER_LOAD_BALANCER_CLASS)
    }
}

/// Parses an address in the form the API server admits for `externalIPs` and ingress IPs
/// (no zone, no leading zeros); anything else is skipped, as Cilium skips what
/// `netip.ParseAddr` rejects.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// A Node's name and labels.
pub fn node_labels(node: &Node) -> (String, Labels) {
    (
        node.metadata.name.clone().unwrap_or_default(),
        node.metadata.labels.clone().unwrap_or_default(),
    )
}

/// Where the ready endpoints of one Service run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    /// Nodes with at least one ready endpoint (`conditions.ready` not `false`, per the API:
    /// unknown readiness counts as ready).
    pub ready_nodes: BTreeSet<String>,
    /// A ready endpoint has no `nodeName` (e.g. an external or synthetic backend, such as
    /// the one Cilium's Gateway API and Ingress Services use). Such an endpoint is reachable
    /// from any node, so it makes every node eligible under `externalTrafficPolicy: Local`.
    pub ready_without_node: bool,
}

impl ServiceEndpoints {
    /// Whether a node can serve `Local` traffic for this Service.
    pub fn serves_locally(&self, node: &str) -> bool {
        self.ready_without_node || self.ready_nodes.contains(node)
    }
}

/// Ready endpoints by Service, from all EndpointSlices (a Service may have several).
pub type EndpointIndex = BTreeMap<ServiceKey, ServiceEndpoints>;

/// Builds the [`EndpointIndex`] from EndpointSlices; slices without the
/// `kubernetes.io/service-name` label or namespace belong to no Service and are skipped.
pub fn endpoint_index<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> EndpointIndex {
    let mut index = EndpointIndex::new();
    for slice in slices {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_ENDPOINTSLICE_SERVICE_NAME));
        let (Some(service), Some(namespace)) = (service, slice.metadata.namespace.as_ref()) else {
            continue;
        };
        let entry = index
            .entry(ServiceKey::new(namespace.clone(), service.clone()))
            .or_default();
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready {
                continue;
            }
            match &endpoint.node_name {
                Some(node) if !node.is_empty() => {
                    entry.ready_nodes.insert(node.clone());
                }
                _ => entry.ready_without_node = true,
            }
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> ServiceInfo {
        ServiceInfo::from(&serde_json::from_value::<Service>(value).unwrap())
    }

    #[test]
    fn service_conversion_reads_ips_class_and_traffic_policy() {
        let info = service(json!({
            "metadata": {"namespace": "web", "name": "api", "labels": {"a": "b"}},
            "spec": {
                "type": "LoadBalancer",
                "externalIPs": ["198.51.100.7", "not-an-ip", "2001:db8::7"],
                "externalTrafficPolicy": "Local",
                "loadBalancerClass": "io.cilium/l2-announcer"
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "192.0.2.10"}, {"hostname": "lb.example.com"}, {"ip": ""}, {"ip": "2001:db8::10"}
            ]}}
        }));
        assert_eq!(info.key, ServiceKey::new("web", "api"));
        assert_eq!(info.labels["a"], "b");
        assert_eq!(
            info.lb_ingress_ips,
            [
                "192.0.2.10".parse::<IpAddr>().unwrap(),
                "2001:db8::10".parse().unwrap()
            ]
        );
        assert_eq!(
            info.external_ips,
            [
                "198.51.100.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert!(info.traffic_local);
        assert!(info.class_is_ours());

        let bare = service(json!({"metadata": {"name": "x"}}));
        assert_eq!(bare.key, ServiceKey::new("", "x"));
        assert!(bare.lb_ingress_ips.is_empty() && bare.external_ips.is_empty());
        assert!(!bare.traffic_local);
        assert!(bare.class_is_ours());
        let cluster = service(
            json!({"metadata": {"name": "x"}, "spec": {"externalTrafficPolicy": "Cluster", "loadBalancerClass": "io.cilium/bgp-control-plane"}}),
        );
        assert!(!cluster.traffic_local);
        assert!(!cluster.class_is_ours());
    }

    #[test]
    fn pseudo_labels_are_added_and_win() {
        let info = ServiceInfo {
            key: ServiceKey::new("prod", "web"),
            labels: [
                (
                    "io.kubernetes.service.name".to_string(),
                    "spoofed".to_string(),
                ),
                ("tier".to_string(), "front".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let l = info.selection_labels();
        assert_eq!(l[LABEL_SERVICE_NAMESPACE], "prod");
        assert_eq!(l[LABEL_SERVICE_NAME], "web");
        assert_eq!(l["tier"], "front");
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn endpoint_index_keeps_ready_endpoints_by_node() {
        let slices: Vec<EndpointSlice> = serde_json::from_value(json!([
            {"metadata": {"namespace": "web", "name": "api-abc", "labels": {"kubernetes.io/service-name": "api"}},
             "addressType": "IPv4",
             "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "nodeName": "n2", "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "nodeName": "n3"},
                {"addresses": ["10.0.0.4"], "nodeName": "n4", "conditions": {}}
             ]},
            {"metadata": {"namespace": "web", "name": "api-def", "labels": {"kubernetes.io/service-name": "api"}},
             "addressType": "IPv6",
             "endpoints": [{"addresses": ["fd00::5"], "nodeName": "n5", "conditions": {"ready": true}}]},
            {"metadata": {"namespace": "web", "name": "gw", "labels": {"kubernetes.io/service-name": "gateway"}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": ["192.192.192.192"], "conditions": {"ready": true}}]},
            {"metadata": {"namespace": "web", "name": "orphan"}, "addressType": "IPv4",
             "endpoints": [{"addresses": ["10.0.0.9"], "nodeName": "n9"}]},
            {"metadata": {"namespace": "web", "name": "empty", "labels": {"kubernetes.io/service-name": "idle"}},
             "addressType": "IPv4", "endpoints": []}
        ]))
        .unwrap();
        let index = endpoint_index(&slices);
        let api = &index[&ServiceKey::new("web", "api")];
        let nodes: Vec<_> = api.ready_nodes.iter().map(String::as_str).collect();
        assert_eq!(nodes, ["n1", "n3", "n4", "n5"]);
        assert!(!api.ready_without_node);
        assert!(api.serves_locally("n1") && !api.serves_locally("n2"));
        let gw = &index[&ServiceKey::new("web", "gateway")];
        assert!(gw.ready_without_node && gw.serves_locally("any"));
        let idle = &index[&ServiceKey::new("web", "idle")];
        assert!(!idle.serves_locally("n1"));
        assert_eq!(index.len(), 3);
    }
}
