//! Geneve in the in-memory pipeline, per packet: a batch of 64-byte TCP
//! packets that hit the EMC and go out a tunnel port (encapsulation into the
//! headroom included), and a batch of Geneve packets received on an uplink
//! that are decapsulated and delivered to a pod port. Plain `output:2` with
//! the same packets is measured in the same run as the peer. IPv4 and IPv6
//! underlays.
//!
//! Encap harness: the transmitted descriptors are collected, and the same
//! input batch is run again (the pipeline works on copies of the
//! descriptors and a tunnel push only writes into the headroom, so the
//! inner bytes stay as they were). Decap harness: the same, over frames
//! holding encapsulated packets.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datapath::buf::{Batch, BATCH};
use datapath::pipeline::PmdConfig;
use datapath::MemDatapath;
use flowtable::tunnel::{Tunnel, TunnelRoute};
use oxvs_benches::{tcp64, Loopback};
use std::hint::black_box;
use std::net::IpAddr;

const UPLINK: u32 = 10;
const GNV: u32 = 100;

fn datapath(local: &str, remote: &str, flows: &str) -> MemDatapath {
    let cfg = PmdConfig {
        emc_inv_prob: 1,
        ..Default::default()
    };
    let mut dp = MemDatapath::new(1024, cfg);
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    dp.add_port(UPLINK, "ul0");
    dp.bridge.ports.add_tunnel(
        GNV,
        "gnv0",
        Tunnel {
            local: local.parse().unwrap(),
            remote: None,
            key: None,
        },
    );
    let remote: IpAddr = remote.parse().unwrap();
    dp.bridge.tunnel_routes.set(
        remote,
        Some(TunnelRoute {
            port: UPLINK,
            src_mac: [2, 0x77, 0, 0, 0, 1],
            dst_mac: [2, 0x77, 0, 0, 0, 2],
            mtu: 1500,
        }),
    );
    let file = ctl::ofp::parse_flow_file(flows, &dp.bridge.ports).expect("flows parse");
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).expect("flows apply");
    dp
}

fn batch_of(dp: &mut MemDatapath, pkts: &[Vec<u8>]) -> Batch {
    let mut batch = Batch::default();
    for p in pkts.iter().take(BATCH) {
        batch.push(dp.pool.alloc_from(p).expect("frame"));
    }
    batch
}

fn tunnel(c: &mut Criterion) {
    let mut g = c.benchmark_group("tunnel");
    g.throughput(Throughput::Elements(BATCH as u64));
    let pkts: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| tcp64([10, 244, 2, 3], 1000 + i as u16))
        .collect();

    // The peer: the same packets, EMC hits, plain output.
    let mut dp = datapath(
        "192.168.77.1",
        "192.168.77.2",
        "in_port=1,actions=output:2\n",
    );
    let batch = batch_of(&mut dp, &pkts);
    let mut lb = Loopback::default();
    g.bench_function("plain_output", |b| {
        b.iter(|| {
            lb.out.len = 0;
            dp.pmd
                .process(&dp.bridge, &mut dp.pool, &mut lb, 1, black_box(&batch), 0);
        })
    });

    for (name, local, remote, set) in [
        (
            "ipv4",
            "192.168.77.1",
            "192.168.77.2",
            "set_field:192.168.77.2->tun_dst",
        ),
        (
            "ipv6",
            "fd00:77::1",
            "fd00:77::2",
            "set_field:fd00:77::2->tun_ipv6_dst",
        ),
    ] {
        let flows = format!(
            "in_port=1,actions={set},set_field:0x2a->tun_id,output:gnv0\n\
             in_port=gnv0,tun_id=0x2a,actions=output:2\n"
        );
        let mut dp = datapath(local, remote, &flows);
        let batch = batch_of(&mut dp, &pkts);
        let mut lb = Loopback::default();
        dp.pmd
            .process(&dp.bridge, &mut dp.pool, &mut lb, 1, &batch, 0);
        assert_eq!(lb.out.len, BATCH, "every packet encapsulated");
        // Keep the encapsulated frames' bytes for the decap bench.
        let encapped: Vec<Vec<u8>> = lb
            .out
            .as_slice()
            .iter()
            .map(|d| dp.pool.data(d).to_vec())
            .collect();
        let before = dp.pmd.stats;
        g.bench_function(BenchmarkId::new("encap+output", name), |b| {
            b.iter(|| {
                lb.out.len = 0;
                dp.pmd
                    .process(&dp.bridge, &mut dp.pool, &mut lb, 1, black_box(&batch), 0);
            })
        });
        assert_eq!(dp.pmd.stats.total_drops(), before.total_drops(), "no drops");

        // The remote node: its tunnel port's local address is where the
        // packets above were sent.
        let mut rx = datapath(remote, local, &flows);
        let gen = batch_of(&mut rx, &encapped);
        let mut out = Loopback::default();
        rx.pmd
            .process_uplink(&rx.bridge, &mut rx.pool, &mut out, &gen, 0);
        assert_eq!(
            out.out.len, BATCH,
            "every packet decapsulated and delivered: {:?}",
            rx.pmd.stats
        );
        let before = rx.pmd.stats;
        g.bench_function(BenchmarkId::new("decap+output", name), |b| {
            b.iter(|| {
                out.out.len = 0;
                rx.pmd
                    .process_uplink(&rx.bridge, &mut rx.pool, &mut out, black_box(&gen), 0);
            })
        });
        assert_eq!(rx.pmd.stats.total_drops(), before.total_drops(), "no drops");
    }
    g.finish();
}

criterion_group!(benches, tunnel);
criterion_main!(benches);
