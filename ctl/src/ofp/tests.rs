//! Golden tests of the flow syntax: real-world lines (Antrea, OVN and
//! ovs-ofctl(8) examples) parsed to exact values and printed back to exact
//! strings. Error cases (with their exact line, column and message) are in
//! `tests_errors.rs`; the round-trip property test is in
//! `ctl/tests/roundtrip.rs`.

use super::*;
use flowtable::field::{ct_state, Field};
use flowtable::port::{reserved, PortTable};
use flowtable::rule::{Rule, DEFAULT_PRIORITY};
use flowtable::{Action, Bucket, FlowSpec, GroupSpec, GroupType, SubField};

fn flow(line: &str) -> FlowSpec {
    parse_flow(line, &()).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Parses, prints, and checks the print parses back to the same spec.
fn reprint(line: &str) -> String {
    let spec = flow(line);
    let out = format_flow_spec(&spec, &());
    assert_eq!(flow(&out), spec, "{line} printed as {out}");
    out
}

fn ports() -> PortTable {
    let mut t = PortTable::default();
    t.add(1, "vA1");
    t.add(2, "vB2");
    t.add(7, "tun0");
    t
}

#[test]
fn antrea_classifier_line() {
    let line = "table=0,priority=200,in_port=2,dl_src=00:00:00:00:00:01,\
                actions=load:0x1->NXM_NX_REG0[0..3],resubmit(,10)";
    let s = flow(line);
    assert_eq!((s.table, s.priority), (0, 200));
    assert_eq!(s.m.get(Field::InPort), (2, 0xffff_ffff));
    assert_eq!(s.m.get(Field::DlSrc), (1, 0xffff_ffff_ffff));
    assert_eq!(
        s.actions,
        vec![
            Action::Load {
                dst: SubField {
                    field: Field::Reg0,
                    ofs: 0,
                    n_bits: 4
                },
                value: 1
            },
            Action::Resubmit {
                in_port: None,
                table: Some(10)
            },
        ]
    );
    assert_eq!(
        reprint(line),
        "priority=200,in_port=2,dl_src=00:00:00:00:00:01,actions=load:0x1->reg0[0..3],resubmit(,10)"
    );
}

#[test]
fn routing_line_prints_back_verbatim() {
    let line = "table=10,priority=100,ip,nw_dst=10.244.1.0/24,actions=dec_ttl,mod_dl_src:aa:bb:cc:dd:ee:ff,output:2";
    let s = flow(line);
    assert_eq!(s.m.get(Field::NwDst), (0x0af4_0100, 0xffff_ff00));
    assert_eq!(
        s.actions,
        vec![
            Action::DecTtl,
            Action::SetField {
                field: Field::DlSrc,
                value: 0xaabb_ccdd_eeff,
                mask: 0xffff_ffff_ffff
            },
            Action::Output(2),
        ]
    );
    assert_eq!(reprint(line), line);
}

#[test]
fn cookies() {
    let s = flow("cookie=0x1/-1,actions=drop");
    assert_eq!((s.cookie, s.cookie_mask, s.actions.len()), (1, u64::MAX, 0));
    assert_eq!(
        reprint("cookie=0x1/-1,actions=drop"),
        "cookie=0x1/-1,actions=drop"
    );
    assert_eq!(
        reprint("cookie=0x10/0xf0,actions=drop"),
        "cookie=0x10/0xf0,actions=drop"
    );
    assert_eq!(reprint("cookie=12,actions=drop"), "cookie=0xc,actions=drop");
}

#[test]
fn conntrack_state_flags() {
    let s = flow("table=31,priority=190,ct_state=+inv+trk,ip actions=drop");
    let bits = u128::from(ct_state::INV | ct_state::TRK);
    assert_eq!(s.m.get(Field::CtState), (bits, bits));
    assert_eq!(
        reprint("ct_state=+trk+est,ip,actions=output:1"),
        "ip,ct_state=+est+trk,actions=output:1"
    );
    assert_eq!(
        reprint("ct_state=-new+est-rel+trk,actions=drop"),
        "ct_state=-new+est-rel+trk,actions=drop"
    );
    assert_eq!(
        reprint("ct_state=est|trk,actions=drop"),
        "ct_state=est|trk,actions=drop"
    );
    assert_eq!(
        reprint("ct_state=0x22/0x22,actions=drop"),
        "ct_state=+est+trk,actions=drop"
    );
    assert_eq!(
        reprint("ct_zone=5,ct_mark=0x2/0x2,actions=drop"),
        "ct_zone=5,ct_mark=0x2/0x2,actions=drop"
    );
}

#[test]
fn tcp_flags() {
    let s = flow("tcp,tcp_flags=+syn-ack,actions=drop");
    assert_eq!(s.m.get(Field::TcpFlags), (0x002, 0x012));
    assert_eq!(
        reprint("tcp,tcp_flags=+syn-ack,actions=drop"),
        "tcp,tcp_flags=+syn-ack,actions=drop"
    );
    assert_eq!(
        reprint("tcp,tcp_flags=syn|ack,actions=drop"),
        "tcp,tcp_flags=syn|ack,actions=drop"
    );
    assert_eq!(
        reprint("tcp6,tcp_flags=0x200/0x200,actions=drop"),
        "tcp6,tcp_flags=0x200/0x200,actions=drop"
    );
}

#[test]
fn ovn_style_metadata_and_registers() {
    let line =
        "table=20,priority=100,metadata=0x1,reg14=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,\
                actions=load:0x8000->NXM_NX_REG15[],resubmit(,21)";
    assert_eq!(
        reprint(line),
        "table=20,priority=100,metadata=0x1,reg14=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,\
         actions=load:0x8000->reg15[],resubmit(,21)"
    );
    assert_eq!(
        reprint("reg0=0x20000/0x70000,ip,actions=drop"),
        "ip,reg0=0x20000/0x70000,actions=drop"
    );
    assert_eq!(
        reprint("tun_id=0x5,tun_dst=192.168.0.2,actions=drop"),
        "tun_id=0x5,tun_dst=192.168.0.2,actions=drop"
    );
    assert_eq!(reprint("reg3=0,actions=drop"), "reg3=0,actions=drop");
}

#[test]
fn arp_responder() {
    let line = "table=20,priority=190,arp,arp_tpa=10.10.0.1,arp_op=1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],\
                mod_dl_src:aa:bb:cc:dd:ee:ff,load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
                load:0xaabbccddeeff->NXM_NX_ARP_SHA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],\
                load:0xa0a0001->NXM_OF_ARP_SPA[],IN_PORT";
    let s = flow(line);
    assert_eq!(s.m.get(Field::NwProto), (1, 0xff));
    assert_eq!(s.actions.last(), Some(&Action::InPort));
    assert_eq!(
        reprint(line),
        "table=20,priority=190,arp,arp_tpa=10.10.0.1,arp_op=1,actions=move:dl_src[]->dl_dst[],\
         mod_dl_src:aa:bb:cc:dd:ee:ff,load:0x2->nw_proto[],move:arp_sha[]->arp_tha[],\
         load:0xaabbccddeeff->arp_sha[],move:nw_src[]->nw_dst[],load:0xa0a0001->nw_src[],IN_PORT"
    );
}

#[test]
fn protocol_shorthands_and_aliases() {
    for (line, out) in [
        (
            "ip,nw_proto=6,tp_dst=80,actions=drop",
            "tcp,tp_dst=80,actions=drop",
        ),
        ("dl_type=0x0800,actions=drop", "ip,actions=drop"),
        ("ip,nw_proto=2,actions=drop", "igmp,actions=drop"),
        ("igmp,actions=drop", "igmp,actions=drop"),
        ("dl_type=0x88cc,actions=drop", "dl_type=0x88cc,actions=drop"),
        (
            "udp,udp_src=68,udp_dst=67,actions=drop",
            "udp,tp_src=68,tp_dst=67,actions=drop",
        ),
        (
            "sctp6,sctp_dst=0x50/0xfff0,actions=drop",
            "sctp6,tp_dst=0x50/0xfff0,actions=drop",
        ),
        (
            "icmp,icmp_type=8,icmp_code=0,actions=drop",
            "icmp,icmp_type=8,icmp_code=0,actions=drop",
        ),
        (
            "icmp6,icmpv6_type=135,nd_sll=00:11:22:33:44:55,actions=drop",
            "icmp6,icmpv6_type=135,nd_sll=00:11:22:33:44:55,actions=drop",
        ),
        (
            "arp,arp_spa=10.0.0.0/8,arp_sha=00:00:00:00:00:01,actions=drop",
            "arp,arp_spa=10.0.0.0/8,arp_sha=00:00:00:00:00:01,actions=drop",
        ),
        (
            "ip,nw_src=10.0.0.0/255.0.255.0,actions=drop",
            "ip,nw_src=10.0.0.0/255.0.255.0,actions=drop",
        ),
        (
            "ip,nw_src=10.1.2.3/16,actions=drop",
            "ip,nw_src=10.1.0.0/16,actions=drop",
        ),
        (
            "ip,nw_ttl=1,nw_frag=first,actions=drop",
            "ip,nw_ttl=1,nw_frag=first,actions=drop",
        ),
        (
            "ip,nw_frag=not_later,actions=drop",
            "ip,nw_frag=not_later,actions=drop",
        ),
        (
            "tcp,tcp_src=1024,tcp_dst=443,actions=drop",
            "tcp,tp_src=1024,tp_dst=443,actions=drop",
        ),
        ("in_port=LOCAL,actions=drop", "in_port=LOCAL,actions=drop"),
        ("in_port=65534,actions=drop", "in_port=LOCAL,actions=drop"),
        (
            "eth_dst=AA:BB:CC:00:00:01,actions=drop",
            "dl_dst=aa:bb:cc:00:00:01,actions=drop",
        ),
    ] {
        assert_eq!(reprint(line), out, "{line}");
    }
}

#[test]
fn ipv6_addresses() {
    let line = "ipv6,ipv6_src=2001:db8::/32,ipv6_dst=fe80::1,ipv6_label=0x12345,actions=drop";
    let s = flow(line);
    assert_eq!(
        s.m.get(Field::Ipv6Src),
        (0x2001_0db8 << 96, u128::MAX << 96)
    );
    assert_eq!(reprint(line), line);
    assert_eq!(
        reprint("ipv6,ipv6_dst=2001:db8::1/ffff:ffff::ff,actions=drop"),
        "ipv6,ipv6_dst=2001:db8::1/ffff:ffff::ff,actions=drop"
    );
    assert_eq!(
        reprint("ipv6,ipv6_src=0:0:0:0:0:0:0:1,actions=drop"),
        "ipv6,ipv6_src=::1,actions=drop"
    );
}

#[test]
fn vlan_spellings() {
    let s = flow("dl_vlan=10,dl_vlan_pcp=3,actions=strip_vlan,output:1");
    assert_eq!(s.m.get(Field::VlanTci), (0x700a, 0xffff));
    assert_eq!(
        reprint("dl_vlan=10,dl_vlan_pcp=3,actions=strip_vlan,output:1"),
        "dl_vlan=10,dl_vlan_pcp=3,actions=pop_vlan,output:1"
    );
    assert_eq!(
        reprint("dl_vlan=10,actions=drop"),
        "dl_vlan=10,actions=drop"
    );
    assert_eq!(
        reprint("dl_vlan_pcp=7,actions=drop"),
        "dl_vlan_pcp=7,actions=drop"
    );
    assert_eq!(
        flow("dl_vlan=0xffff,actions=drop").m.get(Field::VlanTci),
        (0, 0xffff)
    );
    assert_eq!(
        reprint("dl_vlan=0xffff,actions=mod_vlan_vid:5,output:1"),
        "vlan_tci=0x0000,actions=mod_vlan_vid:5,output:1"
    );
    assert_eq!(
        reprint("vlan_tci=0x1000/0x1000,actions=drop"),
        "vlan_tci=0x1000/0x1000,actions=drop"
    );
    assert_eq!(
        reprint("actions=push_vlan:0x8100,mod_vlan_pcp:2,pop_vlan"),
        "actions=push_vlan:0x8100,mod_vlan_pcp:2,pop_vlan"
    );
}

#[test]
fn tos_dscp_and_ecn() {
    assert_eq!(
        flow("ip,nw_tos=4,actions=drop").m.get(Field::NwTos),
        (4, 0xfc)
    );
    assert_eq!(
        flow("ip,ip_dscp=46,actions=drop").m.get(Field::NwTos),
        (184, 0xfc)
    );
    assert_eq!(
        flow("ip,nw_ecn=1,nw_tos=8,actions=drop")
            .m
            .get(Field::NwTos),
        (9, 0xff)
    );
    assert_eq!(
        reprint("ip,ip_dscp=46,actions=drop"),
        "ip,nw_tos=184,actions=drop"
    );
    assert_eq!(
        reprint("ipv6,nw_ecn=3,actions=drop"),
        "ipv6,nw_ecn=3,actions=drop"
    );
    assert_eq!(
        reprint("ip,nw_tos=8,nw_ecn=1,actions=drop"),
        "ip,nw_tos=8,nw_ecn=1,actions=drop"
    );
    assert_eq!(
        reprint("ip,actions=mod_nw_tos:16,mod_nw_ecn:2,set_field:10->ip_dscp"),
        "ip,actions=mod_nw_tos:16,mod_nw_ecn:2,mod_nw_tos:40"
    );
}

#[test]
fn output_spellings() {
    for (line, out) in [
        ("actions=output:2", "actions=output:2"),
        ("actions=output(port=2)", "actions=output:2"),
        ("actions=2,3", "actions=output:2,output:3"),
        ("actions=normal", "actions=NORMAL"),
        ("actions=NORMAL", "actions=NORMAL"),
        ("actions=output:NORMAL", "actions=NORMAL"),
        ("actions=flood", "actions=FLOOD"),
        ("actions=all", "actions=ALL"),
        ("actions=in_port", "actions=IN_PORT"),
        ("actions=local", "actions=LOCAL"),
        ("actions=LOCAL", "actions=LOCAL"),
        ("actions=output:65534", "actions=LOCAL"),
        ("actions=resubmit:3", "actions=resubmit:3"),
        ("actions=resubmit(3,4)", "actions=resubmit(3,4)"),
        ("actions=resubmit(3)", "actions=resubmit:3"),
        ("actions=resubmit( , 4 )", "actions=resubmit(,4)"),
        ("actions=resubmit(in_port,4)", "actions=resubmit(,4)"),
        ("actions=group:7", "actions=group:7"),
        ("actions=", "actions=drop"),
        ("actions=drop", "actions=drop"),
        (
            "table=3,actions=dec_ttl,goto_table:4",
            "table=3,actions=dec_ttl,goto_table:4",
        ),
    ] {
        assert_eq!(reprint(line), out, "{line}");
    }
    assert_eq!(flow("actions=in_port").actions, vec![Action::InPort]);
    assert_eq!(
        flow("actions=output:LOCAL").actions,
        vec![Action::Output(reserved::LOCAL)]
    );
}

#[test]
fn set_field_load_and_move() {
    for (line, out) in [
        (
            "ip,actions=set_field:10.0.0.1->nw_dst",
            "ip,actions=mod_nw_dst:10.0.0.1",
        ),
        (
            "ip,actions=set_field:10.0.0.0/8->ip_dst",
            "ip,actions=set_field:10.0.0.0/8->nw_dst",
        ),
        (
            "actions=set_field:0x5/0xf->reg0",
            "actions=set_field:0x5/0xf->reg0",
        ),
        (
            "actions=set_field:5->NXM_NX_REG1",
            "actions=set_field:0x5->reg1",
        ),
        (
            "actions=set_field:0xa->tun_id,set_field:1.2.3.4->tun_dst",
            "actions=set_field:0xa->tun_id,set_field:1.2.3.4->tun_dst",
        ),
        (
            "actions=set_tunnel:5,set_tunnel64:0x1234567890",
            "actions=set_field:0x5->tun_id,set_field:0x1234567890->tun_id",
        ),
        (
            "actions=set_field:aa:bb:cc:dd:ee:ff->eth_dst",
            "actions=mod_dl_dst:aa:bb:cc:dd:ee:ff",
        ),
        (
            "actions=set_field:LOCAL->in_port",
            "actions=set_field:LOCAL->in_port",
        ),
        (
            "tcp,actions=set_field:8080->tcp_dst,mod_tp_src:99",
            "tcp,actions=mod_tp_dst:8080,mod_tp_src:99",
        ),
        (
            "ipv6,actions=set_field:fe80::1->ipv6_src",
            "ipv6,actions=set_field:fe80::1->ipv6_src",
        ),
        (
            "ip,actions=mod_nw_src:1.1.1.1,mod_nw_ttl:9",
            "ip,actions=mod_nw_src:1.1.1.1,mod_nw_ttl:9",
        ),
        ("actions=load:0->NXM_NX_REG0[5]", "actions=load:0->reg0[5]"),
        (
            "actions=load:0xffffffff->reg2",
            "actions=load:0xffffffff->reg2[]",
        ),
        (
            "actions=load:1->OXM_OF_METADATA[63]",
            "actions=load:0x1->metadata[63]",
        ),
        (
            "actions=move:NXM_NX_REG0[0..15]->NXM_NX_REG1[16..31]",
            "actions=move:reg0[0..15]->reg1[16..31]",
        ),
        ("actions=move:reg0[]->reg1[]", "actions=move:reg0[]->reg1[]"),
        (
            "actions=move:NXM_NX_TUN_ID[0..31]->reg3",
            "actions=move:tun_id[0..31]->reg3[]",
        ),
        (
            "icmp,icmp_type=8,actions=move:icmp_type[]->reg0[0..7]",
            "icmp,icmp_type=8,actions=move:tp_src[0..7]->reg0[0..7]",
        ),
    ] {
        assert_eq!(reprint(line), out, "{line}");
    }
}

#[test]
fn separators_and_port_names() {
    let p = ports();
    let s = parse_flow(
        "priority=10 ip in_port=vA1  nw_src=10.0.0.1 actions=output:vB2, tun0",
        &p,
    )
    .unwrap();
    assert_eq!(s.priority, 10);
    assert_eq!(s.m.get(Field::InPort).0, 1);
    assert_eq!(s.actions, vec![Action::Output(2), Action::Output(7)]);
    assert_eq!(
        format_flow_spec(&s, &p),
        "priority=10,ip,in_port=vA1,nw_src=10.0.0.1,actions=output:vB2,output:tun0"
    );
    assert_eq!(
        format_flow_spec(&s, &()),
        "priority=10,ip,in_port=1,nw_src=10.0.0.1,actions=output:2,output:7"
    );
    let s = parse_flow(
        "out_port=vB2,idle_timeout=10,hard_timeout=20,actions=resubmit:vA1",
        &p,
    )
    .unwrap();
    assert_eq!(
        (s.out_port, s.idle_timeout, s.hard_timeout),
        (Some(2), 10, 20)
    );
    assert_eq!(
        format_flow_spec(&s, &p),
        "idle_timeout=10,hard_timeout=20,out_port=vB2,actions=resubmit:vA1"
    );
    assert_eq!(format_flow_spec(&FlowSpec::default(), &()), "actions=drop");
    assert_eq!(FlowSpec::default().priority, DEFAULT_PRIORITY);
}

#[test]
fn groups() {
    let line = "group_id=1,type=select,bucket=weight:100,watch_port:2,actions=output:1,bucket=actions=output:2";
    let g = parse_group(line, &()).unwrap();
    assert_eq!(
        g,
        GroupSpec {
            id: 1,
            kind: GroupType::Select,
            buckets: vec![
                Bucket {
                    bucket_id: 0,
                    weight: 100,
                    watch_port: Some(2),
                    actions: vec![Action::Output(1)]
                },
                Bucket {
                    bucket_id: 1,
                    weight: 100,
                    watch_port: None,
                    actions: vec![Action::Output(2)]
                },
            ],
            hash_fields: None,
        }
    );
    let out = format_group(&g, &());
    assert_eq!(out, " group_id=1,type=select,bucket=bucket_id:0,weight:100,watch_port:2,actions=output:1,bucket=bucket_id:1,weight:100,actions=output:2");
    assert_eq!(parse_group(&out, &()).unwrap(), g);
    let g = parse_group(
        "group_id=2,type=all,bucket=output:1,bucket=mod_dl_dst:00:00:00:00:00:02,output:2",
        &(),
    )
    .unwrap();
    assert_eq!(g.buckets[1].actions.len(), 2);
    assert_eq!(g.buckets[0].weight, 0);
    let out = format_group(&g, &());
    assert_eq!(out, " group_id=2,type=all,bucket=bucket_id:0,actions=output:1,bucket=bucket_id:1,actions=mod_dl_dst:00:00:00:00:00:02,output:2");
    assert_eq!(parse_group(&out, &()).unwrap(), g);
    let g = parse_group("group_id=3,type=indirect,bucket=actions=resubmit(,5)", &()).unwrap();
    assert_eq!(
        format_group(&g, &()),
        " group_id=3,type=indirect,bucket=bucket_id:0,actions=resubmit(,5)"
    );
    let g = parse_group(
        "group_id=4,type=select,bucket=weight:50,actions=output:vA1,bucket=weight=150,output:2",
        &ports(),
    )
    .unwrap();
    assert_eq!((g.buckets[0].weight, g.buckets[1].weight), (50, 150));
    assert_eq!(
        format_group(&g, &ports()),
        " group_id=4,type=select,bucket=bucket_id:0,weight:50,actions=output:vA1,bucket=bucket_id:1,weight:150,actions=output:vB2"
    );
    assert_eq!(
        format_group(&parse_group("group_id=9,type=all", &()).unwrap(), &()),
        " group_id=9,type=all"
    );
}

#[test]
fn rules_print_like_dump_flows() {
    let spec = flow(
        "priority=100,ip,in_port=1,nw_dst=10.244.1.0/24,idle_timeout=10,actions=dec_ttl,output:2",
    );
    let r = Rule::new(&spec, 1000);
    r.stats.credit(3, 180, 1234);
    assert_eq!(
        format_rule(&r, 3234, &()),
        " cookie=0x0, duration=2.234s, table=0, n_packets=3, n_bytes=180, idle_timeout=10, idle_age=2, \
         priority=100,ip,in_port=1,nw_dst=10.244.1.0/24 actions=dec_ttl,output:2"
    );
    let r = Rule::new(
        &flow("table=3,cookie=0xab,hard_timeout=60,actions=NORMAL"),
        0,
    );
    assert_eq!(
        format_rule(&r, 5000, &()),
        " cookie=0xab, duration=5s, table=3, n_packets=0, n_bytes=0, hard_timeout=60, idle_age=5, actions=NORMAL"
    );
    let r = Rule::new(&flow("priority=0,actions=drop"), 0);
    assert_eq!(
        format_rule(&r, 0, &()),
        " cookie=0x0, duration=0s, table=0, n_packets=0, n_bytes=0, idle_age=0, priority=0 actions=drop"
    );
}

#[test]
fn format_match_and_actions_alone() {
    let s = flow("ip,in_port=1,nw_dst=10.244.1.0/24,actions=dec_ttl,output:2");
    assert_eq!(format_match(&s.m, &()), "ip,in_port=1,nw_dst=10.244.1.0/24");
    assert_eq!(format_actions(&s.actions, &()), "dec_ttl,output:2");
    assert_eq!(format_match(&flowtable::Match::any(), &()), "");
    assert_eq!(format_actions(&[], &()), "drop");
}

#[test]
fn packets_for_trace() {
    let k = parse_packet("in_port=1,tcp,nw_src=10.244.1.2,tp_dst=80", &()).unwrap();
    assert_eq!(k.get(Field::InPort), 1);
    assert_eq!(k.get(Field::DlType), 0x0800);
    assert_eq!(k.get(Field::NwProto), 6);
    assert_eq!(k.get(Field::NwSrc), 0x0af4_0102);
    assert_eq!(k.get(Field::TpDst), 80);
    assert_eq!(k.get(Field::NwTtl), 64);
    assert_eq!(
        parse_packet("ip,nw_ttl=3", &()).unwrap().get(Field::NwTtl),
        3
    );
    assert_eq!(
        parse_packet("arp,arp_op=1", &()).unwrap().get(Field::NwTtl),
        0
    );
    let k = parse_packet("tcp,ct_state=+trk+est,tcp_flags=+syn,dl_vlan=5", &()).unwrap();
    assert_eq!(k.get(Field::CtState), 0x22);
    assert_eq!(k.get(Field::TcpFlags), 2);
    assert_eq!(k.get(Field::VlanTci), 0x1005);
    assert_eq!(
        parse_packet("in_port=vB2", &ports())
            .unwrap()
            .get(Field::InPort),
        2
    );
}

#[test]
fn flow_files() {
    let text = "# bridge setup\n\
                \n\
                table=0,priority=10,actions=resubmit(,1)\n\
                group_id=1,type=all,bucket=output:1\n\
                add ip,actions=drop\n\
                mod ip,actions=output:2\n\
                modify_strict priority=5,ip,actions=output:3\n\
                \t delete tcp,tp_dst=80\n\
                del\n\
                delete_strict,priority=5,ip\n";
    let f = parse_flow_file(text, &()).unwrap();
    let cmds: Vec<(usize, FlowCommand)> = f.flows.iter().map(|(n, c, _)| (*n, *c)).collect();
    assert_eq!(
        cmds,
        vec![
            (3, FlowCommand::Add),
            (5, FlowCommand::Add),
            (6, FlowCommand::Modify),
            (7, FlowCommand::ModifyStrict),
            (8, FlowCommand::Delete),
            (9, FlowCommand::Delete),
            (10, FlowCommand::DeleteStrict),
        ]
    );
    assert_eq!(f.groups.len(), 1);
    assert_eq!(f.groups[0].0, 4);
    assert_eq!(f.flows[4].2.m.get(Field::TpDst), (80, 0xffff));
    assert_eq!(
        f.flows[5].2,
        FlowSpec {
            m: flow("actions=drop").m,
            ..Default::default()
        }
    );
    let del = parse_flow_command("tcp,tp_dst=80", FlowCommand::Delete, &()).unwrap();
    assert_eq!(del.m, f.flows[4].2.m);
}
