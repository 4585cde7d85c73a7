//! `selection_method=hash,fields(...)`: translation through a select group
//! hashes only the fields named, puts only those (and the prerequisites it
//! checked) in the megaflow mask, and every packet inside that megaflow
//! takes the same bucket.

use crate::action::{Action, GroupType};
use crate::bridge::{Bridge, Change};
use crate::field::Field;
use crate::group::HashField;
use crate::key::FlowKey;
use crate::rule::{Bucket, FlowSpec, GroupSpec};
use crate::xlate::translate;
use proptest::prelude::*;

const CHOICES: [HashField; 6] = [
    HashField {
        field: Field::NwSrc,
        mask: 0xffff_ffff,
        proto: None,
    },
    HashField {
        field: Field::NwSrc,
        mask: 0xffff_ff00,
        proto: None,
    },
    HashField {
        field: Field::NwDst,
        mask: 0xffff_ffff,
        proto: None,
    },
    HashField {
        field: Field::TpDst,
        mask: 0xffff,
        proto: Some(6),
    },
    HashField {
        field: Field::TpSrc,
        mask: 0xffff,
        proto: None,
    },
    HashField {
        field: Field::NwProto,
        mask: 0xff,
        proto: None,
    },
];

fn bridge(fields: Vec<HashField>) -> Bridge {
    let mut br = Bridge::default();
    for p in 1..=5 {
        br.add_port(p, &format!("p{p}"));
    }
    let bucket = |p| Bucket {
        bucket_id: p,
        weight: 100,
        watch_port: None,
        actions: vec![Action::Output(p)],
    };
    let group = GroupSpec {
        id: 1,
        kind: GroupType::Select,
        buckets: (2..=5).map(bucket).collect(),
        hash_fields: Some(fields),
    };
    let rule = FlowSpec {
        actions: vec![Action::Group(1)],
        ..Default::default()
    };
    br.apply(&[Change::AddGroup(group), Change::AddFlow(rule)], 0)
        .expect("valid");
    br
}

fn key(src: u32, dst: u32, sport: u16, dport: u16, tcp: bool) -> FlowKey {
    let mut k = FlowKey::default();
    k.set(Field::InPort, 1);
    k.set(Field::DlType, 0x0800);
    k.set(Field::NwProto, if tcp { 6 } else { 17 });
    k.set(Field::NwSrc, src.into());
    k.set(Field::NwDst, dst.into());
    k.set(Field::TpSrc, sport.into());
    k.set(Field::TpDst, dport.into());
    k
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    (0u32..600, 0u32..4, 1000u16..1004, 79u16..82, any::<bool>())
        .prop_map(|(s, d, sp, dp, tcp)| key(0x0af4_0000 + s, 0x0a60_0000 + d, sp, dp, tcp))
}

#[test]
fn client_affinity_hashes_the_source_address_alone() {
    let br = bridge(vec![CHOICES[0]]);
    let mut seen = std::collections::HashSet::new();
    for s in 0..64u32 {
        let k = key(0x0af4_0000 + s, 0x0a60_0001, 1000, 80, true);
        let x = translate(&br, &k, None);
        assert_eq!(x.mask.get(Field::NwSrc), 0xffff_ffff);
        for f in [Field::NwDst, Field::TpSrc, Field::TpDst, Field::NwProto] {
            assert_eq!(x.mask.get(f), 0, "{f} should stay wildcarded");
        }
        // Another connection of the same client: same bucket.
        let other = translate(
            &br,
            &key(0x0af4_0000 + s, 0x0a60_0002, 4000, 443, false),
            None,
        );
        assert_eq!(x.actions, other.actions);
        seen.insert(x.actions);
    }
    assert!(seen.len() >= 3, "64 clients over 4 buckets took {seen:?}");
}

proptest! {
    #[test]
    fn megaflows_of_hash_fields_hold_and_name_only_those_fields(
        picks in prop::collection::vec(0..CHOICES.len(), 1..4),
        keys in prop::collection::vec(arb_key(), 1..8),
        others in prop::collection::vec(arb_key(), 8),
    ) {
        let fields: Vec<HashField> = picks.iter().map(|&i| CHOICES[i]).collect();
        let br = bridge(fields.clone());
        for k in &keys {
            let x = translate(&br, k, None);
            for f in [Field::NwSrc, Field::NwDst, Field::TpSrc, Field::TpDst] {
                let allowed = fields
                    .iter()
                    .filter(|h| h.field == f)
                    .fold(0, |m, h| m | h.mask);
                prop_assert_eq!(x.mask.get(f) & !allowed, 0, "{} in the mask", f);
            }
            for o in &others {
                let mut k2 = *o;
                for i in 0..k2.w.len() {
                    k2.w[i] = (k.w[i] & x.mask.w[i]) | (o.w[i] & !x.mask.w[i]);
                }
                prop_assert_eq!(&translate(&br, &k2, None).actions, &x.actions);
            }
        }
    }
}
