//! Geneve encap (`Template::push`) and decap (`decap_into`) per packet, 64-byte inner frames, IPv4 and IPv6
//! underlays, each beside a baseline measured in the same run.
//!
//! Encap baseline: the same outer headers built field by field with
//! etherparse's header structs and serialised per packet, the IPv4 header
//! checksum summed from scratch and the IPv6 UDP checksum computed by
//! etherparse, which is what a datapath without templates would do. Decap
//! baseline: etherparse's generic slicer over the outer frame, then the
//! Geneve view over the UDP payload.
//!
//! Both sides write into one datapath-shaped frame (packet after 256 bytes
//! of headroom), so neither pays for allocation.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use encap::{decap_into, DecapConfig, Options, PerPacket, Template, TunnelConfig, TunnelMeta};
use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, SlicedPacket,
    TransportSlice, UdpHeader,
};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use wire::geneve::GenevePacket;

const HEADROOM: usize = 256;
const INNER: usize = 64;
const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [192, 0, 2, 2];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn template(ipv6: bool) -> Template {
    let cfg = if ipv6 {
        TunnelConfig::new(
            SRC_MAC,
            DST_MAC,
            Ipv6Addr::from(SRC6).into(),
            Ipv6Addr::from(DST6).into(),
        )
    } else {
        TunnelConfig::new(
            SRC_MAC,
            DST_MAC,
            Ipv4Addr::from(SRC4).into(),
            Ipv4Addr::from(DST4).into(),
        )
    };
    Template::new(&cfg).expect("template")
}

fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 4096];
    for (i, b) in f[HEADROOM..HEADROOM + INNER].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// The baseline encap: headers built per packet with etherparse.
fn etherparse_push(frame: &mut [u8], vni: u32, hash: u32, id: u16, ipv6: bool) -> usize {
    let ip_len = if ipv6 { 40 } else { 20 };
    let off = HEADROOM - (14 + ip_len + 8 + 8);
    let udp_len = 8 + 8 + INNER;
    let sport = 32768 + ((u64::from(hash) * 28232) >> 32) as u16;
    let gen = HEADROOM - 8;
    frame[gen..HEADROOM].copy_from_slice(&[0, 0, 0x65, 0x58, 0, 0, 0, 0]);
    frame[gen + 4..gen + 7].copy_from_slice(&(vni << 8).to_be_bytes()[..3]);
    let eth = Ethernet2Header {
        source: SRC_MAC,
        destination: DST_MAC,
        ether_type: if ipv6 {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        },
    };
    if ipv6 {
        let ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::try_new(hash & 0xfffff).expect("label"),
            payload_length: udp_len as u16,
            next_header: IpNumber::UDP,
            hop_limit: 64,
            source: SRC6,
            destination: DST6,
        };
        // The checksum covers the Geneve header and the inner frame.
        let udp = UdpHeader::with_ipv6_checksum(sport, 6081, &ip, &frame[gen..HEADROOM + INNER])
            .expect("udp");
        let mut w: &mut [u8] = &mut frame[off..gen];
        eth.write(&mut w).expect("eth");
        ip.write(&mut w).expect("ipv6");
        udp.write(&mut w).expect("udp");
    } else {
        let mut ip = Ipv4Header::new(udp_len as u16, 64, IpNumber::UDP, SRC4, DST4).expect("ip");
        ip.identification = id;
        ip.header_checksum = ip.calc_header_checksum();
        let udp = UdpHeader::without_ipv4_checksum(sport, 6081, 8 + INNER).expect("udp");
        let mut w: &mut [u8] = &mut frame[off..gen];
        eth.write(&mut w).expect("eth");
        ip.write(&mut w).expect("ipv4");
        udp.write(&mut w).expect("udp");
    }
    off
}

fn encap_bench(c: &mut Criterion) {
    let opts = Options::new();
    let mut g = c.benchmark_group("encap_64B");
    g.throughput(Throughput::Elements(1));
    for (name, ipv6) in [("ipv4", false), ("ipv6", true)] {
        let t = template(ipv6);
        let mut f = frame();
        let mut n = 0u32;
        g.bench_function(format!("template_{name}"), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let pkt = PerPacket {
                    vni: 5001,
                    options: &opts,
                    ip_id: n as u16,
                    oam: false,
                };
                black_box(t.push(black_box(&mut f), HEADROOM, INNER, &pkt)).expect("push")
            })
        });
        let mut f = frame();
        g.bench_function(format!("etherparse_{name}"), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                // The same inner-flow hash the template computes, so both
                // sides do the same work.
                let hash = encap::inner_flow_hash(&f[HEADROOM..HEADROOM + INNER]);
                black_box(etherparse_push(
                    black_box(&mut f),
                    5001,
                    hash,
                    n as u16,
                    ipv6,
                ))
            })
        });
    }
    g.finish();
}

fn decap_bench(c: &mut Criterion) {
    let mut opts = Options::new();
    opts.push(0x0102, 0x80, &[0, 1, 0, 2]).expect("option");
    let cfg = DecapConfig::default();
    let mut g = c.benchmark_group("decap_64B");
    g.throughput(Throughput::Elements(1));
    for (name, ipv6) in [("ipv4", false), ("ipv6", true)] {
        let t = template(ipv6);
        let mut f = frame();
        let pkt = PerPacket {
            vni: 5001,
            options: &opts,
            ip_id: 1,
            oam: false,
        };
        let (off, len) = t.push(&mut f, HEADROOM, INNER, &pkt).expect("push");
        let outer = &f[off..off + len];
        let mut meta = TunnelMeta::new();
        g.bench_function(format!("decap_{name}"), |b| {
            b.iter(|| {
                black_box(decap_into(black_box(outer), &cfg, &mut meta))
                    .expect("decap")
                    .0
            })
        });
        g.bench_function(format!("etherparse_{name}"), |b| {
            b.iter(|| {
                let p = SlicedPacket::from_ethernet(black_box(outer)).expect("parse");
                let Some(TransportSlice::Udp(u)) = p.transport else {
                    panic!("not udp")
                };
                let g = GenevePacket::new_checked(u.payload()).expect("geneve");
                black_box((g.vni(), g.options().count(), g.payload().len()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encap_bench, decap_bench);
criterion_main!(benches);
