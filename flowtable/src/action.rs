//! Actions at two levels.
//!
//! [`Action`] is what a rule says, in OpenFlow terms (`resubmit`, `normal`,
//! `load:...->NXM_NX_REG0[]`). Translation walks those once per megaflow and
//! produces a flat list of [`DpAction`]s: only packet rewrites and outputs,
//! every value already computed, so the fast path never interprets OpenFlow.
//! This is the split Open vSwitch makes between ofpacts and datapath actions.

use crate::conntrack::{CtExec, NatSpec};
use crate::drop::DropReason;
use crate::field::Field;
use crate::port::PortNo;
use std::sync::Arc;
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
    /// `output:FIELD[...]`: output to the port number held in a field or
    /// subfield (at most 32 bits), read when the action runs. As in OVS, the
    /// value is an OpenFlow 1.0 port number: 0xfff8 and up are the reserved
    /// ports, and a value above 0xffff outputs nowhere.
    OutputField(SubField),
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
    /// `write_metadata:VALUE[/MASK]` (the OpenFlow 1.1 instruction): writes
    /// the masked bits of `metadata`. Only `goto_table` may follow it.
    WriteMetadata {
        /// The value, already masked.
        value: u64,
        /// Which bits are written.
        mask: u64,
    },
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
    /// `ct(...)`: send the packet through connection tracking.
    Ct(Box<CtAction>),
    /// `ct_clear`: forget the packet's connection-tracking state.
    CtClear,
    /// `learn(...)`: add a rule built from this packet's fields.
    Learn(Box<LearnSpec>),
    /// `reject[(HOW)]` (an oxvs extension; OVS has none): drop the packet
    /// and answer its sender on the input port, as a Kubernetes "Reject"
    /// verdict does. Ends the pipeline for the packet, like a drop.
    Reject(RejectHow),
    /// `log(name=NAME)` (an oxvs extension): record one rate-limited line
    /// per connection under NAME with the verdict the rest of the rules
    /// reach (allow, drop or reject).
    Log(String),
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

/// How `reject` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectHow {
    /// `reject`: TCP gets a RST; other IPv4 gets ICMP destination
    /// unreachable code 13 (communication administratively prohibited,
    /// RFC 1812 §5.2.7.1); other IPv6 gets ICMPv6 destination unreachable
    /// code 1 (administratively prohibited, RFC 4443 §3.1).
    Auto,
    /// `reject(tcp_rst)`: a RST for TCP; any other packet is dropped
    /// without an answer.
    TcpRst,
    /// `reject(icmp)`: the "administratively prohibited" error, TCP too.
    Icmp,
    /// `reject(port_unreachable)`: ICMP port unreachable (type 3 code 3)
    /// or ICMPv6 port unreachable (type 1 code 4), what a host without a
    /// listener would send for UDP.
    PortUnreachable,
}

/// The answer the datapath builds for [`DpAction::Reject`]; translation
/// has already looked at the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReply {
    /// A TCP RST (RFC 9293 §3.10.7.1).
    TcpRst,
    /// ICMP(v6) destination unreachable, administratively prohibited.
    Prohibited,
    /// ICMP(v6) destination unreachable, port unreachable.
    PortUnreachable,
}

/// What the rules did with a logged packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Output somewhere.
    Allow,
    /// Output nowhere.
    Drop,
    /// Rejected with an answer to the sender.
    Reject,
}

impl Verdict {
    /// The word in a log line.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "Allow",
            Verdict::Drop => "Drop",
            Verdict::Reject => "Reject",
        }
    }
}

/// Where a value in a `learn` spec comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnSrc {
    /// A constant, right-aligned.
    Imm(u128),
    /// The packet's value of a subfield when the rule is learned.
    Field(SubField),
}

/// One match of a learned rule: `dst` must equal `src`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LearnMatch {
    /// The matched bits.
    pub dst: SubField,
    /// Their value.
    pub src: LearnSrc,
}

/// One action of a learned rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnAction {
    /// `load:SRC->DST`: the learned rule loads the value into `dst`.
    Load {
        /// Written by the learned rule.
        dst: SubField,
        /// The value it writes (taken from the packet at learn time).
        src: LearnSrc,
    },
    /// `output:SRC`: the learned rule outputs to the port in `SRC`.
    Output(SubField),
}

/// The `learn(...)` action (`ovs-actions(7)`): table, priority, timeouts
/// and cookie of the rule to add, its matches and its actions. Timeouts
/// are 32-bit seconds: Kubernetes session affinity may last 86400 s,
/// longer than OpenFlow's 16-bit timeouts allow.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LearnSpec {
    /// `table=`.
    pub table: u8,
    /// `priority=`.
    pub priority: u16,
    /// `idle_timeout=`.
    pub idle_timeout: u32,
    /// `hard_timeout=`.
    pub hard_timeout: u32,
    /// `cookie=`.
    pub cookie: u64,
    /// The learned rule's match.
    pub matches: Vec<LearnMatch>,
    /// The learned rule's actions.
    pub actions: Vec<LearnAction>,
}

/// Where a `ct` action's zone comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtZoneSrc {
    /// `zone=N`.
    Imm(u16),
    /// `zone=NXM_NX_REG6[0..15]`: read from the flow at translation.
    Field(SubField),
}

/// A rule's `ct(...)` action, as written (`ovs-actions(7)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CtAction {
    /// `commit`: make a new connection an entry of the table.
    pub commit: bool,
    /// `zone=`.
    pub zone: CtZoneSrc,
    /// `table=T`: recirculate the tracked packet into table T.
    pub table: Option<u8>,
    /// `nat`, `nat(src=...)`, `nat(dst=...)`.
    pub nat: Option<NatSpec>,
    /// `exec(...)`: writes to `ct_mark` and `ct_label` (only
    /// [`Action::SetField`], [`Action::Load`] and [`Action::Move`] into
    /// those two fields), applied when the connection is committed.
    pub exec: Vec<Action>,
}

/// A `ct` action as the datapath runs it: every value computed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CtSpec {
    /// Conntrack zone.
    pub zone: u16,
    /// Commit a new connection.
    pub commit: bool,
    /// NAT to set up or apply.
    pub nat: Option<NatSpec>,
    /// Mark and label to store on commit.
    pub exec: CtExec,
    /// Recirculation: the table the tracked packet continues in, or `None`
    /// when the packet is only tracked (and translated) in place.
    pub table: Option<u8>,
    /// The values of `metadata` and `reg0..reg15` (key words 3 to 11) at
    /// the `ct` action, which the recirculated packet carries on.
    pub frozen: [u64; FROZEN_WORDS],
}

/// How many key words a recirculation carries over (metadata, registers).
pub const FROZEN_WORDS: usize = 9;

/// A rewrite or output the datapath performs on a packet. Values are
/// absolute: what to write, not how to compute it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// Rewrite the ARP header's operation and addresses, all at once (what
    /// an ARP responder's moves and loads leave; OVS's `set(arp(...))`).
    SetArp {
        /// The operation (1 request, 2 reply).
        op: u16,
        /// Sender hardware address.
        sha: MacAddr,
        /// Sender protocol address.
        spa: [u8; 4],
        /// Target hardware address.
        tha: MacAddr,
        /// Target protocol address.
        tpa: [u8; 4],
    },
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
    /// Connection tracking: look the packet up (commit, NAT) and, with a
    /// table, recirculate it with its `ct_*` fields set. Shared, because
    /// every packet of the megaflow runs the same spec.
    Ct(Arc<CtSpec>),
    /// Stop: the packet is dropped for this reason (any outputs before it
    /// still happen).
    Drop(DropReason),
    /// Answer the packet's sender on the input port, built from the packet
    /// as the actions before this one left it, then drop the packet
    /// ([`DropReason::Rejected`]). Always the last action but a `Drop`.
    Reject(RejectReply),
    /// Record a policy log entry for the packet: the interned rule name
    /// ([`crate::bridge::LogNames`]) and the megaflow's verdict.
    Log {
        /// The name's id in the bridge's table.
        name: u16,
        /// What the megaflow does with the packet.
        verdict: Verdict,
    },
}

impl DpAction {
    /// Whether the action sends the packet somewhere.
    #[inline]
    pub fn is_output(&self) -> bool {
        match self {
            DpAction::Output(_) | DpAction::TunnelPush { .. } => true,
            // A recirculating `ct` hands the packet to the next pass.
            DpAction::Ct(spec) => spec.table.is_some(),
            _ => false,
        }
    }

    /// Whether the executor must run the action even when the packet is
    /// output nowhere (it answers the sender or records the packet).
    #[inline]
    pub fn acts_without_output(&self) -> bool {
        matches!(self, DpAction::Reject(_) | DpAction::Log { .. })
    }
}

// The datapath copies actions around freely: keep them small.
const _: () = assert!(std::mem::size_of::<DpAction>() <= 32);
