//! The status writes of the operator as pure functions: from the object as last seen and the
//! allocator's decision to a JSON merge patch for the `/status` subresource. Every patch
//! carries the object's `metadata.resourceVersion`, so the API server refuses it (409) when
//! the object changed since: the caller then retries from a fresher copy.
//!
//! A merge patch replaces lists whole, so `conditions` is always sent complete: the object's
//! own conditions of other types are kept, ours replaced in place or appended.

use std::net::IpAddr;

use k8s_openapi::{
    api::core::v1::Service,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use l2announcer_api::ip_pool::{CiliumLoadBalancerIPPool, SERVICE_CONDITION_REQUEST_SATISFIED};
use l2announcer_ipam::Condition as Decided;
use serde_json::{Value, json};

/// The field manager of every write, as Cilium's operator uses: tooling that looks for it
/// finds the same owner.
pub const FIELD_MANAGER: &str = "cilium-operator-lb-ipam";

fn same(decided: &Decided, c: &Condition) -> bool {
    c.type_ == decided.type_
        && c.status == decided.status
        && c.reason == decided.reason
        && c.message == decided.message
}

/// `current` with each decided condition put in place of the one of its type (appended when
/// absent). `lastTransitionTime` is kept while the status does not change.
pub fn merge_conditions(
    current: &[Condition],
    decided: &[Decided],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = current.to_vec();
    for d in decided {
        let existing = out.iter().position(|c| c.type_ == d.type_);
        let last_transition_time = match existing.map(|i| &out[i]) {
            Some(c) if c.status == d.status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        let c = Condition {
            type_: d.type_.clone(),
            status: d.status.clone(),
            reason: d.reason.clone(),
            message: d.message.clone(),
            observed_generation: generation,
            last_transition_time,
        };
        match existing {
            Some(i) => out[i] = c,
            None => out.push(c),
        }
    }
    out
}

fn service_conditions(svc: &Service) -> &[Condition] {
    svc.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

fn resource_version(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Value {
    meta.resource_version
        .as_ref()
        .map_or(Value::Null, |rv| Value::String(rv.clone()))
}

/// The patch that gives `svc` exactly `ips` as `status.loadBalancer.ingress` and the decided
/// `cilium.io/IPAMRequestSatisfied` condition; `None` when it carries them already.
pub fn service_set(svc: &Service, ips: &[IpAddr], decided: &Decided, now: &Time) -> Option<Value> {
    let generation = svc.metadata.generation;
    let wanted: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let current = service_conditions(svc);
    let carries = ingress_ips(svc) == wanted
        && current
            .iter()
            .any(|c| same(decided, c) && c.observed_generation == generation);
    if carries {
        return None;
    }
    let conditions = merge_conditions(current, std::slice::from_ref(decided), generation, now);
    let ingress = if wanted.is_empty() {
        Value::Null
    } else {
        Value::Array(wanted.iter().map(|ip| json!({ "ip": ip })).collect())
    };
    Some(json!({
        "metadata": { "resourceVersion": resource_version(&svc.metadata) },
        "status": {
            "loadBalancer": { "ingress": ingress },
            "conditions": conditions,
        },
    }))
}

/// The patch that removes what the operator set on a Service that left its responsibility:
/// its condition and, if that condition is there (the addresses are ours, not another load
/// balancer controller's), the ingress addresses. `None` when there is nothing to remove.
pub fn service_clear(svc: &Service) -> Option<Value> {
    let current = service_conditions(svc);
    if !current
        .iter()
        .any(|c| c.type_ == SERVICE_CONDITION_REQUEST_SATISFIED)
    {
        return None;
    }
    let kept: Vec<&Condition> = current
        .iter()
        .filter(|c| c.type_ != SERVICE_CONDITION_REQUEST_SATISFIED)
        .collect();
    let conditions = if kept.is_empty() {
        Value::Null
    } else {
        json!(kept)
    };
    Some(json!({
        "metadata": { "resourceVersion": resource_version(&svc.metadata) },
        "status": {
            "loadBalancer": { "ingress": null },
            "conditions": conditions,
        },
    }))
}

/// The patch that sets the decided conditions of a pool (other types kept); `None` when it
/// carries them already.
pub fn pool_conditions(
    pool: &CiliumLoadBalancerIPPool,
    decided: &[Decided],
    now: &Time,
) -> Option<Value> {
    let generation = pool.metadata.generation;
    let current: &[Condition] = pool.status.as_ref().map_or(&[], |s| &s.conditions);
    let carries = decided.iter().all(|d| {
        current
            .iter()
            .any(|c| same(d, c) && c.observed_generation == generation)
    });
    if carries {
        return None;
    }
    let conditions = merge_conditions(current, decided, generation, now);
    Some(json!({
        "metadata": { "resourceVersion": resource_version(&pool.metadata) },
        "status": { "conditions": conditions },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn time(s: &str) -> Time {
        Time(s.parse::<Timestamp>().expect("timestamp"))
    }

    fn decided(status: &str, reason: &str) -> Decided {
        Decided {
            type_: SERVICE_CONDITION_REQUEST_SATISFIED.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
        }
    }

    fn service(json: &str) -> Service {
        serde_json::from_str(json).expect("service JSON")
    }

    const OTHER: &str = r#"{"type": "other.io/Thing", "status": "True", "reason": "x", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}"#;

    #[test]
    fn set_writes_ingress_condition_and_precondition() {
        let svc = service(&format!(
            r#"{{"metadata": {{"name": "s", "namespace": "n", "resourceVersion": "42", "generation": 3}},
                "status": {{"conditions": [{OTHER}]}}}}"#
        ));
        let now = time("2026-02-02T00:00:00Z");
        let ips: Vec<IpAddr> = vec!["192.168.3.150".parse().unwrap()];
        let patch = service_set(&svc, &ips, &decided("True", "satisfied"), &now).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["status"]["loadBalancer"]["ingress"],
            json!([{ "ip": "192.168.3.150" }])
        );
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], "other.io/Thing");
        assert_eq!(conditions[1]["type"], SERVICE_CONDITION_REQUEST_SATISFIED);
        assert_eq!(conditions[1]["reason"], "satisfied");
        assert_eq!(conditions[1]["observedGeneration"], 3);
        assert_eq!(conditions[1]["lastTransitionTime"], "2026-02-02T00:00:00Z");
    }

    #[test]
    fn set_is_skipped_when_the_object_carries_it() {
        let svc = service(
            r#"{"metadata": {"name": "s", "resourceVersion": "5", "generation": 1},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]},
                           "conditions": [{"type": "cilium.io/IPAMRequestSatisfied", "status": "True",
                                           "reason": "satisfied", "message": "", "observedGeneration": 1,
                                           "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}"#,
        );
        let now = time("2026-02-02T00:00:00Z");
        let ip: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
        assert_eq!(
            service_set(&svc, &ip, &decided("True", "satisfied"), &now),
            None
        );
        // Another address, or another reason: written; the transition time moves only
        // when the status does.
        let other: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap()];
        let patch = service_set(&svc, &other, &decided("True", "satisfied"), &now).unwrap();
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        let patch = service_set(&svc, &[], &decided("False", "out_of_ips"), &now).unwrap();
        assert_eq!(patch["status"]["loadBalancer"]["ingress"], Value::Null);
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            "2026-02-02T00:00:00Z"
        );
    }

    #[test]
    fn clear_removes_only_what_is_ours() {
        let ours = service(&format!(
            r#"{{"metadata": {{"name": "s", "resourceVersion": "9"}},
                "status": {{"loadBalancer": {{"ingress": [{{"ip": "10.0.0.1"}}]}},
                           "conditions": [{OTHER}, {{"type": "cilium.io/IPAMRequestSatisfied", "status": "True",
                                           "reason": "satisfied", "message": "",
                                           "lastTransitionTime": "2026-01-01T00:00:00Z"}}]}}}}"#
        ));
        let patch = service_clear(&ours).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "9");
        assert_eq!(patch["status"]["loadBalancer"]["ingress"], Value::Null);
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["type"], "other.io/Thing");
        // Addresses set by another controller, without our condition: left alone.
        let theirs = service(
            r#"{"metadata": {"name": "s", "resourceVersion": "9"},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}"#,
        );
        assert_eq!(service_clear(&theirs), None);
    }

    #[test]
    fn pool_conditions_keep_other_types_and_skip_when_equal() {
        let pool: CiliumLoadBalancerIPPool = serde_json::from_str(&format!(
            r#"{{"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
                "metadata": {{"name": "p", "resourceVersion": "7", "generation": 2}},
                "spec": {{"blocks": []}},
                "status": {{"conditions": [{OTHER}]}}}}"#
        ))
        .unwrap();
        let now = time("2026-02-02T00:00:00Z");
        let decided = vec![Decided {
            type_: "cilium.io/IPsTotal".into(),
            status: "Unknown".into(),
            reason: "noreason".into(),
            message: "101".into(),
        }];
        let patch = pool_conditions(&pool, &decided, &now).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["message"], "101");
        assert_eq!(conditions[1]["observedGeneration"], 2);

        let mut written = pool.clone();
        written.status = Some(serde_json::from_value(patch["status"].clone()).unwrap());
        assert_eq!(pool_conditions(&written, &decided, &now), None);
    }
}
