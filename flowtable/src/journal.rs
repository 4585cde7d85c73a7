//! What recent rule changes touched, so that a datapath revalidates only
//! the megaflows a change can affect.
//!
//! A megaflow stands for every packet its masked key covers, with the
//! actions translation gave them. A translation reads the rule tables it
//! looked up and nothing else of the rules, so adding, changing or removing
//! rules in table T can only change the result for megaflows whose
//! translation looked up T. Each translation records its tables in a
//! [`TableSet`], each megaflow keeps that set, and the bridge keeps a
//! [`Journal`] of the tables each recent change touched. A poll thread that
//! is a few versions behind re-translates only the megaflows whose tables
//! meet the union of those changes, instead of all of them.
//!
//! This matters when rules change often while traffic flows: every rule a
//! `learn` action adds (session affinity learns one per new client) is a
//! change, and a poll thread that re-translated its whole megaflow table
//! for each one spent its time re-translating traffic the new rule cannot
//! touch.
//!
//! Changes whose reach is not a set of tables (groups, ports) are journaled
//! as [`Touched::All`]; so is anything older than the journal remembers.
//! Both mean: revalidate everything, as before.

use crate::rule::N_TABLES;
use std::collections::VecDeque;

/// A set of rule tables (0..=253).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSet([u64; 4]);

impl TableSet {
    /// Adds table `t`.
    #[inline]
    pub fn insert(&mut self, t: u8) {
        self.0[t as usize / 64] |= 1 << (t % 64);
    }

    /// Whether table `t` is in the set.
    pub fn contains(&self, t: u8) -> bool {
        self.0[t as usize / 64] & 1 << (t % 64) != 0
    }

    /// Adds every table of `o`.
    pub fn union(&mut self, o: &TableSet) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }

    /// Whether the two sets share a table.
    #[inline]
    pub fn meets(&self, o: &TableSet) -> bool {
        self.0.iter().zip(o.0).any(|(a, b)| a & b != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The tables in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..N_TABLES as u8).filter(|&t| self.contains(t))
    }
}

/// What one change touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Rules of these tables were added, changed or removed.
    Tables(TableSet),
    /// Something translation reads outside the tables: groups, ports.
    All,
}

impl Touched {
    /// Nothing yet.
    pub fn none() -> Touched {
        Touched::Tables(TableSet::default())
    }

    /// Adds table `t`.
    pub fn table(&mut self, t: u8) {
        if let Touched::Tables(s) = self {
            s.insert(t);
        }
    }
}

/// How many changes the journal remembers. A poll thread syncs before each
/// batch of packets, so it is rarely more than a few versions behind; one
/// further behind revalidates everything.
pub const JOURNAL_LEN: usize = 64;

/// The tables each of the last [`JOURNAL_LEN`] rule versions touched.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// `(version, touched)`: the change that made the rules `version`.
    entries: VecDeque<(u64, Touched)>,
}

impl Journal {
    /// Records that the change to `version` touched `t`.
    pub fn push(&mut self, version: u64, t: Touched) {
        if self.entries.len() == JOURNAL_LEN {
            self.entries.pop_front();
        }
        self.entries.push_back((version, t));
    }

    /// The tables the changes after version `since` up to and including
    /// `now` touched, or `None` if one of them touched more than tables or
    /// is no longer remembered.
    pub fn since(&self, since: u64, now: u64) -> Option<TableSet> {
        let mut set = TableSet::default();
        let mut next = since + 1;
        for &(v, t) in &self.entries {
            if v <= since {
                continue;
            }
            if v != next {
                return None;
            }
            match t {
                Touched::Tables(s) => set.union(&s),
                Touched::All => return None,
            }
            next += 1;
        }
        (next == now + 1).then_some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(ts: &[u8]) -> Touched {
        let mut t = Touched::none();
        for &x in ts {
            t.table(x);
        }
        t
    }

    #[test]
    fn since_unions_what_it_remembers_and_nothing_else() {
        let mut j = Journal::default();
        j.push(1, tables(&[0]));
        j.push(2, tables(&[41, 200]));
        j.push(3, tables(&[]));
        let s = j.since(1, 3).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), [41, 200]);
        assert!(j.since(3, 3).unwrap().is_empty(), "nothing since");
        assert_eq!(j.since(0, 3).unwrap().iter().count(), 3);
        assert_eq!(j.since(0, 4), None, "version 4 is not journaled");
        j.push(4, Touched::All);
        assert_eq!(j.since(2, 4), None, "a group or port change");
        j.push(5, tables(&[7]));
        assert_eq!(j.since(4, 5).unwrap().iter().collect::<Vec<_>>(), [7]);
        // Versions 6..=69 push 1..=5 out.
        let last = 5 + JOURNAL_LEN as u64;
        for v in 6..=last {
            j.push(v, tables(&[1]));
        }
        assert_eq!(j.since(4, last), None, "version 5 is forgotten");
        assert!(j.since(5, last).is_some());
    }

    #[test]
    fn table_sets_meet_on_a_shared_table() {
        let (mut a, mut b) = (TableSet::default(), TableSet::default());
        a.insert(63);
        b.insert(64);
        assert!(!a.meets(&b));
        b.insert(63);
        assert!(a.meets(&b) && b.contains(64) && !a.contains(64));
        a.insert(253);
        assert_eq!(a.iter().collect::<Vec<_>>(), [63, 253]);
    }
}
