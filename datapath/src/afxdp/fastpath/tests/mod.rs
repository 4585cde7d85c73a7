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
    /// The pod program of port `OUT`, for replies.
    pod_out: OwnedFd,
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
    let load = |kind, port| {
        maps.load(kind, xsk.as_fd(), XdpAction::Drop, port)
            .unwrap_or_else(|e| panic!("load {kind:?}: {}\n{}", e.err, e.log))
    };
    let (pod, pod_out) = (load(ProgramKind::All, IN), load(ProgramKind::All, OUT));
    // The uplink's OpenFlow number comes from the ports map.
    let uplink = load(ProgramKind::Uplink, 0);
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
        pod_out,
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

    /// Runs the pod program of port `port` (`IN` or `OUT`) on `pkt`.
    fn run_from(&self, port: u32, pkt: &[u8]) -> (XdpAction, Vec<u8>) {
        let prog = match port {
            IN => &self.pod,
            OUT => &self.pod_out,
            _ => panic!("no pod program for port {port}"),
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

/// What the slow path makes of `frame`: the executor's rewrites, then the template push (which hashes the inner
/// frame as it then is).
fn slow_path(lab: &Lab, frame: &[u8], actions: &[DpAction]) -> Vec<u8> {
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
    let want = slow_path(lab, frame, actions);
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

mod conntrack;
mod echo;
mod forward;
mod pipeline;
mod punt;
mod random;
