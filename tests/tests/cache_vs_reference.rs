//! The whole cache hierarchy (EMC, megaflows, upcall, revalidation) against
//! the naive reference, on random rule sets and random packets, with rule
//! changes between rounds. Every packet must leave on the same ports with the
//! same bytes as the reference says; any difference is a failure.

use datapath::MemDatapath;
use flowtable::action::SubField;
use flowtable::bridge::{Change, FlowFilter};
use flowtable::field::Field;
use flowtable::{Action, FlowSpec, Match, PortNo};
use oxvs_tests::reference::{evaluate, RefRule};
use oxvs_tests::{Pkt, L4};
use proptest::prelude::*;
use std::collections::BTreeMap;

const IPS: [[u8; 4]; 4] = [
    [10, 244, 1, 2],
    [10, 244, 1, 3],
    [10, 244, 2, 2],
    [10, 96, 0, 10],
];
const MACS: [[u8; 6]; 3] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
const N_PORTS: PortNo = 4;
const N_TABLES: u8 = 4;

fn ip_u128(ip: [u8; 4]) -> u128 {
    u32::from_be_bytes(ip) as u128
}

fn arb_pkt() -> impl Strategy<Value = (PortNo, Pkt)> {
    let l4 = prop_oneof![
        (
            prop::sample::select(vec![1000u16, 1001]),
            prop::sample::select(vec![80u16, 443])
        )
            .prop_map(|(s, d)| L4::Tcp(s, d)),
        (
            prop::sample::select(vec![1000u16, 1001]),
            prop::sample::select(vec![53u16, 80])
        )
            .prop_map(|(s, d)| L4::Udp(s, d)),
        Just(L4::IcmpEcho(7, 1)),
    ];
    (
        1..=N_PORTS,
        0..IPS.len(),
        0..IPS.len(),
        prop::sample::select(vec![1u8, 2, 64]),
        l4,
        0..MACS.len(),
    )
        .prop_map(|(port, s, d, ttl, l4, m)| {
            let mut p = Pkt::tcp(IPS[s], IPS[d], 0, 0);
            p.ttl = ttl;
            p.l4 = l4;
            p.dst_mac = MACS[m];
            (port, p)
        })
}

/// A random rule in `table`: a match over a few fields, a few actions; the
/// match gains `ip` (and a protocol) whenever an action needs it.
fn arb_rule() -> impl Strategy<Value = RefRule> {
    let matches = (
        prop::option::of(1..=N_PORTS),
        prop::option::of(prop::sample::select(vec![6u8, 17, 1])),
        prop::option::of((0..IPS.len(), prop::sample::select(vec![8u32, 16, 24, 32]))),
        prop::option::of((0..IPS.len(), prop::sample::select(vec![16u32, 24, 32]))),
        prop::option::of(prop::sample::select(vec![80u16, 443, 53])),
        prop::option::of(0u32..3),
    );
    let action = prop_oneof![
        (1..=N_PORTS).prop_map(|p| (0u8, p as u64)),
        (0..MACS.len()).prop_map(|m| (1, m as u64)),
        (0..IPS.len()).prop_map(|i| (2, i as u64)),
        prop::sample::select(vec![80u64, 8080]).prop_map(|p| (3, p)),
        (0u64..3).prop_map(|v| (4, v)),
        (0u64..N_TABLES as u64).prop_map(|t| (5, t)),
        Just((6, 0)),
        Just((7, 0)),
    ];
    (
        0..N_TABLES,
        1u16..400,
        matches,
        prop::collection::vec(action, 0..4),
        prop::option::of(0..N_TABLES),
        any::<bool>(),
    )
        .prop_map(
            |(table, priority, (in_port, proto, src, dst, tp_dst, reg0), acts, goto, drop)| {
                let mut m = Match::any();
                let mut ip = false;
                if let Some(p) = in_port {
                    m.set(Field::InPort, p as u128);
                }
                if let Some(p) = proto {
                    m.set(Field::NwProto, p as u128);
                    ip = true;
                }
                if let Some((i, len)) = src {
                    m.set_masked(
                        Field::NwSrc,
                        ip_u128(IPS[i]),
                        (u32::MAX << (32 - len)) as u128,
                    );
                    ip = true;
                }
                if let Some((i, len)) = dst {
                    m.set_masked(
                        Field::NwDst,
                        ip_u128(IPS[i]),
                        (u32::MAX << (32 - len)) as u128,
                    );
                    ip = true;
                }
                let l4 = matches!(proto, Some(6) | Some(17));
                if let (Some(p), true) = (tp_dst, l4) {
                    m.set(Field::TpDst, p as u128);
                }
                if let Some(r) = reg0 {
                    m.set_masked(Field::Reg0, r as u128, 0xff);
                }
                let mut actions = Vec::new();
                for (kind, v) in acts {
                    let a = match kind {
                        0 => Action::Output(v as PortNo),
                        1 => Action::SetField {
                            field: Field::DlDst,
                            value: mac_u128(MACS[v as usize]),
                            mask: u128::MAX,
                        },
                        2 => {
                            ip = true;
                            Action::SetField {
                                field: Field::NwDst,
                                value: ip_u128(IPS[v as usize]),
                                mask: u128::MAX,
                            }
                        }
                        3 if l4 => Action::SetField {
                            field: Field::TpDst,
                            value: v as u128,
                            mask: u128::MAX,
                        },
                        3 => continue,
                        4 => Action::Load {
                            dst: SubField {
                                field: Field::Reg0,
                                ofs: 0,
                                n_bits: 8,
                            },
                            value: v as u128,
                        },
                        5 if (v as u8) > table => Action::Resubmit {
                            in_port: None,
                            table: Some(v as u8),
                        },
                        5 => continue,
                        6 => {
                            ip = true;
                            Action::DecTtl
                        }
                        // Output to the port number an earlier load left
                        // in reg0 (0 names no port).
                        _ => Action::OutputField(SubField {
                            field: Field::Reg0,
                            ofs: 0,
                            n_bits: 8,
                        }),
                    };
                    actions.push(a);
                }
                if let Some(t) = goto.filter(|t| *t > table) {
                    actions.push(Action::GotoTable(t));
                }
                if drop && actions.is_empty() {
                    actions.push(Action::Drop);
                }
                if ip {
                    m.set(Field::DlType, 0x0800);
                }
                RefRule {
                    table,
                    priority,
                    m,
                    actions,
                }
            },
        )
}

fn mac_u128(m: [u8; 6]) -> u128 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]) as u128
}

fn spec(r: &RefRule) -> FlowSpec {
    FlowSpec {
        table: r.table,
        priority: r.priority,
        m: r.m,
        actions: r.actions.clone(),
        ..Default::default()
    }
}

/// Adds `r` to both sides unless its priority is taken in its table by a
/// different match (ties are undefined in OpenFlow, so the test avoids them).
fn add(dp: &mut MemDatapath, rules: &mut Vec<RefRule>, r: RefRule) {
    if rules
        .iter()
        .any(|x| x.table == r.table && x.priority == r.priority && x.m != r.m)
    {
        return;
    }
    dp.apply(&[Change::AddFlow(spec(&r))], 0)
        .expect("generated rules are valid");
    rules.retain(|x| !(x.table == r.table && x.priority == r.priority && x.m == r.m));
    rules.push(r);
}

fn remove(dp: &mut MemDatapath, rules: &mut Vec<RefRule>, i: usize) {
    if rules.is_empty() {
        return;
    }
    let r = rules.remove(i % rules.len());
    let f = FlowFilter::from_spec(&spec(&r), true);
    dp.apply(&[Change::DeleteFlows(f)], 0)
        .expect("delete is valid");
}

fn check_round(
    dp: &mut MemDatapath,
    rules: &[RefRule],
    pkts: &[(PortNo, Pkt)],
) -> Result<(), TestCaseError> {
    let mut want: BTreeMap<PortNo, Vec<Vec<u8>>> = BTreeMap::new();
    for (port, p) in pkts {
        for (out, q) in evaluate(rules, p, *port) {
            want.entry(out).or_default().push(q.build(6));
        }
        prop_assert!(dp.inject(*port, &p.build(6)));
    }
    dp.run_until_idle(0);
    for port in 1..=N_PORTS {
        let mut got = dp.take_tx(port);
        let mut exp = want.remove(&port).unwrap_or_default();
        got.sort();
        exp.sort();
        prop_assert_eq!(got, exp, "port {}", port);
    }
    Ok(())
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // Test-case values, built once each.
enum Op {
    Add(RefRule),
    Remove(usize),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn caches_agree_with_linear_reference(
        initial in prop::collection::vec(arb_rule(), 0..14),
        pkts in prop::collection::vec(arb_pkt(), 1..24),
        rounds in prop::collection::vec(prop::collection::vec(prop_oneof![
            arb_rule().prop_map(Op::Add),
            any::<usize>().prop_map(Op::Remove),
        ], 0..4), 1..6),
        emc_always in any::<bool>(),
    ) {
        let cfg = datapath::PmdConfig { emc_inv_prob: if emc_always { 1 } else { 100 }, ..Default::default() };
        let mut dp = oxvs_tests::datapath(N_PORTS, "", cfg);
        let mut rules = Vec::new();
        for r in initial {
            add(&mut dp, &mut rules, r);
        }
        check_round(&mut dp, &rules, &pkts)?;
        for ops in rounds {
            for op in ops {
                match op {
                    Op::Add(r) => add(&mut dp, &mut rules, r),
                    Op::Remove(i) => remove(&mut dp, &mut rules, i),
                }
            }
            // The same packets again: now mostly cache hits, which must
            // reflect the changed rules.
            check_round(&mut dp, &rules, &pkts)?;
        }
    }
}
