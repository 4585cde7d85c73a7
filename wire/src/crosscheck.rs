//! Cross-checks of the whole crate against etherparse, an independent parser.
//!
//! Packets are built with etherparse's `PacketBuilder` (which computes every
//! length and checksum itself), then parsed both with these views and with
//! etherparse's `PacketHeaders`; every field must agree and every checksum
//! etherparse wrote must verify here. The fixtures in `fixtures.rs` go the
//! other way: etherparse parses them and recomputes their checksums, which
//! must match the stored ones. Two implementations written apart agreeing on
//! random packets is the best evidence either is right.

use crate::*;
use etherparse::{
    ArpHardwareId, ArpOperation, EtherType, IpAuthHeader, IpFragOffset, IpHeaders, IpNumber,
    Ipv6Extensions, Ipv6FlowLabel, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader,
    Ipv6RoutingExtensions, LinkExtHeader, NetHeaders, PacketBuilder, PacketHeaders, TcpHeader,
    TransportHeader, VlanId,
};
use proptest::prelude::*;

/// Walks our Ethernet and VLAN views: the VIDs crossed, the EtherType after
/// them and the offset of the L3 header.
fn parse_l2(frame: &[u8]) -> (Vec<u16>, u16, usize) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let mut et = eth.ethertype();
    let mut offset = EthernetFrame::<&[u8]>::HEADER_LEN;
    let mut vids = Vec::new();
    while et == ethertype::VLAN || et == ethertype::QINQ {
        let tag = VlanHeader::new_checked(&frame[offset..]).unwrap();
        vids.push(tag.vid());
        et = tag.inner_ethertype();
        offset += VlanHeader::<&[u8]>::HEADER_LEN;
    }
    (vids, et, offset)
}

/// The VIDs etherparse found.
fn their_vids(h: &PacketHeaders) -> Vec<u16> {
    h.link_exts
        .iter()
        .filter_map(|x| match x {
            LinkExtHeader::Vlan(v) => Some(v.vlan_id.value()),
            _ => None,
        })
        .collect()
}

/// Raw TCP options: whole 4-byte words, up to the 40 bytes allowed.
fn tcp_options() -> impl Strategy<Value = Vec<u8>> {
    (0usize..=10).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4))
}

/// The body of a raw IPv6 extension header: 6 + 8k bytes.
fn ext_body() -> impl Strategy<Value = Vec<u8>> {
    (0usize..3).prop_flat_map(|k| prop::collection::vec(any::<u8>(), 6 + 8 * k))
}

fn raw_ext(body: &[u8]) -> Ipv6RawExtHeader {
    // The next header is filled in by the builder.
    Ipv6RawExtHeader::new_raw(IpNumber(0), body).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tcp_over_ipv4_with_vlans(
        smac in any::<[u8; 6]>(), dmac in any::<[u8; 6]>(),
        vids in prop::collection::vec(0u16..4096, 0..3),
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ttl in any::<u8>(),
        sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
        fl in 0u16..0x200, win in any::<u16>(), urg in any::<u16>(),
        opts in tcp_options(), payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut th = TcpHeader::new(sp, dp, seq, win);
        th.acknowledgment_number = ack;
        th.urgent_pointer = urg;
        th.fin = fl & tcp::flags::FIN != 0;
        th.syn = fl & tcp::flags::SYN != 0;
        th.rst = fl & tcp::flags::RST != 0;
        th.psh = fl & tcp::flags::PSH != 0;
        th.ack = fl & tcp::flags::ACK != 0;
        th.urg = fl & tcp::flags::URG != 0;
        th.ece = fl & tcp::flags::ECE != 0;
        th.cwr = fl & tcp::flags::CWR != 0;
        th.ns = fl & tcp::flags::NS != 0;
        th.set_options_raw(&opts).unwrap();
        let eth = PacketBuilder::ethernet2(smac, dmac);
        let vid = |i: usize| VlanId::try_new(vids[i]).unwrap();
        let ip = match vids.len() {
            0 => eth.ipv4(src, dst, ttl),
            1 => eth.single_vlan(vid(0)).ipv4(src, dst, ttl),
            _ => eth.double_vlan(vid(0), vid(1)).ipv4(src, dst, ttl),
        };
        let mut frame = Vec::new();
        ip.tcp_header(th).write(&mut frame, &payload).unwrap();

        let theirs = PacketHeaders::from_ethernet_slice(&frame).unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!((eth.src(), eth.dst()), (smac, dmac));
        let (our_vids, et, l3) = parse_l2(&frame);
        prop_assert_eq!(&our_vids, &vids);
        prop_assert_eq!(their_vids(&theirs), vids);
        prop_assert_eq!(et, ethertype::IPV4);

        let ip = Ipv4Packet::new_checked(&frame[l3..]).unwrap();
        let Some(NetHeaders::Ipv4(h, _)) = &theirs.net else { panic!("not ipv4") };
        prop_assert_eq!((ip.src_addr(), ip.dst_addr()), (h.source, h.destination));
        prop_assert_eq!((ip.ttl(), ip.protocol()), (h.time_to_live, h.protocol.0));
        prop_assert_eq!((ip.total_len(), ip.ident()), (h.total_len, h.identification));
        prop_assert_eq!((ip.dont_frag(), ip.more_frags()), (h.dont_fragment, h.more_fragments));
        prop_assert_eq!(ip.frag_offset(), h.fragment_offset.value());
        prop_assert_eq!((ip.dscp(), ip.ecn()), (h.dscp.value(), h.ecn.value()));
        prop_assert_eq!(ip.checksum(), h.header_checksum);
        prop_assert!(ip.verify_checksum());

        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        let Some(TransportHeader::Tcp(th)) = &theirs.transport else { panic!("not tcp") };
        prop_assert_eq!((t.src_port(), t.dst_port()), (th.source_port, th.destination_port));
        prop_assert_eq!((t.seq_number(), t.ack_number()), (th.sequence_number, th.acknowledgment_number));
        prop_assert_eq!(t.flags(), fl);
        prop_assert_eq!((t.window_len(), t.urgent_at()), (th.window_size, th.urgent_pointer));
        prop_assert_eq!(t.header_len(), th.header_len());
        prop_assert_eq!(t.options(), th.options.as_slice());
        prop_assert_eq!(t.checksum(), th.checksum);
        prop_assert_eq!(t.payload(), &payload[..]);
        prop_assert!(t.verify_checksum_v4(src, dst));
    }

    #[test]
    fn udp_over_ipv6_with_extension_headers(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), hop in any::<u8>(),
        tc in any::<u8>(), flow in 0u32..0x10_0000,
        hbh in prop::option::of(ext_body()), dest in prop::option::of(ext_body()),
        routing in prop::option::of(ext_body()),
        frag in prop::option::of((prop_oneof![Just(0u16), 1u16..0x2000], any::<bool>(), any::<u32>())),
        auth in prop::option::of((any::<u32>(), any::<u32>(), 0usize..3)),
        sp in any::<u16>(), dp in any::<u16>(), payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let icv = vec![0xab; auth.map_or(0, |a| a.2 * 4)];
        let exts = Ipv6Extensions {
            hop_by_hop_options: hbh.as_deref().map(raw_ext),
            destination_options: dest.as_deref().map(raw_ext),
            routing: routing.as_deref().map(|b| Ipv6RoutingExtensions {
                routing: raw_ext(b),
                final_destination_options: None,
            }),
            fragment: frag.map(|(off, more, id)| {
                Ipv6FragmentHeader::new(IpNumber(0), IpFragOffset::try_new(off).unwrap(), more, id)
            }),
            auth: auth.map(|(spi, sn, _)| IpAuthHeader::new(IpNumber(0), spi, sn, &icv).unwrap()),
        };
        let header = Ipv6Header {
            traffic_class: tc,
            flow_label: Ipv6FlowLabel::try_new(flow).unwrap(),
            payload_length: 0,
            next_header: IpNumber(0),
            hop_limit: hop,
            source: src,
            destination: dst,
        };
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ip(IpHeaders::Ipv6(header, exts.clone()))
            .udp(sp, dp)
            .write(&mut frame, &payload)
            .unwrap();

        // etherparse writes the headers in this order (RFC 8200 §4.1).
        let mut chain: Vec<(u8, usize)> = Vec::new();
        if let Some(h) = &exts.hop_by_hop_options { chain.push((ipproto::HOPOPTS, h.header_len())); }
        if let Some(h) = &exts.destination_options { chain.push((ipproto::DSTOPTS, h.header_len())); }
        if let Some(r) = &exts.routing { chain.push((ipproto::ROUTING, r.routing.header_len())); }
        if exts.fragment.is_some() { chain.push((ipproto::FRAGMENT, 8)); }
        if let Some(a) = &exts.auth { chain.push((ipproto::AH, a.header_len())); }
        chain.push((ipproto::UDP, 0));
        let mut expect = (ipproto::UDP, 40usize);
        let mut offset = 40;
        for (i, &(proto, len)) in chain.iter().enumerate() {
            offset += len;
            if proto == ipproto::FRAGMENT && frag.is_some_and(|f| f.0 != 0) {
                expect = (chain[i + 1].0, offset);
                break;
            }
            expect = (chain.get(i + 1).map_or(proto, |c| c.0), offset);
        }

        let (_, et, l3) = parse_l2(&frame);
        prop_assert_eq!(et, ethertype::IPV6);
        let ip = Ipv6Packet::new_checked(&frame[l3..]).unwrap();
        let theirs = PacketHeaders::from_ethernet_slice(&frame).unwrap();
        let Some(NetHeaders::Ipv6(h, their_exts)) = &theirs.net else { panic!("not ipv6") };
        prop_assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (h.source, h.destination, h.hop_limit));
        prop_assert_eq!((ip.traffic_class(), ip.flow_label()), (tc, flow));
        prop_assert_eq!((ip.payload_len(), ip.next_header()), (h.payload_length, h.next_header.0));

        let up = ip.upper_layer().unwrap();
        prop_assert_eq!((up.protocol, up.offset), expect);
        let their_frag = their_exts.fragment.as_ref().map(|f| Ipv6Frag {
            offset: f.fragment_offset.value(),
            more: f.more_fragments,
            ident: f.identification,
        });
        prop_assert_eq!(up.fragment, their_frag);

        if up.protocol == ipproto::UDP {
            let u = UdpPacket::new_checked(&ip.into_inner()[up.offset..]).unwrap();
            prop_assert_eq!((u.src_port(), u.dst_port()), (sp, dp));
            prop_assert_eq!(u.payload(), &payload[..]);
            prop_assert!(u.verify_checksum_v6(&src, &dst));
        }
    }

    #[test]
    fn udp_over_ipv4_and_icmp_echo(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
        id in any::<u16>(), seq in any::<u16>(), reply in any::<bool>(),
        src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut frame = Vec::new();
        PacketBuilder::ipv4(src, dst, 64).udp(sp, dp).write(&mut frame, &payload).unwrap();
        let ip = Ipv4Packet::new_checked(&frame[..]).unwrap();
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        prop_assert_eq!((u.src_port(), u.dst_port(), usize::from(u.len())), (sp, dp, payload.len() + 8));
        prop_assert!(u.verify_checksum_v4(src, dst));

        let b = PacketBuilder::ipv4(src, dst, 64);
        let b = if reply { b.icmpv4_echo_reply(id, seq) } else { b.icmpv4_echo_request(id, seq) };
        let mut frame = Vec::new();
        b.write(&mut frame, &payload).unwrap();
        let ip = Ipv4Packet::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(ip.protocol(), ipproto::ICMP);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        let ty = if reply { icmpv4::msg_type::ECHO_REPLY } else { icmpv4::msg_type::ECHO_REQUEST };
        prop_assert_eq!((icmp.msg_type(), icmp.code(), icmp.echo_ident(), icmp.echo_seq()), (ty, 0, id, seq));
        prop_assert_eq!(icmp.data(), &payload[..]);
        prop_assert!(icmp.verify_checksum());

        let b = PacketBuilder::ipv6(src6, dst6, 64);
        let b = if reply { b.icmpv6_echo_reply(id, seq) } else { b.icmpv6_echo_request(id, seq) };
        let mut frame = Vec::new();
        b.write(&mut frame, &payload).unwrap();
        let ip = Ipv6Packet::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(ip.upper_layer().unwrap().protocol, ipproto::ICMPV6);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let ty = if reply { icmpv6::msg_type::ECHO_REPLY } else { icmpv6::msg_type::ECHO_REQUEST };
        prop_assert_eq!((icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq()), (ty, id, seq));
        prop_assert!(icmp.verify_checksum(&src6, &dst6));
    }

    #[test]
    fn arp(op in 1u16..3, sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(),
           tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
        let packet = etherparse::ArpPacket::new(
            ArpHardwareId::ETHERNET, EtherType::IPV4, ArpOperation(op), &sha, &spa, &tha, &tpa,
        ).unwrap();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(sha, [0xff; 6]).arp(packet).write(&mut frame).unwrap();
        let (_, et, l3) = parse_l2(&frame);
        prop_assert_eq!(et, ethertype::ARP);
        let a = ArpPacket::new_checked(&frame[l3..]).unwrap();
        prop_assert_eq!((a.oper(), a.sha(), a.spa(), a.tha(), a.tpa()), (op, sha, spa, tha, tpa));
    }
}

#[test]
fn etherparse_accepts_the_fixtures() {
    use crate::fixtures::*;

    // IPv4 + TCP: etherparse recomputes both checksums.
    let h = PacketHeaders::from_ethernet_slice(&TCP_SYN).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!()
    };
    let Some(TransportHeader::Tcp(tcp)) = &h.transport else {
        panic!()
    };
    assert_eq!(ip.calc_header_checksum(), ip.header_checksum);
    assert_eq!(
        tcp.calc_checksum_ipv4(ip, h.payload.slice()).unwrap(),
        tcp.checksum
    );
    assert_eq!(tcp.header_len(), 40);

    let h = PacketHeaders::from_ethernet_slice(&UDP_DNS).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!()
    };
    let Some(TransportHeader::Udp(udp)) = &h.transport else {
        panic!()
    };
    assert_eq!(ip.calc_header_checksum(), ip.header_checksum);
    assert_eq!(
        udp.calc_checksum_ipv4(ip, h.payload.slice()).unwrap(),
        udp.checksum
    );

    let h = PacketHeaders::from_ethernet_slice(&ICMP_ECHO).unwrap();
    let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type.calc_checksum(h.payload.slice()),
        icmp.checksum
    );

    let h = PacketHeaders::from_ethernet_slice(&ND_NS).unwrap();
    let Some(NetHeaders::Ipv6(ip, _)) = &h.net else {
        panic!()
    };
    let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
        panic!()
    };
    assert_eq!(icmp.icmp_type.type_u8(), 135);
    let sum = icmp
        .icmp_type
        .calc_checksum(ip.source, ip.destination, h.payload.slice());
    assert_eq!(sum.unwrap(), icmp.checksum);

    let h = PacketHeaders::from_ethernet_slice(&IPV6_HBH_FRAG).unwrap();
    let Some(NetHeaders::Ipv6(ip, exts)) = &h.net else {
        panic!()
    };
    assert_eq!(ip.flow_label.value(), 0x12345);
    assert!(exts.hop_by_hop_options.is_some());
    let frag = exts.fragment.as_ref().unwrap();
    assert!(frag.more_fragments);
    assert_eq!(frag.identification, 0xdead_beef);
}
