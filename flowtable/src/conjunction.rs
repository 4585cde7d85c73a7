//! Conjunctive matches (ovs-fields(7), "Conjunctive Match Fields"): deciding
//! which conjunctions the clause rules found by one lookup satisfy.
//!
//! A rule whose actions are `conjunction(id,k/n)` is clause `k` of `n` of
//! conjunction `id` at its priority. Conjunction `id` at priority `P` is
//! satisfied by a packet when, for every `k` in `1..=n`, some rule at
//! priority `P` with `conjunction(id,k/n)` matches it. The classifier gathers
//! the clause rules a packet matches while it searches for the best ordinary
//! rule ([`crate::classifier::Table::lookup`]); this module turns them into
//! the satisfied conjunctions, best first, for the second lookup with
//! `conj_id=id`.
//!
//! Conjunctions are told apart by priority, id and clause count together, so
//! rules that disagree about `n` never complete each other's clauses. Where
//! Open vSwitch leaves the choice unspecified (two conjunctions satisfied at
//! one priority), the lower id is tried first, so the result is at least
//! deterministic.

use crate::action::Action;
use crate::rule::Rule;
use std::sync::Arc;

/// Most clauses a conjunction may have (ovs-ofctl(8): `n` is 2 to 64).
pub const MAX_CLAUSES: u8 = 64;

/// Whether `clause/n_clauses` is a clause number OVS accepts.
pub fn valid_clause(clause: u8, n_clauses: u8) -> bool {
    (2..=MAX_CLAUSES).contains(&n_clauses) && (1..=n_clauses).contains(&clause)
}

/// The clause bits a conjunction of `n` clauses needs, all set.
fn all_clauses(n: u8) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// One conjunction being assembled: its priority, id, clause count and the
/// clauses seen so far (bit `k - 1` for clause `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Partial {
    priority: u16,
    id: u32,
    n: u8,
    seen: u64,
}

/// The conjunctions that the matching clause rules `soft` satisfy, as
/// `(priority, id)`, highest priority first and lower id first within a
/// priority. Clauses outside `1..=n` (which validation refuses) are ignored
/// rather than trusted.
pub fn satisfied(soft: &[&Arc<Rule>]) -> Vec<(u16, u32)> {
    let mut parts: Vec<Partial> = Vec::new();
    for r in soft {
        for a in r.actions.iter() {
            let Action::Conjunction {
                id,
                clause,
                n_clauses,
            } = *a
            else {
                continue;
            };
            if !valid_clause(clause, n_clauses) {
                continue;
            }
            let bit = 1u64 << (clause - 1);
            let key = |p: &Partial| p.priority == r.priority && p.id == id && p.n == n_clauses;
            match parts.iter_mut().find(|p| key(p)) {
                Some(p) => p.seen |= bit,
                None => parts.push(Partial {
                    priority: r.priority,
                    id,
                    n: n_clauses,
                    seen: bit,
                }),
            }
        }
    }
    let mut done: Vec<(u16, u32)> = parts
        .iter()
        .filter(|p| p.seen == all_clauses(p.n))
        .map(|p| (p.priority, p.id))
        .collect();
    done.sort_by_key(|&(p, id)| (std::cmp::Reverse(p), id));
    done.dedup();
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::Table;
    use crate::field::Field;
    use crate::key::{FlowKey, FlowMask};
    use crate::rule::FlowSpec;

    /// A rule of `priority` matching `fields` exactly, with `conj_id` and
    /// `actions`.
    fn rule(
        priority: u16,
        fields: &[(Field, u128)],
        conj_id: Option<u32>,
        actions: Vec<Action>,
    ) -> Arc<Rule> {
        let mut spec = FlowSpec {
            priority,
            actions,
            ..Default::default()
        };
        for &(f, v) in fields {
            spec.m.set(f, v);
        }
        spec.m.conj_id = conj_id;
        Arc::new(Rule::new(&spec, 0))
    }

    fn conj(id: u32, clause: u8, n_clauses: u8) -> Vec<Action> {
        vec![Action::Conjunction {
            id,
            clause,
            n_clauses,
        }]
    }

    fn key(src: u128, dst: u128) -> FlowKey {
        let mut k = FlowKey::default();
        k.set(Field::NwSrc, src);
        k.set(Field::NwDst, dst);
        k
    }

    /// src in {1, 2} and dst in {3, 4} as conjunction 7 at priority 10,
    /// with `conj_id=7` outputting to 9 and a catch-all outputting to 1.
    fn policy() -> Table {
        let mut t = Table::default();
        for s in [1, 2] {
            t.insert(rule(10, &[(Field::NwSrc, s)], None, conj(7, 1, 2)));
        }
        for d in [3, 4] {
            t.insert(rule(10, &[(Field::NwDst, d)], None, conj(7, 2, 2)));
        }
        t.insert(rule(10, &[], Some(7), vec![Action::Output(9)]));
        t.insert(rule(0, &[], None, vec![Action::Output(1)]));
        t
    }

    #[test]
    fn satisfied_conjunction_finds_its_conj_id_rule_and_records_both_clauses() {
        let t = policy();
        let mut wc = FlowMask::default();
        let r = t.lookup(&key(2, 4), &mut wc).expect("a rule");
        assert_eq!(r.m.conj_id, Some(7));
        assert_eq!(wc.get(Field::NwSrc), u32::MAX as u128);
        assert_eq!(wc.get(Field::NwDst), u32::MAX as u128);
        // One clause alone is not enough, and no clause rule is ever a match.
        let mut wc = FlowMask::default();
        let r = t.lookup(&key(2, 5), &mut wc).expect("a rule");
        assert_eq!(&*r.actions, &[Action::Output(1)]);
        assert_eq!(wc.get(Field::NwDst), u32::MAX as u128);
    }

    #[test]
    fn ordinary_rule_wins_a_tie_and_a_missing_conj_id_rule_searches_on() {
        let mut t = policy();
        t.insert(rule(
            10,
            &[(Field::NwSrc, 2), (Field::NwDst, 4)],
            None,
            vec![Action::Output(5)],
        ));
        let r = t.lookup(&key(2, 4), &mut FlowMask::default()).unwrap();
        assert_eq!(&*r.actions, &[Action::Output(5)]);
        let mut t = policy();
        t.remove(&rule(10, &[], Some(7), vec![]).m, 10)
            .expect("removed");
        let r = t.lookup(&key(2, 4), &mut FlowMask::default()).unwrap();
        assert_eq!(&*r.actions, &[Action::Output(1)]);
        assert_eq!(t.n_conjunctive(), 4);
    }

    #[test]
    fn second_lookup_records_what_it_probes_below_the_first() {
        // conj_id=0 rules match ordinary lookups (the packet's conj_id is 0),
        // so the first search stops at priority 5, while the search for
        // conj_id=7 passes it and reads nw_dst at priority 1.
        let mut t = Table::default();
        t.insert(rule(10, &[(Field::NwSrc, 1)], None, conj(7, 1, 2)));
        t.insert(rule(10, &[(Field::InPort, 1)], None, conj(7, 2, 2)));
        t.insert(rule(5, &[], Some(0), vec![Action::Output(2)]));
        t.insert(rule(1, &[(Field::NwDst, 3)], None, vec![Action::Output(3)]));
        let mut k = key(1, 3);
        k.set(Field::InPort, 1);
        let mut wc = FlowMask::default();
        let r = t.lookup(&k, &mut wc).unwrap();
        assert_eq!(&*r.actions, &[Action::Output(3)]);
        assert_eq!(wc.get(Field::NwDst), u32::MAX as u128);
        k.set(Field::InPort, 2);
        let r = t.lookup(&k, &mut FlowMask::default()).unwrap();
        assert_eq!(&*r.actions, &[Action::Output(2)]);
    }

    fn clause(priority: u16, conj: &[(u32, u8, u8)]) -> Arc<Rule> {
        let spec = FlowSpec {
            priority,
            actions: conj
                .iter()
                .map(|&(id, clause, n_clauses)| Action::Conjunction {
                    id,
                    clause,
                    n_clauses,
                })
                .collect(),
            ..Default::default()
        };
        Arc::new(Rule::new(&spec, 0))
    }

    #[test]
    fn every_clause_is_needed_at_one_priority() {
        let a = clause(10, &[(1, 1, 2)]);
        let b = clause(10, &[(1, 2, 2)]);
        let b_other_priority = clause(11, &[(1, 2, 2)]);
        assert_eq!(satisfied(&[&a, &b]), vec![(10, 1)]);
        assert!(satisfied(&[&a]).is_empty());
        assert!(satisfied(&[&a, &b_other_priority]).is_empty());
    }

    #[test]
    fn one_rule_may_serve_several_conjunctions_in_order() {
        let shared = clause(5, &[(7, 1, 2), (3, 1, 2)]);
        let b7 = clause(5, &[(7, 2, 2)]);
        let b3 = clause(5, &[(3, 2, 2)]);
        let high = clause(9, &[(8, 1, 2), (8, 2, 2)]);
        assert_eq!(
            satisfied(&[&shared, &b7, &b3, &high]),
            vec![(9, 8), (5, 3), (5, 7)]
        );
    }

    #[test]
    fn clause_counts_must_agree_and_be_valid() {
        let a = clause(1, &[(1, 1, 2)]);
        let b = clause(1, &[(1, 2, 3)]);
        let bad = clause(1, &[(1, 0, 2), (1, 3, 2)]);
        assert!(satisfied(&[&a, &b, &bad]).is_empty());
        let wide: Vec<Arc<Rule>> = (1..=64).map(|k| clause(1, &[(2, k, 64)])).collect();
        let refs: Vec<&Arc<Rule>> = wide.iter().collect();
        assert_eq!(satisfied(&refs), vec![(1, 2)]);
        assert!(satisfied(&refs[1..]).is_empty());
    }
}
