//! How many iptables rules kube-proxy (iptables mode) would write on one
//! node for the same cluster, for the comparison in BENCHMARKS.md. The
//! counts follow `pkg/proxy/iptables/proxier.go`'s `syncProxyRules` (the
//! `nat` and `filter` lines it writes), with `--cluster-cidr` set (a
//! local-traffic detector), no `--masquerade-all`, no source ranges:
//!
//! per Service port with usable endpoints (E cluster-wide, L on this node):
//! * `KUBE-SERVICES`: 1 for the ClusterIP, 1 per LoadBalancer/external IP;
//!   `KUBE-NODEPORTS`: 1 per NodePort;
//! * the internal chain: 1 masquerade rule for off-cluster sources;
//! * `KUBE-SVC-*` (cluster policy, when used): E jumps, plus E `recent`
//!   checks with ClientIP affinity; `KUBE-SVL-*` (Local policy, when L>0):
//!   L jumps (+L);
//! * `KUBE-SEP-*`, one per endpoint the node can route to: 2 rules each
//!   (hairpin masquerade mark, DNAT);
//! * `KUBE-EXT-*` for NodePort/LoadBalancer: 2 rules with
//!   `externalTrafficPolicy: Cluster` (masquerade, jump); with Local 3
//!   (pod traffic short-circuit, masquerade and route of LOCAL-sourced
//!   traffic) plus the jump when L>0, and a `filter` DROP per NodePort and
//!   external IP when L=0;
//!
//! per Service port without endpoints: `filter` REJECT for the ClusterIP,
//! each NodePort and each external IP. Plus the fixed rules (jumps from
//! the built-in chains, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ`,
//! `KUBE-FORWARD`, the NodePort tail rule): 15.
//!
//! Chains are counted separately (each is one `:CHAIN` line of
//! `iptables-restore` input).

use crate::alloc::{cluster_ip, ingress_ip, service_type};
use crate::endpoints::{endpoints, usable};
use crate::store::Store;

/// Rules and chains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Rule lines (`-A ...`).
    pub rules: usize,
    /// Service and endpoint chains (`:KUBE-SVC-...` lines).
    pub chains: usize,
}

/// What kube-proxy would write on `node`.
pub fn count(store: &Store, node: &str) -> Count {
    let mut c = Count {
        rules: 15,
        chains: 0,
    };
    for svc in store.services() {
        if cluster_ip(svc).is_none() {
            continue;
        }
        let spec = svc.spec.clone().unwrap_or_default();
        let ty = service_type(svc);
        let external = matches!(ty, "NodePort" | "LoadBalancer");
        let sticky = spec.session_affinity.as_deref() == Some("ClientIP");
        let etp_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let itp_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let vips = spec.external_ips.as_ref().map_or(0, Vec::len)
            + usize::from(ty == "LoadBalancer" && ingress_ip(svc).is_some());
        for sp in spec.ports.iter().flatten() {
            let eps = endpoints(store, svc, sp);
            let all = usable(&eps).len();
            let local_eps: Vec<_> = eps
                .iter()
                .filter(|e| e.node.as_deref() == Some(node))
                .cloned()
                .collect();
            let local = usable(&local_eps).len();
            let nodeports = usize::from(external && sp.node_port.is_some());
            if all == 0 {
                c.rules += 1 + nodeports + vips;
                continue;
            }
            let per = if sticky { 2 } else { 1 };
            c.rules += 1 + vips + nodeports + 1;
            let uses_cluster = !itp_local || (external && !etp_local) || vips > 0;
            if uses_cluster {
                c.rules += per * all;
                c.chains += 1;
            }
            if (itp_local || etp_local) && local > 0 {
                c.rules += per * local;
                c.chains += 1;
            }
            c.rules += 2 * all;
            c.chains += all;
            if external || vips > 0 {
                c.chains += 1;
                if etp_local {
                    c.rules += 3 + usize::from(local > 0);
                    if local == 0 {
                        c.rules += nodeports + vips;
                    }
                } else {
                    c.rules += 2;
                }
            }
        }
    }
    c
}
