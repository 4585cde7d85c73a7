//! Translation of `ct(...)` and `learn(...)`: the two actions whose effect
//! is carried out by someone else, the connection tracker in the datapath
//! and the caller that installs learned rules.
//!
//! They are kept apart from the table walk in `xlate.rs` because each turns
//! the packet's current values into a description handed out of the walk
//! (a [`CtSpec`], a [`FlowSpec`]) rather than acting on the walk itself.

use super::Ctx;
use crate::action::{Action, CtAction, CtSpec, CtZoneSrc, DpAction};
use crate::action::{LearnAction, LearnSpec, LearnSrc, FROZEN_WORDS};
use crate::conntrack::CtExec;
use crate::field::{Field, Prereq};
use crate::flow_match::Match;
use crate::port::PortNo;
use crate::rule::FlowSpec;
use std::sync::Arc;

impl Ctx<'_> {
    /// `ct(...)`: pending rewrites are written out first, since conntrack
    /// reads the packet's bytes. With `table=T` the datapath recirculates
    /// the packet after tracking it; it re-parses the packet (NAT may have
    /// changed it) and carries registers and metadata over from here, so
    /// their values join the megaflow mask.
    pub(super) fn ct(&mut self, c: &CtAction) {
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
    pub(super) fn learn(&mut self, l: &LearnSpec) {
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
}
