//! The names the parser accepts for match fields and how each one's value is
//! read into a (value, mask) pair of a [`Field`].
//!
//! Most names are [`Field`] names or their NXM/OXM aliases, looked up with
//! [`Field::from_name`]. The rest are `ovs-fields(7)` spellings that share
//! storage with another field: `tcp_dst` is `tp_dst` seen through TCP,
//! `dl_vlan` is 12 bits of `vlan_tci` plus its present bit, `ip_dscp` is the
//! top six bits of `nw_tos`. Those are the [`Spelling`] rows here, each with
//! the extra prerequisite its name implies (`tcp_dst` needs TCP, which is
//! narrower than `tp_dst`'s "any L4 protocol").
//!
//! Whether a field takes a mask, how many of its stored bits are meaningful,
//! and whether actions may write it are OpenFlow/OVS facts that the catalogue
//! in `flowtable` does not record yet, so they live here too.

use super::error::{fail, Res};
use super::{value, PortNames};
use flowtable::field::{ct_state, dl_type, Format, TCP_FLAG_NAMES};
use flowtable::{Field, Match};

/// How a spelling's value maps onto its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Read in the field's own [`Format`], at most `Spelling::bits` bits.
    Plain,
    /// `dl_vlan`: a VID, or 0xffff for "no tag".
    VlanVid,
    /// `dl_vlan_pcp`: a priority, implying a tag.
    VlanPcp,
    /// `vlan_vid` (OpenFlow 1.3's OXM field): 13 bits, the VID and the
    /// present bit 0x1000 (`vlan_vid=0x1064` is VLAN 100, `vlan_vid=0` no
    /// tag), maskable; stored as the same bits of `vlan_tci`.
    OxmVid,
    /// `nw_tos`: the TOS byte with its two ECN bits zero.
    Tos,
    /// `ip_dscp`: the DSCP, six bits, stored shifted into `nw_tos`.
    Dscp,
    /// `nw_ecn`: the two low bits of `nw_tos`.
    Ecn,
}

/// The protocol a spelling itself implies, beyond its field's prerequisite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing beyond the field's own prerequisite.
    Field,
    /// `dl_type=0x0806`.
    Arp,
    /// IP with `nw_proto=6`.
    Tcp,
    /// IP with `nw_proto=17`.
    Udp,
    /// IP with `nw_proto=132`.
    Sctp,
    /// IPv4 with `nw_proto=1`.
    Icmp,
    /// IPv6 with `nw_proto=58`.
    Icmp6,
}

/// One accepted name for a match field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spelling {
    /// The field it is stored in.
    pub field: Field,
    /// Meaningful value bits.
    pub bits: u32,
    /// Whether `/MASK` is accepted.
    pub maskable: bool,
    /// How the value is read.
    pub kind: Kind,
    /// The protocol the name implies.
    pub need: Need,
}

const fn alias(field: Field, bits: u32, maskable: bool, need: Need) -> Spelling {
    Spelling {
        field,
        bits,
        maskable,
        kind: Kind::Plain,
        need,
    }
}

const fn special(field: Field, bits: u32, kind: Kind) -> Spelling {
    Spelling {
        field,
        bits,
        maskable: false,
        kind,
        need: Need::Field,
    }
}

/// `vlan_vid`'s spelling: 13 bits of `vlan_tci`, maskable.
const fn oxm_vid() -> Spelling {
    Spelling {
        field: Field::VlanTci,
        bits: 13,
        maskable: true,
        kind: Kind::OxmVid,
        need: Need::Field,
    }
}

/// The `ovs-fields(7)` names that are not [`Field`] names.
static SPELLINGS: &[(&str, Spelling)] = &[
    ("arp_spa", alias(Field::NwSrc, 32, true, Need::Arp)),
    ("arp_tpa", alias(Field::NwDst, 32, true, Need::Arp)),
    ("arp_op", alias(Field::NwProto, 8, false, Need::Arp)),
    ("NXM_OF_ARP_SPA", alias(Field::NwSrc, 32, true, Need::Arp)),
    ("NXM_OF_ARP_TPA", alias(Field::NwDst, 32, true, Need::Arp)),
    ("NXM_OF_ARP_OP", alias(Field::NwProto, 8, false, Need::Arp)),
    ("OXM_OF_ARP_SPA", alias(Field::NwSrc, 32, true, Need::Arp)),
    ("OXM_OF_ARP_TPA", alias(Field::NwDst, 32, true, Need::Arp)),
    ("OXM_OF_ARP_OP", alias(Field::NwProto, 8, false, Need::Arp)),
    ("tcp_src", alias(Field::TpSrc, 16, true, Need::Tcp)),
    ("tcp_dst", alias(Field::TpDst, 16, true, Need::Tcp)),
    ("udp_src", alias(Field::TpSrc, 16, true, Need::Udp)),
    ("udp_dst", alias(Field::TpDst, 16, true, Need::Udp)),
    ("sctp_src", alias(Field::TpSrc, 16, true, Need::Sctp)),
    ("sctp_dst", alias(Field::TpDst, 16, true, Need::Sctp)),
    ("icmp_type", alias(Field::TpSrc, 8, false, Need::Icmp)),
    ("icmp_code", alias(Field::TpDst, 8, false, Need::Icmp)),
    ("icmpv6_type", alias(Field::TpSrc, 8, false, Need::Icmp6)),
    ("icmpv6_code", alias(Field::TpDst, 8, false, Need::Icmp6)),
    (
        "NXM_OF_ICMP_TYPE",
        alias(Field::TpSrc, 8, false, Need::Icmp),
    ),
    (
        "NXM_OF_ICMP_CODE",
        alias(Field::TpDst, 8, false, Need::Icmp),
    ),
    (
        "NXM_NX_ICMPV6_TYPE",
        alias(Field::TpSrc, 8, false, Need::Icmp6),
    ),
    (
        "NXM_NX_ICMPV6_CODE",
        alias(Field::TpDst, 8, false, Need::Icmp6),
    ),
    ("nd_sll", alias(Field::ArpSha, 48, true, Need::Icmp6)),
    ("nd_tll", alias(Field::ArpTha, 48, true, Need::Icmp6)),
    ("NXM_NX_ND_SLL", alias(Field::ArpSha, 48, true, Need::Icmp6)),
    ("NXM_NX_ND_TLL", alias(Field::ArpTha, 48, true, Need::Icmp6)),
    ("dl_vlan", special(Field::VlanTci, 16, Kind::VlanVid)),
    ("dl_vlan_pcp", special(Field::VlanTci, 3, Kind::VlanPcp)),
    ("vlan_vid", oxm_vid()),
    ("OXM_OF_VLAN_VID", oxm_vid()),
    ("vlan_pcp", special(Field::VlanTci, 3, Kind::VlanPcp)),
    ("OXM_OF_VLAN_PCP", special(Field::VlanTci, 3, Kind::VlanPcp)),
    ("OXM_OF_TCP_SRC", alias(Field::TpSrc, 16, true, Need::Tcp)),
    ("OXM_OF_TCP_DST", alias(Field::TpDst, 16, true, Need::Tcp)),
    ("OXM_OF_UDP_SRC", alias(Field::TpSrc, 16, true, Need::Udp)),
    ("OXM_OF_UDP_DST", alias(Field::TpDst, 16, true, Need::Udp)),
    ("OXM_OF_SCTP_SRC", alias(Field::TpSrc, 16, true, Need::Sctp)),
    ("OXM_OF_SCTP_DST", alias(Field::TpDst, 16, true, Need::Sctp)),
    (
        "OXM_OF_ICMPV4_TYPE",
        alias(Field::TpSrc, 8, false, Need::Icmp),
    ),
    (
        "OXM_OF_ICMPV4_CODE",
        alias(Field::TpDst, 8, false, Need::Icmp),
    ),
    (
        "OXM_OF_ICMPV6_TYPE",
        alias(Field::TpSrc, 8, false, Need::Icmp6),
    ),
    (
        "OXM_OF_ICMPV6_CODE",
        alias(Field::TpDst, 8, false, Need::Icmp6),
    ),
    ("nw_tos", special(Field::NwTos, 8, Kind::Tos)),
    ("ip_dscp", special(Field::NwTos, 6, Kind::Dscp)),
    ("nw_ecn", special(Field::NwTos, 2, Kind::Ecn)),
    ("ip_ecn", special(Field::NwTos, 2, Kind::Ecn)),
    ("NXM_OF_IP_TOS", special(Field::NwTos, 8, Kind::Tos)),
    ("NXM_NX_IP_ECN", special(Field::NwTos, 2, Kind::Ecn)),
];

/// Whether OVS lets a match mask this field (`ovs-fields(7)`, "Maskable").
pub(crate) fn maskable(f: Field) -> bool {
    use Field::*;
    !matches!(
        f,
        InPort | RecircId | CtZone | DlType | NwProto | NwTos | NwTtl
    )
}

/// How many of the field's stored bits can be non-zero in a packet: the flow
/// label is 20 bits and TCP flags 12 (`ovs-fields(7)`), though the key
/// stores them in wider slots.
pub(crate) fn value_bits(f: Field) -> u32 {
    match f {
        Field::Ipv6Label => 20,
        Field::TcpFlags => 12,
        Field::NwFrag => 2,
        f => u32::from(f.bits()),
    }
}

/// Whether actions may write the field. Connection-tracking state, the
/// recirculation id and the fields that describe the packet's shape
/// (`dl_type`, fragments, TCP flags) are read-only in OVS. `nw_proto` is
/// read-only for IP but its storage is also `arp_op`, which ARP responders
/// write (`load:0x2->NXM_OF_ARP_OP[]`), and a subfield printed without its
/// match cannot say which of the two it was, so it stays writable here.
pub(crate) fn writable(f: Field) -> bool {
    use Field::*;
    !matches!(
        f,
        RecircId | CtState | CtZone | CtMark | CtLabel | DlType | NwFrag | TcpFlags
    )
}

/// Fails for a field name that is not accepted: by name, with the reason,
/// when it is an `ovs-fields(7)` field oxvs refuses, else as unknown.
pub(crate) fn unknown<T>(name: &str, pos: usize) -> Res<T> {
    match super::refused::field_message(name) {
        Some(why) => fail(pos, why),
        None => fail(pos, format!("unknown field {name:?}")),
    }
}

/// Looks up a field name: an `ovs-fields(7)` spelling or a [`Field`] name.
pub(crate) fn lookup(name: &str) -> Option<Spelling> {
    if let Some((_, s)) = SPELLINGS.iter().find(|(n, _)| *n == name) {
        return Some(*s);
    }
    let f = Field::from_name(name)?;
    Some(Spelling {
        field: f,
        bits: value_bits(f),
        maskable: maskable(f),
        kind: Kind::Plain,
        need: Need::Field,
    })
}

/// A value read for a field, with the offset of its `/` if a mask was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Value {
    /// The value, right-aligned in the field.
    pub value: u128,
    /// The mask, right-aligned in the field.
    pub mask: u128,
    /// Offset of the `/` that introduced an explicit mask.
    pub slash: Option<usize>,
}

/// The `(name, bit)` pairs of a flag field, in bit order.
pub(crate) fn flag_names(f: Field) -> Vec<(&'static str, u128)> {
    match f {
        Field::CtState => ct_state::NAMES
            .iter()
            .map(|(n, b)| (*n, u128::from(*b)))
            .collect(),
        Field::TcpFlags => TCP_FLAG_NAMES
            .iter()
            .map(|(n, b)| (*n, u128::from(*b)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads the value of field spelling `s`, written as `name=text` with `text`
/// at offset `pos`.
pub(crate) fn read(
    s: &Spelling,
    name: &str,
    text: &str,
    pos: usize,
    ports: &dyn PortNames,
) -> Res<Value> {
    let f = s.field;
    let max = f.max();
    let small = |bits: u32| value::uint(text, pos, bits, name);
    let exact = |value: u128, mask: u128| {
        Ok(Value {
            value,
            mask,
            slash: None,
        })
    };
    let (value, mask, slash) = match s.kind {
        Kind::VlanVid => {
            let vid = value::uint(text, pos, 16, name)?;
            return match vid {
                0xffff => exact(0, 0xffff),
                0..=0xfff => exact(0x1000 | vid, 0x1fff),
                _ => fail(
                    pos,
                    format!("{name} must be a VLAN ID (0 to 4095) or 0xffff, not {text}"),
                ),
            };
        }
        Kind::VlanPcp => return exact(0x1000 | small(3)? << 13, 0xf000),
        Kind::OxmVid => {
            let (value, mask, slash) = value::numeric_masked(text, pos, 0x1fff, 0x1fff, name)?;
            return Ok(Value { value, mask, slash });
        }
        Kind::Tos => {
            let tos = small(8)?;
            if tos & 3 != 0 {
                return fail(
                    pos,
                    format!("{name}={text} sets the ECN bits; use nw_ecn for those"),
                );
            }
            return exact(tos, 0xfc);
        }
        Kind::Dscp => return exact(small(6)? << 2, 0xfc),
        Kind::Ecn => return exact(small(2)?, 0x03),
        Kind::Plain => {
            let (v, m) = value::split_mask(text, pos);
            match (f.format(), m) {
                (_, Some((_, at))) if !s.maskable => {
                    return fail(at - 1, format!("{name} cannot be masked"));
                }
                (Format::Decimal, None) if f == Field::InPort => {
                    (u128::from(value::port(text, pos, ports)?), max, None)
                }
                (Format::Decimal | Format::Hex, _) => {
                    value::numeric_masked(text, pos, max, max, name)?
                }
                (Format::Mac, _) => masked(v, pos, m, value::mac, value::mac)?,
                (Format::Ipv4, _) => masked(v, pos, m, value::ipv4, value::ipv4_mask)?,
                (Format::Ipv6, _) => masked(v, pos, m, value::ipv6, value::ipv6_mask)?,
                (Format::CtState | Format::TcpFlags, _) => {
                    value::flags(text, pos, &flag_names(f), max, name)?
                }
                (Format::Frag, _) => value::frag(text, pos, max)?,
            }
        }
    };
    if value > value::ones(s.bits) {
        return fail(
            pos,
            format!("value {text} does not fit in {name} ({} bits)", s.bits),
        );
    }
    Ok(Value {
        value,
        mask: mask & max,
        slash,
    })
}

/// Reads `value[/mask]` with separate readers for the two halves.
fn masked(
    v: &str,
    pos: usize,
    m: Option<(&str, usize)>,
    read_value: fn(&str, usize) -> Res<u128>,
    read_mask: fn(&str, usize) -> Res<u128>,
) -> Res<(u128, u128, Option<usize>)> {
    let value = read_value(v, pos)?;
    match m {
        None => Ok((value, u128::MAX, None)),
        Some((m, at)) => Ok((value, read_mask(m, at)?, Some(at - 1))),
    }
}

/// Whether `m` pins down the protocol `need` names.
pub(crate) fn satisfied(m: &Match, need: Need) -> bool {
    let dl = |t: u16| m.is_exact(Field::DlType, u128::from(t));
    let ip = dl(dl_type::IPV4) || dl(dl_type::IPV6);
    let proto = |p: u128| m.is_exact(Field::NwProto, p);
    match need {
        Need::Field => true,
        Need::Arp => dl(dl_type::ARP),
        Need::Tcp => ip && proto(6),
        Need::Udp => ip && proto(17),
        Need::Sctp => ip && proto(132),
        Need::Icmp => dl(dl_type::IPV4) && proto(1),
        Need::Icmp6 => dl(dl_type::IPV6) && proto(58),
    }
}

/// Whether `m` meets field `f`'s prerequisite. This is
/// [`Match::satisfies`] with one addition: `arp_sha`/`arp_tha` also serve as
/// ICMPv6 Neighbor Discovery's source/target link-layer addresses (`nd_sll`,
/// `nd_tll`, as in OVS's key layout), so an ICMPv6 match satisfies them too.
/// `flowtable` gives them an ARP-only prerequisite, which would make
/// `icmp6,nd_sll=...` impossible.
pub(crate) fn prereq_ok(m: &Match, f: Field) -> bool {
    m.satisfies(f.prereq())
        || (matches!(f, Field::ArpSha | Field::ArpTha) && satisfied(m, Need::Icmp6))
}

/// What to say when `need` is not met.
pub(crate) fn need_text(need: Need) -> &'static str {
    match need {
        Need::Field => "nothing",
        Need::Arp => "arp",
        Need::Tcp => "tcp or tcp6",
        Need::Udp => "udp or udp6",
        Need::Sctp => "sctp or sctp6",
        Need::Icmp => "icmp",
        Need::Icmp6 => "icmp6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(name: &str, text: &str) -> Res<(u128, u128)> {
        let s = lookup(name).unwrap();
        read(&s, name, text, 0, &()).map(|v| (v.value, v.mask))
    }

    #[test]
    fn composite_spellings() {
        assert_eq!(val("dl_vlan", "10"), Ok((0x100a, 0x1fff)));
        assert_eq!(val("dl_vlan", "0xffff"), Ok((0, 0xffff)));
        assert!(val("dl_vlan", "4096").is_err());
        assert_eq!(val("dl_vlan_pcp", "5"), Ok((0xb000, 0xf000)));
        assert_eq!(val("nw_tos", "4"), Ok((4, 0xfc)));
        assert!(val("nw_tos", "5").is_err());
        assert_eq!(val("ip_dscp", "46"), Ok((0xb8, 0xfc)));
        assert_eq!(val("nw_ecn", "3"), Ok((3, 3)));
        assert_eq!(val("icmp_type", "8"), Ok((8, 0xffff)));
        assert_eq!(
            val("icmp_type", "300").unwrap_err().message,
            "value 300 does not fit in icmp_type (8 bits)"
        );
    }

    #[test]
    fn plain_fields_by_format() {
        assert_eq!(val("tp_dst", "0x50/0xfff0"), Ok((0x50, 0xfff0)));
        assert_eq!(val("NXM_NX_REG0", "5"), Ok((5, 0xffff_ffff)));
        assert_eq!(val("in_port", "LOCAL"), Ok((0xfffe, 0xffff_ffff)));
        assert_eq!(
            val("in_port", "1/1").unwrap_err().message,
            "in_port cannot be masked"
        );
        assert_eq!(val("nw_src", "10.0.0.0/8"), Ok((0x0a00_0000, 0xff00_0000)));
        assert_eq!(val("ct_state", "+trk+est"), Ok((0x22, 0x22)));
        assert_eq!(val("tcp_flags", "+syn-ack"), Ok((2, 0x12)));
        assert_eq!(val("nw_frag", "later"), Ok((3, 3)));
        assert_eq!(
            val("ipv6_label", "0x100000").unwrap_err().message,
            "value 0x100000 does not fit in ipv6_label (20 bits)"
        );
    }
}
