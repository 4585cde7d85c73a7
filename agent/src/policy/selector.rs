//! `metav1.LabelSelector` evaluation: `matchLabels` and `matchExpressions`
//! (`In`, `NotIn`, `Exists`, `DoesNotExist`), all requirements ANDed, as
//! `k8s.io/apimachinery/pkg/labels` does. An empty selector matches
//! everything; `NotIn` and `DoesNotExist` match objects that lack the key.
//! An operator the API server would refuse matches nothing, so a bad
//! selector never widens a policy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Labels of an object (none is the same as empty).
pub type Labels = BTreeMap<String, String>;

/// Whether `sel` matches `labels`.
pub fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &sel.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    for r in sel.match_expressions.iter().flatten() {
        let have = labels.get(&r.key);
        let values = r.values.as_deref().unwrap_or(&[]);
        let ok = match r.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn operators() {
        let l: Labels = [("pod".to_string(), "a".to_string())].into();
        let empty = Labels::new();
        let sel = |r| LabelSelector {
            match_expressions: Some(vec![r]),
            match_labels: None,
        };
        assert!(matches(&LabelSelector::default(), &empty));
        assert!(matches(&sel(req("pod", "In", &["a", "b"])), &l));
        assert!(!matches(&sel(req("pod", "In", &["a"])), &empty));
        assert!(matches(&sel(req("pod", "NotIn", &["b"])), &l));
        assert!(matches(&sel(req("pod", "NotIn", &["a"])), &empty));
        assert!(!matches(&sel(req("pod", "NotIn", &["a"])), &l));
        assert!(matches(&sel(req("pod", "Exists", &[])), &l));
        assert!(matches(&sel(req("pod", "DoesNotExist", &[])), &empty));
        assert!(!matches(&sel(req("pod", "Bogus", &[])), &l));
    }
}
