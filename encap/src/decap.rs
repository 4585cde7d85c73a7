//! Decapsulation: validate an outer Geneve frame, return the tunnel metadata
//! and where the inner Ethernet frame lies.
//!
//! [`decap`] reads the outer Ethernet, IPv4 or IPv6, UDP and Geneve headers
//! of a received frame through the `wire` views, checks everything a tunnel
//! endpoint must check, and returns a [`Decapped`]: the metadata the flow
//! lookup matches on (outer addresses, TOS, TTL, VNI, flags, raw options)
//! and the offset and length of the inner frame inside the caller's buffer.
//! The inner frame is not copied; the datapath advances its packet
//! descriptor to it.
//!
//! Every rejection is a [`DecapError`] variant whose [`DecapError::name`] is
//! the drop counter it increments, so a dropped packet always says why. The
//! option-to-slot mapping ([`crate::TlvMap::decode`]) reports through the
//! same enum, because an unknown critical option is a decap drop too.
//!
//! What is deliberately not checked here: whether the outer destination is
//! one of our addresses and which tunnel port the packet belongs to. Those
//! are lookups against configuration that the datapath owns.
//!
//! Outer frames carrying a VLAN tag are refused as `geneve_not_ip`: the
//! underlay port strips its own tag before a frame reaches tunnel receive.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wire::geneve::{GeneveError, GenevePacket, PROTO_ETHERNET};
use wire::{ethertype, ipproto, ErrorKind, EthernetFrame, Ipv4Packet, Ipv6Packet, UdpPacket};

use crate::options::Options;

/// Receive-side policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecapConfig {
    /// UDP destination port that identifies Geneve.
    pub port: u16,
    /// Verify a non-zero UDP checksum (IPv4) or the mandatory one (IPv6).
    pub verify_udp_checksum: bool,
    /// Accept a zero UDP checksum over IPv6, as RFC 6935 allows a tunnel
    /// endpoint to be configured to do. Off by default (RFC 8200 §8.1).
    pub accept_ipv6_zero_checksum: bool,
}

impl Default for DecapConfig {
    fn default() -> DecapConfig {
        DecapConfig {
            port: wire::geneve::PORT,
            verify_udp_checksum: true,
            accept_ipv6_zero_checksum: false,
        }
    }
}

/// Why a received frame is not a valid Geneve packet for us. Each variant's
/// doc comment is its message; [`DecapError::name`] is its drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecapError {
    /// outer headers truncated
    Truncated,
    /// outer frame is not ipv4 or ipv6
    NotIp,
    /// outer ip header is malformed
    BadOuterIp,
    /// outer ipv4 header checksum is wrong
    BadIpChecksum,
    /// outer ip packet is a fragment
    Fragment,
    /// outer ip packet is not udp
    NotUdp,
    /// udp destination port is not the geneve port
    WrongPort,
    /// udp length field is malformed
    BadUdpLen,
    /// udp checksum is wrong or missing
    BadUdpChecksum,
    /// geneve version is not 0
    BadVersion,
    /// geneve option length runs past the packet
    BadOptLen,
    /// geneve payload is not an ethernet frame
    NotEthernet,
    /// inner ethernet frame truncated
    InnerTruncated,
    /// unknown geneve option with the critical bit set
    CriticalUnknown,
    /// mapped geneve option has a different length than its mapping
    OptLenMismatch,
}

impl DecapError {
    /// Every variant, in declaration order, for sizing counter arrays.
    pub const ALL: [DecapError; 15] = [
        DecapError::Truncated,
        DecapError::NotIp,
        DecapError::BadOuterIp,
        DecapError::BadIpChecksum,
        DecapError::Fragment,
        DecapError::NotUdp,
        DecapError::WrongPort,
        DecapError::BadUdpLen,
        DecapError::BadUdpChecksum,
        DecapError::BadVersion,
        DecapError::BadOptLen,
        DecapError::NotEthernet,
        DecapError::InnerTruncated,
        DecapError::CriticalUnknown,
        DecapError::OptLenMismatch,
    ];

    /// The drop counter this error increments.
    pub const fn name(self) -> &'static str {
        match self {
            DecapError::Truncated => "geneve_truncated",
            DecapError::NotIp => "geneve_not_ip",
            DecapError::BadOuterIp => "geneve_bad_outer_ip",
            DecapError::BadIpChecksum => "geneve_bad_ip_csum",
            DecapError::Fragment => "geneve_fragment",
            DecapError::NotUdp => "geneve_not_udp",
            DecapError::WrongPort => "geneve_wrong_port",
            DecapError::BadUdpLen => "geneve_bad_udp_len",
            DecapError::BadUdpChecksum => "geneve_bad_udp_csum",
            DecapError::BadVersion => "geneve_bad_version",
            DecapError::BadOptLen => "geneve_bad_opt_len",
            DecapError::NotEthernet => "geneve_not_ethernet",
            DecapError::InnerTruncated => "geneve_inner_truncated",
            DecapError::CriticalUnknown => "geneve_critical_unknown",
            DecapError::OptLenMismatch => "geneve_opt_len_mismatch",
        }
    }

    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            DecapError::Truncated => "outer headers truncated",
            DecapError::NotIp => "outer frame is not ipv4 or ipv6",
            DecapError::BadOuterIp => "outer ip header is malformed",
            DecapError::BadIpChecksum => "outer ipv4 header checksum is wrong",
            DecapError::Fragment => "outer ip packet is a fragment",
            DecapError::NotUdp => "outer ip packet is not udp",
            DecapError::WrongPort => "udp destination port is not the geneve port",
            DecapError::BadUdpLen => "udp length field is malformed",
            DecapError::BadUdpChecksum => "udp checksum is wrong or missing",
            DecapError::BadVersion => "geneve version is not 0",
            DecapError::BadOptLen => "geneve option length runs past the packet",
            DecapError::NotEthernet => "geneve payload is not an ethernet frame",
            DecapError::InnerTruncated => "inner ethernet frame truncated",
            DecapError::CriticalUnknown => "unknown geneve option with the critical bit set",
            DecapError::OptLenMismatch => {
                "mapped geneve option has a different length than its mapping"
            }
        }
    }
}

impl fmt::Display for DecapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for DecapError {}

/// What the outer headers said about a tunnelled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelMeta {
    /// Outer source address (the remote tunnel endpoint).
    pub src: IpAddr,
    /// Outer destination address (ours).
    pub dst: IpAddr,
    /// IPv4 TOS or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Outer UDP source port (the sender's flow entropy).
    pub src_port: u16,
    /// Virtual network identifier.
    pub vni: u32,
    /// The Geneve O bit: a control packet.
    pub oam: bool,
    /// The Geneve C bit: critical options present.
    pub critical: bool,
    /// The options, exactly as received.
    pub options: Options,
}

impl Default for TunnelMeta {
    fn default() -> TunnelMeta {
        TunnelMeta::new()
    }
}

impl TunnelMeta {
    /// Empty metadata (unspecified IPv4 addresses, no options), to be
    /// filled by [`decap_into`].
    pub const fn new() -> TunnelMeta {
        TunnelMeta {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tos: 0,
            ttl: 0,
            src_port: 0,
            vni: 0,
            oam: false,
            critical: false,
            options: Options::new(),
        }
    }
}

/// A validated Geneve frame: its metadata and the inner frame's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapped {
    /// Tunnel metadata.
    pub meta: TunnelMeta,
    /// Offset of the inner Ethernet frame in the buffer given to [`decap`].
    pub inner_off: usize,
    /// Length of the inner Ethernet frame.
    pub inner_len: usize,
}

/// Maps an outer IP parse error to a drop reason. A length field that
/// claims more bytes than arrived (at `len_at`, plus `base` for IPv6, whose
/// payload length excludes the fixed header) is a frame cut short, or a
/// lying header; counting it as truncation matches the other layers.
#[inline]
fn ip_error(kind: ErrorKind, ip: &[u8], len_at: usize, base: usize) -> DecapError {
    let claimed = ip
        .get(len_at..len_at + 2)
        .map(|b| base + usize::from(u16::from_be_bytes([b[0], b[1]])));
    match kind {
        ErrorKind::Truncated => DecapError::Truncated,
        ErrorKind::BadTotalLen | ErrorKind::BadLength if claimed > Some(ip.len()) => {
            DecapError::Truncated
        }
        _ => DecapError::BadOuterIp,
    }
}

/// Validates an outer Geneve frame (Ethernet, IPv4 or IPv6, UDP, Geneve)
/// and locates the inner Ethernet frame in it. A convenience wrapper of
/// [`decap_into`] for tests and the slow path.
#[inline]
pub fn decap(frame: &[u8], cfg: &DecapConfig) -> Result<Decapped, DecapError> {
    let mut meta = TunnelMeta::new();
    let (inner_off, inner_len) = decap_into(frame, cfg, &mut meta)?;
    Ok(Decapped {
        meta,
        inner_off,
        inner_len,
    })
}

/// Validates an outer Geneve frame like [`decap`], writing the metadata
/// into `meta` (which the datapath reuses from packet to packet, so the
/// option buffer is neither zeroed nor moved) and returning the offset and
/// length of the inner Ethernet frame. On error `meta` holds no useful
/// value and may have been partly written.
#[inline]
pub fn decap_into(
    frame: &[u8],
    cfg: &DecapConfig,
    meta: &mut TunnelMeta,
) -> Result<(usize, usize), DecapError> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DecapError::Truncated)?;
    let l3 = EthernetFrame::<&[u8]>::HEADER_LEN;
    let (src, dst, tos, ttl, l4_off, l4) = match eth.ethertype() {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.payload())
                .map_err(|e| ip_error(e.kind, eth.payload(), 2, 0))?;
            // RFC 1122 §3.2.1.2: a host MUST verify the header checksum of
            // every datagram it receives; we terminate the outer header.
            if !ip.verify_checksum() {
                return Err(DecapError::BadIpChecksum);
            }
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Err(DecapError::Fragment);
            }
            if ip.protocol() != ipproto::UDP {
                return Err(DecapError::NotUdp);
            }
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            let hl = ip.header_len();
            // The view proved header_len <= total_len <= payload length.
            let l4 = &eth.payload()[hl..usize::from(ip.total_len())];
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                ip.tos(),
                ip.ttl(),
                l3 + hl,
                l4,
            )
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(eth.payload())
                .map_err(|e| ip_error(e.kind, eth.payload(), 4, 40))?;
            let upper = ip.upper_layer().map_err(|e| match e.kind {
                ErrorKind::Truncated => DecapError::Truncated,
                _ => DecapError::BadOuterIp,
            })?;
            // RFC 8200 §4.5: an atomic fragment (offset 0, M clear) is a
            // whole packet and is processed as one; anything else would
            // need reassembly, which a tunnel receive path does not do.
            if let Some(frag) = upper.fragment {
                if frag.offset != 0 || frag.more {
                    return Err(DecapError::Fragment);
                }
            }
            if upper.protocol != ipproto::UDP {
                return Err(DecapError::NotUdp);
            }
            let end = Ipv6Packet::<&[u8]>::HEADER_LEN + usize::from(ip.payload_len());
            let l4 = eth
                .payload()
                .get(upper.offset..end)
                .ok_or(DecapError::Truncated)?;
            (
                IpAddr::V6(Ipv6Addr::from(ip.src_addr())),
                IpAddr::V6(Ipv6Addr::from(ip.dst_addr())),
                ip.traffic_class(),
                ip.hop_limit(),
                l3 + upper.offset,
                l4,
            )
        }
        _ => return Err(DecapError::NotIp),
    };

    let udp = UdpPacket::new_checked(l4).map_err(|e| match e.kind {
        ErrorKind::Truncated => DecapError::Truncated,
        _ => DecapError::BadUdpLen,
    })?;
    if udp.dst_port() != cfg.port {
        return Err(DecapError::WrongPort);
    }
    if cfg.verify_udp_checksum {
        let ok = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => udp.verify_checksum_v4(s.octets(), d.octets()),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                (udp.checksum() == 0 && cfg.accept_ipv6_zero_checksum)
                    || udp.verify_checksum_v6(&s.octets(), &d.octets())
            }
            _ => false,
        };
        if !ok {
            return Err(DecapError::BadUdpChecksum);
        }
    }

    let g = GenevePacket::new_checked(udp.payload()).map_err(|e| match e {
        GeneveError::Truncated => DecapError::Truncated,
        GeneveError::BadVersion => DecapError::BadVersion,
        GeneveError::BadOptLen => DecapError::BadOptLen,
    })?;
    if g.protocol() != PROTO_ETHERNET {
        return Err(DecapError::NotEthernet);
    }
    let inner_len = g.payload().len();
    if inner_len < EthernetFrame::<&[u8]>::HEADER_LEN {
        return Err(DecapError::InnerTruncated);
    }
    meta.options
        .set_from_wire(g.options_raw())
        .map_err(|_| DecapError::BadOptLen)?;
    meta.src = src;
    meta.dst = dst;
    meta.tos = tos;
    meta.ttl = ttl;
    meta.src_port = udp.src_port();
    meta.vni = g.vni();
    meta.oam = g.oam();
    meta.critical = g.critical();
    Ok((
        l4_off + UdpPacket::<&[u8]>::HEADER_LEN + g.header_len(),
        inner_len,
    ))
}
