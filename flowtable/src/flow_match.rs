//! A rule's match: a key and a mask, the key kept pre-masked so that two
//! matches that accept the same packets compare equal, plus `conj_id`.
//!
//! `conj_id` (ovs-fields(7), "Conjunctive Match Fields") never comes from a
//! packet, so it has no place in the [`FlowKey`] and never joins a megaflow
//! mask: it is the identifier of the conjunction whose satisfaction started
//! the current lookup, 0 in an ordinary lookup, and only the classifier
//! compares it.

use crate::field::{dl_type, Field, Prereq};
use crate::key::{FlowKey, FlowMask};

/// The packets a rule applies to: those whose key agrees with `key` on every
/// bit of `mask`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Match {
    /// Values, with every bit outside `mask` zero.
    pub key: FlowKey,
    /// Which bits are matched.
    pub mask: FlowMask,
    /// `conj_id=N`: the rule is found only by a lookup made for conjunction
    /// `N` (or, as in Open vSwitch, by an ordinary lookup when `N` is 0).
    pub conj_id: Option<u32>,
}

/// A match that names a field whose prerequisite it does not also match
/// (`tp_dst=80` without `tcp`): OpenFlow rejects it, and so do we, because
/// such a match would be ambiguous (tp_src also holds the ICMP type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrereqError {
    /// The field whose prerequisite is missing.
    pub field: Field,
    /// What it needs.
    pub needs: Prereq,
}

impl std::fmt::Display for PrereqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let needs = match self.needs {
            Prereq::None => "nothing",
            Prereq::Ip => "ip or ipv6",
            Prereq::Ipv4 => "ip",
            Prereq::Ipv6 => "ipv6",
            Prereq::Arp => "arp",
            Prereq::Ipv4OrArp => "ip or arp",
            Prereq::IpOrArp => "ip, ipv6 or arp",
            Prereq::L4 => "nw_proto of tcp, udp, sctp, icmp or icmp6",
            Prereq::ArpOrNd => "arp or icmp6",
            Prereq::Tcp => "tcp",
        };
        write!(f, "{} requires {} in the match", self.field, needs)
    }
}

impl std::error::Error for PrereqError {}

impl Match {
    /// The match that accepts every packet.
    pub fn any() -> Match {
        Match::default()
    }

    /// Adds `field == value` (under `mask`) to the match.
    pub fn set_masked(&mut self, field: Field, value: u128, mask: u128) {
        self.mask.set_bits(field, mask);
        // Only the bits under `mask` are written, so earlier constraints on
        // other bits of the same field (dl_vlan then dl_vlan_pcp) survive.
        self.key.set_masked(field, value, mask);
    }

    /// Adds `field == value` exactly.
    pub fn set(&mut self, field: Field, value: u128) {
        self.set_masked(field, value, field.max());
    }

    /// Whether `key` is accepted, on the packet's fields alone (`conj_id`
    /// is the classifier's business).
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.matches(&self.key, &self.mask)
    }

    /// The value matched for `field` and its mask (mask 0: not matched).
    pub fn get(&self, field: Field) -> (u128, u128) {
        (self.key.get(field), self.mask.get(field))
    }

    /// Whether `field` is matched exactly to `value`.
    pub fn is_exact(&self, field: Field, value: u128) -> bool {
        self.get(field) == (value, field.max())
    }

    /// Whether every packet this match accepts is also accepted by `wider`
    /// (OpenFlow's non-strict "covered by" for delete and modify).
    pub fn is_covered_by(&self, wider: &Match) -> bool {
        let conj = wider.conj_id.is_none() || wider.conj_id == self.conj_id;
        conj && wider.mask.is_subset_of(&self.mask) && self.key.masked(&wider.mask) == wider.key
    }

    /// Whether the match pins down what `prereq` needs.
    pub fn satisfies(&self, prereq: Prereq) -> bool {
        let dl = |t: u16| self.is_exact(Field::DlType, t as u128);
        let ip = dl(dl_type::IPV4) || dl(dl_type::IPV6);
        match prereq {
            Prereq::None => true,
            Prereq::Ip => ip,
            Prereq::Ipv4 => dl(dl_type::IPV4),
            Prereq::Ipv6 => dl(dl_type::IPV6),
            Prereq::Arp => dl(dl_type::ARP),
            Prereq::Ipv4OrArp => dl(dl_type::IPV4) || dl(dl_type::ARP),
            Prereq::IpOrArp => ip || dl(dl_type::ARP),
            Prereq::L4 => {
                ip && [6u128, 17, 132, 1, 58]
                    .iter()
                    .any(|p| self.is_exact(Field::NwProto, *p))
            }
            Prereq::Tcp => ip && self.is_exact(Field::NwProto, 6),
            Prereq::ArpOrNd => {
                dl(dl_type::ARP) || (dl(dl_type::IPV6) && self.is_exact(Field::NwProto, 58))
            }
        }
    }

    /// Checks the prerequisites of every field the match names.
    pub fn check_prereqs(&self) -> Result<(), PrereqError> {
        for field in Field::all() {
            if self.mask.get(field) != 0 && !self.satisfies(field.prereq()) {
                return Err(PrereqError {
                    field,
                    needs: field.prereq(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerequisites_are_enforced() {
        let mut m = Match::any();
        m.set(Field::TpDst, 80);
        assert_eq!(m.check_prereqs().unwrap_err().field, Field::TpDst);
        m.set(Field::DlType, 0x0800);
        m.set(Field::NwProto, 6);
        assert!(m.check_prereqs().is_ok());
    }

    #[test]
    fn masked_sets_accumulate_within_a_field() {
        let mut m = Match::any();
        m.set_masked(Field::VlanTci, 0x1005, 0x1fff);
        m.set_masked(Field::VlanTci, 0x7000, 0xe000);
        assert_eq!(m.get(Field::VlanTci), (0x7005, 0xffff));
    }

    #[test]
    fn covered_by_is_the_nonstrict_relation() {
        let mut wide = Match::any();
        wide.set(Field::DlType, 0x0800);
        let mut narrow = wide;
        narrow.set_masked(Field::NwDst, 0x0a00_0000, 0xff00_0000);
        assert!(narrow.is_covered_by(&wide));
        assert!(!wide.is_covered_by(&narrow));
        assert!(Match::any().is_covered_by(&Match::any()));
    }
}
