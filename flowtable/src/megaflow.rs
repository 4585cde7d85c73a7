//! The megaflow table: the second tier of flow lookup, a tuple-space search.
//!
//! A megaflow is a masked key plus the datapath actions translation produced
//! for it. Megaflows with the same mask share a subtable, a hash table keyed
//! by the masked words; a lookup probes subtables in order and the first hit
//! wins. Megaflows never overlap (each was made for a key that missed every
//! existing one, and revalidation keeps them exact), so order only matters for
//! speed: subtables are kept sorted by how often they hit, as OVS's dpcls does.
//!
//! Entries live in a slab and are named by [`MegaflowRef`] (slot and
//! generation). Deleting bumps the slot's generation, which invalidates every
//! exact-match cache entry that still names it without searching for them.
//! The table belongs to one poll thread: no locks, no atomics.

use crate::action::DpAction;
use crate::journal::TableSet;
use crate::key::{hash_masked, table_hash, FlowKey, FlowMask, KEY_WORDS};
use crate::mac::Learn;
use crate::rule::Rule;
use crate::xlate::XlateOut;
use hashbrown::HashTable;
use std::sync::Arc;

/// Default capacity (Open vSwitch's default `flow-limit` is 200 000 for the
/// whole switch; this is per poll thread).
pub const DEFAULT_MAX_FLOWS: usize = 65_536;

/// Names one megaflow: slot and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MegaflowRef {
    /// Index into the slab.
    pub slot: u32,
    /// Generation the slot had when the reference was made.
    pub gen: u32,
}

/// One cached translation.
#[derive(Debug)]
pub struct Megaflow {
    /// The masked key.
    pub key: FlowKey,
    /// The mask.
    pub mask: FlowMask,
    /// The datapath actions.
    pub actions: Box<[DpAction]>,
    /// The rules whose actions ran, credited with this megaflow's packets.
    pub rules: Box<[Arc<Rule>]>,
    /// MAC learning this megaflow stands for, refreshed while it is used.
    pub learned: Box<[Learn]>,
    /// The tables its translation looked up.
    pub tables: TableSet,
    /// Packets that hit it.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Last hit, caller's milliseconds.
    pub used_ms: u64,
    pushed_packets: u64,
    pushed_bytes: u64,
    hash: u32,
}

struct Slot {
    gen: u32,
    flow: Option<Megaflow>,
}

struct Subtable {
    mask: FlowMask,
    words: [u8; KEY_WORDS],
    n_words: usize,
    table: HashTable<u32>,
    hits: u64,
}

/// Why a translation could not become a megaflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its maximum number of megaflows.
    Full,
}

/// What revalidation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevalidateStats {
    /// Megaflows whose translation was unchanged.
    pub kept: usize,
    /// Megaflows whose actions changed but whose mask still covers the new
    /// translation: updated in place.
    pub updated: usize,
    /// Megaflows deleted because the new rules consult bits they do not match.
    pub deleted: usize,
    /// Megaflows not re-translated: no table their translation looked up
    /// changed.
    pub skipped: usize,
}

/// A per-thread megaflow table.
pub struct MegaflowTable {
    subtables: Vec<Subtable>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    max_flows: usize,
}

impl Default for MegaflowTable {
    fn default() -> Self {
        MegaflowTable::new(DEFAULT_MAX_FLOWS)
    }
}

impl MegaflowTable {
    /// An empty table holding at most `max_flows` megaflows.
    pub fn new(max_flows: usize) -> MegaflowTable {
        MegaflowTable {
            subtables: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max_flows,
        }
    }

    /// Finds the megaflow covering `key`.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey) -> Option<MegaflowRef> {
        let slots = &self.slots;
        for st in self.subtables.iter_mut() {
            let words = &st.words[..st.n_words];
            let hash = hash_masked(key, &st.mask, words);
            let mask = &st.mask;
            let hit = st.table.find(table_hash(hash), |&s| {
                let Some(mf) = slots[s as usize].flow.as_ref() else {
                    return false;
                };
                mf.hash == hash
                    && words.iter().all(|&i| {
                        let i = i as usize;
                        key.w[i] & mask.w[i] == mf.key.w[i]
                    })
            });
            if let Some(&s) = hit {
                st.hits += 1;
                return Some(MegaflowRef {
                    slot: s,
                    gen: slots[s as usize].gen,
                });
            }
        }
        None
    }

    /// Looks up the keys whose bits are set in `map` (bit i: `keys[i]`),
    /// one subtable at a time across the whole batch, as OVS's dpcls does:
    /// the hash and probe of different packets are independent, so they
    /// overlap in the CPU instead of waiting on each other. Hits go to
    /// `out`; returns the bits still missing.
    #[inline]
    pub fn lookup_batch(
        &mut self,
        keys: &[FlowKey],
        mut map: u32,
        out: &mut [Option<MegaflowRef>],
    ) -> u32 {
        let slots = &self.slots;
        for st in self.subtables.iter_mut() {
            if map == 0 {
                break;
            }
            let words = &st.words[..st.n_words];
            let mask = &st.mask;
            let mut left = map;
            while left != 0 {
                let i = left.trailing_zeros() as usize;
                left &= left - 1;
                let key = &keys[i];
                let hash = hash_masked(key, mask, words);
                let hit = st.table.find(table_hash(hash), |&s| {
                    let Some(mf) = slots[s as usize].flow.as_ref() else {
                        return false;
                    };
                    mf.hash == hash
                        && words.iter().all(|&w| {
                            let w = w as usize;
                            key.w[w] & mask.w[w] == mf.key.w[w]
                        })
                });
                if let Some(&s) = hit {
                    st.hits += 1;
                    out[i] = Some(MegaflowRef {
                        slot: s,
                        gen: slots[s as usize].gen,
                    });
                    map &= !(1 << i);
                }
            }
        }
        map
    }

    /// The live megaflow `r` names, or `None` if it was deleted since.
    #[inline]
    pub fn get(&self, r: MegaflowRef) -> Option<&Megaflow> {
        let s = self.slots.get(r.slot as usize)?;
        if s.gen == r.gen {
            s.flow.as_ref()
        } else {
            None
        }
    }

    /// Mutable access, for counting hits.
    #[inline]
    pub fn get_mut(&mut self, r: MegaflowRef) -> Option<&mut Megaflow> {
        let s = self.slots.get_mut(r.slot as usize)?;
        if s.gen == r.gen {
            s.flow.as_mut()
        } else {
            None
        }
    }

    /// Installs the translation of `key` as a megaflow. If one already covers
    /// `key` (two packets of a batch missed together), that one is returned.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        x: &XlateOut,
        now_ms: u64,
    ) -> Result<MegaflowRef, InsertError> {
        if let Some(r) = self.lookup(key) {
            return Ok(r);
        }
        if self.live >= self.max_flows {
            return Err(InsertError::Full);
        }
        let st_idx = match self.subtables.iter().position(|st| st.mask == x.mask) {
            Some(i) => i,
            None => {
                let mut words = [0u8; KEY_WORDS];
                let mut n = 0;
                for w in x.mask.nonzero_words() {
                    words[n] = w as u8;
                    n += 1;
                }
                self.subtables.push(Subtable {
                    mask: x.mask,
                    words,
                    n_words: n,
                    table: HashTable::new(),
                    hits: 0,
                });
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[st_idx];
        let masked = key.masked(&x.mask);
        let hash = hash_masked(&masked, &st.mask, &st.words[..st.n_words]);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { gen: 1, flow: None });
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[slot as usize].flow = Some(Megaflow {
            key: masked,
            mask: x.mask,
            actions: x.actions.clone().into_boxed_slice(),
            rules: x.rules.clone().into_boxed_slice(),
            learned: x.learned.clone().into_boxed_slice(),
            tables: x.tables,
            packets: 0,
            bytes: 0,
            used_ms: now_ms,
            pushed_packets: 0,
            pushed_bytes: 0,
            hash,
        });
        let slots = &self.slots;
        st.table.insert_unique(table_hash(hash), slot, |&s| {
            slots[s as usize]
                .flow
                .as_ref()
                .map_or(0, |f| table_hash(f.hash))
        });
        self.live += 1;
        Ok(MegaflowRef {
            slot,
            gen: self.slots[slot as usize].gen,
        })
    }

    /// Deletes a megaflow; every reference to it goes stale.
    pub fn remove(&mut self, slot: u32) {
        let Some(mf) = self.slots[slot as usize].flow.take() else {
            return;
        };
        self.slots[slot as usize].gen = self.slots[slot as usize].gen.wrapping_add(1).max(1);
        self.free.push(slot);
        self.live -= 1;
        if let Some(i) = self.subtables.iter().position(|st| st.mask == mf.mask) {
            let st = &mut self.subtables[i];
            if let Ok(e) = st.table.find_entry(table_hash(mf.hash), |&s| s == slot) {
                e.remove();
            }
            if st.table.is_empty() {
                self.subtables.remove(i);
            }
        }
    }

    /// Re-checks every megaflow against a new translation function. A
    /// megaflow stays (with the new actions) only if the new translation of
    /// its key consults no bit outside its mask: then every packet it covers
    /// would translate the same way. Otherwise it is deleted.
    pub fn revalidate(&mut self, xlate: impl FnMut(&FlowKey) -> XlateOut) -> RevalidateStats {
        self.revalidate_some(None, xlate)
    }

    /// [`MegaflowTable::revalidate`] for the megaflows whose translation
    /// looked up a table of `changed` only; the rest keep their actions,
    /// which no change can have altered (see [`crate::journal`]). `None`
    /// re-checks every megaflow.
    pub fn revalidate_some(
        &mut self,
        changed: Option<&TableSet>,
        mut xlate: impl FnMut(&FlowKey) -> XlateOut,
    ) -> RevalidateStats {
        let mut stats = RevalidateStats::default();
        for slot in 0..self.slots.len() as u32 {
            let Some(mf) = self.slots[slot as usize].flow.as_mut() else {
                continue;
            };
            if changed.is_some_and(|c| !c.meets(&mf.tables)) {
                stats.skipped += 1;
                continue;
            }
            let x = xlate(&mf.key);
            if !x.mask.is_subset_of(&mf.mask) {
                self.remove(slot);
                stats.deleted += 1;
            } else if *x.actions != *mf.actions {
                mf.actions = x.actions.into_boxed_slice();
                mf.rules = x.rules.into_boxed_slice();
                mf.learned = x.learned.into_boxed_slice();
                mf.tables = x.tables;
                stats.updated += 1;
            } else {
                mf.rules = x.rules.into_boxed_slice();
                mf.tables = x.tables;
                stats.kept += 1;
            }
        }
        stats
    }

    /// Credits rules with the packets their megaflows saw since the last
    /// push and returns the MAC learning to refresh.
    pub fn push_stats(&mut self, now_ms: u64, refresh: &mut Vec<Learn>) {
        for mf in self.slots.iter_mut().filter_map(|s| s.flow.as_mut()) {
            let dp = mf.packets - mf.pushed_packets;
            if dp == 0 {
                continue;
            }
            let db = mf.bytes - mf.pushed_bytes;
            for r in mf.rules.iter() {
                r.stats.credit(dp, db, mf.used_ms.min(now_ms));
            }
            refresh.extend_from_slice(&mf.learned);
            mf.pushed_packets = mf.packets;
            mf.pushed_bytes = mf.bytes;
        }
    }

    /// Deletes megaflows idle for `idle_ms` or more; returns how many.
    pub fn expire(&mut self, now_ms: u64, idle_ms: u64) -> usize {
        let dead: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| {
                self.slots[s as usize]
                    .flow
                    .as_ref()
                    .is_some_and(|f| now_ms >= f.used_ms + idle_ms)
            })
            .collect();
        for &s in &dead {
            self.remove(s);
        }
        dead.len()
    }

    /// Deletes every megaflow.
    pub fn clear(&mut self) {
        for s in 0..self.slots.len() as u32 {
            self.remove(s);
        }
    }

    /// Orders subtables by hits since the last call, busiest first, then
    /// halves the counts so the order follows recent traffic.
    pub fn sort_subtables(&mut self) {
        self.subtables.sort_by_key(|st| std::cmp::Reverse(st.hits));
        for st in &mut self.subtables {
            st.hits /= 2;
        }
    }

    /// Number of live megaflows.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number of subtables (distinct masks).
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Every live megaflow.
    pub fn iter(&self) -> impl Iterator<Item = &Megaflow> {
        self.slots.iter().filter_map(|s| s.flow.as_ref())
    }

    /// Every live megaflow with the reference that names it now.
    pub fn iter_refs(&self) -> impl Iterator<Item = (MegaflowRef, &Megaflow)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let r = MegaflowRef {
                slot: i as u32,
                gen: s.gen,
            };
            s.flow.as_ref().map(|f| (r, f))
        })
    }
}
