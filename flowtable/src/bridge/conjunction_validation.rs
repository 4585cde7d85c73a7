//! Tests of how a bridge validates `conjunction` actions: alone in a rule,
//! with valid clause numbers, and never in a group bucket. They live in
//! their own file to keep `bridge.rs` short.

use super::*;
use crate::action::GroupType;
use crate::rule::Bucket;

fn conj(clause: u8, n_clauses: u8) -> Action {
    Action::Conjunction {
        id: 1,
        clause,
        n_clauses,
    }
}

fn flow(actions: Vec<Action>) -> Change {
    Change::AddFlow(FlowSpec {
        actions,
        ..Default::default()
    })
}

#[test]
fn conjunctions_stand_alone_with_valid_clauses_and_only_in_rules() {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    assert!(br.apply(&[flow(vec![conj(1, 2), conj(2, 2)])], 0).is_ok());
    assert_eq!(br.cls.table(0).n_conjunctive(), 1);
    let bad = [
        vec![conj(1, 2), Action::Output(1)],
        vec![conj(3, 2)],
        vec![conj(0, 2)],
        vec![conj(1, 1)],
        vec![conj(1, 65)],
    ];
    for actions in bad {
        assert_eq!(
            br.apply(&[flow(actions.clone())], 0),
            Err((0, RuleError::BadConjunction)),
            "{actions:?}"
        );
    }
    let group = Change::AddGroup(GroupSpec {
        id: 1,
        kind: GroupType::All,
        buckets: vec![Bucket {
            weight: 0,
            watch_port: None,
            actions: vec![conj(1, 2)],
        }],
        hash_fields: None,
    });
    assert_eq!(br.apply(&[group], 0), Err((0, RuleError::BadConjunction)));
}
