//! Action lists (`ovs-actions(7)`): `output:2`, `resubmit(,10)`,
//! `load:0x1->NXM_NX_REG0[0..3]`, `set_field:...->...`, the `mod_*` family and
//! the rest of what [`flowtable::Action`] can hold.
//!
//! Each item is `name`, `name:arg` or `name(args)`; a bare port number or
//! name means `output`. Output to a reserved port that has an action of its
//! own (`IN_PORT`, `NORMAL`, `FLOOD`, `ALL`) becomes that action, so that
//! `output:NORMAL` and `normal` parse to the same value and the printer has a
//! single spelling for each. Writes are checked against the rule's match the
//! way OVS checks them (`set_field:80->tp_dst` needs TCP, UDP or SCTP matched),
//! because a rewrite of a header the packet may not have is a rule bug.
//!
//! Actions OVS has but `flowtable` does not (`controller`, `bundle`, ...)
//! are refused as unsupported instead of as unknown, to tell the user the
//! spelling was right.

use super::conj;
use super::error::{expected, fail, Res};
use super::fields::{self, Kind, Need};
use super::lexer::{self, Item};
use super::refused;
use super::{value, PortNames};
use flowtable::bridge::LogNames;
use flowtable::flow_match::PrereqError;
use flowtable::port::{reserved, PortNo};
use flowtable::rule::N_TABLES;
use flowtable::{Action, Field, Match, RejectHow, SubField};

/// What an action list is checked against.
pub(crate) struct Cx<'a> {
    /// The rule's table (for `goto_table`); `None` inside a group bucket.
    pub table: Option<u8>,
    /// The rule's match (for write prerequisites); `None` inside a bucket.
    pub m: Option<&'a Match>,
    /// Port names.
    pub ports: &'a dyn PortNames,
}

/// Parses an action list. `drop` (or nothing) is the empty list.
pub(crate) fn parse(items: &[Item<'_>], cx: &Cx<'_>) -> Res<Vec<Action>> {
    let mut out = Vec::with_capacity(items.len());
    let mut drop_at = None;
    let mut metadata_at = None;
    for (i, item) in items.iter().enumerate() {
        let a = action(item, cx)?;
        // write_metadata is an OpenFlow 1.1 instruction, which OVS runs
        // after the action list and before goto_table and insists on
        // seeing written in that order.
        if metadata_at.is_some() && !matches!(a, Some(Action::GotoTable(_))) {
            return fail(
                item.pos,
                "only goto_table may follow write_metadata (an instruction, run after the actions)",
            );
        }
        match a {
            None => drop_at = Some(item.pos),
            Some(a @ Action::WriteMetadata { .. }) => {
                metadata_at = Some(item.pos);
                out.push(a);
            }
            Some(Action::GotoTable(_)) if i + 1 < items.len() => {
                return fail(item.pos, "goto_table must be the last action");
            }
            Some(Action::Reject(_)) if i + 1 < items.len() => {
                return fail(item.pos, "reject must be the last action");
            }
            Some(a) => out.push(a),
        }
    }
    // `log(name=N),drop` logs and drops: `log` is the one action `drop`
    // may stand beside.
    if let Some(pos) = drop_at {
        if out.iter().any(|a| !matches!(a, Action::Log(_))) {
            return fail(pos, "drop must be the only action");
        }
    }
    conj::check_list(items, &out)?;
    Ok(out)
}

/// The action for output to `p`, canonical for reserved ports.
fn output(p: PortNo, pos: usize) -> Res<Action> {
    Ok(match p {
        reserved::IN_PORT => Action::InPort,
        reserved::NORMAL => Action::Normal,
        reserved::FLOOD => Action::Flood,
        reserved::ALL => Action::All,
        reserved::CONTROLLER | reserved::TABLE | reserved::NONE => {
            return fail(pos, "output to CONTROLLER, TABLE or NONE is not supported");
        }
        p => Action::Output(p),
    })
}

/// Parses one action; `None` is `drop`.
fn action(item: &Item<'_>, cx: &Cx<'_>) -> Res<Option<Action>> {
    let text = item.text;
    let cut = text.find([':', '(']).unwrap_or(text.len());
    let name = text[..cut].to_ascii_lowercase();
    let (arg, apos) = (text.get(cut + 1..).unwrap_or(""), item.pos + cut + 1);
    // Refused actions are named before their arguments are read, which may
    // follow a grammar of their own (`check_pkt_larger(1500)->reg0[0]`).
    if let Some(why) = refused::action_message(&name) {
        return fail(item.pos, why);
    }
    let args = match text.as_bytes().get(cut) {
        Some(b'(') => {
            let Some(inner) = arg.strip_suffix(')') else {
                let close = arg.rfind(')').map_or(apos, |i| apos + i + 1);
                return expected(close, "nothing after ')'", &text[close - item.pos..]);
            };
            Some(lexer::split_args(inner, apos))
        }
        _ => None,
    };
    let colon = |what: &str| -> Res<(&str, usize)> {
        match text.as_bytes().get(cut) {
            Some(b':') => Ok((arg, apos)),
            _ => expected(item.pos, &format!("{name}:{what}"), text),
        }
    };
    let bare = |a: Action| -> Res<Option<Action>> {
        if cut < text.len() {
            return fail(apos - 1, format!("{name} takes no argument"));
        }
        Ok(Some(a))
    };
    let ports = cx.ports;
    let a = match name.as_str() {
        "drop" => return bare(Action::Drop).map(|_| None),
        "in_port" => return bare(Action::InPort),
        "normal" => return bare(Action::Normal),
        "flood" => return bare(Action::Flood),
        "all" => return bare(Action::All),
        "local" => return bare(Action::Output(reserved::LOCAL)),
        "dec_ttl" => return bare(Action::DecTtl),
        "pop_vlan" | "strip_vlan" => return bare(Action::PopVlan),
        "output" => match args {
            Some(args) => output_args(&args, ports)?,
            None => {
                let (p, pos) = colon("PORT")?;
                output_to(p, pos, cx)?
            }
        },
        "resubmit" => match args {
            Some(args) => resubmit_args(&args, item.pos, ports)?,
            None => {
                let (p, pos) = colon("PORT")?;
                Action::Resubmit {
                    in_port: Some(value::port(p, pos, ports)?),
                    table: None,
                }
            }
        },
        "write_metadata" => {
            let (v, pos) = colon("VALUE[/MASK]")?;
            if cx.table.is_none() {
                return fail(item.pos, "write_metadata is not allowed in a group bucket");
            }
            let max = u128::from(u64::MAX);
            let (value, mask, _) = value::numeric_masked(v, pos, max, max, "write_metadata")?;
            Action::WriteMetadata {
                value: (value & mask) as u64,
                mask: mask as u64,
            }
        }
        "goto_table" => {
            let (t, pos) = colon("TABLE")?;
            let t = table(t, pos)?;
            match cx.table {
                None => return fail(item.pos, "goto_table is not allowed in a group bucket"),
                Some(cur) if t <= cur => {
                    return fail(
                        pos,
                        format!(
                            "goto_table:{t} must go to a later table than this rule's table {cur}"
                        ),
                    );
                }
                Some(_) => Action::GotoTable(t),
            }
        }
        "set_field" => {
            let (a, pos) = colon("VALUE->FIELD")?;
            set_field(a, pos, cx)?
        }
        "load" => {
            let (a, pos) = colon("VALUE->DST")?;
            let (v, dst, dpos) = arrow(a, pos)?;
            let dst = subfield(dst, dpos, true, cx)?;
            let what = format!("{}", SubFieldText(&dst));
            let value = value::uint(v, pos, u32::from(dst.n_bits), &what)?;
            Action::Load { dst, value }
        }
        "move" => {
            let (a, pos) = colon("SRC->DST")?;
            let (s, d, dpos) = arrow(a, pos)?;
            let src = subfield(s, pos, false, cx)?;
            let dst = subfield(d, dpos, true, cx)?;
            if src.n_bits != dst.n_bits {
                return fail(
                    pos,
                    format!(
                        "move copies {} bits into {} bits; the widths must be equal",
                        src.n_bits, dst.n_bits
                    ),
                );
            }
            Action::Move { src, dst }
        }
        "mod_dl_src" | "mod_dl_dst" | "mod_nw_src" | "mod_nw_dst" | "mod_nw_tos" | "mod_nw_ecn"
        | "mod_nw_ttl" | "mod_tp_src" | "mod_tp_dst" => {
            let (a, pos) = colon("VALUE")?;
            let a = modify(&name, a, pos)?;
            if let Action::SetField { field, .. } = a {
                check_write(field, Need::Field, &name, item.pos, cx)?;
            }
            a
        }
        "set_tunnel" | "set_tunnel64" => {
            let (v, pos) = colon("TUNNEL_ID")?;
            let id = value::uint(v, pos, 64, &name)?;
            Action::SetField {
                field: Field::TunId,
                value: id,
                mask: Field::TunId.max(),
            }
        }
        "push_vlan" => {
            let (t, pos) = colon("ETHERTYPE")?;
            match value::uint(t, pos, 16, "push_vlan")? {
                t @ (0x8100 | 0x88a8) => Action::PushVlan(t as u16),
                _ => return fail(pos, "push_vlan takes ethertype 0x8100 or 0x88a8"),
            }
        }
        "mod_vlan_vid" => {
            let (v, pos) = colon("VID")?;
            Action::ModVlanVid(value::uint(v, pos, 12, "mod_vlan_vid")? as u16)
        }
        "mod_vlan_pcp" => {
            let (v, pos) = colon("PCP")?;
            Action::ModVlanPcp(value::uint(v, pos, 3, "mod_vlan_pcp")? as u8)
        }
        "ct_clear" => return bare(Action::CtClear),
        "learn" => match args {
            Some(args) => super::learn::parse_learn(&args, cx)?,
            None => return expected(item.pos, "learn(...)", text),
        },
        "ct" => match args {
            Some(args) => super::ct::parse_ct(&args, item.pos, cx)?,
            None if cut == text.len() => super::ct::parse_ct(&[], item.pos, cx)?,
            None => return expected(item.pos, "ct(...)", text),
        },
        "group" => {
            let (g, pos) = colon("GROUP_ID")?;
            Action::Group(value::uint(g, pos, 32, "group")? as u32)
        }
        "reject" => match args {
            Some(args) => reject_args(&args, apos)?,
            None => return bare(Action::Reject(RejectHow::Auto)),
        },
        "log" => match (args, cx.table) {
            (_, None) => return fail(item.pos, "log is not allowed in a group bucket"),
            (Some(args), Some(_)) => log_args(&args, apos)?,
            (None, Some(_)) => return expected(item.pos, "log(name=NAME)", text),
        },
        "conjunction" if cx.table.is_none() => {
            return fail(item.pos, "conjunction is not allowed in a group bucket")
        }
        "conjunction" => conj::parse_conjunction(args.as_deref(), item.pos)?,
        _ if cut == text.len() => return bare_port(text, item.pos, ports).map(Some),
        _ => return fail(item.pos, format!("unknown action {:?}", &text[..cut])),
    };
    Ok(Some(a))
}

/// A bare word that is not an action name: a port to output to.
fn bare_port(text: &str, pos: usize, ports: &dyn PortNames) -> Res<Action> {
    let p = if text.starts_with(|c: char| c.is_ascii_digit()) {
        value::uint(text, pos, 32, "a port number")? as PortNo
    } else if let Some(p) = value::reserved_port(text).or_else(|| ports.port_no(text)) {
        p
    } else {
        return fail(pos, format!("unknown action {text:?}"));
    };
    output(p, pos)
}

/// `output:PORT` or `output:FIELD[...]`. As in OVS, a port (a number, a
/// reserved name or a name the bridge knows) wins; anything else is read as
/// a field or subfield holding the port number (`output:NXM_NX_REG1[]`,
/// `output:reg1`, `output:NXM_NX_REG1[0..15]`).
fn output_to(text: &str, pos: usize, cx: &Cx<'_>) -> Res<Action> {
    let named_port = text.starts_with(|c: char| c.is_ascii_digit())
        || value::reserved_port(text).is_some()
        || cx.ports.port_no(text).is_some();
    let field_name = &text[..text.find('[').unwrap_or(text.len())];
    if named_port || !text.contains('[') && fields::lookup(field_name).is_none() {
        if let Some(why) = refused::field_message(field_name) {
            return fail(pos, why);
        }
        return output(value::port(text, pos, cx.ports)?, pos);
    }
    let src = subfield(text, pos, false, cx)?;
    if src.n_bits > 32 {
        return fail(
            pos,
            format!(
                "output:{text} reads {} bits; a port number has at most 32",
                src.n_bits
            ),
        );
    }
    Ok(Action::OutputField(src))
}

/// `output(port=P)`.
fn output_args(args: &[Item<'_>], ports: &dyn PortNames) -> Res<Action> {
    let mut port = None;
    for a in args {
        match a.key_value() {
            ("port", Some((p, pos))) => port = Some((value::port(p, pos, ports)?, pos)),
            ("max_len", _) => return fail(a.pos, "output max_len is not supported"),
            _ => return expected(a.pos, "port=PORT", a.text),
        }
    }
    match port {
        Some((p, pos)) => output(p, pos),
        None => expected(args[0].pos, "output(port=PORT)", ""),
    }
}

/// `reject(tcp_rst|icmp|port_unreachable)`: an oxvs extension, so its
/// spelling is ours; the words name what the sender gets back.
fn reject_args(args: &[Item<'_>], pos: usize) -> Res<Action> {
    let how = match args {
        [a] => match a.text.to_ascii_lowercase().as_str() {
            "tcp_rst" => RejectHow::TcpRst,
            "icmp" => RejectHow::Icmp,
            "port_unreachable" => RejectHow::PortUnreachable,
            _ => return expected(a.pos, "tcp_rst, icmp or port_unreachable", a.text),
        },
        [_, b, ..] => return fail(b.pos, "reject takes one argument"),
        [] => return expected(pos, "tcp_rst, icmp or port_unreachable", ""),
    };
    Ok(Action::Reject(how))
}

/// `log(name=NAME)`, NAME of 1 to 48 characters `A-Z a-z 0-9 _ . / : -`.
fn log_args(args: &[Item<'_>], pos: usize) -> Res<Action> {
    match args {
        [a] => match a.key_value() {
            ("name", Some((n, npos))) => {
                if !LogNames::valid(n) {
                    return expected(npos, "a name of 1 to 48 of A-Z a-z 0-9 _ . / : -", n);
                }
                Ok(Action::Log(n.to_string()))
            }
            _ => expected(a.pos, "name=NAME", a.text),
        },
        [_, b, ..] => fail(b.pos, "log takes only name=NAME"),
        [] => expected(pos, "name=NAME", ""),
    }
}

/// `resubmit([PORT],[TABLE])`.
fn resubmit_args(args: &[Item<'_>], pos: usize, ports: &dyn PortNames) -> Res<Action> {
    if args.len() > 2 {
        return fail(args[2].pos, "resubmit takes at most a port and a table");
    }
    let in_port = match args[0].text {
        "" => None,
        p => match value::port(p, args[0].pos, ports)? {
            reserved::IN_PORT => None,
            p => Some(p),
        },
    };
    let table = match args.get(1) {
        None => None,
        Some(t) if t.text.is_empty() => None,
        Some(t) => Some(table(t.text, t.pos)?),
    };
    if in_port.is_none() && table.is_none() {
        return fail(pos, "resubmit needs a port or a table");
    }
    Ok(Action::Resubmit { in_port, table })
}

/// Reads a table number.
pub(super) fn table(text: &str, pos: usize) -> Res<u8> {
    let t = value::uint(text, pos, 8, "a table number")?;
    if t >= N_TABLES as u128 {
        return fail(
            pos,
            format!(
                "table {t} does not exist (tables are 0 to {})",
                N_TABLES - 1
            ),
        );
    }
    Ok(t as u8)
}

/// Splits `A->B`, returning B's offset.
pub(super) fn arrow(text: &str, pos: usize) -> Res<(&str, &str, usize)> {
    match text.find("->") {
        Some(i) => Ok((&text[..i], &text[i + 2..], pos + i + 2)),
        None => expected(pos, "SOURCE->DESTINATION", text),
    }
}

/// Refuses writes to read-only fields and writes the match does not allow.
fn check_write(f: Field, need: Need, name: &str, pos: usize, cx: &Cx<'_>) -> Res<()> {
    if !fields::writable(f) {
        return fail(pos, format!("{f} cannot be written by an action"));
    }
    check_read(f, need, name, pos, cx)
}

/// Refuses uses of a field whose prerequisites the rule's match does not pin.
/// `name` is the field as the user spelled it, for spellings that imply a
/// protocol (`tcp_dst`).
fn check_read(f: Field, need: Need, name: &str, pos: usize, cx: &Cx<'_>) -> Res<()> {
    let Some(m) = cx.m else { return Ok(()) };
    if need != Need::Field {
        if !fields::satisfied(m, need) {
            return fail(
                pos,
                format!("{name} requires {} in the match", fields::need_text(need)),
            );
        }
        return Ok(());
    }
    if !fields::prereq_ok(m, f) {
        return fail(
            pos,
            PrereqError {
                field: f,
                needs: f.prereq(),
            }
            .to_string(),
        );
    }
    Ok(())
}

/// `set_field:VALUE[/MASK]->FIELD`.
fn set_field(text: &str, pos: usize, cx: &Cx<'_>) -> Res<Action> {
    let (v, name, npos) = arrow(text, pos)?;
    let Some(s) = fields::lookup(name) else {
        return fields::unknown(name, npos);
    };
    if matches!(s.kind, Kind::VlanVid | Kind::VlanPcp) {
        return fail(
            npos,
            format!("set_field cannot write {name}; use mod_vlan_vid or mod_vlan_pcp"),
        );
    }
    let val = fields::read(&s, name, v, pos, cx.ports)?;
    check_write(s.field, s.need, name, npos, cx)?;
    Ok(Action::SetField {
        field: s.field,
        value: val.value & val.mask,
        mask: val.mask,
    })
}

/// The `mod_*` shorthands for `set_field`.
fn modify(name: &str, text: &str, pos: usize) -> Res<Action> {
    let set = |field: Field, value: u128, mask: u128| Action::SetField { field, value, mask };
    let exact = |field: Field, value: u128| set(field, value, field.max());
    Ok(match name {
        "mod_dl_src" => exact(Field::DlSrc, value::mac(text, pos)?),
        "mod_dl_dst" => exact(Field::DlDst, value::mac(text, pos)?),
        "mod_nw_src" => exact(Field::NwSrc, value::ipv4(text, pos)?),
        "mod_nw_dst" => exact(Field::NwDst, value::ipv4(text, pos)?),
        "mod_nw_ttl" => exact(Field::NwTtl, value::uint(text, pos, 8, name)?),
        "mod_tp_src" => exact(Field::TpSrc, value::uint(text, pos, 16, name)?),
        "mod_tp_dst" => exact(Field::TpDst, value::uint(text, pos, 16, name)?),
        "mod_nw_ecn" => set(Field::NwTos, value::uint(text, pos, 2, name)?, 0x03),
        _ => {
            let tos = value::uint(text, pos, 8, name)?;
            if tos & 3 != 0 {
                return fail(
                    pos,
                    format!("mod_nw_tos:{text} sets the ECN bits; it must be a multiple of 4"),
                );
            }
            set(Field::NwTos, tos, 0xfc)
        }
    })
}

/// Reads `FIELD[]`, `FIELD[N]`, `FIELD[A..B]` or a bare `FIELD` (the whole
/// field), checking the field may be written (`dst`) or read.
pub(super) fn subfield(text: &str, pos: usize, dst: bool, cx: &Cx<'_>) -> Res<SubField> {
    let (name, range) = match text.find('[') {
        Some(i) => match text[i + 1..].strip_suffix(']') {
            Some(r) => (&text[..i], Some((r, pos + i + 1))),
            None => return expected(pos + i, "[], [BIT] or [START..END]", &text[i..]),
        },
        None => (text, None),
    };
    let s = fields::lookup(name).filter(|s| matches!(s.kind, Kind::Plain | Kind::OxmVid));
    let s = match (s, Field::from_name(name)) {
        (Some(s), _) => s,
        (None, Some(f)) => fields::Spelling {
            field: f,
            bits: u32::from(f.bits()),
            maskable: true,
            kind: Kind::Plain,
            need: Need::Field,
        },
        (None, None) => return fields::unknown(name, pos),
    };
    // A field named directly is addressed over its whole storage (as
    // flowtable's subfield check does); an alias like icmp_type over its own
    // narrower width.
    let width = match Field::from_name(name) {
        Some(f) => u32::from(f.bits()),
        None => s.bits,
    };
    let (ofs, end) = match range {
        None | Some(("", _)) => (0, width - 1),
        Some((r, rpos)) => {
            let (a, b) = r.split_once("..").unwrap_or((r, r));
            let bit = |t: &str, at: usize| -> Res<u32> {
                match t.parse::<u32>() {
                    Ok(n) if n < width && t.chars().all(|c| c.is_ascii_digit()) => Ok(n),
                    _ => expected(at, &format!("a bit number below {width} for {name}"), t),
                }
            };
            let start = bit(a, rpos)?;
            let end = bit(b, rpos + r.len() - b.len())?;
            if end < start {
                return fail(rpos, format!("bit range {r} runs backwards"));
            }
            (start, end)
        }
    };
    if dst {
        check_write(s.field, s.need, name, pos, cx)?;
    } else {
        check_read(s.field, s.need, name, pos, cx)?;
    }
    Ok(SubField {
        field: s.field,
        ofs: ofs as u8,
        n_bits: (end - ofs + 1) as u8,
    })
}

/// Prints a subfield the way the parser reads it back: `reg0[]`, `reg0[5]`,
/// `reg0[8..15]`.
pub(crate) struct SubFieldText<'a>(pub &'a SubField);

impl std::fmt::Display for SubFieldText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        if s.ofs == 0 && s.n_bits == s.field.bits() {
            write!(f, "{}[]", s.field)
        } else if s.n_bits == 1 {
            write!(f, "{}[{}]", s.field, s.ofs)
        } else {
            write!(
                f,
                "{}[{}..{}]",
                s.field,
                s.ofs,
                u32::from(s.ofs) + u32::from(s.n_bits) - 1
            )
        }
    }
}

/// Prints a subfield as OVS prints one (`mf_format_subfield`): by its NXM or
/// OXM name, `NXM_NX_REG1[]`, `NXM_NX_REG1[0..15]`. The parser reads it back
/// to the same subfield.
pub(crate) struct NxmSubFieldText<'a>(pub &'a SubField);

impl std::fmt::Display for NxmSubFieldText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        let text = SubFieldText(s).to_string();
        let range = &text[s.field.name().len()..];
        write!(f, "{}{range}", s.field.nxm_name())
    }
}
