//! Naive baselines: what a first attempt would use. They exist to be
//! measured against, in the same run, so the figures say what the real
//! structures buy.

use crate::MaskedEntry;
use flowtable::FlowKey;
use std::collections::HashMap;

/// Exact-match lookup in a std `HashMap` (SipHash over the whole key).
#[derive(Default)]
pub struct HashMapEmc {
    /// Key to flow index.
    pub map: HashMap<FlowKey, usize>,
}

impl HashMapEmc {
    /// Looks a key up.
    #[inline]
    pub fn lookup(&self, k: &FlowKey) -> Option<usize> {
        self.map.get(k).copied()
    }
}

/// Megaflows in a list, each checked in turn (masked compare).
#[derive(Default)]
pub struct LinearMegaflows {
    /// The entries.
    pub entries: Vec<MaskedEntry>,
}

impl LinearMegaflows {
    /// First entry covering `k`.
    #[inline]
    pub fn lookup(&self, k: &FlowKey) -> Option<usize> {
        self.entries
            .iter()
            .find(|(key, mask, _)| k.matches(key, mask))
            .map(|e| e.2)
    }
}

/// Rules in a vector kept sorted by priority; lookup is a linear scan.
#[derive(Default)]
pub struct SortedRules {
    /// (priority, masked key, mask) in descending priority.
    pub rules: Vec<(u16, FlowKey, flowtable::FlowMask)>,
}

impl SortedRules {
    /// Inserts keeping the order (a memmove of the tail per insert).
    pub fn insert(&mut self, priority: u16, key: FlowKey, mask: flowtable::FlowMask) {
        let at = self.rules.partition_point(|r| r.0 >= priority);
        self.rules.insert(at, (priority, key, mask));
    }
}
