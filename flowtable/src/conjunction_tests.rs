//! Conjunctive matches against a naive reference: random tables of ordinary
//! rules, conjunction clauses and `conj_id` rules, random packets. The
//! reference is a linear scan written from ovs-fields(7) alone. For every
//! packet, translation must pick the rule the reference picks, and every
//! packet that agrees with it on the megaflow mask translation returned must
//! get that same rule from the reference too (the mask is what the megaflow
//! cache trusts).

use crate::action::Action;
use crate::bridge::{Bridge, Change, FlowFilter};
use crate::field::Field;
use crate::flow_match::Match;
use crate::key::FlowKey;
use crate::rule::FlowSpec;
use crate::xlate::translate;
use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::BTreeSet;

const IPS: [u32; 4] = [0x0af4_0102, 0x0af4_0103, 0x0af4_0202, 0x0a60_000a];
const PORTS: [u16; 3] = [80, 443, 53];

#[derive(Clone, Debug)]
struct R {
    priority: u16,
    m: Match,
    actions: Vec<Action>,
}

impl R {
    fn is_conj(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Conjunction { .. }))
    }

    fn spec(&self) -> FlowSpec {
        FlowSpec {
            priority: self.priority,
            m: self.m,
            actions: self.actions.clone(),
            ..Default::default()
        }
    }
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    (1u32..=3, 0..4usize, 0..4usize, 0..3usize, any::<bool>()).prop_map(|(port, s, d, tp, tcp)| {
        let mut k = FlowKey::default();
        k.set(Field::InPort, port.into());
        k.set(Field::DlType, 0x0800);
        k.set(Field::NwProto, if tcp { 6 } else { 17 });
        k.set(Field::NwSrc, IPS[s].into());
        k.set(Field::NwDst, IPS[d].into());
        k.set(Field::TpDst, PORTS[tp].into());
        k
    })
}

fn arb_match() -> impl Strategy<Value = Match> {
    let prefix = prop::sample::select(vec![16u32, 24, 32]);
    (
        prop::option::of(1u32..=3),
        prop::option::of((0..4usize, prefix.clone())),
        prop::option::of((0..4usize, prefix)),
        prop::option::of(0..3usize),
    )
        .prop_map(|(port, src, dst, tp)| {
            let mut m = Match::any();
            if let Some(p) = port {
                m.set(Field::InPort, p.into());
            }
            let mut ip = false;
            for (f, v) in [(Field::NwSrc, src), (Field::NwDst, dst)] {
                if let Some((i, len)) = v {
                    m.set_masked(f, IPS[i].into(), (u32::MAX << (32 - len)).into());
                    ip = true;
                }
            }
            if let Some(t) = tp {
                m.set(Field::NwProto, 6);
                m.set(Field::TpDst, PORTS[t].into());
                ip = true;
            }
            if ip {
                m.set(Field::DlType, 0x0800);
            }
            m
        })
}

/// An ordinary rule, a clause rule (one or two conjunctions), or a rule
/// matching `conj_id`; priorities are few so that they collide often.
fn arb_rule() -> impl Strategy<Value = R> {
    let conj = (0u32..2, prop::sample::select(vec![2u8, 2, 3]), 0u8..3).prop_map(|(id, n, k)| {
        Action::Conjunction {
            id,
            clause: k % n + 1,
            n_clauses: n,
        }
    });
    (
        0..3u8,
        1u16..6,
        arb_match(),
        prop::collection::vec(conj, 1..3),
        0u32..3,
        1u32..=4,
    )
        .prop_map(|(kind, priority, mut m, conj, conj_id, port)| {
            let actions = match kind {
                0 => vec![Action::Output(port)],
                1 => conj,
                _ => {
                    m.conj_id = Some(conj_id);
                    vec![Action::Output(port)]
                }
            };
            R {
                priority,
                m,
                actions,
            }
        })
}

/// The best non-clause rule for `key` in a lookup made for `conj_id`.
fn best_hard(rules: &[R], key: &FlowKey, conj_id: u32) -> Option<usize> {
    (0..rules.len())
        .filter(|&i| {
            let r = &rules[i];
            !r.is_conj() && r.m.conj_id.is_none_or(|c| c == conj_id) && r.m.matches(key)
        })
        .max_by_key(|&i| rules[i].priority)
}

/// ovs-fields(7), "Conjunctive Match Fields", as a linear scan.
fn reference(rules: &[R], key: &FlowKey) -> Option<usize> {
    let hard = best_hard(rules, key, 0);
    let floor = hard.map(|i| rules[i].priority);
    let soft: Vec<&R> = rules
        .iter()
        .filter(|r| r.is_conj() && r.m.conj_id.is_none_or(|c| c == 0) && r.m.matches(key))
        .filter(|r| floor.is_none_or(|f| r.priority > f))
        .collect();
    let has = |p: u16, id: u32, k: u8, n: u8| {
        soft.iter().any(|r| {
            r.priority == p
                && r.actions.contains(&Action::Conjunction {
                    id,
                    clause: k,
                    n_clauses: n,
                })
        })
    };
    let mut satisfied = BTreeSet::new();
    for r in &soft {
        for a in &r.actions {
            if let Action::Conjunction { id, n_clauses, .. } = *a {
                if (1..=n_clauses).all(|k| has(r.priority, id, k, n_clauses)) {
                    satisfied.insert((Reverse(r.priority), id));
                }
            }
        }
    }
    satisfied
        .into_iter()
        .find_map(|(_, id)| best_hard(rules, key, id))
        .or(hard)
}

/// Adds `r` to both sides, skipping rules that would tie with a different
/// ordinary rule (OpenFlow leaves ties undefined).
fn add(br: &mut Bridge, rules: &mut Vec<R>, r: R) {
    let same = |x: &R| x.priority == r.priority && x.m == r.m;
    if !r.is_conj()
        && rules
            .iter()
            .any(|x| !x.is_conj() && x.priority == r.priority && x.m != r.m)
    {
        return;
    }
    br.apply(&[Change::AddFlow(r.spec())], 0)
        .expect("generated rules are valid");
    rules.retain(|x| !same(x));
    rules.push(r);
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // Test-case values, built once each.
enum Op {
    Add(R),
    Remove(usize),
}

fn check(br: &Bridge, rules: &[R], key: &FlowKey, others: &[FlowKey]) -> Result<(), TestCaseError> {
    let x = translate(br, key, None);
    let want = reference(rules, key).map(|i| &rules[i]);
    let got = x.rules.first();
    prop_assert_eq!(
        got.map(|r| (r.priority, r.m, r.actions.to_vec())),
        want.map(|r| (r.priority, r.m, r.actions.clone())),
        "key {:?}",
        key
    );
    for o in others {
        let mut k2 = *o;
        for i in 0..k2.w.len() {
            k2.w[i] = (key.w[i] & x.mask.w[i]) | (o.w[i] & !x.mask.w[i]);
        }
        let again = reference(rules, &k2).map(|i| &rules[i]);
        prop_assert_eq!(
            again.map(|r| (r.priority, r.m)),
            want.map(|r| (r.priority, r.m)),
            "a packet inside the megaflow of {:?} takes another rule",
            key
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn conjunctions_agree_with_reference_and_megaflows_cover_them(
        initial in prop::collection::vec(arb_rule(), 0..30),
        ops in prop::collection::vec(prop_oneof![
            3 => arb_rule().prop_map(Op::Add),
            1 => any::<usize>().prop_map(Op::Remove),
        ], 0..8),
        keys in prop::collection::vec(arb_key(), 1..12),
        others in prop::collection::vec(arb_key(), 8),
    ) {
        let mut br = Bridge::default();
        for p in 1..=4 {
            br.add_port(p, &format!("p{p}"));
        }
        let mut rules = Vec::new();
        for r in initial {
            add(&mut br, &mut rules, r);
        }
        for k in &keys {
            check(&br, &rules, k, &others)?;
        }
        for op in ops {
            match op {
                Op::Add(r) => add(&mut br, &mut rules, r),
                Op::Remove(i) if !rules.is_empty() => {
                    let r = rules.remove(i % rules.len());
                    let f = FlowFilter::from_spec(&r.spec(), true);
                    br.apply(&[Change::DeleteFlows(f)], 0).expect("delete is valid");
                }
                Op::Remove(_) => {}
            }
        }
        for k in &keys {
            check(&br, &rules, k, &others)?;
        }
        prop_assert_eq!(br.cls.table(0).len(), rules.len());
        prop_assert_eq!(
            br.cls.table(0).n_conjunctive(),
            rules.iter().filter(|r| r.is_conj()).count()
        );
    }
}
