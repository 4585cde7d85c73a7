//! The node's fixed pipeline: the rules that exist whatever the objects —
//! gateway and tunnel classification, conntrack, the defaults of every
//! table, the masquerade to the node IP and the way out to the node kernel.
//! Their cookie names the Node.

use super::{table as t, Cx, HAIRPIN_IP, SNAT_ZONE, ZONE};
use crate::cookie::{cookie, Category};
use crate::object::{Kind, ObjectKey};

pub(super) fn compile(cx: &mut Cx<'_>) {
    let c = cookie(&cx.node_key, Category::Pipeline);
    let cfg = cx.v.config;
    let (gw, tun, vni) = (cfg.gateway_port, cfg.tunnel_port, cfg.vni);
    let node_ip = cx.node_ip;
    let (p0, p1) = cfg.snat_ports;
    let o = &mut cx.out;

    // 0: classification. Pods are added per pod (pods.rs).
    o.flow(
        t::CLASSIFY,
        200,
        c,
        format!("in_port={gw}"),
        format!("load:0x2->NXM_NX_REG0[0..3],goto_table:{}", t::SPOOF_ARP),
    );
    o.flow(
        t::CLASSIFY,
        200,
        c,
        format!("in_port={tun},tun_id={vni:#x}"),
        format!("load:0x3->NXM_NX_REG0[0..3],goto_table:{}", t::SPOOF_ARP),
    );
    o.flow(t::CLASSIFY, 0, c, "", "drop");

    // 10: the gateway and the tunnel may send any IP packet; pods are
    // checked per pod; ARP is answered per namespace.
    o.flow(
        t::SPOOF_ARP,
        200,
        c,
        format!("ip,in_port={gw}"),
        format!("goto_table:{}", t::UNSNAT),
    );
    o.flow(
        t::SPOOF_ARP,
        200,
        c,
        format!("ip,in_port={tun}"),
        format!("goto_table:{}", t::UNSNAT),
    );
    o.flow(t::SPOOF_ARP, 0, c, "", "drop");

    // 20: replies of connections SNATed here come back addressed to the
    // hairpin address or the node IP; restore them before the main zone.
    for dst in [HAIRPIN_IP.to_string(), node_ip.to_string()] {
        o.flow(
            t::UNSNAT,
            200,
            c,
            format!("ip,nw_dst={dst}"),
            format!("ct(table={},zone={SNAT_ZONE},nat)", t::CT),
        );
    }
    o.flow(t::UNSNAT, 0, c, "", format!("goto_table:{}", t::CT));

    // 30/31: every IP packet through conntrack; invalid ones dropped.
    o.flow(
        t::CT,
        200,
        c,
        "ip",
        format!("ct(table={},zone={ZONE},nat)", t::CT_STATE),
    );
    o.flow(t::CT, 0, c, "", "drop");
    o.flow(t::CT_STATE, 200, c, "ct_state=+inv+trk,ip", "drop");
    o.flow(t::CT_STATE, 0, c, "", format!("goto_table:{}", t::SERVICE));

    // 40: anything not a Service frontend goes on.
    o.flow(t::SERVICE, 0, c, "", format!("goto_table:{}", t::DEST));
    // 41-43: affinity defaults (no learned rule: reg0[4] clear).
    o.flow(t::AFFINITY, 0, c, "", "load:0->NXM_NX_REG0[4]");
    o.flow(
        t::AFFINITY_DECIDE,
        200,
        c,
        "reg0=0x10/0x10",
        format!("goto_table:{}", t::DNAT),
    );
    o.flow(t::AFFINITY_DECIDE, 0, c, "", "drop");
    o.flow(t::AFFINITY_LEARN, 0, c, "", "drop");
    o.flow(t::DNAT, 0, c, "", "drop");

    // 45: destination class, after DNAT.
    let pod_cidr = cfg.pod_cidr;
    o.flow(
        t::DEST,
        200,
        c,
        format!("ip,nw_dst={node_ip}"),
        format!("load:0x2->NXM_NX_REG2[],goto_table:{}", t::EGRESS_POLICY),
    );
    o.flow(
        t::DEST,
        100,
        c,
        format!("ip,nw_dst={pod_cidr}"),
        format!("load:0x1->NXM_NX_REG2[],goto_table:{}", t::EGRESS_POLICY),
    );
    o.flow(
        t::DEST,
        0,
        c,
        "ip",
        format!("load:0x3->NXM_NX_REG2[],goto_table:{}", t::EGRESS_POLICY),
    );

    // 50-52, 60-62: the policy tables (policy.rs) write their own defaults.

    // 65: commit new connections (load-balanced ones were committed with
    // their DNAT in table 44).
    o.flow(
        t::COMMIT,
        200,
        c,
        "ct_state=+new+trk,ct_mark=0x1/0x1,ip",
        format!("goto_table:{}", t::SNAT),
    );
    o.flow(
        t::COMMIT,
        100,
        c,
        "ct_state=+new+trk,ip",
        format!("ct(commit,table={},zone={ZONE})", t::SNAT),
    );
    o.flow(t::COMMIT, 0, c, "", format!("goto_table:{}", t::SNAT));

    // 70: external clients of a Service (from the gateway, load-balanced,
    // client IP not kept: ct_mark bits 0 set, 1 clear) are SNATed to the
    // node IP so replies come back here; pod egress without a namespace
    // SNAT IP is masqueraded to the node IP.
    let snat_ports = format!("nat(src={node_ip}:{p0}-{p1})");
    for proto in ["tcp", "udp"] {
        o.flow(
            t::SNAT,
            200,
            c,
            format!("ct_state=+trk-rpl,ct_mark=0x1/0x3,{proto},reg0=0x2/0xf"),
            format!(
                "ct(commit,table={},zone={SNAT_ZONE},{snat_ports})",
                t::OUTPUT
            ),
        );
        o.flow(
            t::SNAT,
            150,
            c,
            format!("ct_state=+trk-rpl,{proto},reg0=0x1/0xf,reg2=0x3"),
            format!(
                "ct(commit,table={},zone={SNAT_ZONE},{snat_ports})",
                t::OUTPUT
            ),
        );
    }
    o.flow(
        t::SNAT,
        190,
        c,
        "ct_state=+trk-rpl,ct_mark=0x1/0x3,ip,reg0=0x2/0xf",
        format!(
            "ct(commit,table={},zone={SNAT_ZONE},nat(src={node_ip}))",
            t::OUTPUT
        ),
    );
    o.flow(
        t::SNAT,
        140,
        c,
        "ct_state=+trk-rpl,ip,reg0=0x1/0xf,reg2=0x3",
        format!(
            "ct(commit,table={},zone={SNAT_ZONE},nat(src={node_ip}))",
            t::OUTPUT
        ),
    );
    o.flow(t::SNAT, 0, c, "", format!("goto_table:{}", t::OUTPUT));

    // 80: a tunnel arrival for a pod address that is not local is dropped
    // rather than sent back into the tunnel (two nodes that disagree about
    // a pod must not bounce it between them); unknown pod-network
    // addresses (a ClusterIP's ICMP, a freed pod IP) are dropped; the rest
    // goes to the node kernel.
    o.flow(
        t::OUTPUT,
        175,
        c,
        format!("ip,reg0=0x3/0xf,nw_dst={pod_cidr}"),
        "drop",
    );
    o.flow(t::OUTPUT, 100, c, format!("ip,nw_dst={pod_cidr}"), "drop");
    o.flow(
        t::OUTPUT,
        50,
        c,
        "ip",
        format!("mod_dl_dst:{},output:{gw}", cfg.gateway_mac),
    );

    // Replies from this node's pods to another node's IP (that node SNATed
    // an external client to it) go back through the tunnel to it.
    let others: Vec<(String, std::net::Ipv4Addr)> = cx
        .ix
        .node_ips
        .iter()
        .filter(|(n, _)| n.as_str() != cx.v.node)
        .map(|(n, ip)| (n.clone(), *ip))
        .collect();
    for (name, ip) in others {
        let nc = cookie(&ObjectKey::new(Kind::Node, "", &name), Category::Node);
        cx.out.flow(
            t::OUTPUT,
            150,
            nc,
            format!("ct_state=+rpl+trk,ip,reg0=0x1/0xf,nw_dst={ip}"),
            format!("set_field:{ip}->tun_dst,set_field:{vni:#x}->tun_id,output:{tun}"),
        );
    }
}
