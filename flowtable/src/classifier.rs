//! The OpenFlow-style rule classifier: tables 0..=253, each a tuple-space
//! search over subtables of rules that share a mask.
//!
//! Lookup in a table probes subtables in order of the highest priority they
//! hold and stops as soon as no remaining subtable can beat the best match
//! found. Every subtable it probes contributes its mask to the caller's
//! "consulted" mask: the lookup's result depends on exactly those bits, so a
//! megaflow built from them covers only packets that would find the same rule
//! (Open vSwitch's wildcard tracking, without its staged lookup and prefix
//! tries, which would make megaflows wider still).
//!
//! Conjunctive matches follow ovs-fields(7): a rule whose actions are
//! `conjunction(...)` ("soft") never matches by itself. While the search
//! looks for the best ordinary ("hard") rule it also gathers the soft rules
//! the packet matches above that rule's priority; soft rules never raise the
//! bar that stops the search, so every subtable that could hold one is
//! probed and its mask recorded. If a conjunction they satisfy has a higher
//! priority than the hard rule, the table is searched again as if the packet
//! had `conj_id` set to its id (soft rules ignored); the rule found wins, and
//! if none is found the next satisfied conjunction is tried, then the hard
//! rule. Both searches add their probes to `consulted`, so a megaflow covers
//! only packets that satisfy the same clauses. A hard rule wins a tie with a
//! conjunction of its own priority.
//!
//! Rules are `Arc`s so that megaflows can hold on to the rules they came from
//! for statistics, and so that a snapshot of the classifier is cheap to share.

use crate::conjunction;
use crate::flow_match::Match;
use crate::key::{hash_masked, table_hash, FlowKey, FlowMask};
use crate::rule::{Rule, N_TABLES};
use hashbrown::HashTable;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rules that share one mask, hashed by their masked key.
#[derive(Clone)]
struct Subtable {
    mask: FlowMask,
    /// Indices of the words `mask` touches; only those are hashed and compared.
    words: Vec<u8>,
    /// Buckets of rules with the same masked key, highest priority first.
    buckets: HashTable<Bucket>,
    /// How many rules of each priority, to keep `max_priority` exact on removal.
    priorities: BTreeMap<u16, u32>,
    max_priority: u16,
    n_rules: usize,
}

#[derive(Clone)]
struct Bucket {
    hash: u32,
    key: FlowKey,
    rules: Vec<Arc<Rule>>,
}

impl Subtable {
    fn new(mask: FlowMask) -> Subtable {
        Subtable {
            mask,
            words: mask.nonzero_words().map(|w| w as u8).collect(),
            buckets: HashTable::new(),
            priorities: BTreeMap::new(),
            max_priority: 0,
            n_rules: 0,
        }
    }

    fn key_eq(&self, a: &FlowKey, b: &FlowKey) -> bool {
        self.words
            .iter()
            .all(|&i| a.w[i as usize] == b.w[i as usize])
    }

    /// The rules (highest priority first) whose masked key equals `key`'s.
    #[inline]
    fn lookup(&self, key: &FlowKey) -> Option<&[Arc<Rule>]> {
        let hash = hash_masked(key, &self.mask, &self.words);
        let words = &self.words;
        let mask = &self.mask;
        self.buckets
            .find(table_hash(hash), |b| {
                b.hash == hash
                    && words.iter().all(|&i| {
                        let i = i as usize;
                        key.w[i] & mask.w[i] == b.key.w[i]
                    })
            })
            .map(|b| b.rules.as_slice())
    }
}

/// One OpenFlow table.
#[derive(Clone, Default)]
pub struct Table {
    /// Subtables sorted by descending `max_priority`.
    subtables: Vec<Subtable>,
    n_rules: usize,
    /// How many rules are conjunctive; with none, lookups skip the
    /// bookkeeping.
    n_conjunctive: usize,
    /// Optional name (`dump-tables`, and flow dumps print it).
    pub name: Option<String>,
}

impl Table {
    /// Finds the rule that decides `key`: the highest-priority ordinary rule
    /// or, when a satisfied conjunction beats it, the rule its `conj_id`
    /// lookup finds. Adds the masks of every subtable probed to `consulted`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, consulted: &mut FlowMask) -> Option<&Arc<Rule>> {
        if self.n_conjunctive == 0 {
            return self.search(key, 0, None, consulted);
        }
        // The vector allocates only when a clause rule matches.
        let mut soft = Vec::new();
        let hard = self.search(key, 0, Some(&mut soft), consulted);
        if let Some(h) = hard {
            soft.retain(|r| r.priority > h.priority);
        }
        if soft.is_empty() {
            return hard;
        }
        for (_, id) in conjunction::satisfied(&soft) {
            // ovs-fields(7): if the search with conj_id=id fails, OVS acts as
            // if the conjunctive flow had not matched and searches on.
            if let Some(r) = self.search(key, id, None, consulted) {
                return Some(r);
            }
        }
        hard
    }

    /// One tuple-space search as if the packet's `conj_id` were `conj_id`:
    /// returns the best ordinary rule and, when `soft` is given, pushes the
    /// matching clause rules that rank above the rules found so far.
    #[inline]
    fn search<'a>(
        &'a self,
        key: &FlowKey,
        conj_id: u32,
        mut soft: Option<&mut Vec<&'a Arc<Rule>>>,
        consulted: &mut FlowMask,
    ) -> Option<&'a Arc<Rule>> {
        let mut best: Option<&Arc<Rule>> = None;
        for st in &self.subtables {
            if let Some(b) = best {
                if b.priority >= st.max_priority {
                    break;
                }
            }
            consulted.union(&st.mask);
            let Some(rules) = st.lookup(key) else {
                continue;
            };
            for r in rules {
                if best.is_some_and(|b| r.priority <= b.priority) {
                    break;
                }
                if r.m.conj_id.is_some_and(|c| c != conj_id) {
                    continue;
                }
                if r.is_conjunctive() {
                    if let Some(s) = soft.as_deref_mut() {
                        s.push(r);
                    }
                    continue;
                }
                best = Some(r);
                break;
            }
        }
        best
    }

    /// Number of rules that are clauses of conjunctive matches.
    pub fn n_conjunctive(&self) -> usize {
        self.n_conjunctive
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.n_rules
    }

    /// Whether the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.n_rules == 0
    }

    /// Number of distinct masks (subtables).
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Every rule, in no particular order.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.subtables
            .iter()
            .flat_map(|st| st.buckets.iter().flat_map(|b| b.rules.iter()))
    }

    /// Finds the rule with exactly this match and priority.
    pub fn find_strict(&self, m: &Match, priority: u16) -> Option<&Arc<Rule>> {
        let st = self.subtables.iter().find(|st| st.mask == m.mask)?;
        let hash = hash_masked(&m.key, &st.mask, &st.words);
        let b = st.buckets.find(table_hash(hash), |b| {
            b.hash == hash && st.key_eq(&b.key, &m.key)
        })?;
        b.rules
            .iter()
            .find(|r| r.priority == priority && r.m.conj_id == m.conj_id)
    }

    /// Inserts `rule`, replacing any rule with the same match and priority
    /// (OpenFlow's add semantics). Returns the replaced rule.
    pub fn insert(&mut self, rule: Arc<Rule>) -> Option<Arc<Rule>> {
        let idx = match self.subtables.iter().position(|st| st.mask == rule.m.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(rule.m.mask));
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[idx];
        let hash = hash_masked(&rule.m.key, &st.mask, &st.words);
        // Bucket keys are stored masked, like the rule's, so whole keys compare.
        let eq = |b: &Bucket| b.hash == hash && b.key.same(&rule.m.key);
        let replaced = match st.buckets.find_mut(table_hash(hash), eq) {
            Some(b) => match b
                .rules
                .iter()
                .position(|r| r.priority == rule.priority && r.m.conj_id == rule.m.conj_id)
            {
                Some(p) => Some(std::mem::replace(&mut b.rules[p], rule.clone())),
                None => {
                    let at = b.rules.partition_point(|r| r.priority > rule.priority);
                    b.rules.insert(at, rule.clone());
                    None
                }
            },
            None => {
                let bucket = Bucket {
                    hash,
                    key: rule.m.key,
                    rules: vec![rule.clone()],
                };
                st.buckets
                    .insert_unique(table_hash(hash), bucket, |b| table_hash(b.hash));
                None
            }
        };
        self.n_conjunctive += usize::from(rule.is_conjunctive());
        if let Some(old) = &replaced {
            self.n_conjunctive -= usize::from(old.is_conjunctive());
        }
        if replaced.is_none() {
            *st.priorities.entry(rule.priority).or_default() += 1;
            st.n_rules += 1;
            self.n_rules += 1;
            if rule.priority > st.max_priority || st.n_rules == 1 {
                st.max_priority = rule.priority;
                self.sort();
            }
        }
        replaced
    }

    /// Removes the rule with exactly this match and priority.
    pub fn remove(&mut self, m: &Match, priority: u16) -> Option<Arc<Rule>> {
        let idx = self.subtables.iter().position(|st| st.mask == m.mask)?;
        let st = &mut self.subtables[idx];
        let hash = hash_masked(&m.key, &st.mask, &st.words);
        let eq = |b: &Bucket| b.hash == hash && b.key.same(&m.key);
        let Ok(mut entry) = st.buckets.find_entry(table_hash(hash), eq) else {
            return None;
        };
        let b = entry.get_mut();
        let p = b
            .rules
            .iter()
            .position(|r| r.priority == priority && r.m.conj_id == m.conj_id)?;
        let removed = b.rules.remove(p);
        self.n_conjunctive -= usize::from(removed.is_conjunctive());
        if b.rules.is_empty() {
            entry.remove();
        }
        let count = st
            .priorities
            .get_mut(&priority)
            .expect("priority was counted on insert");
        *count -= 1;
        if *count == 0 {
            st.priorities.remove(&priority);
        }
        st.n_rules -= 1;
        self.n_rules -= 1;
        if st.n_rules == 0 {
            self.subtables.remove(idx);
        } else {
            st.max_priority = *st
                .priorities
                .keys()
                .next_back()
                .expect("non-empty subtable");
            self.sort();
        }
        Some(removed)
    }

    fn sort(&mut self) {
        self.subtables
            .sort_by_key(|st| std::cmp::Reverse(st.max_priority));
    }
}

/// All tables of a bridge. Tables are shared (`Arc`) and copied on write,
/// so a snapshot of the classifier for the poll threads costs one reference
/// count per table, and a change copies only the table it touches.
#[derive(Clone)]
pub struct Classifier {
    tables: Vec<Arc<Table>>,
}

impl Default for Classifier {
    fn default() -> Self {
        let empty = Arc::new(Table::default());
        Classifier {
            tables: vec![empty; N_TABLES],
        }
    }
}

impl Classifier {
    /// Table `t` (0..=253).
    #[inline]
    pub fn table(&self, t: u8) -> &Table {
        &self.tables[t as usize]
    }

    /// Table `t`, mutable.
    pub fn table_mut(&mut self, t: u8) -> &mut Table {
        Arc::make_mut(&mut self.tables[t as usize])
    }

    /// Every table with its number.
    pub fn tables(&self) -> impl Iterator<Item = (u8, &Table)> {
        self.tables.iter().enumerate().map(|(i, t)| (i as u8, &**t))
    }

    /// Every rule of every table.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.tables.iter().flat_map(|t| t.rules())
    }

    /// Total number of rules.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;
    use crate::rule::FlowSpec;

    fn rule(priority: u16, f: &[(Field, u128, u128)]) -> Arc<Rule> {
        let mut spec = FlowSpec {
            priority,
            ..Default::default()
        };
        for &(field, v, m) in f {
            spec.m.set_masked(field, v, m);
        }
        Arc::new(Rule::new(&spec, 0))
    }

    #[test]
    fn highest_priority_wins_and_mask_records_probes() {
        let mut t = Table::default();
        t.insert(rule(10, &[(Field::InPort, 1, u32::MAX as u128)]));
        t.insert(rule(
            20,
            &[
                (Field::NwDst, 0x0a000000, 0xff000000),
                (Field::DlType, 0x800, 0xffff),
            ],
        ));
        t.insert(rule(5, &[]));
        let mut k = FlowKey::default();
        k.set(Field::InPort, 1);
        k.set(Field::DlType, 0x800);
        k.set(Field::NwDst, 0x0a010203);
        let mut wc = FlowMask::default();
        assert_eq!(t.lookup(&k, &mut wc).unwrap().priority, 20);
        // The highest subtable matched; nothing below priority 20 was probed.
        assert_eq!(wc.get(Field::NwDst), 0xff000000);
        assert_eq!(wc.get(Field::InPort), 0);
        k.set(Field::NwDst, 0x0b000000);
        let mut wc = FlowMask::default();
        assert_eq!(t.lookup(&k, &mut wc).unwrap().priority, 10);
        assert_eq!(wc.get(Field::InPort), u32::MAX as u128);
    }

    #[test]
    fn insert_replaces_and_remove_restores_max_priority() {
        let mut t = Table::default();
        let a = rule(10, &[(Field::InPort, 1, u32::MAX as u128)]);
        let b = rule(30, &[(Field::InPort, 2, u32::MAX as u128)]);
        assert!(t.insert(a.clone()).is_none());
        assert!(t.insert(b.clone()).is_none());
        assert!(t
            .insert(rule(10, &[(Field::InPort, 1, u32::MAX as u128)]))
            .is_some());
        assert_eq!(t.len(), 2);
        assert!(t.remove(&b.m, 30).is_some());
        assert_eq!(t.subtables[0].max_priority, 10);
        assert!(t.remove(&a.m, 10).is_some());
        assert_eq!(t.n_subtables(), 0);
        assert!(t.is_empty());
    }
}
