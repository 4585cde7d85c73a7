//! Forwarding cases: one per action, each compared byte for byte with the
//! executor (`forwards`), and the program's length and counter bookkeeping.

use super::*;

#[test]
fn both_programs_pass_the_verifier() {
    let Some(lab) = lab("both_programs_pass_the_verifier") else {
        return;
    };
    let m = lab.maps.program_maps(lab._xsk.as_fd());
    for kind in [ProgramKind::All, ProgramKind::Uplink] {
        let n = assemble(kind, m, XdpAction::Pass, IN).len();
        eprintln!("{kind:?}: {n} instructions");
        assert!(n < 4096, "{kind:?} is {n} instructions");
    }
}

#[test]
fn plain_output_redirects_and_counts() {
    let Some(lab) = lab("plain_output_redirects_and_counts") else {
        return;
    };
    for p in [
        tcp4(),
        udp4(),
        udp4_no_csum(),
        icmp4(),
        tcp6(),
        udp6(),
        icmp6(),
    ] {
        let out = forwards(&lab, ProgramKind::All, &p, None, &[DpAction::Output(OUT)]);
        assert_eq!(out, p);
    }
    // Two packets add up.
    let p = tcp4();
    let (fk, e) = offload(&flow_key(&p, IN, None), &[DpAction::Output(OUT)], &lab).unwrap();
    lab.maps.insert(&fk, &e).unwrap();
    lab.run(ProgramKind::All, &p);
    lab.run(ProgramKind::All, &p);
    let got = lab.maps.get(&fk).unwrap().unwrap();
    assert_eq!((got.packets, got.bytes), (2, 2 * p.len() as u64));
}

#[test]
fn mac_rewrite() {
    let Some(lab) = lab("mac_rewrite") else {
        return;
    };
    let acts = [
        DpAction::SetEthSrc([2, 0, 0, 0, 0, 0xaa]),
        DpAction::SetEthDst([2, 0, 0, 0, 0, 0xbb]),
        DpAction::Output(OUT),
    ];
    for p in [tcp4(), tcp6(), tagged(&udp4(), 0x8100, 5)] {
        let out = forwards(&lab, ProgramKind::All, &p, None, &acts);
        assert_eq!(&out[..12], &[2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa]);
    }
}

#[test]
fn ipv4_address_rewrite_fixes_ip_and_l4_checksums() {
    let Some(lab) = lab("ipv4_address_rewrite_fixes_ip_and_l4_checksums") else {
        return;
    };
    let acts = [
        DpAction::SetIpv4Src([10, 96, 0, 1]),
        DpAction::SetIpv4Dst([172, 16, 255, 254]),
        DpAction::Output(OUT),
    ];
    for p in [tcp4(), udp4(), icmp4(), tagged(&tcp4(), 0x8100, 7)] {
        let out = forwards(&lab, ProgramKind::All, &p, None, &acts);
        let l3 = if p[12] == 0x81 { 18 } else { 14 };
        assert_eq!(&out[l3 + 12..l3 + 20], &[10, 96, 0, 1, 172, 16, 255, 254]);
    }
    // A UDP checksum of zero stays zero (RFC 768: none was sent).
    let out = forwards(&lab, ProgramKind::All, &udp4_no_csum(), None, &acts);
    assert_eq!(&out[40..42], &[0, 0]);
}

#[test]
fn ipv6_address_rewrite_fixes_l4_checksums() {
    let Some(lab) = lab("ipv6_address_rewrite_fixes_l4_checksums") else {
        return;
    };
    let mut n = DST6;
    n[15] = 0x99;
    n[1] = 0x42;
    let acts = [
        DpAction::SetIpv6Src(n),
        DpAction::SetIpv6Dst(SRC6),
        DpAction::Output(OUT),
    ];
    for p in [tcp6(), udp6(), icmp6()] {
        let out = forwards(&lab, ProgramKind::All, &p, None, &acts);
        assert_eq!(&out[22..38], &n);
    }
}

#[test]
fn port_rewrite() {
    let Some(lab) = lab("port_rewrite") else {
        return;
    };
    let acts = [
        DpAction::SetTpSrc(31000),
        DpAction::SetTpDst(8080),
        DpAction::Output(OUT),
    ];
    for p in [tcp4(), udp4(), udp4_no_csum(), tcp6(), udp6()] {
        forwards(&lab, ProgramKind::All, &p, None, &acts);
    }
    // Ports on ICMP are not a rewrite the executor takes: not offloaded.
    let k = flow_key(&icmp4(), IN, None);
    assert!(offload(&k, &acts, &lab).is_none());
}

#[test]
fn ttl_and_tos_rewrite() {
    let Some(lab) = lab("ttl_and_tos_rewrite") else {
        return;
    };
    for p in [tcp4(), udp6(), icmp4(), tcp6()] {
        forwards(
            &lab,
            ProgramKind::All,
            &p,
            None,
            &[DpAction::SetTtl(63), DpAction::Output(OUT)],
        );
        forwards(
            &lab,
            ProgramKind::All,
            &p,
            None,
            &[DpAction::SetTos(0xb8), DpAction::Output(OUT)],
        );
    }
}

#[test]
fn vlan_pop_push_and_set() {
    let Some(lab) = lab("vlan_pop_push_and_set") else {
        return;
    };
    let t = tagged(&tcp4(), 0x8100, 0x2005);
    let out = forwards(
        &lab,
        ProgramKind::All,
        &t,
        None,
        &[DpAction::PopVlan, DpAction::Output(OUT)],
    );
    assert_eq!(out, tcp4());
    let push = [
        DpAction::PushVlan {
            tpid: 0x8100,
            tci: 0x000a,
        },
        DpAction::Output(OUT),
    ];
    let out = forwards(&lab, ProgramKind::All, &udp6(), None, &push);
    assert_eq!(out, tagged(&udp6(), 0x8100, 0x000a));
    let set = [DpAction::SetVlanTci(0x6007), DpAction::Output(OUT)];
    let out = forwards(&lab, ProgramKind::All, &t, None, &set);
    assert_eq!(out, tagged(&tcp4(), 0x8100, 0x6007));
    let swap = [
        DpAction::PopVlan,
        DpAction::PushVlan {
            tpid: 0x88a8,
            tci: 7,
        },
        DpAction::Output(OUT),
    ];
    forwards(&lab, ProgramKind::All, &t, None, &swap);
}

#[test]
fn geneve_push_matches_the_template() {
    let Some(lab) = lab("geneve_push_matches_the_template") else {
        return;
    };
    let push = DpAction::TunnelPush {
        port: TUN,
        vni: 0x00ab_cdef,
        dst: mapped(REMOTE),
    };
    for p in [tcp4(), udp6(), icmp4()] {
        let out = forwards(
            &lab,
            ProgramKind::All,
            &p,
            None,
            std::slice::from_ref(&push),
        );
        assert_eq!(out.len(), p.len() + GENEVE4_LEN);
        assert_eq!(&out[GENEVE4_LEN..], &p[..], "the inner frame is not moved");
    }
    let t = tagged(&tcp6(), 0x8100, 3);
    forwards(
        &lab,
        ProgramKind::All,
        &t,
        None,
        &[DpAction::SetEthDst(B), DpAction::PopVlan, push.clone()],
    );
    // The source port is the slow path's for this exact flow: another flow
    // (another source port) gets another one, as the pipeline would.
    let k1 = flow_key(&tcp4(), IN, None);
    let mut other = tcp4();
    other[14 + 20] ^= 1;
    let k2 = flow_key(&other, IN, None);
    let (_, e1) = offload(&k1, std::slice::from_ref(&push), &lab).unwrap();
    let (_, e2) = offload(&k2, &[push], &lab).unwrap();
    let slow = |f: &[u8]| lab.tpl.src_port(encap::inner_flow_hash(f)).to_be_bytes();
    assert_eq!(e1.tun_sport, slow(&tcp4()));
    assert_eq!(e2.tun_sport, slow(&other));
    assert_ne!(e1.tun_sport, e2.tun_sport);
}

#[test]
fn geneve_arrival_is_popped() {
    let Some(lab) = lab("geneve_arrival_is_popped") else {
        return;
    };
    for p in [tcp4(), udp6(), tagged(&icmp4(), 0x8100, 9)] {
        let out = forwards(
            &lab,
            ProgramKind::Uplink,
            &p,
            Some(42),
            &[DpAction::Output(OUT)],
        );
        assert_eq!(out, p);
    }
    forwards(
        &lab,
        ProgramKind::Uplink,
        &tcp4(),
        Some(42),
        &[
            DpAction::SetEthDst(A),
            DpAction::SetIpv4Dst([10, 244, 1, 9]),
            DpAction::SetTtl(63),
            DpAction::Output(OUT),
        ],
    );
    // VNI and outer source are in the key: another VNI misses.
    let (fk, e) = offload(
        &flow_key(&udp4(), TUN, Some(42)),
        &[DpAction::Output(OUT)],
        &lab,
    )
    .unwrap();
    lab.maps.insert(&fk, &e).unwrap();
    lab.punts(
        ProgramKind::Uplink,
        &geneve_arrival(&udp4(), 43),
        FpCounter::Miss,
    );
}

#[test]
fn udp_checksum_that_computes_to_zero_is_sent_as_ones() {
    let Some(lab) = lab("udp_checksum_that_computes_to_zero_is_sent_as_ones") else {
        return;
    };
    // Find the destination port whose rewrite makes the incremental update
    // come out as zero: RFC 768 sends that as 0xffff.
    let p = udp4();
    let c = u16::from_be_bytes([p[40], p[41]]);
    let new = (1..=u16::MAX)
        .find(|&n| wire::checksum::update16(c, 53, n) == 0)
        .expect("some port zeroes the sum");
    let out = forwards(
        &lab,
        ProgramKind::All,
        &p,
        None,
        &[DpAction::SetTpDst(new), DpAction::Output(OUT)],
    );
    assert_eq!(&out[40..42], &[0xff, 0xff]);
}
