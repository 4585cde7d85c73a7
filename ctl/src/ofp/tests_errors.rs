//! Error cases of the flow syntax, each with the exact line, column and
//! message the user sees. Columns are asserted by computing where the
//! offending text starts in the line, so a test cannot drift from its input.

use super::*;

/// Parses `line` as a flow and returns (column, message) of the error.
fn err(line: &str) -> (usize, String) {
    match parse_flow(line, &()) {
        Ok(s) => panic!("{line} parsed as {s:?}"),
        Err(e) => {
            assert_eq!(e.line, 1);
            (e.column, e.message)
        }
    }
}

/// The 1-based column of the first occurrence of `needle` in `line`.
fn col(line: &str, needle: &str) -> usize {
    line.find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {line}"))
        + 1
}

fn check(line: &str, at: &str, message: &str) {
    assert_eq!(err(line), (col(line, at), message.to_string()), "{line}");
}

#[test]
fn bad_values() {
    check(
        "ip,nw_dst=10.0.0,actions=drop",
        "10.0.0",
        "expected an IPv4 address, found \"10.0.0\"",
    );
    assert_eq!(err("ip,nw_dst=10.0.0,actions=drop").0, 11);
    check(
        "ip,nw_dst=10.0.0.0/33,actions=drop",
        "33",
        "expected a prefix length of at most 32, found \"33\"",
    );
    check(
        "ipv6,ipv6_src=fe80:::1,actions=drop",
        "fe80",
        "expected an IPv6 address, found \"fe80:::1\"",
    );
    check(
        "dl_src=00:11:22:33:44,actions=drop",
        "00:",
        "expected an Ethernet address, found \"00:11:22:33:44\"",
    );
    check(
        "tcp,tp_dst=70000,actions=drop",
        "70000",
        "value 70000 does not fit in tp_dst (16 bits)",
    );
    check(
        "tcp,tp_dst=http,actions=drop",
        "http",
        "expected a number, found \"http\"",
    );
    check(
        "priority=65536,actions=drop",
        "65536",
        "value 65536 does not fit in priority (16 bits)",
    );
    check(
        "table=254,actions=drop",
        "254",
        "table 254 does not exist (tables are 0 to 253)",
    );
    check(
        "icmp,icmp_type=256,actions=drop",
        "256",
        "value 256 does not fit in icmp_type (8 bits)",
    );
    check(
        "dl_vlan=4096,actions=drop",
        "4096",
        "dl_vlan must be a VLAN ID (0 to 4095) or 0xffff, not 4096",
    );
    check(
        "ip,nw_tos=5,actions=drop",
        "5",
        "nw_tos=5 sets the ECN bits; use nw_ecn for those",
    );
    check(
        "ct_state=+trk+bogus,actions=drop",
        "bogus",
        "unknown ct_state flag \"bogus\"",
    );
    check(
        "ip,nw_frag=maybe,actions=drop",
        "maybe",
        "expected no, yes, first, later or not_later, found \"maybe\"",
    );
    check("in_port=1/1,actions=drop", "/", "in_port cannot be masked");
    check(
        "ip,nw_ttl=1/0xff,actions=drop",
        "/",
        "nw_ttl cannot be masked",
    );
    check("in_port=vA1,actions=drop", "vA1", "unknown port \"vA1\"");
    check(
        "cookie=0x1/zz,actions=drop",
        "zz",
        "expected a number, found \"zz\"",
    );
}

#[test]
fn unknown_and_malformed_items() {
    check("ip,foo=1,actions=drop", "foo", "unknown field \"foo\"");
    check("ip,bogus,actions=drop", "bogus", "unknown field \"bogus\"");
    check(
        "ip,nw_dst,actions=drop",
        "nw_dst",
        "nw_dst needs a value (nw_dst=...)",
    );
    check(
        "rarp,actions=drop",
        "rarp",
        "rarp is not supported by oxvs: oxvs does not parse MPLS or RARP",
    );
}

#[test]
fn missing_actions_points_past_the_end() {
    let line = "ip,nw_dst=10.0.0.1";
    assert_eq!(
        err(line),
        (
            line.len() + 1,
            "missing actions= (the action list comes last)".to_string()
        )
    );
}

#[test]
fn conflicts_and_prerequisites() {
    check(
        "tcp,udp,actions=drop",
        "udp",
        "udp conflicts with an earlier value of nw_proto",
    );
    check(
        "tp_dst=80,tp_dst=81,tcp,actions=drop",
        "tp_dst=81",
        "tp_dst conflicts with an earlier value of tp_dst",
    );
    check(
        "priority=1,priority=2,actions=drop",
        "priority=2",
        "conflicting values for priority",
    );
    check(
        "dl_vlan=0xffff,dl_vlan_pcp=1,actions=drop",
        "dl_vlan_pcp",
        "dl_vlan_pcp conflicts with an earlier value of vlan_tci",
    );
    check(
        "tp_dst=80,actions=drop",
        "tp_dst",
        "tp_dst requires nw_proto of tcp, udp, sctp, icmp or icmp6 in the match",
    );
    check(
        "in_port=1,nw_src=10.0.0.1,actions=drop",
        "nw_src",
        "nw_src requires ip or arp in the match",
    );
    check(
        "ip,ipv6_dst=::1,actions=drop",
        "ipv6_dst",
        "ipv6_dst requires ipv6 in the match",
    );
    check(
        "ip,tcp_dst=80,actions=drop",
        "tcp_dst",
        "tcp_dst requires tcp or tcp6 in the match",
    );
    check(
        "udp,tcp_flags=+syn,actions=drop",
        "tcp_flags",
        "tcp_flags requires tcp in the match",
    );
    check(
        "ip,arp_spa=10.0.0.1,actions=drop",
        "arp_spa",
        "arp_spa requires arp in the match",
    );
    check(
        "nw_proto=6,actions=drop",
        "nw_proto",
        "nw_proto requires ip, ipv6 or arp in the match",
    );
    // Repeating an agreeing value is fine.
    assert!(parse_flow("tcp,tp_dst=80,tcp_dst=80,nw_proto=6,actions=drop", &()).is_ok());
}

#[test]
fn bad_actions() {
    check(
        "ip,actions=output:1,frobnicate",
        "frobnicate",
        "unknown action \"frobnicate\"",
    );
    check("actions=frob:1", "frob", "unknown action \"frob\"");
    check(
        "actions=bundle(eth_src,0,hrw,ofport,members:1)",
        "bundle(",
        "bundle is not supported by oxvs: oxvs has no bonds; use a select group",
    );
    check(
        "ip,actions=ct(commit,alg=ftp)",
        "alg=",
        "ct alg is not supported",
    );
    check(
        "actions=drop,output:1",
        "drop",
        "drop must be the only action",
    );
    check(
        "table=5,actions=goto_table:3",
        "3",
        "goto_table:3 must go to a later table than this rule's table 5",
    );
    assert_eq!(err("table=5,actions=goto_table:3").0, 28);
    let line = "table=5,actions=goto_table:5";
    assert_eq!(
        err(line),
        (
            28,
            "goto_table:5 must go to a later table than this rule's table 5".to_string()
        )
    );
    check(
        "actions=goto_table:1,output:2",
        "goto",
        "goto_table must be the last action",
    );
    check(
        "actions=goto_table",
        "goto",
        "expected goto_table:TABLE, found \"goto_table\"",
    );
    check("actions=output:vB2", "vB2", "unknown port \"vB2\"");
    check(
        "actions=output:NXM_NX_BOGUS[]",
        "NXM",
        "unknown field \"NXM_NX_BOGUS\"",
    );
    check(
        "actions=output:NXM_NX_REG0[0..39]",
        "39]",
        "expected a bit number below 32 for NXM_NX_REG0, found \"39\"",
    );
    check(
        "actions=output:NXM_NX_TUN_ID[0..47]",
        "NXM",
        "output:NXM_NX_TUN_ID[0..47] reads 48 bits; a port number has at most 32",
    );
    check(
        "actions=output:pkt_mark",
        "pkt_mark",
        "pkt_mark is not supported by oxvs: AF_XDP frames carry no socket-buffer mark, so there is nothing to match or set",
    );
    check(
        "actions=output:nw_dst",
        "nw_dst",
        "nw_dst requires ip or arp in the match",
    );
    check(
        "actions=output(port=1,max_len=100)",
        "max_len",
        "output max_len is not supported",
    );
    check(
        "actions=CONTROLLER",
        "CONTROLLER",
        "controller is not supported by oxvs: oxvs has no OpenFlow controller channel to send packets to",
    );
    check(
        "actions=resubmit(,)",
        "resubmit",
        "resubmit needs a port or a table",
    );
    check(
        "actions=resubmit(,300)",
        "300",
        "value 300 does not fit in a table number (8 bits)",
    );
    check("actions=dec_ttl:1", ":", "dec_ttl takes no argument");
    check(
        "actions=output(port=1)x",
        "x",
        "expected nothing after ')', found \"x\"",
    );
    check("actions=resubmit(,1", "(", "'(' is never closed");
    check(
        "actions=push_vlan:0x0800",
        "0x0800",
        "push_vlan takes ethertype 0x8100 or 0x88a8",
    );
    check(
        "actions=mod_vlan_vid:4096",
        "4096",
        "value 4096 does not fit in mod_vlan_vid (12 bits)",
    );
    check(
        "ip,actions=mod_nw_tos:5",
        "5",
        "mod_nw_tos:5 sets the ECN bits; it must be a multiple of 4",
    );
}

#[test]
fn bad_writes() {
    check(
        "actions=set_field:80->tp_dst",
        "tp_dst",
        "tp_dst requires nw_proto of tcp, udp, sctp, icmp or icmp6 in the match",
    );
    check(
        "udp,actions=set_field:80->tcp_dst",
        "tcp_dst",
        "tcp_dst requires tcp or tcp6 in the match",
    );
    check(
        "actions=mod_nw_dst:10.0.0.1",
        "mod_nw_dst",
        "nw_dst requires ip or arp in the match",
    );
    check(
        "actions=set_field:1->ct_state",
        "ct_state",
        "ct_state cannot be written by an action",
    );
    check(
        "actions=set_field:0x1->reg0/5",
        "reg0/5",
        "unknown field \"reg0/5\"",
    );
    check(
        "actions=set_field:1->dl_vlan",
        "dl_vlan",
        "set_field cannot write dl_vlan; use mod_vlan_vid or mod_vlan_pcp",
    );
    check(
        "actions=set_field:1",
        "1",
        "expected SOURCE->DESTINATION, found \"1\"",
    );
    check(
        "actions=load:0x10->NXM_NX_REG0[0..3]",
        "0x10",
        "value 0x10 does not fit in reg0[0..3] (4 bits)",
    );
    check(
        "actions=load:1->NXM_NX_REG0[0..32]",
        "32]",
        "expected a bit number below 32 for NXM_NX_REG0, found \"32\"",
    );
    check(
        "actions=load:1->NXM_NX_REG0[7..3]",
        "7..3",
        "bit range 7..3 runs backwards",
    );
    check(
        "actions=load:1->NXM_NX_REG0[",
        "[",
        "expected [], [BIT] or [START..END], found \"[\"",
    );
    check(
        "actions=load:1->NXM_NX_BOGUS[]",
        "NXM",
        "unknown field \"NXM_NX_BOGUS\"",
    );
    check(
        "actions=load:1->NXM_OF_ETH_TYPE[]",
        "NXM",
        "dl_type cannot be written by an action",
    );
    check(
        "actions=move:reg0[0..7]->reg1[0..15]",
        "reg0",
        "move copies 8 bits into 16 bits; the widths must be equal",
    );
}

#[test]
fn packet_descriptions() {
    let e = parse_packet("ip,nw_dst=10.0.0.0/24", &()).unwrap_err();
    assert_eq!(
        (e.column, e.message.as_str()),
        (19, "a packet has exact values, so nw_dst cannot be masked")
    );
    let e = parse_packet("tcp,tp_dst=80,actions=drop", &()).unwrap_err();
    assert_eq!(
        (e.column, e.message.as_str()),
        (15, "actions is not part of a packet")
    );
    let e = parse_packet("priority=1", &()).unwrap_err();
    assert_eq!(
        (e.column, e.message.as_str()),
        (1, "priority is not part of a packet")
    );
    let e = parse_packet("tp_dst=80", &()).unwrap_err();
    assert_eq!(e.column, 1);
}

#[test]
fn groups() {
    let g = |s: &str| parse_group(s, &()).unwrap_err();
    let e = g("group_id=1,bucket=output:1");
    assert_eq!(
        (e.column, e.message.as_str()),
        (1, "missing type= (all, select or indirect)")
    );
    let e = g("type=all,bucket=output:1");
    assert_eq!((e.column, e.message.as_str()), (1, "missing group_id="));
    let e = g("group_id=1,type=ff,bucket=output:1");
    assert_eq!(
        (e.column, e.message.as_str()),
        (17, "group type ff is not supported")
    );
    let e = g("group_id=1,type=indirect,bucket=output:1,bucket=output:2");
    assert_eq!(
        (e.column, e.message.as_str()),
        (42, "an indirect group has exactly one bucket")
    );
    let e = g("group_id=1,type=all,bucket=actions=goto_table:2");
    assert_eq!(
        (e.column, e.message.as_str()),
        (36, "goto_table is not allowed in a group bucket")
    );
    let e = g("group_id=1,type=all,color=red");
    assert_eq!(
        (e.column, e.message.as_str()),
        (21, "unknown group key \"color\"")
    );
    let e = g("group_id=1,type=select,bucket=weight:x,output:1");
    assert_eq!(
        (e.column, e.message.as_str()),
        (38, "expected a number, found \"x\"")
    );
    let e = g("group_id=1,type=all,bucket=output:1,bogus");
    assert_eq!(
        (e.column, e.message.as_str()),
        (37, "unknown action \"bogus\"")
    );
}

#[test]
fn files_report_the_bad_line() {
    let text = "ip,actions=drop\n# comment\nip,nw_dst=10.0.0,actions=drop\ntcp,actions=drop\n";
    let e = parse_flow_file(text, &()).unwrap_err();
    assert_eq!((e.line, e.column), (3, 11));
    assert_eq!(
        e.to_string(),
        "line 3, column 11: expected an IPv4 address, found \"10.0.0\""
    );
    let e = parse_flow_file("ip,actions=drop\n\n  delete tcp,actions=drop\n", &()).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (3, 14, "delete commands do not take actions=")
    );
    let e = parse_flow_file("add ip,bogus=1,actions=drop", &()).unwrap_err();
    assert_eq!((e.line, e.column), (1, 8));
    let e = parse_flow_file("\n\ngroup_id=1,type=all,bucket=bogus", &()).unwrap_err();
    assert_eq!((e.line, e.column), (3, 28));
    let e = parse_flow_file("modify ip", &()).unwrap_err();
    assert_eq!((e.line, e.column), (1, 10));
}

#[test]
fn nothing_panics_on_odd_input() {
    for line in [
        "",
        ",",
        "=",
        "actions",
        "actions=(",
        "actions=)",
        "a=b=c",
        "é=é,actions=é",
        "actions=output:",
        "actions=resubmit()",
        "actions=output()",
        "nw_src=/",
        "ct_state=+",
        "ct_state=-",
        "tcp_flags=|",
        "actions=load:->",
        "actions=move:[]->[]",
        "actions=load:1->reg0[..]",
        "dl_vlan=",
        "in_port=",
        "actions=set_field:->",
        "cookie=/",
        "actions=bucket=",
        "ipv6_src=::/129",
        "tp_dst=0x/0x",
    ] {
        let _ = parse_flow(line, &());
        let _ = parse_packet(line, &());
        let _ = parse_group(line, &());
        let _ = parse_flow_file(line, &());
    }
}
