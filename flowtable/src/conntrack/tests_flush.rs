//! `flush-conntrack` tests: what a filter removes and what it leaves, NAT
//! aliases included.

use super::tests::{v4, v6};
use super::*;
use std::net::IpAddr;

fn udp(c: IpAddr, cp: u16, s: IpAddr, sp: u16) -> CtPacket {
    CtPacket::udp(c, cp, s, sp)
}

fn to(ep: IpAddr) -> NatSpec {
    NatSpec::Dst(NatRange::addr_port(ep, 8080))
}

/// Clients 1..=n each send to the Service address (10.0.0.100:53) and are
/// translated to endpoint A (10.0.0.201) if odd, B (10.0.0.202) if even.
fn service(ct: &ConnTrack, n: u8, zone: u16) {
    for c in 1..=n {
        let ep = if c % 2 == 1 { v4(201) } else { v4(202) };
        let v = ct.process(&udp(v4(c), 5353, v4(100), 53), zone, 0, true, Some(&to(ep)));
        assert!(v.has(ct_state::DNAT), "client {c} translated");
    }
}

#[test]
fn flush_by_reply_source_removes_one_endpoints_connections_and_their_aliases() {
    let ct = ConnTrack::new(CtConfig::default());
    service(&ct, 40, 5);
    assert_eq!(ct.len(), 40);
    let f = CtFilter {
        zone: Some(5),
        reply: TupleFilter {
            src: Some(v4(201)),
            proto: Some(proto::UDP),
            sport: Some(8080),
            ..TupleFilter::default()
        },
        ..CtFilter::default()
    };
    assert_eq!(ct.flush(&f), 20);
    assert_eq!(ct.len(), 20);
    assert_eq!(ct.zone_len(5), 20);
    for c in 1..=40u8 {
        let ep = if c % 2 == 1 { v4(201) } else { v4(202) };
        // A reply from the endpoint is found (through its alias) only for
        // the connections left.
        let back = ct.process(&udp(ep, 8080, v4(c), 5353), 5, 1, false, None);
        if c % 2 == 1 {
            assert!(back.has(ct_state::NEW), "client {c}: reply alias removed");
        } else {
            assert!(
                back.has(ct_state::EST) && back.has(ct_state::RPL),
                "client {c} kept"
            );
        }
    }
    // A flushed client's next packet is a new connection, translated anew
    // (here to B, as the agent would after removing A).
    let v = ct.process(
        &udp(v4(1), 5353, v4(100), 53),
        5,
        2,
        true,
        Some(&to(v4(202))),
    );
    assert!(v.has(ct_state::NEW) && v.has(ct_state::DNAT));
    assert_eq!(v.nat.expect("translated").outer.dst, v4(202));
}

#[test]
fn flush_by_zone_and_mark_leaves_the_rest() {
    let ct = ConnTrack::new(CtConfig::default());
    service(&ct, 4, 1);
    service(&ct, 4, 2);
    let marked = CtExec {
        mark: Some((0x7, 0xff)),
        label: None,
    };
    ct.process_exec(&udp(v6(1), 1, v6(2), 2), 2, 0, true, None, &marked);
    assert_eq!(ct.len(), 9);
    let by_mark = CtFilter {
        mark: Some((0x7, 0xf)),
        ..CtFilter::default()
    };
    assert_eq!(ct.flush(&by_mark), 1, "only the IPv6 entry has the mark");
    assert_eq!(
        ct.flush(&CtFilter {
            zone: Some(1),
            ..CtFilter::default()
        }),
        4
    );
    assert_eq!(ct.zone_len(1), 0);
    assert_eq!(ct.zone_len(2), 4);
    let by_orig = CtFilter {
        orig: TupleFilter {
            src: Some(v4(3)),
            dport: Some(53),
            ..TupleFilter::default()
        },
        ..CtFilter::default()
    };
    assert_eq!(ct.flush(&by_orig), 1);
    assert_eq!(ct.flush(&by_orig), 0, "nothing left to match");
    assert_eq!(ct.flush(&CtFilter::default()), 3, "no filter: everything");
    assert!(ct.is_empty());
}

#[test]
fn flush_by_label_and_icmp_type() {
    let ct = ConnTrack::new(CtConfig::default());
    let labelled = CtExec {
        mark: None,
        label: Some((5 << 64, u128::MAX)),
    };
    let commit = |p: &CtPacket, exec: &CtExec| ct.process_exec(p, 0, 0, true, None, exec);
    commit(&CtPacket::icmp_echo(v4(1), v4(2), 7, true), &labelled);
    commit(
        &CtPacket::icmp_echo(v6(1), v6(2), 7, true),
        &CtExec::default(),
    );
    commit(&udp(v4(1), 7, v4(2), 7), &CtExec::default());
    assert_eq!(ct.len(), 3);
    let by = |orig: TupleFilter, reply: TupleFilter| CtFilter {
        orig,
        reply,
        ..CtFilter::default()
    };
    let ty = |t: u8| TupleFilter {
        icmp_type: Some(t),
        ..TupleFilter::default()
    };
    // A request type names no reply direction, and no UDP connection.
    assert_eq!(ct.flush(&by(ty(0), TupleFilter::default())), 0);
    assert_eq!(ct.flush(&by(TupleFilter::default(), ty(8))), 0);
    let code = TupleFilter {
        icmp_code: Some(3),
        ..TupleFilter::default()
    };
    assert_eq!(ct.flush(&by(code, TupleFilter::default())), 0);
    let by_label = CtFilter {
        label: Some((1 << 64, 1 << 64)),
        ..CtFilter::default()
    };
    assert_eq!(ct.flush(&by_label), 1, "only the IPv4 echo has bit 64");
    assert_eq!(ct.flush(&by(TupleFilter::default(), ty(129))), 1);
    assert_eq!(ct.len(), 1, "the UDP connection is left");
}
