//! Services: every frontend (ClusterIP, NodePort, LoadBalancer and external
//! IPs, per port) becomes a table-40 rule that hands the first packet of a
//! connection to a select group of the usable endpoints, or rejects it
//! (no endpoints at all) or drops it (a Local traffic policy with no local
//! endpoint), as kube-proxy decides; the group's bucket only records the
//! endpoint (reg3, reg4) and table 44's per-endpoint rule does the DNAT.
//!
//! Traffic policies, as kube-proxy reads them:
//! * `internalTrafficPolicy: Local` — ClusterIP traffic goes to this node's
//!   endpoints only; none here → drop.
//! * `externalTrafficPolicy: Local` — NodePort and LoadBalancer traffic from
//!   outside (the gateway port) goes to this node's endpoints only, and is
//!   not SNATed (the client IP is kept: ct_mark bit 1); none here → drop.
//!   Pods reaching the LoadBalancer IP still get every endpoint.
//! * `sessionAffinity: ClientIP` — a learned rule per client and frontend
//!   sends later connections to the same endpoint for `timeoutSeconds`.

use super::{table as t, Cx, ZONE};
use crate::alloc::{cluster_ip, ingress_ip, service_type};
use crate::cookie::{cookie, fnv1a, Category};
use crate::endpoints::{endpoints_from, usable, Endpoint, Proto};
use crate::net::hex;
use crate::object::{Kind, ObjectKey};
use crate::rules::Group;
use k8s_openapi::api::core::v1::Service;
use std::net::Ipv4Addr;

/// What a frontend does with a new connection.
#[derive(Clone, Copy)]
enum Verdict {
    /// Balance over a group; `local` marks eTP=Local external traffic.
    Group { id: u32, local: bool },
    /// Answer with a TCP reset or ICMP port unreachable.
    Reject,
    /// Drop silently.
    Drop,
}

pub(super) fn compile(cx: &mut Cx<'_>) {
    for svc in cx.v.store.services() {
        service(cx, svc);
    }
}

/// The rules of one Service (its frontends, groups and endpoints' DNAT).
/// They depend on the Service, its EndpointSlices, the pods of its
/// namespace (named target ports, endpoints of a selector without
/// slices) and the owners of its endpoint addresses; the incremental
/// compiler ([`super::incremental`]) recompiles them when one of those
/// changes.
pub(super) fn service(cx: &mut Cx<'_>, svc: &Service) {
    if service_type(svc) == "ExternalName" {
        return;
    }
    let Some(cip) = cluster_ip(svc) else { return };
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let key = ObjectKey::new(Kind::Service, ns, name);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    for (i, sp) in ports.iter().enumerate() {
        let Some(proto) = Proto::parse(sp.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(sp.port) else {
            continue;
        };
        let slices = cx
            .ix
            .slices
            .get(&(ns, name))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let pods = cx.ix.pods_by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[]);
        let eps = endpoints_from(svc, sp, slices, pods);
        let fe = Frontends {
            svc,
            key: &key,
            index: i,
            proto,
            port,
            node_port: sp
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0),
            cip,
        };
        fe.compile(cx, &eps);
    }
}

struct Frontends<'s> {
    svc: &'s Service,
    key: &'s ObjectKey,
    index: usize,
    proto: Proto,
    port: u16,
    node_port: Option<u16>,
    cip: Ipv4Addr,
}

fn policy_local(svc: &Service, external: bool) -> bool {
    let spec = svc.spec.as_ref();
    let p = if external {
        spec.and_then(|s| s.external_traffic_policy.as_deref())
    } else {
        spec.and_then(|s| s.internal_traffic_policy.as_deref())
    };
    p == Some("Local")
}

/// The session-affinity timeout, when the Service has ClientIP affinity.
fn affinity(svc: &Service) -> Option<u32> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let t = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(10800);
    Some(t.clamp(1, 86400) as u32)
}

impl Frontends<'_> {
    fn compile(&self, cx: &mut Cx<'_>, eps: &[Endpoint]) {
        let all = usable(eps);
        let local_eps: Vec<&Endpoint> = eps
            .iter()
            .filter(|e| e.node.as_deref() == Some(cx.v.node))
            .collect();
        let local = usable(local_eps.iter().copied());
        let c = cookie(self.key, Category::Service);
        let sticky = affinity(self.svc).filter(|_| self.proto != Proto::Sctp);

        let mut cluster_group = None;
        let mut local_group = None;
        let mut group_for = |cx: &mut Cx<'_>, is_local: bool| -> u32 {
            let slot = if is_local {
                &mut local_group
            } else {
                &mut cluster_group
            };
            if let Some(id) = *slot {
                return id;
            }
            let set = if is_local { &local } else { &all };
            let id = self.group(cx, set, is_local, sticky.is_some(), c);
            *slot = Some(id);
            id
        };
        let has_any = !all.is_empty();
        let verdict = |cx: &mut Cx<'_>,
                       g: &mut dyn FnMut(&mut Cx<'_>, bool) -> u32,
                       is_local: bool,
                       mark: bool| {
            let set = if is_local { &local } else { &all };
            if !set.is_empty() {
                Verdict::Group {
                    id: g(cx, is_local),
                    local: mark,
                }
            } else if has_any {
                Verdict::Drop
            } else {
                Verdict::Reject
            }
        };
        let p = self.proto.flow();
        let itp = policy_local(self.svc, false);
        let etp = policy_local(self.svc, true);

        let v = verdict(cx, &mut group_for, itp, false);
        self.frontend(
            cx,
            c,
            200,
            format!("{p},nw_dst={},tp_dst={}", self.cip, self.port),
            v,
            sticky,
        );

        let external = matches!(service_type(self.svc), "NodePort" | "LoadBalancer");
        let mut vips: Vec<Ipv4Addr> = self
            .svc
            .spec
            .as_ref()
            .and_then(|s| s.external_ips.as_ref())
            .map(|v| v.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default();
        if service_type(self.svc) == "LoadBalancer" {
            vips.extend(ingress_ip(self.svc));
        }
        let node_port = self.node_port.filter(|_| external);
        if node_port.is_none() && vips.is_empty() {
            return;
        }
        let ext = verdict(cx, &mut group_for, etp, etp);
        if let Some(np) = node_port {
            let m = format!("{p},reg0=0x2/0xf,nw_dst={},tp_dst={np}", cx.node_ip);
            self.frontend(cx, c, 200, m, ext, sticky);
        }
        for vip in vips {
            // Pods reaching the external address get every endpoint, as
            // kube-proxy short-circuits them; clients from outside get the
            // external policy.
            let inside = verdict(cx, &mut group_for, false, false);
            self.frontend(
                cx,
                c,
                200,
                format!("{p},nw_dst={vip},tp_dst={}", self.port),
                inside,
                sticky,
            );
            if etp {
                let m = format!("{p},reg0=0x2/0xf,nw_dst={vip},tp_dst={}", self.port);
                self.frontend(cx, c, 210, m, ext, sticky);
            }
        }
    }

    /// A select group over `set`; returns its id.
    fn group(
        &self,
        cx: &mut Cx<'_>,
        set: &[&Endpoint],
        is_local: bool,
        sticky: bool,
        c: u64,
    ) -> u32 {
        let seed = format!(
            "{}/{}/{}",
            self.key,
            self.index,
            if is_local { "local" } else { "cluster" }
        );
        let mut id = (fnv1a(seed.as_bytes()) as u32) & 0x7fff_ffff;
        while id == 0 || cx.out.has_group(id) {
            id = (id + 1) & 0x7fff_ffff;
        }
        let next = if sticky { t::AFFINITY_LEARN } else { t::DNAT };
        let mut text = format!(
            "group_id={id},type=select,selection_method=hash,fields(ip_src,ip_dst,nw_proto,tcp_src,tcp_dst,udp_src,udp_dst)"
        );
        for e in set {
            text.push_str(&format!(
                ",bucket=weight:100,actions=load:{}->NXM_NX_REG3[],load:{:#x}->NXM_NX_REG4[0..15],resubmit(,{next})",
                hex(e.ip),
                e.port
            ));
            self.dnat(cx, e, is_local && policy_local(self.svc, true));
        }
        cx.out.group(Group {
            id,
            cookie: c,
            text,
        });
        id
    }

    /// Table 44's rule for endpoint `e` (owned by its pod when it is one,
    /// so two Services sharing an endpoint share the rule).
    fn dnat(&self, cx: &mut Cx<'_>, e: &Endpoint, external_local: bool) {
        let owner = match cx.ix.pod_by_ip.get(&e.ip) {
            Some((ns, name)) => ObjectKey::new(Kind::Pod, ns, name),
            None => self.key.clone(),
        };
        let c = cookie(&owner, Category::Endpoint);
        let p = self.proto.flow();
        let m = format!("{p},reg3={},reg4={:#x}/0xffff", hex(e.ip), e.port);
        let nat = format!("nat(dst={}:{})", e.ip, e.port);
        cx.out.flow(
            t::DNAT,
            200,
            c,
            m.clone(),
            format!(
                "ct(commit,table={},zone={ZONE},{nat},exec(set_field:0x1/0x1->ct_mark))",
                t::DEST
            ),
        );
        if external_local {
            // Client IP kept: ct_mark bit 1 keeps table 70 from SNATing.
            cx.out.flow(
                t::DNAT,
                210,
                c,
                format!(
                    "{p},reg0=0x20/0x20,reg3={},reg4={:#x}/0xffff",
                    hex(e.ip),
                    e.port
                ),
                format!(
                    "ct(commit,table={},zone={ZONE},{nat},exec(set_field:0x3/0x3->ct_mark))",
                    t::DEST
                ),
            );
        }
    }

    /// The rules of one frontend `m` (a match without connection state).
    fn frontend(
        &self,
        cx: &mut Cx<'_>,
        c: u64,
        prio: u16,
        m: String,
        v: Verdict,
        sticky: Option<u32>,
    ) {
        let first = format!("ct_state=+new+trk,{m}");
        match v {
            Verdict::Reject => {
                let how = if self.proto == Proto::Tcp {
                    "reject(tcp_rst)"
                } else {
                    "reject(port_unreachable)"
                };
                cx.out.flow(t::SERVICE, prio, c, first, how);
            }
            Verdict::Drop => cx.out.flow(t::SERVICE, prio, c, first, "drop"),
            Verdict::Group { id, local } => {
                let mark = if local {
                    "load:0x1->NXM_NX_REG0[5],"
                } else {
                    ""
                };
                match sticky {
                    None => cx
                        .out
                        .flow(t::SERVICE, prio, c, first, format!("{mark}group:{id}")),
                    Some(timeout) => {
                        cx.out.flow(
                            t::SERVICE,
                            prio,
                            c,
                            first,
                            format!(
                                "{mark}resubmit(,{}),goto_table:{}",
                                t::AFFINITY,
                                t::AFFINITY_DECIDE
                            ),
                        );
                        cx.out
                            .flow(t::AFFINITY_DECIDE, 100, c, m.clone(), format!("group:{id}"));
                        let (nw_proto, dst) = match self.proto {
                            Proto::Udp => (17, "NXM_OF_UDP_DST[]"),
                            _ => (6, "NXM_OF_TCP_DST[]"),
                        };
                        let learned = cookie(self.key, Category::Learned);
                        cx.out.flow(
                            t::AFFINITY_LEARN,
                            100,
                            c,
                            m,
                            format!(
                                "learn(table={},hard_timeout={timeout},priority=200,cookie={learned:#x},eth_type=0x800,\
                                 nw_proto={nw_proto},NXM_OF_IP_SRC[],NXM_OF_IP_DST[],{dst},\
                                 load:NXM_NX_REG3[]->NXM_NX_REG3[],load:NXM_NX_REG4[0..15]->NXM_NX_REG4[0..15],\
                                 load:0x1->NXM_NX_REG0[4],load:NXM_NX_REG0[5]->NXM_NX_REG0[5]),goto_table:{}",
                                t::AFFINITY,
                                t::DNAT
                            ),
                        );
                    }
                }
            }
        }
    }
}
