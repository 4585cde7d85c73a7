//! Tests of [`CtPacket::parse`] on real frames built by etherparse and run
//! through `extract` first, as the datapath does.

use super::{ct_state, proto, tcp_flags, ConnTrack, CtConfig, CtPacket, CtParseError, NatRange};
use super::{InnerTuple, NatSpec};
use crate::extract::{extract, Layout};
use crate::key::FlowKey;
use etherparse::icmpv6::DestUnreachableCode;
use etherparse::{
    Icmpv6Type, IpFragOffset, IpHeaders, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
    Ipv6RawExtHeader, PacketBuilder, TcpOptionElement,
};
use std::net::IpAddr;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const A4: [u8; 4] = [10, 244, 0, 1];
const B4: [u8; 4] = [10, 96, 0, 10];
const R4: [u8; 4] = [192, 168, 77, 1];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn ip(b: &[u8]) -> IpAddr {
    match b.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(b).unwrap()),
        _ => IpAddr::from(<[u8; 16]>::try_from(b).unwrap()),
    }
}

fn layout(frame: &[u8]) -> Layout {
    extract(frame, 1, &mut FlowKey::default()).expect("extract accepts the frame")
}

fn parse(frame: &[u8]) -> Result<CtPacket, CtParseError> {
    CtPacket::parse(frame, &layout(frame))
}

/// Pads a frame to Ethernet's 60-byte minimum, as a NIC does.
fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn tcp_syn_v4(wscale: Option<u8>) -> Vec<u8> {
    let mut opts = vec![
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::Noop,
    ];
    if let Some(w) = wscale {
        opts.push(TcpOptionElement::WindowScale(w));
    }
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A4, B4, 64)
        .tcp(40000, 80, 1000, 64240)
        .syn()
        .options(&opts)
        .unwrap();
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    f
}

fn udp_v4(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A4, B4, 64)
        .udp(5353, 53)
        .write(&mut f, payload)
        .unwrap();
    f
}

/// The IP packet (no Ethernet) of a UDP datagram from `src` to `dst`, as an
/// ICMP error sent back to `src` quotes it.
fn quoted_udp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut q = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(40000, 53)
        .write(&mut q, &[0; 32])
        .unwrap();
    q
}

fn icmp4_error(src: [u8; 4], dst: [u8; 4], quote: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4(src, dst, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut f, quote)
        .unwrap();
    f
}

fn ipv6_hbh_tcp(flags_syn: bool) -> Vec<u8> {
    let hbh = Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap();
    let hdr = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: 0,
        next_header: IpNumber::IPV6_HEADER_HOP_BY_HOP,
        hop_limit: 64,
        source: A6,
        destination: B6,
    };
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(hbh),
        ..Default::default()
    };
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(IpHeaders::Ipv6(hdr, exts))
        .tcp(40001, 443, 7, 1000);
    let b = if flags_syn { b.syn() } else { b.ack(9) };
    let mut f = Vec::new();
    b.options(&[TcpOptionElement::WindowScale(9)])
        .unwrap()
        .write(&mut f, &[0xab; 100])
        .unwrap();
    f
}

#[test]
fn tcp_syn_with_wscale_and_padding() {
    let f = pad(tcp_syn_v4(Some(7)));
    let p = parse(&f).unwrap();
    assert_eq!((p.src, p.dst, p.proto), (ip(&A4), ip(&B4), proto::TCP));
    assert_eq!((p.sport, p.dport), (40000, 80));
    assert_eq!(p.tcp.flags, tcp_flags::SYN);
    assert_eq!((p.tcp.seq, p.tcp.ack, p.tcp.window), (1000, 0, 64240));
    assert_eq!(p.tcp.wscale, Some(7));
    assert_eq!(p.tcp.payload_len, 0);
    // A bare ACK is 54 bytes, padded to 60 on the wire: the payload length
    // comes from the IP header, not the frame.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A4, B4, 64)
        .tcp(40000, 80, 1001, 502)
        .ack(5)
        .write(&mut f, &[])
        .unwrap();
    let f = pad(f);
    assert_eq!(f.len(), 60);
    let p = parse(&f).unwrap();
    assert_eq!(
        (p.tcp.flags, p.tcp.ack, p.tcp.payload_len),
        (tcp_flags::ACK, 5, 0)
    );
    assert_eq!(parse(&tcp_syn_v4(None)).unwrap().tcp.wscale, None);
}

#[test]
fn tcp_options_cut_or_malformed_give_no_wscale() {
    let mut f = tcp_syn_v4(Some(7));
    // MSS(4) NOP(1) WS(3) END: make the MSS length run past the options.
    let opts = 14 + 20 + 20;
    f[opts + 1] = 40;
    assert_eq!(parse(&f).unwrap().tcp.wscale, None);
    f[opts + 1] = 0;
    assert_eq!(parse(&f).unwrap().tcp.wscale, None);
}

#[test]
fn ipv6_extension_header_and_payload_len() {
    let f = ipv6_hbh_tcp(false);
    let p = parse(&f).unwrap();
    assert_eq!((p.src, p.dst, p.proto), (ip(&A6), ip(&B6), proto::TCP));
    assert_eq!((p.sport, p.dport), (40001, 443));
    assert_eq!((p.tcp.seq, p.tcp.ack), (7, 9));
    assert_eq!(p.tcp.payload_len, 100);
    // Not a SYN: the option is ignored.
    assert_eq!(p.tcp.wscale, None);
    assert_eq!(parse(&ipv6_hbh_tcp(true)).unwrap().tcp.wscale, Some(9));
}

#[test]
fn udp_and_echo() {
    let p = parse(&pad(udp_v4(&[1, 2]))).unwrap();
    assert_eq!((p.proto, p.sport, p.dport), (proto::UDP, 5353, 53));
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A4, B4, 64)
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut f, &[0; 8])
        .unwrap();
    let p = parse(&f).unwrap();
    assert_eq!(p, CtPacket::icmp_echo(ip(&A4), ip(&B4), 0x1234, true));
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(B6, A6, 64)
        .icmpv6_echo_reply(0x4321, 1)
        .write(&mut f, &[])
        .unwrap();
    let p = parse(&f).unwrap();
    assert_eq!(p, CtPacket::icmp_echo(ip(&B6), ip(&A6), 0x4321, false));
}

#[test]
fn icmp_error_quote_may_be_cut_after_eight_l4_bytes() {
    let q = quoted_udp(A4, B4);
    let want = InnerTuple {
        src: ip(&A4),
        dst: ip(&B4),
        proto: proto::UDP,
        sport: 40000,
        dport: 53,
    };
    for cut in [q.len(), 20 + 8] {
        let p = parse(&icmp4_error(R4, A4, &q[..cut])).unwrap();
        assert_eq!((p.proto, p.icmp_type, p.icmp_code), (proto::ICMP, 3, 3));
        assert_eq!(p.inner, Some(want));
    }
    for cut in [0, 19, 20, 20 + 7] {
        let f = icmp4_error(R4, A4, &q[..cut]);
        assert!(matches!(parse(&f), Err(CtParseError::BadQuote { .. })));
    }
    // An error that does not go back to the quoted packet's sender.
    let f = icmp4_error(R4, B4, &q);
    assert!(matches!(parse(&f), Err(CtParseError::BadQuote { .. })));
}

#[test]
fn icmp_error_quoting_echo_and_error() {
    let mut q = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .icmpv4_echo_request(77, 3)
        .write(&mut q, &[])
        .unwrap();
    let p = parse(&icmp4_error(R4, A4, &q)).unwrap();
    let inner = p.inner.unwrap();
    assert_eq!(
        (inner.proto, inner.sport, inner.dport),
        (proto::ICMP, 77, 77)
    );
    // An error about an error is never tracked (RFC 1122 §3.2.2).
    let nested = icmp4_error(R4, A4, &quoted_udp(B4, A4));
    let f = icmp4_error(B4, R4, &nested[14..]);
    assert!(matches!(parse(&f), Err(CtParseError::BadQuote { .. })));
}

#[test]
fn icmpv6_error_quoting_extension_header_cut_short() {
    let inner = ipv6_hbh_tcp(false);
    let q = &inner[14..];
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv6(B6, A6, 64)
        .icmpv6(Icmpv6Type::DestinationUnreachable(
            DestUnreachableCode::Port,
        ))
        .write(&mut f, &q[..40 + 8 + 8])
        .unwrap();
    let p = parse(&f).unwrap();
    assert_eq!(p.icmp_type, 1);
    let i = p.inner.unwrap();
    assert_eq!((i.src, i.dst, i.proto), (ip(&A6), ip(&B6), proto::TCP));
    assert_eq!((i.sport, i.dport), (40001, 443));
    // Cut inside the extension header.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv6(B6, A6, 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut f, &q[..44])
        .unwrap();
    assert!(matches!(parse(&f), Err(CtParseError::BadQuote { .. })));
}

#[test]
fn fragments_parse_with_their_place_in_the_datagram() {
    use super::Fragment;
    // IPv4: MF set, offset 0: a first fragment, ports read although the
    // UDP length (24) runs past its bytes.
    let mut f = udp_v4(&[0; 16]);
    f[14 + 6] |= 0x20;
    f[14 + 4..14 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
    let p = parse(&f).expect("first fragment");
    assert_eq!((p.sport, p.dport), (5353, 53));
    assert_eq!(p.frag, Fragment::First { id: 0x4242 });
    // Offset 8 bytes, MF clear: a later fragment, no L4 header read.
    f[14 + 6..14 + 8].copy_from_slice(&1u16.to_be_bytes());
    let p = parse(&f).expect("later fragment");
    assert_eq!((p.sport, p.dport, p.proto), (0, 0, proto::UDP));
    assert_eq!(p.frag, Fragment::Later { id: 0x4242 });

    let v6 = |offset: u16, more: bool| {
        let frag = Ipv6FragmentHeader::new(
            IpNumber::UDP,
            IpFragOffset::try_new(offset).unwrap(),
            more,
            9,
        );
        let hdr = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: 0,
            next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
            hop_limit: 64,
            source: A6,
            destination: B6,
        };
        let exts = Ipv6Extensions {
            fragment: Some(frag),
            ..Default::default()
        };
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv6(hdr, exts))
            .udp(1, 2)
            .write(&mut f, &[0; 8])
            .unwrap();
        f
    };
    let p = parse(&v6(0, true)).expect("first v6 fragment");
    assert_eq!(
        (p.sport, p.dport, p.frag),
        (1, 2, Fragment::First { id: 9 })
    );
    // RFC 6946: an atomic fragment is a whole packet.
    let p = parse(&v6(0, false)).expect("atomic fragment");
    assert_eq!((p.sport, p.dport, p.frag), (1, 2, Fragment::Whole));
    let p = parse(&v6(1, false)).expect("later v6 fragment");
    assert_eq!(
        (p.sport, p.dport, p.frag),
        (0, 0, Fragment::Later { id: 9 })
    );
}

#[test]
fn other_protocols_by_address_and_non_ip() {
    let mut f = udp_v4(&[0; 16]);
    // GRE: extract keeps no L4 offset, conntrack keys on addresses alone.
    f[14 + 9] = 47;
    let p = parse(&f).unwrap();
    assert_eq!((p.proto, p.sport, p.dport), (47, 0, 0));
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        CtPacket::parse(
            &f,
            &Layout {
                l3: 14,
                l4: 0,
                proto: 0
            }
        ),
        Err(CtParseError::NotIp)
    );
}

#[test]
fn never_panics_on_cut_or_flipped_bytes() {
    let frames = [
        tcp_syn_v4(Some(3)),
        ipv6_hbh_tcp(true),
        icmp4_error(R4, A4, &quoted_udp(A4, B4)),
    ];
    for f in &frames {
        for cut in 0..=f.len() {
            for l3 in [0u16, 12, 14, 18, 200] {
                let lay = Layout {
                    l3,
                    l4: 0,
                    proto: 0,
                };
                let _ = CtPacket::parse(&f[..cut], &lay);
            }
        }
        for i in 0..f.len() * 8 {
            let mut g = f.clone();
            g[i / 8] ^= 1 << (i % 8);
            if let Ok(lay) = extract(&g, 1, &mut FlowKey::default()) {
                let _ = CtPacket::parse(&g, &lay);
            }
        }
    }
}

#[test]
fn parsed_packets_drive_conntrack_through_dnat() {
    let ct = ConnTrack::new(CtConfig::default());
    let svc = NatSpec::Dst(NatRange::addr_port(ip(&R4), 8080));
    let syn = parse(&tcp_syn_v4(Some(7))).unwrap();
    let v = ct.process(&syn, 0, 0, true, Some(&svc));
    assert!(v.has(ct_state::NEW) && v.has(ct_state::DNAT));
    // The backend's port unreachable for the translated packet comes back.
    let mut q = Vec::new();
    PacketBuilder::ipv4(A4, R4, 64)
        .tcp(40000, 8080, 1000, 64240)
        .syn()
        .write(&mut q, &[])
        .unwrap();
    let err = parse(&icmp4_error(R4, A4, &q)).unwrap();
    let v = ct.process(&err, 0, 1, false, Some(&NatSpec::Existing));
    assert!(v.has(ct_state::REL) && v.has(ct_state::RPL), "{v:?}");
    let inner = v.nat.unwrap().inner.unwrap();
    assert_eq!((inner.dst, inner.dport), (ip(&B4), 80));
}
