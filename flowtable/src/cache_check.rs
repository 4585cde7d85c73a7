//! An audit of a poll thread's caches against the current rules: every
//! megaflow is translated again from scratch and every exact-match entry is
//! checked against the megaflow it names.
//!
//! Revalidation ([`crate::megaflow::MegaflowTable::revalidate_some`]) is
//! allowed to skip megaflows whose tables did not change; this check skips
//! nothing, so it catches a journal or revalidation bug that left an entry
//! the current rules would not produce. It is for soak tests and operators
//! (`oxvs-ctl revalidate --check`), never for the packet path: it translates
//! every megaflow.
//!
//! A megaflow is right when a fresh translation of its masked key consults
//! no bit outside its mask (every packet it covers would translate the same
//! way) and yields the same actions. An EMC entry is right when the megaflow
//! it names, if still alive, covers its key; an entry naming a deleted
//! megaflow is dead (lookups skip it) and only counted.

use crate::emc::Emc;
use crate::key::FlowKey;
use crate::megaflow::MegaflowTable;
use crate::xlate::XlateOut;

/// What is wrong with one cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The fresh translation consults bits outside the megaflow's mask.
    MaskTooNarrow {
        /// The megaflow's slot.
        slot: u32,
    },
    /// The fresh translation's actions differ from the cached ones.
    Actions {
        /// The megaflow's slot.
        slot: u32,
    },
    /// An EMC entry names a live megaflow that does not cover its key.
    EmcOutsideMegaflow {
        /// The megaflow's slot.
        slot: u32,
    },
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheCheck {
    /// Megaflows translated again.
    pub megaflows: usize,
    /// EMC entries naming a live megaflow.
    pub emc_live: usize,
    /// EMC entries naming a deleted megaflow (never used again).
    pub emc_dead: usize,
    /// What was wrong, with the masked key of the megaflow concerned.
    pub bad: Vec<(Mismatch, FlowKey)>,
}

/// Checks every megaflow of `megaflows` against `xlate` (a translation
/// with the current rules) and every entry of `emc` against its megaflow.
pub fn check(
    emc: &Emc,
    megaflows: &MegaflowTable,
    mut xlate: impl FnMut(&FlowKey) -> XlateOut,
) -> CacheCheck {
    let mut c = CacheCheck::default();
    for (r, mf) in megaflows.iter_refs() {
        c.megaflows += 1;
        let x = xlate(&mf.key);
        if !x.mask.is_subset_of(&mf.mask) {
            c.bad
                .push((Mismatch::MaskTooNarrow { slot: r.slot }, mf.key));
        } else if *x.actions != *mf.actions {
            c.bad.push((Mismatch::Actions { slot: r.slot }, mf.key));
        }
    }
    for (key, r) in emc.entries() {
        match megaflows.get(r) {
            None => c.emc_dead += 1,
            Some(mf) => {
                c.emc_live += 1;
                if !key.matches(&mf.key, &mf.mask) {
                    c.bad
                        .push((Mismatch::EmcOutsideMegaflow { slot: r.slot }, mf.key));
                }
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;
    use crate::{translate, Bridge};

    fn bridge(flows: &[(u16, u64, u32)]) -> Bridge {
        // (priority, nw_dst, output port) rules in table 0.
        let mut br = Bridge::default();
        for p in 1..=3 {
            br.add_port(p, &format!("p{p}"));
        }
        let changes: Vec<crate::Change> = flows
            .iter()
            .map(|&(prio, dst, out)| {
                let mut spec = crate::FlowSpec {
                    priority: prio,
                    actions: vec![crate::Action::Output(out)],
                    ..Default::default()
                };
                spec.m.key.set(Field::DlType, 0x0800);
                spec.m.mask.set_field(Field::DlType);
                spec.m.key.set(Field::NwDst, dst.into());
                spec.m.mask.set_field(Field::NwDst);
                crate::Change::AddFlow(spec)
            })
            .collect();
        br.apply(&changes, 0).unwrap();
        br
    }

    fn packet(dst: u32) -> FlowKey {
        let mut k = FlowKey::default();
        k.set(Field::InPort, 1);
        k.set(Field::DlType, 0x0800);
        k.set(Field::NwDst, dst.into());
        k
    }

    #[test]
    fn caches_built_from_the_rules_pass_and_stale_ones_are_named() {
        let br = bridge(&[(10, 0x0a00_0001, 2), (10, 0x0a00_0002, 3)]);
        let mut mf = MegaflowTable::default();
        let mut emc = Emc::new(64, 1);
        for dst in [0x0a00_0001, 0x0a00_0002] {
            let k = packet(dst);
            let r = mf.insert(&k, &translate(&br, &k, None), 0).unwrap();
            emc.insert(&k, k.hash(), r);
        }
        let ok = check(&emc, &mf, |k| translate(&br, k, None));
        assert_eq!((ok.megaflows, ok.emc_live, ok.emc_dead), (2, 2, 0));
        assert!(ok.bad.is_empty(), "{:?}", ok.bad);

        // The rules change and nobody revalidates: both megaflows now
        // disagree with a fresh translation.
        let br2 = bridge(&[(10, 0x0a00_0001, 3), (10, 0x0a00_0002, 2)]);
        let stale = check(&emc, &mf, |k| translate(&br2, k, None));
        assert_eq!(stale.bad.len(), 2, "{:?}", stale.bad);
        assert!(matches!(stale.bad[0].0, Mismatch::Actions { .. }));

        // Revalidation repairs them; EMC entries still name live megaflows
        // whose actions were updated in place.
        mf.revalidate(|k| translate(&br2, k, None));
        let fixed = check(&emc, &mf, |k| translate(&br2, k, None));
        assert!(fixed.bad.is_empty(), "{:?}", fixed.bad);

        // A megaflow deleted leaves a dead EMC entry, counted but harmless.
        mf.clear();
        let dead = check(&emc, &mf, |k| translate(&br2, k, None));
        assert_eq!((dead.megaflows, dead.emc_live, dead.emc_dead), (0, 0, 2));
        assert!(dead.bad.is_empty());
    }

    #[test]
    fn a_rule_that_reads_more_bits_makes_the_mask_too_narrow() {
        let br = bridge(&[(10, 0x0a00_0001, 2)]);
        let mut mf = MegaflowTable::default();
        let emc = Emc::new(64, 1);
        let k = packet(0x0a00_0001);
        mf.insert(&k, &translate(&br, &k, None), 0).unwrap();
        // A higher-priority rule on in_port makes translation consult it.
        let mut br2 = br.clone();
        let mut spec = crate::FlowSpec {
            priority: 20,
            actions: vec![crate::Action::Output(3)],
            ..Default::default()
        };
        spec.m.key.set(Field::InPort, 2);
        spec.m.mask.set_field(Field::InPort);
        br2.apply(&[crate::Change::AddFlow(spec)], 0).unwrap();
        let c = check(&emc, &mf, |k| translate(&br2, k, None));
        // in_port is always in a megaflow's mask, so the mask still covers
        // it; the actions are unchanged (in_port 1 is not 2): no mismatch.
        assert!(c.bad.is_empty(), "{:?}", c.bad);
        let mut spec = crate::FlowSpec {
            priority: 30,
            actions: vec![crate::Action::Output(3)],
            ..Default::default()
        };
        spec.m.key.set(Field::DlType, 0x0800);
        spec.m.mask.set_field(Field::DlType);
        spec.m.key.set(Field::NwSrc, 0x0a00_0009);
        spec.m.mask.set_field(Field::NwSrc);
        br2.apply(&[crate::Change::AddFlow(spec)], 0).unwrap();
        let c = check(&emc, &mf, |k| translate(&br2, k, None));
        assert_eq!(c.bad.len(), 1, "{:?}", c.bad);
        assert!(matches!(c.bad[0].0, Mismatch::MaskTooNarrow { .. }));
    }
}
