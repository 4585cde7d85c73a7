//! NAT tests: translation both ways, port allocation under collisions,
//! ICMP errors through NAT, and byte-level rewrites checked against packets
//! built from scratch by etherparse.

use super::tests::{seg, v4, v6};
use super::*;
use etherparse::{Icmpv4Type, PacketBuilder};
use std::collections::HashSet;
use std::net::IpAddr;
use tcp_flags::*;

fn o4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(x) => x.octets(),
        IpAddr::V6(_) => panic!("v6"),
    }
}

fn o6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(x) => x.octets(),
        IpAddr::V4(_) => panic!("v4"),
    }
}

const VIP_PORT: u16 = 80;

fn vip() -> IpAddr {
    v4(100)
}

fn backend() -> IpAddr {
    v4(200)
}

fn dnat() -> NatSpec {
    NatSpec::Dst(NatRange::addr_port(backend(), 8080))
}

#[test]
fn dnat_translates_both_ways() {
    let ct = ConnTrack::new(CtConfig::default());
    let syn = CtPacket::tcp(v4(1), 40000, vip(), VIP_PORT, seg(SYN, 1, 0, 0));
    let v = ct.process(&syn, 0, 0, true, Some(&dnat()));
    assert_eq!(v.state, ct_state::TRK | ct_state::NEW | ct_state::DNAT);
    let rw = v.nat.unwrap().outer;
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (v4(1), 40000, backend(), 8080)
    );
    let sa = CtPacket::tcp(backend(), 8080, v4(1), 40000, seg(SYN | ACK, 9, 2, 0));
    let v = ct.process(&sa, 0, 1, true, Some(&NatSpec::Existing));
    assert!(v.has(ct_state::RPL) && v.has(ct_state::EST) && v.has(ct_state::DNAT));
    let rw = v.nat.unwrap().outer;
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (vip(), VIP_PORT, v4(1), 40000)
    );
    // Without `nat` in the action the packet is tracked but not rewritten.
    let ack = CtPacket::tcp(v4(1), 40000, vip(), VIP_PORT, seg(ACK, 2, 10, 0));
    let v = ct.process(&ack, 0, 2, false, None);
    assert_eq!((v.state, v.nat), (ct_state::TRK | ct_state::EST, None));
    // Expiry removes the entry and its alias: the backend's tuple is free.
    assert_eq!(ct.expire(2 + 24 * 3_600_000, 100), 1);
    let v = ct.process(&sa, 0, 3, true, None);
    assert_eq!(
        v.state,
        ct_state::TRK | ct_state::INV,
        "SYN+ACK cannot start one"
    );
}

#[test]
fn snat_tiny_port_range_never_shares_a_tuple() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::Src(NatRange::addr_ports(v4(50), v4(50), 1000, 1003));
    let mut seen = HashSet::new();
    for c in 1..=4u8 {
        // Same source port from every client: all collide on "keep port".
        let syn = CtPacket::tcp(v4(c), 5555, v4(2), 443, seg(SYN, 1, 0, 0));
        let v = ct.process(&syn, 0, 0, true, Some(&spec));
        assert_eq!(v.drop, None);
        let rw = v.nat.unwrap().outer;
        assert_eq!(rw.src, v4(50));
        assert!((1000..=1003).contains(&rw.sport));
        assert!(seen.insert((rw.src, rw.sport)), "translated tuple reused");
    }
    let syn = CtPacket::tcp(v4(9), 5555, v4(2), 443, seg(SYN, 1, 0, 0));
    let v = ct.process(&syn, 0, 0, true, Some(&spec));
    assert_eq!(v.drop, Some(DropReason::CtNatExhausted));
    assert_eq!(ct.len(), 4);
    // Each reply reaches its own client.
    for &(_, port) in &seen {
        let back = CtPacket::tcp(v4(2), 443, v4(50), port, seg(SYN | ACK, 9, 2, 0));
        let v = ct.process(&back, 0, 1, true, Some(&NatSpec::Existing));
        assert!(v.has(ct_state::EST | ct_state::RPL));
        assert_eq!(v.nat.unwrap().outer.dport, 5555);
    }
}

#[test]
fn masquerade_keeps_port_then_falls_back() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::masquerade(v4(250));
    let a = ct.process(
        &CtPacket::udp(v4(1), 7000, v4(2), 53),
        0,
        0,
        true,
        Some(&spec),
    );
    let b = ct.process(
        &CtPacket::udp(v4(3), 7000, v4(2), 53),
        0,
        0,
        true,
        Some(&spec),
    );
    let (a, b) = (a.nat.unwrap().outer, b.nat.unwrap().outer);
    assert_eq!((a.src, a.sport), (v4(250), 7000));
    assert_eq!(b.src, v4(250));
    assert!(b.sport >= 1024 && b.sport != 7000);
}

#[test]
fn snat_icmp_echo_translates_identifier() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::masquerade(v4(250));
    let r1 = ct.process(
        &CtPacket::icmp_echo(v4(1), v4(2), 9, true),
        0,
        0,
        true,
        Some(&spec),
    );
    let r2 = ct.process(
        &CtPacket::icmp_echo(v4(3), v4(2), 9, true),
        0,
        0,
        true,
        Some(&spec),
    );
    let id2 = r2.nat.unwrap().outer.sport;
    assert_eq!(r1.nat.unwrap().outer.sport, 9);
    assert_ne!(id2, 9);
    let rep = CtPacket::icmp_echo(v4(2), v4(250), id2, false);
    let v = ct.process(&rep, 0, 1, false, Some(&NatSpec::Existing));
    let rw = v.nat.unwrap().outer;
    assert_eq!((rw.dst, rw.sport), (v4(3), 9));
}

#[test]
fn icmp_error_related_through_dnat() {
    let ct = ConnTrack::new(CtConfig::default());
    let syn = CtPacket::tcp(v4(1), 40000, vip(), VIP_PORT, seg(SYN, 1, 0, 0));
    ct.process(&syn, 0, 0, true, Some(&dnat()));
    // A router on the way to the backend reports the translated segment
    // back to the client.
    let quoted = InnerTuple {
        src: v4(1),
        dst: backend(),
        proto: proto::TCP,
        sport: 40000,
        dport: 8080,
    };
    let err = CtPacket::icmp_error(v4(77), v4(1), 3, 3, quoted);
    let v = ct.process(&err, 0, 1, false, Some(&NatSpec::Existing));
    assert!(v.has(ct_state::REL) && v.has(ct_state::RPL) && v.has(ct_state::DNAT));
    let rw = v.nat.unwrap();
    // The quoted segment goes back to what the client sent...
    let inner = rw.inner.unwrap();
    assert_eq!(
        (inner.src, inner.sport, inner.dst, inner.dport),
        (v4(1), 40000, vip(), VIP_PORT)
    );
    // ...and the outer source becomes the address the client talked to.
    assert_eq!((rw.outer.src, rw.outer.dst), (vip(), v4(1)));
}

/// Two Services sending one client port to the same endpoint: the second
/// connection's reply tuple would be the first's, so, as Linux and OVS do,
/// its source port is moved too, and each reply goes back to its own VIP.
#[test]
fn dnat_collision_moves_the_source_port() {
    let ct = ConnTrack::new(CtConfig::default());
    let mut ports = HashSet::new();
    for (vip, sport) in [(v4(100), 40000), (v4(101), 40000), (v4(102), 40000)] {
        let syn = CtPacket::tcp(v4(1), sport, vip, VIP_PORT, seg(SYN, 1, 0, 0));
        let v = ct.process(&syn, 0, 0, true, Some(&dnat()));
        assert_eq!(v.drop, None, "{vip}");
        assert_eq!(v.state, ct_state::TRK | ct_state::NEW | ct_state::DNAT);
        let rw = v.nat.unwrap().outer;
        assert_eq!((rw.src, rw.dst, rw.dport), (v4(1), backend(), 8080));
        assert!(ports.insert(rw.sport), "reply tuple shared: {rw:?}");
        assert!(rw.sport == 40000 || rw.sport >= 1024);
    }
    assert!(ports.contains(&40000), "the first keeps its port");
    for (i, &p) in ports.iter().enumerate() {
        let sa = CtPacket::tcp(backend(), 8080, v4(1), p, seg(SYN | ACK, 9, 2, 0));
        let v = ct.process(&sa, 0, 1 + i as u64, true, Some(&NatSpec::Existing));
        assert!(v.has(ct_state::RPL | ct_state::EST), "{p}: {v:?}");
        let rw = v.nat.unwrap().outer;
        assert_eq!((rw.dst, rw.dport, rw.sport), (v4(1), 40000, VIP_PORT));
    }
    // A rule that names no port keeps the destination port: the source
    // port moves.
    let spec = NatSpec::Dst(NatRange::addr(backend()));
    for vip in [v4(100), v4(101)] {
        let syn = CtPacket::tcp(v4(2), 40000, vip, VIP_PORT, seg(SYN, 1, 0, 0));
        let rw = ct.process(&syn, 0, 0, true, Some(&spec)).nat.unwrap().outer;
        assert_eq!((rw.dst, rw.dport), (backend(), VIP_PORT));
        assert_eq!(rw.sport == 40000, vip == v4(100), "{rw:?}");
    }
    // The same over IPv6 and UDP, and the entries' own reply keys are what
    // dumps and flushes see.
    let spec6 = NatSpec::Dst(NatRange::addr_port(v6(200), 53));
    let mut got = HashSet::new();
    for vip in [v6(100), v6(101)] {
        let v = ct.process(
            &CtPacket::udp(v6(1), 5353, vip, 53),
            0,
            0,
            true,
            Some(&spec6),
        );
        assert_eq!(v.drop, None);
        got.insert(v.nat.unwrap().outer.sport);
    }
    assert_eq!(got.len(), 2);
    let replies: HashSet<u16> = ct
        .dump(None, 1, usize::MAX)
        .into_iter()
        .filter(|c| c.reply.0 == v6(200))
        .map(|c| c.reply.3)
        .collect();
    assert_eq!(replies, got);
}

#[test]
fn nat_range_of_wrong_family_is_refused() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::Dst(NatRange::addr(v6(1)));
    let v = ct.process(&CtPacket::udp(v4(1), 1, v4(2), 2), 0, 0, true, Some(&spec));
    assert_eq!(v.drop, Some(DropReason::CtNatExhausted));
    assert!(ct.is_empty());
}

/// Applies the rewrite conntrack asks for to `built` and checks the result
/// is byte for byte the packet etherparse builds with the new fields.
fn check(mut built: Vec<u8>, l4: usize, rw: &NatRewrite, want: Vec<u8>) {
    apply_rewrite(&mut built, 0, l4, rw).unwrap();
    assert_eq!(built, want);
}

#[test]
fn rewrite_checksums_match_etherparse_tcp_udp_v4() {
    let ct = ConnTrack::new(CtConfig::default());
    let payload = b"hello, world!";
    let syn = CtPacket::tcp(v4(1), 40000, vip(), VIP_PORT, seg(SYN, 1, 0, 0));
    let rw = ct.process(&syn, 0, 0, true, Some(&dnat())).nat.unwrap();
    let mk = |dst: IpAddr, dport| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(o4(v4(1)), o4(dst), 64)
            .tcp(40000, dport, 1, 65535)
            .syn()
            .write(&mut v, payload)
            .unwrap();
        v
    };
    check(mk(vip(), VIP_PORT), 20, &rw, mk(backend(), 8080));

    let spec = NatSpec::Src(NatRange::addr_ports(v4(50), v4(50), 2000, 2000));
    let udp = CtPacket::udp(v4(1), 5353, v4(2), 53);
    let rw = ct.process(&udp, 0, 0, true, Some(&spec)).nat.unwrap();
    let mk = |src: IpAddr, sport| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(o4(src), o4(v4(2)), 64)
            .udp(sport, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    };
    check(mk(v4(1), 5353), 20, &rw, mk(v4(50), 2000));
}

#[test]
fn rewrite_checksums_match_etherparse_v6_and_echo() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::Dst(NatRange::addr_port(v6(9), 5353));
    let udp = CtPacket::udp(v6(1), 1111, v6(2), 53);
    let rw = ct.process(&udp, 0, 0, true, Some(&spec)).nat.unwrap();
    let mk = |dst: IpAddr, dport| {
        let mut v = Vec::new();
        PacketBuilder::ipv6(o6(v6(1)), o6(dst), 64)
            .udp(1111, dport)
            .write(&mut v, b"query")
            .unwrap();
        v
    };
    check(mk(v6(2), 53), 40, &rw, mk(v6(9), 5353));

    // ICMPv6 echo through SNAT with a forced identifier.
    let spec = NatSpec::Src(NatRange::addr_ports(v6(50), v6(50), 4242, 4242));
    let req = CtPacket::icmp_echo(v6(1), v6(2), 7, true);
    let rw = ct.process(&req, 0, 0, true, Some(&spec)).nat.unwrap();
    let mk = |src: IpAddr, id| {
        let mut v = Vec::new();
        PacketBuilder::ipv6(o6(src), o6(v6(2)), 64)
            .icmpv6_echo_request(id, 1)
            .write(&mut v, b"ping")
            .unwrap();
        v
    };
    check(mk(v6(1), 7), 40, &rw, mk(v6(50), 4242));

    // ICMPv4 echo (no pseudo-header).
    let spec = NatSpec::Src(NatRange::addr_ports(v4(50), v4(50), 4242, 4242));
    let req = CtPacket::icmp_echo(v4(1), v4(2), 7, true);
    let rw = ct.process(&req, 0, 0, true, Some(&spec)).nat.unwrap();
    let mk = |src: IpAddr, id| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(o4(src), o4(v4(2)), 64)
            .icmpv4_echo_request(id, 1)
            .write(&mut v, b"ping")
            .unwrap();
        v
    };
    check(mk(v4(1), 7), 20, &rw, mk(v4(50), 4242));
}

#[test]
fn rewrite_of_icmp_error_fixes_quoted_header_and_checksums() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::Dst(NatRange::addr_port(backend(), 5300));
    let udp = CtPacket::udp(v4(1), 4000, vip(), 53);
    ct.process(&udp, 0, 0, true, Some(&spec));
    // The datagram as it left the switch (translated), and as the client
    // sent it; an error quotes the first 28 bytes (IP header + 8).
    let dgram = |dst: IpAddr, dport| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(o4(v4(1)), o4(dst), 63)
            .udp(4000, dport)
            .write(&mut v, b"a dns query")
            .unwrap();
        v.truncate(28);
        v
    };
    let err = |src: IpAddr, quote: Vec<u8>| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(o4(src), o4(v4(1)), 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut v, &quote)
            .unwrap();
        v
    };
    let quoted = InnerTuple {
        src: v4(1),
        dst: backend(),
        proto: proto::UDP,
        sport: 4000,
        dport: 5300,
    };
    let pkt = CtPacket::icmp_error(backend(), v4(1), 3, 3, quoted);
    let v = ct.process(&pkt, 0, 1, false, Some(&NatSpec::Existing));
    assert!(v.has(ct_state::REL));
    let rw = v.nat.unwrap();
    check(
        err(backend(), dgram(backend(), 5300)),
        20,
        &rw,
        err(vip(), dgram(vip(), 53)),
    );
}

#[test]
fn rewrite_rejects_short_and_foreign_packets() {
    let rw = NatRewrite {
        outer: HeaderRewrite {
            src: v4(1),
            dst: v4(2),
            sport: 1,
            dport: 2,
        },
        inner: None,
    };
    assert_eq!(
        apply_rewrite(&mut [0x45; 10], 0, 20, &rw),
        Err(RewriteError::Truncated)
    );
    assert_eq!(
        apply_rewrite(&mut [0x00; 40], 0, 20, &rw),
        Err(RewriteError::NotIp)
    );
    let mut v6pkt = [0u8; 48];
    v6pkt[0] = 0x60;
    assert_eq!(
        apply_rewrite(&mut v6pkt, 0, 40, &rw),
        Err(RewriteError::FamilyMismatch)
    );
}

#[test]
fn nat_without_commit_translates_but_stores_nothing() {
    let ct = ConnTrack::new(CtConfig::default());
    let syn = CtPacket::tcp(v4(1), 40000, vip(), VIP_PORT, seg(SYN, 1, 0, 0));
    let v = ct.process(&syn, 0, 0, false, Some(&dnat()));
    assert_eq!(v.state, ct_state::TRK | ct_state::NEW | ct_state::DNAT);
    assert_eq!(v.nat.unwrap().outer.dst, backend());
    assert!(ct.is_empty());
    // A bare `nat` sets nothing up.
    let v = ct.process(&syn, 0, 0, true, Some(&NatSpec::Existing));
    assert_eq!((v.state, v.nat), (ct_state::TRK | ct_state::NEW, None));
}

#[test]
fn rewrite_finds_l4_behind_ipv6_extension_headers() {
    let ct = ConnTrack::new(CtConfig::default());
    let spec = NatSpec::Dst(NatRange::addr_port(v6(9), 5353));
    let udp = CtPacket::udp(v6(1), 1111, v6(2), 53);
    let rw = ct.process(&udp, 0, 0, true, Some(&spec)).nat.unwrap();
    // An etherparse-built datagram with an 8-byte hop-by-hop header (one
    // PadN option) spliced in after the fixed header.
    let mk = |dst: IpAddr, dport| {
        let mut v = Vec::new();
        PacketBuilder::ipv6(o6(v6(1)), o6(dst), 64)
            .udp(1111, dport)
            .write(&mut v, b"query")
            .unwrap();
        let plen = u16::from_be_bytes([v[4], v[5]]) + 8;
        v[4..6].copy_from_slice(&plen.to_be_bytes());
        v[6] = 0;
        let hbh = [proto::UDP, 0, 1, 4, 0, 0, 0, 0];
        v.splice(40..40, hbh);
        v
    };
    check(mk(v6(2), 53), 48, &rw, mk(v6(9), 5353));
}
