//! Answers for the `reject` action: a TCP RST or an ICMP(v6) "destination
//! unreachable" built from the rejected packet and sent back on the port it
//! came in on, so that the sender fails fast instead of timing out.
//!
//! The builders are pure: they read the original frame and write a whole
//! Ethernet frame into a caller's buffer, returning its length. The reply
//! swaps the MAC and IP addresses, keeps any VLAN tags of the original
//! (the bytes between the MACs and the IP header are copied), and appears to
//! come from the destination the sender tried to reach, as a host that
//! refuses the connection would answer.
//!
//! When not to answer. RFC 1122 §3.2.2: no ICMP error about an ICMP error,
//! about a non-first fragment, or about a datagram whose link-layer
//! destination, IP destination or IP source is not a single host; RFC 4443
//! §2.4(e) says the same for ICMPv6 (without the "packet too big"
//! exception, which does not apply here). RFC 9293 §3.10.7.1: a segment
//! that carries RST is never answered with a RST. A RST also needs the whole
//! TCP header and the segment length, so fragments get none. Those cases
//! return [`RejectError::Suppressed`] and the packet is only dropped.
//!
//! How much to quote: RFC 1812 §4.3.2.3 keeps an IPv4 error within 576
//! bytes and RFC 4443 §2.4(c) an ICMPv6 error within 1280 (the minimum
//! IPv6 MTU), quoting as much of the original as fits.

use crate::buf::{FramePool, PacketDesc, FRAME_SIZE, HEADROOM};
use flowtable::RejectReply;
use std::net::{Ipv4Addr, Ipv6Addr};
use wire::ethernet::is_multicast;
use wire::icmpv4::msg_type as icmp4;
use wire::tcp::flags;
use wire::{ethertype, ipproto, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket};

const ICMP_HEADER_LEN: usize = 8;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
/// ICMP destination unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
const ICMP4_PORT_UNREACHABLE: u8 = 3;
const ICMP4_ADMIN_PROHIBITED: u8 = 13;
/// ICMPv6 destination unreachable codes (RFC 4443 §3.1).
const ICMP6_ADMIN_PROHIBITED: u8 = 1;
const ICMP6_PORT_UNREACHABLE: u8 = 4;

/// Why no answer was built. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectError {
    /// the packet is not ipv4 or ipv6
    NotIp,
    /// the packet is malformed or cut short
    Malformed,
    /// a tcp rst was asked for a packet that is not a whole tcp segment
    NotTcp,
    /// the rfcs forbid an answer to this packet
    Suppressed,
    /// the output buffer is too small for the answer
    BufferTooSmall,
}

/// Builds the answer `reply` to the Ethernet frame `frame`, whose IP header
/// starts at `l3`, into `out`; returns the length of the frame written.
pub fn build(
    frame: &[u8],
    l3: usize,
    reply: RejectReply,
    out: &mut [u8],
) -> Result<usize, RejectError> {
    if l3 < 14 || frame.len() < l3 {
        return Err(RejectError::Malformed);
    }
    // RFC 1122 §3.2.2: not about a frame sent to a link-layer group.
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&frame[0..6]);
    if is_multicast(&dst_mac) {
        return Err(RejectError::Suppressed);
    }
    let et = u16::from_be_bytes([frame[l3 - 2], frame[l3 - 1]]);
    match et {
        ethertype::IPV4 => build_v4(frame, l3, reply, out),
        ethertype::IPV6 => build_v6(frame, l3, reply, out),
        _ => Err(RejectError::NotIp),
    }
}

/// Copies the link-layer header with the MACs swapped.
fn write_l2(frame: &[u8], l3: usize, out: &mut [u8]) {
    out[..l3].copy_from_slice(&frame[..l3]);
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[0..6]);
}

fn build_v4(
    frame: &[u8],
    l3: usize,
    reply: RejectReply,
    out: &mut [u8],
) -> Result<usize, RejectError> {
    let ip = Ipv4Packet::new_checked(&frame[l3..]).map_err(|_| RejectError::Malformed)?;
    let (src, dst) = (Ipv4Addr::from(ip.src_addr()), Ipv4Addr::from(ip.dst_addr()));
    if ip.frag_offset() != 0 || !wire::ipv4::is_single_host(src) || !wire::ipv4::is_single_host(dst)
    {
        return Err(RejectError::Suppressed);
    }
    let ip_hl = ip.header_len();
    let ip_len = usize::from(ip.total_len());
    let payload = &frame[l3 + ip_hl..l3 + ip_len];
    if reply == RejectReply::TcpRst {
        if ip.protocol() != ipproto::TCP || ip.more_frags() {
            return Err(RejectError::NotTcp);
        }
        let tcp = TcpPacket::new_checked(payload).map_err(|_| RejectError::Malformed)?;
        let total = l3 + IPV4_LEN + TCP_LEN;
        let out = out.get_mut(..total).ok_or(RejectError::BufferTooSmall)?;
        out.fill(0);
        write_l2(frame, l3, out);
        write_rst(&tcp, &mut out[l3 + IPV4_LEN..])?;
        let mut t = TcpPacket::new_unchecked(&mut out[l3 + IPV4_LEN..]);
        t.fill_checksum_v4(dst.octets(), src.octets());
        let mut rip = Ipv4Packet::new_unchecked(&mut out[l3..]);
        write_ip4(&mut rip, ipproto::TCP, IPV4_LEN + TCP_LEN, dst, src);
        // Linux sends its RSTs with DF set; so do we.
        rip.set_flags_frag(true, false, 0);
        rip.fill_checksum();
        return Ok(total);
    }
    // RFC 1122 §3.2.2: never an error about an ICMP error (only queries
    // such as echo may be answered with one).
    if ip.protocol() == ipproto::ICMP
        && payload.first().is_none_or(|&t| {
            matches!(
                t,
                icmp4::DEST_UNREACHABLE
                    | icmp4::REDIRECT
                    | icmp4::TIME_EXCEEDED
                    | icmp4::PARAM_PROBLEM
                    | 4 // source quench
            )
        })
    {
        return Err(RejectError::Suppressed);
    }
    let quote = ip_len.min(wire::ipv4::ERROR_DATAGRAM_MAX - IPV4_LEN - ICMP_HEADER_LEN);
    let ip_total = IPV4_LEN + ICMP_HEADER_LEN + quote;
    let total = l3 + ip_total;
    let out = out.get_mut(..total).ok_or(RejectError::BufferTooSmall)?;
    out.fill(0);
    write_l2(frame, l3, out);
    let mut rip = Ipv4Packet::new_unchecked(&mut out[l3..]);
    write_ip4(&mut rip, ipproto::ICMP, ip_total, dst, src);
    rip.fill_checksum();
    let body = &mut out[l3 + IPV4_LEN..];
    body[ICMP_HEADER_LEN..].copy_from_slice(&frame[l3..l3 + quote]);
    let mut icmp = Icmpv4Packet::new_unchecked(body);
    icmp.set_msg_type(icmp4::DEST_UNREACHABLE);
    icmp.set_code(match reply {
        RejectReply::PortUnreachable => ICMP4_PORT_UNREACHABLE,
        _ => ICMP4_ADMIN_PROHIBITED,
    });
    icmp.fill_checksum();
    Ok(total)
}

fn write_ip4(rip: &mut Ipv4Packet<&mut [u8]>, proto: u8, len: usize, src: Ipv4Addr, dst: Ipv4Addr) {
    rip.set_version_ihl(5);
    rip.set_total_len(len as u16);
    rip.set_ttl(wire::ipv4::DEFAULT_TTL);
    rip.set_protocol(proto);
    rip.set_src_addr(src.octets());
    rip.set_dst_addr(dst.octets());
}

/// Writes the RST answering `seg` into `out` (checksum left to the
/// caller). RFC 9293 §3.10.7.1: "If the incoming segment has an ACK field,
/// the reset takes its sequence number from the ACK field of the segment,
/// otherwise the reset has sequence number zero and the ACK field is set to
/// the sum of the sequence number and segment length of the incoming
/// segment"; SYN and FIN each count as one (§3.4).
fn write_rst(seg: &TcpPacket<&[u8]>, out: &mut [u8]) -> Result<(), RejectError> {
    let f = seg.flags();
    if f & flags::RST != 0 {
        return Err(RejectError::Suppressed);
    }
    let mut t = TcpPacket::new_unchecked(out);
    t.set_src_port(seg.dst_port());
    t.set_dst_port(seg.src_port());
    t.set_header_len(TCP_LEN);
    if f & flags::ACK != 0 {
        t.set_seq_number(seg.ack_number());
        t.set_flags(flags::RST);
    } else {
        let seg_len = seg.payload().len() as u32
            + u32::from(f & flags::SYN != 0)
            + u32::from(f & flags::FIN != 0);
        t.set_seq_number(0);
        t.set_ack_number(seg.seq_number().wrapping_add(seg_len));
        t.set_flags(flags::RST | flags::ACK);
    }
    Ok(())
}

fn build_v6(
    frame: &[u8],
    l3: usize,
    reply: RejectReply,
    out: &mut [u8],
) -> Result<usize, RejectError> {
    let ip = Ipv6Packet::new_checked(&frame[l3..]).map_err(|_| RejectError::Malformed)?;
    let (src, dst) = (Ipv6Addr::from(ip.src_addr()), Ipv6Addr::from(ip.dst_addr()));
    if src.is_unspecified() || src.is_multicast() || dst.is_multicast() || dst.is_unspecified() {
        return Err(RejectError::Suppressed);
    }
    let up = ip.upper_layer().map_err(|_| RejectError::Malformed)?;
    if up.fragment.is_some_and(|f| !f.is_first()) {
        return Err(RejectError::Suppressed);
    }
    let ip_len = IPV6_LEN + usize::from(ip.payload_len());
    let upper = frame
        .get(l3 + up.offset..l3 + ip_len)
        .ok_or(RejectError::Malformed)?;
    if reply == RejectReply::TcpRst {
        if up.protocol != ipproto::TCP || up.fragment.is_some() {
            return Err(RejectError::NotTcp);
        }
        let tcp = TcpPacket::new_checked(upper).map_err(|_| RejectError::Malformed)?;
        let total = l3 + IPV6_LEN + TCP_LEN;
        let out = out.get_mut(..total).ok_or(RejectError::BufferTooSmall)?;
        out.fill(0);
        write_l2(frame, l3, out);
        write_ip6(&mut out[l3..], ipproto::TCP, TCP_LEN, dst, src);
        write_rst(&tcp, &mut out[l3 + IPV6_LEN..])?;
        let mut t = TcpPacket::new_unchecked(&mut out[l3 + IPV6_LEN..]);
        t.fill_checksum_v6(&dst.octets(), &src.octets());
        return Ok(total);
    }
    // RFC 4443 §2.4(e.1): no error about an ICMPv6 error (types below 128).
    if up.protocol == ipproto::ICMPV6 && upper.first().is_none_or(|&t| t < 128) {
        return Err(RejectError::Suppressed);
    }
    let quote = ip_len.min(wire::ipv6::MIN_MTU - IPV6_LEN - ICMP_HEADER_LEN);
    let payload_len = ICMP_HEADER_LEN + quote;
    let total = l3 + IPV6_LEN + payload_len;
    let out = out.get_mut(..total).ok_or(RejectError::BufferTooSmall)?;
    out.fill(0);
    write_l2(frame, l3, out);
    write_ip6(&mut out[l3..], ipproto::ICMPV6, payload_len, dst, src);
    let body = &mut out[l3 + IPV6_LEN..];
    body[ICMP_HEADER_LEN..].copy_from_slice(&frame[l3..l3 + quote]);
    let mut icmp = Icmpv6Packet::new_unchecked(body);
    icmp.set_msg_type(wire::icmpv6::msg_type::DEST_UNREACHABLE);
    icmp.set_code(match reply {
        RejectReply::PortUnreachable => ICMP6_PORT_UNREACHABLE,
        _ => ICMP6_ADMIN_PROHIBITED,
    });
    icmp.fill_checksum(&dst.octets(), &src.octets());
    Ok(total)
}

fn write_ip6(out: &mut [u8], next: u8, payload_len: usize, src: Ipv6Addr, dst: Ipv6Addr) {
    let mut rip = Ipv6Packet::new_unchecked(out);
    rip.set_version(6);
    rip.set_payload_len(payload_len as u16);
    rip.set_next_header(next);
    rip.set_hop_limit(wire::ipv4::DEFAULT_TTL);
    rip.set_src_addr(src.octets());
    rip.set_dst_addr(dst.octets());
}

/// Builds the answer to `pkt` in a new frame of `pool`; `None` when no
/// answer may be sent, it cannot be built or no frame is free.
pub fn reply(
    pool: &mut FramePool,
    pkt: &PacketDesc,
    l3: usize,
    how: RejectReply,
) -> Option<PacketDesc> {
    // The pool cannot lend the original and the reply at once, so the
    // original is copied to the stack first, as for the tunnel's ICMP
    // errors; this runs once per rejected packet, not per allowed one.
    let mut orig = [0u8; FRAME_SIZE - HEADROOM];
    let data = pool.data(pkt);
    let n = data.len().min(orig.len());
    orig[..n].copy_from_slice(&data[..n]);
    let mut r = pool.alloc()?;
    r.len = (FRAME_SIZE - HEADROOM).min(l3 + wire::ipv6::MIN_MTU) as u16;
    match build(&orig[..n], l3, how, pool.data_mut(&r)) {
        Ok(len) => {
            r.len = len as u16;
            Some(r)
        }
        Err(_) => {
            pool.free(r);
            None
        }
    }
}

#[cfg(test)]
#[path = "reject_tests.rs"]
mod tests;
