//! `learn(...)` (`ovs-actions(7)`, "The learn action"): parsing and
//! printing.
//!
//! Arguments are the learned rule's `table` (1 unless given, as in OVS),
//! `priority`, `idle_timeout`, `hard_timeout` and `cookie`, then its matches
//! and actions:
//!
//! * `FIELD[...]`: match that subfield against the packet's own value;
//! * `DST[...]=SRC[...]`: match DST against the packet's value of SRC;
//! * `FIELD=VALUE`: match a constant (`eth_type=0x800`, `nw_proto=6`);
//! * `load:SRC[...]->DST[...]` or `load:VALUE->DST[...]`: the learned
//!   rule loads the packet's (or a constant) value;
//! * `output:SRC[...]`: the learned rule outputs to the port in SRC.
//!
//! Timeouts are 32-bit seconds (OpenFlow's are 16-bit), so Kubernetes
//! session affinity can last its full 86400 s. What OVS's `learn` has and
//! we do not (`fin_*_timeout`, `send_flow_rem`, `delete_learned`, `limit`,
//! `result_dst`) is refused by name.

use super::actions::{arrow, subfield, table, Cx, SubFieldText};
use super::error::{expected, fail, Res};
use super::fields::{self, Kind};
use super::lexer::Item;
use super::print::{hex, value_text};
use super::{value, PortNames};
use flowtable::action::{LearnAction, LearnMatch, LearnSpec, LearnSrc};
use flowtable::rule::DEFAULT_PRIORITY;
use flowtable::{Action, Field, SubField};

/// OVS's default table for learned rules.
const DEFAULT_TABLE: u8 = 1;

/// Parses the arguments of `learn(...)`.
pub(crate) fn parse_learn(args: &[Item<'_>], cx: &Cx<'_>) -> Res<Action> {
    let mut l = LearnSpec {
        table: DEFAULT_TABLE,
        priority: DEFAULT_PRIORITY,
        idle_timeout: 0,
        hard_timeout: 0,
        cookie: 0,
        matches: Vec::new(),
        actions: Vec::new(),
    };
    // The learned rule's fields are not checked against this rule's match.
    let free = Cx {
        table: None,
        m: None,
        ports: cx.ports,
    };
    for a in args.iter().filter(|a| !a.text.is_empty()) {
        if let Some(rest) = a.text.strip_prefix("load:") {
            let rpos = a.pos + 5;
            let (s, d, dpos) = arrow(rest, rpos)?;
            let dst = subfield(d, dpos, true, &free)?;
            let src = source(s, rpos, &dst, cx)?;
            l.actions.push(LearnAction::Load { dst, src });
            continue;
        }
        if let Some(rest) = a.text.strip_prefix("output:") {
            let src = subfield(rest, a.pos + 7, false, cx)?;
            l.actions.push(LearnAction::Output(src));
            continue;
        }
        let (key, val) = a.key_value();
        match (key, val) {
            ("table", Some((v, p))) => l.table = table(v, p)?,
            ("priority", Some((v, p))) => l.priority = value::uint(v, p, 16, key)? as u16,
            ("idle_timeout", Some((v, p))) => l.idle_timeout = value::uint(v, p, 32, key)? as u32,
            ("hard_timeout", Some((v, p))) => l.hard_timeout = value::uint(v, p, 32, key)? as u32,
            ("cookie", Some((v, p))) => l.cookie = value::uint(v, p, 64, key)? as u64,
            (
                "fin_idle_timeout" | "fin_hard_timeout" | "send_flow_rem" | "delete_learned"
                | "limit" | "result_dst",
                _,
            ) => {
                return fail(
                    a.pos,
                    format!(
                        "learn {key} is not supported by oxvs: a learned rule has only \
                         idle_timeout and hard_timeout, and stays until they expire or it \
                         is deleted (by its cookie)"
                    ),
                )
            }
            (_, None) => {
                let sf = subfield(key, a.pos, false, cx)?;
                l.matches.push(LearnMatch {
                    dst: sf,
                    src: LearnSrc::Field(sf),
                });
            }
            (_, Some((v, vpos))) => l.matches.push(match_spec(key, a.pos, v, vpos, cx)?),
        }
    }
    Ok(Action::Learn(Box::new(l)))
}

/// `DST=SRC` or `FIELD=VALUE`.
fn match_spec(d: &str, dpos: usize, v: &str, vpos: usize, cx: &Cx<'_>) -> Res<LearnMatch> {
    let free = Cx {
        table: None,
        m: None,
        ports: cx.ports,
    };
    let dst = subfield(d, dpos, false, &free)?;
    if is_subfield(v) {
        let src = subfield(v, vpos, false, cx)?;
        if src.n_bits != dst.n_bits {
            return fail(
                vpos,
                format!("{v} has {} bits, {d} has {}", src.n_bits, dst.n_bits),
            );
        }
        return Ok(LearnMatch {
            dst,
            src: LearnSrc::Field(src),
        });
    }
    // A constant for a whole field is read in the field's own notation.
    let whole = dst.ofs == 0 && dst.n_bits == dst.field.bits() && !d.contains('[');
    let value = match fields::lookup(d).filter(|s| s.kind == Kind::Plain && whole) {
        Some(s) => fields::read(&s, d, v, vpos, cx.ports)?.value,
        None => value::uint(v, vpos, u32::from(dst.n_bits), d)?,
    };
    Ok(LearnMatch {
        dst,
        src: LearnSrc::Imm(value),
    })
}

/// The source of a `load`: a subfield or a constant of `dst`'s width.
fn source(text: &str, pos: usize, dst: &SubField, cx: &Cx<'_>) -> Res<LearnSrc> {
    if is_subfield(text) {
        let src = subfield(text, pos, false, cx)?;
        if src.n_bits != dst.n_bits {
            return fail(
                pos,
                format!("load copies {} bits into {} bits", src.n_bits, dst.n_bits),
            );
        }
        return Ok(LearnSrc::Field(src));
    }
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return expected(pos, "a value or a subfield", text);
    }
    let what = SubFieldText(dst).to_string();
    Ok(LearnSrc::Imm(value::uint(
        text,
        pos,
        u32::from(dst.n_bits),
        &what,
    )?))
}

/// Whether `text` names a field (`NXM_OF_IP_SRC[]`, `reg3`) rather than a
/// constant.
fn is_subfield(text: &str) -> bool {
    text.contains('[') || Field::from_name(text).is_some() || fields::lookup(text).is_some()
}

/// Prints `learn(...)` as [`parse_learn`] reads it back, in `ovs-ofctl`'s
/// order: table, timeouts, priority, cookie, matches, actions.
pub(crate) fn learn_text(l: &LearnSpec, ports: &dyn PortNames) -> String {
    let mut parts = vec![format!("table={}", l.table)];
    if l.idle_timeout != 0 {
        parts.push(format!("idle_timeout={}", l.idle_timeout));
    }
    if l.hard_timeout != 0 {
        parts.push(format!("hard_timeout={}", l.hard_timeout));
    }
    if l.priority != DEFAULT_PRIORITY {
        parts.push(format!("priority={}", l.priority));
    }
    if l.cookie != 0 {
        parts.push(format!("cookie={:#x}", l.cookie));
    }
    for m in &l.matches {
        let whole = m.dst.ofs == 0 && m.dst.n_bits == m.dst.field.bits();
        parts.push(match m.src {
            LearnSrc::Field(s) if s == m.dst => SubFieldText(&s).to_string(),
            LearnSrc::Field(s) => format!("{}={}", SubFieldText(&m.dst), SubFieldText(&s)),
            LearnSrc::Imm(v) if whole => format!(
                "{}={}",
                m.dst.field,
                value_text(m.dst.field, v, m.dst.field.max(), ports)
            ),
            LearnSrc::Imm(v) => format!("{}={}", SubFieldText(&m.dst), hex(v)),
        });
    }
    for a in &l.actions {
        parts.push(match a {
            LearnAction::Load {
                dst,
                src: LearnSrc::Field(s),
            } => format!("load:{}->{}", SubFieldText(s), SubFieldText(dst)),
            LearnAction::Load {
                dst,
                src: LearnSrc::Imm(v),
            } => format!("load:{}->{}", hex(*v), SubFieldText(dst)),
            LearnAction::Output(s) => format!("output:{}", SubFieldText(s)),
        });
    }
    format!("learn({})", parts.join(","))
}
