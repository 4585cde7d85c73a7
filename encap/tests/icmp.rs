//! The ICMP "fragmentation needed" and "packet too big" builders, checked
//! with etherparse: addresses, types, MTU fields, quote and checksums.

use encap::mtu::{frag_needed_v4, packet_too_big_v6, pod_mtu, IcmpError, Underlay};
use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};
use std::net::{Ipv4Addr, Ipv6Addr};

const A: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];

/// An Ethernet + IPv4 + UDP frame with `payload` bytes of data; DF as given.
fn udp4(payload: usize, df: bool, dst: [u8; 4]) -> Vec<u8> {
    let data = vec![0x5a; payload];
    let b = PacketBuilder::ethernet2(A, B)
        .ipv4([10, 0, 0, 1], dst, 64)
        .udp(1000, 2000);
    let mut f = Vec::new();
    b.write(&mut f, &data).unwrap();
    f[20] = if df { f[20] | 0x40 } else { f[20] & !0x40 };
    f[24] = 0;
    f[25] = 0;
    let c = wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

fn udp6(payload: usize, dst: [u8; 16]) -> Vec<u8> {
    let data = vec![0xa5; payload];
    let src = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets();
    let b = PacketBuilder::ethernet2(A, B)
        .ipv6(src, dst, 64)
        .udp(1000, 2000);
    let mut f = Vec::new();
    b.write(&mut f, &data).unwrap();
    f
}

#[test]
fn frag_needed_for_a_big_df_packet() {
    let inner = udp4(1472, true, [10, 0, 0, 2]);
    let mtu = pod_mtu(1500, Underlay::Ipv4, 0);
    let mut out = [0u8; 1600];
    let n = frag_needed_v4(&inner, mtu, None, &mut out).unwrap();
    let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
    assert_eq!(&out[0..6], &A);
    assert_eq!(&out[6..12], &B);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(h.source, [10, 0, 0, 2]);
    assert_eq!(h.destination, [10, 0, 0, 1]);
    // RFC 1812 §4.3.2.3: no more than 576 bytes of IP datagram.
    assert_eq!(usize::from(h.total_len), 576);
    assert_eq!(n, 14 + 576);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not icmpv4")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1450
        })
    );
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
    // The quote is the start of the original IP packet.
    assert_eq!(icmp.payload(), &inner[14..14 + 548]);
}

#[test]
fn frag_needed_with_gateway_and_small_packet() {
    let inner = udp4(10, true, [10, 0, 0, 2]);
    let gw = Ipv4Addr::new(10, 0, 0, 254);
    let mut out = [0u8; 200];
    let n = frag_needed_v4(&inner, 1400, Some(gw), &mut out).unwrap();
    let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    assert_eq!(ip.header().source(), gw.octets());
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not icmpv4")
    };
    // The whole original packet fits, so all of it is quoted.
    assert_eq!(icmp.payload(), &inner[14..]);
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
}

#[test]
fn frag_needed_refusals() {
    let mut out = [0u8; 1600];
    let no_df = udp4(1472, false, [10, 0, 0, 2]);
    assert_eq!(
        frag_needed_v4(&no_df, 1450, None, &mut out),
        Err(IcmpError::NotDf)
    );
    let mcast = udp4(1472, true, [239, 1, 1, 1]);
    assert_eq!(
        frag_needed_v4(&mcast, 1450, None, &mut out),
        Err(IcmpError::Suppressed)
    );
    let big = udp4(1472, true, [10, 0, 0, 2]);
    assert_eq!(
        frag_needed_v4(&big, 1450, None, &mut out[..100]),
        Err(IcmpError::BufferTooSmall)
    );
    assert_eq!(
        frag_needed_v4(&udp6(10, [0; 16]), 1450, None, &mut out),
        Err(IcmpError::NotIpv4)
    );
    assert_eq!(
        frag_needed_v4(&big[..30], 1450, None, &mut out),
        Err(IcmpError::Malformed)
    );

    // No ICMP error about an ICMP error.
    let mut first = [0u8; 600];
    let n = frag_needed_v4(&big, 1450, None, &mut first).unwrap();
    let mut err = first[..n].to_vec();
    err[20] |= 0x40; // DF, so only the ICMP rule can refuse it.
    err[24] = 0;
    err[25] = 0;
    let c = wire::checksum::checksum(&err[14..34]);
    err[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        frag_needed_v4(&err, 1450, None, &mut out),
        Err(IcmpError::Suppressed)
    );
}

#[test]
fn packet_too_big_quotes_up_to_1280() {
    let dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    let inner = udp6(1452, dst.octets());
    let mtu = u32::from(pod_mtu(1500, Underlay::Ipv6, 0));
    let mut out = [0u8; 1600];
    let n = packet_too_big_v6(&inner, mtu, None, &mut out).unwrap();
    assert_eq!(n, 14 + 1280);
    let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not ipv6")
    };
    let h = ip.header();
    assert_eq!(h.source(), dst.octets());
    assert_eq!(h.destination(), inner[22..38]);
    assert_eq!(h.payload_length(), 1240);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not icmpv6")
    };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1430 });
    assert!(icmp.is_checksum_valid(h.source(), h.destination()));
    assert_eq!(icmp.payload(), &inner[14..14 + 1232]);
}

#[test]
fn packet_too_big_to_multicast_needs_a_gateway() {
    let group = Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, 1);
    let inner = udp6(1452, group.octets());
    let mut out = [0u8; 1400];
    assert_eq!(
        packet_too_big_v6(&inner, 1430, None, &mut out),
        Err(IcmpError::NoSource)
    );
    let gw = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
    let n = packet_too_big_v6(&inner, 1430, Some(gw), &mut out).unwrap();
    {
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not icmpv6")
        };
        assert!(icmp.is_checksum_valid(gw.octets(), inner[22..38].try_into().unwrap()));
    }

    // No ICMPv6 error about an ICMPv6 error, and none for an IPv4 frame.
    let mut err = [0u8; 1400];
    let n = packet_too_big_v6(&inner, 1430, Some(gw), &mut err).unwrap();
    assert_eq!(
        packet_too_big_v6(&err[..n], 1430, None, &mut out),
        Err(IcmpError::Suppressed)
    );
    assert_eq!(
        packet_too_big_v6(&udp4(10, true, [1, 1, 1, 1]), 1430, None, &mut out),
        Err(IcmpError::NotIpv6)
    );
    assert_eq!(
        packet_too_big_v6(&inner, 1430, Some(gw), &mut out[..100]),
        Err(IcmpError::BufferTooSmall)
    );
}
