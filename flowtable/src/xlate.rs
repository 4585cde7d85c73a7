//! Translation ("upcall"): walk the rule tables for one flow key, collect the
//! datapath actions, and record exactly which key bits the walk consulted.
//!
//! The recorded mask is what makes a megaflow correct: every packet that
//! agrees with the translated key on those bits would take the same rules and
//! get the same actions, so one cache entry serves them all. Each step that
//! reads the key adds what it read: a table lookup adds the masks of the
//! subtables it probed, `normal` adds the MACs, VLAN and input port, a select
//! group adds the fields it hashes, `dec_ttl` adds the TTL.
//!
//! Packet rewrites are collected lazily: an action that changes a packet field
//! marks it dirty, and before each output the dirty fields are written out as
//! absolute `set` actions. Because the value written never depends on a field
//! the mask leaves out, no unconsulted bit can change the result.
//!
//! Translation has no side effects. What `normal` learns is returned in
//! [`XlateOut::learned`] for the caller to apply; revalidation re-runs
//! translation freely and ignores it.

use crate::action::{Action, DpAction, SubField};
use crate::bridge::Bridge;
use crate::drop::DropReason;
use crate::field::{dl_type, Field, Prereq, VLAN_PRESENT};
use crate::journal::TableSet;
use crate::key::{FlowKey, FlowMask};
use crate::mac::Learn;
use crate::port::PortNo;
use crate::rule::FlowSpec;
use crate::rule::Rule;
use std::sync::Arc;

mod ct_learn;
mod output;
mod verdict;

use verdict::{retain_without_output, set_log_verdicts};

/// How deep resubmits may nest (OVS: 64).
pub const MAX_DEPTH: u32 = 64;
/// How many resubmits one translation may do in all (OVS: 4096).
pub const MAX_RESUBMITS: u32 = 4096;

/// The result of translating one key.
#[derive(Debug, Default)]
pub struct XlateOut {
    /// What the datapath does to every packet of the megaflow. Ends with
    /// [`DpAction::Drop`] when the packet is output nowhere.
    pub actions: Vec<DpAction>,
    /// The key bits the result depends on: the megaflow's mask.
    pub mask: FlowMask,
    /// Every rule whose actions ran, for statistics.
    pub rules: Vec<Arc<Rule>>,
    /// What `normal` learned.
    pub learned: Vec<Learn>,
    /// The rules `learn(...)` asks to add, for the caller to install.
    pub learned_flows: Vec<FlowSpec>,
    /// The tables looked up: a rule change elsewhere cannot change this
    /// result (see [`crate::journal`]).
    pub tables: TableSet,
}

/// One step of a trace, for `oxvs-ctl trace`.
#[derive(Debug, Clone)]
pub enum TraceEvent {
    /// A table was searched with this key; `rule` is what matched.
    Lookup {
        /// Resubmit depth.
        depth: u32,
        /// The table.
        table: u8,
        /// The key as the lookup saw it (boxed: traces are rare, and the
        /// key is a quarter kilobyte).
        key: Box<FlowKey>,
        /// The matching rule, if any.
        rule: Option<Arc<Rule>>,
    },
    /// Something worth telling the user (a learning step, a group bucket).
    Note {
        /// Resubmit depth.
        depth: u32,
        /// The note.
        text: String,
    },
}

struct Ctx<'a> {
    br: &'a Bridge,
    flow: FlowKey,
    /// The packet's bytes as of the last commit.
    committed: FlowKey,
    dirty: FlowMask,
    /// Packet fields written since the current group bucket began; unlike
    /// `dirty`, commits do not clear it.
    written: FlowMask,
    wc: FlowMask,
    out: Vec<DpAction>,
    rules: Vec<Arc<Rule>>,
    learned: Vec<Learn>,
    learned_flows: Vec<FlowSpec>,
    tables: TableSet,
    depth: u32,
    resubmits: u32,
    exit: bool,
    reason: Option<DropReason>,
    trace: Option<&'a mut Vec<TraceEvent>>,
}

/// Translates `key` through `br`'s tables starting at table 0.
pub fn translate(br: &Bridge, key: &FlowKey, trace: Option<&mut Vec<TraceEvent>>) -> XlateOut {
    let mut cx = Ctx {
        br,
        flow: *key,
        committed: *key,
        dirty: FlowMask::default(),
        written: FlowMask::default(),
        wc: FlowMask::default(),
        out: Vec::new(),
        rules: Vec::new(),
        learned: Vec::new(),
        learned_flows: Vec::new(),
        tables: TableSet::default(),
        depth: 0,
        resubmits: 0,
        exit: false,
        reason: None,
        trace,
    };
    // A megaflow always pins the input port and recirculation id: caches are
    // per port and per pass, as in Open vSwitch.
    cx.wc.set_field(Field::InPort);
    cx.wc.set_field(Field::RecircId);
    let recirc = key.get(Field::RecircId);
    match recirc_table(recirc as u32) {
        Some(t) => cx.table(t, true),
        None => cx.drop_reason(DropReason::TableMiss),
    }
    if recirc == 0 {
        // Registers and metadata are zero in every packet that enters from a
        // port; a lookup that read them learned nothing about the packet, so
        // they need not split megaflows.
        // The same holds for tunnel metadata of packets that did not come
        // from a tunnel.
        let from_tunnel = br.ports.tunnel(key.get(Field::InPort) as PortNo).is_some();
        let zero_at_ingress = |f: &Field| {
            *f == Field::Metadata
                || (Field::Reg0..=Field::Reg15).contains(f)
                || (!from_tunnel && (Field::TunId..=Field::TunMetadata1).contains(f))
        };
        for f in Field::all().filter(zero_at_ingress) {
            cx.wc.clear_field(f);
        }
    }
    set_log_verdicts(&mut cx.out, cx.reason == Some(DropReason::Rejected));
    if !cx.out.iter().any(DpAction::is_output) {
        let reason = cx.reason.unwrap_or(DropReason::NoOutput);
        retain_without_output(&mut cx.out);
        cx.out.push(DpAction::Drop(reason));
    }
    XlateOut {
        actions: cx.out,
        mask: cx.wc,
        rules: cx.rules,
        learned: cx.learned,
        learned_flows: cx.learned_flows,
        tables: cx.tables,
    }
}

/// The recirculation id a `ct(table=T)` gives the tracked packet. The
/// frozen state a recirculated packet needs besides its table (registers,
/// metadata, `ct_*` fields) travels in its key, so the id only names the
/// table; 0 is the first pass.
pub fn recirc_id(table: u8) -> u32 {
    table as u32 + 1
}

/// The table a pass with recirculation id `id` starts in.
pub fn recirc_table(id: u32) -> Option<u8> {
    match id {
        0 => Some(0),
        n if n <= crate::rule::N_TABLES as u32 => Some((n - 1) as u8),
        _ => None,
    }
}

impl Ctx<'_> {
    fn note(&mut self, text: impl FnOnce() -> String) {
        let depth = self.depth;
        if let Some(t) = self.trace.as_deref_mut() {
            t.push(TraceEvent::Note {
                depth,
                text: text(),
            });
        }
    }

    fn drop_reason(&mut self, r: DropReason) {
        self.reason.get_or_insert(r);
    }

    fn table(&mut self, t: u8, top: bool) {
        let br = self.br;
        self.tables.insert(t);
        let rule = br.cls.table(t).lookup(&self.flow, &mut self.wc).cloned();
        let (depth, key) = (self.depth, self.flow);
        if let Some(tr) = self.trace.as_deref_mut() {
            tr.push(TraceEvent::Lookup {
                depth,
                table: t,
                key: Box::new(key),
                rule: rule.clone(),
            });
        }
        match rule {
            None => {
                if top {
                    self.drop_reason(DropReason::TableMiss);
                }
            }
            Some(r) => {
                self.rules.push(r.clone());
                self.actions(&r.actions, t);
            }
        }
    }

    fn actions(&mut self, actions: &[Action], table: u8) {
        for a in actions {
            if self.exit {
                return;
            }
            self.action(a, table);
        }
    }

    fn action(&mut self, a: &Action, table: u8) {
        match *a {
            Action::Output(p) => self.output(p),
            Action::OutputField(src) => self.output_field(src),
            Action::InPort => {
                let p = self.flow.get(Field::InPort) as PortNo;
                self.emit_output(p);
            }
            Action::Normal => self.normal(),
            Action::Flood | Action::All => self.flood(),
            Action::Drop => {}
            Action::Resubmit { in_port, table: t } => self.resubmit(in_port, t.unwrap_or(table)),
            Action::GotoTable(t) => self.table(t, true),
            Action::SetField { field, value, mask } => self.write(field, value, mask),
            Action::Load { dst, value } => self.write(dst.field, value << dst.ofs, dst.mask()),
            Action::Move { src, dst } => {
                let v = self.read_sub(src);
                self.write(dst.field, v << dst.ofs, dst.mask());
            }
            Action::DecTtl => self.dec_ttl(),
            Action::WriteMetadata { value, mask } => {
                self.write(Field::Metadata, value.into(), mask.into())
            }
            Action::PushVlan(_tpid) => {
                self.wc.set_field(Field::VlanTci);
                let tci = self.flow.get(Field::VlanTci) as u16;
                if tci & VLAN_PRESENT != 0 {
                    // Only one tag is modelled: a second push keeps the tag.
                    self.note(|| "push_vlan: packet already tagged, keeping one tag".into());
                }
                self.set_vlan(tci | VLAN_PRESENT);
            }
            Action::PopVlan => {
                self.wc.set_field(Field::VlanTci);
                self.set_vlan(0);
            }
            Action::ModVlanVid(vid) => {
                self.wc.set_field(Field::VlanTci);
                let tci = self.flow.get(Field::VlanTci) as u16;
                self.set_vlan((tci & 0xe000) | VLAN_PRESENT | (vid & 0x0fff));
            }
            Action::ModVlanPcp(pcp) => {
                self.wc.set_field(Field::VlanTci);
                let tci = self.flow.get(Field::VlanTci) as u16;
                self.set_vlan((tci & 0x0fff) | VLAN_PRESENT | ((pcp as u16 & 7) << 13));
            }
            Action::Group(id) => self.group(id),
            Action::Ct(ref c) => self.ct(c),
            Action::Learn(ref l) => self.learn(l),
            Action::CtClear => {
                for f in [Field::CtState, Field::CtZone, Field::CtMark, Field::CtLabel] {
                    self.flow.set(f, 0);
                }
            }
            Action::Reject(how) => self.reject(how),
            Action::Log(ref name) => self.log(name),
            // The classifier never returns a conjunctive rule, so this runs
            // only if a bucket holds one, which validation refuses.
            Action::Conjunction { .. } => {}
        }
    }
    fn read_sub(&mut self, sf: SubField) -> u128 {
        self.wc.set_bits(sf.field, sf.mask());
        (self.flow.get(sf.field) & sf.mask()) >> sf.ofs
    }

    /// Whether the current packet has what `p` needs, consulting (and so
    /// unwildcarding) dl_type and nw_proto.
    fn has(&mut self, p: Prereq) -> bool {
        if p == Prereq::None {
            return true;
        }
        self.wc.set_field(Field::DlType);
        let dl = self.flow.get(Field::DlType) as u16;
        let ip = dl == dl_type::IPV4 || dl == dl_type::IPV6;
        let proto = |cx: &mut Self| {
            cx.wc.set_field(Field::NwProto);
            cx.flow.get(Field::NwProto) as u8
        };
        match p {
            Prereq::None => true,
            Prereq::Ip => ip,
            Prereq::Ipv4 => dl == dl_type::IPV4,
            Prereq::Ipv6 => dl == dl_type::IPV6,
            Prereq::Arp => dl == dl_type::ARP,
            Prereq::Ipv4OrArp => dl == dl_type::IPV4 || dl == dl_type::ARP,
            Prereq::IpOrArp => ip || dl == dl_type::ARP,
            Prereq::L4 => ip && matches!(proto(self), 6 | 17 | 132 | 1 | 58),
            Prereq::Tcp => ip && proto(self) == 6,
            Prereq::ArpOrNd => dl == dl_type::ARP || (dl == dl_type::IPV6 && proto(self) == 58),
        }
    }

    fn write(&mut self, field: Field, value: u128, mask: u128) {
        if !self.has(field.prereq()) {
            self.note(|| format!("{field}: prerequisite not met, not written"));
            return;
        }
        let mask = mask & field.max();
        if field.is_packet_field() {
            // A partial write keeps the packet's other bits, so the value
            // written out depends on them.
            if mask != field.max() {
                self.wc.set_field(field);
            }
            self.dirty.set_field(field);
            self.written.set_field(field);
        }
        self.flow.set_masked(field, value, mask);
    }

    fn set_vlan(&mut self, tci: u16) {
        self.flow.set(Field::VlanTci, tci as u128);
        self.dirty.set_field(Field::VlanTci);
        self.written.set_field(Field::VlanTci);
    }

    fn dec_ttl(&mut self) {
        if !self.has(Prereq::Ip) {
            return;
        }
        self.wc.set_field(Field::NwTtl);
        let ttl = self.flow.get(Field::NwTtl) as u8;
        if ttl <= 1 {
            self.note(|| format!("dec_ttl: ttl {ttl}, dropping"));
            self.drop_reason(DropReason::TtlExceeded);
            self.exit = true;
            return;
        }
        self.flow.set(Field::NwTtl, (ttl - 1) as u128);
        self.dirty.set_field(Field::NwTtl);
        self.written.set_field(Field::NwTtl);
    }

    fn resubmit(&mut self, in_port: Option<PortNo>, table: u8) {
        if self.depth >= MAX_DEPTH || self.resubmits >= MAX_RESUBMITS {
            self.note(|| "resubmit limit reached, dropping".into());
            self.drop_reason(DropReason::ResubmitLimit);
            self.exit = true;
            return;
        }
        self.resubmits += 1;
        let saved = self.flow.get(Field::InPort);
        if let Some(p) = in_port {
            self.flow.set(Field::InPort, p as u128);
        }
        self.depth += 1;
        self.table(table, false);
        self.depth -= 1;
        self.flow.set(Field::InPort, saved);
    }
}

#[cfg(test)]
#[path = "xlate_reject_tests.rs"]
mod reject_tests;

#[cfg(test)]
#[path = "xlate_field_output_tests.rs"]
mod field_output_tests;
