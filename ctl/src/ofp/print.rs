//! Printing matches, actions, flow specs, installed rules and groups in the
//! shapes `ovs-ofctl dump-flows` and `dump-groups` use.
//!
//! The printer is the parser's inverse: whatever it prints for a value the
//! parser produced parses back to that value (property-tested in
//! `ctl/tests/roundtrip.rs`). Where OVS has several spellings the printer picks the one OVS
//! prints (`tcp` rather than `ip,nw_proto=6`, `arp_spa` inside ARP matches,
//! `/24` for contiguous masks) and falls back to the most general parseable
//! one (`vlan_tci=0x1005/0x1fff`, `0x50/0xfff0`) when no short spelling says
//! exactly the same thing. Values the parser cannot produce (a partial mask
//! on `in_port`, say, from a megaflow) still print readably as `value/mask`.

use super::actions::{NxmSubFieldText, SubFieldText};
use super::fields::flag_names;
use super::value::{self, FRAG_NAMES};
use super::PortNames;
use flowtable::field::{dl_type, Format};
use flowtable::port::{reserved, PortNo};
use flowtable::rule::DEFAULT_PRIORITY;
use flowtable::{Action, Field, FlowSpec, GroupSpec, GroupType, Match, RejectHow, Rule};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;

/// `0x…` in lowercase, or `0` (OVS's `ds_put_hex`).
pub(crate) fn hex(v: u128) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// `value` or `value/mask` in hex.
fn hex_masked(v: u128, mask: u128, max: u128) -> String {
    if mask == max {
        hex(v)
    } else {
        format!("{}/{}", hex(v), hex(mask))
    }
}

/// A port as the parser reads it back: a reserved name, a name `ports` knows
/// (when it is a plain word that maps back to the same number), or a number.
pub(crate) fn port_text(p: PortNo, ports: &dyn PortNames) -> String {
    if let Some((name, _)) = reserved::NAMES.iter().find(|(_, n)| *n == p) {
        return (*name).to_string();
    }
    match ports.port_name(p) {
        Some(name)
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && value::reserved_port(&name).is_none()
                && ports.port_no(&name) == Some(p) =>
        {
            name
        }
        _ => p.to_string(),
    }
}

fn mac(v: u128) -> String {
    let b = (v as u64).to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// A flag field: `est|trk` when every flag is matched, `+trk-new` when only
/// named flags are, numbers otherwise.
fn flags(f: Field, v: u128, mask: u128) -> String {
    let names = flag_names(f);
    let named = names.iter().fold(0, |acc, (_, b)| acc | b);
    if mask == f.max() && v & !named == 0 {
        let set: Vec<&str> = names
            .iter()
            .filter(|(_, b)| v & b != 0)
            .map(|(n, _)| *n)
            .collect();
        return if set.is_empty() {
            "0".to_string()
        } else {
            set.join("|")
        };
    }
    if mask & !named == 0 {
        let signed = names.iter().filter(|(_, b)| mask & b != 0);
        return signed
            .map(|(n, b)| format!("{}{n}", if v & b != 0 { '+' } else { '-' }))
            .collect();
    }
    hex_masked(v, mask, f.max())
}

/// A field's value (and mask) in its own format.
pub(crate) fn value_text(f: Field, v: u128, mask: u128, ports: &dyn PortNames) -> String {
    let max = f.max();
    let exact = mask == max;
    match f.format() {
        Format::Decimal if exact && f == Field::InPort => port_text(v as PortNo, ports),
        Format::Decimal if exact => v.to_string(),
        Format::Decimal | Format::Hex => hex_masked(v, mask, max),
        Format::Mac if exact => mac(v),
        Format::Mac => format!("{}/{}", mac(v), mac(mask)),
        Format::Ipv4 | Format::Ipv6 => {
            let bits = u32::from(f.bits());
            let addr = |x: u128| match f.format() {
                Format::Ipv4 => Ipv4Addr::from(x as u32).to_string(),
                _ => Ipv6Addr::from(x).to_string(),
            };
            match value::prefix_len(mask, bits) {
                Some(len) if len == bits => addr(v),
                Some(len) => format!("{}/{len}", addr(v)),
                None => format!("{}/{}", addr(v), addr(mask)),
            }
        }
        Format::CtState | Format::TcpFlags => flags(f, v, mask),
        Format::Frag => match FRAG_NAMES
            .iter()
            .find(|(_, fv, fm)| (*fv, *fm) == (v, mask))
        {
            Some((name, _, _)) => (*name).to_string(),
            None => hex_masked(v, mask, max),
        },
    }
}

/// The protocol shorthand a match starts with, and whether it stands for
/// `nw_proto` as well as `dl_type`.
fn shorthand(m: &Match) -> Option<(&'static str, bool)> {
    let proto = |names: &[(u128, &'static str)], base: &'static str| {
        let (p, pm) = m.get(Field::NwProto);
        match names.iter().find(|(n, _)| pm == 0xff && *n == p) {
            Some((_, name)) => (*name, true),
            None => (base, false),
        }
    };
    let (t, tm) = m.get(Field::DlType);
    if tm != 0xffff {
        return None;
    }
    match t as u16 {
        dl_type::IPV4 => Some(proto(
            &[
                (1, "icmp"),
                (2, "igmp"),
                (6, "tcp"),
                (17, "udp"),
                (132, "sctp"),
            ],
            "ip",
        )),
        dl_type::IPV6 => Some(proto(
            &[(58, "icmp6"), (6, "tcp6"), (17, "udp6"), (132, "sctp6")],
            "ipv6",
        )),
        dl_type::ARP => Some(("arp", false)),
        _ => None,
    }
}

/// `vlan_tci` the way OVS's `format_vlan_tci` prints it: `dl_vlan` and
/// `dl_vlan_pcp` when they say exactly the same, else `vlan_tci`.
fn vlan(v: u128, mask: u128, out: &mut Vec<String>) {
    let (vid_mask, pcp_mask) = (mask & 0x0fff, mask & 0xe000);
    if mask & v & 0x1000 != 0
        && matches!(vid_mask, 0 | 0x0fff)
        && matches!(pcp_mask, 0 | 0xe000)
        && vid_mask | pcp_mask != 0
    {
        if vid_mask != 0 {
            out.push(format!("dl_vlan={}", v & 0x0fff));
        }
        if pcp_mask != 0 {
            out.push(format!("dl_vlan_pcp={}", v >> 13));
        }
    } else if mask == 0xffff {
        out.push(format!("vlan_tci={v:#06x}"));
    } else {
        out.push(format!("vlan_tci={v:#06x}/{mask:#06x}"));
    }
}

/// The items of a match, in `ovs-ofctl` order.
fn match_items(m: &Match, ports: &dyn PortNames) -> Vec<String> {
    let mut out = Vec::new();
    // OVS's match_format prints conj_id before the protocol shorthand.
    if let Some(id) = m.conj_id {
        out.push(format!("conj_id={id}"));
    }
    let short = shorthand(m);
    if let Some((name, _)) = short {
        out.push(name.to_string());
    }
    let (dl, _) = m.get(Field::DlType);
    let (proto, _) = m.get(Field::NwProto);
    let arp = short == Some(("arp", false));
    let v6 = short.is_some() && dl == u128::from(dl_type::IPV6);
    let icmp = matches!(short, Some(("icmp" | "icmp6", true)));
    for f in Field::all() {
        let (v, mask) = m.get(f);
        let name = match f {
            _ if mask == 0 => continue,
            Field::DlType if short.is_some() => continue,
            Field::NwProto if matches!(short, Some((_, true))) => continue,
            Field::VlanTci => {
                vlan(v, mask, &mut out);
                continue;
            }
            Field::NwTos if matches!(mask, 0xfc | 0x03 | 0xff) => {
                if mask & 0xfc != 0 {
                    out.push(format!("nw_tos={}", v & 0xfc));
                }
                if mask & 0x03 != 0 {
                    out.push(format!("nw_ecn={}", v & 0x03));
                }
                continue;
            }
            Field::NwSrc if arp => "arp_spa",
            Field::NwDst if arp => "arp_tpa",
            Field::NwProto if arp => "arp_op",
            Field::TpSrc | Field::TpDst if icmp && mask == f.max() && v <= 0xff => {
                match (f, proto) {
                    (Field::TpSrc, 1) => "icmp_type",
                    (Field::TpDst, 1) => "icmp_code",
                    (Field::TpSrc, _) => "icmpv6_type",
                    _ => "icmpv6_code",
                }
            }
            Field::ArpSha if v6 => "nd_sll",
            Field::ArpTha if v6 => "nd_tll",
            f => f.name(),
        };
        out.push(format!("{name}={}", value_text(f, v, mask, ports)));
    }
    out
}

/// Prints a match as `ovs-ofctl dump-flows` does (`ip,in_port=1,nw_dst=10.244.1.0/24`);
/// the match-all is the empty string.
pub fn format_match(m: &Match, ports: &dyn PortNames) -> String {
    match_items(m, ports).join(",")
}

/// One action in the parser's syntax.
fn action_text(a: &Action, ports: &dyn PortNames) -> String {
    let port = |p: PortNo| port_text(p, ports);
    match a {
        Action::Output(p) if reserved::NAMES.iter().any(|(_, n)| n == p) => port(*p),
        Action::Output(p) => format!("output:{}", port(*p)),
        Action::OutputField(sf) => format!("output:{}", NxmSubFieldText(sf)),
        Action::WriteMetadata { value, mask } if *mask == u64::MAX => {
            format!("write_metadata:{}", hex((*value).into()))
        }
        Action::WriteMetadata { value, mask } => format!(
            "write_metadata:{}/{}",
            hex((*value).into()),
            hex((*mask).into())
        ),
        Action::InPort => "IN_PORT".into(),
        Action::Normal => "NORMAL".into(),
        Action::Flood => "FLOOD".into(),
        Action::All => "ALL".into(),
        Action::Drop => "drop".into(),
        Action::Resubmit {
            in_port: Some(p),
            table: None,
        } => format!("resubmit:{}", port(*p)),
        Action::Resubmit { in_port, table } => format!(
            "resubmit({},{})",
            in_port.map(port).unwrap_or_default(),
            table.map(|t| t.to_string()).unwrap_or_default()
        ),
        Action::GotoTable(t) => format!("goto_table:{t}"),
        Action::SetField { field, value, mask } => set_field_text(*field, *value, *mask, ports),
        Action::Load { dst, value } => format!("load:{}->{}", hex(*value), SubFieldText(dst)),
        Action::Move { src, dst } => format!("move:{}->{}", SubFieldText(src), SubFieldText(dst)),
        Action::DecTtl => "dec_ttl".into(),
        Action::PushVlan(t) => format!("push_vlan:{t:#x}"),
        Action::PopVlan => "pop_vlan".into(),
        Action::ModVlanVid(v) => format!("mod_vlan_vid:{v}"),
        Action::ModVlanPcp(p) => format!("mod_vlan_pcp:{p}"),
        Action::Group(g) => format!("group:{g}"),
        Action::Ct(c) => super::ct::ct_text(c, ports),
        Action::CtClear => "ct_clear".into(),
        Action::Learn(l) => super::learn::learn_text(l, ports),
        Action::Reject(how) => match how {
            RejectHow::Auto => "reject".into(),
            RejectHow::TcpRst => "reject(tcp_rst)".into(),
            RejectHow::Icmp => "reject(icmp)".into(),
            RejectHow::PortUnreachable => "reject(port_unreachable)".into(),
        },
        Action::Log(name) => format!("log(name={name})"),
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => format!("conjunction({id},{clause}/{n_clauses})"),
    }
}

/// `set_field`, using the `mod_*` spelling OVS prints where one exists.
fn set_field_text(f: Field, v: u128, mask: u128, ports: &dyn PortNames) -> String {
    if f == Field::VlanTci && mask == 0x1fff {
        // OpenFlow 1.3's vlan_vid, present bit included, in decimal as OVS
        // prints it: set_field:4196->vlan_vid is VLAN 100.
        return format!("set_field:{v}->vlan_vid");
    }
    let short = match f {
        _ if mask != f.max() && f != Field::NwTos => None,
        Field::DlSrc => Some("mod_dl_src"),
        Field::DlDst => Some("mod_dl_dst"),
        Field::NwSrc => Some("mod_nw_src"),
        Field::NwDst => Some("mod_nw_dst"),
        Field::NwTtl => Some("mod_nw_ttl"),
        Field::TpSrc => Some("mod_tp_src"),
        Field::TpDst => Some("mod_tp_dst"),
        Field::NwTos if mask == 0xfc => Some("mod_nw_tos"),
        Field::NwTos if mask == 0x03 => Some("mod_nw_ecn"),
        _ => None,
    };
    match short {
        Some(name) if f == Field::NwTos => format!("{name}:{v}"),
        Some(name) => format!("{name}:{}", value_text(f, v, mask, ports)),
        None => format!("set_field:{}->{f}", value_text(f, v, mask, ports)),
    }
}

/// Prints an action list (`dec_ttl,output:2`); the empty list is `drop`.
pub fn format_actions(a: &[Action], ports: &dyn PortNames) -> String {
    if a.is_empty() {
        return "drop".to_string();
    }
    let mut items: Vec<String> = a.iter().map(|a| action_text(a, ports)).collect();
    // A list of only `log`s drops; saying so reads better and parses back.
    if a.iter().all(|a| matches!(a, Action::Log(_))) {
        items.push("drop".into());
    }
    items.join(",")
}

/// `cookie=V[/MASK]`, with `/-1` for an all-ones mask.
fn cookie_text(cookie: u64, mask: u64) -> String {
    match mask {
        0 => format!("cookie={cookie:#x}"),
        u64::MAX => format!("cookie={cookie:#x}/-1"),
        m => format!("cookie={cookie:#x}/{m:#x}"),
    }
}

/// Prints a flow spec as a line [`super::parse_flow`] reads back to the same
/// value: `table=10,priority=100,ip,nw_dst=10.244.1.0/24,actions=dec_ttl,output:2`.
/// Keys at their defaults are left out.
pub fn format_flow_spec(s: &FlowSpec, ports: &dyn PortNames) -> String {
    let mut parts = Vec::new();
    if s.table != 0 {
        parts.push(format!("table={}", s.table));
    }
    if s.priority != DEFAULT_PRIORITY {
        parts.push(format!("priority={}", s.priority));
    }
    if s.cookie != 0 || s.cookie_mask != 0 {
        parts.push(cookie_text(s.cookie, s.cookie_mask));
    }
    if s.idle_timeout != 0 {
        parts.push(format!("idle_timeout={}", s.idle_timeout));
    }
    if s.hard_timeout != 0 {
        parts.push(format!("hard_timeout={}", s.hard_timeout));
    }
    if let Some(p) = s.out_port {
        parts.push(format!("out_port={}", port_text(p, ports)));
    }
    parts.extend(match_items(&s.m, ports));
    parts.push(format!("actions={}", format_actions(&s.actions, ports)));
    parts.join(",")
}

/// A duration in milliseconds as OVS prints it: `5s`, `1.234s`.
fn duration(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        frac => format!("{}.{frac:03}s", ms / 1000),
    }
}

/// Prints an installed rule as one line of `ovs-ofctl dump-flows`.
pub fn format_rule(r: &Rule, now_ms: u64, ports: &dyn PortNames) -> String {
    let mut s = format!(
        " cookie={:#x}, duration={}, table={}, n_packets={}, n_bytes={}, ",
        r.cookie,
        duration(now_ms.saturating_sub(r.created_ms)),
        r.table,
        r.stats.packets.load(Ordering::Relaxed),
        r.stats.bytes.load(Ordering::Relaxed),
    );
    if r.idle_timeout != 0 {
        s += &format!("idle_timeout={}, ", r.idle_timeout);
    }
    if r.hard_timeout != 0 {
        s += &format!("hard_timeout={}, ", r.hard_timeout);
    }
    let idle_age = now_ms.saturating_sub(r.stats.used_ms.load(Ordering::Relaxed)) / 1000;
    s += &format!("idle_age={idle_age}, ");
    let mut items = Vec::new();
    if r.priority != DEFAULT_PRIORITY {
        items.push(format!("priority={}", r.priority));
    }
    items.extend(match_items(&r.m, ports));
    if !items.is_empty() {
        s += &items.join(",");
        s.push(' ');
    }
    s + "actions=" + &format_actions(&r.actions, ports)
}

/// Prints a group as one line of `ovs-ofctl dump-groups`:
/// ` group_id=1,type=select,bucket=bucket_id:0,weight:100,actions=output:1`.
pub fn format_group(g: &GroupSpec, ports: &dyn PortNames) -> String {
    let kind = match g.kind {
        GroupType::All => "all",
        GroupType::Select => "select",
        GroupType::Indirect => "indirect",
    };
    let mut s = format!(" group_id={},type={kind}", g.id);
    if let Some(f) = &g.hash_fields {
        s += ",";
        s += &super::group_hash::format_fields(f, ports);
    }
    for b in &g.buckets {
        // OpenFlow 1.5's bucket_id, which OVS prints first (and which
        // Antrea, speaking OpenFlow 1.5, sees in every dump).
        s += &format!(",bucket=bucket_id:{},", b.bucket_id);
        if g.kind == GroupType::Select || b.weight != 0 {
            s += &format!("weight:{},", b.weight);
        }
        if let Some(p) = b.watch_port {
            s += &format!("watch_port:{},", port_text(p, ports));
        }
        s += "actions=";
        s += &format_actions(&b.actions, ports);
    }
    s
}
