//! Translation of `output:FIELD[...]` and `write_metadata`: the port comes
//! from the flow as the walk left it, exactly the bits read join the
//! megaflow's mask, reserved values act as their reserved ports, and
//! validation refuses what OVS refuses.

use super::*;
use crate::action::SubField;
use crate::bridge::{Change, RuleError};
use crate::field::{dl_type, Field};
use crate::flow_match::Match;
use crate::port::reserved;
use crate::rule::{Bucket, FlowSpec, GroupSpec};
use crate::GroupType;

fn spec(table: u8, m: Match, actions: Vec<Action>) -> FlowSpec {
    FlowSpec {
        table,
        m,
        actions,
        ..Default::default()
    }
}

fn bridge(rules: Vec<FlowSpec>) -> Bridge {
    let mut br = Bridge::default();
    for p in 1..=3 {
        br.add_port(p, &format!("p{p}"));
    }
    let changes: Vec<Change> = rules.into_iter().map(Change::AddFlow).collect();
    br.apply(&changes, 0).unwrap();
    br
}

fn ipv4_key(in_port: u32, dst: u32) -> FlowKey {
    let mut k = FlowKey::default();
    k.set(Field::InPort, in_port.into());
    k.set(Field::DlType, dl_type::IPV4.into());
    k.set(Field::NwDst, dst.into());
    k.set(Field::NwTtl, 64);
    k
}

fn reg1(ofs: u8, n_bits: u8) -> SubField {
    SubField {
        field: Field::Reg1,
        ofs,
        n_bits,
    }
}

/// Antrea's shape: an earlier table loads the port into reg1, the last
/// table outputs to it.
#[test]
fn output_to_the_port_an_earlier_table_loaded() {
    let mut by_dst = Match::any();
    by_dst.set(Field::DlType, dl_type::IPV4.into());
    by_dst.set(Field::NwDst, 0x0af4_0003);
    let br = bridge(vec![
        spec(
            0,
            by_dst,
            vec![
                Action::Load {
                    dst: reg1(0, 32),
                    value: 3,
                },
                Action::GotoTable(70),
            ],
        ),
        spec(70, Match::any(), vec![Action::OutputField(reg1(0, 32))]),
    ]);
    let x = translate(&br, &ipv4_key(1, 0x0af4_0003), None);
    assert_eq!(x.actions, vec![DpAction::Output(3)]);
    // Registers are zero in every packet from a port, so the register read
    // costs the megaflow nothing; the address that chose the load is in it.
    assert_eq!(x.mask.get(Field::Reg1), 0);
    assert_eq!(x.mask.get(Field::NwDst), 0xffff_ffff);
    // No load: reg1 is 0, which names no port.
    let x = translate(&br, &ipv4_key(1, 0x0af4_0009), None);
    assert_eq!(x.actions, vec![DpAction::Drop(DropReason::TableMiss)]);
}

/// After recirculation the register travels in the key, so the megaflow
/// must match the bits the output read, and only those.
#[test]
fn the_bits_read_join_the_mask() {
    let br = bridge(vec![spec(
        5,
        Match::any(),
        vec![Action::OutputField(reg1(0, 16))],
    )]);
    let mut k = ipv4_key(1, 0x0af4_0003);
    k.set(Field::RecircId, recirc_id(5).into());
    k.set(Field::Reg1, 0xabcd_0002);
    let x = translate(&br, &k, None);
    assert_eq!(x.actions, vec![DpAction::Output(2)]);
    assert_eq!(x.mask.get(Field::Reg1), 0xffff);
    // A packet equal under the mask takes the same port.
    k.set(Field::Reg1, 0x1234_0002);
    assert_eq!(translate(&br, &k, None).actions, vec![DpAction::Output(2)]);

    // A packet field: the low byte of the destination address.
    let mut ip = Match::any();
    ip.set(Field::DlType, dl_type::IPV4.into());
    let low_byte = SubField {
        field: Field::NwDst,
        ofs: 0,
        n_bits: 8,
    };
    let br = bridge(vec![spec(0, ip, vec![Action::OutputField(low_byte)])]);
    let x = translate(&br, &ipv4_key(1, 0x0af4_0003), None);
    assert_eq!(x.actions, vec![DpAction::Output(3)]);
    assert_eq!(x.mask.get(Field::NwDst), 0xff);
}

#[test]
fn reserved_values_and_the_input_port() {
    let br = bridge(vec![spec(
        0,
        Match::any(),
        vec![Action::OutputField(reg1(0, 32))],
    )]);
    let mut k = ipv4_key(2, 1);
    k.set(Field::RecircId, recirc_id(0).into());
    let out = |v: u32| {
        let mut k = k;
        k.set(Field::Reg1, v.into());
        translate(&br, &k, None).actions
    };
    // The input port is skipped, as for output:PORT.
    assert_eq!(out(2), vec![DpAction::Drop(DropReason::OutputToInPort)]);
    assert_eq!(out(reserved::IN_PORT), vec![DpAction::Output(2)]);
    assert_eq!(
        out(reserved::FLOOD),
        vec![DpAction::Output(1), DpAction::Output(3)]
    );
    // OVS reads an OpenFlow 1.0 (16-bit) port: wider values name none.
    assert_eq!(out(0x1_0001), vec![DpAction::Drop(DropReason::PortDown)]);
}

#[test]
fn write_metadata_writes_the_masked_bits() {
    let br = bridge(vec![
        spec(
            0,
            Match::any(),
            vec![
                Action::Load {
                    dst: SubField::whole(Field::Metadata),
                    value: 0xff00,
                },
                Action::WriteMetadata {
                    value: 0x12,
                    mask: 0xff,
                },
                Action::GotoTable(1),
            ],
        ),
        {
            let mut m = Match::any();
            m.set(Field::Metadata, 0xff12);
            spec(1, m, vec![Action::Output(3)])
        },
    ]);
    let x = translate(&br, &ipv4_key(1, 1), None);
    assert_eq!(x.actions, vec![DpAction::Output(3)]);
}

#[test]
fn validation_refuses_what_ovs_refuses() {
    let mut br = bridge(vec![]);
    let add = |br: &mut Bridge, actions: Vec<Action>| {
        br.apply(&[Change::AddFlow(spec(0, Match::any(), actions))], 0)
            .map_err(|(_, e)| e)
    };
    let wide = SubField::whole(Field::TunId);
    assert_eq!(
        add(&mut br, vec![Action::OutputField(wide)]),
        Err(RuleError::OutputFieldWidth(64))
    );
    let past_end = SubField {
        field: Field::Reg1,
        ofs: 20,
        n_bits: 16,
    };
    assert!(matches!(
        add(&mut br, vec![Action::OutputField(past_end)]),
        Err(RuleError::BadSubField { .. })
    ));
    let wm = Action::WriteMetadata { value: 1, mask: 1 };
    assert_eq!(
        add(&mut br, vec![wm.clone(), Action::Output(1)]),
        Err(RuleError::WriteMetadataNotLast)
    );
    assert_eq!(add(&mut br, vec![wm.clone(), Action::GotoTable(4)]), Ok(()));
    let group = |ids: [u32; 2], actions: Vec<Action>| GroupSpec {
        id: 7,
        kind: GroupType::All,
        buckets: ids
            .iter()
            .map(|&bucket_id| Bucket {
                bucket_id,
                weight: 0,
                watch_port: None,
                actions: actions.clone(),
            })
            .collect(),
        hash_fields: None,
    };
    let add_group =
        |br: &mut Bridge, g: GroupSpec| br.apply(&[Change::AddGroup(g)], 0).map_err(|(_, e)| e);
    assert_eq!(
        add_group(&mut br, group([4, 4], vec![Action::Output(1)])),
        Err(RuleError::BadBucketId(7, 4))
    );
    assert_eq!(
        add_group(&mut br, group([0, 0xffff_ff01], vec![Action::Output(1)])),
        Err(RuleError::BadBucketId(7, 0xffff_ff01))
    );
    assert_eq!(
        add_group(&mut br, group([0, 1], vec![wm])),
        Err(RuleError::WriteMetadataNotLast)
    );
    assert_eq!(
        add_group(
            &mut br,
            group([0, 1], vec![Action::OutputField(reg1(0, 16))])
        ),
        Ok(())
    );
}
