//! The values that cross the conntrack boundary: the parsed packet fields
//! handed in ([`CtPacket`]), the verdict handed back ([`CtVerdict`]) and the
//! NAT rewrite it carries ([`NatRewrite`]).
//!
//! They are plain `Copy` structs so the pipeline can keep them on the stack
//! for a batch of 32 without allocating. Addresses are `std::net` types at
//! this boundary; inside the table they become fixed-size byte arrays through
//! [`CtAddr`] so an IPv4 entry does not pay for IPv6's 16-byte addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers conntrack understands.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// `ct_state` bits, with the values OVS uses (`OVS_CS_F_*`): the same
/// constants the flow syntax matches with `ct_state=+trk+est`.
pub use crate::field::ct_state;

/// TCP flag bits as they sit in the header's 13th byte.
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field significant.
    pub const URG: u8 = 0x20;
}

/// The TCP fields sequence tracking needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// The flag byte (see [`tcp_flags`]).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Window field as sent (unscaled).
    pub window: u16,
    /// The window scale option, if the segment carried one (SYN only).
    pub wscale: Option<u8>,
    /// Bytes of payload after the TCP header.
    pub payload_len: u32,
}

/// The tuple of the packet an ICMP error quotes, as it was sent (so its
/// source is the host that received the error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerTuple {
    /// Source address of the quoted packet.
    pub src: IpAddr,
    /// Destination address of the quoted packet.
    pub dst: IpAddr,
    /// Protocol of the quoted packet.
    pub proto: u8,
    /// Source port (ICMP echo: the identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: the identifier).
    pub dport: u16,
}

/// Where a packet sits in a fragmented IP datagram (RFC 791 §3.2, RFC 8200
/// §4.5). The identification is IPv4's 16 bits or IPv6's 32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (an IPv6 "atomic fragment", offset 0 without the M
    /// flag, is whole too: RFC 6946 §4).
    #[default]
    Whole,
    /// Offset 0 with more to come: it carries the L4 header, cut short.
    First {
        /// The datagram's identification.
        id: u32,
    },
    /// A non-zero offset: no L4 header; conntrack takes its ports from the
    /// first fragment of the same datagram.
    Later {
        /// The datagram's identification.
        id: u32,
    },
}

/// The L4 fields a later fragment was tracked with: those its datagram's
/// first fragment carried, as conntrack saw them (before any NAT of the
/// `ct` call that returned them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentL4 {
    /// Source port, or ICMP echo identifier.
    pub sport: u16,
    /// Destination port, or ICMP echo identifier.
    pub dport: u16,
    /// ICMP type (zero for other protocols).
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
}

/// The fields of one packet that conntrack looks at, parsed once by the
/// pipeline. For ICMP echo, `sport` and `dport` both hold the identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtPacket {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Source port, or ICMP echo identifier.
    pub sport: u16,
    /// Destination port, or ICMP echo identifier.
    pub dport: u16,
    /// TCP fields (zero for other protocols).
    pub tcp: TcpInfo,
    /// ICMP type (zero for other protocols).
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// For an ICMP error: the quoted packet's tuple.
    pub inner: Option<InnerTuple>,
    /// Whether and where the packet is a fragment. A later fragment comes
    /// with zero ports, which [`crate::conntrack::ConnTrack::process`]
    /// fills from its first fragment.
    pub frag: Fragment,
}

impl CtPacket {
    pub(crate) fn base(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> CtPacket {
        CtPacket {
            src,
            dst,
            proto,
            sport,
            dport,
            tcp: TcpInfo::default(),
            icmp_type: 0,
            icmp_code: 0,
            inner: None,
            frag: Fragment::Whole,
        }
    }

    /// A TCP segment.
    pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, tcp: TcpInfo) -> CtPacket {
        CtPacket {
            tcp,
            ..CtPacket::base(src, dst, proto::TCP, sport, dport)
        }
    }

    /// A UDP datagram.
    pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> CtPacket {
        CtPacket::base(src, dst, proto::UDP, sport, dport)
    }

    /// An ICMP or ICMPv6 echo request (`request`) or reply with identifier `id`.
    pub fn icmp_echo(src: IpAddr, dst: IpAddr, id: u16, request: bool) -> CtPacket {
        let v6 = src.is_ipv6();
        let p = if v6 { proto::ICMPV6 } else { proto::ICMP };
        let icmp_type = match (v6, request) {
            (false, true) => 8,
            (false, false) => 0,
            (true, true) => 128,
            (true, false) => 129,
        };
        CtPacket {
            icmp_type,
            ..CtPacket::base(src, dst, p, id, id)
        }
    }

    /// An ICMP or ICMPv6 error of `icmp_type`/`icmp_code` quoting `inner`.
    pub fn icmp_error(
        src: IpAddr,
        dst: IpAddr,
        icmp_type: u8,
        icmp_code: u8,
        inner: InnerTuple,
    ) -> CtPacket {
        let p = if src.is_ipv6() {
            proto::ICMPV6
        } else {
            proto::ICMP
        };
        CtPacket {
            icmp_type,
            icmp_code,
            inner: Some(inner),
            ..CtPacket::base(src, dst, p, 0, 0)
        }
    }
}

/// Where one header's addresses and ports end up after NAT. Fields equal to
/// the packet's own values mean "unchanged".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRewrite {
    /// New source address.
    pub src: IpAddr,
    /// New destination address.
    pub dst: IpAddr,
    /// New source port (ICMP echo: identifier).
    pub sport: u16,
    /// New destination port (ICMP echo: identifier).
    pub dport: u16,
}

/// The rewrite NAT asks of this packet: its own header and, for an ICMP
/// error, the header it quotes (translated the opposite way, since the quoted
/// packet travelled in the other direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRewrite {
    /// The outer IP and L4 header.
    pub outer: HeaderRewrite,
    /// The quoted IP and L4 header of an ICMP error.
    pub inner: Option<HeaderRewrite>,
}

/// What conntrack says about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtVerdict {
    /// `ct_state` bits (see [`ct_state`]).
    pub state: u8,
    /// The connection's mark.
    pub mark: u32,
    /// The connection's label.
    pub label: u128,
    /// The rewrite to apply, when the connection is NATed.
    pub nat: Option<NatRewrite>,
    /// Set when a new connection could not be committed; the pipeline drops
    /// the packet with this reason.
    pub drop: Option<crate::DropReason>,
    /// For a later fragment conntrack recognised: the L4 fields its first
    /// fragment carried, which the next pass's flow key should show.
    pub fragment_l4: Option<FragmentL4>,
}

impl CtVerdict {
    pub(crate) const fn bare(state: u8) -> CtVerdict {
        CtVerdict {
            state: state | ct_state::TRK,
            mark: 0,
            label: 0,
            nat: None,
            drop: None,
            fragment_l4: None,
        }
    }

    /// `+trk+inv`: what `ct` says of a packet it cannot track.
    pub const fn invalid() -> CtVerdict {
        CtVerdict::bare(ct_state::INV)
    }

    /// Whether `bit` (from [`ct_state`]) is set.
    pub fn has(&self, bit: u8) -> bool {
        self.state & bit != 0
    }
}

/// An address as the table stores it: four bytes for IPv4, sixteen for IPv6.
pub(crate) trait CtAddr: Copy + Eq + Default + Send + std::fmt::Debug + 'static {
    /// The address from an `IpAddr` of this family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// Back to `IpAddr`.
    fn to_ip(self) -> IpAddr;
    /// The address as an integer, for NAT ranges.
    fn to_u128(self) -> u128;
    /// The address from an integer made by `to_u128`.
    fn from_u128(v: u128) -> Self;
    /// A 64-bit word mixing the address and a port, for hashing.
    fn word(self, port: u16) -> u64;
}

impl CtAddr for [u8; 4] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a.octets()),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn to_u128(self) -> u128 {
        u32::from_be_bytes(self) as u128
    }
    fn from_u128(v: u128) -> Self {
        (v as u32).to_be_bytes()
    }
    fn word(self, port: u16) -> u64 {
        (u32::from_be_bytes(self) as u64) << 16 | port as u64
    }
}

impl CtAddr for [u8; 16] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    fn to_u128(self) -> u128 {
        u128::from_be_bytes(self)
    }
    fn from_u128(v: u128) -> Self {
        v.to_be_bytes()
    }
    fn word(self, port: u16) -> u64 {
        let v = u128::from_be_bytes(self);
        mix((v >> 64) as u64 ^ mix(v as u64)) ^ port as u64
    }
}

/// One direction of a connection: who sends to whom. Zone and protocol are
/// the same in both directions and live beside it in the entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tuple<A> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
}

impl<A: CtAddr> Tuple<A> {
    /// The same conversation seen from the other end.
    pub fn reverse(&self) -> Tuple<A> {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// A hash that is the same for a tuple and its reverse, so both
    /// directions of a connection without NAT land in the same shard. Each
    /// endpoint is mixed on its own and the two are added, which commutes.
    pub fn hash(&self, zone: u16, proto: u8, seed: u64) -> u64 {
        let a = mix(self.src.word(self.sport) ^ seed);
        let b = mix(self.dst.word(self.dport) ^ seed);
        mix(a.wrapping_add(b) ^ ((zone as u64) << 8 | proto as u64))
    }
}

/// A 64-bit finaliser (the murmur3 `fmix64` constants): every input bit
/// affects every output bit, so disjoint bit ranges can pick the shard and
/// the bucket within it.
#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}
