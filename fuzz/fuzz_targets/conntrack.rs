//! Conntrack under arbitrary packet sequences: few addresses and ports so
//! connections recur, both directions, arbitrary TCP flags and numbers,
//! NAT on some, time moving forward with incremental expiry in between.
//!
//! Now and then the table is flushed by zone, protocol and the reply's
//! source (as an agent flushes a gone endpoint's connections).
//!
//! Invariants: nothing panics; the table never holds more than its global
//! or zone limit; a reply to a NATed connection is translated back to the
//! original tuple; applying any rewrite to arbitrary bytes never panics;
//! after a flush no listed connection matches its filter.

#![no_main]

use flowtable::conntrack::{
    apply_rewrite, ct_state, proto, ConnTrack, CtConfig, CtFilter, CtPacket, InnerTuple, NatRange,
    NatSpec, TcpInfo, TupleFilter,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MAX: usize = 48;
const ZONE1_MAX: u32 = 6;

fn addr(v6: bool, i: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, (i % 4) as u16 + 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, i % 4 + 1))
    }
}

fn nat_addr(v6: bool, i: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 9, 0, i))
    }
}

/// (src, sport, dst, dport, proto)
type Tup = (IpAddr, u16, IpAddr, u16, u8);

fn packet(t: Tup, flags: u8, seq: u32, ack: u32, len: u32, request: bool) -> CtPacket {
    match t.4 {
        proto::TCP => CtPacket::tcp(
            t.0,
            t.1,
            t.2,
            t.3,
            TcpInfo {
                flags,
                seq,
                ack,
                window: 1 + (seq as u16 & 0x7fff),
                wscale: (flags & 2 != 0 && seq & 1 == 0).then_some((ack % 16) as u8),
                payload_len: len,
            },
        ),
        proto::UDP => CtPacket::udp(t.0, t.1, t.2, t.3),
        _ => CtPacket::icmp_echo(t.0, t.2, t.1, request),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ct = ConnTrack::new(CtConfig {
        max_conns: MAX,
        ..CtConfig::default()
    });
    ct.set_zone_limit(1, ZONE1_MAX);
    // (Zone, translated tuple as the reply arrives) -> what the reply must
    // become. Zones are separate tables, so each may reuse a tuple.
    let mut owners: HashMap<(u16, Tup), Tup> = HashMap::new();
    let mut replies: Vec<(u16, Tup)> = Vec::new();
    let mut now = 0u64;
    for c in data.chunks_exact(8) {
        let v6 = c[0] & 0x80 != 0;
        let mut zone = (c[0] >> 6 & 1) as u16;
        let commit = c[0] & 0x20 != 0;
        let p = match c[0] & 3 {
            0 | 1 => proto::TCP,
            2 => proto::UDP,
            _ => {
                if v6 {
                    proto::ICMPV6
                } else {
                    proto::ICMP
                }
            }
        };
        let icmp = p != proto::TCP && p != proto::UDP;
        let sport = 1000 + (c[1] & 3) as u16;
        let dport = if icmp {
            sport
        } else {
            80 + (c[1] >> 2 & 1) as u16
        };
        let mut t: Tup = (addr(v6, c[1] >> 3), sport, addr(v6, c[1] >> 5), dport, p);
        let mut is_reply_to_nat = false;
        if c[0] & 0x10 != 0 {
            // The other direction.
            t = (t.2, t.3, t.0, t.1, p);
        }
        if c[0] & 0x0c == 0x0c && !replies.is_empty() {
            // A reply to a connection set up with NAT.
            (zone, t) = replies[c[2] as usize % replies.len()];
            is_reply_to_nat = true;
        }
        let (p, v6) = (t.4, t.0.is_ipv6());
        let icmp = p != proto::TCP && p != proto::UDP;
        let seq = u32::from_be_bytes([c[3], c[4], 0, 0]).wrapping_mul(c[2] as u32 | 1);
        let ack = u32::from_be_bytes([c[4], c[5], c[3], 0]);
        let nat = match c[6] & 7 {
            0 => Some(NatSpec::Dst(NatRange::addr_port(nat_addr(v6, 1), 8080))),
            1 => Some(NatSpec::Src(NatRange::addr_ports(
                nat_addr(v6, 2),
                nat_addr(v6, 3),
                2000,
                2001 + (c[6] >> 6) as u16,
            ))),
            2 => Some(NatSpec::masquerade(nat_addr(v6, 4))),
            3 | 4 => Some(NatSpec::Existing),
            _ => None,
        };
        let request = c[5] & 1 == 0 || !icmp;
        let mut pkt = packet(t, c[2], seq, ack, (c[5] >> 4) as u32 * 100, request);
        if icmp && c[5] & 6 == 6 {
            // An ICMP error quoting what this tuple would be, sent back.
            let inner = InnerTuple {
                src: t.2,
                dst: t.0,
                proto: if c[5] & 8 != 0 { proto::TCP } else { p },
                sport: t.3,
                dport: t.1,
            };
            let ty = if v6 { 1 + (c[2] & 3) } else { 3 };
            pkt = CtPacket::icmp_error(addr(v6, c[7]), t.0, ty, c[2] >> 4, inner);
        }
        let v = ct.process(&pkt, zone, now, commit, nat.as_ref());
        assert!(v.state & ct_state::TRK != 0);
        assert!(ct.len() <= MAX, "{} entries", ct.len());
        assert!(ct.zone_len(1) <= ZONE1_MAX);
        if let Some(rw) = v.nat {
            let o = rw.outer;
            if v.state & ct_state::NEW != 0 && v.state & ct_state::RPL == 0 && pkt.inner.is_none() {
                // A new NATed connection: remember how its replies look.
                let reply = (o.dst, o.dport, o.src, o.sport, p);
                owners.insert((zone, reply), (t.2, t.3, t.0, t.1, p));
                if replies.len() < 64 {
                    replies.push((zone, reply));
                }
            } else if is_reply_to_nat && v.state & ct_state::RPL != 0 && pkt.inner.is_none() {
                let want = owners[&(zone, t)];
                assert_eq!(
                    (o.src, o.sport, o.dst, o.dport),
                    (want.0, want.1, want.2, want.3)
                );
            }
            let mut bytes = data.to_vec();
            let _ = apply_rewrite(&mut bytes, c[7] as usize % 16, c[6] as usize, &rw);
        }
        if c[7] & 0xc0 == 0xc0 {
            now += (c[7] & 0x3f) as u64 * 1000;
        } else {
            now += (c[7] & 0x0f) as u64;
        }
        ct.expire(now, 4);
        if c[6] & 0xf8 == 0xf8 {
            let f = CtFilter {
                zone: (c[3] & 1 != 0).then_some(zone),
                reply: TupleFilter {
                    src: (c[3] & 2 != 0).then(|| nat_addr(v6, 1)),
                    proto: (c[3] & 4 != 0).then_some(p),
                    ..TupleFilter::default()
                },
                ..CtFilter::default()
            };
            let before = ct.len();
            let removed = ct.flush(&f);
            assert_eq!(ct.len(), before - removed);
            for e in ct.dump(None, now, MAX) {
                let hit = f.zone.is_none_or(|z| z == e.zone)
                    && f.reply.src.is_none_or(|a| a == e.reply.0)
                    && f.reply.proto.is_none_or(|q| q == e.proto);
                assert!(!hit, "flushed but listed: {}", e.line());
            }
        }
    }
});
