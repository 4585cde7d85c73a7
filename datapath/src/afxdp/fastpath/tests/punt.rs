//! What the fast path must not take: misses, TCP SYN/FIN/RST, fragments,
//! options and extension headers, frames too big for the entry, missing
//! outputs, what it cannot parse, Geneve it cannot pop, cut frames; each
//! leaves the frame untouched and bumps exactly its counter.

use super::*;

#[test]
fn a_miss_goes_to_the_socket_untouched() {
    let Some(lab) = lab("a_miss_goes_to_the_socket_untouched") else {
        return;
    };
    for p in [tcp4(), udp4(), icmp4(), tcp6(), udp6(), icmp6()] {
        lab.punts(ProgramKind::All, &p, FpCounter::Miss);
    }
}

#[test]
fn a_pod_program_takes_only_the_entries_of_its_own_port() {
    let Some(lab) = lab("a_pod_program_takes_only_the_entries_of_its_own_port") else {
        return;
    };
    // An entry for packets entering on OUT: the program of port IN (its
    // number built in) misses it, the program of port OUT takes it.
    let p = udp4();
    let (fk, e) = offload(&flow_key(&p, OUT, None), &[DpAction::Output(IN)], &lab).unwrap();
    lab.maps.set_output(IN, LO).expect("devmap");
    lab.maps.insert(&fk, &e).unwrap();
    lab.punts(ProgramKind::All, &p, FpCounter::Miss);
    assert_eq!(lab.run_from(OUT, &p).0, XdpAction::Redirect);
    let got = lab.maps.get(&fk).unwrap().unwrap();
    assert_eq!(got.packets, 1);
}

#[test]
fn uplink_keeps_host_traffic_and_punts_geneve_it_cannot_pop() {
    let Some(lab) = lab("uplink_keeps_host_traffic_and_punts_geneve_it_cannot_pop") else {
        return;
    };
    let before = lab.counters();
    for p in [tcp4(), udp4(), tcp6(), tagged(&udp4(), 0x8100, 1)] {
        assert_eq!(
            lab.run(ProgramKind::Uplink, &p),
            (XdpAction::Pass, p.clone())
        );
    }
    assert_eq!(lab.counters(), before, "host traffic is not counted");
    let g = geneve_arrival(&tcp4(), 42);
    let (fk, e) = offload(
        &flow_key(&tcp4(), TUN, Some(42)),
        &[DpAction::Output(OUT)],
        &lab,
    )
    .unwrap();
    lab.maps.insert(&fk, &e).unwrap();
    let mut variants = Vec::new();
    // Options: Geneve option length 1 word (the header says so; the bytes
    // are the inner frame's, which is enough to refuse).
    let mut v = g.clone();
    v[42] = 1;
    variants.push(v);
    // OAM bit.
    let mut v = g.clone();
    v[43] = 0x80;
    variants.push(v);
    // A UDP checksum (would have to be verified over the payload).
    let mut v = g.clone();
    v[40] = 0x12;
    variants.push(v);
    // A bad outer header checksum.
    let mut v = g.clone();
    v[24] ^= 0xff;
    variants.push(v);
    // Another VTEP (checksum fixed up).
    let mut v = g.clone();
    v[33] = 9;
    v[24] = 0;
    v[25] = 0;
    let c = wire::checksum::checksum(&v[14..34]);
    v[24..26].copy_from_slice(&c.to_be_bytes());
    variants.push(v);
    // Not Ethernet inside.
    let mut v = g.clone();
    v[44] = 0x08;
    v[45] = 0x00;
    variants.push(v);
    // A trailing byte after the outer IP packet.
    let mut v = g.clone();
    v.push(0);
    variants.push(v);
    for v in &variants {
        lab.punts(ProgramKind::Uplink, v, FpCounter::PuntGeneve);
    }
    // An IPv6 underlay goes to the slow path as today.
    let cfg = TunnelConfig::new(B, A, "fd00::2".parse().unwrap(), "fd00::1".parse().unwrap());
    let t6 = Template::new(&cfg).unwrap();
    let inner = tcp4();
    let mut frame = vec![0u8; 128 + inner.len()];
    frame[128..].copy_from_slice(&inner);
    let per = PerPacket {
        vni: 42,
        options: &Options::new(),
        ip_id: 0,
        oam: false,
    };
    let (off, len) = t6.push(&mut frame, 128, inner.len(), &per).unwrap();
    lab.punts(
        ProgramKind::Uplink,
        &frame[off..off + len],
        FpCounter::PuntGeneve,
    );
    // The original frame still takes the entry.
    assert_eq!(lab.run(ProgramKind::Uplink, &g).0, XdpAction::Redirect);
    // A SYN inside the tunnel goes to the slow path with its outer headers.
    lab.punts(
        ProgramKind::Uplink,
        &geneve_arrival(&tcp_flags4(true, false, false), 42),
        FpCounter::PuntTcpFlags,
    );
}

/// Installs an entry for `p`'s key as if it were offloadable, so a punt
/// shows it happens before the lookup.
fn force_entry(lab: &Lab, p: &[u8]) {
    let mut k = FlowKey::default();
    extract(p, IN, &mut k).unwrap();
    let mut fk = FpKey::from_flow_key(&{
        let mut k2 = k;
        k2.set(flowtable::Field::TcpFlags, 0x10);
        k2.set(flowtable::Field::NwFrag, 0);
        k2
    })
    .unwrap();
    fk.tcp_flags = (k.get(flowtable::Field::TcpFlags) as u16).to_be_bytes();
    let e = FpEntry {
        out_port: OUT,
        max_len: u16::MAX,
        ..FpEntry::default()
    };
    lab.maps.insert(&fk, &e).unwrap();
}

#[test]
fn tcp_syn_fin_rst_punt_even_with_an_entry() {
    let Some(lab) = lab("tcp_syn_fin_rst_punt_even_with_an_entry") else {
        return;
    };
    for (s, f, r) in [
        (true, false, false),
        (false, true, false),
        (false, false, true),
    ] {
        let p = tcp_flags4(s, f, r);
        force_entry(&lab, &p);
        lab.punts(ProgramKind::All, &p, FpCounter::PuntTcpFlags);
        assert!(FpKey::from_flow_key(&flow_key(&p, IN, None)).is_none());
    }
}

#[test]
fn fragments_and_options_punt() {
    let Some(lab) = lab("fragments_and_options_punt") else {
        return;
    };
    let fix = |v: &mut Vec<u8>| {
        v[24] = 0;
        v[25] = 0;
        let ihl = (v[14] & 0xf) as usize * 4;
        let c = wire::checksum::checksum(&v[14..14 + ihl]);
        v[24..26].copy_from_slice(&c.to_be_bytes());
    };
    for frag in [0x2000u16, 0x0010, 0x2010] {
        let mut v = udp4();
        v[20..22].copy_from_slice(&frag.to_be_bytes());
        fix(&mut v);
        lab.punts(ProgramKind::All, &v, FpCounter::PuntFragment);
    }
    // IPv4 with a 4-byte option (NOP NOP NOP EOL).
    let mut v = udp4();
    v.splice(34..34, [1, 1, 1, 0]);
    v[14] = 0x46;
    let tl = u16::from_be_bytes([v[16], v[17]]) + 4;
    v[16..18].copy_from_slice(&tl.to_be_bytes());
    fix(&mut v);
    lab.punts(ProgramKind::All, &v, FpCounter::PuntIpOptions);
    // IPv6 with a hop-by-hop header, and with a fragment header.
    for (next, why) in [
        (0u8, FpCounter::PuntIpOptions),
        (44, FpCounter::PuntFragment),
    ] {
        let mut v = udp6();
        v.splice(54..54, [17, 0, 0, 0, 0, 0, 0, 0]);
        v[20] = next;
        let pl = u16::from_be_bytes([v[18], v[19]]) + 8;
        v[18..20].copy_from_slice(&pl.to_be_bytes());
        lab.punts(ProgramKind::All, &v, why);
    }
}

#[test]
fn too_big_no_output_and_unparsed_punt() {
    let Some(lab) = lab("too_big_no_output_and_unparsed_punt") else {
        return;
    };
    let p = tcp4();
    let (fk, mut e) = offload(&flow_key(&p, IN, None), &[DpAction::Output(OUT)], &lab).unwrap();
    e.max_len = p.len() as u16 - 1;
    lab.maps.insert(&fk, &e).unwrap();
    lab.punts(ProgramKind::All, &p, FpCounter::PuntTooBig);
    e.max_len = p.len() as u16;
    lab.maps.insert(&fk, &e).unwrap();
    assert_eq!(lab.run(ProgramKind::All, &p).0, XdpAction::Redirect);
    e.out_port = 77;
    lab.maps.insert(&fk, &e).unwrap();
    lab.punts(ProgramKind::All, &p, FpCounter::PuntNoOutput);
    // A Geneve push whose frame would not fit the underlay's 1500 bytes.
    let big = build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv4(SRC4, DST4, 64)
            .udp(5000, 53)
            .write(f, &[0; 1451 - 28])
            .unwrap()
    });
    let push = [DpAction::TunnelPush {
        port: TUN,
        vni: 1,
        dst: mapped(REMOTE),
    }];
    let (fk, e) = offload(&flow_key(&big, IN, None), &push, &lab).unwrap();
    assert_eq!(e.max_len, 1464);
    lab.maps.insert(&fk, &e).unwrap();
    lab.punts(ProgramKind::All, &big, FpCounter::PuntTooBig);
    // One byte less fits exactly (`encap::mtu::fits`): same flow, same entry.
    let fits = build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv4(SRC4, DST4, 64)
            .udp(5000, 53)
            .write(f, &[0; 1450 - 28])
            .unwrap()
    });
    assert_eq!(lab.run(ProgramKind::All, &fits).0, XdpAction::Redirect);

    let arp = {
        let mut f = A.to_vec();
        f.extend_from_slice(&B);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    let mut trailing = tcp4();
    trailing.push(0);
    let mut bad_udp_len = udp4();
    bad_udp_len[38] = 0xff;
    let nd = build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv6(SRC6, DST6, 255)
            .icmpv6(etherparse::Icmpv6Type::Unknown {
                type_u8: 135,
                code_u8: 0,
                bytes5to8: [0; 4],
            })
            .write(f, &[0; 16])
            .unwrap()
    });
    let sctp = {
        let mut v = udp4();
        v[23] = 132;
        v
    };
    for v in [arp, trailing, bad_udp_len, nd, sctp, tcp4()[..40].to_vec()] {
        lab.punts(ProgramKind::All, &v, FpCounter::PuntUnparsed);
    }
}

#[test]
fn no_cut_of_a_forwarded_frame_is_forwarded() {
    let Some(lab) = lab("no_cut_of_a_forwarded_frame_is_forwarded") else {
        return;
    };
    for p in [tcp4(), tcp6(), tagged(&udp4(), 0x8100, 2)] {
        let (fk, e) = offload(&flow_key(&p, IN, None), &[DpAction::Output(OUT)], &lab).unwrap();
        lab.maps.insert(&fk, &e).unwrap();
        for len in 14..p.len() {
            let (v, _) = lab.run(ProgramKind::All, &p[..len]);
            assert_eq!(v, XdpAction::Drop, "cut at {len}");
        }
        assert_eq!(lab.run(ProgramKind::All, &p).0, XdpAction::Redirect);
    }
    let inner = tcp4();
    let (fk, e) = offload(
        &flow_key(&inner, TUN, Some(5)),
        &[DpAction::Output(OUT)],
        &lab,
    )
    .unwrap();
    lab.maps.insert(&fk, &e).unwrap();
    let g = geneve_arrival(&inner, 5);
    for len in 14..g.len() {
        let (v, _) = lab.run(ProgramKind::Uplink, &g[..len]);
        assert_ne!(v, XdpAction::Redirect, "cut at {len}");
    }
    assert_eq!(lab.run(ProgramKind::Uplink, &g).0, XdpAction::Redirect);
}
