//! The outer UDP source port (and IPv6 flow label) is a function of the
//! inner flow alone (RFC 8926 §3.3): every packet of one TCP connection or
//! UDP flow leaves on one port, whatever its flags, payload, TTL, TOS, IP
//! identification, MACs or VLAN tag, and whatever the VNI, options or
//! underlay family of the tunnel. Inner frames are built with etherparse.
//!
//! The property test compares each packet's port with the port of a
//! canonical packet built from the 5-tuple alone; the golden tests pin the
//! port of a few flows, so that a change of the hash (which moves every
//! flow to another underlay path on upgrade) is a visible decision.

mod common;

use common::*;
use encap::{decap, inner_flow_hash, DecapConfig, Options, PerPacket, Template};
use etherparse::{
    IpDscp, IpHeaders, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpHeader,
    VlanId,
};
use proptest::prelude::*;

/// The inner 5-tuple.
#[derive(Clone, Copy, Debug)]
struct Tuple {
    v6: bool,
    tcp: bool,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
}

/// Everything about an inner packet that is not its 5-tuple.
#[derive(Clone, Debug, Default)]
struct Rest {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    ttl: u8,
    dscp: u8,
    ident: u16,
    df: bool,
    label: u32,
    /// SYN, ACK, PSH, FIN, RST, URG, ECE, CWR.
    flags: [bool; 8],
    seq: u32,
    ack: u32,
    window: u16,
    payload: Vec<u8>,
}

fn v4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// The inner Ethernet frame of `t` with `r`.
fn build(t: &Tuple, r: &Rest) -> Vec<u8> {
    let ip = if t.v6 {
        IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: r.dscp,
                flow_label: Ipv6FlowLabel::try_new(r.label & 0xfffff).unwrap(),
                hop_limit: r.ttl,
                source: t.src,
                destination: t.dst,
                ..Default::default()
            },
            Default::default(),
        )
    } else {
        let mut h = Ipv4Header::new(0, r.ttl, IpNumber::TCP, v4(&t.src), v4(&t.dst)).unwrap();
        h.dscp = IpDscp::try_new(r.dscp & 0x3f).unwrap();
        h.identification = r.ident;
        h.dont_fragment = r.df;
        IpHeaders::Ipv4(h, Default::default())
    };
    let eth = PacketBuilder::ethernet2(r.src_mac, r.dst_mac);
    let mut out = Vec::new();
    let write_l4 = |out: &mut Vec<u8>, b: etherparse::PacketBuilderStep<IpHeaders>| {
        if t.tcp {
            let mut h = TcpHeader::new(t.sport, t.dport, r.seq, r.window);
            let f = r.flags;
            (h.syn, h.ack, h.psh, h.fin, h.rst, h.urg, h.ece, h.cwr) =
                (f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
            h.acknowledgment_number = r.ack;
            b.tcp_header(h).write(out, &r.payload).unwrap();
        } else {
            b.udp(t.sport, t.dport).write(out, &r.payload).unwrap();
        }
    };
    match r.vlan {
        Some(v) => write_l4(
            &mut out,
            eth.single_vlan(VlanId::try_new(v).unwrap()).ip(ip),
        ),
        None => write_l4(&mut out, eth.ip(ip)),
    }
    out
}

/// The canonical packet of a 5-tuple: fixed MACs, TTL 64, nothing else.
fn canonical(t: &Tuple) -> Vec<u8> {
    build(
        t,
        &Rest {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            ttl: 64,
            ..Default::default()
        },
    )
}

/// Encapsulates `inner`; returns the outer UDP source port and, over IPv6,
/// the outer flow label, as decap and the bytes say.
fn outer_port(inner: &[u8], ipv6: bool, vni: u32, options: &Options, ip_id: u16) -> (u16, u32) {
    let t = Template::new(&config(ipv6, false)).unwrap();
    let mut f = frame_with(inner);
    let pkt = PerPacket {
        vni,
        options,
        ip_id,
        oam: false,
    };
    let (off, len) = t.push(&mut f, HEADROOM, inner.len(), &pkt).unwrap();
    let outer = &f[off..off + len];
    let d = decap(outer, &DecapConfig::default()).unwrap();
    let label = if ipv6 {
        u32::from_be_bytes([0, outer[15] & 0x0f, outer[16], outer[17]])
    } else {
        0
    };
    (d.meta.src_port, label)
}

fn tuple() -> impl Strategy<Value = Tuple> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(v6, tcp, src, dst, sport, dport)| Tuple {
            v6,
            tcp,
            src,
            dst,
            sport,
            dport,
        })
}

prop_compose! {
    fn rest()(
        src_mac in any::<[u8; 6]>(),
        dst_mac in any::<[u8; 6]>(),
        vlan in prop::option::of(0u16..4096),
        ttl in any::<u8>(),
        dscp in any::<u8>(),
        ident in any::<u16>(),
        df in any::<bool>(),
        label in any::<u32>(),
        flags in any::<[bool; 8]>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        window in any::<u16>(),
        payload in prop::collection::vec(any::<u8>(), 0..1200),
    ) -> Rest {
        // A multicast source MAC is still a frame; nothing here reads it.
        Rest { src_mac, dst_mac, vlan, ttl, dscp, ident, df, label, flags, seq, ack, window, payload }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any packet of a flow leaves on the port of the flow's canonical
    /// packet, through any tunnel configuration.
    #[test]
    fn outer_port_depends_only_on_the_inner_5_tuple(
        t in tuple(),
        a in rest(),
        b in rest(),
        ipv6 in any::<bool>(),
        vni_a in 0u32..(1 << 24),
        vni_b in 0u32..(1 << 24),
        with_option in any::<bool>(),
        ip_id in any::<u16>(),
    ) {
        let mut opts = Options::new();
        if with_option {
            opts.push(0x0102, 0x80, &[0, 0, 0, 0xab]).unwrap();
        }
        let reference = outer_port(&canonical(&t), ipv6, 1, &Options::new(), 0);
        let pa = outer_port(&build(&t, &a), ipv6, vni_a, &opts, ip_id);
        let pb = outer_port(&build(&t, &b), !ipv6, vni_b, &Options::new(), !ip_id);
        prop_assert_eq!(pa, reference);
        prop_assert_eq!(pb.0, reference.0);
        prop_assert!((32768..61000).contains(&pa.0));
    }
}

const POD1: [u8; 16] = [10, 244, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const POD2: [u8; 16] = [10, 244, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const POD1_V6: [u8; 16] = [0xfd, 0, 0x0a, 0xf4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const POD2_V6: [u8; 16] = [0xfd, 0, 0x0a, 0xf4, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];

fn tcp4(sport: u16, dport: u16) -> Tuple {
    Tuple {
        v6: false,
        tcp: true,
        src: POD1,
        dst: POD2,
        sport,
        dport,
    }
}

/// One connection's life, SYN to FIN and RST, each segment with its own
/// flags, sequence numbers and payload: one port per direction.
#[test]
fn a_tcp_connection_keeps_one_port_per_direction() {
    let fwd = tcp4(40000, 5201);
    let rev = Tuple {
        src: POD2,
        dst: POD1,
        sport: 5201,
        dport: 40000,
        ..fwd
    };
    let segments: [([bool; 8], usize); 6] = [
        ([true, false, false, false, false, false, false, false], 0),
        ([true, true, false, false, false, false, false, false], 0),
        ([false, true, false, false, false, false, false, false], 0),
        ([false, true, true, false, false, false, false, false], 1400),
        ([false, true, false, true, false, false, false, false], 0),
        ([false, false, false, false, true, false, true, true], 0),
    ];
    for t in [fwd, rev] {
        let ports: Vec<u16> = segments
            .iter()
            .enumerate()
            .map(|(i, (flags, n))| {
                let r = Rest {
                    ttl: 64 - i as u8,
                    ident: i as u16,
                    flags: *flags,
                    seq: 1000 * i as u32,
                    payload: vec![i as u8; *n],
                    ..Default::default()
                };
                outer_port(&build(&t, &r), false, 42, &Options::new(), i as u16).0
            })
            .collect();
        assert!(ports.iter().all(|&p| p == ports[0]), "{t:?}: {ports:?}");
    }
}

/// Distinct flows spread over the range: 2000 connections from one client
/// to one server (only the source port differs) collide about as often as
/// random ports would (expected ~70 collisions in 28232 ports).
#[test]
fn flows_spread_over_the_port_range() {
    let mut seen = std::collections::HashSet::new();
    for sport in 30000..32000 {
        seen.insert(outer_port(&canonical(&tcp4(sport, 443)), false, 1, &Options::new(), 0).0);
    }
    assert!(seen.len() > 1850, "{} distinct ports", seen.len());
}

/// Pinned values: changing the hash moves every flow to a new underlay
/// path on upgrade, so it must be a decision, not an accident.
#[test]
fn golden_ports() {
    let udp6 = Tuple {
        v6: true,
        tcp: false,
        src: POD1_V6,
        dst: POD2_V6,
        sport: 53000,
        dport: 53,
    };
    let cases = [
        (canonical(&tcp4(40000, 5201)), GOLDEN[0]),
        (canonical(&tcp4(5201, 40000)), GOLDEN[1]),
        (canonical(&udp6), GOLDEN[2]),
        (inner_icmp4(32), GOLDEN[3]),
    ];
    let got: Vec<u16> = cases
        .iter()
        .map(|(f, _)| outer_port(f, false, 7, &Options::new(), 0).0)
        .collect();
    let want: Vec<u16> = cases.iter().map(|c| c.1).collect();
    assert_eq!(got, want);
}

const GOLDEN: [u16; 4] = [33579, 35151, 49289, 51737];

/// IPv4 fragments of one datagram (first and later, the first with its
/// ports) share a port: the underlay must not reorder them.
#[test]
fn fragments_of_one_datagram_share_a_port() {
    let t = Tuple {
        tcp: false,
        ..tcp4(5000, 6000)
    };
    let whole = canonical(&t);
    let mut first = whole.clone();
    first[20] |= 0x20; // MF
    let mut later = whole.clone();
    later[20..22].copy_from_slice(&185u16.to_be_bytes());
    later.truncate(14 + 20 + 8);
    // The later fragment's payload starts mid-datagram: no ports there.
    later[34..42].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let p = |f: &[u8]| outer_port(f, false, 1, &Options::new(), 0).0;
    assert_eq!(p(&first), p(&later));
    // And a non-IP frame hashes on its L2 fields.
    let mut arp = whole.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut arp2 = arp.clone();
    arp2[20] = 0xff;
    assert_eq!(inner_flow_hash(&arp), inner_flow_hash(&arp2));
    arp2[0] ^= 1;
    assert_ne!(inner_flow_hash(&arp), inner_flow_hash(&arp2));
}
