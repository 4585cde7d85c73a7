//! Timeout classes and their default lengths.
//!
//! Every entry sits in exactly one class, and every class has a single
//! length, so appending an entry to its class's FIFO list whenever it is
//! refreshed keeps each list sorted by expiry time. Expiry then only ever
//! looks at list heads: no sweep over the table, and a caller-chosen budget
//! bounds the work per call. This is the same scheme as OVS's per-timeout
//! `exp_lists`.
//!
//! The defaults are OVS's userspace datapath defaults (its `conntrack-tp.c`
//! default timeout policy, in seconds), including its mapping of its
//! internal timeout names onto the policy attributes.

/// The timeout class of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeoutClass {
    /// TCP: only the first packet (SYN) seen. OVS `tcp_syn_sent`, 30 s.
    TcpSynSent = 0,
    /// TCP: both sides seen, not yet established. OVS `tcp_syn_recv`, 30 s.
    TcpSynRecv,
    /// TCP: established. OVS `tcp_established`, 24 h.
    TcpEstablished,
    /// TCP: one side has sent FIN. OVS `tcp_fin_wait`, 15 min.
    TcpFinWait,
    /// TCP: both sides have sent FIN. OVS `tcp_time_wait`, 45 s.
    TcpTimeWait,
    /// TCP: both sides closed or reset. OVS `tcp_close`, 30 s.
    TcpClose,
    /// UDP and other: one packet seen. OVS `udp_first`, 60 s.
    UdpFirst,
    /// UDP: several packets, one direction only. OVS `udp_single`, 60 s.
    UdpSingle,
    /// UDP: packets both ways. OVS `udp_multiple`, 30 s.
    UdpMultiple,
    /// ICMP: request seen. OVS `icmp_first`, 60 s.
    IcmpFirst,
    /// ICMP: reply seen. OVS `icmp_reply`, 30 s.
    IcmpReply,
}

impl TimeoutClass {
    /// How many classes there are.
    pub const COUNT: usize = 11;

    /// Every class, in discriminant order.
    pub const ALL: [TimeoutClass; TimeoutClass::COUNT] = [
        TimeoutClass::TcpSynSent,
        TimeoutClass::TcpSynRecv,
        TimeoutClass::TcpEstablished,
        TimeoutClass::TcpFinWait,
        TimeoutClass::TcpTimeWait,
        TimeoutClass::TcpClose,
        TimeoutClass::UdpFirst,
        TimeoutClass::UdpSingle,
        TimeoutClass::UdpMultiple,
        TimeoutClass::IcmpFirst,
        TimeoutClass::IcmpReply,
    ];
}

/// Timeout lengths in milliseconds, indexed by [`TimeoutClass`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts(pub [u64; TimeoutClass::COUNT]);

impl Default for Timeouts {
    /// OVS's userspace defaults.
    fn default() -> Timeouts {
        const S: u64 = 1000;
        Timeouts([
            30 * S,           // tcp_syn_sent
            30 * S,           // tcp_syn_recv
            24 * 60 * 60 * S, // tcp_established
            15 * 60 * S,      // tcp_fin_wait
            45 * S,           // tcp_time_wait
            30 * S,           // tcp_close
            60 * S,           // udp_first
            60 * S,           // udp_single
            30 * S,           // udp_multiple
            60 * S,           // icmp_first
            30 * S,           // icmp_reply
        ])
    }
}

impl Timeouts {
    /// The length of `class` in milliseconds.
    pub fn get(&self, class: TimeoutClass) -> u64 {
        self.0[class as usize]
    }
}
