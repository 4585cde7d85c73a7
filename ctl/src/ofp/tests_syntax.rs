//! The syntax real OVS pipelines (Antrea's, OVN's) use that oxvs first
//! refused: output to a field, bucket ids, `vlan_vid`, `write_metadata`, and
//! the fields and actions oxvs still refuses, which must be refused by name
//! and at the right column.

use super::*;
use flowtable::{Action, Field, SubField};

fn actions(line: &str) -> Vec<Action> {
    parse_flow(line, &())
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .actions
}

/// Parses, prints, and checks the printed line parses to the same spec.
fn round_trip(line: &str) -> String {
    let s = parse_flow(line, &()).unwrap_or_else(|e| panic!("{line}: {e}"));
    let out = format_flow_spec(&s, &());
    assert_eq!(parse_flow(&out, &()), Ok(s), "{line} printed as {out}");
    out
}

fn err(line: &str) -> (usize, String) {
    let e = parse_flow(line, &()).unwrap_err();
    (e.column, e.message)
}

#[test]
fn output_to_a_register() {
    let reg1 = SubField::whole(Field::Reg1);
    assert_eq!(
        actions("actions=output:NXM_NX_REG1[]"),
        vec![Action::OutputField(reg1)]
    );
    assert_eq!(
        actions("actions=output:reg1"),
        vec![Action::OutputField(reg1)]
    );
    assert_eq!(
        actions("actions=output:reg1[]"),
        vec![Action::OutputField(reg1)]
    );
    let low = SubField {
        field: Field::Reg1,
        ofs: 0,
        n_bits: 16,
    };
    assert_eq!(
        actions("actions=output:NXM_NX_REG1[0..15]"),
        vec![Action::OutputField(low)]
    );
    // Printed as OVS prints it: by the NXM name.
    assert_eq!(
        round_trip("actions=output:reg1"),
        "actions=output:NXM_NX_REG1[]"
    );
    assert_eq!(
        round_trip("table=70,reg0=0x10000/0x10000,actions=output:NXM_NX_REG1[0..15]"),
        "table=70,reg0=0x10000/0x10000,actions=output:NXM_NX_REG1[0..15]"
    );
    assert_eq!(
        round_trip("ip,actions=output:NXM_OF_IP_DST[24..31]"),
        "ip,actions=output:NXM_OF_IP_DST[24..31]"
    );
    assert_eq!(
        round_trip("actions=output:metadata[3]"),
        "actions=output:OXM_OF_METADATA[3]"
    );
}

#[test]
fn a_port_name_wins_over_a_field_name() {
    let mut ports = flowtable::port::PortTable::default();
    ports.add(7, "reg1");
    let s = parse_flow("actions=output:reg1", &ports).unwrap();
    assert_eq!(s.actions, vec![Action::Output(7)]);
    let s = parse_flow("actions=output:reg1[]", &ports).unwrap();
    assert_eq!(
        s.actions,
        vec![Action::OutputField(SubField::whole(Field::Reg1))]
    );
}

#[test]
fn write_metadata_is_an_instruction() {
    assert_eq!(
        actions("actions=write_metadata:0x1/0xff,goto_table:2"),
        vec![
            Action::WriteMetadata {
                value: 1,
                mask: 0xff
            },
            Action::GotoTable(2)
        ]
    );
    assert_eq!(
        actions("actions=write_metadata:5"),
        vec![Action::WriteMetadata {
            value: 5,
            mask: u64::MAX
        }]
    );
    assert_eq!(
        round_trip("actions=output:1,write_metadata:0x1234/0xffff,goto_table:5"),
        "actions=output:1,write_metadata:0x1234/0xffff,goto_table:5"
    );
    assert_eq!(
        round_trip("actions=write_metadata:0"),
        "actions=write_metadata:0"
    );
    assert_eq!(
        err("actions=write_metadata:1,output:2"),
        (
            26,
            "only goto_table may follow write_metadata (an instruction, run after the actions)"
                .to_string()
        )
    );
    assert_eq!(
        err("actions=write_metadata:1/0x1ffffffffffffffff").1,
        "value 0x1ffffffffffffffff does not fit in write_metadata (64 bits)"
    );
    let e = parse_group("group_id=1,type=all,bucket=write_metadata:1", &()).unwrap_err();
    assert_eq!(e.message, "write_metadata is not allowed in a group bucket");
}

#[test]
fn vlan_vid_carries_the_present_bit() {
    let m = |line: &str| parse_flow(line, &()).unwrap().m.get(Field::VlanTci);
    assert_eq!(m("vlan_vid=0x1064,actions=drop"), (0x1064, 0x1fff));
    assert_eq!(m("vlan_vid=4196,actions=drop"), (0x1064, 0x1fff));
    assert_eq!(m("vlan_vid=0,actions=drop"), (0, 0x1fff));
    assert_eq!(m("vlan_vid=0x1000/0x1000,actions=drop"), (0x1000, 0x1000));
    assert_eq!(m("OXM_OF_VLAN_VID=0x1005,actions=drop"), (0x1005, 0x1fff));
    // The same bits as dl_vlan, so OVS (and oxvs) print the match that way.
    assert_eq!(
        round_trip("vlan_vid=0x1064,actions=drop"),
        "dl_vlan=100,actions=drop"
    );
    assert_eq!(
        round_trip("vlan_vid=0,actions=drop"),
        "vlan_tci=0x0000/0x1fff,actions=drop"
    );
    assert_eq!(
        err("vlan_vid=0x2000,actions=drop").1,
        "value 0x2000 does not fit in vlan_vid (13 bits)"
    );
    assert_eq!(
        err("vlan_vid=1/0x3fff,actions=drop").1,
        "value 0x3fff does not fit in vlan_vid (13 bits)"
    );
    // set_field writes the VID and the present bit, printed in decimal.
    assert_eq!(
        actions("actions=push_vlan:0x8100,set_field:4196->vlan_vid"),
        vec![
            Action::PushVlan(0x8100),
            Action::SetField {
                field: Field::VlanTci,
                value: 0x1064,
                mask: 0x1fff
            }
        ]
    );
    assert_eq!(
        round_trip("actions=set_field:0x1064->vlan_vid"),
        "actions=set_field:4196->vlan_vid"
    );
    // Antrea copies a VLAN id out of ct_label this way.
    assert_eq!(
        actions("actions=move:NXM_NX_CT_LABEL[64..75]->OXM_OF_VLAN_VID[0..11]"),
        vec![Action::Move {
            src: SubField {
                field: Field::CtLabel,
                ofs: 64,
                n_bits: 12
            },
            dst: SubField {
                field: Field::VlanTci,
                ofs: 0,
                n_bits: 12
            }
        }]
    );
    assert_eq!(m("vlan_pcp=5,actions=drop"), (0xb000, 0xf000));
}

#[test]
fn oxm_transport_names() {
    let tp_dst = |line: &str| parse_flow(line, &()).unwrap().m.get(Field::TpDst);
    assert_eq!(tp_dst("tcp,OXM_OF_TCP_DST=80,actions=drop"), (80, 0xffff));
    assert_eq!(
        err("udp,OXM_OF_TCP_DST=80,actions=drop").1,
        "OXM_OF_TCP_DST requires tcp or tcp6 in the match"
    );
    let l = actions(
        "tcp,actions=learn(table=40,eth_type=0x800,nw_proto=6,OXM_OF_TCP_DST[],NXM_OF_IP_SRC[])",
    );
    assert_eq!(l.len(), 1);
}

#[test]
fn bucket_ids() {
    let g = parse_group(
        "group_id=1,type=select,bucket=bucket_id:0,weight:100,actions=output:1,\
         bucket=bucket_id:1,weight:100,actions=output:2",
        &(),
    )
    .unwrap();
    assert_eq!(
        g.buckets.iter().map(|b| b.bucket_id).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let out = format_group(&g, &());
    assert_eq!(
        out,
        " group_id=1,type=select,bucket=bucket_id:0,weight:100,actions=output:1,\
         bucket=bucket_id:1,weight:100,actions=output:2"
    );
    assert_eq!(parse_group(&out, &()), Ok(g));
    // Buckets without an id get the lowest id no other bucket has, in order.
    let ids = |line: &str| {
        parse_group(line, &())
            .unwrap()
            .buckets
            .iter()
            .map(|b| b.bucket_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("group_id=1,type=all,bucket=output:1,bucket=output:2,bucket=output:3"),
        vec![0, 1, 2]
    );
    assert_eq!(
        ids("group_id=1,type=all,bucket=output:1,bucket=bucket_id=0,output:2,bucket=output:3"),
        vec![1, 0, 2]
    );
    assert_eq!(
        ids("group_id=1,type=all,bucket=bucket_id:7,output:1,bucket=output:2"),
        vec![7, 0]
    );
    let e = parse_group(
        "group_id=1,type=all,bucket=bucket_id:3,output:1,bucket=bucket_id:3,output:2",
        &(),
    )
    .unwrap_err();
    assert_eq!(
        (e.column, e.message.as_str()),
        (66, "bucket_id 3 is given to two buckets")
    );
    let e = parse_group(
        "group_id=1,type=all,bucket=bucket_id:0xffffff01,output:1",
        &(),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "bucket_id 0xffffff01 is above the largest bucket id 0xffffff00"
    );
}

#[test]
fn refused_fields_and_actions_are_named_at_their_column() {
    assert_eq!(
        err("ip,pkt_mark=0x1,actions=drop"),
        (
            4,
            "pkt_mark is not supported by oxvs: AF_XDP frames carry no socket-buffer mark, so there is nothing to match or set"
                .to_string()
        )
    );
    let (col, msg) = err("actions=set_field:0x1->xxreg3");
    assert_eq!(col, 24);
    assert!(
        msg.starts_with("xxreg3 is not supported by oxvs: "),
        "{msg}"
    );
    let (col, msg) = err("ip,actions=move:NXM_NX_CT_NW_DST[]->NXM_NX_REG3[]");
    assert_eq!(col, 17);
    assert!(
        msg.starts_with("NXM_NX_CT_NW_DST is not supported by oxvs: "),
        "{msg}"
    );
    let (col, msg) = err("icmp6,nd_target=fe80::1,actions=drop");
    assert_eq!(col, 7);
    assert!(
        msg.starts_with("nd_target is not supported by oxvs"),
        "{msg}"
    );
    let (col, msg) = err("tun_metadata5=1,actions=drop");
    assert_eq!(col, 1);
    assert!(
        msg.starts_with("tun_metadata5 is not supported by oxvs"),
        "{msg}"
    );
    let (col, msg) = err("ip,actions=ct(commit),controller(reason=no_match,max_len=65535)");
    assert_eq!(col, 23);
    assert!(
        msg.starts_with("controller is not supported by oxvs: "),
        "{msg}"
    );
    let (col, msg) = err("actions=meter:256,output:1");
    assert_eq!(col, 9);
    assert!(msg.starts_with("meter is not supported by oxvs: "), "{msg}");
    let (col, msg) = err("actions=push:NXM_NX_REG0[],pop:NXM_NX_REG0[]");
    assert_eq!(col, 9);
    assert!(msg.starts_with("push is not supported by oxvs: "), "{msg}");
    let (col, msg) = err("actions=check_pkt_larger(1500)->NXM_NX_REG0[0]");
    assert_eq!(col, 9);
    assert!(
        msg.starts_with("check_pkt_larger is not supported by oxvs"),
        "{msg}"
    );
}
