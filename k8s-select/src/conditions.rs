//! The status conditions a policy should carry, computed the same way on every node.
//!
//! As Cilium (`updatePolicyStatus`): one condition per problem type
//! (`io.cilium/bad-node-selector`, `io.cilium/bad-service-selector`,
//! `io.cilium/bad-interface-regex`), reason `error`; status `True` with the error text as
//! message while the problem exists; once fixed, an existing condition turns `False` with an
//! empty message, and a condition that never existed is not added. Conditions of other types
//! are kept as they are.
//!
//! Unlike Cilium, the result does not depend on the node (Cilium checks the interface regexes
//! and the service selector only on nodes the policy selects) and `lastTransitionTime` only
//! moves when the status changes, so all nodes compute the same conditions and
//! [`conditions_need_update`] is false everywhere once one node has written them: no node
//! rewrites them in a loop.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use l2announcer_api::l2_policy::{
    CONDITION_BAD_INTERFACE_REGEX, CONDITION_BAD_NODE_SELECTOR, CONDITION_BAD_SERVICE_SELECTOR,
    CONDITION_REASON_ERROR,
};

use crate::policy::PolicyProblems;

/// The conditions the policy should carry, given its current ones, its problems, its
/// `metadata.generation` and the time now (used only for conditions whose status changes).
pub fn desired_conditions(
    current: &[Condition],
    problems: &PolicyProblems,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out = current.to_vec();
    for (type_, problem) in [
        (CONDITION_BAD_NODE_SELECTOR, &problems.node_selector),
        (CONDITION_BAD_SERVICE_SELECTOR, &problems.service_selector),
        (CONDITION_BAD_INTERFACE_REGEX, &problems.interface_regex),
    ] {
        let existing = out.iter().position(|c| c.type_ == type_);
        let (status, message) = match problem {
            Some(message) => ("True", truncate(message)),
            None if existing.is_some() => ("False", String::new()),
            None => continue,
        };
        let last_transition_time = match existing.map(|i| &out[i]) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        let condition = Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: CONDITION_REASON_ERROR.to_string(),
            message,
            observed_generation: generation,
            last_transition_time,
        };
        match existing {
            Some(i) => out[i] = condition,
            None => out.push(condition),
        }
    }
    out
}

/// The CRD allows messages of at most 32768 characters; an error quoting a huge regex or
/// selector value must not make the status write fail forever.
fn truncate(message: &str) -> String {
    const MAX: usize = 32768;
    if message.chars().count() <= MAX {
        return message.to_string();
    }
    let mut out: String = message.chars().take(MAX - 3).collect();
    out.push_str("...");
    out
}

/// Whether `current` must be replaced by `desired`: they differ in anything but
/// `lastTransitionTime` (compared by type, so the order of the list does not matter).
pub fn conditions_need_update(current: &[Condition], desired: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = current.iter().map(key).collect();
    let mut b: Vec<_> = desired.iter().map(key).collect();
    a.sort();
    b.sort();
    a != b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyInfo;
    use serde_json::json;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn problems(spec: serde_json::Value) -> PolicyProblems {
        PolicyInfo::new("p", &serde_json::from_value(spec).unwrap()).problems
    }

    #[test]
    fn a_fine_policy_gets_no_conditions() {
        let p = problems(json!({"interfaces": ["eno1"], "nodeSelector": {"matchLabels": {}}}));
        assert!(p.is_empty());
        assert!(desired_conditions(&[], &p, Some(1), &time("2026-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn each_problem_sets_its_condition() {
        let p = problems(json!({
            "nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "serviceSelector": {"matchLabels": {"bad key!": "v"}},
            "interfaces": ["(eno"]
        }));
        let now = time("2026-01-01T00:00:00Z");
        let c = desired_conditions(&[], &p, Some(4), &now);
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "io.cilium/bad-node-selector",
                "io.cilium/bad-service-selector",
                "io.cilium/bad-interface-regex"
            ]
        );
        for cond in &c {
            assert_eq!(cond.status, "True");
            assert_eq!(cond.reason, "error");
            assert_eq!(cond.observed_generation, Some(4));
            assert_eq!(cond.last_transition_time, now);
            assert!(!cond.message.is_empty());
        }
        assert!(
            c[0].message.contains("values set must be empty"),
            "{}",
            c[0].message
        );
        assert!(c[1].message.contains("bad key!"), "{}", c[1].message);
        assert!(c[2].message.contains("(eno"), "{}", c[2].message);
    }

    #[test]
    fn huge_messages_are_cut_to_what_the_crd_accepts() {
        let p = problems(json!({"interfaces": [format!("({}", "é".repeat(40000))]}));
        let c = desired_conditions(&[], &p, Some(1), &time("2026-01-01T00:00:00Z"));
        assert_eq!(c[0].message.chars().count(), 32768);
        assert!(c[0].message.ends_with("..."));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn fixing_turns_existing_conditions_false_and_keeps_others() {
        let t0 = time("2026-01-01T00:00:00Z");
        let t1 = time("2026-01-02T00:00:00Z");
        let bad = problems(json!({"interfaces": ["[a"]}));
        let mut current = desired_conditions(&[], &bad, Some(1), &t0);
        current.insert(
            0,
            Condition {
                type_: "example.com/Other".into(),
                status: "Unknown".into(),
                reason: "x".into(),
                message: "kept".into(),
                observed_generation: None,
                last_transition_time: t0.clone(),
            },
        );
        let fixed = desired_conditions(&current, &PolicyProblems::default(), Some(2), &t1);
        assert_eq!(fixed.len(), 2);
        assert_eq!(fixed[0], current[0]);
        assert_eq!(fixed[1].type_, "io.cilium/bad-interface-regex");
        assert_eq!(fixed[1].status, "False");
        assert_eq!(fixed[1].message, "");
        assert_eq!(fixed[1].reason, "error");
        assert_eq!(fixed[1].observed_generation, Some(2));
        assert_eq!(fixed[1].last_transition_time, t1, "status changed");
        assert!(conditions_need_update(&current, &fixed));
    }

    #[test]
    fn recomputing_on_any_node_at_any_time_needs_no_write() {
        let bad = problems(
            json!({"serviceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        );
        let written = desired_conditions(&[], &bad, Some(3), &time("2026-01-01T00:00:00Z"));
        // Another node, later: same result, transition time kept.
        let again = desired_conditions(&written, &bad, Some(3), &time("2026-03-01T00:00:00Z"));
        assert_eq!(again, written);
        assert!(!conditions_need_update(&written, &again));
        // A condition written by Cilium at another time, or in another order, is no reason to write.
        let mut reordered = written.clone();
        reordered[0].last_transition_time = time("2025-06-01T00:00:00Z");
        assert!(!conditions_need_update(&reordered, &written));
        // But a new generation, message or status is.
        let newer = desired_conditions(&written, &bad, Some(4), &time("2026-03-01T00:00:00Z"));
        assert!(conditions_need_update(&written, &newer));
        assert_eq!(
            newer[0].last_transition_time,
            written[0].last_transition_time
        );
        let other = problems(
            json!({"serviceSelector": {"matchExpressions": [{"key": "b", "operator": "In"}]}}),
        );
        assert!(conditions_need_update(
            &written,
            &desired_conditions(&written, &other, Some(3), &time("2026-03-01T00:00:00Z"))
        ));
        assert!(conditions_need_update(&written, &[]));
    }
}
