//! What recent rule changes touched, so that a datapath revalidates only
//! the megaflows a change can affect.
//!
//! A megaflow stands for every packet its masked key covers, with the
//! actions translation gave them. A translation reads the rule tables it
//! looked up and nothing else of the rules, so adding, changing or removing
//! rules in table T can only change the result for megaflows whose
//! translation looked up T. Each translation records its tables in a
//! [`TableSet`], each megaflow keeps that set, and the bridge keeps a
//! [`Journal`] of when each table last changed. A poll thread that
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
//! as [`Touched::All`], which means: revalidate everything, as before. The
//! journal keeps, per table, the version that last changed it, so a poll
//! thread however far behind learns exactly which tables changed since.

use crate::rule::N_TABLES;

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

/// The rules version at which each table last changed, and at which
/// something outside the tables last did: enough to tell a poll thread that
/// is any number of versions behind which tables changed since.
#[derive(Clone, Debug)]
pub struct Journal {
    table_at: Box<[u64]>,
    all_at: u64,
}

impl Default for Journal {
    fn default() -> Journal {
        Journal {
            table_at: vec![0; N_TABLES].into_boxed_slice(),
            all_at: 0,
        }
    }
}

impl Journal {
    /// Records that the change to rules version `version` touched `t`.
    pub fn push(&mut self, version: u64, t: Touched) {
        match t {
            Touched::All => self.all_at = version,
            Touched::Tables(s) => {
                for t in s.iter() {
                    self.table_at[t as usize] = version;
                }
            }
        }
    }

    /// The tables changed after rules version `since`, or `None` if
    /// something besides tables changed after it.
    pub fn since(&self, since: u64) -> Option<TableSet> {
        if self.all_at > since {
            return None;
        }
        let mut set = TableSet::default();
        for (t, &v) in self.table_at.iter().enumerate() {
            if v > since {
                set.insert(t as u8);
            }
        }
        Some(set)
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
    fn since_names_the_tables_changed_after_a_version() {
        let mut j = Journal::default();
        j.push(1, tables(&[0]));
        j.push(2, tables(&[41, 200]));
        j.push(3, tables(&[]));
        let s = j.since(1).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), [41, 200]);
        assert!(j.since(3).unwrap().is_empty(), "nothing since");
        assert_eq!(j.since(0).unwrap().iter().count(), 3);
        j.push(4, Touched::All);
        assert_eq!(j.since(2), None, "a group or port change");
        assert_eq!(j.since(3), None);
        j.push(5, tables(&[7]));
        assert_eq!(j.since(4).unwrap().iter().collect::<Vec<_>>(), [7]);
        // However far behind: a thousand versions later, table 0 again.
        for v in 6..1006 {
            j.push(v, tables(&[1]));
        }
        j.push(1006, tables(&[0]));
        assert_eq!(j.since(4).unwrap().iter().collect::<Vec<_>>(), [0, 1, 7]);
        assert_eq!(j.since(1005).unwrap().iter().collect::<Vec<_>>(), [0]);
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
