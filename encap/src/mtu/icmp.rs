//! ICMP "fragmentation needed" (IPv4) and "packet too big" (IPv6) builders.
//!
//! Given the inner Ethernet frame that did not fit, each builder writes a
//! complete Ethernet frame addressed back to its sender into a caller's
//! buffer and returns its length: MACs swapped, the IP source is the
//! original destination (or a gateway address the caller chooses, which is
//! required when the original destination cannot be a source, such as a
//! multicast group), the destination is the original source. Nothing is
//! allocated; a buffer that is too small is an error.
//!
//! How much of the original to quote. RFC 792 asks for the IP header and
//! the first 64 bits of data; RFC 1812 §4.3.2.3 lets the error carry as
//! much of the original as fits in a 576-byte datagram, which helps senders
//! behind NATs and tunnels match it, so IPv4 quotes up to 548 bytes. RFC
//! 4443 §2.4(c): an ICMPv6 error carries "as much of invoking packet as
//! possible without the ICMPv6 packet exceeding the minimum IPv6 MTU", so
//! IPv6 quotes up to 1232 bytes and the IPv6 packet is at most 1280.
//!
//! When not to answer. RFC 1122 §3.2.2 forbids ICMP errors about ICMP
//! errors, non-first fragments, and datagrams whose source or link-layer
//! destination is not a single host; RFC 4443 §2.4(e) forbids ICMPv6 errors
//! about ICMPv6 errors and unspecified or multicast sources, but makes
//! "packet too big" an exception for multicast destinations so that path
//! MTU discovery works for multicast. Those cases return
//! [`IcmpError::Suppressed`]. An IPv4 packet without DF gets no ICMP at all
//! ([`IcmpError::NotDf`]): the caller may fragment it instead.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use wire::ethernet::is_multicast;
use wire::icmpv4::msg_type as icmp4;
use wire::{ethertype, ipproto, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet};

use super::ETH_HEADER_LEN;

const ICMP_HEADER_LEN: usize = 8;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;

/// Why no ICMP error was built. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpError {
    /// inner frame is not an ipv4 packet
    NotIpv4,
    /// inner frame is not an ipv6 packet
    NotIpv6,
    /// inner packet is malformed
    Malformed,
    /// ipv4 packet does not have DF set and may be fragmented instead
    NotDf,
    /// rules forbid an icmp error about this packet
    Suppressed,
    /// no usable source address: give a gateway address
    NoSource,
    /// output buffer is too small for the icmp error
    BufferTooSmall,
}

impl IcmpError {
    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            IcmpError::NotIpv4 => "inner frame is not an ipv4 packet",
            IcmpError::NotIpv6 => "inner frame is not an ipv6 packet",
            IcmpError::Malformed => "inner packet is malformed",
            IcmpError::NotDf => "ipv4 packet does not have DF set and may be fragmented instead",
            IcmpError::Suppressed => "rules forbid an icmp error about this packet",
            IcmpError::NoSource => "no usable source address: give a gateway address",
            IcmpError::BufferTooSmall => "output buffer is too small for the icmp error",
        }
    }
}

impl fmt::Display for IcmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for IcmpError {}

/// Writes the swapped Ethernet header of a reply.
fn write_eth(out: &mut [u8], orig: &EthernetFrame<&[u8]>, et: u16) {
    out[0..6].copy_from_slice(&orig.src());
    out[6..12].copy_from_slice(&orig.dst());
    out[12..14].copy_from_slice(&et.to_be_bytes());
}

/// Builds an ICMPv4 "destination unreachable, fragmentation needed and DF
/// set" (type 3, code 4) with next-hop MTU `mtu` (RFC 1191 §4) about the
/// IPv4 packet in the Ethernet frame `inner`, into `out`. Returns the length
/// of the frame written.
pub fn frag_needed_v4(
    inner: &[u8],
    mtu: u16,
    gateway: Option<Ipv4Addr>,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    let eth = EthernetFrame::new_checked(inner).map_err(|_| IcmpError::Malformed)?;
    if eth.ethertype() != ethertype::IPV4 {
        return Err(IcmpError::NotIpv4);
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| IcmpError::Malformed)?;
    if !ip.dont_frag() {
        return Err(IcmpError::NotDf);
    }
    let (src, dst) = (Ipv4Addr::from(ip.src_addr()), Ipv4Addr::from(ip.dst_addr()));
    let icmp_error = ip.protocol() == ipproto::ICMP
        && ip.payload().first().is_none_or(|&t| {
            matches!(
                t,
                icmp4::DEST_UNREACHABLE
                    | icmp4::REDIRECT
                    | icmp4::TIME_EXCEEDED
                    | icmp4::PARAM_PROBLEM
                    | 4 // source quench
            )
        });
    if icmp_error
        || ip.frag_offset() != 0
        || !wire::ipv4::is_single_host(src)
        || dst.is_multicast()
        || dst.is_broadcast()
        || is_multicast(&eth.dst())
    {
        return Err(IcmpError::Suppressed);
    }
    let reply_src = gateway.unwrap_or(dst);
    let orig_len = usize::from(ip.total_len());
    let quote = orig_len.min(wire::ipv4::ERROR_DATAGRAM_MAX - IPV4_LEN - ICMP_HEADER_LEN);
    let ip_total = IPV4_LEN + ICMP_HEADER_LEN + quote;
    let total = ETH_HEADER_LEN + ip_total;
    let out = out.get_mut(..total).ok_or(IcmpError::BufferTooSmall)?;
    out.fill(0);
    write_eth(out, &eth, ethertype::IPV4);

    let mut rip = Ipv4Packet::new_unchecked(&mut out[ETH_HEADER_LEN..]);
    rip.set_version_ihl(5);
    // Internetwork control precedence, as routers mark the errors they
    // originate (RFC 1812 §4.3.2.5 allows 6 or 7).
    rip.set_tos(0xc0);
    rip.set_total_len(ip_total as u16);
    rip.set_ttl(wire::ipv4::DEFAULT_TTL);
    rip.set_protocol(ipproto::ICMP);
    rip.set_src_addr(reply_src.octets());
    rip.set_dst_addr(src.octets());
    rip.fill_checksum();

    let body = &mut out[ETH_HEADER_LEN + IPV4_LEN..];
    body[ICMP_HEADER_LEN..].copy_from_slice(&eth.payload()[..quote]);
    let mut icmp = Icmpv4Packet::new_unchecked(body);
    icmp.set_msg_type(icmp4::DEST_UNREACHABLE);
    icmp.set_code(4);
    // RFC 1191 §4: the low-order 16 bits of the "unused" word carry the
    // next-hop MTU; the high-order 16 bits stay zero.
    icmp.set_rest_of_header(u32::from(mtu));
    icmp.fill_checksum();
    Ok(total)
}

/// Builds an ICMPv6 "packet too big" (type 2, code 0, RFC 4443 §3.2) with
/// MTU `mtu` about the IPv6 packet in the Ethernet frame `inner`, into
/// `out`. Returns the length of the frame written.
pub fn packet_too_big_v6(
    inner: &[u8],
    mtu: u32,
    gateway: Option<Ipv6Addr>,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    let eth = EthernetFrame::new_checked(inner).map_err(|_| IcmpError::Malformed)?;
    if eth.ethertype() != ethertype::IPV6 {
        return Err(IcmpError::NotIpv6);
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).map_err(|_| IcmpError::Malformed)?;
    let (src, dst) = (Ipv6Addr::from(ip.src_addr()), Ipv6Addr::from(ip.dst_addr()));
    // RFC 4443 §2.4(e.1): no error about an ICMPv6 error message (types
    // below 128). A chain we cannot walk is not known to be one.
    let icmp_error = ip.upper_layer().is_ok_and(|u| {
        u.protocol == ipproto::ICMPV6
            && u.fragment.is_none_or(|f| f.is_first())
            && eth.payload().get(u.offset).is_some_and(|&t| t < 128)
    });
    if icmp_error || src.is_unspecified() || src.is_multicast() {
        return Err(IcmpError::Suppressed);
    }
    let reply_src = match gateway {
        Some(g) => g,
        None if dst.is_multicast() || dst.is_unspecified() => return Err(IcmpError::NoSource),
        None => dst,
    };
    let orig_len = IPV6_LEN + usize::from(ip.payload_len());
    let quote = orig_len.min(wire::ipv6::MIN_MTU - IPV6_LEN - ICMP_HEADER_LEN);
    let payload_len = ICMP_HEADER_LEN + quote;
    let total = ETH_HEADER_LEN + IPV6_LEN + payload_len;
    let out = out.get_mut(..total).ok_or(IcmpError::BufferTooSmall)?;
    out.fill(0);
    write_eth(out, &eth, ethertype::IPV6);

    let mut rip = Ipv6Packet::new_unchecked(&mut out[ETH_HEADER_LEN..]);
    rip.set_version(6);
    rip.set_payload_len(payload_len as u16);
    rip.set_next_header(ipproto::ICMPV6);
    rip.set_hop_limit(wire::ipv4::DEFAULT_TTL);
    rip.set_src_addr(reply_src.octets());
    rip.set_dst_addr(src.octets());

    let body = &mut out[ETH_HEADER_LEN + IPV6_LEN..];
    body[4..8].copy_from_slice(&mtu.to_be_bytes());
    body[ICMP_HEADER_LEN..].copy_from_slice(&eth.payload()[..quote]);
    let mut icmp = Icmpv6Packet::new_unchecked(body);
    icmp.set_msg_type(wire::icmpv6::msg_type::PACKET_TOO_BIG);
    icmp.set_code(0);
    icmp.fill_checksum(&reply_src.octets(), &src.octets());
    Ok(total)
}
