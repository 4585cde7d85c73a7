//! A bridge: the rule tables, groups, ports and MAC table that translation
//! reads, with the validation and all-or-nothing batch semantics that the
//! control plane relies on.
//!
//! Every change goes through [`Bridge::apply`]: the whole batch is checked
//! against the bridge as it would be after the earlier changes of the same
//! batch, and only if every change is valid is any of it applied. A change
//! bumps [`Bridge::version`]; the datapath compares versions before each batch
//! of packets and revalidates its caches when they differ. The bridge's
//! [`Journal`] says which tables each recent change touched, so that only
//! the megaflows whose translation looked those tables up are re-checked.

use crate::action::Action;
use crate::classifier::Classifier;
use crate::field::Field;
use crate::flow_match::{Match, PrereqError};
use crate::group::GroupTable;
use crate::journal::{Journal, TableSet, Touched};
use crate::mac::{Learn, MacTable};
use crate::port::{PortNo, PortTable};
use crate::rule::{FlowSpec, GroupSpec, Rule, N_TABLES};
use std::sync::Arc;

mod validate;

/// `table=255` in a delete or modify: every table (OpenFlow's OFPTT_ALL).
pub const ALL_TABLES: u8 = 0xff;

/// Why a rule or group was refused. The doc comment of each variant is its
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// table {0} does not exist (tables are 0..=253)
    BadTable(u8),
    /// the match is missing a prerequisite
    Prereq(PrereqError),
    /// output to port {0}, which the bridge does not have
    UnknownPort(PortNo),
    /// group {0} does not exist
    UnknownGroup(u32),
    /// goto_table:{to} in table {from}: a goto must move to a later table
    GotoBackwards {
        /// The rule's table.
        from: u8,
        /// The target.
        to: u8,
    },
    /// "drop" must be the only action
    DropNotAlone,
    /// goto_table must be the last action
    GotoNotLast,
    /// bits {ofs}..{end} are outside field {field}
    BadSubField {
        /// The field.
        field: Field,
        /// First bit.
        ofs: u8,
        /// One past the last bit.
        end: u16,
    },
    /// move between subfields of different widths
    MoveWidth,
    /// set_field on {field}, whose prerequisite the rule does not match
    ActionPrereq {
        /// The field written.
        field: Field,
    },
    /// a select group needs at least one bucket with a non-zero weight; an indirect group exactly one bucket
    BadBuckets(u32),
    /// ct: {0}
    BadCt(&'static str),
    /// learn: {0}
    BadLearn(&'static str),
    /// log name {0:?} is not 1 to 48 of A-Z a-z 0-9 _ . / : -, or the bridge has too many names
    BadLogName(String),
    /// output:FIELD reads a port number of at most 32 bits, not {0}
    OutputFieldWidth(u8),
    /// write_metadata must come last but for goto_table, and only once
    WriteMetadataNotLast,
    /// bucket_id {1} is given twice in group {0}, or is above 0xffffff00
    BadBucketId(u32, u32),
    /// conjunction actions may not be mixed with other actions, need 2 to 64 clauses, and belong in rules only
    BadConjunction,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::BadTable(t) => write!(f, "table {t} does not exist (tables are 0..=253)"),
            RuleError::Prereq(e) => write!(f, "{e}"),
            RuleError::UnknownPort(p) => write!(f, "output to port {p}, which the bridge does not have"),
            RuleError::UnknownGroup(g) => write!(f, "group {g} does not exist"),
            RuleError::GotoBackwards { from, to } => {
                write!(f, "goto_table:{to} in table {from}: a goto must move to a later table")
            }
            RuleError::DropNotAlone => write!(f, "\"drop\" must be the only action"),
            RuleError::GotoNotLast => write!(f, "goto_table must be the last action"),
            RuleError::BadSubField { field, ofs, end } => {
                write!(f, "bits {ofs}..{end} are outside field {field} ({} bits)", field.bits())
            }
            RuleError::MoveWidth => write!(f, "move between subfields of different widths"),
            RuleError::ActionPrereq { field } => {
                write!(f, "set_field on {field}, whose prerequisite the rule does not match")
            }
            RuleError::BadCt(why) => write!(f, "ct: {why}"),
            RuleError::BadLearn(why) => write!(f, "learn: {why}"),
            RuleError::BadBuckets(g) => write!(
                f,
                "group {g}: a select group needs a bucket with non-zero weight, an indirect group exactly one bucket"
            ),
            RuleError::BadLogName(n) => write!(
                f,
                "log name {n:?} is not 1 to 48 of A-Z a-z 0-9 _ . / : -, or the bridge has too many names"
            ),
            RuleError::OutputFieldWidth(n) => write!(
                f,
                "output:FIELD reads a port number of at most 32 bits, not {n}"
            ),
            RuleError::WriteMetadataNotLast => write!(
                f,
                "write_metadata must come last but for goto_table, and only once"
            ),
            RuleError::BadBucketId(g, b) => write!(
                f,
                "group {g}: bucket_id {b} is given twice or is above 0xffffff00"
            ),
            RuleError::BadConjunction => write!(
                f,
                "\"conjunction\" actions may not be mixed with other actions, need a clause k/n with 1 <= k <= n and 2 <= n <= 64, and are not allowed in group buckets"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// Selects rules for modify and delete, as `ovs-ofctl` does.
#[derive(Clone, Debug)]
pub struct FlowFilter {
    /// Table, or [`ALL_TABLES`].
    pub table: u8,
    /// The match (strict: equal; loose: the rule is covered by it).
    pub m: Match,
    /// Priority (strict only).
    pub priority: u16,
    /// Cookie bits to compare under `cookie_mask`.
    pub cookie: u64,
    /// Which cookie bits matter (0: any cookie).
    pub cookie_mask: u64,
    /// Only rules that output to this port.
    pub out_port: Option<PortNo>,
    /// Strict (`--strict`, `delete_strict`) or loose matching.
    pub strict: bool,
}

impl FlowFilter {
    /// The filter a flow line describes.
    pub fn from_spec(s: &FlowSpec, strict: bool) -> FlowFilter {
        FlowFilter {
            table: s.table,
            m: s.m,
            priority: s.priority,
            cookie: s.cookie,
            cookie_mask: s.cookie_mask,
            out_port: s.out_port,
            strict,
        }
    }

    /// Whether `r` is selected.
    pub fn selects(&self, r: &Rule) -> bool {
        (self.table == ALL_TABLES || self.table == r.table)
            && (r.cookie ^ self.cookie) & self.cookie_mask == 0
            && self.out_port.is_none_or(|p| r.outputs_to(p))
            && if self.strict {
                r.m == self.m && r.priority == self.priority
            } else {
                r.m.is_covered_by(&self.m)
            }
    }
}

/// One change to a bridge.
#[derive(Clone, Debug)]
pub enum Change {
    /// Add a rule, replacing one with the same table, match and priority.
    AddFlow(FlowSpec),
    /// Replace the actions of the selected rules (counters kept).
    ModifyFlows(FlowFilter, Vec<Action>),
    /// Remove the selected rules.
    DeleteFlows(FlowFilter),
    /// Add or replace a group.
    AddGroup(GroupSpec),
    /// Remove a group and every rule that uses it (OpenFlow semantics).
    DeleteGroup(u32),
}

/// Tables, groups, ports and MAC table of one bridge.
#[derive(Clone, Default)]
pub struct Bridge {
    /// The rule tables.
    pub cls: Classifier,
    /// The groups.
    pub groups: GroupTable,
    /// The ports.
    pub ports: PortTable,
    /// What `normal` has learned.
    pub macs: MacTable,
    /// Which Geneve options the `tun_metadataN` fields carry.
    pub tlv: crate::tunnel::TlvMap,
    /// How to reach remote VTEPs.
    pub tunnel_routes: crate::tunnel::TunnelRoutes,
    rules_version: u64,
    /// The rules version at which each table last changed.
    journal: Journal,
    /// The names of `log(name=...)` actions, interned so that a datapath
    /// action carries a small id instead of a string.
    pub log_names: LogNames,
}

/// An append-only table of `log` names. Names are never removed: an id a
/// cached megaflow or a queued log record holds stays valid, and the set
/// of rule names of a cluster is small.
#[derive(Clone, Debug, Default)]
pub struct LogNames {
    names: Vec<Arc<str>>,
    ids: std::collections::HashMap<Arc<str>, u16>,
}

impl LogNames {
    /// At most this many names (ids are `u16`; `u16::MAX` means unknown).
    pub const MAX: usize = 4096;

    /// Whether `name` is a valid log name: 1 to 48 characters of
    /// `A-Z a-z 0-9 _ . / : -`, so that a log line needs no quoting.
    pub fn valid(name: &str) -> bool {
        (1..=48).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./:-".contains(&b))
    }

    /// The id of `name`, if interned.
    pub fn id(&self, name: &str) -> Option<u16> {
        self.ids.get(name).copied()
    }

    /// The name of `id`; `"?"` for an id this table never gave out.
    pub fn name(&self, id: u16) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }

    /// Interns `name`, returning its id; `None` when the table is full.
    pub fn intern(&mut self, name: &str) -> Option<u16> {
        if let Some(id) = self.id(name) {
            return Some(id);
        }
        if self.names.len() >= Self::MAX {
            return None;
        }
        let id = self.names.len() as u16;
        let n: Arc<str> = Arc::from(name);
        self.names.push(n.clone());
        self.ids.insert(n, id);
        Some(id)
    }

    fn room_for(&self, actions: &[Action], extra: &mut usize) -> Result<(), RuleError> {
        for a in actions {
            if let Action::Log(n) = a {
                if !Self::valid(n) {
                    return Err(RuleError::BadLogName(n.clone()));
                }
                if self.id(n).is_none() {
                    *extra += 1;
                    if self.names.len() + *extra > Self::MAX {
                        return Err(RuleError::BadLogName(n.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    fn intern_all(&mut self, actions: &[Action]) {
        for a in actions {
            if let Action::Log(n) = a {
                // Checked by `room_for` before the batch was applied.
                let _ = self.intern(n);
            }
        }
    }
}

impl Bridge {
    /// Changes whenever anything translation reads changes.
    pub fn version(&self) -> u64 {
        self.rules_version + self.other_version()
    }

    /// Changes with the rules, groups and ports.
    pub fn rules_version(&self) -> u64 {
        self.rules_version
    }

    /// Changes with what translation reads besides rules, groups and ports:
    /// the MAC table and the tunnel routes.
    pub fn other_version(&self) -> u64 {
        self.macs.version() + self.tunnel_routes.version()
    }

    /// The tables whose rules changed after rules version `since`, or
    /// `None` if a group or port changed too (then any translation may
    /// have).
    pub fn tables_changed_since(&self, since: u64) -> Option<TableSet> {
        self.journal.since(since)
    }

    fn bump(&mut self, t: Touched) {
        self.rules_version += 1;
        self.journal.push(self.rules_version, t);
    }

    /// Adds a port.
    pub fn add_port(&mut self, no: PortNo, name: &str) {
        self.ports.add(no, name);
        self.bump(Touched::All);
    }

    /// Deletes port `no`. Rules that name it stay (output to it becomes a
    /// `drop_port_down` in the datapath) and its number stays held while
    /// they do ([`PortTable::hold`]); what `normal` learned on it goes.
    /// False if there was no such port.
    pub fn remove_port(&mut self, no: PortNo) -> bool {
        if !self.ports.hold(no) {
            return false;
        }
        self.macs.flush_port(no);
        self.bump(Touched::All);
        true
    }

    /// Whether a rule or group names port `no`: `in_port`, `output`,
    /// `resubmit`'s port, a bucket's `watch_port`. A port number is never
    /// given to a new port while this holds for it.
    pub fn names_port(&self, no: PortNo) -> bool {
        let in_actions = |actions: &[Action]| {
            actions.iter().any(|a| match *a {
                Action::Output(p) => p == no,
                Action::Resubmit { in_port, .. } => in_port == Some(no),
                _ => false,
            })
        };
        let in_rules = self.cls.rules().any(|r| {
            let (v, m) = r.m.get(Field::InPort);
            (m != 0 && v == no as u128) || in_actions(&r.actions)
        });
        in_rules
            || self.groups.iter().any(|g| {
                g.spec
                    .buckets
                    .iter()
                    .any(|b| b.watch_port == Some(no) || in_actions(&b.actions))
            })
    }

    /// Frees the held numbers no rule or group names any more; returns them.
    pub fn release_unnamed_ports(&mut self) -> Vec<PortNo> {
        let free: Vec<PortNo> = self.ports.held().filter(|&n| !self.names_port(n)).collect();
        for &n in &free {
            self.ports.release(n);
        }
        free
    }

    /// Marks a port up or down.
    pub fn set_port_up(&mut self, no: PortNo, up: bool) {
        self.ports.set_up(no, up);
        if !up {
            self.macs.flush_port(no);
        }
        self.bump(Touched::All);
    }

    /// Applies what translations learned, except on ports that are gone.
    /// Learning reaches the control thread after the fact (from upcalls
    /// in flight, and from the poll threads' refresh of megaflows used in
    /// the last second), so it can name a port deleted meanwhile; taken,
    /// it would put back the MACs `remove_port` flushed, pointing at a
    /// number the next pod may get, and a pod coming back with the same
    /// MAC (the same address) on another port would have the replies to
    /// its first packets sent to the old number until it is learned again.
    pub fn learn(&mut self, learned: &[Learn], now_ms: u64) {
        for l in learned.iter().filter(|l| self.ports.contains(l.port)) {
            self.macs.learn(l, now_ms);
        }
    }

    /// Applies every change or, if any is invalid, none; the error carries
    /// the index of the first bad change.
    pub fn apply(&mut self, changes: &[Change], now_ms: u64) -> Result<(), (usize, RuleError)> {
        // Groups added earlier in the batch may be used by later rules, and
        // groups deleted earlier may not: validate against the batch's own
        // view of which groups exist.
        let mut groups: std::collections::BTreeSet<u32> =
            self.groups.iter().map(|g| g.spec.id).collect();
        let mut new_names = 0;
        for (i, c) in changes.iter().enumerate() {
            let names = match c {
                Change::AddFlow(s) => self.log_names.room_for(&s.actions, &mut new_names),
                Change::ModifyFlows(_, actions) => self.log_names.room_for(actions, &mut new_names),
                _ => Ok(()),
            };
            names.map_err(|e| (i, e))?;
            let r = match c {
                Change::AddFlow(s) => self.validate(s, &groups),
                Change::ModifyFlows(f, actions) => {
                    let table = if f.table == ALL_TABLES { 0 } else { f.table };
                    let spec = FlowSpec {
                        table,
                        m: f.m,
                        actions: actions.clone(),
                        ..Default::default()
                    };
                    self.validate_actions(&spec, &groups)
                }
                Change::DeleteFlows(f) => {
                    if f.table as usize >= N_TABLES && f.table != ALL_TABLES {
                        Err(RuleError::BadTable(f.table))
                    } else {
                        Ok(())
                    }
                }
                Change::AddGroup(g) => {
                    let r = self.validate_group(g, &groups);
                    groups.insert(g.id);
                    r
                }
                Change::DeleteGroup(id) => {
                    groups.remove(id);
                    Ok(())
                }
            };
            r.map_err(|e| (i, e))?;
        }
        let mut touched = Touched::none();
        for c in changes {
            self.apply_one(c, now_ms, &mut touched);
        }
        self.bump(touched);
        Ok(())
    }

    fn apply_one(&mut self, c: &Change, now_ms: u64, touched: &mut Touched) {
        match c {
            Change::AddFlow(s) => self.log_names.intern_all(&s.actions),
            Change::ModifyFlows(_, actions) => self.log_names.intern_all(actions),
            _ => {}
        }
        match c {
            Change::AddFlow(s) => {
                self.cls
                    .table_mut(s.table)
                    .insert(Arc::new(Rule::new(s, now_ms)));
                touched.table(s.table);
            }
            Change::ModifyFlows(f, actions) => {
                for old in self.select(f) {
                    let spec = FlowSpec {
                        table: old.table,
                        priority: old.priority,
                        m: old.m,
                        cookie: old.cookie,
                        idle_timeout: old.idle_timeout,
                        hard_timeout: old.hard_timeout,
                        actions: actions.clone(),
                        ..Default::default()
                    };
                    let new = Rule::new(&spec, old.created_ms);
                    new.stats.credit(
                        old.stats.packets.load(std::sync::atomic::Ordering::Relaxed),
                        old.stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
                        old.stats.used_ms.load(std::sync::atomic::Ordering::Relaxed),
                    );
                    self.cls.table_mut(old.table).insert(Arc::new(new));
                    touched.table(old.table);
                }
            }
            Change::DeleteFlows(f) => {
                for r in self.select(f) {
                    self.cls.table_mut(r.table).remove(&r.m, r.priority);
                    touched.table(r.table);
                }
            }
            Change::AddGroup(g) => {
                self.groups.insert(g.clone());
                *touched = Touched::All;
            }
            Change::DeleteGroup(id) => {
                *touched = Touched::All;
                self.groups.remove(*id);
                let users: Vec<Arc<Rule>> = self
                    .cls
                    .rules()
                    .filter(|r| {
                        r.actions
                            .iter()
                            .any(|a| matches!(a, Action::Group(g) if g == id))
                    })
                    .cloned()
                    .collect();
                for r in users {
                    self.cls.table_mut(r.table).remove(&r.m, r.priority);
                }
            }
        }
    }

    /// The rules a filter selects. A strict filter names at most one rule
    /// per table (match and priority), found by lookup rather than by a
    /// scan: `replace-flows` deletes rules one strict filter at a time, and
    /// a scan per filter made that quadratic.
    pub fn select(&self, f: &FlowFilter) -> Vec<Arc<Rule>> {
        if f.strict {
            let found = |t: u8| self.cls.table(t).find_strict(&f.m, f.priority);
            return if f.table == ALL_TABLES {
                (0..N_TABLES as u8)
                    .filter_map(found)
                    .filter(|r| f.selects(r))
                    .cloned()
                    .collect()
            } else {
                found(f.table)
                    .filter(|r| f.selects(r))
                    .cloned()
                    .into_iter()
                    .collect()
            };
        }
        self.cls.rules().filter(|r| f.selects(r)).cloned().collect()
    }

    /// Removes rules whose idle or hard timeout has passed and ages the MAC
    /// table. Returns the removed rules.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Arc<Rule>> {
        let dead: Vec<Arc<Rule>> = self
            .cls
            .rules()
            .filter(|r| r.is_expired(now_ms))
            .cloned()
            .collect();
        let mut touched = Touched::none();
        for r in &dead {
            self.cls.table_mut(r.table).remove(&r.m, r.priority);
            touched.table(r.table);
        }
        if !dead.is_empty() {
            self.bump(touched);
        }
        self.macs.expire(now_ms);
        dead
    }
}

#[cfg(test)]
mod tests;
