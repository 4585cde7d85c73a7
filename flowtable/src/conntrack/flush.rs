//! Removing connections on request, for `oxvs-ctl flush-conntrack` (OVS's
//! `ovs-appctl dpctl/flush-conntrack`).
//!
//! The reason a node agent flushes: when a Service endpoint goes away, the
//! connections already translated to it keep their translation until they
//! time out, and a UDP client that keeps sending (DNS is the usual case)
//! never times out and is sent to a dead pod for as long as it keeps
//! talking. kube-proxy deletes those entries (`conntrack -D --dst-nat`),
//! and Antrea does the same through its datapath. Here the agent names them
//! by zone, mark and any part of the original or the reply tuple; the
//! reply tuple is where the endpoint shows (its source is the translated
//! destination).
//!
//! Each shard is locked in turn, as for a dump: its matching entries are
//! removed under its lock, and the aliases of NATed ones in other shards
//! afterwards, one lock at a time, as expiry does.

use super::process::is_icmp;
use super::table::Conn;
use super::types::{proto, CtAddr, Tuple};
use super::{ConnTrack, Family, Gone, SHARDS};
use std::net::IpAddr;

/// Which parts of one direction's tuple a flush matches on; `None` is any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TupleFilter {
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// IP protocol.
    pub proto: Option<u8>,
    /// Source port (ICMP echo: the identifier).
    pub sport: Option<u16>,
    /// Destination port (ICMP echo: the identifier).
    pub dport: Option<u16>,
    /// ICMP type: an echo connection's original direction carries a
    /// request (8, ICMPv6 128), its reply direction a reply (0, 129).
    /// Matches no connection of another protocol.
    pub icmp_type: Option<u8>,
    /// ICMP code: 0 for echo.
    pub icmp_code: Option<u8>,
}

/// The connections a flush removes: those matching every part given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtFilter {
    /// Only this zone.
    pub zone: Option<u16>,
    /// `ct_mark` value and mask.
    pub mark: Option<(u32, u32)>,
    /// `ct_label` value and mask.
    pub label: Option<(u128, u128)>,
    /// The original direction.
    pub orig: TupleFilter,
    /// The reply direction, as replies carry it (after NAT).
    pub reply: TupleFilter,
}

impl TupleFilter {
    fn matches<A: CtAddr>(&self, proto_: u8, t: &Tuple<A>, reply: bool) -> bool {
        self.src.is_none_or(|a| a == t.src.to_ip())
            && self.dst.is_none_or(|a| a == t.dst.to_ip())
            && self.proto.is_none_or(|p| p == proto_)
            && self.sport.is_none_or(|p| p == t.sport)
            && self.dport.is_none_or(|p| p == t.dport)
            && self
                .icmp_type
                .is_none_or(|ty| Some(ty) == echo_type(proto_, reply))
            && self
                .icmp_code
                .is_none_or(|code| code == 0 && is_icmp(proto_))
    }
}

/// The ICMP type one direction of an echo connection carries (the only
/// ICMP connections conntrack keeps); `None` for other protocols.
fn echo_type(proto_: u8, reply: bool) -> Option<u8> {
    match (proto_, reply) {
        (proto::ICMP, false) => Some(8),
        (proto::ICMP, true) => Some(0),
        (proto::ICMPV6, false) => Some(128),
        (proto::ICMPV6, true) => Some(129),
        _ => None,
    }
}

impl CtFilter {
    fn matches<A: CtAddr>(&self, c: &Conn<A>, label: u128) -> bool {
        self.zone.is_none_or(|z| z == c.zone)
            && self.mark.is_none_or(|(v, m)| c.mark & m == v & m)
            && self.label.is_none_or(|(v, m)| label & m == v & m)
            && self.orig.matches(c.proto, &c.orig, false)
            && self.reply.matches(c.proto, &c.reply(), true)
    }
}

impl ConnTrack {
    /// Removes every connection matching `f`; returns how many.
    pub fn flush(&self, f: &CtFilter) -> usize {
        let mut removed = 0;
        for s in 0..SHARDS {
            removed += self.flush_shard::<[u8; 4]>(s, f);
            removed += self.flush_shard::<[u8; 16]>(s, f);
        }
        removed
    }

    fn flush_shard<A: Family>(&self, s: usize, f: &CtFilter) -> usize {
        let mut g = self.lock(s);
        let t = A::table(&mut g);
        let doomed: Vec<u32> = t
            .live_slots()
            .filter(|&idx| f.matches(t.conn(idx), t.label(t.conn(idx))))
            .collect();
        let mut aliases = Vec::new();
        for &idx in &doomed {
            let c = t.remove(idx);
            self.release(c.zone);
            if c.flags & super::table::F_REMOTE != 0 {
                aliases.push(Gone::of(idx, &c));
            }
        }
        drop(g);
        for x in &aliases {
            self.remove_alias::<A>(s, x);
        }
        doomed.len()
    }
}
