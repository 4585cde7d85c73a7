//! The AdminNetworkPolicy and BaselineAdminNetworkPolicy custom resources
//! of SIG Network's network-policy-api (`policy.networking.k8s.io/v1alpha1`,
//! cluster-scoped), which `k8s-openapi` does not have. Defined by hand
//! (the `k8s_openapi::Resource` and `Metadata` traits, so `kube::Api` takes
//! them) rather than with `kube`'s derive, which would bring a JSON-schema
//! generator we have no use for: we read these objects, we never install
//! their CRDs.
//!
//! The fields follow the v1alpha1 API types (`apis/v1alpha1`); anything
//! else in an object is kept in `extra` so nothing is lost on a read. The
//! next issue compiles them; today [`super::watch::Reflector`] can list and
//! watch them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `AdminNetworkPolicy`: cluster-wide rules with a priority, evaluated
/// before NetworkPolicy; actions Allow, Deny or Pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminNetworkPolicy {
    /// Standard metadata.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: AdminNetworkPolicySpec,
    /// Status (conditions), as the API server stores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// `BaselineAdminNetworkPolicy`: the singleton (`name: default`) evaluated
/// after NetworkPolicy; actions Allow or Deny.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineAdminNetworkPolicy {
    /// Standard metadata.
    pub metadata: ObjectMeta,
    /// The policy (no priority).
    pub spec: AdminNetworkPolicySpec,
    /// Status (conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// The spec both kinds share (`priority` is ANP only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicySpec {
    /// 0-1000, lower first (ANP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The pods the policy applies to.
    pub subject: Subject,
    /// Ingress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
}

/// `subject`: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Every pod of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// The selected pods of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods by namespace selector and pod selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// The namespaces.
    pub namespace_selector: LabelSelector,
    /// The pods in them.
    pub pod_selector: LabelSelector,
}

/// One ingress or egress rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Up to 100 characters, shown in logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Allow`, `Deny` or `Pass` (`Pass` is ANP only).
    pub action: String,
    /// Ingress peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Peer>,
    /// Egress peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Peer>,
    /// The ports; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

/// A peer: exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Every pod of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Selected pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Selected nodes (egress only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (egress only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    /// Fields of later API versions, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A port selector: exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// A protocol and port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<PortNumber>,
    /// A container port's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    /// A protocol and an inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// `portNumber`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortNumber {
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The port.
    pub port: i32,
}

/// `portRange`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortRange {
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// First port.
    pub start: i32,
    /// Last port.
    pub end: i32,
}

macro_rules! cluster_resource {
    ($ty:ty, $kind:literal, $plural:literal) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = "policy.networking.k8s.io/v1alpha1";
            const GROUP: &'static str = "policy.networking.k8s.io";
            const KIND: &'static str = $kind;
            const VERSION: &'static str = "v1alpha1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::ClusterResourceScope;
        }
        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = concat!($kind, "List");
        }
        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
cluster_resource!(
    AdminNetworkPolicy,
    "AdminNetworkPolicy",
    "adminnetworkpolicies"
);
cluster_resource!(
    BaselineAdminNetworkPolicy,
    "BaselineAdminNetworkPolicy",
    "baselineadminnetworkpolicies"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the network-policy-api docs (ANP "cluster-control").
    #[test]
    fn reads_the_upstream_example() {
        let json = r#"{
          "apiVersion": "policy.networking.k8s.io/v1alpha1",
          "kind": "AdminNetworkPolicy",
          "metadata": {"name": "cluster-control", "resourceVersion": "7"},
          "spec": {
            "priority": 34,
            "subject": {"namespaces": {}},
            "ingress": [
              {"name": "allow-from-monitoring", "action": "Allow",
               "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring-ns"}}}]},
              {"name": "pass-from-same-ns", "action": "Pass",
               "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}}],
               "ports": [{"portNumber": {"protocol": "TCP", "port": 5432}}, {"namedPort": "metrics"},
                         {"portRange": {"protocol": "UDP", "start": 1000, "end": 2000}}]}
            ],
            "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]
          }
        }"#;
        let anp: AdminNetworkPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(anp.spec.priority, Some(34));
        assert_eq!(anp.spec.ingress.len(), 2);
        assert_eq!(anp.spec.ingress[1].action, "Pass");
        let ports = anp.spec.ingress[1].ports.as_ref().unwrap();
        assert_eq!(ports[0].port_number.as_ref().unwrap().port, 5432);
        assert_eq!(ports[2].port_range.as_ref().unwrap().end, 2000);
        assert_eq!(
            anp.spec.egress[0].to[0].networks.as_deref(),
            Some(&["0.0.0.0/0".to_string()][..])
        );
        assert_eq!(
            <AdminNetworkPolicy as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            "adminnetworkpolicies"
        );
    }
}
