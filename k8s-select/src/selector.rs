//! Kubernetes label selectors, built and matched as `metav1.LabelSelectorAsSelector` does.
//!
//! Building validates what the CRD schema does not: label keys must be qualified names,
//! values valid label values, `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none, and
//! the operator must be known. Cilium turns a failure into the `io.cilium/bad-*-selector`
//! condition and does not apply the policy; so do we.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use thiserror::Error;

/// A set of labels (a Node's, or a Service's plus its pseudo-labels).
pub type Labels = BTreeMap<String, String>;

/// Why a `LabelSelector` cannot be turned into a selector.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("{operator:?} is not a valid label selector operator")]
    UnknownOperator { operator: String },
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("key {key:?}: values set can't be empty for the {operator} operator")]
    MissingValues { key: String, operator: String },
    #[error("key {key:?}: values set must be empty for the {operator} operator")]
    UnexpectedValues { key: String, operator: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: BTreeSet<String>,
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Op::In => value.is_some_and(|v| self.values.contains(v)),
            Op::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
        }
    }
}

/// A validated label selector. The requirements are ANDed; no requirement matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Builds the selector, or says why Kubernetes would refuse to.
    pub fn new(selector: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            check_key(key)?;
            check_value(key, value)?;
            requirements.push(Requirement {
                key: key.clone(),
                op: Op::In,
                values: BTreeSet::from([value.clone()]),
            });
        }
        for expr in selector.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        operator: other.to_string(),
                    });
                }
            };
            check_key(&expr.key)?;
            let values = expr.values.clone().unwrap_or_default();
            let needs_values = matches!(op, Op::In | Op::NotIn);
            if needs_values && values.is_empty() {
                return Err(SelectorError::MissingValues {
                    key: expr.key.clone(),
                    operator: expr.operator.clone(),
                });
            }
            if !needs_values && !values.is_empty() {
                return Err(SelectorError::UnexpectedValues {
                    key: expr.key.clone(),
                    operator: expr.operator.clone(),
                });
            }
            for value in &values {
                check_value(&expr.key, value)?;
            }
            requirements.push(Requirement {
                key: expr.key.clone(),
                op,
                values: values.into_iter().collect(),
            });
        }
        Ok(Selector { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// Matches `labels` against an optional selector, `None` meaning everything (Cilium's rule for
/// `nodeSelector` and `serviceSelector`).
pub fn matches_optional(
    selector: Option<&LabelSelector>,
    labels: &Labels,
) -> Result<bool, SelectorError> {
    match selector {
        None => Ok(true),
        Some(s) => Ok(Selector::new(s)?.matches(labels)),
    }
}

/// `validation.IsQualifiedName`: an optional DNS-1123 subdomain prefix and `/`, then a name
/// of at most 63 characters, alphanumeric at both ends with `-`, `_`, `.` inside.
fn check_key(key: &str) -> Result<(), SelectorError> {
    let err = |reason: &str| SelectorError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (prefix, name) = match key.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => return Err(err("a qualified name has at most one '/'")),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(err("the prefix must not be empty"));
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(err(
                "the prefix must be a lowercase DNS-1123 subdomain of at most 253 characters",
            ));
        }
    }
    if name.is_empty() {
        return Err(err("the name must not be empty"));
    }
    if name.len() > 63 || !is_label_value_shape(name) {
        return Err(err(
            "the name must be at most 63 characters, alphanumeric at both ends, with '-', '_' or '.' inside",
        ));
    }
    Ok(())
}

/// `validation.IsValidLabelValue`: empty, or like a key's name part.
fn check_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || (value.len() <= 63 && is_label_value_shape(value)) {
        return Ok(());
    }
    Err(SelectorError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: "a label value must be at most 63 characters, alphanumeric at both ends, with '-', '_' or '.' inside".to_string(),
    })
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, non-empty.
fn is_label_value_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsDNS1123Subdomain`: dot-separated lowercase labels, each alphanumeric at both
/// ends with `-` inside, at most 253 characters in all.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    is_lower_alnum(*first)
                        && is_lower_alnum(*last)
                        && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
                }
                _ => false,
            }
        })
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn empty_selector_matches_everything_and_none_too() {
        let empty = Selector::new(&LabelSelector::default()).unwrap();
        assert!(empty.matches(&Labels::new()));
        assert!(empty.matches(&labels(&[("a", "b")])));
        // `matchLabels: {}` (the seed's eno1 node selector) is an empty selector as well.
        let seed = LabelSelector {
            match_labels: Some(Labels::new()),
            match_expressions: None,
        };
        assert!(
            Selector::new(&seed)
                .unwrap()
                .matches(&labels(&[("x", "y")]))
        );
        assert_eq!(matches_optional(None, &Labels::new()), Ok(true));
    }

    #[test]
    fn match_labels_are_anded_and_exact() {
        let s = Selector::new(&selector(
            &[("color", "blue"), ("node.kubernetes.io/control-plane", "")],
            vec![],
        ))
        .unwrap();
        assert!(s.matches(&labels(&[
            ("color", "blue"),
            ("node.kubernetes.io/control-plane", ""),
            ("x", "y")
        ])));
        assert!(!s.matches(&labels(&[("color", "blue")])));
        assert!(!s.matches(&labels(&[
            ("color", "cyan"),
            ("node.kubernetes.io/control-plane", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("color", "blue"),
            ("node.kubernetes.io/control-plane", "true")
        ])));
    }

    #[test]
    fn operators() {
        let t = |e: LabelSelectorRequirement, l: &[(&str, &str)]| {
            Selector::new(&selector(&[], vec![e]))
                .unwrap()
                .matches(&labels(l))
        };
        assert!(t(expr("c", "In", &["blue", "cyan"]), &[("c", "cyan")]));
        assert!(!t(expr("c", "In", &["blue", "cyan"]), &[("c", "red")]));
        assert!(!t(expr("c", "In", &["blue"]), &[]));
        assert!(t(expr("c", "NotIn", &["blue"]), &[("c", "red")]));
        assert!(
            t(expr("c", "NotIn", &["blue"]), &[]),
            "NotIn matches an absent key"
        );
        assert!(!t(expr("c", "NotIn", &["blue"]), &[("c", "blue")]));
        assert!(t(expr("c", "Exists", &[]), &[("c", "")]));
        assert!(!t(expr("c", "Exists", &[]), &[("d", "")]));
        assert!(t(
            expr("node-role.kubernetes.io/control-plane", "DoesNotExist", &[]),
            &[("a", "b")]
        ));
        assert!(!t(expr("c", "DoesNotExist", &[]), &[("c", "x")]));
    }

    #[test]
    fn invalid_selectors_are_errors() {
        let bad = |e: LabelSelectorRequirement| Selector::new(&selector(&[], vec![e])).unwrap_err();
        assert!(matches!(
            bad(expr("c", "Equals", &["x"])),
            SelectorError::UnknownOperator { .. }
        ));
        assert!(matches!(
            bad(expr("c", "in", &["x"])),
            SelectorError::UnknownOperator { .. }
        ));
        assert!(matches!(
            bad(expr("c", "In", &[])),
            SelectorError::MissingValues { .. }
        ));
        assert!(matches!(
            bad(expr("c", "NotIn", &[])),
            SelectorError::MissingValues { .. }
        ));
        assert!(matches!(
            bad(expr("c", "Exists", &["x"])),
            SelectorError::UnexpectedValues { .. }
        ));
        assert!(matches!(
            bad(expr("c", "DoesNotExist", &["x"])),
            SelectorError::UnexpectedValues { .. }
        ));
        assert!(matches!(
            bad(expr("c", "In", &["not valid"])),
            SelectorError::InvalidValue { .. }
        ));
        for key in [
            "",
            "a b",
            "-a",
            "a-",
            "/a",
            "a/",
            "A.B/c",
            "a/b/c",
            "x_y.com/a",
            &"k".repeat(64),
        ] {
            assert!(
                matches!(
                    bad(expr(key, "Exists", &[])),
                    SelectorError::InvalidKey { .. }
                ),
                "{key:?}"
            );
        }
        for key in [
            "a",
            "a.b_c-d",
            "example.com/A_b",
            "kubernetes.io/service-name",
            &"k".repeat(63),
        ] {
            assert!(
                Selector::new(&selector(&[], vec![expr(key, "Exists", &[])])).is_ok(),
                "{key:?}"
            );
        }
        // matchLabels go through the same checks (the CRD only checks their values).
        assert!(matches!(
            Selector::new(&selector(&[("bad key", "v")], vec![])),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(
            matches_optional(
                Some(&selector(&[], vec![expr("c", "In", &[])])),
                &Labels::new()
            )
            .is_err()
        );
    }

    #[test]
    fn dns1123_subdomains() {
        for ok in ["a", "a.b", "a-b.c0", "0", &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a.",
            ".a",
            "a..b",
            "-a",
            "a-",
            "a_b",
            "a.-b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }
}
