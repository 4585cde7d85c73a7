//! The oxvs extensions `reject[(HOW)]` and `log(name=NAME)`: what they
//! parse to, how they print back, and the errors a user sees.

use super::*;
use flowtable::{Action, FlowSpec, RejectHow};

fn flow(line: &str) -> FlowSpec {
    parse_flow(line, &()).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn reprint(line: &str) -> String {
    let spec = flow(line);
    let out = format_flow_spec(&spec, &());
    assert_eq!(flow(&out), spec, "{line} printed as {out}");
    out
}

fn err(line: &str) -> (usize, String) {
    match parse_flow(line, &()) {
        Ok(s) => panic!("{line} parsed as {s:?}"),
        Err(e) => (e.column, e.message),
    }
}

fn col(line: &str, needle: &str) -> usize {
    line.find(needle).expect("needle in line") + 1
}

#[test]
fn reject_forms() {
    for (text, how) in [
        ("reject", RejectHow::Auto),
        ("reject(tcp_rst)", RejectHow::TcpRst),
        ("reject(ICMP)", RejectHow::Icmp),
        ("reject(port_unreachable)", RejectHow::PortUnreachable),
    ] {
        let line = format!("tcp,tp_dst=80,actions={text}");
        assert_eq!(flow(&line).actions, vec![Action::Reject(how)], "{line}");
        assert_eq!(
            reprint(&line),
            format!("tcp,tp_dst=80,actions={}", text.to_ascii_lowercase())
        );
    }
}

#[test]
fn log_before_a_verdict() {
    let line = "priority=200,ip,nw_dst=10.244.1.6,actions=log(name=deny-fe/fe:1.x_y),reject";
    assert_eq!(
        flow(line).actions,
        vec![
            Action::Log("deny-fe/fe:1.x_y".into()),
            Action::Reject(RejectHow::Auto)
        ]
    );
    assert_eq!(
        reprint(line),
        "priority=200,ip,nw_dst=10.244.1.6,actions=log(name=deny-fe/fe:1.x_y),reject"
    );
    // A log and a drop: the only company drop may keep.
    let line = "ip,actions=log(name=d),drop";
    assert_eq!(flow(line).actions, vec![Action::Log("d".into())]);
    assert_eq!(reprint(line), "ip,actions=log(name=d),drop");
    assert_eq!(
        reprint("ip,actions=log(name=a),output:2"),
        "ip,actions=log(name=a),output:2"
    );
}

#[test]
fn reject_and_log_errors() {
    let line = "tcp,actions=reject,output:2";
    assert_eq!(
        err(line),
        (col(line, "reject"), "reject must be the last action".into())
    );
    let line = "tcp,actions=reject(rst)";
    assert_eq!(
        err(line),
        (
            col(line, "rst"),
            "expected tcp_rst, icmp or port_unreachable, found \"rst\"".into()
        )
    );
    let line = "tcp,actions=reject:icmp";
    assert_eq!(
        err(line),
        (col(line, ":icmp"), "reject takes no argument".into())
    );
    let line = "ip,actions=log(name=has space)";
    assert!(err(line).1.contains("a name of 1 to 48"), "{:?}", err(line));
    let long = "x".repeat(49);
    let line = format!("ip,actions=log(name={long}),drop");
    assert_eq!(
        err(&line),
        (
            col(&line, &long),
            format!("expected a name of 1 to 48 of A-Z a-z 0-9 _ . / : -, found \"{long}\"")
        )
    );
    let line = "ip,actions=log(id=3)";
    assert_eq!(
        err(line),
        (
            col(line, "id=3"),
            "expected name=NAME, found \"id=3\"".into()
        )
    );
    let line = "ip,actions=log(name=a),output:2,drop";
    assert_eq!(
        err(line),
        (col(line, "drop"), "drop must be the only action".into())
    );
}
