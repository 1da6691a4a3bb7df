//! A `CiliumL2AnnouncementPolicy` compiled once: its selectors and interface regexes, and
//! what is wrong with it.

use std::collections::BTreeMap;

use l2announcer_api::l2_policy::{CiliumL2AnnouncementPolicy, CiliumL2AnnouncementPolicySpec};
use regex::Regex;

use crate::model::ServiceInfo;
use crate::selector::{Labels, Selector, SelectorError};

/// Interfaces to announce on: every usable one, or those matching any of some regexes.
#[derive(Debug, Clone)]
pub enum Interfaces {
    /// The policy's `interfaces` list is empty: every usable interface.
    All,
    /// Unanchored regexes, OR-ed, keyed by their source text.
    Matching(BTreeMap<String, Regex>),
}

impl PartialEq for Interfaces {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Interfaces::All, Interfaces::All) => true,
            (Interfaces::Matching(a), Interfaces::Matching(b)) => a.keys().eq(b.keys()),
            _ => false,
        }
    }
}

impl Eq for Interfaces {}

impl Interfaces {
    /// Compiles a policy's `interfaces` list (Go `regexp` syntax, which Rust's `regex` shares
    /// for everything but backreferences and lookaround, which RE2 rejects as well).
    pub fn compile(patterns: &[String]) -> Result<Interfaces, regex::Error> {
        if patterns.is_empty() {
            return Ok(Interfaces::All);
        }
        let mut compiled = BTreeMap::new();
        for p in patterns {
            compiled.insert(p.clone(), Regex::new(p)?);
        }
        Ok(Interfaces::Matching(compiled))
    }

    /// Whether an interface name is selected (an unanchored match of any pattern, so `eth0`
    /// also selects `veth0` and `eth0.100`, exactly as in Cilium).
    pub fn matches(&self, ifname: &str) -> bool {
        match self {
            Interfaces::All => true,
            Interfaces::Matching(patterns) => patterns.values().any(|r| r.is_match(ifname)),
        }
    }

    /// The union of two selections: "all" absorbs anything.
    pub fn union(&mut self, other: &Interfaces) {
        match (&mut *self, other) {
            (Interfaces::All, _) => {}
            (_, Interfaces::All) => *self = Interfaces::All,
            (Interfaces::Matching(mine), Interfaces::Matching(theirs)) => {
                for (k, v) in theirs {
                    mine.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }

    /// The pattern texts, `None` meaning all interfaces.
    pub fn patterns(&self) -> Option<Vec<&str>> {
        match self {
            Interfaces::All => None,
            Interfaces::Matching(p) => Some(p.keys().map(String::as_str).collect()),
        }
    }
}

/// What is wrong with a policy, one message per condition type (`None` = fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyProblems {
    /// `io.cilium/bad-node-selector`.
    pub node_selector: Option<String>,
    /// `io.cilium/bad-service-selector`.
    pub service_selector: Option<String>,
    /// `io.cilium/bad-interface-regex`.
    pub interface_regex: Option<String>,
}

impl PolicyProblems {
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none()
            && self.service_selector.is_none()
            && self.interface_regex.is_none()
    }
}

/// A compiled policy. A policy with any problem selects nothing, on any node (Cilium does not
/// apply it either).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInfo {
    pub name: String,
    /// `None`: every node (also when the selector is invalid; see `problems`).
    node_selector: Option<Selector>,
    /// `None`: every Service (also when the selector is invalid; see `problems`).
    service_selector: Option<Selector>,
    pub load_balancer_ips: bool,
    pub external_ips: bool,
    pub interfaces: Interfaces,
    pub problems: PolicyProblems,
}

impl PolicyInfo {
    pub fn new(name: impl Into<String>, spec: &CiliumL2AnnouncementPolicySpec) -> PolicyInfo {
        let mut problems = PolicyProblems::default();
        let node_selector =
            compile_optional(spec.node_selector.as_ref(), &mut problems.node_selector);
        let service_selector = compile_optional(
            spec.service_selector.as_ref(),
            &mut problems.service_selector,
        );
        let interfaces = match Interfaces::compile(&spec.interfaces) {
            Ok(i) => i,
            Err(e) => {
                problems.interface_regex = Some(e.to_string());
                Interfaces::Matching(BTreeMap::new())
            }
        };
        PolicyInfo {
            name: name.into(),
            node_selector,
            service_selector,
            load_balancer_ips: spec.load_balancer_ips,
            external_ips: spec.external_ips,
            interfaces,
            problems,
        }
    }

    /// Whether the policy applies on a node with these labels.
    pub fn selects_node(&self, node_labels: &Labels) -> bool {
        self.problems.is_empty()
            && self
                .node_selector
                .as_ref()
                .is_none_or(|s| s.matches(node_labels))
    }

    /// Whether the policy selects a Service: its selector matches the Service's labels plus
    /// pseudo-labels and the Service's load-balancer class is ours. (Whether the Service has an
    /// address of an enabled type is [`PolicyInfo::announced_ips`].)
    pub fn selects_service(&self, service: &ServiceInfo) -> bool {
        self.problems.is_empty()
            && service.class_is_ours()
            && self
                .service_selector
                .as_ref()
                .is_none_or(|s| s.matches(&service.selection_labels()))
    }

    /// The addresses of `service` this policy announces: its LB ingress IPs if
    /// `loadBalancerIPs`, its external IPs if `externalIPs`; nothing if it does not select
    /// the Service.
    pub fn announced_ips(&self, service: &ServiceInfo) -> Vec<std::net::IpAddr> {
        if !self.selects_service(service) {
            return Vec::new();
        }
        let mut ips = Vec::new();
        if self.load_balancer_ips {
            ips.extend(&service.lb_ingress_ips);
        }
        if self.external_ips {
            ips.extend(&service.external_ips);
        }
        ips.sort();
        ips.dedup();
        ips
    }
}

impl From<&CiliumL2AnnouncementPolicy> for PolicyInfo {
    fn from(p: &CiliumL2AnnouncementPolicy) -> Self {
        PolicyInfo::new(p.metadata.name.clone().unwrap_or_default(), &p.spec)
    }
}

fn compile_optional(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    problem: &mut Option<String>,
) -> Option<Selector> {
    match selector.map(Selector::new) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            *problem = Some(e.to_string());
            None
        }
    }
}

/// Whether a policy applies on a node with these labels: a nil `nodeSelector` selects every
/// node; a selector Kubernetes cannot build is an error (the `io.cilium/bad-node-selector`
/// condition), and such a policy selects nothing.
pub fn policy_selects_node(
    spec: &CiliumL2AnnouncementPolicySpec,
    node_labels: &Labels,
) -> Result<bool, SelectorError> {
    crate::selector::matches_optional(spec.node_selector.as_ref(), node_labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceKey;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> CiliumL2AnnouncementPolicySpec {
        serde_json::from_value(v).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_selection() {
        let blue = spec(json!({"nodeSelector": {"matchLabels": {"color": "blue"}}}));
        assert_eq!(
            policy_selects_node(&blue, &labels(&[("color", "blue")])),
            Ok(true)
        );
        assert_eq!(
            policy_selects_node(&blue, &labels(&[("color", "cyan")])),
            Ok(false)
        );
        let none = spec(json!({}));
        assert_eq!(policy_selects_node(&none, &Labels::new()), Ok(true));
        let bad =
            spec(json!({"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}));
        assert!(policy_selects_node(&bad, &labels(&[("a", "b")])).is_err());
        let info = PolicyInfo::new("bad", &bad);
        assert!(info.problems.node_selector.is_some());
        assert!(!info.selects_node(&labels(&[("a", "b")])));
        assert!(
            !info.selects_node(&Labels::new()),
            "a bad policy selects no node"
        );
    }

    #[test]
    fn interfaces_are_unanchored_ored_regexes() {
        let all = Interfaces::compile(&[]).unwrap();
        assert!(all.matches("eno1") && all.matches("anything"));
        assert_eq!(all.patterns(), None);
        let i = Interfaces::compile(&["eth0".into(), "^eno[0-9]+$".into()]).unwrap();
        for yes in ["eth0", "veth0", "eth0.100", "eno1", "eno12"] {
            assert!(i.matches(yes), "{yes}");
        }
        for no in ["eth1", "eno", "eno1.5", "lo"] {
            assert!(!i.matches(no), "{no}");
        }
        // Go RE2 classes compile.
        assert!(
            Interfaces::compile(&[r"^en\w+\d$".into()])
                .unwrap()
                .matches("enp3s0")
        );
        assert!(Interfaces::compile(&["[a".into()]).is_err());
        assert!(
            Interfaces::compile(&["(?=x)".into()]).is_err(),
            "lookahead is not RE2"
        );
    }

    #[test]
    fn interface_union() {
        let mut a = Interfaces::compile(&["eno1".into()]).unwrap();
        a.union(&Interfaces::compile(&["eno2".into(), "eno1".into()]).unwrap());
        assert_eq!(a.patterns(), Some(vec!["eno1", "eno2"]));
        a.union(&Interfaces::All);
        assert_eq!(a, Interfaces::All);
        a.union(&Interfaces::compile(&["x".into()]).unwrap());
        assert_eq!(a, Interfaces::All);
    }

    #[test]
    fn bad_regex_is_a_problem_and_selects_nothing() {
        let p = PolicyInfo::new(
            "p",
            &spec(json!({"interfaces": ["eno1", "[a"], "externalIPs": true})),
        );
        assert!(
            p.problems
                .interface_regex
                .as_deref()
                .unwrap()
                .contains("[a")
        );
        assert!(p.problems.node_selector.is_none() && p.problems.service_selector.is_none());
        assert!(!p.selects_node(&Labels::new()));
        let svc = ServiceInfo {
            key: ServiceKey::new("d", "s"),
            external_ips: vec!["192.0.2.1".parse().unwrap()],
            ..Default::default()
        };
        assert!(p.announced_ips(&svc).is_empty());
    }

    #[test]
    fn ip_type_switches() {
        let svc = ServiceInfo {
            key: ServiceKey::new("d", "s"),
            lb_ingress_ips: vec!["192.0.2.1".parse().unwrap()],
            external_ips: vec![
                "198.51.100.1".parse().unwrap(),
                "192.0.2.1".parse().unwrap(),
            ],
            ..Default::default()
        };
        let ips = |lb: bool, ext: bool| {
            PolicyInfo::new(
                "p",
                &spec(json!({"loadBalancerIPs": lb, "externalIPs": ext})),
            )
            .announced_ips(&svc)
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
        };
        assert_eq!(ips(false, false), Vec::<String>::new());
        assert_eq!(ips(true, false), ["192.0.2.1"]);
        assert_eq!(ips(false, true), ["192.0.2.1", "198.51.100.1"]);
        assert_eq!(ips(true, true), ["192.0.2.1", "198.51.100.1"]);
    }
}
