//! Arbitrary frames through `extract`, [`CtPacket::parse`] and conntrack,
//! as the `ct` action sees them.
//!
//! The input is a sequence of records: one control byte, one length byte,
//! then that many frame bytes. Each frame that `extract` accepts is parsed;
//! a parsed packet goes through `process` (commit and NAT chosen by the
//! control byte), then again with its addresses and ports swapped, as its
//! reply would arrive, and any rewrite is applied to the frame's bytes.
//!
//! Invariants: nothing panics; a parsed TCP or UDP packet has the ports
//! `extract` put in the flow key; the table stays within its limit.

#![no_main]

use flowtable::conntrack::{
    apply_rewrite, ct_state, proto, ConnTrack, CtConfig, CtPacket, NatRange, NatSpec,
};
use flowtable::extract::extract;
use flowtable::key::FlowKey;
use flowtable::Field;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

const MAX: usize = 64;

fn table() -> &'static ConnTrack {
    static CT: OnceLock<ConnTrack> = OnceLock::new();
    CT.get_or_init(|| {
        ConnTrack::new(CtConfig {
            max_conns: MAX,
            ..CtConfig::default()
        })
    })
}

fn nat(ctl: u8, v6: bool) -> Option<NatSpec> {
    let a = if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 9, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))
    };
    match ctl >> 5 {
        0 => Some(NatSpec::Dst(NatRange::addr_port(a, 8080))),
        1 => Some(NatSpec::masquerade(a)),
        2 | 3 => Some(NatSpec::Existing),
        _ => None,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ct = table();
    let mut rest = data;
    let mut now = 0u64;
    while let [ctl, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let mut frame = tail[..n].to_vec();
        rest = &tail[n..];
        now += (*ctl & 7) as u64 * 1000;
        let mut key = FlowKey::default();
        let Ok(lay) = extract(&frame, 1, &mut key) else {
            continue;
        };
        let Ok(pkt) = CtPacket::parse(&frame, &lay) else {
            continue;
        };
        if matches!(pkt.proto, proto::TCP | proto::UDP) {
            let ports = (key.get(Field::TpSrc), key.get(Field::TpDst));
            assert_eq!(ports, (pkt.sport as u128, pkt.dport as u128));
        }
        let nat = nat(*ctl, pkt.src.is_ipv6());
        let commit = ctl & 0x08 != 0;
        let zone = (ctl >> 4 & 1) as u16;
        let v = ct.process(&pkt, zone, now, commit, nat.as_ref());
        assert!(v.state & ct_state::TRK != 0);
        if let Some(rw) = v.nat {
            let _ = apply_rewrite(&mut frame, lay.l3 as usize, lay.l4 as usize, &rw);
        }
        let mut reply = pkt;
        (reply.src, reply.dst) = (pkt.dst, pkt.src);
        (reply.sport, reply.dport) = (pkt.dport, pkt.sport);
        let _ = ct.process(&reply, zone, now, false, nat.as_ref());
        assert!(ct.len() <= MAX, "{} entries", ct.len());
        ct.expire(now, 8);
    }
});
