//! Per-packet cost of the in-memory pipeline: EMC hits, megaflow hits with
//! 1, 10 and 20 subtables, and upcalls; each beside a naive baseline (std
//! `HashMap` exact match, linear megaflow scan) measured in the same run.
//!
//! Throughput is reported per packet (32 per batch). Packets loop: what the
//! pipeline transmits is fed back as the next batch, so no bytes are copied
//! by the harness and the frames stay hot, as in a busy poll loop.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datapath::buf::{Batch, BATCH};
use datapath::pipeline::PmdConfig;
use datapath::MemDatapath;
use flowtable::extract::extract;
use flowtable::megaflow::MegaflowTable;
use flowtable::{translate, FlowKey};
use oxvs_benches::baseline::{HashMapEmc, LinearMegaflows};
use oxvs_benches::{tcp64, Loopback};
use std::hint::black_box;

fn setup(flows: &str, cfg: PmdConfig, pkts: &[Vec<u8>]) -> (MemDatapath, Batch) {
    let mut dp = MemDatapath::new(1024, cfg);
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    let file = ctl::ofp::parse_flow_file(flows, &dp.bridge.ports).expect("bench flows parse");
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).expect("bench flows apply");
    let mut batch = Batch::default();
    for p in pkts.iter().take(BATCH) {
        batch.push(dp.pool.alloc_from(p).expect("frame"));
    }
    (dp, batch)
}

/// The flow keys of `pkts` as received on port 1.
fn keys_of(pkts: &[Vec<u8>]) -> Vec<FlowKey> {
    pkts.iter()
        .map(|p| {
            let mut k = FlowKey::default();
            extract(p, 1, &mut k).expect("parses");
            k
        })
        .collect()
}

/// Runs one batch through the pipeline and returns the transmitted batch.
#[inline]
fn spin(dp: &mut MemDatapath, lb: &mut Loopback, batch: &Batch) -> Batch {
    lb.out.len = 0;
    dp.pmd.process(&dp.bridge, &mut dp.pool, lb, 1, batch, 0);
    lb.out
}

fn emc(c: &mut Criterion) {
    let mut g = c.benchmark_group("emc_hit");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n_flows in [1usize, 32] {
        let pkts: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| tcp64([10, 244, 2, 3], 1000 + (i % n_flows) as u16))
            .collect();
        let cfg = PmdConfig {
            emc_inv_prob: 1,
            ..Default::default()
        };
        let (mut dp, mut batch) = setup("in_port=1,actions=output:2\n", cfg, &pkts);
        let mut lb = Loopback::default();
        for _ in 0..4 {
            batch = spin(&mut dp, &mut lb, &batch);
        }
        assert_eq!(batch.len, BATCH, "every packet forwarded");
        let before = dp.pmd.stats;
        g.bench_function(BenchmarkId::new("pipeline", n_flows), |b| {
            b.iter(|| batch = spin(&mut dp, &mut lb, black_box(&batch)))
        });
        assert!(
            dp.pmd.stats.emc_hit - before.emc_hit == dp.pmd.stats.rx_packets - before.rx_packets
        );

        // Lookup only (parse + cache), ours and a std HashMap, same packets.
        let keys = keys_of(&pkts);
        let mut hm = HashMapEmc::default();
        for (i, k) in keys.iter().enumerate() {
            hm.map.insert(*k, i);
        }
        if n_flows == 1 {
            g.bench_function("parse_only", |b| {
                let mut k = FlowKey::default();
                b.iter(|| {
                    for p in &pkts {
                        black_box(extract(black_box(p), 1, &mut k).expect("parses"));
                    }
                })
            });
            g.bench_function("hash_only", |b| {
                b.iter(|| {
                    for k in &keys {
                        black_box(black_box(k).hash());
                    }
                })
            });
        }
        g.bench_function(BenchmarkId::new("parse+emc_lookup", n_flows), |b| {
            let mut k = FlowKey::default();
            b.iter(|| {
                for p in &pkts {
                    extract(black_box(p), 1, &mut k).expect("parses");
                    black_box(dp.pmd.emc.lookup(&k, k.hash()));
                }
            })
        });
        g.bench_function(BenchmarkId::new("parse+std_hashmap_lookup", n_flows), |b| {
            let mut k = FlowKey::default();
            b.iter(|| {
                for p in &pkts {
                    extract(black_box(p), 1, &mut k).expect("parses");
                    black_box(hm.lookup(&k));
                }
            })
        });
    }
    g.finish();
}

/// Rules whose lookups stop at a different depth for each destination
/// /16, so that the megaflows of the traffic below have `n` distinct masks.
fn subtable_rules(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "priority={},ip,nw_dst=10.{i}.0.0/16,nw_src=10.244.1.2/{},actions=output:2\n",
            1000 - i,
            8 + i
        ));
    }
    s
}

fn megaflow(c: &mut Criterion) {
    let mut g = c.benchmark_group("megaflow_hit");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [1usize, 10, 20] {
        let pkts: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| tcp64([10, (i % n) as u8, 0, i as u8], 1000))
            .collect();
        // The EMC never inserts: every packet goes to the megaflow table.
        let cfg = PmdConfig {
            emc_inv_prob: u32::MAX,
            ..Default::default()
        };
        let (mut dp, mut batch) = setup(&subtable_rules(n), cfg, &pkts);
        let mut lb = Loopback::default();
        for _ in 0..4 {
            batch = spin(&mut dp, &mut lb, &batch);
        }
        assert_eq!(batch.len, BATCH);
        assert_eq!(dp.pmd.megaflows.n_subtables(), n, "one subtable per mask");
        g.bench_function(BenchmarkId::new("pipeline", n), |b| {
            b.iter(|| batch = spin(&mut dp, &mut lb, black_box(&batch)))
        });

        let keys = keys_of(&pkts);
        let mut lin = LinearMegaflows::default();
        for (i, mf) in dp.pmd.megaflows.iter().enumerate() {
            lin.entries.push((mf.key, mf.mask, i));
        }
        let mt = &mut dp.pmd.megaflows;
        g.bench_function(BenchmarkId::new("lookup", n), |b| {
            b.iter(|| {
                for k in &keys {
                    black_box(mt.lookup(black_box(k)));
                }
            })
        });
        g.bench_function(BenchmarkId::new("linear_scan_lookup", n), |b| {
            b.iter(|| {
                for k in &keys {
                    black_box(lin.lookup(black_box(k)));
                }
            })
        });
    }
    g.finish();
}

/// A three-table pipeline as a CNI would write it: classify by port,
/// route by destination, rewrite and output.
const UPCALL_FLOWS: &str = "\
table=0,priority=200,in_port=1,dl_src=02:00:00:00:00:01,actions=load:0x1->NXM_NX_REG0[0..7],resubmit(,10)
table=0,priority=0,actions=drop
table=10,priority=100,ip,reg0=0x1/0xff,nw_dst=10.244.2.0/24,actions=dec_ttl,mod_dl_src:0a:00:00:00:00:fe,goto_table:20
table=10,priority=90,ip,reg0=0x1/0xff,actions=goto_table:20
table=20,priority=100,ip,nw_dst=10.244.2.3,actions=mod_dl_dst:02:00:00:00:02:03,output:2
table=20,priority=10,actions=output:2
";

fn upcall(c: &mut Criterion) {
    let mut g = c.benchmark_group("upcall");
    g.throughput(Throughput::Elements(1));
    let (dp, _) = setup(UPCALL_FLOWS, PmdConfig::default(), &[]);
    let mut k = FlowKey::default();
    extract(&tcp64([10, 244, 2, 3], 1000), 1, &mut k).expect("parses");
    let mut mt = MegaflowTable::default();
    g.bench_function("translate+install", |b| {
        b.iter(|| {
            let x = translate(&dp.bridge, black_box(&k), None);
            let r = mt.insert(&k, &x, 0).expect("room");
            mt.remove(r.slot);
        })
    });
    g.bench_function("translate", |b| {
        b.iter(|| black_box(translate(&dp.bridge, black_box(&k), None)))
    });
    g.finish();
}

/// A 64-byte UDP datagram from 10.244.1.2:`sport` to `dst`:53.
fn udp64(dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 2], dst, 64)
        .udp(sport, 53)
        .write(&mut out, &[0u8; 18])
        .expect("builds");
    out
}

/// Packets of committed connections through `ct(commit,table=1)`: a
/// conntrack lookup, a second pass through the EMC and the output, beside
/// plain forwarding of the same packets in the same run.
fn conntrack(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct");
    g.throughput(Throughput::Elements(BATCH as u64));
    let pkts: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| udp64([10, 244, 2, 3], 1000 + i as u16))
        .collect();
    let cfg = PmdConfig {
        emc_inv_prob: 1,
        ..Default::default()
    };
    let cases = [
        ("plain_output", "in_port=1,actions=output:2\n"),
        (
            "ct_recirc_output",
            "table=0,in_port=1,ip,actions=ct(commit,table=1,zone=1)\n\
             table=1,ip,ct_state=+trk,actions=output:2\n",
        ),
    ];
    for (name, flows) in cases {
        let (mut dp, mut batch) = setup(flows, cfg, &pkts);
        let mut lb = Loopback::default();
        for _ in 0..4 {
            batch = spin(&mut dp, &mut lb, &batch);
        }
        assert_eq!(batch.len, BATCH, "every packet forwarded");
        g.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| batch = spin(&mut dp, &mut lb, black_box(&batch)))
        });
    }
    g.finish();
}

/// New connections through the whole pipeline on one core: every packet
/// of every batch comes from a client address not seen before and goes
/// through `ct(commit, nat(dst=...), table=1)` to a pod, then out. Each
/// batch moves time 8 ms on and expires up to 64 entries in the same
/// loop (the daemon does that on its control thread), so with UDP's 60 s
/// first-packet timeout the table settles near 240 000 connections.
fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct");
    g.throughput(Throughput::Elements(BATCH as u64));
    let pkts: Vec<Vec<u8>> = (0..BATCH).map(|_| udp64([10, 96, 0, 10], 4000)).collect();
    let cfg = PmdConfig {
        emc_inv_prob: 1,
        ..Default::default()
    };
    let flows =
        "table=0,in_port=1,udp,actions=ct(commit,table=1,zone=1,nat(dst=10.244.3.3:8080))\n\
                 table=1,udp,ct_state=+trk+dnat,actions=output:2\n";
    let (mut dp, mut batch) = setup(flows, cfg, &pkts);
    let mut lb = Loopback::default();
    let mut client = 0x0a80_0000u32;
    let mut now = 0u64;
    let mut round = |dp: &mut MemDatapath, lb: &mut Loopback, batch: &Batch| {
        for d in batch.as_slice() {
            client += 1;
            set_source(dp.pool.data_mut(d), client.to_be_bytes());
        }
        now += 8;
        dp.pmd.ct.expire(now, 2 * BATCH);
        lb.out.len = 0;
        dp.pmd.process(&dp.bridge, &mut dp.pool, lb, 1, batch, now);
        lb.out
    };
    for _ in 0..4 {
        batch = round(&mut dp, &mut lb, &batch);
    }
    assert_eq!(batch.len, BATCH, "every packet forwarded");
    let committed = dp.pmd.ct.len();
    assert_eq!(committed, 4 * BATCH, "every packet a new connection");
    g.bench_function(BenchmarkId::new("new_conn_dnat", BATCH), |b| {
        b.iter(|| batch = round(&mut dp, &mut lb, black_box(&batch)))
    });
    assert_eq!(batch.len, BATCH, "every packet forwarded to the end");
    println!(
        "ct/new_conn_dnat: {} connections live at the end; {} packets, {} megaflow hits, {} upcalls",
        dp.pmd.ct.len(),
        dp.pmd.stats.rx_packets,
        dp.pmd.stats.megaflow_hit,
        dp.pmd.stats.upcall
    );
    g.finish();
}

/// Gives an IPv4 UDP frame (Ethernet, 20-byte IP header) source address
/// `src`, updating the IP and UDP checksums (RFC 1624).
fn set_source(frame: &mut [u8], src: [u8; 4]) {
    let old = u32::from_be_bytes([frame[26], frame[27], frame[28], frame[29]]);
    let new = u32::from_be_bytes(src);
    frame[26..30].copy_from_slice(&src);
    let ip = u16::from_be_bytes([frame[24], frame[25]]);
    frame[24..26].copy_from_slice(&wire::checksum::update32(ip, old, new).to_be_bytes());
    let udp = u16::from_be_bytes([frame[40], frame[41]]);
    if udp != 0 {
        let udp = wire::checksum::update32(udp, old, new);
        frame[40..42].copy_from_slice(&udp.to_be_bytes());
    }
}

criterion_group!(benches, emc, megaflow, upcall, conntrack, new_connections);
criterion_main!(benches);
