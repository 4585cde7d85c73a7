//! The rule classifier at scale: inserting rules with 100 000 present
//! (through `Bridge::apply`, validation included) and looking packets up,
//! each beside a sorted-vector baseline measured in the same run.
//!
//! Also a group x group x port policy (50 source IPs, 50 destination IPs,
//! 10 TCP ports) written once with conjunctive matches (110 clause rules)
//! and once as the cross product (25 000 rules): installing it, and
//! translating (the upcall) a packet the policy allows and one it does not.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowtable::bridge::{Bridge, Change};
use flowtable::field::Field;
use flowtable::{translate, Action, FlowKey, FlowMask, FlowSpec, Match};
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

const SRCS: u32 = 50;
const DSTS: u32 = 50;
const TP_PORTS: u32 = 10;

fn src_ip(i: u32) -> u128 {
    (0x0af4_0100 + i).into()
}

fn dst_ip(j: u32) -> u128 {
    (0x0af4_0200 + j).into()
}

fn tp_port(k: u32) -> u128 {
    (8000 + k).into()
}

/// The policy's rules: with `conj`, one clause rule per value plus the
/// `conj_id` rule; without, one rule per (source, destination, port).
/// Either way a priority-0 rule drops everything else.
fn policy(conj: bool) -> Vec<Change> {
    let tcp = || {
        let mut m = Match::any();
        m.set(Field::DlType, 0x0800);
        m.set(Field::NwProto, 6);
        m
    };
    let flow = |m: Match, actions: Vec<Action>| {
        Change::AddFlow(FlowSpec {
            priority: 100,
            m,
            actions,
            ..Default::default()
        })
    };
    let mut out = Vec::new();
    if conj {
        let clause = |k, v: u128, f| {
            let mut m = tcp();
            m.set(f, v);
            let c = Action::Conjunction {
                id: 1,
                clause: k,
                n_clauses: 3,
            };
            flow(m, vec![c])
        };
        out.extend((0..SRCS).map(|i| clause(1, src_ip(i), Field::NwSrc)));
        out.extend((0..DSTS).map(|j| clause(2, dst_ip(j), Field::NwDst)));
        out.extend((0..TP_PORTS).map(|k| clause(3, tp_port(k), Field::TpDst)));
        let mut m = Match::any();
        m.conj_id = Some(1);
        out.push(flow(m, vec![Action::Output(2)]));
    } else {
        for i in 0..SRCS {
            for j in 0..DSTS {
                for k in 0..TP_PORTS {
                    let mut m = tcp();
                    m.set(Field::NwSrc, src_ip(i));
                    m.set(Field::NwDst, dst_ip(j));
                    m.set(Field::TpDst, tp_port(k));
                    out.push(flow(m, vec![Action::Output(2)]));
                }
            }
        }
    }
    out.push(Change::AddFlow(FlowSpec {
        priority: 0,
        ..Default::default()
    }));
    out
}

fn policy_bridge(changes: &[Change]) -> Bridge {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    br.add_port(2, "p2");
    br.apply(changes, 0).expect("valid");
    br
}

fn policy_key(dst: u128) -> FlowKey {
    let mut k = FlowKey::default();
    k.set(Field::InPort, 1);
    k.set(Field::DlType, 0x0800);
    k.set(Field::NwProto, 6);
    k.set(Field::NwSrc, src_ip(17));
    k.set(Field::NwDst, dst);
    k.set(Field::TpSrc, 40000);
    k.set(Field::TpDst, tp_port(3));
    k
}

fn conjunction_policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_50x50x10");
    g.sample_size(10);
    let allowed = policy_key(dst_ip(33));
    let denied = policy_key(dst_ip(60));
    for (name, conj) in [("conjunction", true), ("cross_product", false)] {
        let changes = policy(conj);
        let br = policy_bridge(&changes);
        let wc = translate(&br, &allowed, None).mask;
        eprintln!(
            "{name}: {} rules installed, {} subtables; megaflow of an allowed packet \
             matches nw_src/{:#x} nw_dst/{:#x} tp_dst/{:#x}",
            br.cls.len(),
            br.cls.table(0).n_subtables(),
            wc.get(Field::NwSrc),
            wc.get(Field::NwDst),
            wc.get(Field::TpDst),
        );
        assert!(translate(&br, &allowed, None).actions == [flowtable::DpAction::Output(2)]);
        assert!(!translate(&br, &denied, None).actions[0].is_output());
        g.bench_function(format!("install_{name}"), |b| {
            b.iter(|| black_box(policy_bridge(black_box(&changes))).cls.len())
        });
        g.bench_function(format!("translate_allowed_{name}"), |b| {
            b.iter(|| {
                black_box(translate(&br, black_box(&allowed), None))
                    .actions
                    .len()
            })
        });
        g.bench_function(format!("translate_denied_{name}"), |b| {
            b.iter(|| {
                black_box(translate(&br, black_box(&denied), None))
                    .actions
                    .len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, insert, lookup, conjunction_policy);
criterion_main!(benches);
