//! Golden tests of the fast-path program in the kernel: every build of the
//! tests loads both programs through the verifier and runs them with
//! `BPF_PROG_TEST_RUN` on real frames (built with etherparse and the
//! slow path's own Geneve template). They need root and skip otherwise.
//!
//! Every forwarding case is also a differential test: the same datapath
//! actions are applied by `datapath::exec::rewrite` (and `Template::push`
//! with the pipeline's flow hash), the entry comes from [`offload`], and
//! the program's output must be the same bytes. The one field allowed to
//! differ is the outer IPv4 identification of a Geneve push (any value is
//! right with DF set, RFC 6864 §4.1), with the header checksum it feeds.
//!
//! Conventions: the test context is the loopback device (ifindex 1), which
//! plays pod port 1 and the uplink; the DEVMAP sends ports 2 and 10 there
//! too. The miss path is assembled with `XDP_DROP` as its empty-slot
//! verdict, so the slow path shows as DROP and a hit as REDIRECT.

use super::*;
use crate::afxdp::bpf::{create_xskmap, test_run_on};
use crate::afxdp::sys::is_root;
use crate::afxdp::{ProgramKind, XdpAction};
use crate::buf::PacketDesc;
use crate::exec::rewrite;
use encap::{Options, PerPacket, Template, TunnelConfig};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use flowtable::tunnel::{TunnelKey, TUN_METADATA_SLOTS};
use flowtable::{extract, DpAction, FlowKey};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};

const LO: u32 = 1;
const IN: u32 = 1;
const OUT: u32 = 2;
const UPLINK: u32 = 10;
const TUN: u32 = 100;
const VTEP: [u8; 4] = [192, 168, 77, 1];
const REMOTE: [u8; 4] = [192, 168, 77, 2];
const A: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const B: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [10, 244, 1, 5];
const DST4: [u8; 4] = [10, 244, 2, 7];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

struct Lab {
    maps: FastPathMaps,
    _xsk: OwnedFd,
    pod: OwnedFd,
    uplink: OwnedFd,
    tpl: Template,
}

fn mapped(v4: [u8; 4]) -> [u8; 16] {
    Ipv4Addr::from(v4).to_ipv6_mapped().octets()
}

impl OffloadEnv for Lab {
    fn tunnel(&self, port: u32, remote: [u8; 16]) -> Option<OffloadTunnel<'_>> {
        (port == TUN && remote == mapped(REMOTE)).then_some(OffloadTunnel {
            slot: 3,
            tpl: &self.tpl,
            uplink: UPLINK,
            mtu: 1500,
        })
    }
}

fn lab(test: &str) -> Option<Lab> {
    if !is_root() {
        eprintln!("skipping {test}: loading XDP programs needs root");
        return None;
    }
    let maps = FastPathMaps::create(256).expect("maps");
    let xsk = create_xskmap(4).expect("xskmap");
    let load = |kind| {
        maps.load(kind, xsk.as_fd(), XdpAction::Drop)
            .unwrap_or_else(|e| panic!("load {kind:?}: {}\n{}", e.err, e.log))
    };
    let (pod, uplink) = (load(ProgramKind::All), load(ProgramKind::Uplink));
    let port = FpPort {
        of_port: IN,
        tun_port: TUN,
        vtep: VTEP,
        pad0: 0,
    };
    maps.set_port(LO, &port).expect("port");
    maps.set_output(OUT, LO).expect("devmap");
    maps.set_output(UPLINK, LO).expect("devmap");
    let cfg = TunnelConfig::new(A, B, IpAddr::from(VTEP), IpAddr::from(REMOTE));
    let tpl = Template::new(&cfg).expect("template");
    maps.set_tunnel(3, &tunnel_of(&tpl).expect("ipv4 template"))
        .expect("tunnel");
    Some(Lab {
        maps,
        _xsk: xsk,
        pod,
        uplink,
        tpl,
    })
}

impl Lab {
    fn run(&self, kind: ProgramKind, pkt: &[u8]) -> (XdpAction, Vec<u8>) {
        let prog = match kind {
            ProgramKind::All => &self.pod,
            ProgramKind::Uplink => &self.uplink,
        };
        test_run_on(prog.as_fd(), pkt, LO).expect("test run")
    }

    fn counters(&self) -> [u64; FpCounter::ALL.len()] {
        self.maps.counters().expect("counters")
    }

    /// Runs `pkt` and checks it went to the slow path untouched, counted
    /// under `why` (and nothing else).
    fn punts(&self, kind: ProgramKind, pkt: &[u8], why: FpCounter) {
        let before = self.counters();
        let (v, out) = self.run(kind, pkt);
        assert_eq!(v, XdpAction::Drop, "{why:?}: {pkt:02x?}");
        assert_eq!(out, pkt, "{why:?}: the frame is untouched");
        let after = self.counters();
        for c in FpCounter::ALL {
            let d = after[c as usize] - before[c as usize];
            assert_eq!(d, u64::from(c == why), "{} for {why:?}", c.name());
        }
    }
}

fn build(b: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = Vec::new();
    b(&mut f);
    f
}

fn tcp4() -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv4(SRC4, DST4, 64)
            .tcp(40000, 80, 1000, 64000)
            .ack(77)
            .psh()
            .write(f, &[0x11; 33])
            .unwrap()
    })
}

fn tcp_flags4(syn: bool, fin: bool, rst: bool) -> Vec<u8> {
    build(|f| {
        let mut b = PacketBuilder::ethernet2(A, B)
            .ipv4(SRC4, DST4, 64)
            .tcp(40000, 80, 1000, 64000)
            .ack(77);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if rst {
            b = b.rst();
        }
        b.write(f, &[]).unwrap()
    })
}

fn udp4() -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv4(SRC4, DST4, 64)
            .udp(5000, 53)
            .write(f, &[0x22; 41])
            .unwrap()
    })
}

fn udp4_no_csum() -> Vec<u8> {
    let mut f = udp4();
    f[14 + 20 + 6] = 0;
    f[14 + 20 + 7] = 0;
    f
}

fn icmp4() -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv4(SRC4, DST4, 64)
            .icmpv4_echo_request(9, 1)
            .write(f, &[0x33; 56])
            .unwrap()
    })
}

fn tcp6() -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv6(SRC6, DST6, 64)
            .tcp(40000, 443, 7, 64000)
            .ack(5)
            .write(f, &[0x44; 20])
            .unwrap()
    })
}

fn udp6() -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv6(SRC6, DST6, 64)
            .udp(5353, 5353)
            .write(f, &[0x55; 30])
            .unwrap()
    })
}

fn icmp6() -> Vec<u8> {
    build(|f| {
        PacketBuilder::ethernet2(A, B)
            .ipv6(SRC6, DST6, 64)
            .icmpv6_echo_request(3, 4)
            .write(f, &[0x66; 24])
            .unwrap()
    })
}

/// `f` with an 802.1Q tag (TPID `tpid`, TCI `tci`) after the addresses.
fn tagged(f: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&tpid.to_be_bytes());
    t.extend_from_slice(&tci.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

/// `inner` as it arrives from REMOTE over Geneve with VNI `vni`; `opts`
/// option bytes and a UDP checksum on request.
fn geneve_arrival(inner: &[u8], vni: u32) -> Vec<u8> {
    let cfg = TunnelConfig::new(B, A, IpAddr::from(REMOTE), IpAddr::from(VTEP));
    let tpl = Template::new(&cfg).unwrap();
    let mut frame = vec![0u8; 128 + inner.len()];
    frame[128..].copy_from_slice(inner);
    let per = PerPacket {
        vni,
        options: &Options::new(),
        flow_hash: 0x1234_5678,
        ip_id: 7,
        oam: false,
    };
    let (off, len) = tpl.push(&mut frame, 128, inner.len(), &per).unwrap();
    frame[off..off + len].to_vec()
}

/// The flow key of `frame` received on `in_port`, with tunnel fields for
/// a Geneve arrival.
fn flow_key(frame: &[u8], in_port: u32, tun: Option<u32>) -> FlowKey {
    let mut k = FlowKey::default();
    extract(frame, in_port, &mut k).expect("extract");
    if let Some(vni) = tun {
        TunnelKey {
            id: u64::from(vni),
            src: IpAddr::from(REMOTE),
            dst: IpAddr::from(VTEP),
            md: [0; TUN_METADATA_SLOTS],
        }
        .write(&mut k);
    }
    k
}

/// What the slow path makes of `frame` (its flow key `key`): the
/// executor's rewrites, then the template push with the pipeline's flow
/// hash.
fn slow_path(lab: &Lab, frame: &[u8], key: &FlowKey, actions: &[DpAction]) -> Vec<u8> {
    const HEAD: usize = 256;
    let mut buf = vec![0u8; HEAD + frame.len()];
    buf[HEAD..].copy_from_slice(frame);
    let mut d = PacketDesc {
        frame: 0,
        off: HEAD as u16,
        len: frame.len() as u16,
    };
    let mut k = FlowKey::default();
    let mut lay = extract(frame, 0, &mut k).unwrap();
    for a in actions {
        match *a {
            DpAction::Output(_) => {}
            DpAction::TunnelPush { vni, .. } => {
                let per = PerPacket {
                    vni,
                    options: &Options::new(),
                    flow_hash: key.hash(),
                    ip_id: 0,
                    oam: false,
                };
                let (off, len) = lab
                    .tpl
                    .push(&mut buf, d.off as usize, d.len as usize, &per)
                    .unwrap();
                d.off = off as u16;
                d.len = len as u16;
            }
            _ => rewrite(&mut buf, &mut d, &mut lay, a).expect("rewrite"),
        }
    }
    buf[d.off as usize..(d.off + d.len) as usize].to_vec()
}

/// Every IPv4 header and TCP/UDP/ICMP checksum in `frame` is valid, read
/// by etherparse (a UDP checksum of zero means none); Geneve is followed
/// into the inner frame.
fn assert_checksums(frame: &[u8]) {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse reads the frame");
    let (src, dst): (Vec<u8>, Vec<u8>) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "ipv4 header checksum"
            );
            (h.source().to_vec(), h.destination().to_vec())
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (h.source().to_vec(), h.destination().to_vec())
        }
        _ => panic!("not ip"),
    };
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = if src.len() == 4 {
                t.calc_checksum_ipv4(src[..].try_into().unwrap(), dst[..].try_into().unwrap())
            } else {
                t.calc_checksum_ipv6(src[..].try_into().unwrap(), dst[..].try_into().unwrap())
            };
            assert_eq!(t.checksum(), want.unwrap(), "tcp checksum");
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let h = u.to_header();
                let want = if src.len() == 4 {
                    h.calc_checksum_ipv4_raw(
                        src[..].try_into().unwrap(),
                        dst[..].try_into().unwrap(),
                        u.payload(),
                    )
                } else {
                    h.calc_checksum_ipv6_raw(
                        src[..].try_into().unwrap(),
                        dst[..].try_into().unwrap(),
                        u.payload(),
                    )
                };
                assert_eq!(u.checksum(), want.unwrap(), "udp checksum");
            }
            if u.to_header().destination_port == 6081 {
                assert_checksums(&u.payload()[8..]);
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(wire::checksum::checksum(i.slice()), 0, "icmpv4 checksum");
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let s: [u8; 16] = src[..].try_into().unwrap();
            let d: [u8; 16] = dst[..].try_into().unwrap();
            assert!(i.is_checksum_valid(s, d), "icmpv6 checksum");
        }
        _ => panic!("no transport header"),
    }
}

/// Offloads `actions` for `frame` arriving on `kind` (a Geneve arrival of
/// VNI `tun` on the uplink), runs the program and checks its output
/// against the slow path's; returns the output.
fn forwards(
    lab: &Lab,
    kind: ProgramKind,
    frame: &[u8],
    tun: Option<u32>,
    actions: &[DpAction],
) -> Vec<u8> {
    let (arriving, key) = match tun {
        Some(vni) => (geneve_arrival(frame, vni), flow_key(frame, TUN, Some(vni))),
        None => (frame.to_vec(), flow_key(frame, IN, None)),
    };
    let (fk, e) = offload(&key, actions, lab).expect("offloadable");
    lab.maps.insert(&fk, &e).expect("insert");
    let before = lab.counters();
    let (v, mut out) = lab.run(kind, &arriving);
    assert_eq!(v, XdpAction::Redirect, "{actions:?}");
    let after = lab.counters();
    assert_eq!(
        after[FpCounter::Hit as usize],
        before[FpCounter::Hit as usize] + 1
    );
    assert_checksums(&out);
    let want = slow_path(lab, frame, &key, actions);
    if e.actions & act::GENEVE_PUSH != 0 {
        // The identification and the header checksum it feeds may differ.
        out[18..20].copy_from_slice(&want[18..20]);
        out[24..26].copy_from_slice(&want[24..26]);
    }
    assert_eq!(out, want, "program vs slow path for {actions:?}");
    let got = lab.maps.get(&fk).unwrap().expect("entry");
    assert_eq!(got.packets, 1);
    assert_eq!(got.bytes, frame.len() as u64);
    assert!(got.used_ns > 0);
    lab.maps.remove(&fk).unwrap();
    out
}

#[test]
fn both_programs_pass_the_verifier() {
    let Some(lab) = lab("both_programs_pass_the_verifier") else {
        return;
    };
    let m = lab.maps.program_maps(lab._xsk.as_fd());
    for kind in [ProgramKind::All, ProgramKind::Uplink] {
        let n = assemble(kind, m, XdpAction::Pass).len();
        eprintln!("{kind:?}: {n} instructions");
        assert!(n < 4096, "{kind:?} is {n} instructions");
    }
}

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
    assert_eq!(e1.tun_sport, lab.tpl.src_port(k1.hash()).to_be_bytes());
    assert_eq!(e2.tun_sport, lab.tpl.src_port(k2.hash()).to_be_bytes());
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
        flow_hash: 1,
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

/// A small deterministic generator (xorshift64*), so a failure names its
/// seed and case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for x in &mut b {
            *x = self.next() as u8;
        }
        b
    }
}

fn random_frame(r: &mut Rng) -> Vec<u8> {
    let (src, dst) = (r.bytes::<6>(), r.bytes::<6>());
    let payload = vec![r.next() as u8; r.below(200) as usize];
    let (sp, dp) = (r.next() as u16, r.next() as u16);
    let ttl = 2 + r.below(250) as u8;
    let mut f = Vec::new();
    let eth = PacketBuilder::ethernet2(src, dst);
    if r.below(2) == 0 {
        let ip = eth.ipv4(r.bytes(), r.bytes(), ttl);
        match r.below(3) {
            0 => ip
                .tcp(sp, dp, r.next() as u32, 500)
                .ack(3)
                .write(&mut f, &payload),
            1 => ip.udp(sp, dp).write(&mut f, &payload),
            _ => ip.icmpv4_echo_request(sp, dp).write(&mut f, &payload),
        }
        .unwrap();
        f[15] = r.next() as u8; // TOS
        f[24] = 0;
        f[25] = 0;
        let c = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    } else {
        let ip = eth.ipv6(r.bytes(), r.bytes(), ttl);
        match r.below(3) {
            0 => ip
                .tcp(sp, dp, r.next() as u32, 500)
                .ack(3)
                .write(&mut f, &payload),
            1 => ip.udp(sp, dp).write(&mut f, &payload),
            _ => ip.icmpv6_echo_request(sp, dp).write(&mut f, &payload),
        }
        .unwrap();
    }
    if r.below(4) == 0 {
        f = tagged(&f, 0x8100, r.next() as u16 & 0xefff);
    }
    f
}

fn random_actions(r: &mut Rng, v4: bool) -> Vec<DpAction> {
    let mut a = Vec::new();
    for _ in 0..r.below(6) {
        a.push(match r.below(11) {
            0 => DpAction::SetEthSrc(r.bytes()),
            1 => DpAction::SetEthDst(r.bytes()),
            2 if v4 => DpAction::SetIpv4Src(r.bytes()),
            2 => DpAction::SetIpv6Src(r.bytes()),
            3 if v4 => DpAction::SetIpv4Dst(r.bytes()),
            3 => DpAction::SetIpv6Dst(r.bytes()),
            4 => DpAction::SetTpSrc(r.next() as u16),
            5 => DpAction::SetTpDst(r.next() as u16),
            6 => DpAction::SetTtl(r.next() as u8),
            7 => DpAction::SetTos(r.next() as u8),
            8 => DpAction::PopVlan,
            9 => DpAction::SetVlanTci(r.next() as u16 & 0xefff),
            _ => DpAction::PushVlan {
                tpid: 0x8100,
                tci: r.next() as u16 & 0xefff,
            },
        });
    }
    a.push(if r.below(3) == 0 {
        DpAction::TunnelPush {
            port: TUN,
            vni: r.next() as u32 & 0xff_ffff,
            dst: mapped(REMOTE),
        }
    } else {
        DpAction::Output(OUT)
    });
    a
}

/// Random packets and random action lists: wherever `offload` accepts,
/// the program's bytes equal the executor's; where it refuses, the reason
/// is one the executor agrees with or a shape the fast path leaves out.
#[test]
fn random_rewrites_match_the_executor() {
    let Some(lab) = lab("random_rewrites_match_the_executor") else {
        return;
    };
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut compared, mut refused) = (0, 0);
    for case in 0..600 {
        let p = random_frame(&mut r);
        let v4 = p[12..14] == [0x08, 0x00] || p[16..18] == [0x08, 0x00];
        let acts = random_actions(&mut r, v4);
        let key = flow_key(&p, IN, None);
        if offload(&key, &acts, &lab).is_none() {
            refused += 1;
            continue;
        }
        let _ = case;
        forwards(&lab, ProgramKind::All, &p, None, &acts);
        compared += 1;
    }
    eprintln!("{compared} compared, {refused} refused");
    assert!(compared > 300, "{compared} compared, {refused} refused");
}
