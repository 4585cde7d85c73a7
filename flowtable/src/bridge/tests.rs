//! Tests of a bridge's batch semantics: a bad change applies nothing,
//! groups are usable and deletable within one batch, and `conjunction`
//! actions stand alone in a rule, with valid clause numbers, never in a
//! group bucket. They live in their own file to keep `bridge.rs` short.

use super::*;
use crate::action::GroupType;
use crate::rule::Bucket;

fn flow(actions: Vec<Action>) -> Change {
    Change::AddFlow(FlowSpec {
        actions,
        ..Default::default()
    })
}

#[test]
fn a_bad_change_applies_nothing() {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    let v = br.version();
    let batch = [flow(vec![Action::Output(1)]), flow(vec![Action::Output(9)])];
    assert_eq!(br.apply(&batch, 0), Err((1, RuleError::UnknownPort(9))));
    assert!(br.cls.is_empty());
    assert_eq!(br.version(), v);
    assert_eq!(
        br.apply(&[flow(vec![Action::Group(7)])], 0),
        Err((0, RuleError::UnknownGroup(7)))
    );
    let goto = Change::AddFlow(FlowSpec {
        table: 3,
        actions: vec![Action::GotoTable(2)],
        ..Default::default()
    });
    assert_eq!(
        br.apply(&[goto], 0),
        Err((0, RuleError::GotoBackwards { from: 3, to: 2 }))
    );
}

fn indirect_to_1(id: u32) -> GroupSpec {
    let bucket = Bucket {
        bucket_id: 0,
        weight: 0,
        watch_port: None,
        actions: vec![Action::Output(1)],
    };
    GroupSpec {
        id,
        kind: GroupType::Indirect,
        buckets: vec![bucket],
        hash_fields: None,
    }
}

#[test]
fn groups_defined_in_the_batch_can_be_used_and_deleting_one_removes_its_users() {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    br.apply(
        &[
            flow(vec![Action::Group(7)]),
            Change::AddGroup(indirect_to_1(7)),
        ],
        0,
    )
    .expect_err("the rule comes before its group");
    br.apply(
        &[
            Change::AddGroup(indirect_to_1(7)),
            flow(vec![Action::Group(7)]),
        ],
        0,
    )
    .expect("valid");
    assert_eq!(br.cls.len(), 1);
    br.apply(&[Change::DeleteGroup(7)], 0).expect("valid");
    assert!(br.cls.is_empty() && br.groups.is_empty());
}

fn conj(clause: u8, n_clauses: u8) -> Action {
    Action::Conjunction {
        id: 1,
        clause,
        n_clauses,
    }
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
            bucket_id: 0,
            weight: 0,
            watch_port: None,
            actions: vec![conj(1, 2)],
        }],
        hash_fields: None,
    });
    assert_eq!(br.apply(&[group], 0), Err((0, RuleError::BadConjunction)));
}

#[test]
fn a_deleted_port_named_by_rules_keeps_its_number_held() {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    br.add_port(2, "p2");
    br.apply(&[flow(vec![Action::Output(2)])], 0).unwrap();
    let v = br.version();
    assert!(br.remove_port(2));
    assert!(br.version() > v, "a port change must revalidate caches");
    assert!(!br.ports.contains(2) && br.ports.known(2));
    assert_eq!(br.ports.by_name("p2"), None);
    // Rules naming it stay, and more may still be added.
    assert_eq!(br.cls.len(), 1);
    br.apply(&[flow(vec![Action::Output(1), Action::Output(2)])], 0)
        .unwrap();
    assert!(br.names_port(2) && br.names_port(1));
    assert!(br.release_unnamed_ports().is_empty());
    br.apply(
        &[Change::DeleteFlows(FlowFilter::from_spec(
            &FlowSpec::default(),
            false,
        ))],
        0,
    )
    .unwrap();
    assert_eq!(br.release_unnamed_ports(), vec![2]);
    assert!(!br.ports.known(2));
    assert_eq!(
        br.apply(&[flow(vec![Action::Output(2)])], 0),
        Err((0, RuleError::UnknownPort(2)))
    );
    assert!(!br.remove_port(2));
}

#[test]
fn what_was_learned_on_a_deleted_port_is_not_taken() {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    br.add_port(2, "p2");
    let mac = [0x0a, 0x58, 10, 244, 1, 7];
    let on = |port| crate::mac::Learn { vlan: 0, mac, port };
    br.learn(&[on(2)], 0);
    assert_eq!(br.macs.lookup(0, &mac), Some(2));
    assert!(br.remove_port(2));
    assert_eq!(br.macs.lookup(0, &mac), None);
    // A late report from before the deletion changes nothing, and a port
    // never added is not learned either.
    let v = br.version();
    br.learn(&[on(2), on(9)], 10);
    assert_eq!(br.macs.lookup(0, &mac), None);
    assert_eq!(br.version(), v);
    // The same MAC on a live port is learned as ever.
    br.learn(&[on(1)], 20);
    assert_eq!(br.macs.lookup(0, &mac), Some(1));
}
