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

/// A node's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    flows: BTreeMap<(u8, std::cmp::Reverse<u16>, String), Flow>,
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
