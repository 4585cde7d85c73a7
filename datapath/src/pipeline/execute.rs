//! Executing a megaflow's datapath actions on one packet: rewrites in
//! place, outputs (a copy for every output but the last), Geneve pushes,
//! conntrack with NAT and recirculation, `reject` answers (back through the
//! tunnel for a packet that came out of one) and policy log records.
//!
//! Like the rest of the pipeline it allocates nothing per packet: copies
//! and answers take frames from the pool, recirculated packets go to the
//! batch's fixed-size queue.

use super::{Recirc, TxPorts};
use crate::buf::{FramePool, PacketDesc, BATCH};
use crate::exec::rewrite;
use crate::policy_log::{Logged, PolicyLog};
use crate::stats::PmdStats;
use crate::tunnel::{PendingMetadata, PushCtx, PushError, TunnelState};
use flowtable::action::{CtSpec, FROZEN_WORDS};
use flowtable::conntrack::{apply_rewrite, ConnTrack, CtPacket, CtVerdict};
use flowtable::extract::{extract, Layout};
use flowtable::Field;
use flowtable::{Bridge, DpAction, DropReason, FlowKey, PortNo};

/// What the executor needs beyond the packet: the rule set (tunnel ports,
/// routes, TLV map), the thread's tunnel state, the connection table, where
/// recirculated packets go, the packet's key as looked up, and where the
/// packet came from (an ICMP error goes back there).
pub(super) struct ExecCtx<'a> {
    pub br: &'a Bridge,
    pub tunnel: &'a mut TunnelState,
    pub ct: &'a ConnTrack,
    pub recirc: &'a mut Recirc,
    pub key: &'a FlowKey,
    pub in_port: PortNo,
    pub now_ms: u64,
    pub log: &'a mut PolicyLog,
}

/// Runs datapath actions on one packet: rewrites in place, a copy for every
/// output but the last, the packet itself for the last.
#[inline]
pub(super) fn execute(
    stats: &mut PmdStats,
    pool: &mut FramePool,
    tx: &mut impl TxPorts,
    cx: &mut ExecCtx<'_>,
    actions: &[DpAction],
    pkt: &mut PacketDesc,
    lay: &mut Layout,
) {
    // The last action that needs the packet: an output, a recirculation,
    // or a reject, log or ct, which run even when the packet goes nowhere
    // (a connection is committed even when the packet is then dropped).
    let last_out = actions
        .iter()
        .rposition(|a| a.is_output() || a.acts_without_output() || matches!(a, DpAction::Ct(_)));
    let Some(last_out) = last_out else {
        let reason = match actions.last() {
            Some(DpAction::Drop(r)) => *r,
            _ => DropReason::NoOutput,
        };
        stats.drop(reason);
        pool.free(*pkt);
        return;
    };
    let mut md = PendingMetadata::default();
    // Whether the bytes may differ from the key the packet was looked up
    // by: a recirculated packet is then parsed again.
    let mut rewritten = false;
    for (i, a) in actions[..=last_out].iter().enumerate() {
        match a {
            DpAction::Output(_) | DpAction::TunnelPush { .. } | DpAction::Ct(_)
                if a.is_output() =>
            {
                let out = if i == last_out {
                    *pkt
                } else {
                    match pool.clone_packet(pkt) {
                        Some(c) => {
                            stats.tx_copies += 1;
                            c
                        }
                        None => {
                            stats.drop(DropReason::NoBuffer);
                            continue;
                        }
                    }
                };
                let mut out = out;
                let port = match *a {
                    DpAction::TunnelPush { port, vni, dst } => {
                        let push = PushCtx {
                            port,
                            vni,
                            dst,
                            now_ms: cx.now_ms,
                        };
                        match cx.tunnel.push(cx.br, pool, &mut out, &md, &push) {
                            Ok(p) => p,
                            Err(PushError::Drop(reason)) => {
                                stats.drop(reason);
                                pool.free(out);
                                continue;
                            }
                            Err(PushError::TooBig(mtu)) => {
                                too_big(stats, pool, tx, cx.in_port, &out, mtu);
                                stats.drop(DropReason::TunnelMtu);
                                pool.free(out);
                                continue;
                            }
                        }
                    }
                    DpAction::Output(p) => p,
                    DpAction::Ct(ref spec) => {
                        // The copy (or the packet itself, when last) is
                        // tracked and goes to the next pass.
                        let mut l = *lay;
                        match conntrack(cx, pool, &mut out, &mut l, spec) {
                            Ok(v) => {
                                let reparse = rewritten || v.nat.is_some();
                                recirculate(cx, stats, pool, out, &l, reparse, spec, &v)
                            }
                            Err(reason) => {
                                stats.drop(reason);
                                pool.free(out);
                            }
                        }
                        continue;
                    }
                    _ => continue,
                };
                if let Err(reason) = tx.send(port, out, pool) {
                    stats.drop(reason);
                    pool.free(out);
                }
            }
            DpAction::Ct(spec) => {
                // Tracked in place: NAT rewrites this packet, and the
                // actions after it see the result.
                match conntrack(cx, pool, pkt, lay, spec) {
                    Ok(v) => rewritten |= v.nat.is_some(),
                    Err(reason) => {
                        stats.drop(reason);
                        pool.free(*pkt);
                        return;
                    }
                }
            }
            DpAction::TunnelMetadata { slot, value } => {
                if let Some(v) = md.md.get_mut(*slot as usize) {
                    *v = *value;
                    md.set |= 1 << slot;
                }
            }
            DpAction::Drop(_) => {}
            DpAction::Reject(how) => {
                reject(stats, pool, tx, cx, pkt, lay, *how);
                stats.drop(DropReason::Rejected);
                pool.free(*pkt);
                return;
            }
            DpAction::Log { name, verdict } => {
                match cx
                    .log
                    .record(cx.now_ms, *name, *verdict, pool.data(pkt), lay)
                {
                    Logged::Recorded => stats.log_records += 1,
                    Logged::Deduped => stats.log_deduped += 1,
                    Logged::Limited => stats.log_rate_limited += 1,
                    Logged::NotIp => {}
                }
            }
            _ => {
                let mut d = *pkt;
                let frame = pool.frame_mut(&d);
                if let Err(reason) = rewrite(frame, &mut d, lay, a) {
                    stats.drop(reason);
                    pool.free(*pkt);
                    return;
                }
                rewritten = true;
                *pkt = d;
            }
        }
    }
    if !actions[last_out].is_output() {
        // A `log` or an in-place `ct` was the last action to need the
        // packet: it still has to be let go, and counted if it went
        // nowhere.
        if !actions.iter().any(DpAction::is_output) {
            let reason = match actions.last() {
                Some(DpAction::Drop(r)) => *r,
                _ => DropReason::NoOutput,
            };
            stats.drop(reason);
        } else {
            stats.released += 1;
        }
        pool.free(*pkt);
    }
}

/// Answers a rejected packet where it came from: out of the port it came
/// in on or, for a packet that came out of a tunnel, encapsulated back to
/// the node that sent it, with the VNI it arrived with (its outer source
/// address and VNI are in the flow key). That is where a policy enforced
/// at the destination node (Antrea's ingress rules) rejects a pod of
/// another node.
fn reject(
    stats: &mut PmdStats,
    pool: &mut FramePool,
    tx: &mut impl TxPorts,
    cx: &mut ExecCtx<'_>,
    pkt: &PacketDesc,
    lay: &Layout,
    how: flowtable::RejectReply,
) {
    let Some(mut reply) = crate::reject::reply(pool, pkt, lay.l3 as usize, how) else {
        return;
    };
    stats.answers_made += 1;
    let port = if cx.br.ports.tunnel(cx.in_port).is_some() {
        let src4 = cx.key.get(Field::TunSrc) as u32;
        let dst = if src4 != 0 {
            std::net::Ipv4Addr::from(src4).to_ipv6_mapped().octets()
        } else {
            cx.key.get(Field::TunIpv6Src).to_be_bytes()
        };
        let push = PushCtx {
            port: cx.in_port,
            vni: cx.key.get(Field::TunId) as u32 & 0xff_ffff,
            dst,
            now_ms: cx.now_ms,
        };
        let md = PendingMetadata::default();
        match cx.tunnel.push(cx.br, pool, &mut reply, &md, &push) {
            Ok(uplink) => uplink,
            Err(e) => {
                stats.drop(match e {
                    PushError::Drop(reason) => reason,
                    PushError::TooBig(_) => DropReason::TunnelMtu,
                });
                pool.free(reply);
                return;
            }
        }
    } else {
        cx.in_port
    };
    match tx.send(port, reply, pool) {
        Ok(()) => stats.reject_sent += 1,
        Err(reason) => {
            stats.drop(reason);
            pool.free(reply);
        }
    }
}

/// Runs the packet through the connection table and applies the NAT
/// rewrite the verdict asks for. A packet conntrack cannot parse (a
/// truncated header) or place (a later fragment before its first) is
/// `+trk+inv`, as in OVS, and left for the rules to judge; a connection
/// that could not be committed is a drop. A later fragment's NAT rewrites
/// its addresses only: it has no L4 header (its layout's `l4` is 0), and
/// the first fragment's incremental L4 checksum update already covers the
/// whole datagram's.
fn conntrack(
    cx: &mut ExecCtx<'_>,
    pool: &mut FramePool,
    pkt: &mut PacketDesc,
    lay: &mut Layout,
    spec: &CtSpec,
) -> Result<CtVerdict, DropReason> {
    let verdict = match CtPacket::parse(pool.data(pkt), lay) {
        Ok(p) => cx.ct.process_exec(
            &p,
            spec.zone,
            cx.now_ms,
            spec.commit,
            spec.nat.as_ref(),
            &spec.exec,
        ),
        Err(_) => CtVerdict::invalid(),
    };
    if let Some(reason) = verdict.drop {
        return Err(reason);
    }
    if let Some(rw) = verdict.nat {
        let d = *pkt;
        let (off, len) = (d.off as usize, d.len as usize);
        let frame = pool.frame_mut(&d);
        apply_rewrite(
            &mut frame[off..off + len],
            lay.l3 as usize,
            lay.l4 as usize,
            &rw,
        )
        .map_err(|_| DropReason::BadRewrite)?;
    }
    Ok(verdict)
}

/// Queues a tracked packet for the next pass, keyed by its bytes as they
/// are now (parsed again when `reparse`, because a rewrite or NAT changed
/// them; otherwise the key it was looked up by still describes them), with
/// the input port and tunnel fields of its first pass, the registers and
/// metadata frozen at the `ct` action, the verdict's `ct_*` fields and, for
/// a later fragment, the L4 fields of its datagram ([`fragment_ports`]).
#[allow(clippy::too_many_arguments)]
fn recirculate(
    cx: &mut ExecCtx<'_>,
    stats: &mut PmdStats,
    pool: &mut FramePool,
    pkt: PacketDesc,
    lay: &Layout,
    reparse: bool,
    spec: &CtSpec,
    v: &CtVerdict,
) {
    let (Some(table), r) = (spec.table, &mut *cx.recirc) else {
        pool.free(pkt);
        return;
    };
    if r.n == BATCH {
        stats.drop(DropReason::RecircLimit);
        pool.free(pkt);
        return;
    }
    let key = &mut r.keys[r.n];
    if !reparse {
        *key = *cx.key;
        r.layouts[r.n] = *lay;
    } else {
        match extract(pool.data(&pkt), cx.in_port, key) {
            Ok(l) => r.layouts[r.n] = l,
            Err(reason) => {
                stats.drop(reason);
                pool.free(pkt);
                return;
            }
        }
    }
    for f in [
        Field::TunId,
        Field::TunSrc,
        Field::TunDst,
        Field::TunIpv6Src,
        Field::TunIpv6Dst,
        Field::TunMetadata0,
        Field::TunMetadata1,
    ] {
        key.set(f, cx.key.get(f));
    }
    let first = Field::Metadata.word();
    key.w[first..first + FROZEN_WORDS].copy_from_slice(&spec.frozen);
    if let Some(l4) = v.fragment_l4 {
        fragment_ports(key, v, &l4);
    }
    key.set(Field::CtState, v.state.into());
    key.set(Field::CtZone, spec.zone.into());
    key.set(Field::CtMark, v.mark.into());
    key.set(Field::CtLabel, v.label);
    key.set(Field::RecircId, flowtable::xlate::recirc_id(table).into());
    r.pkts[r.n] = pkt;
    r.n += 1;
}

/// Gives the next-pass key of a later fragment, which carries no L4 header,
/// the ports (ICMP: type, code and echo identifier) conntrack found for its
/// datagram, after the verdict's NAT as its first fragment's key shows
/// them, so rules on ports (NetworkPolicy's) judge every fragment of a
/// datagram as they judged the first.
///
/// The caches stay exact: a megaflow or EMC entry is found by this key and
/// holds what translating such a key gives, so it applies only to packets
/// whose key, injected ports included, agrees on every field the
/// translation looked at. The key keeps `nw_frag` (later), and no action an
/// entry made from a whole packet applies to a later fragment's bytes
/// beyond its addresses: L4 rewrites need an L4 offset, which a later
/// fragment's layout does not have. Where the ports came from is
/// conntrack's fragment table, keyed per datagram, never a cache.
fn fragment_ports(key: &mut FlowKey, v: &CtVerdict, l4: &flowtable::conntrack::FragmentL4) {
    let (sport, dport) = match v.nat {
        Some(rw) => (rw.outer.sport, rw.outer.dport),
        None => (l4.sport, l4.dport),
    };
    match key.get(Field::NwProto) as u8 {
        wire::ipproto::TCP | wire::ipproto::UDP => {
            key.set(Field::TpSrc, sport.into());
            key.set(Field::TpDst, dport.into());
        }
        wire::ipproto::ICMP | wire::ipproto::ICMPV6 => {
            key.set(Field::TpSrc, l4.icmp_type.into());
            key.set(Field::TpDst, l4.icmp_code.into());
            key.set_echo_id(sport);
        }
        _ => {}
    }
}

/// Answers a packet too big for the tunnel with ICMP "fragmentation
/// needed" or "Packet Too Big" on the port it came from.
fn too_big(
    stats: &mut PmdStats,
    pool: &mut FramePool,
    tx: &mut impl TxPorts,
    in_port: PortNo,
    pkt: &PacketDesc,
    mtu: u16,
) {
    if let Some(reply) = crate::tunnel::icmp_too_big(pool, pkt, mtu) {
        stats.tunnel_mtu_replies += 1;
        stats.answers_made += 1;
        if let Err(reason) = tx.send(in_port, reply, pool) {
            stats.drop(reason);
            pool.free(reply);
        }
    }
}
