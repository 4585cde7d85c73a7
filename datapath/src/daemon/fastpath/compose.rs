//! A flow followed through its conntrack passes to one list of datapath
//! actions, which `offload` then judges like any other.
//!
//! The poll threads run a packet's `ct(table=T, ...)` against the
//! connection table and translate it again in table T with its `ct_*`
//! fields set (`pipeline::execute::recirculate`). For a packet of an
//! established connection, that second pass is fixed by the connection:
//! its state, mark, label and NAT do not move while neither handshake nor
//! close goes by, and the fast path punts both (SYN, FIN, RST). So the
//! control thread does the same here, asking the table without changing
//! it ([`ConnTrack::offload_verdict`]), and the packet's whole path becomes
//! the rewrites before each `ct`, each connection's NAT as absolute
//! rewrites, and the last pass's actions. The entry remembers the
//! connections it stands on, with the mark and label it was made with, so
//! that it goes when one of them goes or changes (`FastPath::check_conns`).

use ctl::trace::apply_set;
use flowtable::action::FROZEN_WORDS;
use flowtable::conntrack::{ConnRef, ConnTrack, CtPacket, HeaderRewrite, TcpInfo};
use flowtable::journal::TableSet;
use flowtable::{Bridge, DpAction, Field, FlowKey, Rule};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Most `ct` passes followed (the agent's pipeline has at most three).
const MAX_PASSES: usize = 4;

/// A connection an entry stands on, as it was when the entry was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub conn: ConnRef,
    pub mark: u32,
    pub label: u128,
}

/// A flow's path through every pass.
pub(crate) struct Composed {
    /// The rewrites and output of the whole path, `ct` taken out.
    pub actions: Vec<DpAction>,
    /// Every table any pass looked up.
    pub tables: TableSet,
    /// Every rule any pass ran.
    pub rules: Vec<Arc<Rule>>,
    /// The connections the path went through.
    pub conns: Vec<Held>,
}

/// Why a flow has no composed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoPath {
    /// The rules alone say no (they learn, or act on the packet in a way
    /// no entry can): the same until they change.
    Rules,
    /// A connection is not (yet) one the fast path may carry: may change
    /// with the next packets.
    Conntrack,
}

/// `key`'s path through `br`, following `ct` passes through `ct`.
pub(crate) fn compose(
    br: &Bridge,
    ct: Option<&ConnTrack>,
    key: &FlowKey,
    now_ms: u64,
) -> Result<Composed, NoPath> {
    let mut k = *key;
    let x = flowtable::translate(br, &k, None);
    if !x.learned.is_empty() || !x.learned_flows.is_empty() {
        return Err(NoPath::Rules);
    }
    let mut out = Composed {
        actions: Vec::new(),
        tables: x.tables,
        rules: x.rules,
        conns: Vec::new(),
    };
    let mut pass = x.actions;
    for _ in 0..MAX_PASSES {
        let spec = match pass.last() {
            Some(DpAction::Ct(spec)) => spec.clone(),
            _ => {
                out.actions.extend(pass);
                return Ok(out);
            }
        };
        // Only a recirculating `ct` ends a pass; one in place (its NAT
        // seen by the outputs after it) is left to the poll threads.
        let (Some(table), Some(ct)) = (spec.table, ct) else {
            return Err(NoPath::Rules);
        };
        for a in &pass[..pass.len() - 1] {
            if !apply_set(&mut k, a) {
                return Err(NoPath::Rules);
            }
            out.actions.push(a.clone());
        }
        let pkt = ct_packet(&k).ok_or(NoPath::Rules)?;
        let (v, conn) = ct
            .offload_verdict(
                &pkt,
                spec.zone,
                now_ms,
                spec.commit,
                spec.nat.as_ref(),
                &spec.exec,
            )
            .ok_or(NoPath::Conntrack)?;
        if let Some(rw) = v.nat {
            if rw.inner.is_some() {
                return Err(NoPath::Rules);
            }
            // NAT moved an echo's identifier (SNAT falls back to another
            // when two clients' pings would share a reply tuple): no
            // `DpAction` says "set the identifier" (`exec` leaves that to
            // conntrack's own rewrite of the bytes), so the entry could not
            // either. Such pings stay with the poll threads.
            if is_echo(&pkt) && (rw.outer.sport, rw.outer.dport) != (pkt.sport, pkt.dport) {
                return Err(NoPath::Conntrack);
            }
            for a in nat_actions(&pkt, &rw.outer) {
                apply_set(&mut k, &a);
                out.actions.push(a);
            }
        }
        // The next pass's key, as `recirculate` makes it.
        let first = Field::Metadata.word();
        k.w[first..first + FROZEN_WORDS].copy_from_slice(&spec.frozen);
        k.set(Field::CtState, v.state.into());
        k.set(Field::CtZone, spec.zone.into());
        k.set(Field::CtMark, v.mark.into());
        k.set(Field::CtLabel, v.label);
        k.set(Field::RecircId, flowtable::xlate::recirc_id(table).into());
        out.conns.push(Held {
            conn,
            mark: v.mark,
            label: v.label,
        });
        let x = flowtable::translate(br, &k, None);
        if !x.learned.is_empty() || !x.learned_flows.is_empty() {
            return Err(NoPath::Rules);
        }
        out.tables.union(&x.tables);
        out.rules.extend(x.rules);
        pass = x.actions;
    }
    Err(NoPath::Rules)
}

/// Whether `pkt` is an ICMP or ICMPv6 echo request or reply.
fn is_echo(pkt: &CtPacket) -> bool {
    matches!((pkt.proto, pkt.icmp_type), (1, 0 | 8) | (58, 128 | 129))
}

/// The fields of `k` conntrack looks up by: TCP, UDP, and ICMP echo by its
/// identifier (`FlowKey::echo_id`); any other ICMP message (an error, whose
/// quoted header NAT would rewrite too) is left to the poll threads.
fn ct_packet(k: &FlowKey) -> Option<CtPacket> {
    let (src, dst) = match k.get(Field::DlType) {
        0x0800 => (
            IpAddr::V4(Ipv4Addr::from(k.get(Field::NwSrc) as u32)),
            IpAddr::V4(Ipv4Addr::from(k.get(Field::NwDst) as u32)),
        ),
        0x86dd => (
            IpAddr::V6(Ipv6Addr::from(k.get(Field::Ipv6Src))),
            IpAddr::V6(Ipv6Addr::from(k.get(Field::Ipv6Dst))),
        ),
        _ => return None,
    };
    let (sport, dport) = (k.get(Field::TpSrc) as u16, k.get(Field::TpDst) as u16);
    match k.get(Field::NwProto) {
        6 => {
            let tcp = TcpInfo {
                flags: k.get(Field::TcpFlags) as u8,
                ..TcpInfo::default()
            };
            Some(CtPacket::tcp(src, sport, dst, dport, tcp))
        }
        17 => Some(CtPacket::udp(src, sport, dst, dport)),
        proto @ (1 | 58) => {
            let request = match (proto, sport) {
                (1, 8) | (58, 128) => true,
                (1, 0) | (58, 129) => false,
                _ => return None,
            };
            // The family conntrack reads the message as is the address's.
            if (proto == 58) != src.is_ipv6() {
                return None;
            }
            Some(CtPacket::icmp_echo(src, dst, k.echo_id(), request))
        }
        _ => None,
    }
}

/// NAT's rewrite of `pkt` as absolute `set` actions (fields it leaves
/// alone are not written; an echo's identifier, which `compose` has
/// checked NAT leaves alone, is not a port).
fn nat_actions(pkt: &CtPacket, rw: &HeaderRewrite) -> Vec<DpAction> {
    let mut v = Vec::new();
    let addr = |ip: IpAddr, src: bool| match (ip, src) {
        (IpAddr::V4(a), true) => DpAction::SetIpv4Src(a.octets()),
        (IpAddr::V4(a), false) => DpAction::SetIpv4Dst(a.octets()),
        (IpAddr::V6(a), true) => DpAction::SetIpv6Src(a.octets()),
        (IpAddr::V6(a), false) => DpAction::SetIpv6Dst(a.octets()),
    };
    if rw.src != pkt.src {
        v.push(addr(rw.src, true));
    }
    if rw.dst != pkt.dst {
        v.push(addr(rw.dst, false));
    }
    if is_echo(pkt) {
        return v;
    }
    if rw.sport != pkt.sport {
        v.push(DpAction::SetTpSrc(rw.sport));
    }
    if rw.dport != pkt.dport {
        v.push(DpAction::SetTpDst(rw.dport));
    }
    v
}
