//! The RELATED path: an ICMP or ICMPv6 error that quotes a packet of a
//! tracked connection is `rel`, and with NAT both its own header and the
//! header it quotes are translated back.
//!
//! The error travels opposite to the packet it quotes, so the quoted tuple
//! is reversed before the lookup. On the outer header only the side NAT
//! changed is rewritten (the sender may be a router on the path, not the
//! peer), as RFC 5508 §4 describes for NATs; the quoted header becomes the
//! tuple the receiver itself sent or expects, checksums included when
//! [`super::apply_rewrite`] applies it. Errors never refresh timers.

use super::process::{has_ports, nat_bits, Lookup};
use super::table::{F_DNAT, F_SNAT};
use super::types::{ct_state::*, CtPacket, CtVerdict, HeaderRewrite, NatRewrite, Tuple};
use super::{ConnTrack, Family, NatSpec};

impl ConnTrack {
    /// An ICMP error: `rel` if it quotes a tracked connection's packet.
    pub(super) fn related<A: Family>(
        &self,
        pkt: &CtPacket,
        zone: u16,
        now: u64,
        nat: Option<&NatSpec>,
    ) -> CtVerdict {
        let Some(inner) = pkt.inner else {
            return CtVerdict::invalid();
        };
        let (Some(qs), Some(qd)) = (A::from_ip(inner.src), A::from_ip(inner.dst)) else {
            return CtVerdict::invalid();
        };
        let (sport, dport) = if has_ports(inner.proto) {
            (inner.sport, inner.dport)
        } else {
            (0, 0)
        };
        let q = Tuple {
            src: qs,
            dst: qd,
            sport,
            dport,
        };
        // The error travels back along the quoted packet's path.
        let k = q.reverse();
        for _ in 0..4 {
            let (mut g, idx, reply) = match self.lookup::<A>(zone, inner.proto, &k, now) {
                Lookup::Retry => continue,
                Lookup::Miss(..) => return CtVerdict::invalid(),
                Lookup::Hit(g, idx, reply) => (g, idx, reply),
            };
            let table = A::table(&mut g);
            let c = table.conn(idx);
            let mut v = CtVerdict::bare(REL | if reply { RPL } else { 0 });
            v.mark = c.mark;
            v.label = table.label(c);
            let c_reply = c.reply();
            if nat.is_some() && c.flags & (F_SNAT | F_DNAT) != 0 {
                v.state |= nat_bits(c.flags);
                // Only the side NAT changed is rewritten on the outer
                // header: the error's sender may be a router, not the peer.
                let (snat, dnat) = (c.flags & F_SNAT != 0, c.flags & F_DNAT != 0);
                let (from, to) = if reply {
                    (dnat.then_some(c.orig.dst), snat.then_some(c.orig.src))
                } else {
                    (snat.then_some(c_reply.dst), dnat.then_some(c_reply.src))
                };
                let q2 = if reply { c.orig } else { c_reply };
                v.nat = Some(NatRewrite {
                    outer: HeaderRewrite {
                        src: from.map_or(pkt.src, |a| a.to_ip()),
                        dst: to.map_or(pkt.dst, |a| a.to_ip()),
                        sport: pkt.sport,
                        dport: pkt.dport,
                    },
                    inner: Some(HeaderRewrite {
                        src: q2.src.to_ip(),
                        dst: q2.dst.to_ip(),
                        sport: q2.sport,
                        dport: q2.dport,
                    }),
                });
            }
            return v;
        }
        CtVerdict::invalid()
    }
}
