//! Why a packet was dropped. Every drop on the packet path names one of
//! these and bumps its counter; `dump-drops` prints them by name.

/// A named reason for dropping a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    MalformedEthernet,
    /// An 802.1Q tag cut short.
    MalformedVlan,
    /// An ARP packet cut short or not Ethernet/IPv4.
    MalformedArp,
    /// An IPv4 header with a bad version, header length or total length.
    MalformedIpv4,
    /// An IPv6 header or extension header that is cut short or inconsistent.
    MalformedIpv6,
    /// A TCP, UDP or ICMP header cut short in a first fragment.
    MalformedL4,
    /// No rule matched in a table.
    TableMiss,
    /// The matching rule's actions were `drop` or output nowhere.
    NoOutput,
    /// `dec_ttl` on a packet whose TTL or hop limit was 1 or 0.
    TtlExceeded,
    /// Translation went deeper than the resubmit limit.
    ResubmitLimit,
    /// `output` to the port the packet came in on (OpenFlow forbids it
    /// unless the action is `in_port`).
    OutputToInPort,
    /// A rewrite that needs headroom or a header the packet does not have.
    BadRewrite,
    /// The output port's transmit queue was full.
    TxFull,
    /// The output port is down or gone.
    PortDown,
    /// No free buffer to copy a packet into for a second output.
    NoBuffer,
    /// Conntrack is at its global connection limit; a new connection was
    /// not committed.
    CtFull,
    /// The connection's conntrack zone is at its limit.
    CtZoneFull,
    /// NAT found no free translated tuple in its range.
    CtNatExhausted,
    /// Conntrack marked the packet invalid and the rules dropped it.
    CtInvalid,
    /// A Geneve packet on an uplink was malformed (truncated, bad version,
    /// bad option length, bad outer checksum, not Ethernet inside).
    GeneveMalformed,
    /// A Geneve option with the critical bit set that no TLV map entry
    /// names (RFC 8926 §3.5: the packet must be dropped).
    GeneveCriticalOption,
    /// A Geneve packet for an address that no tunnel port has.
    GeneveNotOurs,
    /// No route or no resolved neighbour to the remote VTEP yet.
    TunnelNoRoute,
    /// The packet would exceed the underlay MTU once encapsulated; the
    /// sender was told with ICMP fragmentation-needed or Packet Too Big.
    TunnelMtu,
    /// A packet recirculated more often than the datapath allows, or more
    /// packets recirculated from one batch than a batch holds.
    RecircLimit,
    /// A `reject` action dropped the packet (and answered its sender
    /// unless the RFCs forbid an answer).
    Rejected,
    /// A Geneve packet for a tunnel port's address whose VNI no tunnel port
    /// there takes: every port with that address has a fixed `key`, none
    /// of them this VNI (as in OVS, `key = "flow"` takes any).
    GeneveVni,
    /// A Geneve control packet (the O bit set). RFC 8926 §3.4: "Tunnel
    /// endpoints MUST NOT forward the payload"; oxvs has no control
    /// message handler, so it drops them.
    GeneveOam,
    /// A Geneve packet for a tunnel port's address and VNI from an outer
    /// source that no such port takes: every candidate has a fixed
    /// `remote_ip`, none of them this one (as in OVS, `remote_ip = "flow"`
    /// takes any).
    GeneveRemote,
}

impl DropReason {
    /// How many reasons there are (for counter arrays).
    pub const COUNT: usize = 29;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::MalformedEthernet,
        DropReason::MalformedVlan,
        DropReason::MalformedArp,
        DropReason::MalformedIpv4,
        DropReason::MalformedIpv6,
        DropReason::MalformedL4,
        DropReason::TableMiss,
        DropReason::NoOutput,
        DropReason::TtlExceeded,
        DropReason::ResubmitLimit,
        DropReason::OutputToInPort,
        DropReason::BadRewrite,
        DropReason::TxFull,
        DropReason::PortDown,
        DropReason::NoBuffer,
        DropReason::CtFull,
        DropReason::CtZoneFull,
        DropReason::CtNatExhausted,
        DropReason::CtInvalid,
        DropReason::GeneveMalformed,
        DropReason::GeneveCriticalOption,
        DropReason::GeneveNotOurs,
        DropReason::TunnelNoRoute,
        DropReason::TunnelMtu,
        DropReason::RecircLimit,
        DropReason::Rejected,
        DropReason::GeneveVni,
        DropReason::GeneveOam,
        DropReason::GeneveRemote,
    ];

    /// The counter name, `drop_<reason>`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedEthernet => "drop_malformed_ethernet",
            DropReason::MalformedVlan => "drop_malformed_vlan",
            DropReason::MalformedArp => "drop_malformed_arp",
            DropReason::MalformedIpv4 => "drop_malformed_ipv4",
            DropReason::MalformedIpv6 => "drop_malformed_ipv6",
            DropReason::MalformedL4 => "drop_malformed_l4",
            DropReason::TableMiss => "drop_table_miss",
            DropReason::NoOutput => "drop_no_output",
            DropReason::TtlExceeded => "drop_ttl_exceeded",
            DropReason::ResubmitLimit => "drop_resubmit_limit",
            DropReason::OutputToInPort => "drop_output_to_in_port",
            DropReason::BadRewrite => "drop_bad_rewrite",
            DropReason::TxFull => "drop_tx_full",
            DropReason::PortDown => "drop_port_down",
            DropReason::NoBuffer => "drop_no_buffer",
            DropReason::CtFull => "drop_ct_full",
            DropReason::CtZoneFull => "drop_ct_zone_full",
            DropReason::CtNatExhausted => "drop_ct_nat_exhausted",
            DropReason::CtInvalid => "drop_ct_invalid",
            DropReason::GeneveMalformed => "drop_geneve_malformed",
            DropReason::GeneveCriticalOption => "drop_geneve_critical_option",
            DropReason::GeneveNotOurs => "drop_geneve_not_ours",
            DropReason::TunnelNoRoute => "drop_tunnel_no_route",
            DropReason::TunnelMtu => "drop_tunnel_mtu",
            DropReason::RecircLimit => "drop_recirc_limit",
            DropReason::Rejected => "drop_rejected",
            DropReason::GeneveVni => "drop_geneve_vni",
            DropReason::GeneveOam => "drop_geneve_oam",
            DropReason::GeneveRemote => "drop_geneve_remote",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(r.name().starts_with("drop_"));
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(DropReason::CtInvalid.name(), "drop_ct_invalid");
    }
}
