//! The controller role: every address the model hands out, as pure
//! functions from the store to [`Patch`]es that write the allocations onto
//! the objects — OVN-Kubernetes's habit, so that a restarted controller
//! reads them back and loses nothing.
//!
//! | object | what | where it is written |
//! |---|---|---|
//! | Namespace | a subnet of the pod block (/24) | annotation `oxvs.io/subnet` |
//! | Namespace | a SNAT IP from the external pool, and the node that owns it | `oxvs.io/snat-ip`, `oxvs.io/snat-node` |
//! | Pod | an address of its namespace's subnet (the CNI waits for it) | `oxvs.io/ip` (`A.B.C.D/24`), `oxvs.io/gateway`, `oxvs.io/mac` |
//! | Pod | a node, when none is given (manifest mode has no scheduler) | `spec.nodeName` |
//! | Service | a ClusterIP from the Service range when `spec.clusterIP` is empty | `spec.clusterIP(s)` |
//! | Service | NodePorts when the type needs them and none is given | `spec.ports[].nodePort` |
//! | Service (LoadBalancer) | an IP from the external pool; `<pending>` while the pool is empty | `status.loadBalancer.ingress` |
//!
//! Rules: what an object already carries is kept when it is valid and not
//! taken by an object earlier in key order (a Pod with `status.podIP` keeps
//! it, as a kubelet-reported pod would); everything else gets the lowest
//! free value, objects taken in key order, so the result is the same on
//! every run. Nothing is ever freed explicitly: allocations are recomputed
//! from the objects that exist, so an object that goes frees what it held.

use crate::config::Config;
use crate::net::{mac_for, Cidr};
use crate::object::{annotation, Kind, Object, ObjectKey};
use crate::store::Store;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Pod, Service, ServiceStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Namespace annotation: the namespace's subnet.
pub const SUBNET: &str = "oxvs.io/subnet";
/// Namespace annotation: the namespace's SNAT address.
pub const SNAT_IP: &str = "oxvs.io/snat-ip";
/// Namespace annotation: the node that SNATs the namespace's egress.
pub const SNAT_NODE: &str = "oxvs.io/snat-node";
/// Pod annotation: the pod's address and prefix length.
pub const POD_IP: &str = "oxvs.io/ip";
/// Pod annotation: the pod's gateway (the namespace subnet's `.1`).
pub const POD_GATEWAY: &str = "oxvs.io/gateway";
/// Pod annotation: the pod's MAC.
pub const POD_MAC: &str = "oxvs.io/mac";

/// One change the controller makes to one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "patch")]
pub enum Patch {
    /// Set annotations.
    Annotate {
        /// The object, as `Kind/ns/name`.
        object: String,
        /// The annotations to set.
        annotations: BTreeMap<String, String>,
    },
    /// Bind a Pod to a node.
    Schedule {
        /// The Pod.
        object: String,
        /// The node.
        node: String,
    },
    /// A Service's ClusterIP.
    ClusterIp {
        /// The Service.
        object: String,
        /// The address.
        ip: Ipv4Addr,
    },
    /// A Service port's NodePort.
    NodePort {
        /// The Service.
        object: String,
        /// The index in `spec.ports`.
        index: usize,
        /// The port.
        port: u16,
    },
    /// A LoadBalancer Service's ingress address (`None`: pending).
    Ingress {
        /// The Service.
        object: String,
        /// The address.
        ip: Option<Ipv4Addr>,
    },
}

impl Patch {
    /// The patched object's key text.
    pub fn object(&self) -> &str {
        match self {
            Patch::Annotate { object, .. }
            | Patch::Schedule { object, .. }
            | Patch::ClusterIp { object, .. }
            | Patch::NodePort { object, .. }
            | Patch::Ingress { object, .. } => object,
        }
    }

    /// Applies the patch to `o` (of the right kind); says whether it changed.
    pub fn apply_to(&self, o: &mut Object) -> bool {
        let before = o.clone();
        match (self, &mut *o) {
            (Patch::Annotate { annotations, .. }, o) => {
                let a = o
                    .meta_mut()
                    .annotations
                    .get_or_insert_with(Default::default);
                for (k, v) in annotations {
                    a.insert(k.clone(), v.clone());
                }
            }
            (Patch::Schedule { node, .. }, Object::Pod(p)) => {
                p.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
            }
            (Patch::ClusterIp { ip, .. }, Object::Service(s)) => {
                let spec = s.spec.get_or_insert_with(Default::default);
                spec.cluster_ip = Some(ip.to_string());
                spec.cluster_ips = Some(vec![ip.to_string()]);
            }
            (Patch::NodePort { index, port, .. }, Object::Service(s)) => {
                if let Some(p) = s
                    .spec
                    .as_mut()
                    .and_then(|sp| sp.ports.as_mut())
                    .and_then(|ps| ps.get_mut(*index))
                {
                    p.node_port = Some(i32::from(*port));
                }
            }
            (Patch::Ingress { ip, .. }, Object::Service(s)) => {
                let st = s.status.get_or_insert_with(ServiceStatus::default);
                st.load_balancer = Some(LoadBalancerStatus {
                    ingress: ip.map(|ip| {
                        vec![LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ..Default::default()
                        }]
                    }),
                });
            }
            _ => {}
        }
        *o != before
    }
}

/// Applies `patches` to the objects of `store` they name (patches for
/// objects that are gone are ignored); says whether anything changed.
pub fn apply(store: &mut Store, patches: &[Patch]) -> bool {
    let mut changed = false;
    for p in patches {
        let Ok(k) = ObjectKey::parse(p.object()) else {
            continue;
        };
        if let Some(o) = store.get_mut(&k) {
            changed |= p.apply_to(o);
        }
    }
    changed
}

/// Applies the patches of a saved state to the objects that lack the
/// value (an annotation not there, no node, an empty ClusterIP, no
/// NodePort, no ingress): what a manifest says itself wins over what the
/// controller wrote last time.
pub fn restore(store: &mut Store, saved: &[Patch]) {
    for p in saved {
        let Ok(k) = ObjectKey::parse(p.object()) else {
            continue;
        };
        let Some(o) = store.get_mut(&k) else { continue };
        let missing = match (p, &*o) {
            (
                Patch::Annotate {
                    object,
                    annotations,
                },
                cur,
            ) => {
                let q = Patch::Annotate {
                    object: object.clone(),
                    annotations: annotations
                        .iter()
                        .filter(|(k, _)| cur.annotation(k).is_none())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                };
                q.apply_to(o);
                continue;
            }
            (Patch::Schedule { .. }, Object::Pod(pod)) => pod_node(pod).is_none(),
            (Patch::ClusterIp { .. }, Object::Service(s)) => s
                .spec
                .as_ref()
                .and_then(|sp| sp.cluster_ip.as_deref())
                .unwrap_or("")
                .is_empty(),
            (Patch::NodePort { index, .. }, Object::Service(s)) => s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.as_ref())
                .and_then(|ps| ps.get(*index))
                .is_some_and(|p| p.node_port.unwrap_or(0) == 0),
            (Patch::Ingress { .. }, Object::Service(s)) => ingress_ip(s).is_none(),
            _ => false,
        };
        if missing {
            p.apply_to(o);
        }
    }
}

/// Every allocation the objects of `store` carry, as patches: what manifest
/// mode saves so that a restart reads them back (the API server keeps them
/// on the objects in API mode).
pub fn saved_state(store: &Store) -> Vec<Patch> {
    let mut out = Vec::new();
    for o in store.iter() {
        let k = o.key().to_string();
        let keys: &[&str] = match o.kind() {
            Kind::Namespace => &[SUBNET, SNAT_IP, SNAT_NODE],
            Kind::Pod => &[POD_IP, POD_GATEWAY, POD_MAC],
            _ => &[],
        };
        let annotations: BTreeMap<String, String> = keys
            .iter()
            .filter_map(|a| o.annotation(a).map(|v| (a.to_string(), v.to_string())))
            .collect();
        if !annotations.is_empty() {
            out.push(Patch::Annotate {
                object: k.clone(),
                annotations,
            });
        }
        match o {
            Object::Pod(p) => {
                if let Some(n) = pod_node(p) {
                    out.push(Patch::Schedule {
                        object: k,
                        node: n.to_string(),
                    });
                }
            }
            Object::Service(s) => {
                if let Some(ip) = cluster_ip(s) {
                    out.push(Patch::ClusterIp {
                        object: k.clone(),
                        ip,
                    });
                }
                for (index, p) in s
                    .spec
                    .iter()
                    .flat_map(|sp| sp.ports.iter().flatten())
                    .enumerate()
                {
                    if let Some(np) = p.node_port.filter(|n| *n > 0) {
                        out.push(Patch::NodePort {
                            object: k.clone(),
                            index,
                            port: np as u16,
                        });
                    }
                }
                if let Some(ip) = ingress_ip(s) {
                    out.push(Patch::Ingress {
                        object: k,
                        ip: Some(ip),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// What one controller pass decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// The changes to write.
    pub patches: Vec<Patch>,
    /// What could not be allocated, and why (`<pending>`).
    pub pending: Vec<String>,
}

/// A namespace's subnet as its annotation says, if well-formed.
pub fn namespace_subnet(store: &Store, ns: &str) -> Option<Cidr> {
    store
        .namespace(ns)
        .and_then(|n| annotation(&n.metadata, SUBNET))
        .and_then(|s| s.parse().ok())
}

/// A pod's address: its reported `status.podIP`, else the controller's
/// annotation. Host-network pods have the node's address and none here.
pub fn pod_ip(p: &Pod) -> Option<Ipv4Addr> {
    if host_network(p) {
        return None;
    }
    if let Some(ip) = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|s| s.parse().ok())
    {
        return Some(ip);
    }
    annotation(&p.metadata, POD_IP)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
}

/// Whether the pod shares its node's network namespace.
pub fn host_network(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The node a pod is bound to.
pub fn pod_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// A Service's ClusterIP, when it has one (not headless, not empty).
pub fn cluster_ip(s: &Service) -> Option<Ipv4Addr> {
    s.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

/// A Service's type (`ClusterIP` when unset).
pub fn service_type(s: &Service) -> &str {
    s.spec
        .as_ref()
        .and_then(|sp| sp.type_.as_deref())
        .unwrap_or("ClusterIP")
}

/// A LoadBalancer Service's ingress address.
pub fn ingress_ip(s: &Service) -> Option<Ipv4Addr> {
    s.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.as_deref()?.parse().ok())
}

fn key(kind: Kind, ns: &str, name: &str) -> String {
    ObjectKey::new(kind, ns, name).to_string()
}

fn name_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or(""),
    )
}

/// One controller pass over `store`.
pub fn allocate(store: &Store, cfg: &Config) -> Allocation {
    let mut out = Allocation::default();
    let nodes: Vec<String> = store
        .nodes()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let subnets = namespaces(store, cfg, &mut out);
    pool(store, cfg, &nodes, &mut out);
    pods(store, &subnets, &nodes, &mut out);
    services(store, cfg, &mut out);
    out
}

/// Subnets: kept, then the lowest free. Returns every namespace's subnet.
fn namespaces(store: &Store, cfg: &Config, out: &mut Allocation) -> BTreeMap<String, Cidr> {
    let valid: BTreeSet<Cidr> = cfg.namespace_subnets().collect();
    let mut used = BTreeSet::new();
    let mut have = BTreeMap::new();
    let mut missing = Vec::new();
    for n in store.namespaces() {
        let name = n.metadata.name.clone().unwrap_or_default();
        match annotation(&n.metadata, SUBNET).and_then(|s| s.parse::<Cidr>().ok()) {
            Some(c) if valid.contains(&c) && used.insert(c) => {
                have.insert(name, c);
            }
            _ => missing.push(name),
        }
    }
    let mut free = cfg.namespace_subnets().filter(|c| !used.contains(c));
    for name in missing {
        match free.next() {
            Some(c) => {
                out.patches.push(Patch::Annotate {
                    object: key(Kind::Namespace, "", &name),
                    annotations: [(SUBNET.to_string(), c.to_string())].into(),
                });
                have.insert(name, c);
            }
            None => out.pending.push(format!(
                "Namespace/{name}: no free /{} in {}",
                cfg.namespace_prefix, cfg.pod_cidr
            )),
        }
    }
    have
}

/// The external pool: namespaces' SNAT IPs and LoadBalancer IPs share it.
fn pool(store: &Store, cfg: &Config, nodes: &[String], out: &mut Allocation) {
    let mut used = BTreeSet::new();
    let mut ns_missing = Vec::new();
    let mut snat_load: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    let mut node_missing = Vec::new();
    for n in store.namespaces() {
        let name = n.metadata.name.clone().unwrap_or_default();
        match annotation(&n.metadata, SNAT_IP).and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            Some(ip) if cfg.external_pool.contains(ip) && used.insert(ip) => {}
            _ => ns_missing.push(name.clone()),
        }
        match annotation(&n.metadata, SNAT_NODE) {
            Some(node) if snat_load.contains_key(node) => {
                *snat_load.get_mut(node).unwrap_or(&mut 0) += 1
            }
            _ => node_missing.push(name),
        }
    }
    let mut lb_missing = Vec::new();
    for s in store.services() {
        if service_type(s) != "LoadBalancer" {
            continue;
        }
        let (ns, name) = name_of(&s.metadata);
        match ingress_ip(s) {
            Some(ip) if cfg.external_pool.contains(ip) && used.insert(ip) => {}
            _ => {
                let wanted = s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.load_balancer_ip.as_deref())
                    .and_then(|i| i.parse().ok());
                lb_missing.push((key(Kind::Service, ns, name), wanted));
            }
        }
    }
    // Requested LoadBalancer IPs first, so a free request is never taken by
    // an automatic allocation of the same pass.
    let mut lb_auto = Vec::new();
    for (k, wanted) in lb_missing {
        match wanted {
            Some(ip) if cfg.external_pool.contains(ip) && used.insert(ip) => {
                out.patches.push(Patch::Ingress {
                    object: k,
                    ip: Some(ip),
                })
            }
            _ => lb_auto.push(k),
        }
    }
    let mut free = cfg
        .external_pool
        .iter()
        .filter(|ip| !used.contains(ip))
        .collect::<Vec<_>>()
        .into_iter();
    for name in ns_missing {
        match free.next() {
            Some(ip) => out.patches.push(Patch::Annotate {
                object: key(Kind::Namespace, "", &name),
                annotations: [(SNAT_IP.to_string(), ip.to_string())].into(),
            }),
            None => out.pending.push(format!("Namespace/{name}: no free SNAT IP in the external pool (egress masquerades to the node IP)")),
        }
    }
    for k in lb_auto {
        match free.next() {
            Some(ip) => out.patches.push(Patch::Ingress {
                object: k,
                ip: Some(ip),
            }),
            None => out.pending.push(format!(
                "{k}: no free LoadBalancer IP in the external pool (<pending>)"
            )),
        }
    }
    // The node that owns a namespace's SNAT IP: the least loaded, by name.
    for name in node_missing {
        let Some((&node, _)) = snat_load.iter().min_by_key(|(n, c)| (**c, **n)) else {
            break;
        };
        *snat_load.get_mut(node).unwrap_or(&mut 0) += 1;
        out.patches.push(Patch::Annotate {
            object: key(Kind::Namespace, "", &name),
            annotations: [(SNAT_NODE.to_string(), node.to_string())].into(),
        });
    }
}

fn pods(store: &Store, subnets: &BTreeMap<String, Cidr>, nodes: &[String], out: &mut Allocation) {
    let mut used: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut load: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    let mut unscheduled = Vec::new();
    for p in store.pods() {
        let (ns, name) = name_of(&p.metadata);
        match pod_node(p) {
            Some(n) => *load.entry(n).or_default() += 1,
            None => unscheduled.push(key(Kind::Pod, ns, name)),
        }
        if host_network(p) {
            continue;
        }
        let u = used.entry(ns).or_default();
        let reported = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        if let Some(ip) = reported {
            u.insert(ip);
            continue;
        }
        let annotated =
            annotation(&p.metadata, POD_IP).and_then(|s| s.parse::<Cidr>().ok().map(|c| (s, c)));
        let ok = match (annotated, subnets.get(ns)) {
            (Some((text, c)), Some(sub)) => {
                let ip: Ipv4Addr = text
                    .split('/')
                    .next()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(c.addr);
                c.len == sub.len && usable(sub, ip) && u.insert(ip)
            }
            _ => false,
        };
        if !ok {
            missing.push((ns, name));
        }
    }
    for (ns, name) in missing {
        let Some(sub) = subnets.get(ns) else {
            out.pending
                .push(format!("Pod/{ns}/{name}: namespace {ns} has no subnet yet"));
            continue;
        };
        let u = used.entry(ns).or_default();
        let Some(ip) = (2..sub.size() as u32 - 1)
            .map(|i| sub.nth(i))
            .find(|ip| !u.contains(ip))
        else {
            out.pending
                .push(format!("Pod/{ns}/{name}: no free address in {sub}"));
            continue;
        };
        u.insert(ip);
        out.patches.push(Patch::Annotate {
            object: key(Kind::Pod, ns, name),
            annotations: [
                (POD_IP.to_string(), format!("{ip}/{}", sub.len)),
                (POD_GATEWAY.to_string(), sub.nth(1).to_string()),
                (POD_MAC.to_string(), mac_for(ip)),
            ]
            .into(),
        });
    }
    for k in unscheduled {
        let Some((&node, _)) = load.iter().min_by_key(|(n, c)| (**c, **n)) else {
            out.pending.push(format!("{k}: no Node to run on"));
            continue;
        };
        *load.get_mut(node).unwrap_or(&mut 0) += 1;
        out.patches.push(Patch::Schedule {
            object: k,
            node: node.to_string(),
        });
    }
}

/// Whether `ip` may be a pod's address in `sub`: not the network, the
/// gateway (`.1`) or the broadcast address.
pub fn usable(sub: &Cidr, ip: Ipv4Addr) -> bool {
    sub.contains(ip) && ip != sub.nth(0) && ip != sub.nth(1) && u32::from(ip) != sub.last()
}

fn services(store: &Store, cfg: &Config, out: &mut Allocation) {
    let mut used_ips = BTreeSet::new();
    let mut used_ports = BTreeSet::new();
    let mut need_ip = Vec::new();
    let mut need_ports = Vec::new();
    for s in store.services() {
        let (ns, name) = name_of(&s.metadata);
        let Some(spec) = &s.spec else { continue };
        if service_type(s) == "ExternalName" {
            continue;
        }
        match spec.cluster_ip.as_deref() {
            Some("None") => {}
            Some(ip) if !ip.is_empty() => {
                if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                    used_ips.insert(ip);
                }
            }
            _ => need_ip.push(key(Kind::Service, ns, name)),
        }
        let wants_node_ports = matches!(service_type(s), "NodePort" | "LoadBalancer")
            && !(service_type(s) == "LoadBalancer"
                && spec.allocate_load_balancer_node_ports == Some(false));
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            match p.node_port {
                Some(np) if np > 0 => {
                    used_ports.insert(np as u16);
                }
                _ if wants_node_ports => need_ports.push((key(Kind::Service, ns, name), i)),
                _ => {}
            }
        }
    }
    // .0 is the network and .1 is kept for the API server's own Service,
    // as Kubernetes does.
    let range = cfg.service_cidr;
    let mut free = (2..range.size() as u32 - 1)
        .map(|i| range.nth(i))
        .filter(|ip| !used_ips.contains(ip));
    for k in need_ip {
        match free.next() {
            Some(ip) => out.patches.push(Patch::ClusterIp { object: k, ip }),
            None => out
                .pending
                .push(format!("{k}: the Service range {range} is full")),
        }
    }
    let mut free = (cfg.node_ports.0..=cfg.node_ports.1).filter(|p| !used_ports.contains(p));
    for (k, index) in need_ports {
        match free.next() {
            Some(port) => out.patches.push(Patch::NodePort {
                object: k,
                index,
                port,
            }),
            None => out.pending.push(format!("{k}: no free NodePort")),
        }
    }
}

/// Runs the controller over `store` until nothing changes (a pass may
/// enable the next: a namespace's subnet lets its pods get addresses) and
/// returns every patch applied and what is still pending.
pub fn reconcile(store: &mut Store, cfg: &Config) -> Allocation {
    let mut all = Allocation::default();
    for _ in 0..4 {
        let a = allocate(store, cfg);
        all.pending = a.pending;
        if a.patches.is_empty() || !apply(store, &a.patches) {
            break;
        }
        all.patches.extend(a.patches);
    }
    all
}

#[cfg(test)]
mod tests;
