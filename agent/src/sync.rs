//! Keeping a switch in step with the compiled rules, kube-proxy's way:
//! read what the switch has (`dump-flows`, `dump-groups`), compute the
//! difference with the desired rule set, and send only that, as one
//! `add-flows` request — oxvsd applies a request as one transaction, so
//! packets see the old rules or the new ones, never a mix, and a restarted
//! agent that finds everything in place sends nothing at all.
//!
//! Rules are compared by (table, priority, match) after both sides went
//! through the switch's own parser and printer, so spelling differences
//! (`0x2a` vs `42`, a port's name vs its number) are not differences.
//! Rules the switch learned (session affinity, cookie category
//! [`Category::Learned`]) are the switch's own and are left alone. Groups
//! have no cookie: a group the desired set no longer has is deleted after
//! the bundle, when no rule refers to it any more.

use crate::cookie::{category, Category};
use crate::rules::RuleSet;
use ctl::ofp::{format_actions, format_group, format_match, parse_flow, parse_group, PortNames};
use flowtable::port::PortNo;
use flowtable::FlowSpec;
use std::collections::BTreeMap;

/// Port names from `show` output (` 3(v1p3): addr:...`), so that
/// `dump-flows` lines, which name ports, parse back to numbers.
#[derive(Clone, Debug, Default)]
pub struct ShowPorts(pub BTreeMap<String, PortNo>);

impl ShowPorts {
    /// Reads `show` output.
    pub fn parse(show: &str) -> ShowPorts {
        let mut m = BTreeMap::new();
        for line in show.lines() {
            let l = line.trim_start();
            let Some((no, rest)) = l.split_once('(') else {
                continue;
            };
            let Some((name, _)) = rest.split_once("):") else {
                continue;
            };
            if let Ok(no) = no.parse() {
                m.insert(name.to_string(), no);
            }
        }
        ShowPorts(m)
    }
}

impl PortNames for ShowPorts {
    fn port_no(&self, name: &str) -> Option<PortNo> {
        self.0.get(name).copied()
    }
}

type Key = (u8, u16, String);

/// A flow reduced to what decides equality.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Canon {
    cookie: u64,
    idle: u32,
    hard: u32,
    actions: String,
}

fn canon(s: &FlowSpec) -> (Key, Canon) {
    (
        (s.table, s.priority, format_match(&s.m, &())),
        Canon {
            cookie: s.cookie,
            idle: s.idle_timeout,
            hard: s.hard_timeout,
            actions: format_actions(&s.actions, &()),
        },
    )
}

/// Turns one `dump-flows` line back into a flow line the parser takes:
/// ` cookie=0x5, duration=1s, table=0, n_packets=0, n_bytes=0, idle_age=0, priority=200,in_port=1 actions=drop`.
pub fn dump_line_to_flow(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let mut head = Vec::new();
    let mut rest = line;
    // The header is `key=value, ` items up to and including idle_age.
    loop {
        let (item, tail) = rest.split_once(", ")?;
        let (k, _) = item.split_once('=')?;
        match k {
            "cookie" | "table" | "idle_timeout" | "hard_timeout" => head.push(item.to_string()),
            "duration" | "n_packets" | "n_bytes" => {}
            "idle_age" => {
                rest = tail;
                break;
            }
            _ => return None,
        }
        rest = tail;
    }
    head.push(rest.replacen(" actions=", ",actions=", 1));
    Some(head.join(","))
}

/// What the switch has, keyed for comparison.
#[derive(Clone, Debug, Default)]
pub struct Installed {
    flows: BTreeMap<Key, Canon>,
    groups: BTreeMap<u32, String>,
}

impl Installed {
    /// Reads `dump-flows`, `dump-groups` and `show` output.
    pub fn parse(flows: &str, groups: &str, show: &str) -> Result<Installed, String> {
        let names = ShowPorts::parse(show);
        let mut out = Installed::default();
        for line in flows.lines() {
            let Some(text) = dump_line_to_flow(line) else {
                continue;
            };
            let spec =
                parse_flow(&text, &names).map_err(|e| format!("dump-flows {text:?}: {e}"))?;
            if category(spec.cookie) == Category::Learned as u16 {
                continue;
            }
            let (k, c) = canon(&spec);
            out.flows.insert(k, c);
        }
        for line in groups.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let g = parse_group(line, &names).map_err(|e| format!("dump-groups {line:?}: {e}"))?;
            out.groups.insert(g.id, format_group(&g, &()));
        }
        Ok(out)
    }

    /// How many flows (learned ones not counted).
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }
}

/// The difference to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One `add-flows` text: changed groups, `delete_strict` lines, then
    /// the flows to add or replace. Empty when nothing changed.
    pub bundle: String,
    /// Groups to delete after the bundle.
    pub stale_groups: Vec<u32>,
    /// Flows added or changed.
    pub added: usize,
    /// Flows removed.
    pub removed: usize,
    /// Groups added or changed.
    pub groups: usize,
}

impl Plan {
    /// One flow's change: a removal goes into the bundle now (as
    /// `delete_strict`), an addition or replacement into `adds`, which the
    /// caller appends after every removal.
    pub fn flow_change(
        &mut self,
        adds: &mut String,
        old: Option<&crate::rules::Flow>,
        new: Option<&crate::rules::Flow>,
    ) {
        match (old, new) {
            (Some(o), None) => {
                let sep = if o.m.is_empty() { "" } else { "," };
                self.bundle.push_str(&format!(
                    "delete_strict table={},priority={}{sep}{}\n",
                    o.table, o.priority, o.m
                ));
                self.removed += 1;
            }
            (_, Some(n)) => {
                adds.push_str(&n.line());
                adds.push('\n');
                self.added += 1;
            }
            (None, None) => {}
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.bundle.is_empty() && self.stale_groups.is_empty()
    }
}

/// Compares `want` with what is installed.
pub fn plan(want: &RuleSet, have: &Installed) -> Result<Plan, String> {
    let mut p = Plan::default();
    let mut want_keys = BTreeMap::new();
    let mut adds = String::new();
    for f in want.flows() {
        let line = f.line();
        let spec = parse_flow(&line, &()).map_err(|e| format!("compiled rule {line:?}: {e}"))?;
        let (k, c) = canon(&spec);
        if have.flows.get(&k) != Some(&c) {
            adds.push_str(&line);
            adds.push('\n');
            p.added += 1;
        }
        want_keys.insert(k, ());
    }
    for g in want.groups() {
        let spec =
            parse_group(&g.text, &()).map_err(|e| format!("compiled group {}: {e}", g.id))?;
        if have.groups.get(&g.id) != Some(&format_group(&spec, &())) {
            p.bundle.push_str(&g.text);
            p.bundle.push('\n');
            p.groups += 1;
        }
    }
    for (k, _) in have
        .flows
        .iter()
        .filter(|(k, _)| !want_keys.contains_key(*k))
    {
        let (table, priority, m) = k;
        let sep = if m.is_empty() { "" } else { "," };
        p.bundle.push_str(&format!(
            "delete_strict table={table},priority={priority}{sep}{m}\n"
        ));
        p.removed += 1;
    }
    p.bundle.push_str(&adds);
    p.stale_groups = have
        .groups
        .keys()
        .filter(|id| !want.has_group(**id))
        .copied()
        .collect();
    Ok(p)
}

/// Compares `want` with `last`, the rule set this agent applied last
/// (kept in memory by [`crate::syncer::Syncer`]): both are the compiler's
/// own canonical text keyed by (table, priority, match), so nothing is
/// parsed. The bundle has the same shape as [`plan`]'s.
pub fn plan_between(last: &RuleSet, want: &RuleSet) -> Plan {
    let mut p = Plan::default();
    for g in want.groups() {
        if last.group_by_id(g.id).map(|o| &o.text) != Some(&g.text) {
            p.bundle.push_str(&g.text);
            p.bundle.push('\n');
            p.groups += 1;
        }
    }
    let mut adds = String::new();
    last.diff_flows(want, |old, new| p.flow_change(&mut adds, old, new));
    p.bundle.push_str(&adds);
    p.stale_groups = last
        .groups()
        .filter(|g| !want.has_group(g.id))
        .map(|g| g.id)
        .collect();
    p
}

/// Reads `dump-tables` output (`  table 40:\n    active=12, matched=3`)
/// into flows per table.
pub fn parse_dump_tables(text: &str) -> BTreeMap<u8, usize> {
    let mut out = BTreeMap::new();
    let mut table: Option<u8> = None;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line
            .strip_prefix("table ")
            .and_then(|r| r.strip_suffix(':'))
        {
            table = n.parse().ok();
        } else if let (Some(t), Some(rest)) = (table, line.strip_prefix("active=")) {
            let n = rest.split(',').next().unwrap_or("");
            if let Ok(n) = n.parse() {
                out.insert(t, n);
            }
            table = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_parse_back() {
        let l = " cookie=0x1234, duration=5.2s, table=40, n_packets=3, n_bytes=180, hard_timeout=600, idle_age=1, priority=200,tcp,in_port=v1p1 actions=group:7";
        assert_eq!(
            dump_line_to_flow(l).unwrap(),
            "cookie=0x1234,table=40,hard_timeout=600,priority=200,tcp,in_port=v1p1,actions=group:7"
        );
        let l =
            " cookie=0x0, duration=0s, table=0, n_packets=0, n_bytes=0, idle_age=0, actions=drop";
        assert_eq!(
            dump_line_to_flow(l).unwrap(),
            "cookie=0x0,table=0,actions=drop"
        );
        let names =
            ShowPorts::parse("oxvsd: up\n 3(v1p1): addr:02:00:00:00:00:01\n     state:  up\n");
        assert_eq!(names.port_no("v1p1"), Some(3));
    }

    #[test]
    fn dump_tables_parse() {
        let t = "  table 0:\n    active=3, matched=0\n  table 41:\n    active=7, matched=1\n  other tables: active=0 (matched counts packets credited to rules)\n";
        let m = parse_dump_tables(t);
        assert_eq!(m.get(&0), Some(&3));
        assert_eq!(m.get(&41), Some(&7));
        assert_eq!(m.len(), 2);
    }

    /// The in-memory diff says what the parsing one says.
    #[test]
    fn plan_between_matches_plan() {
        let mut a = RuleSet::default();
        a.flow(0, 100, 0x11, "in_port=1", "goto_table:10");
        a.flow(0, 90, 0x11, "in_port=2", "drop");
        a.flow(40, 200, 0x21, "tcp,nw_dst=10.0.0.1,tp_dst=80", "group:7");
        a.group(crate::rules::Group {
            id: 7,
            cookie: 0x21,
            text: "group_id=7,type=select,bucket=actions=drop".into(),
        });
        let mut b = RuleSet::default();
        b.flow(0, 100, 0x11, "in_port=1", "goto_table:20");
        b.flow(40, 200, 0x21, "tcp,nw_dst=10.0.0.1,tp_dst=80", "group:7");
        b.flow(10, 5, 0x31, "", "drop");
        let fast = plan_between(&a, &b);
        let mut dump = String::new();
        for f in a.flows() {
            let sep = if f.m.is_empty() { "" } else { "," };
            dump += &format!(
                " cookie={:#x}, duration=1s, table={}, n_packets=0, n_bytes=0, idle_age=1, priority={}{sep}{} actions={}\n",
                f.cookie, f.table, f.priority, f.m, f.actions
            );
        }
        let groups = "group_id=7,type=select,bucket=actions=drop\n";
        let slow = plan(&b, &Installed::parse(&dump, groups, "").unwrap()).unwrap();
        assert_eq!((fast.added, fast.removed), (slow.added, slow.removed));
        assert_eq!((fast.added, fast.removed), (2, 1));
        assert_eq!(fast.stale_groups, vec![7]);
        assert_eq!(fast.stale_groups, slow.stale_groups);
        assert!(plan_between(&b, &b).is_empty());
    }
}
