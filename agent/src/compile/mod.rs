//! The compiler: objects + cluster config + node name in, that node's rules
//! out. Pure: no I/O, no clock, no randomness — the same store always
//! compiles to the same text, which is what the golden tests and the
//! sync's diff rely on.
//!
//! The table layout is fixed (docs/kubernetes.md draws it):
//!
//! | table | name | what |
//! |---|---|---|
//! | 0 | classification | `in_port` → reg0[0..3]: 1 local pod, 2 gateway (node kernel), 3 tunnel |
//! | 10 | spoof guard, ARP responder | a pod sends from its MAC and IP only; ARP for any address of a namespace subnet is answered with that subnet's gateway MAC (the distributed gateway) |
//! | 20 | un-SNAT | `ct(zone=65521,nat)` for replies to the hairpin address, the node IP and SNAT IPs this node owns |
//! | 30, 31 | conntrack | `ct(zone=65520,nat)`; invalid dropped |
//! | 40 | Service frontends | ClusterIP, NodePort, LoadBalancer IP (first packet): select group, reject, drop |
//! | 41-43 | session affinity | learned rules, decision, learning (`learn`) |
//! | 44 | endpoint DNAT | `ct(commit,zone=65520,nat(dst=EP))` per endpoint |
//! | 45 | destination class | reg2: 1 pod network, 2 this node, 3 outside |
//! | 50-52 | egress policy | AdminNetworkPolicy, NetworkPolicy, BaselineAdminNetworkPolicy at the source pod's node ([`policy`]) |
//! | 60-62 | ingress policy | the same three tiers at the destination pod's node |
//! | 65 | commit | `ct(commit,zone=65520)` for new connections |
//! | 70 | SNAT | hairpin, external clients of Services, namespace egress (SNAT IP, else the node IP) |
//! | 80 | output | local pod, Geneve to the pod's node, the node kernel |
//!
//! Policy slots into tables 50-52 and 60-62 without touching the rest:
//! each sees the source in reg0 and the packet after DNAT (the endpoint),
//! with conntrack state, so a policy rule is `conjunction(id,k/n)` clauses
//! over pod addresses (`nw_src`/`nw_dst`) and ports, and established
//! connections pass before any policy rule as in Antrea (docs/policy.md).

pub mod incremental;
mod pipeline;
mod pods;
pub mod policy;
mod services;

use crate::config::Config;
use crate::net::Cidr;
use crate::object::ObjectKey;
use crate::rules::RuleSet;
use crate::store::Store;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

/// Table numbers.
pub mod table {
    /// Classification by input port.
    pub const CLASSIFY: u8 = 0;
    /// Spoof guard and ARP responder.
    pub const SPOOF_ARP: u8 = 10;
    /// Un-SNAT.
    pub const UNSNAT: u8 = 20;
    /// Conntrack, main zone.
    pub const CT: u8 = 30;
    /// Invalid connection state.
    pub const CT_STATE: u8 = 31;
    /// Service frontends.
    pub const SERVICE: u8 = 40;
    /// Learned session-affinity rules.
    pub const AFFINITY: u8 = 41;
    /// Session-affinity decision.
    pub const AFFINITY_DECIDE: u8 = 42;
    /// Session-affinity learning.
    pub const AFFINITY_LEARN: u8 = 43;
    /// Endpoint DNAT.
    pub const DNAT: u8 = 44;
    /// Destination class.
    pub const DEST: u8 = 45;
    /// Egress policy: AdminNetworkPolicy (first egress policy table).
    pub const EGRESS_POLICY: u8 = 50;
    /// Egress policy: NetworkPolicy.
    pub const EGRESS_NP: u8 = 51;
    /// Egress policy: BaselineAdminNetworkPolicy.
    pub const EGRESS_BASELINE: u8 = 52;
    /// Ingress policy: AdminNetworkPolicy (first ingress policy table).
    pub const INGRESS_POLICY: u8 = 60;
    /// Ingress policy: NetworkPolicy.
    pub const INGRESS_NP: u8 = 61;
    /// Ingress policy: BaselineAdminNetworkPolicy.
    pub const INGRESS_BASELINE: u8 = 62;
    /// Conntrack commit.
    pub const COMMIT: u8 = 65;
    /// SNAT.
    pub const SNAT: u8 = 70;
    /// Output.
    pub const OUTPUT: u8 = 80;
}

/// The conntrack zone of every connection (and Service DNAT).
pub const ZONE: u16 = 65520;
/// The conntrack zone of SNAT (hairpin, external clients, egress).
pub const SNAT_ZONE: u16 = 65521;
/// The address hairpin connections are SNATed to.
pub const HAIRPIN_IP: &str = "169.254.0.252";

/// A local pod's switch port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPort {
    /// The OpenFlow port number.
    pub ofport: u32,
    /// The pod's MAC, when the port says (`attached-mac`); otherwise the
    /// one derived from its address.
    pub mac: Option<String>,
}

/// Local pods' ports, by (namespace, name): from oxvsd's `list-ports`
/// (external ids `k8s-pod-namespace`, `k8s-pod-name`) at run time.
pub type PortMap = BTreeMap<(String, String), PodPort>;

/// What the compiler reads.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    /// The objects, with the controller's allocations on them.
    pub store: &'a Store,
    /// The cluster configuration.
    pub config: &'a Config,
    /// This node's name.
    pub node: &'a str,
    /// This node's pods' ports.
    pub ports: &'a PortMap,
}

/// Why a node's rules could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// node {0} has no underlay IP (no InternalIP on its Node object and none in the config)
    NoNodeIp(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::NoNodeIp(n) => write!(
                f,
                "node {n} has no underlay IP (no InternalIP on its Node object and none in the config)"
            ),
        }
    }
}

impl std::error::Error for CompileError {}

/// The underlay IP of every node: a Node's InternalIP, else the config's.
pub fn node_ips(store: &Store, cfg: &Config) -> BTreeMap<String, Ipv4Addr> {
    let mut out = cfg.node_ips.clone();
    for n in store.nodes() {
        if let (Some(name), Some(ip)) = (n.metadata.name.clone(), internal_ip(n)) {
            out.insert(name, ip);
        }
    }
    out
}

fn internal_ip(n: &Node) -> Option<Ipv4Addr> {
    n.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// Lookups built once per compile, so that nothing is quadratic in the
/// number of objects.
pub(crate) struct Index<'a> {
    pub slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    pub pods_by_ns: HashMap<&'a str, Vec<&'a Pod>>,
    /// Pod address → the pod's key, for cookie owners.
    pub pod_by_ip: HashMap<Ipv4Addr, (&'a str, &'a str)>,
    pub node_ips: BTreeMap<String, Ipv4Addr>,
    /// Namespace → (subnet, SNAT IP and its node).
    pub subnets: BTreeMap<&'a str, Cidr>,
}

impl<'a> Index<'a> {
    pub fn new(store: &'a Store, cfg: &Config) -> Index<'a> {
        Index::within(store, cfg, None)
    }

    /// The index, with `slices` and `pods_by_ns` only for the namespaces
    /// `only` names (when it does): what compiling a few Services needs.
    pub fn within(
        store: &'a Store,
        cfg: &Config,
        only: Option<&std::collections::BTreeSet<String>>,
    ) -> Index<'a> {
        let wanted = |ns: &str| only.is_none_or(|o| o.contains(ns));
        let mut slices: HashMap<_, Vec<_>> = HashMap::new();
        for s in store.endpoint_slices() {
            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
            if !wanted(ns) {
                continue;
            }
            if let Some(svc) = crate::object::label(&s.metadata, "kubernetes.io/service-name") {
                slices.entry((ns, svc)).or_default().push(s);
            }
        }
        let mut pods_by_ns: HashMap<_, Vec<_>> = HashMap::new();
        let mut pod_by_ip = HashMap::new();
        for p in store.pods() {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            if wanted(ns) {
                pods_by_ns.entry(ns).or_default().push(p);
            }
            if let Some(ip) = crate::alloc::pod_ip(p) {
                pod_by_ip.insert(ip, (ns, p.metadata.name.as_deref().unwrap_or("")));
            }
        }
        let mut subnets = BTreeMap::new();
        for n in store.namespaces() {
            let name = n.metadata.name.as_deref().unwrap_or("");
            if let Some(c) = crate::object::annotation(&n.metadata, crate::alloc::SUBNET)
                .and_then(|s| s.parse().ok())
            {
                subnets.insert(name, c);
            }
        }
        Index {
            slices,
            pods_by_ns,
            pod_by_ip,
            node_ips: node_ips(store, cfg),
            subnets,
        }
    }
}

/// The compile context shared by the parts.
pub(crate) struct Cx<'a> {
    pub v: NodeView<'a>,
    pub ix: Index<'a>,
    pub node_ip: Ipv4Addr,
    pub node_key: ObjectKey,
    pub out: RuleSet,
    pub explain: policy::Explain,
    /// Policy selections to start from, and the pods whose labels changed
    /// since (the incremental compiler's; `None` for a plain compile).
    pub select_seed: Option<(crate::policy::model::SelectCache, Vec<(String, String)>)>,
    /// Whether to hand the policy selections back in `select_out`.
    pub keep_selections: bool,
    /// The policy selections of this compile, when asked for.
    pub select_out: Option<crate::policy::model::SelectCache>,
}

/// Compiles the rules of node `v.node`.
pub fn compile(v: NodeView<'_>) -> Result<RuleSet, CompileError> {
    compile_explained(v).map(|(rules, _)| rules)
}

/// Compiles the rules of node `v.node`, with the table that says which
/// policy rule each verdict flow belongs to (for `trace` and `flows`).
pub fn compile_explained(v: NodeView<'_>) -> Result<(RuleSet, policy::Explain), CompileError> {
    let ix = Index::new(v.store, v.config);
    let node_ip = *ix
        .node_ips
        .get(v.node)
        .ok_or_else(|| CompileError::NoNodeIp(v.node.to_string()))?;
    let mut cx = Cx {
        v,
        ix,
        node_ip,
        node_key: ObjectKey::new(crate::object::Kind::Node, "", v.node),
        out: RuleSet::default(),
        explain: policy::Explain::default(),
        select_seed: None,
        keep_selections: false,
        select_out: None,
    };
    pipeline::compile(&mut cx);
    pods::compile(&mut cx);
    services::compile(&mut cx);
    policy::compile(&mut cx);
    Ok((cx.out, cx.explain))
}

#[cfg(test)]
mod tests;
