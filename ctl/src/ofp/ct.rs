//! `ct(...)` and `ct_clear` (`ovs-actions(7)`, "Connection Tracking
//! Actions"): parsing and printing.
//!
//! `ct([commit][,zone=N|zone=SUBFIELD][,table=T][,nat[(...)]]
//! [,exec(ACTIONS)])`, where `nat(src=ADDR[-ADDR][:PORT[-PORT]])` or
//! `nat(dst=...)` gives a range (IPv6 addresses in brackets, as OVS writes
//! them: `[fd00::1]-[fd00::9]:80`). `exec` may only write `ct_mark` and
//! `ct_label`, with `set_field`, `load` or `move`, and needs `commit`, as in
//! OVS. What OVS has and we do not (`force`, `alg=`, the `random`, `hash` and
//! `persistent` NAT flags) is refused by name so that nothing is silently
//! ignored.

use super::actions::{arrow, subfield, table, Cx};
use super::error::{expected, fail, Res};
use super::fields;
use super::lexer::{self, Item};
use super::print::{hex, value_text};
use super::PortNames;
use flowtable::action::{CtAction, CtZoneSrc};
use flowtable::conntrack::{NatRange, NatSpec};
use flowtable::field::Prereq;
use flowtable::{Action, Field};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Parses the arguments of `ct(...)`; `pos` is the offset of `ct`.
pub(crate) fn parse_ct(args: &[Item<'_>], pos: usize, cx: &Cx<'_>) -> Res<Action> {
    let mut c = CtAction {
        commit: false,
        zone: CtZoneSrc::Imm(0),
        table: None,
        nat: None,
        exec: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for a in args.iter().filter(|a| !a.text.is_empty()) {
        let cut = a.text.find(['=', '(']).unwrap_or(a.text.len());
        let key = &a.text[..cut];
        if seen.contains(&key) {
            return fail(a.pos, format!("ct: {key} is given twice"));
        }
        seen.push(key);
        let val = a.text.get(cut + 1..).unwrap_or("");
        let vpos = a.pos + cut + 1;
        let is_eq = a.text.as_bytes().get(cut) == Some(&b'=');
        match key {
            "commit" if cut == a.text.len() => c.commit = true,
            "zone" if is_eq => c.zone = zone(val, vpos, cx)?,
            "table" if is_eq => c.table = Some(table(val, vpos)?),
            "nat" if cut == a.text.len() => c.nat = Some(NatSpec::Existing),
            "nat" => c.nat = Some(nat(inner(a, cut)?)?),
            "exec" if !is_eq && cut < a.text.len() => {
                let (text, ipos) = inner(a, cut)?;
                c.exec = exec(&lexer::split_args(text, ipos), cx)?;
            }
            "alg" | "force" => return fail(a.pos, format!("ct {key} is not supported")),
            "commit" | "zone" | "table" | "exec" => {
                return fail(a.pos, format!("ct: malformed {key}"));
            }
            _ => {
                return expected(
                    a.pos,
                    "commit, force, zone=, table=, nat or exec(...)",
                    a.text,
                )
            }
        }
    }
    if !c.exec.is_empty() && !c.commit {
        return fail(pos, "ct: exec(...) needs commit");
    }
    if let (Some(_), Some(m)) = (c.nat, cx.m) {
        if !m.satisfies(Prereq::Ip) {
            return fail(pos, "ct with nat requires ip or ipv6 in the match");
        }
    }
    Ok(Action::Ct(Box::new(c)))
}

/// The text inside `name(...)` of item `a`, whose `(` is at `cut`.
fn inner<'a>(a: &Item<'a>, cut: usize) -> Res<(&'a str, usize)> {
    let ipos = a.pos + cut + 1;
    match a.text[cut + 1..].strip_suffix(')') {
        Some(t) if a.text.as_bytes()[cut] == b'(' => Ok((t, ipos)),
        _ => expected(a.pos, "name(...)", a.text),
    }
}

fn zone(text: &str, pos: usize, cx: &Cx<'_>) -> Res<CtZoneSrc> {
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        let z = super::value::uint(text, pos, 16, "a zone")?;
        return Ok(CtZoneSrc::Imm(z as u16));
    }
    let sf = subfield(text, pos, false, cx)?;
    if sf.n_bits != 16 {
        return fail(
            pos,
            format!("zone={text}: a zone subfield must be 16 bits wide"),
        );
    }
    Ok(CtZoneSrc::Field(sf))
}

/// `nat(src=RANGE)`, `nat(dst=RANGE)` or `nat()`.
fn nat((text, pos): (&str, usize)) -> Res<NatSpec> {
    let args = lexer::split_args(text, pos);
    let mut spec = None;
    for a in args.iter().filter(|a| !a.text.is_empty()) {
        match a.key_value() {
            ("src" | "dst", _) if spec.is_some() => {
                return fail(a.pos, "nat takes one of src= and dst=");
            }
            ("src", Some((v, vpos))) => spec = Some(NatSpec::Src(range(v, vpos)?)),
            ("dst", Some((v, vpos))) => spec = Some(NatSpec::Dst(range(v, vpos)?)),
            ("random" | "hash" | "persistent", None) => {
                return fail(a.pos, format!("nat flag {} is not supported", a.text));
            }
            _ => return expected(a.pos, "src=ADDRESS or dst=ADDRESS", a.text),
        }
    }
    Ok(spec.unwrap_or(NatSpec::Existing))
}

/// `ADDR[-ADDR][:PORT[-PORT]]`, IPv6 addresses in brackets.
fn range(text: &str, pos: usize) -> Res<NatRange> {
    let (addrs, ports, ppos) = if text.starts_with('[') {
        // [a]-[b]:p-q
        let end = text.rfind(']').unwrap_or(0);
        match text[end..].find(':') {
            Some(i) => (
                &text[..end + i],
                Some(&text[end + i + 1..]),
                pos + end + i + 1,
            ),
            None => (text, None, 0),
        }
    } else {
        match text.find(':') {
            Some(i) => (&text[..i], Some(&text[i + 1..]), pos + i + 1),
            None => (text, None, 0),
        }
    };
    let (a, b, bpos) = match addrs.find("-") {
        Some(i) => (&addrs[..i], Some(&addrs[i + 1..]), pos + i + 1),
        None => (addrs, None, 0),
    };
    let min = addr(a, pos)?;
    let max = match b {
        Some(b) => addr(b, bpos)?,
        None => min,
    };
    if min.is_ipv4() != max.is_ipv4() {
        return fail(bpos, "a NAT range cannot mix IPv4 and IPv6");
    }
    if ip_value(max) < ip_value(min) {
        return fail(pos, format!("NAT address range {addrs} runs backwards"));
    }
    let (lo, hi) = match ports {
        None => (0, 0),
        Some(p) => {
            let (l, h, hpos) = match p.find('-') {
                Some(i) => (&p[..i], &p[i + 1..], ppos + i + 1),
                None => (p, p, ppos),
            };
            let lo = super::value::uint(l, ppos, 16, "a port")? as u16;
            let hi = super::value::uint(h, hpos, 16, "a port")? as u16;
            if hi < lo || lo == 0 {
                return fail(ppos, format!("NAT port range {p} is empty or starts at 0"));
            }
            (lo, hi)
        }
    };
    Ok(NatRange::addr_ports(min, max, lo, hi))
}

fn addr(text: &str, pos: usize) -> Res<IpAddr> {
    if let Some(v6) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let v = super::value::ipv6(v6, pos + 1)?;
        return Ok(IpAddr::V6(Ipv6Addr::from(v)));
    }
    let v = super::value::ipv4(text, pos)?;
    Ok(IpAddr::V4(Ipv4Addr::from(v as u32)))
}

fn ip_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// The actions of `exec(...)`: writes into `ct_mark` and `ct_label` only.
fn exec(items: &[Item<'_>], cx: &Cx<'_>) -> Res<Vec<Action>> {
    let mut out = Vec::new();
    for it in items.iter().filter(|i| !i.text.is_empty()) {
        let Some(i) = it.text.find(':') else {
            return expected(
                it.pos,
                "set_field:, load: or move: into ct_mark or ct_label",
                it.text,
            );
        };
        let (name, rest, rpos) = (&it.text[..i], &it.text[i + 1..], it.pos + i + 1);
        let ct_field = |f: Field, at: usize| -> Res<()> {
            match f {
                Field::CtMark | Field::CtLabel => Ok(()),
                f => fail(
                    at,
                    format!("exec(...) may only write ct_mark and ct_label, not {f}"),
                ),
            }
        };
        let a = match name {
            "set_field" => {
                let (v, fname, fpos) = arrow(rest, rpos)?;
                let Some(s) = fields::lookup(fname) else {
                    return fields::unknown(fname, fpos);
                };
                ct_field(s.field, fpos)?;
                let val = fields::read(&s, fname, v, rpos, cx.ports)?;
                Action::SetField {
                    field: s.field,
                    value: val.value & val.mask,
                    mask: val.mask,
                }
            }
            "load" => {
                let (v, d, dpos) = arrow(rest, rpos)?;
                let dst = subfield(d, dpos, false, cx)?;
                ct_field(dst.field, dpos)?;
                let value = super::value::uint(v, rpos, u32::from(dst.n_bits), "load")?;
                Action::Load { dst, value }
            }
            "move" => {
                let (s, d, dpos) = arrow(rest, rpos)?;
                let src = subfield(s, rpos, false, cx)?;
                let dst = subfield(d, dpos, false, cx)?;
                ct_field(dst.field, dpos)?;
                if src.n_bits != dst.n_bits {
                    return fail(rpos, "move copies between subfields of different widths");
                }
                Action::Move { src, dst }
            }
            _ => {
                return expected(
                    it.pos,
                    "set_field:, load: or move: into ct_mark or ct_label",
                    it.text,
                )
            }
        };
        out.push(a);
    }
    Ok(out)
}

/// Prints a `ct` action the way [`parse_ct`] reads it back, in the order
/// `ovs-ofctl` prints: commit, table, zone, exec, nat.
pub(crate) fn ct_text(c: &CtAction, ports: &dyn PortNames) -> String {
    let mut parts: Vec<String> = Vec::new();
    if c.commit {
        parts.push("commit".into());
    }
    if let Some(t) = c.table {
        parts.push(format!("table={t}"));
    }
    match c.zone {
        CtZoneSrc::Imm(0) => {}
        CtZoneSrc::Imm(z) => parts.push(format!("zone={z}")),
        CtZoneSrc::Field(sf) => parts.push(format!("zone={}", super::actions::SubFieldText(&sf))),
    }
    if !c.exec.is_empty() {
        let inner: Vec<String> = c.exec.iter().map(|a| exec_text(a, ports)).collect();
        parts.push(format!("exec({})", inner.join(",")));
    }
    match c.nat {
        None => {}
        Some(NatSpec::Existing) => parts.push("nat".into()),
        Some(NatSpec::Src(r)) => parts.push(format!("nat(src={})", range_text(&r))),
        Some(NatSpec::Dst(r)) => parts.push(format!("nat(dst={})", range_text(&r))),
    }
    format!("ct({})", parts.join(","))
}

fn exec_text(a: &Action, ports: &dyn PortNames) -> String {
    match a {
        Action::SetField { field, value, mask } => {
            format!(
                "set_field:{}->{field}",
                value_text(*field, *value, *mask, ports)
            )
        }
        Action::Load { dst, value } => {
            format!(
                "load:{}->{}",
                hex(*value),
                super::actions::SubFieldText(dst)
            )
        }
        Action::Move { src, dst } => format!(
            "move:{}->{}",
            super::actions::SubFieldText(src),
            super::actions::SubFieldText(dst)
        ),
        _ => String::new(),
    }
}

/// `10.0.0.1-10.0.0.9:1024-2047`, IPv6 in brackets.
pub(crate) fn range_text(r: &NatRange) -> String {
    let a = |x: IpAddr| match x {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    };
    let mut s = a(r.addr_min);
    if r.addr_max != r.addr_min {
        s = format!("{s}-{}", a(r.addr_max));
    }
    if r.port_min != 0 || r.port_max != 0 {
        s = format!("{s}:{}", r.port_min);
        if r.port_max != r.port_min {
            s = format!("{s}-{}", r.port_max);
        }
    }
    s
}
