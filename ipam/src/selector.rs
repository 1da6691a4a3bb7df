//! Kubernetes label selectors (matchLabels + matchExpressions), matched against a label set.

use std::collections::{BTreeMap, BTreeSet};

/// Operator of a selector requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// An operator Kubernetes does not know: the selector then matches nothing (Cilium fails
    /// to build such a selector and allocates nothing from the pool).
    Invalid(String),
}

impl Operator {
    pub fn parse(s: &str) -> Operator {
        match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => Operator::Invalid(other.to_string()),
        }
    }
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

/// A label selector; the requirements are ANDed, an empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            // Kubernetes rejects In/NotIn without values and Exists/DoesNotExist with values
            // when building the selector; such a selector matches nothing.
            Operator::In | Operator::NotIn if self.values.is_empty() => false,
            Operator::Exists | Operator::DoesNotExist if !self.values.is_empty() => false,
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Invalid(_) => false,
        }
    }
}

impl From<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> for LabelSelector {
    fn from(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> Self {
        LabelSelector {
            match_labels: s.match_labels.clone().unwrap_or_default(),
            match_expressions: s
                .match_expressions
                .iter()
                .flatten()
                .map(|r| Requirement {
                    key: r.key.clone(),
                    operator: Operator::parse(&r.operator),
                    values: r.values.iter().flatten().cloned().collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator: Operator::parse(op),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn sel(expr: Requirement) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![expr],
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
        assert!(LabelSelector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_need_equal_values() {
        let s = LabelSelector {
            match_labels: labels(&[("color", "red")]),
            match_expressions: vec![],
        };
        assert!(s.matches(&labels(&[("color", "red"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("color", "blue")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn operators() {
        let l = labels(&[("color", "blue"), ("tier", "")]);
        assert!(sel(req("color", "In", &["blue", "cyan"])).matches(&l));
        assert!(!sel(req("color", "In", &["red"])).matches(&l));
        assert!(!sel(req("missing", "In", &["red"])).matches(&l));
        assert!(sel(req("color", "NotIn", &["red"])).matches(&l));
        assert!(sel(req("missing", "NotIn", &["red"])).matches(&l));
        assert!(!sel(req("color", "NotIn", &["blue"])).matches(&l));
        assert!(sel(req("tier", "Exists", &[])).matches(&l));
        assert!(!sel(req("missing", "Exists", &[])).matches(&l));
        assert!(sel(req("missing", "DoesNotExist", &[])).matches(&l));
        assert!(!sel(req("tier", "DoesNotExist", &[])).matches(&l));
    }

    #[test]
    fn malformed_requirements_match_nothing() {
        let l = labels(&[("color", "blue")]);
        assert!(!sel(req("color", "Equals", &["blue"])).matches(&l));
        assert!(!sel(req("color", "In", &[])).matches(&l));
        assert!(!sel(req("missing", "NotIn", &[])).matches(&l));
        assert!(!sel(req("color", "Exists", &["blue"])).matches(&l));
    }

    #[test]
    fn requirements_are_anded() {
        let s = LabelSelector {
            match_labels: labels(&[("a", "1")]),
            match_expressions: vec![req("b", "Exists", &[]), req("c", "DoesNotExist", &[])],
        };
        assert!(s.matches(&labels(&[("a", "1"), ("b", "x")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "x"), ("c", "")])));
        assert!(!s.matches(&labels(&[("a", "2"), ("b", "x")])));
    }

    #[test]
    fn converts_from_k8s_selector() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let k = meta::LabelSelector {
            match_labels: Some(labels(&[("a", "1")])),
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "b".into(),
                operator: "In".into(),
                values: Some(vec!["x".into(), "y".into()]),
            }]),
        };
        let s = LabelSelector::from(&k);
        assert_eq!(s.match_labels, labels(&[("a", "1")]));
        assert_eq!(s.match_expressions, vec![req("b", "In", &["x", "y"])]);
    }
}
