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

use crate::action::{Action, CtAction, CtSpec, CtZoneSrc, DpAction, GroupType, SubField};
use crate::action::{LearnAction, LearnSpec, LearnSrc, FROZEN_WORDS};
use crate::action::{RejectHow, RejectReply, Verdict};
use crate::bridge::Bridge;
use crate::conntrack::CtExec;
use crate::drop::DropReason;
use crate::field::{dl_type, Field, Prereq, VLAN_PRESENT};
use crate::flow_match::Match;
use crate::group::HashField;
use crate::key::{hash_masked, FlowKey, FlowMask};
use crate::mac::Learn;
use crate::port::{reserved, PortNo};
use crate::rule::FlowSpec;
use crate::rule::Rule;
use std::sync::Arc;

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

    /// `ct(...)`: pending rewrites are written out first, since conntrack
    /// reads the packet's bytes. With `table=T` the datapath recirculates
    /// the packet after tracking it; it re-parses the packet (NAT may have
    /// changed it) and carries registers and metadata over from here, so
    /// their values join the megaflow mask.
    fn ct(&mut self, c: &CtAction) {
        if !self.has(Prereq::Ip) {
            self.note(|| "ct: not an IP packet, skipped".into());
            return;
        }
        let zone = match c.zone {
            CtZoneSrc::Imm(z) => z,
            CtZoneSrc::Field(sf) => self.read_sub(sf) as u16,
        };
        let exec = self.ct_exec(&c.exec);
        self.commit();
        let mut frozen = [0u64; FROZEN_WORDS];
        if c.table.is_some() {
            let first = Field::Metadata.word();
            frozen.copy_from_slice(&self.flow.w[first..first + FROZEN_WORDS]);
            for w in &mut self.wc.w[first..first + FROZEN_WORDS] {
                *w = u64::MAX;
            }
        }
        self.note(|| match c.table {
            Some(t) => format!("ct(zone={zone}): recirculating to table {t}"),
            None => format!("ct(zone={zone})"),
        });
        self.out.push(DpAction::Ct(Arc::new(CtSpec {
            zone,
            commit: c.commit,
            nat: c.nat,
            exec,
            table: c.table,
            frozen,
        })));
    }

    /// `learn(...)`: the rule is built from the packet's values now (each
    /// field read joins the megaflow mask, so every packet of the megaflow
    /// would learn the same rule) and handed to the caller, which installs
    /// it; this translation does not see it.
    fn learn(&mut self, l: &LearnSpec) {
        let mut m = Match::any();
        for lm in &l.matches {
            let v = self.learn_value(lm.src);
            m.set_masked(lm.dst.field, v << lm.dst.ofs, lm.dst.mask());
        }
        let mut actions = Vec::with_capacity(l.actions.len());
        for la in &l.actions {
            actions.push(match *la {
                LearnAction::Load { dst, src } => Action::Load {
                    dst,
                    value: self.learn_value(src),
                },
                LearnAction::Output(src) => Action::Output(self.read_sub(src) as PortNo),
            });
        }
        self.note(|| format!("learn: a rule for table {}", l.table));
        self.learned_flows.push(FlowSpec {
            table: l.table,
            priority: l.priority,
            m,
            cookie: l.cookie,
            cookie_mask: 0,
            idle_timeout: l.idle_timeout,
            hard_timeout: l.hard_timeout,
            out_port: None,
            actions,
        });
    }

    fn learn_value(&mut self, src: LearnSrc) -> u128 {
        match src {
            LearnSrc::Imm(v) => v,
            LearnSrc::Field(sf) => self.read_sub(sf),
        }
    }

    /// The mark and label writes of `exec(...)`, as values and masks.
    fn ct_exec(&mut self, acts: &[Action]) -> CtExec {
        let mut out = CtExec::default();
        for a in acts {
            let (field, value, mask) = match *a {
                Action::SetField { field, value, mask } => (field, value, mask),
                Action::Load { dst, value } => (dst.field, value << dst.ofs, dst.mask()),
                Action::Move { src, dst } => (dst.field, self.read_sub(src) << dst.ofs, dst.mask()),
                _ => continue,
            };
            match field {
                Field::CtMark => {
                    let (v, m) = out.mark.unwrap_or((0, 0));
                    let (value, mask) = (value as u32, mask as u32);
                    out.mark = Some(((v & !mask) | (value & mask), m | mask));
                }
                Field::CtLabel => {
                    let (v, m) = out.label.unwrap_or((0, 0));
                    out.label = Some(((v & !mask) | (value & mask), m | mask));
                }
                _ => {}
            }
        }
        out
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

    fn output(&mut self, p: PortNo) {
        match p {
            reserved::IN_PORT => {
                let p = self.flow.get(Field::InPort) as PortNo;
                self.emit_output(p);
            }
            reserved::NORMAL => self.normal(),
            reserved::FLOOD | reserved::ALL => self.flood(),
            reserved::NONE | reserved::CONTROLLER | reserved::TABLE => {
                self.note(|| format!("output to reserved port {p:#x}: not supported, ignored"));
            }
            _ => {
                if p == self.flow.get(Field::InPort) as PortNo {
                    self.note(|| format!("output:{p} is the input port, skipped"));
                    self.drop_reason(DropReason::OutputToInPort);
                    return;
                }
                self.emit_output(p);
            }
        }
    }

    fn flood(&mut self) {
        let in_port = self.flow.get(Field::InPort) as PortNo;
        let br = self.br;
        for port in br.ports.iter().filter(|p| p.up && p.no != in_port) {
            self.emit_output(port.no);
        }
    }

    fn normal(&mut self) {
        for f in [Field::DlSrc, Field::DlDst, Field::VlanTci] {
            self.wc.set_field(f);
        }
        let in_port = self.flow.get(Field::InPort) as PortNo;
        let vlan = (self.flow.get(Field::VlanTci) as u16) & 0x0fff;
        let src = mac(self.flow.get(Field::DlSrc));
        let dst = mac(self.flow.get(Field::DlDst));
        if src[0] & 1 == 0 {
            self.learned.push(Learn {
                vlan,
                mac: src,
                port: in_port,
            });
        }
        if dst[0] & 1 != 0 {
            self.note(|| "normal: multicast or broadcast destination, flooding".into());
            return self.flood();
        }
        match self.br.macs.lookup(vlan, &dst) {
            Some(p) if p == in_port => {
                self.note(|| format!("normal: destination learned on input port {p}, dropping"));
                self.drop_reason(DropReason::OutputToInPort);
            }
            Some(p) => {
                self.note(|| format!("normal: destination learned on port {p}"));
                self.emit_output(p);
            }
            None => {
                self.note(|| "normal: destination unknown, flooding".into());
                self.flood();
            }
        }
    }

    fn group(&mut self, id: u32) {
        let Some(g) = self.br.groups.get(id).cloned() else {
            self.note(|| format!("group {id} does not exist"));
            return;
        };
        match g.kind() {
            GroupType::Indirect => {
                if let Some(b) = g.spec.buckets.first() {
                    self.actions(&b.actions, 0);
                }
            }
            GroupType::Select => {
                let h = match &g.spec.hash_fields {
                    Some(fields) => self.select_hash_fields(fields),
                    None => self.select_hash(),
                };
                match g.select(h) {
                    Some(b) => {
                        let i = g
                            .spec
                            .buckets
                            .iter()
                            .position(|x| std::ptr::eq(x, b))
                            .unwrap_or(0);
                        self.note(|| format!("group {id} (select): bucket {i}"));
                        self.bucket(&b.actions);
                    }
                    None => self.note(|| format!("group {id} (select): no live bucket")),
                }
            }
            GroupType::All => {
                for b in &g.spec.buckets {
                    self.bucket(&b.actions);
                }
            }
        }
    }

    /// Runs a bucket on what is logically its own copy of the packet: the
    /// flow is restored afterwards, and any packet field the bucket rewrote
    /// is marked dirty so the next output writes the original value back.
    fn bucket(&mut self, actions: &[Action]) {
        let saved_flow = self.flow;
        let saved_written = std::mem::take(&mut self.written);
        self.actions(actions, 0);
        let touched = std::mem::replace(&mut self.written, saved_written);
        self.written.union(&touched);
        self.flow = saved_flow;
        for f in Field::all().filter(|f| f.is_packet_field()) {
            if touched.get(f) != 0 {
                // Writing the original back copies the packet's value.
                self.wc.set_field(f);
                self.dirty.set_field(f);
            }
        }
    }

    /// The flow hash a select group chooses by: addresses and ports for IP,
    /// MACs otherwise. The hashed fields join the megaflow mask.
    fn select_hash(&mut self) -> u32 {
        let mut m = FlowMask::default();
        if self.has(Prereq::Ip) {
            let v4 = self.has(Prereq::Ipv4);
            let (s, d) = if v4 {
                (Field::NwSrc, Field::NwDst)
            } else {
                (Field::Ipv6Src, Field::Ipv6Dst)
            };
            m.set_field(s);
            m.set_field(d);
            m.set_field(Field::NwProto);
            if self.has(Prereq::L4) {
                m.set_field(Field::TpSrc);
                m.set_field(Field::TpDst);
            }
        } else {
            m.set_field(Field::DlSrc);
            m.set_field(Field::DlDst);
        }
        self.wc.union(&m);
        let words: Vec<u8> = m.nonzero_words().map(|w| w as u8).collect();
        hash_masked(&self.flow, &m, &words)
    }

    /// The hash of `selection_method=hash,fields(...)`: only the named
    /// fields, under their masks, and only those whose prerequisites (and
    /// implied protocol) the packet has; exactly those bits join the mask.
    fn select_hash_fields(&mut self, fields: &[HashField]) -> u32 {
        let mut m = FlowMask::default();
        for hf in fields {
            let proto_ok = |cx: &mut Self, p: u8| {
                cx.wc.set_field(Field::NwProto);
                cx.flow.get(Field::NwProto) as u8 == p
            };
            if self.has(hf.field.prereq()) && hf.proto.is_none_or(|p| proto_ok(self, p)) {
                m.set_bits(hf.field, hf.mask);
            }
        }
        self.wc.union(&m);
        let words: Vec<u8> = m.nonzero_words().map(|w| w as u8).collect();
        hash_masked(&self.flow, &m, &words)
    }

    fn emit_output(&mut self, p: PortNo) {
        if !self.br.ports.contains(p) {
            self.note(|| format!("output:{p}: no such port"));
            self.drop_reason(DropReason::PortDown);
            return;
        }
        if self.br.ports.tunnel(p).is_some() {
            return self.tunnel_push(p);
        }
        self.commit();
        self.out.push(DpAction::Output(p));
    }

    /// Output to a tunnel port: the VNI and remote come from the port or,
    /// for `flow`, from the key (and so join the megaflow's mask).
    fn tunnel_push(&mut self, p: PortNo) {
        let Some(t) = self.br.ports.tunnel(p).cloned() else {
            return;
        };
        let vni = match t.key {
            Some(k) => k,
            None => {
                self.wc.set_field(Field::TunId);
                self.flow.get(Field::TunId) as u32 & 0x00ff_ffff
            }
        };
        let dst = match t.remote {
            Some(ip) => ip,
            None => {
                self.wc.set_field(Field::TunDst);
                let v4 = self.flow.get(Field::TunDst) as u32;
                if v4 != 0 {
                    std::net::IpAddr::V4(v4.into())
                } else {
                    self.wc.set_field(Field::TunIpv6Dst);
                    std::net::IpAddr::V6(self.flow.get(Field::TunIpv6Dst).into())
                }
            }
        };
        if dst.is_unspecified() || dst.is_ipv4() != t.local.is_ipv4() {
            self.note(|| {
                format!("output to tunnel port {p}: no usable remote (tun_dst/tun_ipv6_dst {dst})")
            });
            self.drop_reason(DropReason::PortDown);
            return;
        }
        self.commit();
        let md = [Field::TunMetadata0, Field::TunMetadata1];
        for (slot, f) in md.into_iter().enumerate() {
            if self.br.tlv.slots[slot].is_none() {
                continue;
            }
            self.wc.set_field(f);
            let value = self.flow.get(f) as u64;
            // A zero field means "no option": the key has no presence bit.
            if value != 0 {
                self.out.push(DpAction::TunnelMetadata {
                    slot: slot as u8,
                    value,
                });
            }
        }
        let dst = match dst {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        self.note(|| format!("output to tunnel port {p}: vni {vni}"));
        self.out.push(DpAction::TunnelPush { port: p, vni, dst });
    }

    /// Writes out dirty packet fields as absolute set actions.
    fn commit(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let f = self.flow;
        let d = self.dirty;
        let dirty = |x: Field| d.get(x) != 0;
        if dirty(Field::DlSrc) {
            self.out.push(DpAction::SetEthSrc(mac(f.get(Field::DlSrc))));
        }
        if dirty(Field::DlDst) {
            self.out.push(DpAction::SetEthDst(mac(f.get(Field::DlDst))));
        }
        if dirty(Field::VlanTci) {
            let old = self.committed.get(Field::VlanTci) as u16;
            let new = f.get(Field::VlanTci) as u16;
            match (old & VLAN_PRESENT != 0, new & VLAN_PRESENT != 0) {
                (true, false) => self.out.push(DpAction::PopVlan),
                (false, true) => self.out.push(DpAction::PushVlan {
                    tpid: 0x8100,
                    tci: new & !VLAN_PRESENT,
                }),
                (true, true) => self.out.push(DpAction::SetVlanTci(new & !VLAN_PRESENT)),
                (false, false) => {}
            }
        }
        let dl = f.get(Field::DlType) as u16;
        if dl == dl_type::IPV4 {
            if dirty(Field::NwSrc) {
                self.out.push(DpAction::SetIpv4Src(
                    (f.get(Field::NwSrc) as u32).to_be_bytes(),
                ));
            }
            if dirty(Field::NwDst) {
                self.out.push(DpAction::SetIpv4Dst(
                    (f.get(Field::NwDst) as u32).to_be_bytes(),
                ));
            }
        }
        if dl == dl_type::IPV6 {
            if dirty(Field::Ipv6Src) {
                self.out
                    .push(DpAction::SetIpv6Src(f.get(Field::Ipv6Src).to_be_bytes()));
            }
            if dirty(Field::Ipv6Dst) {
                self.out
                    .push(DpAction::SetIpv6Dst(f.get(Field::Ipv6Dst).to_be_bytes()));
            }
        }
        if dl == dl_type::IPV4 || dl == dl_type::IPV6 {
            if dirty(Field::NwTos) {
                self.out.push(DpAction::SetTos(f.get(Field::NwTos) as u8));
            }
            if dirty(Field::NwTtl) {
                self.out.push(DpAction::SetTtl(f.get(Field::NwTtl) as u8));
            }
            let proto = f.get(Field::NwProto) as u8;
            if proto == 6 || proto == 17 {
                if dirty(Field::TpSrc) {
                    self.out
                        .push(DpAction::SetTpSrc(f.get(Field::TpSrc) as u16));
                }
                if dirty(Field::TpDst) {
                    self.out
                        .push(DpAction::SetTpDst(f.get(Field::TpDst) as u16));
                }
            }
        }
        self.committed = f;
        self.dirty = FlowMask::default();
    }
}

/// Gives every `log` the megaflow's verdict: reject if it rejects, allow
/// if it outputs anywhere, drop otherwise. A `reject` that has no answer
/// for the protocol still counts as one.
fn set_log_verdicts(out: &mut [DpAction], rejected: bool) {
    let verdict = if rejected || out.iter().any(|a| matches!(a, DpAction::Reject(_))) {
        Verdict::Reject
    } else if out.iter().any(DpAction::is_output) {
        Verdict::Allow
    } else {
        Verdict::Drop
    };
    for a in out.iter_mut() {
        if let DpAction::Log { verdict: v, .. } = a {
            *v = verdict;
        }
    }
}

/// Trims the actions of a megaflow that outputs nowhere: rewrites are
/// pointless then, except before a `reject`, whose answer is built from
/// the rewritten packet.
fn retain_without_output(out: &mut Vec<DpAction>) {
    match out.iter().rposition(|a| matches!(a, DpAction::Reject(_))) {
        Some(r) => out.truncate(r + 1),
        None => out.retain(|a| a.is_output() || a.acts_without_output()),
    }
}

impl Ctx<'_> {
    /// `reject`: chooses the answer from the protocol (which joins the
    /// mask) and ends the pipeline. The answer is built from the packet as
    /// the actions so far have rewritten it, so pending rewrites are
    /// committed first, as for an output.
    fn reject(&mut self, how: RejectHow) {
        let ip = self.has(crate::field::Prereq::Ip);
        let tcp = ip && self.has(crate::field::Prereq::Tcp);
        let reply = match how {
            _ if !ip => None,
            RejectHow::Auto if tcp => Some(RejectReply::TcpRst),
            RejectHow::Auto | RejectHow::Icmp => Some(RejectReply::Prohibited),
            RejectHow::TcpRst => tcp.then_some(RejectReply::TcpRst),
            RejectHow::PortUnreachable => Some(RejectReply::PortUnreachable),
        };
        self.reason = Some(DropReason::Rejected);
        self.exit = true;
        match reply {
            Some(r) => {
                self.note(|| format!("reject: answering with {r:?}"));
                self.commit();
                self.out.push(DpAction::Reject(r));
            }
            None => self.note(|| "reject: no answer for this protocol, dropping".into()),
        }
    }

    /// `log(name=...)`: the verdict is filled in once the whole walk is
    /// known ([`set_log_verdicts`]).
    fn log(&mut self, name: &str) {
        let id = self.br.log_names.id(name).unwrap_or(u16::MAX);
        self.out.push(DpAction::Log {
            name: id,
            verdict: Verdict::Allow,
        });
    }
}

fn mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
#[path = "xlate_reject_tests.rs"]
mod reject_tests;
