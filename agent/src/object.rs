//! The Kubernetes objects the agent reads, as `k8s-openapi` types, behind
//! one enum so the store, the loader and the compiler can handle them
//! alike, and the key (kind, namespace, name) that names each one.
//!
//! The key is also what cookies hash (see [`crate::cookie`]), so its text
//! form `Kind/namespace/name` (`Kind/name` for cluster-scoped kinds) must
//! never change.

use crate::policy::types::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::fmt;

/// The kinds the agent knows, in the order the store keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1/Node`.
    Node,
    /// `v1/Namespace`.
    Namespace,
    /// `apps/v1/Deployment`: expanded into Pods in manifest mode.
    Deployment,
    /// `v1/Pod`.
    Pod,
    /// `v1/Service`.
    Service,
    /// `discovery.k8s.io/v1/EndpointSlice`.
    EndpointSlice,
    /// `networking.k8s.io/v1/NetworkPolicy`.
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1/AdminNetworkPolicy` (cluster-scoped).
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1/BaselineAdminNetworkPolicy`
    /// (cluster-scoped, a singleton named `default`).
    BaselineAdminNetworkPolicy,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::Node,
        Kind::Namespace,
        Kind::Deployment,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
        Kind::AdminNetworkPolicy,
        Kind::BaselineAdminNetworkPolicy,
    ];

    /// The kind's name as in a manifest's `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::Deployment => "Deployment",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::AdminNetworkPolicy => "AdminNetworkPolicy",
            Kind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Node
                | Kind::Namespace
                | Kind::AdminNetworkPolicy
                | Kind::BaselineAdminNetworkPolicy
        )
    }

    /// The kind named `s`, accepting kubectl's spellings (`pod`, `pods`,
    /// `svc`, `ns`, `deploy`, `endpointslices`...).
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "node" | "nodes" | "no" => Kind::Node,
            "namespace" | "namespaces" | "ns" => Kind::Namespace,
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "pod" | "pods" | "po" => Kind::Pod,
            "service" | "services" | "svc" => Kind::Service,
            "endpointslice" | "endpointslices" => Kind::EndpointSlice,
            "networkpolicy" | "networkpolicies" | "netpol" => Kind::NetworkPolicy,
            "adminnetworkpolicy" | "adminnetworkpolicies" | "anp" => Kind::AdminNetworkPolicy,
            "baselineadminnetworkpolicy" | "baselineadminnetworkpolicies" | "banp" => {
                Kind::BaselineAdminNetworkPolicy
            }
            _ => return None,
        })
    }
}

/// What names an object: kind, namespace (empty for cluster-scoped kinds)
/// and name. Ordered by kind first, so a store's range of one kind is one
/// contiguous run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace, or empty.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: if kind.namespaced() {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// Parses `kind/ns/name` or, for cluster-scoped kinds, `kind/name`.
    pub fn parse(s: &str) -> Result<ObjectKey, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let kind = Kind::parse(parts[0]).ok_or_else(|| format!("unknown kind {:?}", parts[0]))?;
        match (kind.namespaced(), parts.as_slice()) {
            (true, [_, ns, name]) => Ok(ObjectKey::new(kind, ns, name)),
            (false, [_, name]) => Ok(ObjectKey::new(kind, "", name)),
            (true, _) => Err(format!(
                "expected {}/NAMESPACE/NAME, found {s:?}",
                kind.name()
            )),
            (false, _) => Err(format!("expected {}/NAME, found {s:?}", kind.name())),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.namespaced() {
            write!(f, "{}/{}/{}", self.kind.name(), self.namespace, self.name)
        } else {
            write!(f, "{}/{}", self.kind.name(), self.name)
        }
    }
}

/// One object of a known kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Node.
    Node(Node),
    /// A Namespace.
    Namespace(Namespace),
    /// A Deployment.
    Deployment(Deployment),
    /// A Pod.
    Pod(Pod),
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// An AdminNetworkPolicy.
    AdminNetworkPolicy(AdminNetworkPolicy),
    /// The BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy(BaselineAdminNetworkPolicy),
}

impl Object {
    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Node(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::AdminNetworkPolicy(o) => &o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &o.metadata,
        }
    }

    /// The object's metadata, to change.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Node(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
            Object::AdminNetworkPolicy(o) => &mut o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &mut o.metadata,
        }
    }

    /// The object as JSON, in the API's shape (what `kubectl get -o json`
    /// and the API server's watch events carry).
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Object::Node(o) => serde_json::to_value(o),
            Object::Namespace(o) => serde_json::to_value(o),
            Object::Deployment(o) => serde_json::to_value(o),
            Object::Pod(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::EndpointSlice(o) => serde_json::to_value(o),
            Object::NetworkPolicy(o) => serde_json::to_value(o),
            Object::AdminNetworkPolicy(o) => serde_json::to_value(o),
            Object::BaselineAdminNetworkPolicy(o) => serde_json::to_value(o),
        };
        // Serialising these types has no failure case: no map keys that are
        // not strings, no non-finite floats.
        v.unwrap_or(serde_json::Value::Null)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Node(_) => Kind::Node,
            Object::Namespace(_) => Kind::Namespace,
            Object::Deployment(_) => Kind::Deployment,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::AdminNetworkPolicy(_) => Kind::AdminNetworkPolicy,
            Object::BaselineAdminNetworkPolicy(_) => Kind::BaselineAdminNetworkPolicy,
        }
    }

    /// The key. A namespaced object without a namespace is in `default`,
    /// as `kubectl apply` would put it.
    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey::new(
            self.kind(),
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or(""),
        )
    }

    /// An annotation's value.
    pub fn annotation(&self, k: &str) -> Option<&str> {
        annotation(self.meta(), k)
    }
}

/// An annotation's value.
pub fn annotation<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

/// A label's value.
pub fn label<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.labels.as_ref()?.get(k).map(String::as_str)
}

/// Whether `selector` (a Service's equality selector) selects `labels`.
pub fn selects(
    selector: &std::collections::BTreeMap<String, String>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}
