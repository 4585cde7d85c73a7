//! Kubernetes network policy: the types the agent reads beside k8s-openapi's
//! (AdminNetworkPolicy, BaselineAdminNetworkPolicy), label selectors, the
//! prefix and port-range arithmetic, and the resolved model of every rule
//! that `compile::policy` turns into a node's flows.
//!
//! Evaluation order, per direction at the pod the direction belongs to
//! (egress at the source, ingress at the destination), as the
//! network-policy-api documents it: AdminNetworkPolicy (lowest `priority`
//! first, rules in order, first match wins; `Pass` skips to the next tier)
//! → NetworkPolicy (a pod any policy selects for the direction is isolated:
//! allowed only if some rule allows; rules union) → BaselineAdminNetworkPolicy
//! (only for pods no NetworkPolicy isolates in that direction) → allow.
//! docs/policy.md has the whole story.
//!
//! Pure: no I/O. Depends on the store and k8s-openapi only.

pub mod arith;
pub mod model;
pub mod selector;
pub mod synth;
pub mod types;
