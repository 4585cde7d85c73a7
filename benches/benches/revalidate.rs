//! What a rule change costs a poll thread: revalidating its megaflows.
//!
//! The bridge has the shape of a node with one session-affinity Service:
//! most traffic goes through table 0 only, the Service's traffic also looks
//! up table 41, where `learn` adds one rule per new client. After such a
//! rule is added, a poll thread re-translates either every megaflow (what
//! any change outside the tables still costs, and what every change cost
//! before the bridge journaled which tables it touched) or only those whose
//! translation looked up table 41. Both are measured in the same run on the
//! same megaflow table.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use datapath::pipeline::PmdConfig;
use datapath::MemDatapath;
use flowtable::extract::extract;
use flowtable::{translate, FlowKey};
use std::hint::black_box;

const FLOWS: &str = "\
table=0,priority=100,tcp,nw_dst=10.96.0.11,tp_dst=80,actions=resubmit(,41),resubmit(,42)
table=0,priority=10,ip,actions=output:2
table=41,priority=0,actions=load:0->NXM_NX_REG0[4]
table=42,priority=0,actions=output:2
";

/// The key of a TCP packet from `src` to `dst`:80 arriving on port 1.
fn key(src: [u8; 4], dst: [u8; 4]) -> FlowKey {
    let mut p = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(1000, 80, 1, 64240)
        .write(&mut p, &[0u8; 10])
        .expect("builds");
    let mut k = FlowKey::default();
    extract(&p, 1, &mut k).expect("parses");
    k
}

/// Adds the rule `learn` would add for client `src`.
fn learn(dp: &mut MemDatapath, src: [u8; 4]) {
    let [a, b, c, d] = src;
    let rule = format!(
        "table=41,priority=200,tcp,nw_src={a}.{b}.{c}.{d},nw_dst=10.96.0.11,tp_dst=80,\
         actions=load:0x1->NXM_NX_REG0[4]\n"
    );
    let file = ctl::ofp::parse_flow_file(&rule, &dp.bridge.ports).expect("parses");
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).expect("applies");
}

/// `bystanders` megaflows of traffic through table 0 only, and one per
/// client of the Service, whose rule is learned; then one more client's
/// rule is learned, and the caches are due for revalidation.
fn setup(bystanders: u32, clients: u32) -> MemDatapath {
    let mut dp = MemDatapath::new(64, PmdConfig::default());
    dp.add_port(1, "p1");
    dp.add_port(2, "p2");
    let file = ctl::ofp::parse_flow_file(FLOWS, &dp.bridge.ports).expect("bench flows parse");
    let (changes, _) = ctl::load::file_changes(&file);
    dp.apply(&changes, 0).expect("bench flows apply");
    let ip = |n: u32| [10, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8];
    for i in 0..clients {
        learn(&mut dp, ip(i));
    }
    let keys = (0..bystanders)
        .map(|i| key([10, 244, 1, 2], ip(i)))
        .chain((0..clients).map(|i| key(ip(i), [10, 96, 0, 11])));
    for k in keys {
        let x = translate(&dp.bridge, &k, None);
        dp.pmd.megaflows.insert(&k, &x, 0).expect("room");
    }
    assert_eq!(dp.pmd.megaflows.len(), (bystanders + clients) as usize);
    dp.pmd.sync(&dp.bridge);
    learn(&mut dp, [10, 244, 7, 7]);
    dp
}

fn revalidate(c: &mut Criterion) {
    let mut g = c.benchmark_group("revalidate_after_learn");
    for (bystanders, clients) in [(1000u32, 100u32), (10_000, 100)] {
        let mut dp = setup(bystanders, clients);
        let n = dp.pmd.megaflows.len();
        let changed = dp
            .bridge
            .tables_changed_since(dp.bridge.rules_version() - 1)
            .expect("a rule change is journaled");
        let label = format!("{bystanders}+{clients}");
        g.bench_function(BenchmarkId::new("every_megaflow", &label), |b| {
            b.iter(|| {
                let br = &dp.bridge;
                black_box(dp.pmd.megaflows.revalidate(|k| translate(br, k, None)))
            })
        });
        g.bench_function(BenchmarkId::new("tables_changed", &label), |b| {
            b.iter(|| {
                let br = &dp.bridge;
                black_box(
                    dp.pmd
                        .megaflows
                        .revalidate_some(Some(&changed), |k| translate(br, k, None)),
                )
            })
        });
        let br = &dp.bridge;
        let s = dp
            .pmd
            .megaflows
            .revalidate_some(Some(&changed), |k| translate(br, k, None));
        println!(
            "revalidate_after_learn/{label}: {n} megaflows, {} translated again, {} skipped",
            s.kept + s.updated + s.deleted,
            s.skipped
        );
    }
    g.finish();
}

criterion_group!(benches, revalidate);
criterion_main!(benches);
