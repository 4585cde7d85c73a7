//! Fragment tracking (`frag.rs`): later fragments take their connection's
//! verdict through the ports their first fragment was seen with; orphans
//! are `+inv` and counted; entries expire and the table is bounded. The
//! byte-level test fragments a real UDP datagram, runs each piece through
//! parse, `process` and `apply_rewrite` as the datapath does, and checks the
//! reassembled datagram.

use super::tests::{seg, v4, v6};
use super::*;
use crate::extract::extract;
use crate::key::FlowKey;
use etherparse::PacketBuilder;
use std::net::IpAddr;
use tcp_flags::*;

fn dnat() -> NatSpec {
    NatSpec::Dst(NatRange::addr_port(v4(200), 8080))
}

/// A UDP packet of `frag` from `src:sport` to `dst:dport` (a later fragment
/// has zero ports, as the parser gives it).
fn udp_frag(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, frag: Fragment) -> CtPacket {
    let mut p = CtPacket::udp(src, sport, dst, dport);
    if let Fragment::Later { .. } = frag {
        (p.sport, p.dport) = (0, 0);
    }
    p.frag = frag;
    p
}

const FIRST: Fragment = Fragment::First { id: 7 };
const LATER: Fragment = Fragment::Later { id: 7 };

#[test]
fn in_order_fragments_of_a_udp_datagram_share_its_connection_and_nat() {
    let ct = ConnTrack::new(CtConfig::default());
    let exec = CtExec {
        mark: Some((0x42, u32::MAX)),
        label: Some((0x99, u128::MAX)),
    };
    let first = udp_frag(v4(1), 40000, v4(100), 80, FIRST);
    let v = ct.process_exec(&first, 3, 0, true, Some(&dnat()), &exec);
    assert_eq!(v.state, ct_state::TRK | ct_state::NEW | ct_state::DNAT);
    assert_eq!(v.fragment_l4, None, "a first fragment has its own ports");
    let later = udp_frag(v4(1), 0, v4(100), 0, LATER);
    for _ in 0..2 {
        let v = ct.process(&later, 3, 1, false, Some(&NatSpec::Existing));
        assert_eq!(v.state, ct_state::TRK | ct_state::NEW | ct_state::DNAT);
        assert_eq!((v.mark, v.label), (0x42, 0x99));
        let rw = v.nat.expect("the connection's NAT").outer;
        assert_eq!(
            (rw.src, rw.sport, rw.dst, rw.dport),
            (v4(1), 40000, v4(200), 8080)
        );
        let l4 = v.fragment_l4.expect("the first fragment's ports");
        assert_eq!((l4.sport, l4.dport), (40000, 80));
    }
    // Only the first fragment made a connection.
    assert_eq!(ct.len(), 1);

    // A fragmented reply: its first fragment, then a later one, both
    // translated back to the Service address.
    let id = Fragment::First { id: 900 };
    let first = udp_frag(v4(200), 8080, v4(1), 40000, id);
    let v = ct.process(&first, 3, 2, false, Some(&NatSpec::Existing));
    assert_eq!(
        v.state,
        ct_state::TRK | ct_state::EST | ct_state::RPL | ct_state::DNAT
    );
    let later = udp_frag(v4(200), 0, v4(1), 0, Fragment::Later { id: 900 });
    let v = ct.process(&later, 3, 3, false, Some(&NatSpec::Existing));
    assert_eq!(
        v.state,
        ct_state::TRK | ct_state::EST | ct_state::RPL | ct_state::DNAT
    );
    let rw = v.nat.unwrap().outer;
    assert_eq!(
        (rw.src, rw.sport, rw.dst, rw.dport),
        (v4(100), 80, v4(1), 40000)
    );
    let s = ct.frag_stats();
    assert_eq!((s.first, s.later, s.orphans, s.evicted), (2, 3, 0, 0));
}

#[test]
fn a_later_fragment_without_its_first_is_invalid_and_counted() {
    let ct = ConnTrack::new(CtConfig::default());
    let later = udp_frag(v4(1), 0, v4(2), 0, LATER);
    // Before its first fragment (reordered on the way): no ports to take.
    let v = ct.process(&later, 0, 0, true, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::INV);
    assert_eq!(v.fragment_l4, None);
    assert!(ct.is_empty());
    ct.process(&udp_frag(v4(1), 5000, v4(2), 53, FIRST), 0, 1, true, None);
    assert!(!ct.process(&later, 0, 2, false, None).has(ct_state::INV));
    // Another datagram, zone, protocol or direction is another key.
    let other_id = udp_frag(v4(1), 0, v4(2), 0, Fragment::Later { id: 8 });
    let mut tcp = later;
    tcp.proto = proto::TCP;
    let back = udp_frag(v4(2), 0, v4(1), 0, LATER);
    for (p, zone) in [(other_id, 0), (later, 1), (tcp, 0), (back, 0)] {
        assert_eq!(
            ct.process(&p, zone, 3, false, None).state,
            ct_state::TRK | ct_state::INV
        );
    }
    let s = ct.frag_stats();
    assert_eq!((s.first, s.later, s.orphans), (1, 1, 5));
}

#[test]
fn fragment_ports_expire() {
    let ct = ConnTrack::new(CtConfig::default());
    ct.process(
        &udp_frag(v4(1), 5000, v4(2), 53, FIRST),
        0,
        1000,
        true,
        None,
    );
    assert_eq!(ct.frag_len(1000), 1);
    let later = udp_frag(v4(1), 0, v4(2), 0, LATER);
    let t = 1000 + FRAG_TIMEOUT_MS;
    assert!(!ct.process(&later, 0, t - 1, false, None).has(ct_state::INV));
    // The connection lives on (UDP's 30 s), the fragment's ports do not.
    assert!(ct.process(&later, 0, t, false, None).has(ct_state::INV));
    assert_eq!(ct.frag_len(t), 0);
    assert_eq!(ct.len(), 1);
}

#[test]
fn the_fragment_table_is_bounded_and_keeps_the_newest() {
    let ct = ConnTrack::new(CtConfig {
        max_frags: 100,
        ..CtConfig::default()
    });
    // Rounded down to one bucket of 4 per shard.
    assert_eq!(ct.frag_capacity(), 64);
    for id in 0..1000u32 {
        let p = udp_frag(v4(1), 5000, v4(2), 53, Fragment::First { id });
        ct.process(&p, 0, id as u64, true, None);
    }
    assert!(ct.frag_len(1000) <= 64);
    let s = ct.frag_stats();
    assert_eq!(s.first, 1000);
    assert!(s.evicted >= 1000 - 64, "{s:?}");
    // The datagram whose fragments are still coming is the one kept.
    let later = udp_frag(v4(1), 0, v4(2), 0, Fragment::Later { id: 999 });
    assert!(!ct.process(&later, 0, 1000, false, None).has(ct_state::INV));
}

#[test]
fn a_later_tcp_fragment_leaves_the_window_alone() {
    let ct = ConnTrack::new(CtConfig::default());
    let (c, s) = (v4(1), v4(2));
    ct.process(
        &CtPacket::tcp(c, 40000, s, 80, seg(SYN, 100, 0, 0)),
        0,
        0,
        true,
        None,
    );
    ct.process(
        &CtPacket::tcp(s, 80, c, 40000, seg(SYN | ACK, 500, 101, 0)),
        0,
        1,
        true,
        None,
    );
    ct.process(
        &CtPacket::tcp(c, 40000, s, 80, seg(ACK, 101, 501, 0)),
        0,
        2,
        true,
        None,
    );
    let mut first = CtPacket::tcp(c, 40000, s, 80, seg(ACK | PSH, 101, 501, 1400));
    first.frag = FIRST;
    assert!(ct.process(&first, 0, 3, true, None).has(ct_state::EST));
    // The later fragment has no TCP header: its `tcp` fields are zero,
    // which sequence tracking would call invalid.
    let mut later = CtPacket::tcp(c, 0, s, 0, TcpInfo::default());
    later.frag = LATER;
    let v = ct.process(&later, 0, 4, true, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::EST);
    // The server acknowledges the whole segment (1400 seen, 1600 more in
    // the later fragments): still in the window.
    let ack = CtPacket::tcp(s, 80, c, 40000, seg(ACK, 501, 101 + 3000, 0));
    assert!(!ct.process(&ack, 0, 5, true, None).has(ct_state::INV));
}

#[test]
fn a_later_fragment_never_commits() {
    let ct = ConnTrack::new(CtConfig::default());
    let first = udp_frag(v4(1), 5000, v4(2), 53, FIRST);
    // Looked at, not committed (a rule dropped it before `ct(commit)`).
    assert_eq!(
        ct.process(&first, 0, 0, false, None).state,
        ct_state::TRK | ct_state::NEW
    );
    let later = udp_frag(v4(1), 0, v4(2), 0, LATER);
    let v = ct.process(&later, 0, 1, true, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::NEW);
    assert!(ct.is_empty());
}

#[test]
fn ipv6_and_echo_fragments() {
    let ct = ConnTrack::new(CtConfig::default());
    let first = udp_frag(v6(1), 5000, v6(2), 53, Fragment::First { id: 0x1_0000 });
    ct.process(&first, 0, 0, true, None);
    let later = udp_frag(v6(1), 0, v6(2), 0, Fragment::Later { id: 0x1_0000 });
    let v = ct.process(&later, 0, 1, false, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::NEW);
    assert_eq!(v.fragment_l4.map(|l| (l.sport, l.dport)), Some((5000, 53)));

    // `ping -s 3000`: request and reply both fragmented.
    let mut req = CtPacket::icmp_echo(v4(1), v4(2), 77, true);
    req.frag = FIRST;
    assert!(ct.process(&req, 0, 0, true, None).has(ct_state::NEW));
    let mut later = CtPacket::icmp_echo(v4(1), v4(2), 0, true);
    (later.icmp_type, later.frag) = (0, LATER);
    let v = ct.process(&later, 0, 1, true, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::NEW);
    let l4 = v.fragment_l4.unwrap();
    assert_eq!((l4.icmp_type, l4.sport), (8, 77));
    let mut rep = CtPacket::icmp_echo(v4(2), v4(1), 77, false);
    rep.frag = Fragment::First { id: 3 };
    assert!(ct.process(&rep, 0, 2, true, None).has(ct_state::EST));
    let mut later = CtPacket::icmp_echo(v4(2), v4(1), 0, false);
    later.frag = Fragment::Later { id: 3 };
    let v = ct.process(&later, 0, 3, true, None);
    assert_eq!(v.state, ct_state::TRK | ct_state::EST | ct_state::RPL);
}

/// Cuts the IPv4 frame `whole` (no options) into fragments of at most
/// `max` L4 bytes each (a multiple of 8), with identification `id`.
pub(super) fn fragment_v4(whole: &[u8], max: usize, id: u16) -> Vec<Vec<u8>> {
    let l4 = &whole[34..];
    let mut out = Vec::new();
    let mut from = 0;
    while from < l4.len() {
        let to = (from + max).min(l4.len());
        let more = to < l4.len();
        let mut f = whole[..34].to_vec();
        let flags = (from as u16 / 8) | if more { 0x2000 } else { 0 };
        f[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
        f[14 + 6..14 + 8].copy_from_slice(&flags.to_be_bytes());
        f[14 + 2..14 + 4].copy_from_slice(&(20 + (to - from) as u16).to_be_bytes());
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = wire::checksum::checksum(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&l4[from..to]);
        out.push(f);
        from = to;
    }
    out
}

#[test]
fn a_fragmented_datagram_through_port_changing_dnat_reassembles_valid() {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut whole = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 100], 64)
        .udp(40000, 80)
        .write(&mut whole, &payload)
        .unwrap();
    let ct = ConnTrack::new(CtConfig::default());
    let mut out = Vec::new();
    for (i, mut f) in fragment_v4(&whole, 1480, 0x1234).into_iter().enumerate() {
        let lay = extract(&f, 1, &mut FlowKey::default()).unwrap();
        let p = CtPacket::parse(&f, &lay).unwrap();
        let v = ct.process(&p, 0, i as u64, true, Some(&dnat()));
        assert!(!v.has(ct_state::INV), "fragment {i}");
        apply_rewrite(&mut f, lay.l3 as usize, lay.l4 as usize, &v.nat.unwrap()).unwrap();
        out.push(f);
    }
    assert_eq!(out.len(), 3);
    // Reassemble: every fragment's addresses and header checksum, then the
    // datagram's UDP checksum over the pieces.
    let mut l4 = Vec::new();
    for f in &out {
        assert_eq!(f[14 + 16..14 + 20], [10, 0, 0, 200]);
        assert_eq!(
            wire::checksum::checksum(&f[14..34]),
            0,
            "IP header checksum"
        );
        l4.extend_from_slice(&f[34..]);
    }
    let mut expect = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 200], 64)
        .udp(40000, 8080)
        .write(&mut expect, &payload)
        .unwrap();
    // The same UDP header, checksum included, and the same payload as the
    // datagram sent to the backend directly.
    assert_eq!(l4, expect[34..]);
}

/// Cuts the IPv6 frame `whole` (no extension headers) into fragments of at
/// most `max` L4 bytes each (a multiple of 8), each with a Fragment header
/// (RFC 8200 §4.5) of identification `id`.
fn fragment_v6(whole: &[u8], max: usize, id: u32) -> Vec<Vec<u8>> {
    let l4 = &whole[54..];
    let next = whole[14 + 6];
    let mut out = Vec::new();
    let mut from = 0;
    while from < l4.len() {
        let to = (from + max).min(l4.len());
        let mut f = whole[..54].to_vec();
        f[14 + 6] = 44;
        f[14 + 4..14 + 6].copy_from_slice(&(8 + (to - from) as u16).to_be_bytes());
        let word = (from as u16 / 8) << 3 | u16::from(to < l4.len());
        f.extend_from_slice(&[next, 0]);
        f.extend_from_slice(&word.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&l4[from..to]);
        out.push(f);
        from = to;
    }
    out
}

#[test]
fn an_ipv6_fragmented_datagram_through_dnat_keeps_its_headers_and_checksum() {
    let (client, vip, backend) = (
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc8],
    );
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 5 + 1) as u8).collect();
    let build = |dst: [u8; 16], dport: u16| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(client, dst, 64)
            .udp(40000, dport)
            .write(&mut f, &payload)
            .unwrap();
        f
    };
    let nat = NatSpec::Dst(NatRange::addr_port(IpAddr::from(backend), 8080));
    let ct = ConnTrack::new(CtConfig::default());
    let sent = fragment_v6(&build(vip, 80), 1448, 0xabcd_0001);
    assert_eq!(sent.len(), 3);
    let mut l4 = Vec::new();
    for (i, mut f) in sent.into_iter().enumerate() {
        let lay = extract(&f, 1, &mut FlowKey::default()).unwrap();
        let p = CtPacket::parse(&f, &lay).unwrap();
        let v = ct.process(&p, 0, i as u64, true, Some(&nat));
        assert!(!v.has(ct_state::INV), "fragment {i}");
        let fixed = f[14..14 + 8].to_vec();
        apply_rewrite(&mut f, lay.l3 as usize, lay.l4 as usize, &v.nat.unwrap()).unwrap();
        // Version, class, label, length, next header, hop limit: untouched
        // (a later fragment has no L4 header for the ports to go to).
        assert_eq!(f[14..14 + 8], fixed, "fragment {i}'s fixed header");
        assert_eq!(f[14 + 24..14 + 40], backend, "fragment {i}'s destination");
        assert_eq!(
            f[54..62][..2],
            [p.proto, 0],
            "fragment {i}'s Fragment header"
        );
        l4.extend_from_slice(&f[62..]);
    }
    let want = build(backend, 8080);
    assert!(
        l4 == want[54..],
        "the datagram sent to the backend directly"
    );
}
