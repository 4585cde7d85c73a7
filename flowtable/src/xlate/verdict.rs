//! Translation of `reject` and `log`, and the end of the walk that settles
//! the megaflow's verdict: what each `log` reports and which actions a
//! megaflow that outputs nowhere keeps.
//!
//! It is kept apart from the table walk in `xlate.rs` because these steps
//! are about the verdict rather than about where the packet goes; their
//! tests are in `xlate_reject_tests.rs`.

use super::Ctx;
use crate::action::{DpAction, RejectHow, RejectReply, Verdict};
use crate::drop::DropReason;

/// Gives every `log` the megaflow's verdict: reject if it rejects, allow
/// if it outputs anywhere, drop otherwise. A `reject` that has no answer
/// for the protocol still counts as one.
pub(super) fn set_log_verdicts(out: &mut [DpAction], rejected: bool) {
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
/// the rewritten packet, and before a committing `ct`.
pub(super) fn retain_without_output(out: &mut Vec<DpAction>) {
    match out.iter().rposition(|a| matches!(a, DpAction::Reject(_))) {
        Some(r) => out.truncate(r + 1),
        None => {
            // A committing `ct` makes a connection even when the packet is
            // then dropped (OVN commits connections it blocks, to mark
            // them): it stays, with the rewrites written out before it,
            // since conntrack reads the packet as rewritten.
            let commit = out
                .iter()
                .rposition(|a| matches!(a, DpAction::Ct(s) if s.commit));
            let mut i = 0;
            out.retain(|a| {
                let keep =
                    commit.is_some_and(|c| i <= c) || a.is_output() || a.acts_without_output();
                i += 1;
                keep
            });
        }
    }
}

impl Ctx<'_> {
    /// `reject`: chooses the answer from the protocol (which joins the
    /// mask) and ends the pipeline. The answer is built from the packet as
    /// the actions so far have rewritten it, so pending rewrites are
    /// committed first, as for an output.
    pub(super) fn reject(&mut self, how: RejectHow) {
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
    pub(super) fn log(&mut self, name: &str) {
        let id = self.br.log_names.id(name).unwrap_or(u16::MAX);
        self.out.push(DpAction::Log {
            name: id,
            verdict: Verdict::Allow,
        });
    }
}
