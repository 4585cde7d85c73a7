//! What the XDP fast path asks of the table. An established connection's
//! packets may be carried by the kernel without ever reaching
//! [`ConnTrack::process`]; the fast path then
//!
//! * asks, without changing anything, what `process` would say of such a
//!   packet ([`ConnTrack::offload_verdict`]): only for a TCP connection
//!   both sides of which are established, or a UDP one a reply has been
//!   seen on, and only where the `ct` action would change nothing (a
//!   commit's `exec` that would set a new mark or label is refused);
//! * holds the connection while it has entries ([`ConnTrack::hold`]),
//!   which puts its TCP tracking in a tolerant mode: the segments the
//!   kernel carried were never seen here, so each segment that does come
//!   here (a FIN, a segment of a flow whose entry was removed) first
//!   re-learns its sender's sequence space from what it shows. When the
//!   last entry goes ([`ConnTrack::unhold`]) each side re-learns once
//!   more, from its next segment. The Linux flowtable does the same when a
//!   flow leaves its offload (it resets the window tracking);
//! * reports the traffic it carried ([`ConnTrack::offload_used`]), which
//!   refreshes the connection's timeout as the packets would have, and
//!   learns whether the connection is still there and established, with
//!   which mark and label, so that an entry whose connection was flushed,
//!   expired, closed or re-marked is removed.

use super::process::{echo_kind, has_ports, is_icmp, nat_bits, rewrite_for};
use super::table::{Conn, Table, F_DNAT, F_SEEN_REPLY, F_SNAT};
use super::tcp::ESTABLISHED;
use super::timeout::TimeoutClass;
use super::types::{proto, CtAddr, CtPacket, CtVerdict, NatRewrite, Tuple};
use super::{ConnTrack, CtExec, Family, NatSpec};
use crate::field::ct_state::{EST, RPL};

/// Entry flag: the fast path holds entries for the connection.
pub(crate) const F_OFFLOADED: u8 = 0x10;
/// Entry flags: the original (reply) side re-learns its sequence space
/// from its next segment.
pub(crate) const F_RESYNC: [u8; 2] = [0x20, 0x40];

/// A connection as the fast path refers to it: its slot, and which
/// occupant of the slot it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    v6: bool,
    shard: u8,
    idx: u32,
    gen: u16,
}

/// Whether packets of `c` may bypass the table: its state would not move
/// for them (they are neither the handshake nor the close, which the fast
/// path never takes) and its timeout class is the steady one.
fn steady<A: CtAddr>(c: &Conn<A>) -> Option<TimeoutClass> {
    match c.proto {
        proto::TCP if c.tcp.iter().all(|p| p.state == ESTABLISHED) => {
            Some(TimeoutClass::TcpEstablished)
        }
        proto::UDP if c.flags & F_SEEN_REPLY != 0 => Some(TimeoutClass::UdpMultiple),
        // An echo request or reply of an answered echo "connection":
        // `process` moves nothing but its timeout.
        p if is_icmp(p) && c.flags & F_SEEN_REPLY != 0 => Some(TimeoutClass::IcmpReply),
        _ => None,
    }
}

impl ConnTrack {
    /// What `process_exec(pkt, zone, now_ms, commit, nat, exec)` would
    /// return for `pkt` if its connection is one the fast path may carry,
    /// and the connection; `None` otherwise. Changes nothing but the
    /// removal of an expired entry it meets.
    ///
    /// ICMP is offered only for an echo request or reply, whose identifier
    /// names its connection as ports do (the fast path's key carries it);
    /// any other ICMP message (an error, which `process` relates to the
    /// connection it quotes and whose quoted header NAT rewrites too) gets
    /// `None`.
    pub fn offload_verdict(
        &self,
        pkt: &CtPacket,
        zone: u16,
        now_ms: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> Option<(CtVerdict, ConnRef)> {
        if !has_ports(pkt.proto) || (is_icmp(pkt.proto) && echo_kind(pkt).is_none()) {
            return None;
        }
        match (<[u8; 4]>::from_ip(pkt.src), <[u8; 4]>::from_ip(pkt.dst)) {
            (Some(s), Some(d)) => self.offload_of(pkt, s, d, zone, now_ms, commit, nat, exec),
            _ => {
                let s = <[u8; 16]>::from_ip(pkt.src)?;
                let d = <[u8; 16]>::from_ip(pkt.dst)?;
                self.offload_of(pkt, s, d, zone, now_ms, commit, nat, exec)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offload_of<A: Family>(
        &self,
        pkt: &CtPacket,
        src: A,
        dst: A,
        zone: u16,
        now: u64,
        commit: bool,
        nat: Option<&NatSpec>,
        exec: &CtExec,
    ) -> Option<(CtVerdict, ConnRef)> {
        let t = Tuple {
            src,
            dst,
            sport: pkt.sport,
            dport: pkt.dport,
        };
        let (mut g, idx, reply) = loop {
            match self.lookup::<A>(zone, pkt.proto, &t, now) {
                super::process::Lookup::Retry => continue,
                super::process::Lookup::Hit(g, idx, reply) => break (g, idx, reply),
                super::process::Lookup::Miss(..) => return None,
            }
        };
        let table: &mut Table<A> = A::table(&mut g);
        let c = table.conn(idx);
        steady(c)?;
        let label = table.label(c);
        if commit {
            // `exec` runs on every committed packet: fine while it would
            // leave the mark and label as they are.
            let unchanged_mark = exec.mark.is_none_or(|(v, m)| c.mark & m == v & m);
            let unchanged_label = exec.label.is_none_or(|(v, m)| label & m == v & m);
            if !(unchanged_mark && unchanged_label) {
                return None;
            }
        }
        let mut v = CtVerdict::bare(EST | if reply { RPL } else { 0 });
        v.mark = c.mark;
        v.label = label;
        if nat.is_some() && c.flags & (F_SNAT | F_DNAT) != 0 {
            v.state |= nat_bits(c.flags);
            v.nat = Some(NatRewrite {
                outer: rewrite_for(c, reply),
                inner: None,
            });
        }
        let r = ConnRef {
            v6: A::V6,
            shard: Self::shard_of(c.orig.hash(c.zone, c.proto, self.cfg.seed)) as u8,
            idx,
            gen: c.gen,
        };
        Some((v, r))
    }

    /// The fast path holds entries for `r` (from now on its TCP segments
    /// that come here re-learn the sequence space). False if `r` is gone.
    pub fn hold(&self, r: ConnRef) -> bool {
        self.touch(r, |flags| *flags |= F_OFFLOADED)
    }

    /// The fast path's last entry for `r` is gone: each side re-learns its
    /// sequence space from its next segment, then tracking is strict again.
    pub fn unhold(&self, r: ConnRef) {
        self.touch(r, |flags| {
            *flags = (*flags & !F_OFFLOADED) | F_RESYNC[0] | F_RESYNC[1]
        });
    }

    fn touch(&self, r: ConnRef, f: impl FnOnce(&mut u8)) -> bool {
        let mut g = self.lock(r.shard as usize);
        if r.v6 {
            live_mut(<[u8; 16]>::table(&mut g), r)
                .map(|c| f(&mut c.flags))
                .is_some()
        } else {
            live_mut(<[u8; 4]>::table(&mut g), r)
                .map(|c| f(&mut c.flags))
                .is_some()
        }
    }

    /// The fast path carried packets of `r`, the last at `used_ms` (if
    /// any since it last said): the timeout is refreshed from then, as the
    /// packets would have refreshed it. Returns the connection's mark and
    /// label while it is still there and steady (see
    /// [`ConnTrack::offload_verdict`]), `None` once it is not.
    pub fn offload_used(
        &self,
        r: ConnRef,
        used_ms: Option<u64>,
        now_ms: u64,
    ) -> Option<(u32, u128)> {
        let mut g = self.lock(r.shard as usize);
        let to = &self.cfg.timeouts;
        if r.v6 {
            used(<[u8; 16]>::table(&mut g), r, used_ms, now_ms, to)
        } else {
            used(<[u8; 4]>::table(&mut g), r, used_ms, now_ms, to)
        }
    }
}

fn live_mut<A: CtAddr>(table: &mut Table<A>, r: ConnRef) -> Option<&mut Conn<A>> {
    if table.is_live(r.idx) && table.conn(r.idx).gen == r.gen {
        Some(table.conn_mut(r.idx))
    } else {
        None
    }
}

fn used<A: CtAddr>(
    table: &mut Table<A>,
    r: ConnRef,
    used_ms: Option<u64>,
    now_ms: u64,
    to: &super::Timeouts,
) -> Option<(u32, u128)> {
    let c = live_mut(table, r)?;
    let class = steady(c)?;
    let (mark, mut expires) = (c.mark, c.expires);
    if let Some(at) = used_ms {
        let deadline = Table::<A>::deadline(to, class, at);
        if deadline > expires {
            table.refresh(r.idx, class, deadline);
            expires = deadline;
        }
    }
    if expires <= now_ms {
        // Timed out and not yet swept: gone as far as anyone can tell.
        return None;
    }
    Some((mark, table.label(table.conn(r.idx))))
}
