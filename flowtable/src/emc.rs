//! The exact-match cache: the first, per-core tier of flow lookup.
//!
//! A fixed array of entries, each holding a whole [`FlowKey`] and a
//! reference to the megaflow it resolved to. A key may sit in one of two
//! slots picked by two slices of its hash (as in Open vSwitch's EMC), so a
//! hit costs one hash, at most two key compares, and one generation check
//! of the megaflow. Nothing allocates after construction.
//!
//! Entries are inserted with probability 1/`inv_prob` (default 1/100, OVS's
//! `emc-insert-inv-prob`): with many short flows an always-insert cache
//! thrashes, while a flow that lives long enough to matter gets in quickly.
//! Entries never hold stale actions: a megaflow that is deleted bumps its
//! generation and every EMC entry pointing at it stops matching.

use crate::key::FlowKey;
use crate::megaflow::MegaflowRef;

/// Default number of entries (OVS's `EM_FLOW_HASH_ENTRIES`).
pub const DEFAULT_ENTRIES: usize = 8192;
/// Default inverse insertion probability.
pub const DEFAULT_INV_PROB: u32 = 100;

#[derive(Clone, Copy)]
struct Entry {
    hash: u32,
    flow: Option<MegaflowRef>,
    key: FlowKey,
}

/// A per-core exact-match cache.
pub struct Emc {
    entries: Box<[Entry]>,
    mask: u32,
    shift: u32,
    rng: u32,
    inv_prob: u32,
}

impl Emc {
    /// A cache of `entries` entries (rounded up to a power of two).
    pub fn new(entries: usize, inv_prob: u32) -> Emc {
        let n = entries.max(2).next_power_of_two();
        let empty = Entry {
            hash: 0,
            flow: None,
            key: FlowKey::default(),
        };
        Emc {
            entries: vec![empty; n].into_boxed_slice(),
            mask: n as u32 - 1,
            shift: n.trailing_zeros(),
            rng: 0x2545_f491,
            inv_prob: inv_prob.max(1),
        }
    }

    #[inline(always)]
    fn slots(&self, hash: u32) -> [usize; 2] {
        [
            (hash & self.mask) as usize,
            ((hash >> self.shift) & self.mask) as usize,
        ]
    }

    /// The megaflow `key` was last seen to resolve to, if cached. The caller
    /// must still check the reference's generation.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u32) -> Option<MegaflowRef> {
        for i in self.slots(hash) {
            let e = &self.entries[i];
            if e.hash == hash && e.flow.is_some() && e.key.same(key) {
                return e.flow;
            }
        }
        None
    }

    /// Maybe caches `key -> flow` (with the configured probability); true
    /// if it did. The victim is an empty or matching slot, else the one
    /// with the smaller stored hash, which is as good as random and costs
    /// nothing.
    #[inline]
    pub fn insert(&mut self, key: &FlowKey, hash: u32, flow: MegaflowRef) -> bool {
        if self.inv_prob > 1 {
            // xorshift32: a cheap per-cache random stream; no clock, no syscall.
            let mut x = self.rng;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.rng = x;
            if x % self.inv_prob != 0 {
                return false;
            }
        }
        let [a, b] = self.slots(hash);
        let pick = |e: &Entry| e.flow.is_none() || (e.hash == hash && e.key.same(key));
        let i = if pick(&self.entries[a]) {
            a
        } else if pick(&self.entries[b]) || self.entries[b].hash < self.entries[a].hash {
            b
        } else {
            a
        };
        self.entries[i] = Entry {
            hash,
            flow: Some(flow),
            key: *key,
        };
        true
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        for e in self.entries.iter_mut() {
            e.flow = None;
        }
    }

    /// Every occupied entry: its key and the megaflow it names (which may
    /// have been deleted since; the caller checks the generation).
    pub fn entries(&self) -> impl Iterator<Item = (&FlowKey, MegaflowRef)> {
        self.entries
            .iter()
            .filter_map(|e| e.flow.map(|f| (&e.key, f)))
    }

    /// Number of occupied entries (they may point at dead megaflows).
    pub fn occupied(&self) -> usize {
        self.entries.iter().filter(|e| e.flow.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;

    #[test]
    fn always_insert_then_hit() {
        let mut emc = Emc::new(64, 1);
        let mut k = FlowKey::default();
        k.set(Field::TpDst, 80);
        let r = MegaflowRef { slot: 3, gen: 1 };
        assert_eq!(emc.lookup(&k, k.hash()), None);
        emc.insert(&k, k.hash(), r);
        assert_eq!(emc.lookup(&k, k.hash()), Some(r));
        let mut other = k;
        other.set(Field::TpDst, 81);
        assert_eq!(emc.lookup(&other, other.hash()), None);
        emc.clear();
        assert_eq!(emc.lookup(&k, k.hash()), None);
    }

    #[test]
    fn probabilistic_insert_gets_in_eventually() {
        let mut emc = Emc::new(64, 100);
        let k = FlowKey::default();
        let r = MegaflowRef { slot: 0, gen: 1 };
        let tries = (0..10_000).take_while(|_| {
            emc.insert(&k, k.hash(), r);
            emc.lookup(&k, k.hash()).is_none()
        });
        assert!(tries.count() < 2000);
    }
}
