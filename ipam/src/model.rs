//! The allocator's inputs as plain Rust: configuration, pools and services.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addr::{Block, BlockError, Family};
use crate::selector::PoolSelector;

/// Default load balancer class handled besides class-less services.
pub const L2_ANNOUNCER_CLASS: &str = "io.cilium/l2-announcer";

/// Which services the allocator is responsible for, and which families are enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Take `type: LoadBalancer` services without `loadBalancerClass`
    /// (Cilium's `--default-lb-service-ipam=lbipam`).
    pub classless: bool,
    /// `loadBalancerClass` values taken.
    pub classes: BTreeSet<String>,
    pub ipv4_enabled: bool,
    pub ipv6_enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            classless: true,
            classes: BTreeSet::from([L2_ANNOUNCER_CLASS.to_string()]),
            ipv4_enabled: true,
            ipv6_enabled: true,
        }
    }
}

/// `namespace/name` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamilyPolicy {
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

/// A condition as observed on an object or decided by the allocator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// One service port, for the sharing rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub port: i32,
    /// `TCP` when unset.
    pub protocol: String,
}

/// What the allocator needs to know about a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    /// Creation time in seconds since the epoch: older services win ties and go first.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// `spec.type == LoadBalancer`.
    pub load_balancer: bool,
    pub load_balancer_class: Option<String>,
    /// `spec.loadBalancerIP` and the `lbipam.cilium.io/ips` annotation, deduplicated.
    pub requested_ips: Vec<IpAddr>,
    /// `lbipam.cilium.io/sharing-key`, empty when unset.
    pub sharing_key: String,
    /// `lbipam.cilium.io/sharing-cross-namespace`: namespaces or `*`.
    pub sharing_cross_namespace: Vec<String>,
    pub ip_family_policy: Option<IpFamilyPolicy>,
    pub ip_families: Vec<Family>,
    pub ports: Vec<Port>,
    /// `externalTrafficPolicy: Local`.
    pub external_traffic_local: bool,
    pub selector: BTreeMap<String, String>,
    /// Addresses in `status.loadBalancer.ingress[].ip` now: the restart state.
    pub ingress_ips: Vec<IpAddr>,
    /// `cilium.io/IPAMRequestSatisfied` as it is on the object now.
    pub condition: Option<Condition>,
}

impl Service {
    /// A class-less `type: LoadBalancer` service with nothing else set.
    pub fn new(key: ServiceKey) -> Service {
        Service {
            key,
            created: 0,
            labels: BTreeMap::new(),
            load_balancer: true,
            load_balancer_class: None,
            requested_ips: Vec::new(),
            sharing_key: String::new(),
            sharing_cross_namespace: Vec::new(),
            ip_family_policy: None,
            ip_families: Vec::new(),
            ports: Vec::new(),
            external_traffic_local: false,
            selector: BTreeMap::new(),
            ingress_ips: Vec::new(),
            condition: None,
        }
    }

    /// Labels plus the `io.kubernetes.service.{namespace,name}` pseudo-labels pools select on.
    pub fn selectable_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(
            l2announcer_api::ip_pool::LABEL_SERVICE_NAME.to_string(),
            self.key.name.clone(),
        );
        l.insert(
            l2announcer_api::ip_pool::LABEL_SERVICE_NAMESPACE.to_string(),
            self.key.namespace.clone(),
        );
        l
    }

    /// Whether the allocator is responsible for this service (`isResponsibleForSVC`).
    pub fn is_responsible(&self, config: &Config) -> bool {
        self.load_balancer
            && match &self.load_balancer_class {
                None => config.classless,
                Some(class) => config.classes.contains(class),
            }
    }

    /// Families the service asks for when it requests no specific address
    /// (`serviceIPFamilyRequest`).
    pub fn requested_families(&self, config: &Config) -> FamilyRequest {
        let first_enabled = || {
            if config.ipv4_enabled {
                FamilyRequest {
                    v4: true,
                    v6: false,
                }
            } else {
                FamilyRequest {
                    v4: false,
                    v6: config.ipv6_enabled,
                }
            }
        };
        let single = |f: Family| FamilyRequest {
            v4: f == Family::V4,
            v6: f == Family::V6,
        };
        let both = FamilyRequest {
            v4: config.ipv4_enabled,
            v6: config.ipv6_enabled,
        };
        match self.ip_family_policy {
            None | Some(IpFamilyPolicy::SingleStack) => self
                .ip_families
                .first()
                .map_or_else(first_enabled, |&f| single(f)),
            Some(IpFamilyPolicy::PreferDualStack) if !self.ip_families.is_empty() => {
                FamilyRequest {
                    v4: config.ipv4_enabled && self.ip_families.contains(&Family::V4),
                    v6: config.ipv6_enabled && self.ip_families.contains(&Family::V6),
                }
            }
            Some(IpFamilyPolicy::PreferDualStack) | Some(IpFamilyPolicy::RequireDualStack) => both,
        }
    }

    /// Whether `self` and `other` may share an address (`isCompatible`); the reason if not.
    pub fn sharing_incompatibility(&self, other: &Service) -> Option<&'static str> {
        if self.sharing_key.is_empty() || self.sharing_key != other.sharing_key {
            return Some("different sharing key");
        }
        let allows = |s: &Service, ns: &str| {
            s.sharing_cross_namespace
                .iter()
                .any(|n| n == ns || n == "*")
        };
        if self.key.namespace != other.key.namespace
            && !(allows(self, &other.key.namespace) && allows(other, &self.key.namespace))
        {
            return Some("different and not permitted namespace");
        }
        if self.ports.iter().any(|p| other.ports.contains(p)) {
            return Some("same port and protocol");
        }
        if self.external_traffic_local != other.external_traffic_local {
            return Some("different ExternalTrafficPolicy");
        }
        if self.external_traffic_local
            && (self.selector.is_empty()
                || other.selector.is_empty()
                || self.selector != other.selector)
        {
            return Some("ExternalTrafficPolicy local but selecting different set of pods");
        }
        None
    }
}

/// Families a service wants when it requests no specific address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyRequest {
    pub v4: bool,
    pub v6: bool,
}

impl FamilyRequest {
    pub fn wants(&self, f: Family) -> bool {
        match f {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// What the allocator needs to know about a `CiliumLoadBalancerIPPool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// Creation time in seconds since the epoch: of two overlapping pools the newer conflicts.
    pub created: i64,
    /// Valid blocks, in spec order.
    pub blocks: Vec<Block>,
    /// Blocks that could not be parsed, with the error; they allocate nothing.
    pub invalid_blocks: Vec<BlockError>,
    /// `allowFirstLastIPs` is not `No`.
    pub allow_first_last: bool,
    pub disabled: bool,
    /// `None` selects every service.
    pub selector: Option<PoolSelector>,
    /// Conditions as they are on the object now.
    pub conditions: Vec<Condition>,
}

impl Pool {
    /// An enabled pool selecting every service, with the given blocks.
    pub fn new(name: impl Into<String>, blocks: Vec<Block>) -> Pool {
        Pool {
            name: name.into(),
            created: 0,
            blocks,
            invalid_blocks: Vec::new(),
            allow_first_last: true,
            disabled: false,
            selector: None,
            conditions: Vec::new(),
        }
    }

    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> Service {
        Service::new(ServiceKey::new(ns, name))
    }

    #[test]
    fn responsibility_follows_type_and_class() {
        let config = Config::default();
        let mut s = svc("a", "b");
        assert!(s.is_responsible(&config));
        s.load_balancer_class = Some(L2_ANNOUNCER_CLASS.into());
        assert!(s.is_responsible(&config));
        s.load_balancer_class = Some("io.cilium/bgp-control-plane".into());
        assert!(!s.is_responsible(&config));
        s.load_balancer_class = None;
        assert!(!s.is_responsible(&Config {
            classless: false,
            ..Config::default()
        }));
        s.load_balancer = false;
        assert!(!s.is_responsible(&config));
    }

    #[test]
    fn family_requests_follow_cilium() {
        let all = Config::default();
        let v6_only = Config {
            ipv4_enabled: false,
            ..Config::default()
        };
        let v4_only = Config {
            ipv6_enabled: false,
            ..Config::default()
        };
        let req = |v4, v6| FamilyRequest { v4, v6 };
        let mut s = svc("a", "b");
        assert_eq!(s.requested_families(&all), req(true, false));
        assert_eq!(s.requested_families(&v6_only), req(false, true));
        s.ip_families = vec![Family::V6, Family::V4];
        assert_eq!(s.requested_families(&all), req(false, true));
        s.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
        assert_eq!(s.requested_families(&all), req(false, true));
        s.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
        assert_eq!(s.requested_families(&all), req(true, true));
        assert_eq!(s.requested_families(&v4_only), req(true, false));
        s.ip_families = vec![Family::V4];
        assert_eq!(s.requested_families(&all), req(true, false));
        s.ip_families = vec![];
        assert_eq!(s.requested_families(&all), req(true, true));
        s.ip_family_policy = Some(IpFamilyPolicy::RequireDualStack);
        s.ip_families = vec![Family::V4];
        assert_eq!(s.requested_families(&all), req(true, true));
        assert_eq!(s.requested_families(&v6_only), req(false, true));
    }

    #[test]
    fn sharing_rules() {
        let mut a = svc("ns", "a");
        let mut b = svc("ns", "b");
        assert_eq!(a.sharing_incompatibility(&b), Some("different sharing key"));
        a.sharing_key = "k".into();
        b.sharing_key = "k".into();
        assert_eq!(a.sharing_incompatibility(&b), None);
        a.ports = vec![Port {
            port: 80,
            protocol: "TCP".into(),
        }];
        b.ports = vec![Port {
            port: 80,
            protocol: "UDP".into(),
        }];
        assert_eq!(a.sharing_incompatibility(&b), None);
        b.ports.push(Port {
            port: 80,
            protocol: "TCP".into(),
        });
        assert_eq!(
            a.sharing_incompatibility(&b),
            Some("same port and protocol")
        );
        b.ports.pop();
        b.external_traffic_local = true;
        assert_eq!(
            a.sharing_incompatibility(&b),
            Some("different ExternalTrafficPolicy")
        );
        a.external_traffic_local = true;
        assert_eq!(
            a.sharing_incompatibility(&b),
            Some("ExternalTrafficPolicy local but selecting different set of pods")
        );
        a.selector = BTreeMap::from([("app".into(), "x".into())]);
        b.selector = a.selector.clone();
        assert_eq!(a.sharing_incompatibility(&b), None);
        b.selector.insert("tier".into(), "y".into());
        assert!(a.sharing_incompatibility(&b).is_some());
    }

    #[test]
    fn cross_namespace_sharing_needs_both_sides() {
        let mut a = svc("ns1", "a");
        let mut b = svc("ns2", "b");
        a.sharing_key = "k".into();
        b.sharing_key = "k".into();
        assert_eq!(
            a.sharing_incompatibility(&b),
            Some("different and not permitted namespace")
        );
        a.sharing_cross_namespace = vec!["ns2".into()];
        assert_eq!(
            a.sharing_incompatibility(&b),
            Some("different and not permitted namespace")
        );
        assert_eq!(
            b.sharing_incompatibility(&a),
            Some("different and not permitted namespace")
        );
        b.sharing_cross_namespace = vec!["*".into()];
        assert_eq!(a.sharing_incompatibility(&b), None);
        assert_eq!(b.sharing_incompatibility(&a), None);
    }

    #[test]
    fn pseudo_labels_override_real_ones() {
        let mut s = svc("prod", "web");
        s.labels
            .insert("io.kubernetes.service.name".into(), "fake".into());
        let l = s.selectable_labels();
        assert_eq!(l["io.kubernetes.service.name"], "web");
        assert_eq!(l["io.kubernetes.service.namespace"], "prod");
    }
}
