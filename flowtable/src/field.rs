//! The catalogue of matchable fields: where each lives in a [`FlowKey`]
//! (word, shift, width), its `ovs-ofctl` name and NXM/OXM aliases, how its
//! values are written, and which other fields it presupposes.
//!
//! This is the single place that knows the key layout. The parser and printer
//! in `ctl`, the rule validation in [`crate::bridge`] and the translation all
//! go through it, so adding a field is one row here plus its extraction.
//!
//! [`FlowKey`]: crate::key::FlowKey

use crate::key::{word, KEY_WORDS};

/// A matchable field. Names follow `ovs-fields(7)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // The variants are the ovs-fields(7) names, listed in NAMES.
pub enum Field {
    InPort,
    RecircId,
    TunId,
    TunSrc,
    TunDst,
    TunIpv6Src,
    TunIpv6Dst,
    TunMetadata0,
    TunMetadata1,
    Metadata,
    Reg0,
    Reg1,
    Reg2,
    Reg3,
    Reg4,
    Reg5,
    Reg6,
    Reg7,
    Reg8,
    Reg9,
    Reg10,
    Reg11,
    Reg12,
    Reg13,
    Reg14,
    Reg15,
    CtState,
    CtZone,
    CtMark,
    CtLabel,
    DlSrc,
    DlDst,
    DlType,
    VlanTci,
    NwSrc,
    NwDst,
    Ipv6Src,
    Ipv6Dst,
    NwProto,
    NwTos,
    NwTtl,
    NwFrag,
    TpSrc,
    TpDst,
    TcpFlags,
    Ipv6Label,
    ArpSha,
    ArpTha,
}

/// How a field's values are written in flow syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A number, printed in decimal (ports, protocols, TTL).
    Decimal,
    /// A number, printed in hex (registers, metadata, cookies, TCI).
    Hex,
    /// An Ethernet address `aa:bb:cc:dd:ee:ff`.
    Mac,
    /// An IPv4 address, masks as `/len` or `/a.b.c.d`.
    Ipv4,
    /// An IPv6 address, masks as `/len` or `/addr`.
    Ipv6,
    /// `ct_state` flags, `+trk-new`.
    CtState,
    /// `tcp_flags` flags, `+syn-ack`.
    TcpFlags,
    /// `nw_frag`: `no`, `yes`, `first`, `later`, `not_later`.
    Frag,
}

/// What a packet must be for a field to mean anything (OpenFlow's
/// prerequisites). A rule that matches or sets a field must also match its
/// prerequisites, as `ovs-ofctl` insists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prereq {
    /// Always meaningful.
    None,
    /// `dl_type=0x0800` or `0x86dd`.
    Ip,
    /// `dl_type=0x0800`.
    Ipv4,
    /// `dl_type=0x86dd`.
    Ipv6,
    /// `dl_type=0x0806`.
    Arp,
    /// `dl_type=0x0800` or `0x0806` (nw_src/nw_dst double as arp_spa/arp_tpa).
    Ipv4OrArp,
    /// IP or ARP (nw_proto doubles as arp_op).
    IpOrArp,
    /// IP with `nw_proto` of TCP, UDP, SCTP, ICMP or ICMPv6.
    L4,
    /// IP with `nw_proto=6`.
    Tcp,
    /// ARP, or ICMPv6 (arp_sha/arp_tha double as nd_sll/nd_tll).
    ArpOrNd,
}

/// dl_type values the prerequisites test.
pub mod dl_type {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// The `vlan_tci` bit that says a tag is present (OVS's CFI convention: a
/// packet without a tag has `vlan_tci=0`).
pub const VLAN_PRESENT: u16 = 0x1000;

/// `nw_frag` bits.
pub mod frag {
    /// The packet is a fragment.
    pub const ANY: u8 = 1;
    /// The packet is a fragment other than the first.
    pub const LATER: u8 = 2;
}

/// `ct_state` bits, as OVS numbers them.
pub mod ct_state {
    /// Start of a new connection.
    pub const NEW: u8 = 0x01;
    /// Part of an established connection.
    pub const EST: u8 = 0x02;
    /// Related to an established connection.
    pub const REL: u8 = 0x04;
    /// In the reply direction.
    pub const RPL: u8 = 0x08;
    /// Invalid.
    pub const INV: u8 = 0x10;
    /// Tracked (went through `ct()`).
    pub const TRK: u8 = 0x20;
    /// Source NAT applied.
    pub const SNAT: u8 = 0x40;
    /// Destination NAT applied.
    pub const DNAT: u8 = 0x80;
    /// Names in flag order, for parsing and printing.
    pub const NAMES: [(&str, u8); 8] = [
        ("new", NEW),
        ("est", EST),
        ("rel", REL),
        ("rpl", RPL),
        ("inv", INV),
        ("trk", TRK),
        ("snat", SNAT),
        ("dnat", DNAT),
    ];
}

/// `tcp_flags` names in flag order.
pub const TCP_FLAG_NAMES: [(&str, u16); 9] = [
    ("fin", 0x001),
    ("syn", 0x002),
    ("rst", 0x004),
    ("psh", 0x008),
    ("ack", 0x010),
    ("urg", 0x020),
    ("ece", 0x040),
    ("cwr", 0x080),
    ("ns", 0x100),
];

struct Info {
    name: &'static str,
    word: u8,
    shift: u8,
    bits: u8,
    format: Format,
    prereq: Prereq,
    /// Other names accepted on input (NXM/OXM and OpenFlow 1.2+ spellings).
    aliases: &'static [&'static str],
}

const fn info(
    name: &'static str,
    word: usize,
    shift: u8,
    bits: u8,
    format: Format,
    prereq: Prereq,
    aliases: &'static [&'static str],
) -> Info {
    Info {
        name,
        word: word as u8,
        shift,
        bits,
        format,
        prereq,
        aliases,
    }
}

use Format as F;
use Prereq as P;

const fn reg(name: &'static str, n: usize, aliases: &'static [&'static str]) -> Info {
    info(
        name,
        word::REG0 + n / 2,
        (n % 2) as u8 * 32,
        32,
        F::Hex,
        P::None,
        aliases,
    )
}

/// One row per [`Field`] variant, in declaration order.
#[rustfmt::skip]
static INFO: [Info; 48] = [
    info("in_port", word::PORT, 0, 32, F::Decimal, P::None, &["NXM_OF_IN_PORT", "OXM_OF_IN_PORT"]),
    info("recirc_id", word::PORT, 32, 32, F::Hex, P::None, &["NXM_NX_RECIRC_ID"]),
    info("tun_id", word::TUN_ID, 0, 64, F::Hex, P::None, &["tunnel_id", "NXM_NX_TUN_ID", "OXM_OF_TUNNEL_ID"]),
    info("tun_src", word::TUN_IP, 0, 32, F::Ipv4, P::None, &["NXM_NX_TUN_IPV4_SRC"]),
    info("tun_dst", word::TUN_IP, 32, 32, F::Ipv4, P::None, &["NXM_NX_TUN_IPV4_DST"]),
    info("tun_ipv6_src", word::TUN_IPV6_SRC, 0, 128, F::Ipv6, P::None, &["NXM_NX_TUN_IPV6_SRC"]),
    info("tun_ipv6_dst", word::TUN_IPV6_DST, 0, 128, F::Ipv6, P::None, &["NXM_NX_TUN_IPV6_DST"]),
    info("tun_metadata0", word::TUN_METADATA0, 0, 64, F::Hex, P::None, &["NXM_NX_TUN_METADATA0"]),
    info("tun_metadata1", word::TUN_METADATA1, 0, 64, F::Hex, P::None, &["NXM_NX_TUN_METADATA1"]),
    info("metadata", word::METADATA, 0, 64, F::Hex, P::None, &["OXM_OF_METADATA"]),
    reg("reg0", 0, &["NXM_NX_REG0"]),
    reg("reg1", 1, &["NXM_NX_REG1"]),
    reg("reg2", 2, &["NXM_NX_REG2"]),
    reg("reg3", 3, &["NXM_NX_REG3"]),
    reg("reg4", 4, &["NXM_NX_REG4"]),
    reg("reg5", 5, &["NXM_NX_REG5"]),
    reg("reg6", 6, &["NXM_NX_REG6"]),
    reg("reg7", 7, &["NXM_NX_REG7"]),
    reg("reg8", 8, &["NXM_NX_REG8"]),
    reg("reg9", 9, &["NXM_NX_REG9"]),
    reg("reg10", 10, &["NXM_NX_REG10"]),
    reg("reg11", 11, &["NXM_NX_REG11"]),
    reg("reg12", 12, &["NXM_NX_REG12"]),
    reg("reg13", 13, &["NXM_NX_REG13"]),
    reg("reg14", 14, &["NXM_NX_REG14"]),
    reg("reg15", 15, &["NXM_NX_REG15"]),
    info("ct_state", word::CT, 0, 8, F::CtState, P::None, &["NXM_NX_CT_STATE"]),
    info("ct_zone", word::CT, 16, 16, F::Decimal, P::None, &["NXM_NX_CT_ZONE"]),
    info("ct_mark", word::CT, 32, 32, F::Hex, P::None, &["NXM_NX_CT_MARK"]),
    info("ct_label", word::CT_LABEL, 0, 128, F::Hex, P::None, &["NXM_NX_CT_LABEL"]),
    info("dl_src", word::DL_SRC, 0, 48, F::Mac, P::None, &["eth_src", "NXM_OF_ETH_SRC", "OXM_OF_ETH_SRC"]),
    info("dl_dst", word::DL_DST, 0, 48, F::Mac, P::None, &["eth_dst", "NXM_OF_ETH_DST", "OXM_OF_ETH_DST"]),
    info("dl_type", word::DL_SRC, 48, 16, F::Hex, P::None, &["eth_type", "NXM_OF_ETH_TYPE", "OXM_OF_ETH_TYPE"]),
    info("vlan_tci", word::DL_DST, 48, 16, F::Hex, P::None, &["NXM_OF_VLAN_TCI"]),
    info("nw_src", word::NW_ADDR, 0, 32, F::Ipv4, P::Ipv4OrArp, &["ip_src", "NXM_OF_IP_SRC", "OXM_OF_IPV4_SRC"]),
    info("nw_dst", word::NW_ADDR, 32, 32, F::Ipv4, P::Ipv4OrArp, &["ip_dst", "NXM_OF_IP_DST", "OXM_OF_IPV4_DST"]),
    info("ipv6_src", word::IPV6_SRC, 0, 128, F::Ipv6, P::Ipv6, &["NXM_NX_IPV6_SRC", "OXM_OF_IPV6_SRC"]),
    info("ipv6_dst", word::IPV6_DST, 0, 128, F::Ipv6, P::Ipv6, &["NXM_NX_IPV6_DST", "OXM_OF_IPV6_DST"]),
    info("nw_proto", word::NW, 0, 8, F::Decimal, P::IpOrArp, &["ip_proto", "NXM_OF_IP_PROTO", "OXM_OF_IP_PROTO"]),
    info("nw_tos", word::NW, 8, 8, F::Decimal, P::Ip, &["NXM_OF_IP_TOS"]),
    info("nw_ttl", word::NW, 16, 8, F::Decimal, P::Ip, &["NXM_NX_IP_TTL"]),
    info("nw_frag", word::NW, 24, 8, F::Frag, P::Ip, &["ip_frag", "NXM_NX_IP_FRAG"]),
    info("tp_src", word::NW, 32, 16, F::Decimal, P::L4, &["NXM_OF_TCP_SRC", "NXM_OF_UDP_SRC"]),
    info("tp_dst", word::NW, 48, 16, F::Decimal, P::L4, &["NXM_OF_TCP_DST", "NXM_OF_UDP_DST"]),
    info("tcp_flags", word::L4X, 0, 16, F::TcpFlags, P::Tcp, &["NXM_NX_TCP_FLAGS", "OXM_OF_TCP_FLAGS"]),
    info("ipv6_label", word::L4X, 32, 32, F::Hex, P::Ipv6, &["NXM_NX_IPV6_LABEL"]),
    info("arp_sha", word::ARP_SHA, 0, 48, F::Mac, P::ArpOrNd, &["NXM_NX_ARP_SHA", "OXM_OF_ARP_SHA"]),
    info("arp_tha", word::ARP_THA, 0, 48, F::Mac, P::ArpOrNd, &["NXM_NX_ARP_THA", "OXM_OF_ARP_THA"]),
];

/// Every field in declaration order, for iteration.
#[rustfmt::skip]
static ALL: [Field; 48] = {
    use Field::*;
    [
        InPort, RecircId, TunId, TunSrc, TunDst, TunIpv6Src, TunIpv6Dst, TunMetadata0,
        TunMetadata1, Metadata, Reg0, Reg1, Reg2, Reg3, Reg4, Reg5, Reg6, Reg7, Reg8, Reg9,
        Reg10, Reg11, Reg12, Reg13, Reg14, Reg15, CtState, CtZone, CtMark, CtLabel, DlSrc, DlDst,
        DlType, VlanTci, NwSrc, NwDst, Ipv6Src, Ipv6Dst, NwProto, NwTos, NwTtl, NwFrag, TpSrc, TpDst,
        TcpFlags, Ipv6Label, ArpSha, ArpTha,
    ]
};

impl Field {
    #[inline(always)]
    fn info(self) -> &'static Info {
        &INFO[self as usize]
    }

    /// Every field, in the order `ovs-ofctl` prints matches.
    pub fn all() -> impl Iterator<Item = Field> {
        ALL.iter().copied()
    }

    /// Register `n` (0..=15).
    pub fn reg(n: usize) -> Option<Field> {
        ALL.get(Field::Reg0 as usize + n)
            .copied()
            .filter(|_| n < 16)
    }

    /// The canonical `ovs-ofctl` name.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The name OVS prints for the field in a subfield (`NXM_NX_REG1[]`):
    /// its NXM or OXM name, or the canonical name when it has neither.
    pub fn nxm_name(self) -> &'static str {
        let i = self.info();
        i.aliases
            .iter()
            .find(|a| a.starts_with("NXM_") || a.starts_with("OXM_"))
            .copied()
            .unwrap_or(i.name)
    }

    /// Looks a field up by its canonical name or any NXM/OXM alias.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::all().find(|f| {
            let i = f.info();
            i.name == name || i.aliases.contains(&name)
        })
    }

    /// The key word the field starts in.
    pub fn word(self) -> usize {
        self.info().word as usize
    }

    /// Width in bits.
    pub fn bits(self) -> u8 {
        self.info().bits
    }

    /// How values are written.
    pub fn format(self) -> Format {
        self.info().format
    }

    /// What the packet must be for this field to mean anything.
    pub fn prereq(self) -> Prereq {
        self.info().prereq
    }

    /// All-ones value of this field's width.
    pub fn max(self) -> u128 {
        u128::MAX >> (128 - self.bits() as u32)
    }

    /// Whether a packet's bytes carry this field (as opposed to metadata the
    /// switch keeps beside the packet): setting such a field rewrites the
    /// packet when it is output.
    pub fn is_packet_field(self) -> bool {
        use Field::*;
        matches!(
            self,
            DlSrc
                | DlDst
                | VlanTci
                | NwSrc
                | NwDst
                | Ipv6Src
                | Ipv6Dst
                | NwTos
                | NwTtl
                | TpSrc
                | TpDst
        )
    }

    /// Reads this field from key words.
    #[inline(always)]
    pub(crate) fn read(self, w: &[u64; KEY_WORDS]) -> u128 {
        let i = self.info();
        let wi = i.word as usize;
        if i.bits == 128 {
            ((w[wi] as u128) << 64) | w[wi + 1] as u128
        } else {
            let m = u64::MAX >> (64 - i.bits as u32);
            ((w[wi] >> i.shift) & m) as u128
        }
    }

    /// Writes the bits of `v` selected by `mask` into key words.
    #[inline(always)]
    pub(crate) fn write(self, w: &mut [u64; KEY_WORDS], v: u128, mask: u128) {
        let i = self.info();
        let wi = i.word as usize;
        if i.bits == 128 {
            let (vh, vl) = ((v >> 64) as u64, v as u64);
            let (mh, ml) = ((mask >> 64) as u64, mask as u64);
            w[wi] = (w[wi] & !mh) | (vh & mh);
            w[wi + 1] = (w[wi + 1] & !ml) | (vl & ml);
        } else {
            let m = (u64::MAX >> (64 - i.bits as u32)) & mask as u64;
            w[wi] = (w[wi] & !(m << i.shift)) | ((v as u64 & m) << i.shift);
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_follow_the_enum() {
        for (i, f) in Field::all().enumerate() {
            assert_eq!(f as usize, i);
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::reg(15), Some(Field::Reg15));
        assert_eq!(Field::reg(16), None);
        assert_eq!(Field::from_name("NXM_NX_REG3"), Some(Field::Reg3));
        assert_eq!(Field::from_name("eth_dst"), Some(Field::DlDst));
        for f in Field::all() {
            assert_eq!(Field::from_name(f.nxm_name()), Some(f));
        }
        assert_eq!(Field::Reg1.nxm_name(), "NXM_NX_REG1");
        assert_eq!(Field::Metadata.nxm_name(), "OXM_OF_METADATA");
    }
}
