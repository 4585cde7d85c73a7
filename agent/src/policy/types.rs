//! AdminNetworkPolicy and BaselineAdminNetworkPolicy
//! (`policy.networking.k8s.io/v1alpha1`, network-policy-api v0.1.7) as
//! serde types. They are custom resources, so k8s-openapi has no types for
//! them; these follow the Go types of that release field for field
//! (`apis/v1alpha1/adminnetworkpolicy_types.go`,
//! `baselineadminnetworkpolicy_types.go`, `shared_types.go`), keeping what
//! the agent does not enforce (node peers) so a manifest round-trips.
//!
//! Unknown fields are ignored, as the API server's pruning would drop them;
//! missing required fields (`priority`, `subject`, a rule's `action`) are
//! errors that name the field.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// An AdminNetworkPolicy: cluster-scoped, evaluated before NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicy {
    /// `policy.networking.k8s.io/v1alpha1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `AdminNetworkPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: AdminNetworkPolicySpec,
}

/// An AdminNetworkPolicy's spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicySpec {
    /// 0..=1000; lower numbers are evaluated first.
    pub priority: i32,
    /// The pods the policy applies to.
    pub subject: Subject,
    /// Ingress rules, in order (first match wins).
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Egress rules, in order (first match wins).
    #[serde(default)]
    pub egress: Vec<Rule>,
}

/// The BaselineAdminNetworkPolicy (a singleton named `default`), evaluated
/// after NetworkPolicy for pods no NetworkPolicy isolates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicy {
    /// `policy.networking.k8s.io/v1alpha1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `BaselineAdminNetworkPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: BaselineAdminNetworkPolicySpec,
}

/// A BaselineAdminNetworkPolicy's spec (no priority; no `Pass`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicySpec {
    /// The pods the policy applies to.
    pub subject: Subject,
    /// Ingress rules, in order.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Egress rules, in order.
    #[serde(default)]
    pub egress: Vec<Rule>,
}

/// `AdminNetworkPolicySubject`: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Every pod of the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods selected by both selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// `NamespacedPod`: a pod selector within the namespaces a selector picks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// The namespaces.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// The pods within them.
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// Allow; no later rule, policy or tier is consulted.
    Allow,
    /// Deny; likewise final.
    Deny,
    /// Skip the remaining AdminNetworkPolicy rules and hand the
    /// connection to NetworkPolicy (ANP only).
    Pass,
}

/// An ingress or egress rule: the Go types differ only in `from`/`to` and
/// in which peers they allow, so one type reads both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The rule's name (shown by `trace` and in logs).
    #[serde(default)]
    pub name: String,
    /// The action.
    pub action: Option<Action>,
    /// Ingress peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<Peer>>,
    /// Egress peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<Peer>>,
    /// Ports; absent means every port and protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

/// A peer: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Every pod of the namespaces this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods selected by both selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Nodes (egress only, experimental): their addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (egress only): any address in them, pods' included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
}

/// `AdminNetworkPolicyPort`: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// One protocol and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<PortNumber>,
    /// A container port name, resolved against the destination pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    /// An inclusive range of one protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// `Port`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortNumber {
    /// TCP, UDP or SCTP (default TCP).
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The port.
    pub port: i32,
}

/// `PortRange`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// TCP, UDP or SCTP (default TCP).
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The first port.
    pub start: i32,
    /// The last port (inclusive).
    pub end: i32,
}

fn tcp() -> String {
    "TCP".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_conformance_shape() {
        let y = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec:
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {house: g}}
      podSelector: {}
  egress:
  - name: r
    action: Pass
    to:
    - networks: [10.0.0.0/8]
    ports:
    - portNumber: {protocol: UDP, port: 53}
    - namedPort: web
    - portRange: {start: 1, end: 9}
"#;
        let a: AdminNetworkPolicy = serde_norway::from_str(y).unwrap();
        assert_eq!(a.spec.priority, 10);
        let r = &a.spec.egress[0];
        assert_eq!(r.action, Some(Action::Pass));
        let ports = r.ports.as_ref().unwrap();
        assert_eq!(ports[0].port_number.as_ref().unwrap().port, 53);
        assert_eq!(ports[1].named_port.as_deref(), Some("web"));
        assert_eq!(ports[2].port_range.as_ref().unwrap().protocol, "TCP");
        assert!(a.spec.subject.pods.is_some());
    }
}
