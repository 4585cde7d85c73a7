//! Geneve through the whole in-memory pipeline, as the wire sees it:
//!
//! - every packet of one TCP connection leaves on one outer UDP source port
//!   per direction (RFC 8926 §3.3), whatever its flags, whether it hit the
//!   EMC, a megaflow or an upcall, whatever batch it came in, with or
//!   without conntrack recirculation, and on any poll thread;
//! - a tunnel port with a fixed `key` receives that VNI only (others are
//!   `drop_geneve_vni`), a `flow` port receives any into `tun_id`; one with a
//!   fixed `remote_ip` receives from that remote only (`drop_geneve_remote`);
//! - control packets (the O bit) are dropped as `drop_geneve_oam`
//!   (RFC 8926 §3.4);
//! - both fragments of a UDP datagram cross the tunnel, on one outer port.
//!
//! Inner frames are built with etherparse; outer frames with
//! `encap::Template`, as the remote node would send them.

use datapath::buf::Batch;
use datapath::{MemDatapath, PmdConfig};
use encap::{Options, PerPacket, Template, TunnelConfig};
use etherparse::PacketBuilder;
use flowtable::tunnel::{Tunnel, TunnelRoute};
use flowtable::DropReason;
use std::collections::BTreeSet;
use std::net::IpAddr;

const UPLINK: u32 = 10;
const GNV: u32 = 100;
const LOCAL: &str = "192.168.77.1";
const REMOTE: &str = "192.168.77.2";
const POD1: [u8; 4] = [10, 244, 1, 2];
const POD2: [u8; 4] = [10, 244, 2, 3];
const MAC1: [u8; 6] = [2, 0, 0, 0, 1, 2];
const MAC2: [u8; 6] = [2, 0, 0, 0, 2, 3];

/// A node: pods on ports 1 and 2, the uplink, and Geneve ports (number,
/// fixed key) with our local address.
fn node(tunnels: &[(u32, Option<u32>)], flows: &str, emc_inv_prob: u32) -> MemDatapath {
    let mut dp = MemDatapath::new(
        2048,
        PmdConfig {
            emc_inv_prob,
            ..Default::default()
        },
    );
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    dp.add_port(UPLINK, "ul0");
    for &(no, key) in tunnels {
        let t = Tunnel {
            local: LOCAL.parse().unwrap(),
            remote: None,
            key,
        };
        dp.bridge.ports.add_tunnel(no, &format!("gnv{no}"), t);
    }
    let remote: IpAddr = REMOTE.parse().unwrap();
    dp.bridge.tunnel_routes.set(
        remote,
        Some(TunnelRoute {
            port: UPLINK,
            src_mac: [2, 0x77, 0, 0, 0, 1],
            dst_mac: [2, 0x77, 0, 0, 0, 2],
            mtu: 9000,
        }),
    );
    let file = ctl::ofp::parse_flow_file(flows, &dp.bridge.ports).unwrap_or_else(|e| panic!("{e}"));
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0)
        .unwrap_or_else(|(i, e)| panic!("change {i}: {e}"));
    dp
}

/// A TCP segment with `flags` (etherparse setters by name), sequence
/// number `seq`, TTL `ttl` and `len` bytes of payload.
fn segment(
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    flags: &str,
    seq: u32,
    ttl: u8,
    len: usize,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(src, dst, ttl)
        .tcp(ports.0, ports.1, seq, 64000);
    let b = flags.chars().fold(b, |b, c| match c {
        'S' => b.syn(),
        'A' => b.ack(seq.wrapping_add(1)),
        'P' => b.psh(),
        'F' => b.fin(),
        'R' => b.rst(),
        'U' => b.urg(7),
        'E' => b.ece(),
        'C' => b.cwr(),
        _ => panic!("flag {c}"),
    });
    let mut f = Vec::new();
    b.write(&mut f, &vec![0x42; len]).unwrap();
    f
}

/// One connection's segments in one direction, SYN to FIN.
fn connection(fwd: bool) -> Vec<Vec<u8>> {
    let (src, dst, ports) = if fwd {
        (POD1, POD2, (40000, 5201))
    } else {
        (POD2, POD1, (5201, 40000))
    };
    let shapes: [(&str, usize); 8] = [
        (if fwd { "S" } else { "SA" }, 0),
        ("A", 0),
        ("PA", 1400),
        ("A", 1400),
        ("PAEC", 100),
        ("UA", 10),
        ("FA", 0),
        ("R", 0),
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, (flags, len))| {
            segment(src, dst, ports, flags, 1000 * i as u32, 64 - i as u8, *len)
        })
        .collect()
}

/// The outer UDP source port of an encapsulated IPv4-underlay frame.
fn outer_sport(f: &[u8]) -> u16 {
    assert_eq!(&f[12..14], &[0x08, 0x00], "an IPv4 underlay frame");
    assert_eq!(f[23], 17, "outer UDP");
    u16::from_be_bytes([f[34], f[35]])
}

/// Sends `pkts` in from port 1 in batches of `per_batch`; returns the
/// outer source ports of what left on the uplink.
fn ports_of(dp: &mut MemDatapath, pkts: &[Vec<u8>], per_batch: usize) -> Vec<u16> {
    for chunk in pkts.chunks(per_batch) {
        for p in chunk {
            assert!(dp.inject(1, p));
        }
        dp.run_until_idle(0);
    }
    let out = dp.take_tx(UPLINK);
    assert_eq!(out.len(), pkts.len(), "drops: {:?}", dp.pmd.stats.drops);
    out.iter().map(|f| outer_sport(f)).collect()
}

const TO_TUNNEL: &str =
    "in_port=1,actions=set_field:192.168.77.2->tun_dst,set_field:0x2a->tun_id,output:gnv100\n";

/// Through conntrack: the SYN is +new, the rest +est, each pass a
/// recirculation with its own cache entries.
const TO_TUNNEL_CT: &str = "\
table=0,in_port=1,tcp,actions=ct(commit,table=1)
table=1,in_port=1,ct_state=+trk+new,actions=set_field:192.168.77.2->tun_dst,set_field:0x2a->tun_id,output:gnv100
table=1,in_port=1,ct_state=+trk+est,actions=set_field:192.168.77.2->tun_dst,set_field:0x2a->tun_id,output:gnv100
table=1,in_port=1,ct_state=+trk+inv,actions=set_field:192.168.77.2->tun_dst,set_field:0x2a->tun_id,output:gnv100
table=1,in_port=1,actions=set_field:192.168.77.2->tun_dst,set_field:0x2a->tun_id,output:gnv100
";

#[test]
fn one_outer_port_per_direction_of_a_tcp_connection() {
    let mut by_dir = [BTreeSet::new(), BTreeSet::new()];
    // Two "poll threads" (separate caches), EMC inserting always or
    // rarely, one packet per batch or a whole direction in one, with and
    // without conntrack: the same port for every packet of a direction.
    for flows in [TO_TUNNEL, TO_TUNNEL_CT] {
        for (emc, per_batch) in [(1, 1), (1, 32), (100, 1), (100, 3)] {
            let mut dp = node(&[(GNV, None)], flows, emc);
            for (dir, fwd) in [(0, true), (1, false)] {
                let ports = ports_of(&mut dp, &connection(fwd), per_batch);
                by_dir[dir].extend(ports.iter().copied());
                assert!(
                    ports.iter().all(|&p| p == ports[0]),
                    "fwd={fwd} emc=1/{emc} batch={per_batch}: {ports:?}"
                );
            }
        }
    }
    assert_eq!(
        by_dir[0].len(),
        1,
        "one port for the forward direction: {by_dir:?}"
    );
    assert_eq!(
        by_dir[1].len(),
        1,
        "one port for the reverse direction: {by_dir:?}"
    );
    // The two directions are two flows (they may share a port by chance,
    // not by construction; these two do not).
    assert_ne!(by_dir[0], by_dir[1]);
}

/// Encapsulates `inner` as the remote node would, with `vni` and the O bit
/// when `oam`.
fn from_remote(inner: &[u8], vni: u32, oam: bool) -> Vec<u8> {
    let cfg = TunnelConfig::new(
        [2, 0x77, 0, 0, 0, 2],
        [2, 0x77, 0, 0, 0, 1],
        REMOTE.parse().unwrap(),
        LOCAL.parse().unwrap(),
    );
    let t = Template::new(&cfg).unwrap();
    let mut f = vec![0u8; 256 + inner.len()];
    f[256..].copy_from_slice(inner);
    let opts = Options::new();
    let pkt = PerPacket {
        vni,
        options: &opts,
        ip_id: 1,
        oam,
    };
    let (off, len) = t.push(&mut f, 256, inner.len(), &pkt).unwrap();
    f[off..off + len].to_vec()
}

/// Runs `frames` in from the uplink as one batch.
fn receive(dp: &mut MemDatapath, frames: &[Vec<u8>]) {
    let mut batch = Batch::default();
    for f in frames {
        batch.push(dp.pool.alloc_from(f).expect("frame"));
    }
    dp.pmd
        .process_uplink(&dp.bridge, &mut dp.pool, &mut dp.ports, &batch, 0);
}

fn inner() -> Vec<u8> {
    segment(POD2, POD1, (5201, 40000), "PA", 1, 64, 20)
}

#[test]
fn a_fixed_key_port_receives_its_vni_only() {
    let mut dp = node(&[(GNV, Some(42))], "in_port=gnv100,actions=output:2\n", 1);
    let vnis = [42, 0, 43, 0xff_ffff, 42];
    let frames: Vec<_> = vnis
        .iter()
        .map(|&v| from_remote(&inner(), v, false))
        .collect();
    receive(&mut dp, &frames);
    let out = dp.take_tx(2);
    assert_eq!(out.len(), 2, "only VNI 42 is delivered");
    assert!(out.iter().all(|f| *f == inner()));
    assert_eq!(dp.pmd.stats.drops_for(DropReason::GeneveVni), 3);
    assert_eq!(DropReason::GeneveVni.name(), "drop_geneve_vni");
    assert_eq!(dp.pmd.stats.total_drops(), 3);
}

#[test]
fn a_fixed_remote_port_receives_from_its_remote_only() {
    let mut dp = node(&[(GNV, Some(42))], "in_port=gnv100,actions=output:2\n", 1);
    // gnv100 now takes VNI 42 from 192.168.77.3 only; the frames come from
    // 192.168.77.2.
    let fixed = |remote: &str| Tunnel {
        local: LOCAL.parse().unwrap(),
        remote: Some(remote.parse().unwrap()),
        key: Some(42),
    };
    dp.bridge
        .ports
        .add_tunnel(GNV, "gnv100", fixed("192.168.77.3"));
    receive(&mut dp, &[from_remote(&inner(), 42, false)]);
    assert!(dp.take_tx(2).is_empty());
    assert_eq!(dp.pmd.stats.drops_for(DropReason::GeneveRemote), 1);
    assert_eq!(DropReason::GeneveRemote.name(), "drop_geneve_remote");
    // Fixed to the sender: delivered.
    dp.bridge.ports.add_tunnel(GNV, "gnv100", fixed(REMOTE));
    receive(&mut dp, &[from_remote(&inner(), 42, false)]);
    assert_eq!(dp.take_tx(2), vec![inner()]);
    assert_eq!(dp.pmd.stats.total_drops(), 1);
}

#[test]
fn a_flow_key_port_receives_any_vni_into_tun_id() {
    let flows = "in_port=gnv100,tun_id=43,actions=output:2\nin_port=gnv100,tun_id=0xffffff,actions=output:1\n";
    let mut dp = node(&[(GNV, None)], flows, 1);
    receive(
        &mut dp,
        &[
            from_remote(&inner(), 43, false),
            from_remote(&inner(), 0xff_ffff, false),
        ],
    );
    assert_eq!(dp.take_tx(2).len(), 1);
    assert_eq!(dp.take_tx(1).len(), 1);
    assert_eq!(dp.pmd.stats.total_drops(), 0);
}

#[test]
fn a_fixed_key_port_wins_over_a_flow_port_with_the_same_address() {
    let flows = "in_port=gnv100,actions=output:1\nin_port=gnv101,actions=output:2\n";
    let mut dp = node(&[(GNV, Some(42)), (101, None)], flows, 1);
    receive(
        &mut dp,
        &[
            from_remote(&inner(), 42, false),
            from_remote(&inner(), 7, false),
        ],
    );
    assert_eq!(dp.take_tx(1).len(), 1, "VNI 42 enters on the key=42 port");
    assert_eq!(dp.take_tx(2).len(), 1, "VNI 7 enters on the flow port");
    assert_eq!(dp.pmd.stats.total_drops(), 0);
}

#[test]
fn control_packets_are_dropped_and_counted() {
    let mut dp = node(&[(GNV, None)], "in_port=gnv100,actions=output:2\n", 1);
    receive(
        &mut dp,
        &[
            from_remote(&inner(), 42, true),
            from_remote(&inner(), 42, false),
        ],
    );
    assert_eq!(dp.take_tx(2).len(), 1, "only the data packet is delivered");
    assert_eq!(dp.pmd.stats.drops_for(DropReason::GeneveOam), 1);
    assert_eq!(DropReason::GeneveOam.name(), "drop_geneve_oam");
    assert_eq!(dp.pmd.stats.total_drops(), 1);
}

/// A UDP datagram of 1000 bytes in two IPv4 fragments (the first with the
/// UDP header, whose length counts all 1008 bytes).
fn udp_fragments() -> [Vec<u8>; 2] {
    let b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(POD1, POD2, 64)
        .udp(5353, 53);
    let mut whole = Vec::new();
    b.write(&mut whole, &[0x77; 1000]).unwrap();
    let cut = |from: usize, to: usize, more: bool| {
        let mut f = whole[..34].to_vec();
        let chunk = &whole[34 + from..34 + to];
        let word = (from / 8) as u16 | if more { 0x2000 } else { 0 };
        f[20..22].copy_from_slice(&word.to_be_bytes());
        f[16..18].copy_from_slice(&(20 + chunk.len() as u16).to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(chunk);
        f
    };
    [cut(0, 512, true), cut(512, 1008, false)]
}

#[test]
fn both_fragments_of_a_udp_datagram_cross_the_tunnel_on_one_port() {
    let frags = udp_fragments();
    let mut dp = node(&[(GNV, None)], TO_TUNNEL, 1);
    let ports = ports_of(&mut dp, &frags, 2);
    assert_eq!(ports[0], ports[1], "one datagram, one path");
    // And the remote node delivers both.
    let mut rx = node(&[(GNV, None)], "in_port=gnv100,actions=output:2\n", 1);
    let frames: Vec<_> = frags.iter().map(|f| from_remote(f, 0x2a, false)).collect();
    receive(&mut rx, &frames);
    assert_eq!(rx.take_tx(2), frags.to_vec());
    assert_eq!(rx.pmd.stats.total_drops(), 0);
}
