//! Translation of `reject` and `log`: the answer chosen per protocol, the
//! key bits that choice consults, the verdicts logs receive, and that a
//! reject ends the walk.

use super::*;
use crate::action::{RejectHow, RejectReply, Verdict};
use crate::bridge::Change;
use crate::field::{dl_type, Field};
use crate::flow_match::Match;
use crate::rule::FlowSpec;

fn bridge(rules: &[(u8, Match, Vec<Action>)]) -> Bridge {
    let mut br = Bridge::default();
    br.add_port(1, "p1");
    br.add_port(2, "p2");
    let changes: Vec<Change> = rules
        .iter()
        .map(|(t, m, a)| {
            Change::AddFlow(FlowSpec {
                table: *t,
                m: *m,
                actions: a.clone(),
                ..Default::default()
            })
        })
        .collect();
    br.apply(&changes, 0).unwrap();
    br
}

fn key(dl: u16, proto: u8) -> FlowKey {
    let mut k = FlowKey::default();
    k.set(Field::InPort, 1);
    k.set(Field::DlType, dl as u128);
    k.set(Field::NwProto, proto as u128);
    k.set(Field::NwSrc, 0x0af4_0105);
    k
}

#[test]
fn reject_picks_the_answer_by_protocol_and_unwildcards_it() {
    let br = bridge(&[(0, Match::any(), vec![Action::Reject(RejectHow::Auto)])]);
    let tcp = translate(&br, &key(dl_type::IPV4, 6), None);
    assert_eq!(
        tcp.actions,
        vec![
            DpAction::Reject(RejectReply::TcpRst),
            DpAction::Drop(DropReason::Rejected)
        ]
    );
    assert_eq!(tcp.mask.get(Field::DlType), 0xffff);
    assert_eq!(tcp.mask.get(Field::NwProto), 0xff);
    let udp = translate(&br, &key(dl_type::IPV6, 17), None);
    assert_eq!(udp.actions[0], DpAction::Reject(RejectReply::Prohibited));
    // Not IP: nothing to answer with, only the drop.
    let arp = translate(&br, &key(dl_type::ARP, 0), None);
    assert_eq!(arp.actions, vec![DpAction::Drop(DropReason::Rejected)]);

    let br = bridge(&[(0, Match::any(), vec![Action::Reject(RejectHow::TcpRst)])]);
    let udp = translate(&br, &key(dl_type::IPV4, 17), None);
    assert_eq!(udp.actions, vec![DpAction::Drop(DropReason::Rejected)]);
    let br = bridge(&[(0, Match::any(), vec![Action::Reject(RejectHow::Icmp)])]);
    let tcp = translate(&br, &key(dl_type::IPV4, 6), None);
    assert_eq!(tcp.actions[0], DpAction::Reject(RejectReply::Prohibited));
}

#[test]
fn reject_keeps_earlier_rewrites_and_ends_the_walk() {
    let mut ip = Match::any();
    ip.set(Field::DlType, dl_type::IPV4 as u128);
    let br = bridge(&[
        (
            0,
            ip,
            vec![
                Action::SetField {
                    field: Field::NwSrc,
                    value: 0x0a60_0001,
                    mask: 0xffff_ffff,
                },
                Action::Resubmit {
                    in_port: None,
                    table: Some(1),
                },
                Action::Output(2),
            ],
        ),
        (1, Match::any(), vec![Action::Reject(RejectHow::Auto)]),
    ]);
    let x = translate(&br, &key(dl_type::IPV4, 17), None);
    assert_eq!(
        x.actions,
        vec![
            DpAction::SetIpv4Src([10, 96, 0, 1]),
            DpAction::Reject(RejectReply::Prohibited),
            DpAction::Drop(DropReason::Rejected),
        ]
    );
}

#[test]
fn logs_get_the_verdict_of_the_whole_walk() {
    let log = |n: &str| Action::Log(n.into());
    for (actions, verdict, tail) in [
        (
            vec![log("r"), Action::Reject(RejectHow::Auto)],
            Verdict::Reject,
            vec![
                DpAction::Reject(RejectReply::TcpRst),
                DpAction::Drop(DropReason::Rejected),
            ],
        ),
        (
            vec![log("a"), Action::Output(2)],
            Verdict::Allow,
            vec![DpAction::Output(2)],
        ),
        (
            vec![log("d")],
            Verdict::Drop,
            vec![DpAction::Drop(DropReason::NoOutput)],
        ),
    ] {
        let br = bridge(&[(0, Match::any(), actions)]);
        let x = translate(&br, &key(dl_type::IPV4, 6), None);
        let DpAction::Log { name, verdict: v } = x.actions[0] else {
            panic!("{:?}", x.actions)
        };
        assert_eq!(v, verdict);
        assert_ne!(br.log_names.name(name), "?");
        assert_eq!(x.actions[1..], tail[..]);
    }
}

#[test]
fn log_names_are_interned_once_and_checked() {
    let log = |n: &str| vec![Action::Log(n.into())];
    let br = bridge(&[(0, Match::any(), log("x")), (1, Match::any(), log("x"))]);
    assert_eq!(br.log_names.id("x"), Some(0));
    assert_eq!(br.log_names.name(1), "?");
    let mut br = Bridge::default();
    let bad = Change::AddFlow(FlowSpec {
        actions: log("no spaces"),
        ..Default::default()
    });
    assert!(matches!(
        br.apply(&[bad], 0),
        Err((0, crate::bridge::RuleError::BadLogName(_)))
    ));
}

/// Not a reject or a log, but the same trimming: a packet that is tracked
/// and committed, then dropped, still makes its connection (the soak's
/// conntrack flood found `ct(commit)` elided from such megaflows).
#[test]
fn a_committing_ct_survives_a_megaflow_that_outputs_nowhere() {
    use crate::action::{CtAction, CtZoneSrc};
    let ct = |commit| {
        Action::Ct(Box::new(CtAction {
            commit,
            zone: CtZoneSrc::Imm(5),
            table: None,
            nat: None,
            exec: Vec::new(),
        }))
    };
    let br = bridge(&[(0, Match::any(), vec![ct(true)])]);
    let x = translate(&br, &key(dl_type::IPV4, 17), None);
    assert!(
        matches!(&x.actions[..], [DpAction::Ct(s), DpAction::Drop(DropReason::NoOutput)] if s.commit && s.zone == 5),
        "{:?}",
        x.actions
    );
    // Without commit, tracking a packet that goes nowhere changes nothing.
    let br = bridge(&[(0, Match::any(), vec![ct(false)])]);
    let x = translate(&br, &key(dl_type::IPV4, 17), None);
    assert_eq!(x.actions, vec![DpAction::Drop(DropReason::NoOutput)]);
}
