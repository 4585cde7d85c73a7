//! Validation of rules and groups against a bridge: table numbers, ports,
//! groups, subfield bounds, prerequisites of the fields actions write, and
//! what `ct`, `learn` and `conjunction` may hold.
//!
//! It is kept apart from the bridge's state and batch logic in `bridge.rs`
//! because it only reads the bridge: [`Bridge::apply`] calls it for every
//! change of a batch, against the bridge as the earlier changes would leave
//! it, before applying any.

use super::{Bridge, RuleError};
use crate::action::{Action, GroupType, SubField};
use crate::field::Field;
use crate::flow_match::Match;
use crate::port::{is_reserved, reserved};
use crate::rule::{FlowSpec, GroupSpec, N_TABLES};

impl Bridge {
    /// Checks a rule against this bridge without adding it.
    pub fn validate(
        &self,
        s: &FlowSpec,
        groups: &std::collections::BTreeSet<u32>,
    ) -> Result<(), RuleError> {
        if s.table as usize >= N_TABLES {
            return Err(RuleError::BadTable(s.table));
        }
        s.m.check_prereqs().map_err(RuleError::Prereq)?;
        self.validate_actions(s, groups)
    }

    pub(super) fn validate_actions(
        &self,
        s: &FlowSpec,
        groups: &std::collections::BTreeSet<u32>,
    ) -> Result<(), RuleError> {
        let n = s.actions.len();
        let conj = |a: &Action| matches!(a, Action::Conjunction { .. });
        if s.actions.iter().any(conj) {
            // ovs-ofctl(8): a rule with conjunction actions holds nothing but
            // conjunction (and note) actions.
            let ok = s.actions.iter().all(|a| match *a {
                Action::Conjunction {
                    clause, n_clauses, ..
                } => crate::conjunction::valid_clause(clause, n_clauses),
                _ => false,
            });
            return if ok {
                Ok(())
            } else {
                Err(RuleError::BadConjunction)
            };
        }
        for (i, a) in s.actions.iter().enumerate() {
            match a {
                Action::Drop if n > 1 => return Err(RuleError::DropNotAlone),
                Action::GotoTable(t) if i + 1 != n => {
                    let _ = t;
                    return Err(RuleError::GotoNotLast);
                }
                _ => {}
            }
        }
        self.validate_action_list(&s.actions, s.table, &s.m, groups)
    }

    fn validate_action_list(
        &self,
        actions: &[Action],
        table: u8,
        m: &Match,
        groups: &std::collections::BTreeSet<u32>,
    ) -> Result<(), RuleError> {
        for a in actions {
            match *a {
                Action::Output(p) => {
                    let ok = self.ports.known(p)
                        || (is_reserved(p) && p != reserved::LOCAL && p != reserved::TABLE);
                    if !ok {
                        return Err(RuleError::UnknownPort(p));
                    }
                }
                Action::Resubmit {
                    in_port: Some(p), ..
                } if !self.ports.known(p) && !is_reserved(p) => {
                    return Err(RuleError::UnknownPort(p));
                }
                Action::Resubmit { table: Some(t), .. } if t as usize >= N_TABLES => {
                    return Err(RuleError::BadTable(t));
                }
                Action::GotoTable(t) => {
                    if t as usize >= N_TABLES {
                        return Err(RuleError::BadTable(t));
                    }
                    if t <= table {
                        return Err(RuleError::GotoBackwards { from: table, to: t });
                    }
                }
                Action::Group(g) if !groups.contains(&g) => return Err(RuleError::UnknownGroup(g)),
                // A rule's conjunctions are checked as a list before this;
                // anywhere else (a group bucket) they mean nothing.
                Action::Conjunction { .. } => return Err(RuleError::BadConjunction),
                Action::SetField { field, .. } if !m.satisfies(field.prereq()) => {
                    return Err(RuleError::ActionPrereq { field });
                }
                Action::Load { dst, .. } => {
                    check_subfield(&dst)?;
                    if !m.satisfies(dst.field.prereq()) {
                        return Err(RuleError::ActionPrereq { field: dst.field });
                    }
                }
                Action::Move { src, dst } => {
                    check_subfield(&src)?;
                    check_subfield(&dst)?;
                    if src.n_bits != dst.n_bits {
                        return Err(RuleError::MoveWidth);
                    }
                    if !m.satisfies(dst.field.prereq()) {
                        return Err(RuleError::ActionPrereq { field: dst.field });
                    }
                }
                Action::Ct(ref c) => validate_ct(c)?,
                Action::Learn(ref l) => validate_learn(l)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks a group against this bridge.
    pub fn validate_group(
        &self,
        g: &GroupSpec,
        groups: &std::collections::BTreeSet<u32>,
    ) -> Result<(), RuleError> {
        let bad = match g.kind {
            GroupType::Select => g.buckets.iter().all(|b| b.weight == 0),
            GroupType::Indirect => g.buckets.len() != 1,
            GroupType::All => false,
        };
        if bad {
            return Err(RuleError::BadBuckets(g.id));
        }
        for b in &g.buckets {
            if let Some(p) = b.watch_port {
                if !self.ports.known(p) {
                    return Err(RuleError::UnknownPort(p));
                }
            }
            // A bucket sees whatever packet reaches the group, so its
            // set_field actions are checked against the empty match only when
            // their field has no prerequisite; the rest are guarded at run
            // time by translation.
            self.validate_action_list(&b.actions, 0, &Match::any(), groups)
                .or_else(|e| {
                    if matches!(e, RuleError::ActionPrereq { .. }) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
        }
        Ok(())
    }
}

fn check_subfield(sf: &crate::action::SubField) -> Result<(), RuleError> {
    let end = sf.ofs as u16 + sf.n_bits as u16;
    if sf.n_bits == 0 || end > sf.field.bits() as u16 {
        return Err(RuleError::BadSubField {
            field: sf.field,
            ofs: sf.ofs,
            end,
        });
    }
    Ok(())
}

/// A `learn` spec whose subfields exist and whose copies have equal
/// widths; the learned rule itself is checked like any other when it is
/// added.
fn validate_learn(l: &crate::action::LearnSpec) -> Result<(), RuleError> {
    use crate::action::{LearnAction, LearnSrc};
    if l.table as usize >= N_TABLES {
        return Err(RuleError::BadTable(l.table));
    }
    let pair = |dst: &SubField, src: &LearnSrc| -> Result<(), RuleError> {
        check_subfield(dst)?;
        match src {
            LearnSrc::Field(s) => {
                check_subfield(s)?;
                if s.n_bits != dst.n_bits {
                    return Err(RuleError::MoveWidth);
                }
            }
            LearnSrc::Imm(v) => {
                if dst.n_bits < 128 && *v >> dst.n_bits != 0 {
                    return Err(RuleError::BadLearn("a value wider than its field"));
                }
            }
        }
        Ok(())
    };
    for m in &l.matches {
        pair(&m.dst, &m.src)?;
    }
    for a in &l.actions {
        match a {
            LearnAction::Load { dst, src } => pair(dst, src)?,
            LearnAction::Output(src) => check_subfield(src)?,
        }
    }
    Ok(())
}

/// What OVS refuses in a `ct` action: a recirculation table that does not
/// exist, `exec` without `commit` or writing anything but `ct_mark` and
/// `ct_label`, and a zone read from bits that are not there.
fn validate_ct(c: &crate::action::CtAction) -> Result<(), RuleError> {
    if let Some(t) = c.table {
        if t as usize >= N_TABLES {
            return Err(RuleError::BadTable(t));
        }
    }
    if let crate::action::CtZoneSrc::Field(sf) = c.zone {
        check_subfield(&sf)?;
        if sf.n_bits != 16 {
            return Err(RuleError::BadCt(
                "a zone read from a field must be 16 bits wide",
            ));
        }
    }
    if !c.exec.is_empty() && !c.commit {
        return Err(RuleError::BadCt("exec(...) needs commit"));
    }
    for a in &c.exec {
        let ok = match a {
            Action::SetField { field, .. } => matches!(field, Field::CtMark | Field::CtLabel),
            Action::Load { dst, .. } => {
                check_subfield(dst)?;
                matches!(dst.field, Field::CtMark | Field::CtLabel)
            }
            Action::Move { src, dst } => {
                check_subfield(src)?;
                check_subfield(dst)?;
                matches!(dst.field, Field::CtMark | Field::CtLabel) && src.n_bits == dst.n_bits
            }
            _ => false,
        };
        if !ok {
            return Err(RuleError::BadCt(
                "exec(...) may only write ct_mark and ct_label",
            ));
        }
    }
    Ok(())
}
