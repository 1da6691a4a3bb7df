//! Thin conversions from the Kubernetes objects to the allocator's plain inputs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use l2announcer_api::ip_pool::{self as api, AllowFirstLastIps, CiliumLoadBalancerIPPool};

use crate::addr::{Block, Family};
use crate::model::{Condition, IpFamilyPolicy, Pool, Port, Service, ServiceKey};
use crate::selector::PoolSelector;

fn created(meta: &ObjectMeta) -> i64 {
    meta.creation_timestamp
        .as_ref()
        .map_or(0, |Time(t)| t.as_second())
}

/// First non-empty value among an annotation and its alias (Cilium's `annotation.Get`).
fn annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    key: &str,
    alias: &str,
) -> Option<&'a str> {
    [key, alias]
        .iter()
        .filter_map(|k| annotations.get(*k))
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
}

/// Builds the allocator's view of a Service. Unparsable requested addresses are ignored, as
/// Cilium does.
pub fn service_from_k8s(svc: &K8sService) -> Service {
    let meta = &svc.metadata;
    let key = ServiceKey::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    );
    let mut out = Service::new(key);
    out.created = created(meta);
    out.labels = meta.labels.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);

    let spec = svc.spec.clone().unwrap_or_default();
    out.load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    out.load_balancer_class = spec.load_balancer_class.clone();

    let mut requested: Vec<IpAddr> = Vec::new();
    let from_spec = spec
        .load_balancer_ip
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let from_annotation = annotation(annotations, api::ANNOTATION_IPS, api::ANNOTATION_IPS_ALIAS);
    let candidates = from_spec
        .into_iter()
        .chain(from_annotation.into_iter().flat_map(|v| v.split(',')));
    for ip in candidates.filter_map(|s| s.trim().parse::<IpAddr>().ok()) {
        if !requested.contains(&ip) {
            requested.push(ip);
        }
    }
    out.requested_ips = requested;

    out.sharing_key = annotation(
        annotations,
        api::ANNOTATION_SHARING_KEY,
        api::ANNOTATION_SHARING_KEY_ALIAS,
    )
    .unwrap_or_default()
    .to_string();
    out.sharing_cross_namespace = annotation(
        annotations,
        api::ANNOTATION_SHARING_CROSS_NAMESPACE,
        api::ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS,
    )
    .map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default();

    out.ip_family_policy = match spec.ip_family_policy.as_deref() {
        Some("SingleStack") => Some(IpFamilyPolicy::SingleStack),
        Some("PreferDualStack") => Some(IpFamilyPolicy::PreferDualStack),
        Some("RequireDualStack") => Some(IpFamilyPolicy::RequireDualStack),
        _ => None,
    };
    out.ip_families = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect();
    out.ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            port: p.port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
        })
        .collect();
    out.external_traffic_local = spec.external_traffic_policy.as_deref() == Some("Local");
    out.selector = spec.selector.clone().unwrap_or_default();

    let status = svc.status.as_ref();
    out.ingress_ips = status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    out.condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == api::SERVICE_CONDITION_REQUEST_SATISFIED)
        .map(|c| Condition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
    out
}

/// Builds the allocator's view of a pool; blocks that cannot be parsed are listed in
/// `invalid_blocks` and allocate nothing.
pub fn pool_from_crd(pool: &CiliumLoadBalancerIPPool) -> Pool {
    let mut out = Pool::new(pool.metadata.name.clone().unwrap_or_default(), Vec::new());
    out.created = created(&pool.metadata);
    for b in &pool.spec.blocks {
        match Block::parse(b.cidr.as_deref(), b.start.as_deref(), b.stop.as_deref()) {
            Ok(block) => out.blocks.push(block),
            Err(e) => out.invalid_blocks.push(e),
        }
    }
    out.allow_first_last = pool.spec.allow_first_last_ips != Some(AllowFirstLastIps::No);
    out.disabled = pool.spec.disabled;
    out.selector = pool.spec.service_selector.as_ref().map(PoolSelector::from);
    out.conditions = pool
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .map(|c| Condition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2announcer_api::ip_pool::{CiliumLoadBalancerIPPoolIPBlock, CiliumLoadBalancerIPPoolSpec};

    fn k8s_service(json: &str) -> K8sService {
        serde_json_from(json)
    }

    fn serde_json_from<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn service_fields_and_annotations() {
        let svc = k8s_service(
            r#"{
            "metadata": {"namespace": "prod", "name": "web", "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"network.example.com/interface": "eno1"},
                "annotations": {"io.cilium/lb-ipam-ips": "10.0.0.5, bad, 2001:db8::5",
                                "lbipam.cilium.io/sharing-key": "k",
                                "lbipam.cilium.io/sharing-cross-namespace": "a, b"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.5", "loadBalancerClass": "io.cilium/l2-announcer",
                "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"],
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                "externalTrafficPolicy": "Local", "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}, {"hostname": "x"}]},
                "conditions": [{"type": "cilium.io/IPAMRequestSatisfied", "status": "True", "reason": "satisfied",
                                "message": "", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}
        }"#,
        );
        let s = service_from_k8s(&svc);
        assert_eq!(s.key, ServiceKey::new("prod", "web"));
        assert_eq!(s.created, 1_767_323_045);
        assert!(s.load_balancer);
        assert_eq!(
            s.load_balancer_class.as_deref(),
            Some("io.cilium/l2-announcer")
        );
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()];
        assert_eq!(s.requested_ips, ips);
        assert_eq!(s.sharing_key, "k");
        assert_eq!(
            s.sharing_cross_namespace,
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(s.ip_family_policy, Some(IpFamilyPolicy::PreferDualStack));
        assert_eq!(s.ip_families, vec![Family::V6, Family::V4]);
        assert_eq!(
            s.ports[0],
            Port {
                port: 80,
                protocol: "TCP".into()
            }
        );
        assert_eq!(
            s.ports[1],
            Port {
                port: 53,
                protocol: "UDP".into()
            }
        );
        assert!(s.external_traffic_local);
        assert_eq!(s.selector["app"], "web");
        assert_eq!(s.ingress_ips, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.condition.unwrap().reason, "satisfied");
    }

    #[test]
    fn primary_annotations_win_over_aliases() {
        let svc = k8s_service(
            r#"{"metadata": {"namespace": "n", "name": "s", "annotations": {
                "lbipam.cilium.io/ips": "10.0.0.1", "io.cilium/lb-ipam-ips": "10.0.0.2",
                "io.cilium/lb-ipam-sharing-key": "alias-key",
                "io.cilium/lb-ipam-sharing-cross-namespace": "*"}},
                "spec": {"type": "ClusterIP"}}"#,
        );
        let s = service_from_k8s(&svc);
        assert_eq!(s.requested_ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.sharing_key, "alias-key");
        assert_eq!(s.sharing_cross_namespace, vec!["*".to_string()]);
        assert!(!s.load_balancer);
    }

    #[test]
    fn pool_fields() {
        let mut pool = CiliumLoadBalancerIPPool::new(
            "p",
            CiliumLoadBalancerIPPoolSpec {
                blocks: vec![
                    CiliumLoadBalancerIPPoolIPBlock {
                        cidr: Some("10.0.0.0/30".into()),
                        start: None,
                        stop: None,
                    },
                    CiliumLoadBalancerIPPoolIPBlock {
                        cidr: Some("".into()),
                        start: Some("10.1.0.1".into()),
                        stop: None,
                    },
                    CiliumLoadBalancerIPPoolIPBlock {
                        cidr: Some("nonsense".into()),
                        start: None,
                        stop: None,
                    },
                ],
                allow_first_last_ips: Some(AllowFirstLastIps::No),
                disabled: true,
                service_selector: Some(Default::default()),
            },
        );
        pool.metadata.creation_timestamp = Some(serde_json_from("\"1970-01-01T00:01:00Z\""));
        let p = pool_from_crd(&pool);
        assert_eq!(p.name, "p");
        assert_eq!(p.created, 60);
        assert_eq!(p.blocks.len(), 2);
        assert_eq!(p.blocks[1].range.size(), 1);
        assert_eq!(p.invalid_blocks.len(), 1);
        assert!(!p.allow_first_last && p.disabled);
        assert_eq!(p.selector, Some(PoolSelector::default()));
        let default = pool_from_crd(&CiliumLoadBalancerIPPool::new("d", Default::default()));
        assert!(default.allow_first_last && !default.disabled && default.selector.is_none());
    }
}
