//! A pool's `serviceSelector`, built by k8s-select as `metav1.LabelSelectorAsSelector` does.
//! A selector Kubernetes would refuse (unknown operator, `In` without values, a bad key)
//! matches nothing: Cilium fails to build it and allocates nothing from the pool.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use l2announcer_k8s_select::{Labels, Selector, SelectorError};

/// A pool's service selector: the built selector, or why it could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSelector(Result<Selector, SelectorError>);

impl PoolSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.as_ref().is_ok_and(|s| s.matches(labels))
    }

    /// Why the selector is invalid, if it is.
    pub fn error(&self) -> Option<&SelectorError> {
        self.0.as_ref().err()
    }
}

/// The empty selector: it matches every Service.
impl Default for PoolSelector {
    fn default() -> Self {
        PoolSelector(Ok(Selector::default()))
    }
}

impl From<&LabelSelector> for PoolSelector {
    fn from(s: &LabelSelector) -> Self {
        PoolSelector(Selector::new(s))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> PoolSelector {
        PoolSelector::from(&LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
        })
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(PoolSelector::default().matches(&labels(&[])));
        assert!(PoolSelector::from(&LabelSelector::default()).matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn valid_selectors_match_as_kubernetes_does() {
        let l = labels(&[("color", "blue")]);
        assert!(expr("color", "In", &["blue", "cyan"]).matches(&l));
        assert!(!expr("color", "NotIn", &["blue"]).matches(&l));
        assert!(expr("tier", "DoesNotExist", &[]).matches(&l));
    }

    #[test]
    fn invalid_selectors_match_nothing_and_say_why() {
        let l = labels(&[("color", "blue")]);
        for s in [
            expr("color", "Equals", &["blue"]),
            expr("color", "In", &[]),
            expr("missing", "NotIn", &[]),
            expr("color", "Exists", &["blue"]),
            expr("bad key!", "Exists", &[]),
        ] {
            assert!(!s.matches(&l), "{s:?}");
            assert!(s.error().is_some(), "{s:?}");
        }
    }
}
