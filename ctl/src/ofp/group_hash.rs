//! `selection_method=hash,fields(...)` on select groups (ovs-ofctl(8),
//! "Group Syntax"): the fields, each with an optional mask
//! (`fields(ip_src=255.255.255.0,tcp_dst)`), that the bucket hash covers.
//!
//! A spelling that implies a protocol (`tcp_dst`) is hashed only for packets
//! of that protocol, as in OVS; spellings that imply ARP or ICMP have no
//! such representation in [`HashField`] and are refused rather than
//! widened.

use super::error::{expected, fail, Res};
use super::fields::{self, Kind, Need};
use super::lexer::{self, Item};
use super::print::value_text;
use super::{value, PortNames};
use flowtable::group::HashField;
use flowtable::Field;

/// Reads `fields(F[=MASK],...)` or `fields=F[=MASK]`.
pub(crate) fn parse_fields(item: &Item<'_>, ports: &dyn PortNames) -> Res<Vec<HashField>> {
    let args = if let Some(rest) = item.text.strip_prefix("fields(") {
        let Some(inner) = rest.strip_suffix(')') else {
            return expected(item.pos, "fields(FIELD,...)", item.text);
        };
        lexer::split_args(inner, item.pos + "fields(".len())
    } else if let Some(one) = item.text.strip_prefix("fields=") {
        vec![Item {
            text: one,
            pos: item.pos + "fields=".len(),
        }]
    } else {
        return expected(item.pos, "fields(FIELD,...)", item.text);
    };
    let mut out = Vec::with_capacity(args.len());
    for a in &args {
        let (name, mask) = a.key_value();
        let Some(s) = fields::lookup(name).filter(|s| s.kind == Kind::Plain) else {
            return fail(a.pos, format!("{name:?} is not a field that can be hashed"));
        };
        let proto = match s.need {
            Need::Field => None,
            Need::Tcp => Some(6),
            Need::Udp => Some(17),
            Need::Sctp => Some(132),
            _ => return fail(a.pos, format!("{name} cannot be hashed by a select group")),
        };
        let mask = match mask {
            None => value::ones(s.bits),
            Some((text, pos)) => {
                let v = fields::read(&s, name, text, pos, ports)?;
                if v.slash.is_some() || v.value == 0 {
                    return expected(pos, &format!("a non-zero mask for {name}"), text);
                }
                v.value
            }
        };
        out.push(HashField {
            field: s.field,
            mask,
            proto,
        });
    }
    if out.is_empty() {
        return expected(item.pos, "at least one field in fields(...)", item.text);
    }
    Ok(out)
}

/// Prints `selection_method=hash,fields(...)` the way [`parse_fields`]
/// reads it back.
pub(crate) fn format_fields(fields: &[HashField], ports: &dyn PortNames) -> String {
    let names: Vec<String> = fields
        .iter()
        .map(|h| {
            let name = match (h.field, h.proto) {
                (Field::TpSrc, Some(6)) => "tcp_src",
                (Field::TpDst, Some(6)) => "tcp_dst",
                (Field::TpSrc, Some(17)) => "udp_src",
                (Field::TpDst, Some(17)) => "udp_dst",
                (Field::TpSrc, Some(132)) => "sctp_src",
                (Field::TpDst, Some(132)) => "sctp_dst",
                (f, _) => f.name(),
            };
            let full = match h.proto {
                Some(_) => 0xffff,
                None => h.field.max(),
            };
            if h.mask == full {
                name.to_string()
            } else {
                let max = h.field.max();
                format!("{name}={}", value_text(h.field, h.mask, max, ports))
            }
        })
        .collect();
    format!("selection_method=hash,fields({})", names.join(","))
}
