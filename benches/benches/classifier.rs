//! The rule classifier at scale: inserting rules with 100 000 present
//! (through `Bridge::apply`, validation included) and looking packets up,
//! each beside a sorted-vector baseline measured in the same run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowtable::bridge::{Bridge, Change};
use flowtable::field::Field;
use flowtable::{Action, FlowKey, FlowMask, FlowSpec, Match};
use oxvs_benches::baseline::SortedRules;
use std::hint::black_box;
use std::time::{Duration, Instant};

const PRESENT: u32 = 100_000;
const CHUNK: u32 = 1_000;

/// Rule `i`: one of four shapes (so several subtables), unique match.
fn rule(i: u32) -> FlowSpec {
    let mut m = Match::any();
    m.set(Field::DlType, 0x0800);
    let ip = 0x0a00_0000 | (i & 0x00ff_ffff);
    match i % 4 {
        0 => m.set(Field::NwDst, ip as u128),
        1 => {
            m.set(Field::NwProto, 6);
            m.set(Field::NwDst, ip as u128);
            m.set(Field::TpDst, 80);
        }
        2 => m.set_masked(Field::NwSrc, (ip << 8) as u128, 0xffff_ff00),
        _ => {
            m.set(Field::InPort, 1);
            m.set(Field::NwSrc, ip as u128);
        }
    }
    FlowSpec {
        table: 0,
        priority: (i % 1000) as u16 + 1,
        m,
        actions: vec![Action::Output(2)],
        ..Default::default()
    }
}

fn bridge_with(n: u32) -> Bridge {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    br.add_port(2, "p2");
    let changes: Vec<Change> = (0..n).map(|i| Change::AddFlow(rule(i))).collect();
    br.apply(&changes, 0).expect("valid");
    br
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_insert");
    g.throughput(Throughput::Elements(CHUNK as u64));
    g.sample_size(20);
    let mut br = bridge_with(PRESENT);
    let mut next = PRESENT;
    g.bench_function("bridge_apply_1000_with_100k_present", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let changes: Vec<Change> = (next..next + CHUNK)
                    .map(|i| Change::AddFlow(rule(i)))
                    .collect();
                next += CHUNK;
                let t = Instant::now();
                br.apply(black_box(&changes), 0).expect("valid");
                total += t.elapsed();
            }
            total
        })
    });
    let mut sorted = SortedRules::default();
    for i in 0..PRESENT {
        let r = rule(i);
        sorted.insert(r.priority, r.m.key, r.m.mask);
    }
    let mut next = PRESENT;
    g.bench_function("sorted_vec_1000_with_100k_present", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let rules: Vec<FlowSpec> = (next..next + CHUNK).map(rule).collect();
                next += CHUNK;
                let t = Instant::now();
                for r in &rules {
                    sorted.insert(r.priority, r.m.key, r.m.mask);
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_lookup_100k");
    g.throughput(Throughput::Elements(1));
    let br = bridge_with(PRESENT);
    let mut k = FlowKey::default();
    k.set(Field::InPort, 1);
    k.set(Field::DlType, 0x0800);
    k.set(Field::NwProto, 6);
    k.set(Field::NwDst, 0x0a00_0001);
    k.set(Field::TpDst, 80);
    g.bench_function("classifier", |b| {
        b.iter(|| {
            let mut wc = FlowMask::default();
            black_box(
                br.cls
                    .table(0)
                    .lookup(black_box(&k), &mut wc)
                    .map(|r| r.priority),
            )
        })
    });
    let mut sorted = SortedRules::default();
    for i in 0..PRESENT {
        let r = rule(i);
        sorted.insert(r.priority, r.m.key, r.m.mask);
    }
    g.bench_function("linear_scan", |b| {
        b.iter(|| {
            black_box(
                sorted
                    .rules
                    .iter()
                    .find(|(_, key, mask)| black_box(&k).matches(key, mask))
                    .map(|r| r.0),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, insert, lookup);
criterion_main!(benches);
