//! The AdminNetworkPolicy and BaselineAdminNetworkPolicy custom resources
//! of SIG Network's network-policy-api (`policy.networking.k8s.io/v1alpha1`,
//! cluster-scoped), which `k8s-openapi` does not have, made watchable: the
//! `k8s_openapi::Resource` and `Metadata` traits (so `kube::Api` takes
//! them), implemented by hand rather than with `kube`'s derive, which would
//! bring a JSON-schema generator we have no use for (we read these objects,
//! we never install their CRDs).
//!
//! The types themselves are the compiler's ([`crate::policy::types`]), so
//! what a reflector lists is what the store holds and the compiler reads:
//! one definition of the API's fields, not one per reader.

use crate::policy::types::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
        assert_eq!(anp.spec.priority, 34);
        assert_eq!(anp.spec.ingress.len(), 2);
        let ports = anp.spec.ingress[1].ports.as_ref().unwrap();
        assert_eq!(ports[0].port_number.as_ref().unwrap().port, 5432);
        assert_eq!(ports[2].port_range.as_ref().unwrap().end, 2000);
        let to = anp.spec.egress[0].to.as_ref().unwrap();
        assert_eq!(
            to[0].networks.as_deref(),
            Some(&["0.0.0.0/0".to_string()][..])
        );
        assert_eq!(
            <AdminNetworkPolicy as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            "adminnetworkpolicies"
        );
    }
}
