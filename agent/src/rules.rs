//! The compiler's output: flows and groups of one node, with the text the
//! switch's parser reads (`ovs-ofctl` syntax, [`ctl::ofp::parse_flow_file`]).
//!
//! A flow is kept as its match and action text plus the numbers a sync and
//! a test need (table, priority, cookie), so the compiler formats each rule
//! exactly once. Flows are unique by (table, priority, match): the same rule
//! produced twice (an endpoint DNAT shared by two Services) is kept once.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The table.
    pub table: u8,
    /// The priority.
    pub priority: u16,
    /// The owner's cookie ([`crate::cookie`]).
    pub cookie: u64,
    /// The match, in flow syntax (may be empty).
    pub m: String,
    /// The actions, in flow syntax.
    pub actions: String,
}

impl Flow {
    /// The flow as one `add-flows` line.
    pub fn line(&self) -> String {
        let mut s = String::with_capacity(48 + self.m.len() + self.actions.len());
        let _ = write!(
            s,
            "table={},priority={},cookie={:#x},",
            self.table, self.priority, self.cookie
        );
        if !self.m.is_empty() {
            s.push_str(&self.m);
            s.push(',');
        }
        s.push_str("actions=");
        s.push_str(&self.actions);
        s
    }
}

/// One group: id, the owner's cookie (groups have none in OpenFlow; the
/// agent keeps it to say which object a group belongs to) and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The group id.
    pub id: u32,
    /// The owner's cookie.
    pub cookie: u64,
    /// The whole `group_id=...` line.
    pub text: String,
}

/// What a flow is unique by: table, priority (highest first), match.
pub type FlowKey = (u8, std::cmp::Reverse<u16>, String);

/// A node's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    flows: BTreeMap<FlowKey, Flow>,
    groups: BTreeMap<u32, Group>,
}

impl RuleSet {
    /// Adds a flow; a second flow with the same table, priority and match
    /// is ignored (the first owner keeps it).
    pub fn flow(
        &mut self,
        table: u8,
        priority: u16,
        cookie: u64,
        m: impl Into<String>,
        actions: impl Into<String>,
    ) {
        let m = m.into();
        self.flows
            .entry((table, std::cmp::Reverse(priority), m.clone()))
            .or_insert_with(|| Flow {
                table,
                priority,
                cookie,
                m,
                actions: actions.into(),
            });
    }

    /// Adds a group.
    pub fn group(&mut self, g: Group) {
        self.groups.insert(g.id, g);
    }

    /// The flows, by table, priority (highest first) and match.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> + '_ {
        self.flows.values()
    }

    /// The groups, by id.
    pub fn groups(&self) -> impl Iterator<Item = &Group> + '_ {
        self.groups.values()
    }

    /// The number of flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Whether a group id is taken.
    pub fn has_group(&self, id: u32) -> bool {
        self.groups.contains_key(&id)
    }

    /// The whole rule set as an `add-flows` file: groups first, then flows.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.flows.len() * 160);
        for g in self.groups.values() {
            s.push_str(&g.text);
            s.push('\n');
        }
        for f in self.flows.values() {
            s.push_str(&f.line());
            s.push('\n');
        }
        s
    }

    /// Calls `f(old, new)` for every (table, priority, match) where `self`
    /// and `new` differ: a flow only in `self` (`new` is `None`), only in
    /// `new`, or in both with another cookie or other actions. One merge
    /// of the two sorted maps, comparing the compiler's own text: no
    /// parsing, so a diff of two 100 000-flow sets costs milliseconds.
    pub fn diff_flows<'a>(
        &'a self,
        new: &'a RuleSet,
        mut f: impl FnMut(Option<&'a Flow>, Option<&'a Flow>),
    ) {
        let mut a = self.flows.iter().peekable();
        let mut b = new.flows.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => return,
                (Some((_, x)), None) => {
                    f(Some(x), None);
                    a.next();
                }
                (None, Some((_, y))) => {
                    f(None, Some(y));
                    b.next();
                }
                (Some((ka, x)), Some((kb, y))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => {
                        f(Some(x), None);
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        f(None, Some(y));
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if x.cookie != y.cookie || x.actions != y.actions {
                            f(Some(x), Some(y));
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
    }

    /// The flows by key, for the incremental compiler.
    pub(crate) fn flow_map(&self) -> &BTreeMap<FlowKey, Flow> {
        &self.flows
    }

    /// The flows by key, to be changed in place by the incremental compiler.
    pub(crate) fn flow_map_mut(&mut self) -> &mut BTreeMap<FlowKey, Flow> {
        &mut self.flows
    }

    /// The groups by id, to be changed in place by the incremental compiler.
    pub(crate) fn group_map_mut(&mut self) -> &mut BTreeMap<u32, Group> {
        &mut self.groups
    }

    /// The groups by id.
    pub(crate) fn group_map(&self) -> &BTreeMap<u32, Group> {
        &self.groups
    }

    /// A group by id.
    pub fn group_by_id(&self, id: u32) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// Flows per table.
    pub fn table_counts(&self) -> BTreeMap<u8, usize> {
        let mut m = BTreeMap::new();
        for (t, _, _) in self.flows.keys() {
            *m.entry(*t).or_default() += 1;
        }
        m
    }

    /// Only the flows and groups whose cookie `(cookie & mask) == value`.
    pub fn select(&self, value: u64, mask: u64) -> RuleSet {
        RuleSet {
            flows: self
                .flows
                .iter()
                .filter(|(_, f)| f.cookie & mask == value)
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect(),
            groups: self
                .groups
                .iter()
                .filter(|(_, g)| g.cookie & mask == value)
                .map(|(k, g)| (*k, g.clone()))
                .collect(),
        }
    }
}
