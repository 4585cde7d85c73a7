//! Actions at two levels.
//!
//! [`Action`] is what a rule says, in OpenFlow terms (`resubmit`, `normal`,
//! `load:...->NXM_NX_REG0[]`). Translation walks those once per megaflow and
//! produces a flat list of [`DpAction`]s: only packet rewrites and outputs,
//! every value already computed, so the fast path never interprets OpenFlow.
//! This is the split Open vSwitch makes between ofpacts and datapath actions.

use crate::drop::DropReason;
use crate::field::Field;
use crate::port::PortNo;
type MacAddr = [u8; 6];

/// Part of a field: bits `ofs .. ofs + n_bits` (`NXM_NX_REG0[8..15]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubField {
    /// The field.
    pub field: Field,
    /// Lowest bit.
    pub ofs: u8,
    /// Number of bits (at least 1).
    pub n_bits: u8,
}

impl SubField {
    /// The whole field.
    pub fn whole(field: Field) -> SubField {
        SubField {
            field,
            ofs: 0,
            n_bits: field.bits(),
        }
    }

    /// The mask of the selected bits, in field position.
    pub fn mask(&self) -> u128 {
        let ones = if self.n_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.n_bits) - 1
        };
        ones << self.ofs
    }
}

/// What kind of group (OpenFlow 1.1 group types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupType {
    /// Execute every bucket on its own copy of the packet.
    All,
    /// Execute one bucket, chosen by a hash of the flow, weighted.
    Select,
    /// Execute the single bucket.
    Indirect,
}

/// One OpenFlow action of a rule or a group bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `output:PORT`.
    Output(PortNo),
    /// `in_port`: send back out of the input port.
    InPort,
    /// `normal`: MAC-learning L2 switching.
    Normal,
    /// `flood`: every port but the input port.
    Flood,
    /// `all`: every port but the input port.
    All,
    /// `drop` (only valid as the whole action list).
    Drop,
    /// `resubmit([port],[table])`: look the packet up again, in another
    /// table and/or as if it came in on another port, then continue.
    Resubmit {
        /// Port to pretend the packet came in on; `None` keeps it.
        in_port: Option<PortNo>,
        /// Table to search; `None` means the current one.
        table: Option<u8>,
    },
    /// `goto_table:T`: continue in a later table after this list.
    GotoTable(u8),
    /// `set_field:VALUE[/MASK]->FIELD`, and the `mod_*` shorthands.
    SetField {
        /// The field written.
        field: Field,
        /// The value, right-aligned.
        value: u128,
        /// Which bits are written.
        mask: u128,
    },
    /// `load:VALUE->DST`.
    Load {
        /// Where.
        dst: SubField,
        /// What, right-aligned to `dst.ofs`.
        value: u128,
    },
    /// `move:SRC->DST`.
    Move {
        /// Read from.
        src: SubField,
        /// Written to (same width).
        dst: SubField,
    },
    /// `dec_ttl`.
    DecTtl,
    /// `push_vlan:TPID`.
    PushVlan(u16),
    /// `pop_vlan` / `strip_vlan`.
    PopVlan,
    /// `mod_vlan_vid:VID` (adds a tag when there is none).
    ModVlanVid(u16),
    /// `mod_vlan_pcp:PCP` (adds a tag when there is none).
    ModVlanPcp(u8),
    /// `group:ID`.
    Group(u32),
    /// `conjunction(ID,CLAUSE/N_CLAUSES)`: this rule is clause `clause` (1 to
    /// `n_clauses`) of conjunctive match `id`. A rule holding it never runs
    /// actions of its own; the classifier uses it to decide whether
    /// conjunction `id` is satisfied (see [`crate::conjunction`]).
    Conjunction {
        /// The conjunction's 32-bit identifier, matched by `conj_id=`.
        id: u32,
        /// Which clause this rule is, 1-based.
        clause: u8,
        /// How many clauses the conjunction has (2 to 64).
        n_clauses: u8,
    },
}

/// A rewrite or output the datapath performs on a packet. Values are
/// absolute: what to write, not how to compute it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DpAction {
    /// Transmit a copy (or, when last, the packet itself) on a port.
    Output(PortNo),
    /// Rewrite the Ethernet source.
    SetEthSrc(MacAddr),
    /// Rewrite the Ethernet destination.
    SetEthDst(MacAddr),
    /// Insert an 802.1Q tag.
    PushVlan {
        /// Tag protocol identifier (0x8100 or 0x88a8).
        tpid: u16,
        /// Tag control information, without OVS's present bit.
        tci: u16,
    },
    /// Remove the outer 802.1Q tag.
    PopVlan,
    /// Rewrite the outer tag's TCI (without the present bit).
    SetVlanTci(u16),
    /// Rewrite the IPv4 source (checksums updated incrementally).
    SetIpv4Src([u8; 4]),
    /// Rewrite the IPv4 destination.
    SetIpv4Dst([u8; 4]),
    /// Rewrite the IPv4 TOS byte or IPv6 traffic class.
    SetTos(u8),
    /// Rewrite the IPv4 TTL or IPv6 hop limit.
    SetTtl(u8),
    /// Rewrite the IPv6 source.
    SetIpv6Src([u8; 16]),
    /// Rewrite the IPv6 destination.
    SetIpv6Dst([u8; 16]),
    /// Rewrite the TCP or UDP source port.
    SetTpSrc(u16),
    /// Rewrite the TCP or UDP destination port.
    SetTpDst(u16),
    /// Sets `tun_metadataN` for the next [`DpAction::TunnelPush`] (the
    /// datapath turns it into a Geneve option through the bridge's TLV map).
    TunnelMetadata {
        /// N.
        slot: u8,
        /// The value, right-aligned in the option's length.
        value: u64,
    },
    /// Encapsulates in Geneve and sends on the underlay: the datapath
    /// builds the outer headers from the tunnel port's local address, the
    /// route and neighbour of `dst`, and this VNI.
    TunnelPush {
        /// The tunnel port.
        port: PortNo,
        /// The VNI (24 bits).
        vni: u32,
        /// The remote VTEP: an IPv4 address as `::ffff:a.b.c.d`.
        dst: [u8; 16],
    },
    /// Stop: the packet is dropped for this reason (any outputs before it
    /// still happen).
    Drop(DropReason),
}

impl DpAction {
    /// Whether the action sends the packet somewhere.
    #[inline]
    pub fn is_output(&self) -> bool {
        matches!(self, DpAction::Output(_) | DpAction::TunnelPush { .. })
    }
}
