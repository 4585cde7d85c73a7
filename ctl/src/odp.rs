//! Printing datapath actions and megaflows the way `ovs-appctl
//! dpctl/dump-flows` and `ofproto/trace` show them, so that OVS users can
//! read a trace without learning a new notation.

use flowtable::DpAction;
use std::fmt::Write;

fn mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// `set(eth(dst=..)),set(ipv4(ttl=63)),2` — outputs print as port numbers.
pub fn format_dp_actions(actions: &[DpAction]) -> String {
    let mut s = String::new();
    for a in actions {
        if !s.is_empty() {
            s.push(',');
        }
        let _ = match a {
            DpAction::Output(p) => write!(s, "{p}"),
            DpAction::SetEthSrc(m) => write!(s, "set(eth(src={}))", mac(m)),
            DpAction::SetEthDst(m) => write!(s, "set(eth(dst={}))", mac(m)),
            DpAction::PushVlan { tpid, tci } => {
                write!(
                    s,
                    "push_vlan(tpid={tpid:#06x},vid={},pcp={})",
                    tci & 0x0fff,
                    tci >> 13
                )
            }
            DpAction::PopVlan => write!(s, "pop_vlan"),
            DpAction::SetVlanTci(tci) => {
                write!(s, "set(vlan(vid={},pcp={}))", tci & 0x0fff, tci >> 13)
            }
            DpAction::SetIpv4Src(a) => write!(s, "set(ipv4(src={}))", std::net::Ipv4Addr::from(*a)),
            DpAction::SetIpv4Dst(a) => write!(s, "set(ipv4(dst={}))", std::net::Ipv4Addr::from(*a)),
            DpAction::SetIpv6Src(a) => write!(s, "set(ipv6(src={}))", std::net::Ipv6Addr::from(*a)),
            DpAction::SetIpv6Dst(a) => write!(s, "set(ipv6(dst={}))", std::net::Ipv6Addr::from(*a)),
            DpAction::SetTos(t) => write!(s, "set(ip(tos={t:#x}))"),
            DpAction::SetTtl(t) => write!(s, "set(ip(ttl={t}))"),
            DpAction::SetArp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => write!(
                s,
                "set(arp(sip={},tip={},op={op},sha={},tha={}))",
                std::net::Ipv4Addr::from(*spa),
                std::net::Ipv4Addr::from(*tpa),
                mac(sha),
                mac(tha)
            ),
            DpAction::SetTpSrc(p) => write!(s, "set(l4(src={p}))"),
            DpAction::SetTpDst(p) => write!(s, "set(l4(dst={p}))"),
            DpAction::TunnelMetadata { slot, value } => {
                write!(s, "set(tunnel(tun_metadata{slot}={value:#x}))")
            }
            DpAction::TunnelPush { port, vni, dst } => {
                let ip = std::net::Ipv6Addr::from(*dst);
                match ip.to_ipv4_mapped() {
                    Some(v4) => write!(
                        s,
                        "tnl_push(tnl_port({port}),geneve(vni={vni:#x}),dst={v4})"
                    ),
                    None => write!(
                        s,
                        "tnl_push(tnl_port({port}),geneve(vni={vni:#x}),dst={ip})"
                    ),
                }
            }
            DpAction::Ct(c) => write_ct(&mut s, c),
            DpAction::Drop(r) => write!(s, "drop({})", r.name().trim_start_matches("drop_")),
            DpAction::Reject(r) => match r {
                flowtable::RejectReply::TcpRst => write!(s, "reject(tcp_rst)"),
                flowtable::RejectReply::Prohibited => write!(s, "reject(icmp_prohibited)"),
                flowtable::RejectReply::PortUnreachable => write!(s, "reject(port_unreachable)"),
            },
            DpAction::Log { name, verdict } => {
                write!(s, "log(name_id={name},verdict={})", verdict.name())
            }
        };
    }
    if s.is_empty() {
        s.push_str("drop");
    }
    s
}

/// `ct(commit,zone=5,mark=0x1/0xff,nat(dst=10.244.1.2:80)),recirc(0x2)`,
/// as `dpctl/dump-flows` prints a conntrack action.
fn write_ct(s: &mut String, c: &flowtable::action::CtSpec) -> std::fmt::Result {
    use flowtable::conntrack::NatSpec;
    let mut parts: Vec<String> = Vec::new();
    if c.commit {
        parts.push("commit".into());
    }
    if c.zone != 0 {
        parts.push(format!("zone={}", c.zone));
    }
    if let Some((v, m)) = c.exec.mark {
        parts.push(format!("mark={v:#x}/{m:#x}"));
    }
    if let Some((v, m)) = c.exec.label {
        parts.push(format!("label={v:#x}/{m:#x}"));
    }
    match c.nat {
        None => {}
        Some(NatSpec::Existing) => parts.push("nat".into()),
        Some(NatSpec::Src(r)) => parts.push(format!("nat(src={})", crate::ofp::ct::range_text(&r))),
        Some(NatSpec::Dst(r)) => parts.push(format!("nat(dst={})", crate::ofp::ct::range_text(&r))),
    }
    write!(s, "ct({})", parts.join(","))?;
    if let Some(t) = c.table {
        write!(s, ",recirc({:#x})", flowtable::xlate::recirc_id(t))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtable::DropReason;

    #[test]
    fn prints_like_dpctl() {
        let a = [
            DpAction::SetEthDst([0, 0, 0, 0, 0, 2]),
            DpAction::SetTtl(63),
            DpAction::Output(2),
        ];
        assert_eq!(
            format_dp_actions(&a),
            "set(eth(dst=00:00:00:00:00:02)),set(ip(ttl=63)),2"
        );
        assert_eq!(
            format_dp_actions(&[DpAction::Drop(DropReason::TableMiss)]),
            "drop(table_miss)"
        );
    }
}
