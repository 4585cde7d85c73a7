//! Namespaces and pods: the distributed gateway (ARP responder) of every
//! namespace subnet, each namespace's egress SNAT, and per pod either the
//! local rules (classification, spoof guard, delivery, hairpin) or the
//! route through the tunnel to the node that hosts it.

use super::{table as t, Cx, HAIRPIN_IP, SNAT_ZONE};
use crate::alloc::{pod_ip, pod_node, SNAT_IP, SNAT_NODE};
use crate::cookie::{cookie, Category};
use crate::net::mac_for;
use crate::object::{annotation, Kind, ObjectKey};
use std::net::Ipv4Addr;

pub(super) fn compile(cx: &mut Cx<'_>) {
    namespaces(cx);
    pods(cx);
}

fn namespaces(cx: &mut Cx<'_>) {
    let cfg = cx.v.config;
    let (tun, vni) = (cfg.tunnel_port, cfg.vni);
    for n in cx.v.store.namespaces() {
        let name = n.metadata.name.as_deref().unwrap_or("");
        let Some(&subnet) = cx.ix.subnets.get(name) else {
            continue;
        };
        let c = cookie(
            &ObjectKey::new(Kind::Namespace, "", name),
            Category::Namespace,
        );
        let gw = subnet.nth(1);
        let gw_mac = mac_for(gw);
        let mac_hex = format!(
            "{:#014x}",
            u64::from_str_radix(&gw_mac.replace(':', ""), 16).unwrap_or(0)
        );
        // The distributed gateway: every node answers ARP for any address
        // of the subnet (the gateway itself and every pod, local or not)
        // with the gateway's MAC, so pods hand every packet to the switch,
        // which routes it. The target and sender addresses are swapped
        // through reg7.
        cx.out.flow(
            t::SPOOF_ARP,
            190,
            c,
            format!("arp,arp_op=1,arp_tpa={subnet}"),
            format!(
                "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:{gw_mac},load:0x2->NXM_OF_ARP_OP[],\
                 move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],load:{mac_hex}->NXM_NX_ARP_SHA[],\
                 move:NXM_OF_ARP_TPA[]->NXM_NX_REG7[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],\
                 move:NXM_NX_REG7[]->NXM_OF_ARP_SPA[],in_port"
            ),
        );
        // Egress: with a SNAT IP, the node that owns it SNATs the
        // namespace's traffic to the outside (from its own pods and from
        // other nodes' pods, which tunnel it there) and un-SNATs the
        // replies; without one, the node IP masquerade (pipeline) applies.
        let snat_ip: Option<Ipv4Addr> =
            annotation(&n.metadata, SNAT_IP).and_then(|s| s.parse().ok());
        let owner = annotation(&n.metadata, SNAT_NODE);
        let (Some(ip), Some(owner)) = (snat_ip, owner) else {
            continue;
        };
        if owner == cx.v.node {
            cx.out.flow(
                t::UNSNAT,
                200,
                c,
                format!("ip,nw_dst={ip}"),
                format!("ct(table={},zone={SNAT_ZONE},nat)", t::CT),
            );
            for src in [1, 3] {
                cx.out.flow(
                    t::SNAT,
                    250,
                    c,
                    format!("ct_state=+trk-rpl,ip,reg0={src:#x}/0xf,reg2=0x3,nw_src={subnet}"),
                    format!(
                        "ct(commit,table={},zone={SNAT_ZONE},nat(src={ip}))",
                        t::OUTPUT
                    ),
                );
            }
        } else if let Some(owner_ip) = cx.ix.node_ips.get(owner) {
            cx.out.flow(
                t::SNAT,
                250,
                c,
                format!("ct_state=+trk-rpl,ip,reg0=0x1/0xf,reg2=0x3,nw_src={subnet}"),
                format!("set_field:{owner_ip}->tun_dst,set_field:{vni:#x}->tun_id,output:{tun}"),
            );
        }
    }
}

fn pods(cx: &mut Cx<'_>) {
    let cfg = cx.v.config;
    let (tun, vni) = (cfg.tunnel_port, cfg.vni);
    for p in cx.v.store.pods() {
        let Some(ip) = pod_ip(p) else { continue };
        let ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let name = p.metadata.name.as_deref().unwrap_or("");
        let Some(node) = pod_node(p) else { continue };
        let key = ObjectKey::new(Kind::Pod, ns, name);
        if node != cx.v.node {
            let Some(node_ip) = cx.ix.node_ips.get(node) else {
                continue;
            };
            let c = cookie(&key, Category::RemotePod);
            cx.out.flow(
                t::OUTPUT,
                150,
                c,
                format!("ip,nw_dst={ip}"),
                format!("set_field:{node_ip}->tun_dst,set_field:{vni:#x}->tun_id,output:{tun}"),
            );
            continue;
        }
        let Some(port) = cx.v.ports.get(&(ns.to_string(), name.to_string())) else {
            continue; // not attached yet: the CNI has not added its port
        };
        let c = cookie(&key, Category::LocalPod);
        let of = port.ofport;
        let mac = port.mac.clone().unwrap_or_else(|| mac_for(ip));
        let gw_mac = cx
            .ix
            .subnets
            .get(ns)
            .map(|s| mac_for(s.nth(1)))
            .unwrap_or_else(|| mac_for(ip));
        let o = &mut cx.out;
        o.flow(
            t::CLASSIFY,
            200,
            c,
            format!("in_port={of}"),
            format!("load:0x1->NXM_NX_REG0[0..3],goto_table:{}", t::SPOOF_ARP),
        );
        o.flow(
            t::SPOOF_ARP,
            200,
            c,
            format!("ip,in_port={of},dl_src={mac},nw_src={ip}"),
            format!("goto_table:{}", t::UNSNAT),
        );
        // A pod asking for its own address (duplicate address detection)
        // gets no answer.
        o.flow(
            t::SPOOF_ARP,
            195,
            c,
            format!("arp,in_port={of},arp_tpa={ip}"),
            "drop",
        );
        // Hairpin: a pod that reached itself through a Service would answer
        // itself directly; SNAT makes the reply come back through here.
        o.flow(
            t::SNAT,
            300,
            c,
            format!("ct_state=+trk-rpl,ip,in_port={of},nw_dst={ip}"),
            format!(
                "ct(commit,table={},zone={SNAT_ZONE},nat(src={HAIRPIN_IP}))",
                t::OUTPUT
            ),
        );
        let deliver = format!("mod_dl_src:{gw_mac},mod_dl_dst:{mac}");
        o.flow(
            t::OUTPUT,
            300,
            c,
            format!("ip,in_port={of},nw_dst={ip}"),
            format!("{deliver},in_port"),
        );
        o.flow(
            t::OUTPUT,
            200,
            c,
            format!("ip,nw_dst={ip}"),
            format!("{deliver},output:{of}"),
        );
    }
}
