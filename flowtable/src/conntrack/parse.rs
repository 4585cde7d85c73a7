//! [`CtPacket::parse`]: the fields conntrack looks at, read from a frame
//! that [`crate::extract::extract`] has already accepted.
//!
//! The parser reads the IP header again from `Layout::l3` rather than
//! trusting `Layout::l4`, because the layout does not say whether the
//! packet is a fragment (a first fragment has an L4 offset) and gives no L4
//! offset at all for protocols without ports. Every read is bounds-checked,
//! so any bytes and any layout give a value or an error, never a panic.
//!
//! What is tracked follows Open vSwitch's userspace conntrack:
//!
//! - TCP, UDP and ICMP/ICMPv6 echo by their ports or echo identifier; other
//!   IP protocols (SCTP, GRE, ESP, ...) by addresses alone, ports zero, as
//!   OVS's "other" protocol handler does.
//! - ICMP errors (RFC 792 types 3, 4, 5, 11, 12; RFC 4443 §3 types 1-4) by
//!   the tuple of the packet they quote. The quote is parsed laxly: it may
//!   be cut short (RFC 792 only promises the IP header and 8 bytes of data)
//!   so only the IP header and the first 8 L4 bytes are required, which
//!   hold the ports or the echo identifier. As in OVS, the quoted packet's
//!   source must be the error's destination, and a quote of anything but an
//!   echo (another error, say) is refused.
//! - IP fragments (IPv4, and IPv6 with a Fragment header), without
//!   reassembly, the way Cilium's eBPF datapath tracks them: a first
//!   fragment (offset 0, more to come) is parsed like a whole packet except
//!   that its L4 lengths are not held against its own bytes (a UDP length
//!   counts the whole datagram; TCP options may run into the next
//!   fragment), as `extract` does; only the fixed L4 header must be there.
//!   A later fragment has no L4 header, so it parses with zero ports and
//!   [`Fragment::Later`]; [`super::ConnTrack::process`] gives it the ports
//!   its first fragment was seen with (`frag.rs`), or `+inv` when that was
//!   never seen. An ICMP error quoting a fragment and a fragmented ICMP
//!   error are not tracked.
//!
//! Other ICMP messages (neighbour discovery, timestamps) parse with zero
//! ports and conntrack reports them `+inv`, as it does for OVS.

use super::types::{proto, CtPacket, CtVerdict, Fragment, InnerTuple, TcpInfo};
use crate::extract::Layout;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wire::{ethertype, ipproto, Ipv4Packet, Ipv6Packet};

/// Why a packet cannot be tracked. The `ct` action reports such a packet
/// as `+trk+inv` ([`CtParseError::verdict`]), as OVS does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtParseError {
    /// Not an IPv4 or IPv6 packet.
    NotIp,
    /// The IP header at `offset` in the frame is cut short or inconsistent.
    BadIp {
        /// Frame offset of the IP header.
        offset: usize,
    },
    /// The L4 header of protocol `proto` at `offset` is cut short or has a
    /// bad length field.
    BadL4 {
        /// IP protocol of the header.
        proto: u8,
        /// Frame offset of the L4 header.
        offset: usize,
    },
    /// An ICMP error whose quoted packet, at `offset`, is cut before its
    /// first 8 L4 bytes, is of the other IP version, quotes a fragment or an
    /// ICMP message other than echo, or was not sent by the error's target.
    BadQuote {
        /// Frame offset of the quoted IP header.
        offset: usize,
    },
}

impl CtParseError {
    /// The verdict `ct` gives a packet it cannot parse: tracked, invalid.
    pub fn verdict(&self) -> CtVerdict {
        CtVerdict::invalid()
    }
}

impl std::fmt::Display for CtParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtParseError::NotIp => write!(f, "not an IP packet"),
            CtParseError::BadIp { offset } => write!(f, "bad IP header at offset {offset}"),
            CtParseError::BadL4 { proto, offset } => {
                write!(f, "bad header of IP protocol {proto} at offset {offset}")
            }
            CtParseError::BadQuote { offset } => {
                write!(f, "bad packet quoted by an ICMP error at offset {offset}")
            }
        }
    }
}

impl std::error::Error for CtParseError {}

/// Bytes of the quoted L4 header an ICMP error must carry: ports, or echo
/// type, code, checksum and identifier (RFC 792, "Internet Header + 64
/// bits of Original Data Datagram").
const QUOTE_L4_LEN: usize = 8;

/// TCP option kinds (RFC 9293 §3.1, RFC 7323 §2.2).
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_WSCALE: u8 = 3;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn v4(b: &[u8], at: usize) -> Option<IpAddr> {
    let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(a)))
}

fn v6(b: &[u8], at: usize) -> Option<IpAddr> {
    let a: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(a)))
}

/// Whether `t` is an ICMP (`v6` false) or ICMPv6 error type.
fn is_error(v6: bool, t: u8) -> bool {
    if v6 {
        matches!(t, 1..=4)
    } else {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
}

/// Whether `t` is an echo request or reply.
fn is_echo(v6: bool, t: u8) -> bool {
    if v6 {
        matches!(t, 128 | 129)
    } else {
        matches!(t, 0 | 8)
    }
}

/// The window scale option of a SYN's options, if present and well formed.
/// The walk stops at the end-of-list option or at any option whose length
/// would run past the header (RFC 9293 §3.2: a malformed option list is
/// not trusted past the fault).
fn wscale(opts: &[u8]) -> Option<u8> {
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            OPT_END => return None,
            OPT_NOP => i += 1,
            _ => {
                let len = *opts.get(i + 1)? as usize;
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind == OPT_WSCALE && len == 3 {
                    return Some(opts[i + 2]);
                }
                i += len;
            }
        }
    }
    None
}

/// Where the L3 header says its L4 header starts and ends in `pkt`.
struct Ip {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: usize,
    end: usize,
    frag: Fragment,
}

impl CtPacket {
    /// Reads the fields conntrack needs from Ethernet frame `pkt`, whose
    /// headers `extract` found at `lay`.
    pub fn parse(pkt: &[u8], lay: &Layout) -> Result<CtPacket, CtParseError> {
        let l3 = lay.l3 as usize;
        // The ethertype is the two bytes before the L3 header, behind any
        // VLAN tag.
        let ip = match l3.checked_sub(2).and_then(|at| be16(pkt, at)) {
            Some(ethertype::IPV4) => ipv4(pkt, l3)?,
            Some(ethertype::IPV6) => ipv6(pkt, l3)?,
            _ => return Err(CtParseError::NotIp),
        };
        let v6 = ip.src.is_ipv6();
        let l4 = pkt.get(ip.l4..ip.end).unwrap_or_default();
        let bad = CtParseError::BadL4 {
            proto: ip.proto,
            offset: ip.l4,
        };
        let mut p = CtPacket::base(ip.src, ip.dst, ip.proto, 0, 0);
        p.frag = ip.frag;
        let first = match ip.frag {
            Fragment::Whole => false,
            Fragment::First { .. } => true,
            // No L4 header: the ports come from the first fragment.
            Fragment::Later { .. } => return Ok(p),
        };
        match ip.proto {
            ipproto::TCP => {
                let off = l4.get(12).ok_or(bad)? >> 4;
                let hlen = off as usize * 4;
                if hlen < 20 || l4.len() < 20 || (hlen > l4.len() && !first) {
                    return Err(bad);
                }
                // A first fragment's options may continue in the next one.
                let hlen = hlen.min(l4.len());
                let flags = l4[13];
                p.sport = be16(l4, 0).ok_or(bad)?;
                p.dport = be16(l4, 2).ok_or(bad)?;
                p.tcp = TcpInfo {
                    flags,
                    seq: be32(l4, 4).ok_or(bad)?,
                    ack: be32(l4, 8).ok_or(bad)?,
                    window: be16(l4, 14).ok_or(bad)?,
                    // RFC 7323 §2.2: the option is only meaningful on a SYN.
                    wscale: if flags & super::tcp_flags::SYN != 0 {
                        wscale(&l4[20..hlen])
                    } else {
                        None
                    },
                    payload_len: (l4.len() - hlen) as u32,
                };
            }
            ipproto::UDP => {
                // The length field is not checked against the bytes: for
                // a first fragment it counts the whole datagram.
                if l4.len() < 8 {
                    return Err(bad);
                }
                p.sport = be16(l4, 0).ok_or(bad)?;
                p.dport = be16(l4, 2).ok_or(bad)?;
            }
            ipproto::ICMP | ipproto::ICMPV6 if (ip.proto == ipproto::ICMPV6) == v6 => {
                if l4.len() < 8 {
                    return Err(bad);
                }
                p.icmp_type = l4[0];
                p.icmp_code = l4[1];
                if is_echo(v6, p.icmp_type) {
                    let id = be16(l4, 4).ok_or(bad)?;
                    (p.sport, p.dport) = (id, id);
                } else if is_error(v6, p.icmp_type) && !first {
                    let at = ip.l4 + 8;
                    let q = quote(&l4[8..], v6).ok_or(CtParseError::BadQuote { offset: at })?;
                    // OVS checks this too: an error goes back to the host
                    // that sent the packet it quotes.
                    if q.src != ip.dst {
                        return Err(CtParseError::BadQuote { offset: at });
                    }
                    p.inner = Some(q);
                }
            }
            // Tracked by addresses alone; an ICMP of the other family lands
            // here too and is refused later as a connection of its own.
            _ => {}
        }
        Ok(p)
    }
}

/// The IPv4 header at `l3`, lengths consistent, and where it sits in its
/// datagram.
fn ipv4(pkt: &[u8], l3: usize) -> Result<Ip, CtParseError> {
    let bad = CtParseError::BadIp { offset: l3 };
    let ip = Ipv4Packet::new_checked(pkt.get(l3..).ok_or(bad)?).map_err(|_| bad)?;
    let id = u32::from(ip.ident());
    let frag = match (ip.frag_offset(), ip.more_frags()) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    };
    Ok(Ip {
        frag,
        src: IpAddr::V4(Ipv4Addr::from(ip.src_addr())),
        dst: IpAddr::V4(Ipv4Addr::from(ip.dst_addr())),
        proto: ip.protocol(),
        l4: l3 + ip.header_len(),
        // The total length, not the frame: Ethernet pads short frames.
        end: l3 + ip.total_len() as usize,
    })
}

/// The IPv6 header at `l3` and its extension headers, and where it sits in
/// its datagram (the Fragment header, if any).
fn ipv6(pkt: &[u8], l3: usize) -> Result<Ip, CtParseError> {
    let bad = CtParseError::BadIp { offset: l3 };
    let ip = Ipv6Packet::new_checked(pkt.get(l3..).ok_or(bad)?).map_err(|_| bad)?;
    let up = ip.upper_layer().map_err(|_| bad)?;
    let frag = match up.fragment {
        None => Fragment::Whole,
        // RFC 6946 §4: an atomic fragment is processed as a whole packet.
        Some(f) if f.offset == 0 && !f.more => Fragment::Whole,
        Some(f) if f.offset == 0 => Fragment::First { id: f.ident },
        Some(f) => Fragment::Later { id: f.ident },
    };
    Ok(Ip {
        frag,
        src: IpAddr::V6(Ipv6Addr::from(ip.src_addr())),
        dst: IpAddr::V6(Ipv6Addr::from(ip.dst_addr())),
        proto: up.protocol,
        l4: l3 + up.offset,
        end: l3 + Ipv6Packet::<&[u8]>::HEADER_LEN + ip.payload_len() as usize,
    })
}

/// The tuple of the packet an ICMP error quotes, from `q`, which may be
/// cut anywhere after the first 8 L4 bytes. `v6`: the error is ICMPv6, so
/// the quote must be IPv6.
fn quote(q: &[u8], v6: bool) -> Option<InnerTuple> {
    let (src, dst, proto, l4) = if v6 {
        if q.first()? >> 4 != 6 {
            return None;
        }
        let (proto, l4) = quoted_ext(q)?;
        (self::v6(q, 8)?, self::v6(q, 24)?, proto, l4)
    } else {
        let vihl = *q.first()?;
        let hlen = (vihl & 0x0f) as usize * 4;
        // A quoted later fragment carries no L4 header to read.
        if vihl >> 4 != 4 || hlen < 20 || be16(q, 6)? & 0x1fff != 0 {
            return None;
        }
        (v4(q, 12)?, v4(q, 16)?, *q.get(9)?, hlen)
    };
    let l4 = q.get(l4..)?;
    if l4.len() < QUOTE_L4_LEN {
        return None;
    }
    let (sport, dport) = match proto {
        proto::TCP | proto::UDP => (be16(l4, 0)?, be16(l4, 2)?),
        proto::ICMP | proto::ICMPV6 => {
            if (proto == proto::ICMPV6) != v6 || !is_echo(v6, l4[0]) {
                return None;
            }
            let id = be16(l4, 4)?;
            (id, id)
        }
        _ => (0, 0),
    };
    Some(InnerTuple {
        src,
        dst,
        proto,
        sport,
        dport,
    })
}

/// The upper-layer protocol and offset of a quoted IPv6 packet, walking its
/// extension headers within the bytes quoted (the payload length describes
/// the original packet, not the quote). A fragment header that is not the
/// first fragment's ends the walk without a result, as does a header cut
/// short or a chain longer than `Ipv6Packet::upper_layer` accepts.
fn quoted_ext(q: &[u8]) -> Option<(u8, usize)> {
    let mut proto = *q.get(6)?;
    let mut at = Ipv6Packet::<&[u8]>::HEADER_LEN;
    for _ in 0..=wire::ipv6::MAX_EXT_HEADERS {
        let len = match proto {
            ipproto::HOPOPTS
            | ipproto::ROUTING
            | ipproto::DSTOPTS
            | ipproto::MOBILITY
            | ipproto::HIP
            | ipproto::SHIM6 => (*q.get(at + 1)? as usize + 1) * 8,
            ipproto::AH => (*q.get(at + 1)? as usize + 2) * 4,
            ipproto::FRAGMENT => {
                if be16(q, at + 2)? >> 3 != 0 {
                    return None;
                }
                8
            }
            _ => return Some((proto, at)),
        };
        proto = *q.get(at)?;
        at += len;
    }
    None
}
