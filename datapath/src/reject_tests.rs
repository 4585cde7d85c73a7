//! The `reject` answers, read back with etherparse: addresses, ports,
//! RFC 9293 sequence numbers, ICMP types and codes, quotes and checksums.

use super::*;
use etherparse::{
    icmpv4::DestUnreachableHeader, icmpv6::DestUnreachableCode, Icmpv4Type, Icmpv6Type, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice,
};

const A: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [10, 244, 1, 5];
const DST4: [u8; 4] = [10, 244, 2, 7];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn tcp4(syn: bool, ack: Option<u32>, data: usize) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(A, B)
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 80, 1000, 64000);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut f = Vec::new();
    b.write(&mut f, &vec![0x11; data]).unwrap();
    f
}

fn tcp6(syn: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(A, B)
        .ipv6(SRC6, DST6, 64)
        .tcp(40000, 443, 7, 64000);
    if syn {
        b = b.syn();
    }
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    f
}

fn udp4(data: usize, dst: [u8; 4]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(A, B)
        .ipv4(SRC4, dst, 64)
        .udp(5000, 53);
    let mut f = Vec::new();
    b.write(&mut f, &vec![0x22; data]).unwrap();
    f
}

fn ping4() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(A, B)
        .ipv4(SRC4, DST4, 64)
        .icmpv4_echo_request(9, 1);
    let mut f = Vec::new();
    b.write(&mut f, &[0x33; 56]).unwrap();
    f
}

fn udp6(data: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(A, B)
        .ipv6(SRC6, DST6, 64)
        .udp(5000, 53);
    let mut f = Vec::new();
    b.write(&mut f, &vec![0x44; data]).unwrap();
    f
}

fn answer(frame: &[u8], how: RejectReply) -> Result<Vec<u8>, RejectError> {
    let mut out = [0u8; 2048];
    build(frame, 14, how, &mut out).map(|n| out[..n].to_vec())
}

#[test]
fn rst_for_a_syn_acks_the_syn() {
    let r = answer(&tcp4(true, None, 0), RejectReply::TcpRst).unwrap();
    assert_eq!((&r[0..6], &r[6..12]), (&A[..], &B[..]));
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!((h.source, h.destination), (DST4, SRC4));
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not tcp")
    };
    assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
    // RFC 9293 §3.10.7.1: no ACK in the segment, so seq 0 and ack =
    // SEG.SEQ + SEG.LEN, the SYN counting one.
    assert!(t.rst() && t.ack() && !t.syn());
    assert_eq!(t.sequence_number(), 0);
    assert_eq!(t.acknowledgment_number(), 1001);
    let c = t
        .to_header()
        .calc_checksum_ipv4_raw(h.source, h.destination, t.payload())
        .unwrap();
    assert_eq!(t.checksum(), c);
}

#[test]
fn rst_for_a_segment_with_ack_takes_its_seq_from_the_ack() {
    let r = answer(&tcp4(false, Some(777_777), 100), RejectReply::TcpRst).unwrap();
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not tcp")
    };
    assert!(t.rst() && !t.ack());
    assert_eq!(t.sequence_number(), 777_777);
    assert_eq!(t.acknowledgment_number(), 0);
}

#[test]
fn rst_over_ipv6_has_a_correct_checksum() {
    let r = answer(&tcp6(true), RejectReply::TcpRst).unwrap();
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not ipv6")
    };
    let h = ip.header().to_header();
    assert_eq!((h.source, h.destination), (DST6, SRC6));
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not tcp")
    };
    assert_eq!(t.acknowledgment_number(), 8);
    let c = t
        .to_header()
        .calc_checksum_ipv6_raw(h.source, h.destination, t.payload())
        .unwrap();
    assert_eq!(t.checksum(), c);
}

#[test]
fn no_rst_for_a_rst_or_a_non_tcp_packet() {
    let mut rst = tcp4(false, Some(5), 0);
    // Set RST in the flags byte; the answer must be suppressed before the
    // checksum matters.
    rst[14 + 20 + 13] |= 0x04;
    assert_eq!(
        answer(&rst, RejectReply::TcpRst),
        Err(RejectError::Suppressed)
    );
    assert_eq!(
        answer(&udp4(10, DST4), RejectReply::TcpRst),
        Err(RejectError::NotTcp)
    );
}

#[test]
fn prohibited_quotes_at_most_576_bytes() {
    let orig = udp4(1400, DST4);
    let r = answer(&orig, RejectReply::Prohibited).unwrap();
    assert_eq!(r.len(), 14 + 576);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!((h.source, h.destination), (DST4, SRC4));
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not icmpv4")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FilterProhibited)
    );
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
    assert_eq!(icmp.payload(), &orig[14..14 + 548]);
}

#[test]
fn a_ping_gets_prohibited_and_a_small_packet_is_quoted_whole() {
    let orig = ping4();
    let r = answer(&orig, RejectReply::Prohibited).unwrap();
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not icmpv4")
    };
    assert_eq!(icmp.payload(), &orig[14..]);
    let r = answer(&udp4(10, DST4), RejectReply::PortUnreachable).unwrap();
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not icmpv4")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port)
    );
}

#[test]
fn icmpv6_prohibited_stays_within_1280_bytes() {
    let orig = udp6(1400);
    let r = answer(&orig, RejectReply::Prohibited).unwrap();
    assert_eq!(r.len(), 14 + 1280);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not ipv6")
    };
    let h = ip.header().to_header();
    assert_eq!((h.source, h.destination), (DST6, SRC6));
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not icmpv6")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Prohibited)
    );
    let c = icmp
        .icmp_type()
        .calc_checksum(h.source, h.destination, icmp.payload())
        .unwrap();
    assert_eq!(icmp.checksum(), c);
    assert_eq!(icmp.payload(), &orig[14..14 + 1232]);
}

#[test]
fn no_answer_to_errors_fragments_or_group_destinations() {
    // An ICMP error (destination unreachable) is never answered.
    let mut err = ping4();
    err[14 + 20] = 3;
    assert_eq!(
        answer(&err, RejectReply::Prohibited),
        Err(RejectError::Suppressed)
    );
    // A non-first fragment.
    let mut frag = udp4(10, DST4);
    frag[14 + 7] = 0x10;
    let c = wire::checksum::checksum(&{
        let mut h = frag[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        answer(&frag, RejectReply::Prohibited),
        Err(RejectError::Suppressed)
    );
    // Multicast and broadcast destinations, at L2 and L3.
    assert_eq!(
        answer(&udp4(10, [239, 1, 1, 1]), RejectReply::Prohibited),
        Err(RejectError::Suppressed)
    );
    let mut bcast = udp4(10, DST4);
    bcast[0..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(
        answer(&bcast, RejectReply::Prohibited),
        Err(RejectError::Suppressed)
    );
    // An ICMPv6 error.
    let mut e6 = udp6(10);
    e6[14 + 6] = 58;
    e6[14 + 40] = 1;
    assert_eq!(
        answer(&e6, RejectReply::Prohibited),
        Err(RejectError::Suppressed)
    );
}

#[test]
fn vlan_tags_are_kept() {
    let b = PacketBuilder::ethernet2(A, B)
        .single_vlan(10.try_into().unwrap())
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 80, 1, 100)
        .syn();
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    let mut out = [0u8; 256];
    let n = build(&f, 18, RejectReply::TcpRst, &mut out).unwrap();
    assert_eq!(&out[12..18], &f[12..18]);
    let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
    assert!(matches!(p.transport, Some(TransportSlice::Tcp(t)) if t.rst()));
}

#[test]
fn garbage_never_panics() {
    let mut out = [0u8; 64];
    for len in 0..80 {
        let f: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
        for l3 in [0, 14, 18, 100] {
            for how in [
                RejectReply::TcpRst,
                RejectReply::Prohibited,
                RejectReply::PortUnreachable,
            ] {
                let _ = build(&f, l3, how, &mut out);
            }
        }
    }
    assert_eq!(
        answer(&udp4(1400, DST4)[..], RejectReply::Prohibited).map(|r| r.len()),
        Ok(590)
    );
    let mut small = [0u8; 40];
    assert_eq!(
        build(&udp4(100, DST4), 14, RejectReply::Prohibited, &mut small),
        Err(RejectError::BufferTooSmall)
    );
}
