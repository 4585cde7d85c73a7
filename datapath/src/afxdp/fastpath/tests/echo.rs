//! ICMP echo in the exact-match key: the program reads the identifier of
//! an echo request or reply (ICMP types 8 and 0, ICMPv6 128 and 129) into
//! `icmp_id` as `extract` puts it into the flow key, so an entry takes one
//! echo "connection" and no other, and an ICMP error (which quotes a
//! packet that NAT would have to rewrite too) finds no entry and goes to
//! the slow path untouched.

use super::*;

fn echo4(id: u16, request: bool, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    build(|f| {
        let ip = PacketBuilder::ethernet2(A, B).ipv4(src, dst, 64);
        let ip = if request {
            ip.icmpv4_echo_request(id, 1)
        } else {
            ip.icmpv4_echo_reply(id, 1)
        };
        ip.write(f, &[0x33; 56]).unwrap()
    })
}

fn echo6(id: u16, request: bool) -> Vec<u8> {
    build(|f| {
        let ip = PacketBuilder::ethernet2(A, B).ipv6(SRC6, DST6, 64);
        let ip = if request {
            ip.icmpv6_echo_request(id, 1)
        } else {
            ip.icmpv6_echo_reply(id, 1)
        };
        ip.write(f, &[0x66; 24]).unwrap()
    })
}

/// Destination unreachable (port, RFC 792) from DST4 to SRC4 quoting the
/// first 28 bytes of `quoted`'s IP packet.
fn unreachable4(quoted: &[u8]) -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv4(DST4, SRC4, 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(f, &quoted[14..14 + 28])
            .unwrap()
    })
}

#[test]
fn echo_entries_take_their_identifier_only() {
    let Some(lab) = lab("echo_entries_take_their_identifier_only") else {
        return;
    };
    let cases = [
        (echo4(9, true, SRC4, DST4), echo4(10, true, SRC4, DST4)),
        (
            echo4(9, false, SRC4, DST4),
            echo4(0x0900, false, SRC4, DST4),
        ),
        (echo6(3, true), echo6(4, true)),
        (echo6(3, false), echo6(0x0300, false)),
    ];
    for (p, other) in cases {
        let k = flow_key(&p, IN, None);
        assert_ne!(k.echo_id(), 0);
        let fk = FpKey::from_flow_key(&k).expect("echo is offloadable");
        assert_eq!(fk.icmp_id, k.echo_id().to_be_bytes());
        let (_, e) = offload(&k, &[DpAction::Output(OUT)], &lab).unwrap();
        lab.maps.insert(&fk, &e).unwrap();
        // The same ping forwards; another identifier misses.
        let (v, out) = lab.run(ProgramKind::All, &p);
        assert_eq!((v, &out), (XdpAction::Redirect, &p));
        lab.punts(ProgramKind::All, &other, FpCounter::Miss);
        assert_eq!(lab.maps.get(&fk).unwrap().unwrap().packets, 1);
        lab.maps.remove(&fk).unwrap();
    }
    // With an address rewrite (what DNAT of a ping becomes) the checksums
    // are fixed as the executor fixes them.
    forwards(
        &lab,
        ProgramKind::All,
        &echo4(9, true, SRC4, [10, 96, 0, 10]),
        None,
        &[DpAction::SetIpv4Dst(DST4), DpAction::Output(OUT)],
    );
    forwards(
        &lab,
        ProgramKind::All,
        &echo6(3, false),
        None,
        &[DpAction::SetIpv6Src(DST6), DpAction::Output(OUT)],
    );
}

#[test]
fn icmp_errors_punt_even_beside_an_echo_entry() {
    let Some(lab) = lab("icmp_errors_punt_even_beside_an_echo_entry") else {
        return;
    };
    let ping = echo4(9, true, SRC4, DST4);
    let err = unreachable4(&ping);
    let k = flow_key(&err, IN, None);
    assert_eq!((k.get(flowtable::Field::TpSrc), k.echo_id()), (3, 0));
    // The echo's entries, both ways, are there; the error is not theirs.
    let pong = echo4(9, false, DST4, SRC4);
    let mut keys = Vec::new();
    for p in [&ping, &pong] {
        let (fk, e) = offload(&flow_key(p, IN, None), &[DpAction::Output(OUT)], &lab).unwrap();
        lab.maps.insert(&fk, &e).unwrap();
        keys.push(fk);
    }
    lab.punts(ProgramKind::All, &err, FpCounter::Miss);
    // A key claiming an identifier on a message that has none is one the
    // program never builds.
    let mut forged = k;
    forged.set_echo_id(9);
    assert_eq!(FpKey::from_flow_key(&forged), None);
    for fk in keys {
        lab.maps.remove(&fk).unwrap();
    }
}
