//! The fast path's map layouts, shared byte for byte by the XDP program
//! (which addresses fields by the offsets below) and the Rust side that
//! fills the maps.
//!
//! Every struct is `#[repr(C)]` with explicit padding fields, so it has no
//! implicit padding (checked at compile time against the sum of its
//! fields) and can be handed to `bpf(2)` as bytes. Multi-byte packet fields
//! are kept in wire order (`[u8; N]`), as the program copies them straight
//! from and into the packet; counters and indices are native integers.

use std::mem::{offset_of, size_of};

/// The exact-match key: the ingress OpenFlow port, the Geneve fields of a
/// tunnel arrival and every header field `flowtable::extract` puts into a
/// flow key for the packets the program parses. Two packets with the same
/// `FpKey` have the same first-pass `FlowKey`, so one translation holds for
/// both (see [`FpKey::from_flow_key`](super::FpKey::from_flow_key)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FpKey {
    /// OpenFlow port the packet entered on (the tunnel port for a Geneve
    /// arrival), native order.
    pub in_port: u32,
    /// Geneve VNI as on the wire, in the first three bytes; zero otherwise.
    pub tun_id: [u8; 4],
    /// Outer IPv4 source of a Geneve arrival.
    pub tun_src: [u8; 4],
    /// Outer IPv4 destination (our VTEP) of a Geneve arrival.
    pub tun_dst: [u8; 4],
    /// Ethernet destination.
    pub dl_dst: [u8; 6],
    /// Ethernet source.
    pub dl_src: [u8; 6],
    /// 802.1Q TCI with OVS's present bit (0x1000) when tagged; zero otherwise.
    pub vlan_tci: [u8; 2],
    /// Ethertype after any tag.
    pub dl_type: [u8; 2],
    /// IPv4 source in the first four bytes, or the IPv6 source.
    pub nw_src: [u8; 16],
    /// IPv4 destination in the first four bytes, or the IPv6 destination.
    pub nw_dst: [u8; 16],
    /// IPv6 flow label (20 bits, wire order); zero for IPv4.
    pub ipv6_label: [u8; 4],
    /// IP protocol.
    pub nw_proto: u8,
    /// IPv4 TOS or IPv6 traffic class.
    pub nw_tos: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub nw_ttl: u8,
    /// Always zero.
    pub pad0: u8,
    /// TCP/UDP source port, or the ICMP type in the second byte.
    pub tp_src: [u8; 2],
    /// TCP/UDP destination port, or the ICMP code in the second byte.
    pub tp_dst: [u8; 2],
    /// TCP flags (12 bits, wire order); zero for other protocols.
    pub tcp_flags: [u8; 2],
    /// The identifier of an ICMP echo request or reply (types 8 and 0) or
    /// an ICMPv6 one (128 and 129), wire order; zero for every other
    /// packet. `FlowKey::echo_id`: conntrack tells echo connections apart
    /// by it.
    pub icmp_id: [u8; 2],
}

/// What an entry does, as bits of [`FpEntry::actions`]. Rewrites apply in
/// this order: Ethernet, IP, L4 (checksums updated incrementally), then
/// the VLAN tag, then the Geneve push; a Geneve arrival is popped before
/// the tag operations.
pub mod act {
    /// Set the Ethernet source.
    pub const ETH_SRC: u32 = 1 << 0;
    /// Set the Ethernet destination.
    pub const ETH_DST: u32 = 1 << 1;
    /// Set the IPv4 source (first four bytes of `nw_src`).
    pub const IP4_SRC: u32 = 1 << 2;
    /// Set the IPv4 destination.
    pub const IP4_DST: u32 = 1 << 3;
    /// Set the IPv6 source.
    pub const IP6_SRC: u32 = 1 << 4;
    /// Set the IPv6 destination.
    pub const IP6_DST: u32 = 1 << 5;
    /// Set the TCP/UDP source port.
    pub const TP_SRC: u32 = 1 << 6;
    /// Set the TCP/UDP destination port.
    pub const TP_DST: u32 = 1 << 7;
    /// Set the IPv4 TTL or IPv6 hop limit (what `dec_ttl` translates to).
    pub const TTL: u32 = 1 << 8;
    /// Set the IPv4 TOS or IPv6 traffic class.
    pub const TOS: u32 = 1 << 9;
    /// Remove the 802.1Q tag.
    pub const VLAN_POP: u32 = 1 << 10;
    /// Insert an 802.1Q tag (`vlan_tpid`, `vlan_tci`).
    pub const VLAN_PUSH: u32 = 1 << 11;
    /// Rewrite the TCI of the existing tag.
    pub const VLAN_SET: u32 = 1 << 12;
    /// Encapsulate in Geneve with template `tun_slot`.
    pub const GENEVE_PUSH: u32 = 1 << 13;
    /// Every bit the program knows.
    pub const ALL: u32 = (1 << 14) - 1;
}

/// An entry: the actions, the output and the counters the program keeps.
///
/// What every hit reads or writes (the counters, the action bits, the
/// output and the length limit) comes first, in the first 40 bytes, and
/// the value is padded to 128 bytes: with the kernel's 48-byte element
/// header and the 80-byte key, a preallocated hash element is then 256
/// bytes, four whole cache lines with the value starting on the third, so a
/// hit touches three lines of the element (header and key, key, the hot
/// part of the value) rather than four or five at arbitrary offsets. The
/// rewrite values follow; a plain output never reads them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpEntry {
    /// Packets that took the entry (updated by the program).
    pub packets: u64,
    /// Bytes of those packets as they arrived (after any Geneve pop).
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet.
    pub used_ns: u64,
    /// Bits of [`act`].
    pub actions: u32,
    /// The output: a key of the DEVMAP (an OpenFlow port number).
    pub out_port: u32,
    /// The longest frame (as it arrived, after any Geneve pop) the entry
    /// takes; longer ones go to the slow path, which answers with ICMP.
    pub max_len: u16,
    /// TCI to push or set (wire order, without the present bit).
    pub vlan_tci: [u8; 2],
    /// TPID to push (wire order).
    pub vlan_tpid: [u8; 2],
    /// TOS / traffic class to set.
    pub nw_tos: u8,
    /// TTL / hop limit to set.
    pub nw_ttl: u8,
    /// Ethernet destination to set.
    pub eth_dst: [u8; 6],
    /// Ethernet source to set.
    pub eth_src: [u8; 6],
    /// Port to set.
    pub tp_src: [u8; 2],
    /// Port to set.
    pub tp_dst: [u8; 2],
    /// Address to set (IPv4 in the first four bytes).
    pub nw_src: [u8; 16],
    /// Address to set.
    pub nw_dst: [u8; 16],
    /// Slot of the tunnel template map for a Geneve push.
    pub tun_slot: u32,
    /// VNI to push, wire order in the first three bytes, last byte zero.
    pub tun_id: [u8; 4],
    /// Outer UDP source port (wire order): the slow path's
    /// `SrcPortRange::port(FlowKey::hash())` for this exact flow.
    pub tun_sport: [u8; 2],
    /// Always zero.
    pub pad0: [u8; 6],
    /// Always zero: pads the value to 128 bytes (see above).
    pub pad1: [u8; 24],
}

/// Length of the outer headers of an IPv4 Geneve tunnel without options:
/// Ethernet 14, IPv4 20, UDP 8, Geneve 8 (`encap::template::IPV4_HEADERS_LEN`).
pub const GENEVE4_LEN: usize = 50;

/// One remote's outer headers, as `encap::Template::bytes` builds them
/// (length, id, checksums, source port and VNI zero), plus the partial sum
/// of the IPv4 header the program finishes per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpTunnel {
    /// Ethernet, IPv4, UDP and Geneve headers (the first 50 bytes).
    pub hdr: [u8; 56],
    /// Ones'-complement sum of the IPv4 header's 16-bit words with total
    /// length, identification and checksum zero (not folded, host order).
    pub ip_partial: u32,
    /// Always zero.
    pub pad0: u32,
}

impl Default for FpTunnel {
    fn default() -> FpTunnel {
        FpTunnel {
            hdr: [0; 56],
            ip_partial: 0,
            pad0: 0,
        }
    }
}

/// What an uplink's program needs to know about the interface it runs on,
/// keyed by ifindex (a pod port's program has its OpenFlow number built in).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpPort {
    /// The interface's OpenFlow port number.
    pub of_port: u32,
    /// Uplinks: the Geneve tunnel port arrivals enter on (0: none, every
    /// Geneve arrival goes to the slow path).
    pub tun_port: u32,
    /// Uplinks: the tunnel port's local IPv4 VTEP (outer destination).
    pub vtep: [u8; 4],
    /// Always zero.
    pub pad0: u32,
}

/// The program's counters (a per-CPU array indexed by these), named like
/// the pipeline's: `fastpath_<event>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FpCounter {
    /// An entry matched and the packet left through the DEVMAP.
    Hit = 0,
    /// Parsed, looked up, no entry: to the AF_XDP socket.
    Miss,
    /// TCP SYN, FIN or RST: the slow path sees connection setup and teardown.
    PuntTcpFlags,
    /// An IP fragment.
    PuntFragment,
    /// IPv4 options or an IPv6 extension header.
    PuntIpOptions,
    /// Longer than the entry's `max_len`.
    PuntTooBig,
    /// A Geneve arrival the program does not decapsulate (options, OAM,
    /// a UDP checksum, IPv6 underlay, another VTEP, bad outer header).
    PuntGeneve,
    /// Not IPv4/IPv6 with TCP, UDP, ICMP or ICMPv6 (or neighbour
    /// discovery), malformed or trailing bytes.
    PuntUnparsed,
    /// The entry's output port is not in the DEVMAP.
    PuntNoOutput,
    /// A headroom adjustment or template lookup failed after the packet was
    /// changed: dropped.
    Error,
}

impl FpCounter {
    /// Every counter, in index order.
    pub const ALL: [FpCounter; 10] = [
        FpCounter::Hit,
        FpCounter::Miss,
        FpCounter::PuntTcpFlags,
        FpCounter::PuntFragment,
        FpCounter::PuntIpOptions,
        FpCounter::PuntTooBig,
        FpCounter::PuntGeneve,
        FpCounter::PuntUnparsed,
        FpCounter::PuntNoOutput,
        FpCounter::Error,
    ];

    /// The counter's name.
    pub const fn name(self) -> &'static str {
        match self {
            FpCounter::Hit => "fastpath_hit",
            FpCounter::Miss => "fastpath_miss",
            FpCounter::PuntTcpFlags => "fastpath_punt_tcp_flags",
            FpCounter::PuntFragment => "fastpath_punt_fragment",
            FpCounter::PuntIpOptions => "fastpath_punt_ip_options",
            FpCounter::PuntTooBig => "fastpath_punt_too_big",
            FpCounter::PuntGeneve => "fastpath_punt_geneve",
            FpCounter::PuntUnparsed => "fastpath_punt_unparsed",
            FpCounter::PuntNoOutput => "fastpath_punt_no_output",
            FpCounter::Error => "fastpath_error",
        }
    }
}

/// Byte offsets the program uses, as `i16` instruction offsets.
pub(crate) mod off {
    use super::*;

    const fn o(v: usize) -> i16 {
        v as i16
    }
    pub const K_IN_PORT: i16 = o(offset_of!(FpKey, in_port));
    pub const K_TUN_ID: i16 = o(offset_of!(FpKey, tun_id));
    pub const K_TUN_SRC: i16 = o(offset_of!(FpKey, tun_src));
    pub const K_TUN_DST: i16 = o(offset_of!(FpKey, tun_dst));
    pub const K_DL_DST: i16 = o(offset_of!(FpKey, dl_dst));
    pub const K_VLAN_TCI: i16 = o(offset_of!(FpKey, vlan_tci));
    pub const K_DL_TYPE: i16 = o(offset_of!(FpKey, dl_type));
    pub const K_NW_SRC: i16 = o(offset_of!(FpKey, nw_src));
    pub const K_NW_DST: i16 = o(offset_of!(FpKey, nw_dst));
    pub const K_LABEL: i16 = o(offset_of!(FpKey, ipv6_label));
    pub const K_PROTO: i16 = o(offset_of!(FpKey, nw_proto));
    pub const K_TOS: i16 = o(offset_of!(FpKey, nw_tos));
    pub const K_TTL: i16 = o(offset_of!(FpKey, nw_ttl));
    pub const K_TP_SRC: i16 = o(offset_of!(FpKey, tp_src));
    pub const K_TP_DST: i16 = o(offset_of!(FpKey, tp_dst));
    pub const K_TCP_FLAGS: i16 = o(offset_of!(FpKey, tcp_flags));
    pub const K_ICMP_ID: i16 = o(offset_of!(FpKey, icmp_id));

    pub const E_ACTIONS: i16 = o(offset_of!(FpEntry, actions));
    pub const E_OUT_PORT: i16 = o(offset_of!(FpEntry, out_port));
    pub const E_MAX_LEN: i16 = o(offset_of!(FpEntry, max_len));
    pub const E_VLAN_TCI: i16 = o(offset_of!(FpEntry, vlan_tci));
    pub const E_VLAN_TPID: i16 = o(offset_of!(FpEntry, vlan_tpid));
    pub const E_TOS: i16 = o(offset_of!(FpEntry, nw_tos));
    pub const E_TTL: i16 = o(offset_of!(FpEntry, nw_ttl));
    pub const E_ETH_DST: i16 = o(offset_of!(FpEntry, eth_dst));
    pub const E_ETH_SRC: i16 = o(offset_of!(FpEntry, eth_src));
    pub const E_TP_SRC: i16 = o(offset_of!(FpEntry, tp_src));
    pub const E_TP_DST: i16 = o(offset_of!(FpEntry, tp_dst));
    pub const E_NW_SRC: i16 = o(offset_of!(FpEntry, nw_src));
    pub const E_NW_DST: i16 = o(offset_of!(FpEntry, nw_dst));
    pub const E_TUN_SLOT: i16 = o(offset_of!(FpEntry, tun_slot));
    pub const E_TUN_ID: i16 = o(offset_of!(FpEntry, tun_id));
    pub const E_TUN_SPORT: i16 = o(offset_of!(FpEntry, tun_sport));
    pub const E_PACKETS: i16 = o(offset_of!(FpEntry, packets));
    pub const E_BYTES: i16 = o(offset_of!(FpEntry, bytes));
    pub const E_USED_NS: i16 = o(offset_of!(FpEntry, used_ns));

    pub const T_IP_PARTIAL: i16 = o(offset_of!(FpTunnel, ip_partial));

    pub const P_TUN_PORT: i16 = o(offset_of!(FpPort, tun_port));
    pub const P_VTEP: i16 = o(offset_of!(FpPort, vtep));
}

/// Plain old data: a `#[repr(C)]` struct of integers and byte arrays with
/// no implicit padding, so every byte is initialised and any bytes are a
/// valid value.
///
/// # Safety
/// Implement only for such structs; the compile-time size checks below
/// prove the absence of padding for the ones here.
pub(crate) unsafe trait Pod: Copy + Default {}

// SAFETY: repr(C), fields of alignment <= 4 summing to the size (checked below).
unsafe impl Pod for FpKey {}
// SAFETY: repr(C), fields summing to the size (checked below), u64s 8-aligned.
unsafe impl Pod for FpEntry {}
// SAFETY: repr(C), 56 + 4 + 4 bytes, no padding (checked below).
unsafe impl Pod for FpTunnel {}
// SAFETY: repr(C), four 4-byte fields (checked below).
unsafe impl Pod for FpPort {}
// SAFETY: an integer.
unsafe impl Pod for u32 {}
// SAFETY: an integer.
unsafe impl Pod for u64 {}

const _: () = assert!(size_of::<FpKey>() == 4 * 4 + 6 * 2 + 2 * 2 + 16 * 2 + 4 + 4 + 2 * 4);
const _: () = assert!(size_of::<FpKey>() == 80);
const _: () = assert!(
    size_of::<FpEntry>()
        == 24 + 4 + 4 + 2 + 2 + 2 + 1 + 1 + 6 + 6 + 2 + 2 + 16 + 16 + 4 + 4 + 2 + 6 + 24
);
const _: () = assert!(size_of::<FpEntry>() == 128 && offset_of!(FpEntry, packets) % 8 == 0);
const _: () = assert!(offset_of!(FpEntry, max_len) + 2 <= 40);
const _: () = assert!(size_of::<FpTunnel>() == 64);
const _: () = assert!(size_of::<FpPort>() == 16);

/// The bytes of a plain-old-data value.
pub(crate) fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all size_of::<T>() bytes behind
    // the reference are initialised; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

/// The bytes of a plain-old-data value, writable.
pub(crate) fn bytes_of_mut<T: Pod>(v: &mut T) -> &mut [u8] {
    // SAFETY: as `bytes_of`; and every byte pattern is a valid `T: Pod`,
    // so writes through the slice cannot make an invalid value.
    unsafe { std::slice::from_raw_parts_mut(v as *mut T as *mut u8, size_of::<T>()) }
}
