//! Fragments through `extract`: a first fragment carries its ports and is
//! accepted although its UDP length (or TCP options) run into the next
//! fragment; a later fragment carries no L4 fields; an unfragmented packet
//! is still held to its lengths. Whole datagrams are built with etherparse
//! and cut into fragments by hand, IPv4 and IPv6 (Fragment header).

use super::*;
use crate::field::Field;
use etherparse::{PacketBuilder, TcpOptionElement};

const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];
const A4: [u8; 4] = [10, 244, 1, 2];
const B4: [u8; 4] = [10, 244, 2, 3];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];

/// A UDP datagram 5353 -> 53 with `n` bytes of payload.
fn udp(v6: bool, n: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC1, MAC2);
    let b = if v6 {
        b.ipv6(A6, B6, 64)
    } else {
        b.ipv4(A4, B4, 64)
    };
    let mut f = Vec::new();
    b.udp(5353, 53).write(&mut f, &vec![0x5a; n]).unwrap();
    f
}

/// A TCP segment 40000 -> 5201 (PSH, ACK) with 20 bytes of options and
/// `n` bytes of payload.
fn tcp(v6: bool, n: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC1, MAC2);
    let b = if v6 {
        b.ipv6(A6, B6, 64)
    } else {
        b.ipv4(A4, B4, 64)
    };
    let opts = [
        TcpOptionElement::MaximumSegmentSize(1400),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 2),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
    ];
    let b = b
        .tcp(40000, 5201, 7, 1000)
        .psh()
        .ack(9)
        .options(&opts)
        .unwrap();
    let mut f = Vec::new();
    b.write(&mut f, &vec![0xa5; n]).unwrap();
    f
}

/// Fragment `frame` (unfragmented, no IPv4 options or IPv6 extension
/// headers) holding L4 bytes `from..to` of its datagram (`from` a multiple
/// of 8), with the MF flag when `more`.
fn fragment(frame: &[u8], from: usize, to: usize, more: bool) -> Vec<u8> {
    let v6 = frame[12..14] == [0x86, 0xdd];
    let l4 = if v6 { 14 + 40 } else { 14 + 20 };
    let chunk = &frame[l4 + from..(l4 + to).min(frame.len())];
    let word = (from as u16 / 8) << 3 | u16::from(more);
    let mut f = frame[..l4].to_vec();
    if v6 {
        // RFC 8200 §4.5: the Fragment header goes after the fixed header,
        // its next header is the original one, offset in 8-byte units.
        let next = f[14 + 6];
        f[14 + 6] = 44;
        f[14 + 4..14 + 6].copy_from_slice(&(8 + chunk.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 0]);
        f.extend_from_slice(&word.to_be_bytes());
        f.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    } else {
        let flags = (from as u16 / 8) | if more { 0x2000 } else { 0 };
        f[14 + 6..14 + 8].copy_from_slice(&flags.to_be_bytes());
        f[14 + 2..14 + 4].copy_from_slice(&(20 + chunk.len() as u16).to_be_bytes());
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = wire::checksum::checksum(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(chunk);
    f
}

fn key_of(frame: &[u8]) -> Result<(FlowKey, Layout), DropReason> {
    let mut k = FlowKey::default();
    extract(frame, 1, &mut k).map(|l| (k, l))
}

#[test]
fn a_first_udp_fragment_carries_its_ports() {
    for v6 in [false, true] {
        let whole = udp(v6, 1000);
        // The UDP length says 1008; the first fragment holds 512 bytes.
        let (k, l) = key_of(&fragment(&whole, 0, 512, true)).expect("first fragment");
        assert_eq!(
            (k.get(Field::TpSrc), k.get(Field::TpDst)),
            (5353, 53),
            "v6={v6}"
        );
        assert_eq!(k.get(Field::NwFrag), frag::ANY.into());
        assert_eq!(k.get(Field::NwProto), ipproto::UDP.into());
        assert_eq!(l.proto, ipproto::UDP);
        assert_eq!(l.l4 as usize, if v6 { 14 + 48 } else { 14 + 20 });

        let (k, l) = key_of(&fragment(&whole, 512, 1008, false)).expect("later fragment");
        assert_eq!((k.get(Field::TpSrc), k.get(Field::TpDst)), (0, 0));
        assert_eq!(k.get(Field::NwFrag), (frag::ANY | frag::LATER).into());
        assert_eq!(l.l4, 0);
    }
}

#[test]
fn a_first_tcp_fragment_may_cut_the_options() {
    for v6 in [false, true] {
        let whole = tcp(v6, 600);
        // 24 bytes: the fixed header and 4 of the 20 bytes of options.
        let (k, _) = key_of(&fragment(&whole, 0, 24, true)).expect("first fragment");
        assert_eq!((k.get(Field::TpSrc), k.get(Field::TpDst)), (40000, 5201));
        assert_eq!(k.get(Field::TcpFlags), 0x018, "PSH|ACK, v6={v6}");
        // Too short for the flags: a "tiny fragment" (RFC 1858), dropped.
        assert_eq!(
            key_of(&fragment(&whole, 0, 8, true)).unwrap_err(),
            DropReason::MalformedL4
        );
    }
}

#[test]
fn unfragmented_packets_are_still_held_to_their_lengths() {
    for v6 in [false, true] {
        // A UDP length larger than the datagram, without any fragmentation.
        let mut bad = udp(v6, 100);
        let at = if v6 { 14 + 40 + 4 } else { 14 + 20 + 4 };
        bad[at..at + 2].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(key_of(&bad).unwrap_err(), DropReason::MalformedL4);
        // A first fragment whose UDP length is below the header's own.
        let mut tiny_len = fragment(&udp(v6, 100), 0, 64, true);
        let at = tiny_len.len() - 64 + 4;
        tiny_len[at..at + 2].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(key_of(&tiny_len).unwrap_err(), DropReason::MalformedL4);
        // And a whole datagram parses as before.
        let (k, _) = key_of(&udp(v6, 100)).unwrap();
        assert_eq!(k.get(Field::NwFrag), 0);
        assert_eq!(k.get(Field::TpDst), 53);
    }
}

#[test]
fn echo_requests_and_replies_carry_their_identifier_and_nothing_else_does() {
    let build = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        key_of(&v).unwrap().0
    };
    let v4 = || PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
    let v6 = || PacketBuilder::ethernet2([2; 6], [4; 6]).ipv6([0xfd; 16], [0xfe; 16], 64);
    let req4 = build(&|f| {
        v4().icmpv4_echo_request(0x1234, 1)
            .write(f, &[0; 8])
            .unwrap()
    });
    let rep4 = build(&|f| v4().icmpv4_echo_reply(0x1234, 2).write(f, &[0; 8]).unwrap());
    let req6 = build(&|f| {
        v6().icmpv6_echo_request(0xabcd, 1)
            .write(f, &[0; 8])
            .unwrap()
    });
    let rep6 = build(&|f| v6().icmpv6_echo_reply(0xabcd, 2).write(f, &[0; 8]).unwrap());
    assert_eq!((req4.echo_id(), rep4.echo_id()), (0x1234, 0x1234));
    assert_eq!((req6.echo_id(), rep6.echo_id()), (0xabcd, 0xabcd));
    // Type and code stay where OVS keeps them; the identifier is beside
    // them, in no field.
    assert_eq!((req4.get(Field::TpSrc), req4.get(Field::TpDst)), (8, 0));
    assert_eq!(req4.get(Field::TcpFlags), 0);
    assert_eq!(req6.get(Field::Ipv6Label), 0);
    let mut k = req4;
    k.set_echo_id(0);
    assert_eq!(k.get(Field::TpSrc), 8, "clearing it leaves the fields");
    // An error quoting an echo carries none; neither do TCP or UDP.
    let unreach = build(&|f| {
        v4().icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(f, &[0x45; 28])
        .unwrap()
    });
    assert_eq!((unreach.get(Field::TpSrc), unreach.echo_id()), (3, 0));
    assert_eq!(key_of(&udp(false, 8)).unwrap().0.echo_id(), 0);
    assert_eq!(key_of(&tcp(true, 8)).unwrap().0.echo_id(), 0);
}
