//! Conjunctive match syntax: the ovs-fields(7) example parsed to exact
//! values and printed back, and the errors OVS gives for malformed
//! `conjunction` actions and `conj_id` matches, with line and column.

use super::*;
use flowtable::Action;

fn conj(id: u32, clause: u8, n_clauses: u8) -> Action {
    Action::Conjunction {
        id,
        clause,
        n_clauses,
    }
}

/// Parses, prints, and checks the print parses back to the same spec.
fn reprint(line: &str) -> String {
    let spec = parse_flow(line, &()).unwrap_or_else(|e| panic!("{line}: {e}"));
    let out = format_flow_spec(&spec, &());
    assert_eq!(
        parse_flow(&out, &()).unwrap(),
        spec,
        "{line} printed as {out}"
    );
    out
}

fn err(line: &str, at: &str, message: &str) {
    let e = parse_flow(line, &()).expect_err(line);
    let column = line
        .find(at)
        .unwrap_or_else(|| panic!("{at} not in {line}"))
        + 1;
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (1, column, message),
        "{line}"
    );
}

#[test]
fn ovs_fields_example_parses_and_prints_back() {
    let s = parse_flow("conj_id=1234 actions=output:3", &()).unwrap();
    assert_eq!(s.m.conj_id, Some(1234));
    assert_eq!(s.actions, vec![Action::Output(3)]);
    let s = parse_flow("ip,ip_src=10.0.0.1 actions=conjunction(1234, 1/2)", &()).unwrap();
    assert_eq!(s.actions, vec![conj(1234, 1, 2)]);
    assert_eq!(s.m.conj_id, None);
    assert_eq!(
        reprint("ip,ip_dst=10.0.0.5 actions=conjunction(1234,2/2)"),
        "ip,nw_dst=10.0.0.5,actions=conjunction(1234,2/2)"
    );
    assert_eq!(
        reprint("priority=5,tcp,conj_id=4294967295,actions=output:3"),
        "priority=5,conj_id=4294967295,tcp,actions=output:3"
    );
    assert_eq!(
        reprint("tcp,tp_dst=80,actions=conjunction(1,3/3),conjunction(0x20,1/64)"),
        "tcp,tp_dst=80,actions=conjunction(1,3/3),conjunction(32,1/64)"
    );
    // conj_id is not a packet field: it never enters the key.
    assert_eq!(
        parse_flow("conj_id=7,actions=drop", &()).unwrap().m.key,
        flowtable::Match::any().key
    );
}

#[test]
fn conjunction_errors_name_the_place() {
    err(
        "ip,actions=conjunction(1,3/2)",
        "3/2",
        "clause index 3 must be less than or equal to number of clauses 2",
    );
    err(
        "ip,actions=conjunction(1,1/1)",
        "1)",
        "conjunction must have at least 2 clauses",
    );
    err(
        "ip,actions=conjunction(1,1/65)",
        "65",
        "conjunction must have at most 64 clauses",
    );
    err(
        "ip,actions=conjunction(1,0/2)",
        "0/2",
        "clause index must be positive",
    );
    err(
        "ip,actions=conjunction(1)",
        "conjunction",
        "\"conjunction\" syntax is \"conjunction(id,k/n)\"",
    );
    err(
        "ip,actions=conjunction:1",
        "conjunction",
        "\"conjunction\" syntax is \"conjunction(id,k/n)\"",
    );
    err(
        "ip,actions=conjunction(1,2)",
        "2)",
        "expected k/n after the conjunction id, found \"2\"",
    );
    err(
        "ip,actions=conjunction(4294967296,1/2)",
        "4294967296",
        "value 4294967296 does not fit in a conjunction id (32 bits)",
    );
    err(
        "ip,actions=conjunction(1,1/2),output:2",
        "output",
        "\"conjunction\" actions may be used along with \"note\" but not any other kind of \
         action (such as the \"output\" action used here)",
    );
    err(
        "ip,actions=3,conjunction(1,1/2)",
        "3,",
        "\"conjunction\" actions may be used along with \"note\" but not any other kind of \
         action (such as the \"output\" action used here)",
    );
    err(
        "ip,actions=conjunction(1,1/2),drop",
        "drop",
        "drop must be the only action",
    );
}

#[test]
fn conj_id_errors_name_the_place() {
    err(
        "conj_id=0x1ffffffff,actions=drop",
        "0x1",
        "value 0x1ffffffff does not fit in conj_id (32 bits)",
    );
    err("conj_id=1/1,actions=drop", "/1", "conj_id cannot be masked");
    err(
        "conj_id=1,conj_id=2,actions=drop",
        "conj_id=2",
        "conj_id conflicts with an earlier value of conj_id",
    );
    err(
        "conj_id,actions=drop",
        "conj_id",
        "conj_id needs a value (conj_id=...)",
    );
    let e = parse_packet("conj_id=1", &()).unwrap_err();
    assert_eq!(
        (e.column, e.message.as_str()),
        (1, "conj_id is not part of a packet")
    );
    let e = parse_group("group_id=1,type=all,bucket=actions=conjunction(1,1/2)", &()).unwrap_err();
    assert_eq!(e.message, "conjunction is not allowed in a group bucket");
}
