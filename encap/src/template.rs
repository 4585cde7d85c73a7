//! Per-tunnel header templates: built once, copied and patched per packet.
//!
//! A [`Template`] holds the outer Ethernet, IPv4 or IPv6, UDP and Geneve
//! base headers of one tunnel, with every per-packet field zeroed.
//! [`Template::push`] copies it into the headroom in front of the inner
//! Ethernet frame, appends the options and patches: the Geneve VNI and
//! option length and flags, the UDP source port and length, the IPv4 total
//! length, identification and header checksum (or the IPv6 payload length
//! and flow label), and the UDP checksum when one is sent. The inner frame
//! is never moved.
//!
//! The IPv4 header checksum is finished from a partial sum of the constant
//! fields computed when the template is built, so per packet it costs two
//! additions and a fold instead of a pass over the header.
//!
//! UDP checksum policy. Over IPv4 the checksum is optional (RFC 768) and
//! RFC 8926 §3.3 lets a tunnel send zero; we do by default, because the
//! inner frame carries its own checksums and summing the whole payload is
//! the most expensive step of an encap. [`TunnelConfig::ipv4_udp_checksum`]
//! turns it on for underlays that want it. Over IPv6 we always compute it:
//! RFC 8200 §8.1 makes it mandatory, and although RFC 6935 and RFC 6936
//! allow tunnels to send zero, they do so only under conditions on both
//! endpoints and the path (the receiver must be configured to accept zero,
//! middleboxes must tolerate it) that a switch cannot verify on its own, and
//! Linux receivers drop zero-checksum IPv6 UDP unless told otherwise.
//!
//! UDP source port. RFC 8926 §3.3 asks for a source port derived from a hash
//! of the inner headers, the same for every packet of one inner flow, so
//! that ECMP and RSS in the underlay spread the tunnel's flows without
//! reordering any of them. `push` computes that hash itself from the inner
//! frame it encapsulates ([`crate::flow_hash::inner_flow_hash`]: the inner
//! 5-tuple, or the L2 fields for non-IP), so no caller can feed it a hash
//! that varies within a flow. (The datapath once passed its exact-match
//! cache hash, which covers the TCP flags: one connection went out on three
//! or four ports per direction.) The hash is scaled into a half-open
//! [`SrcPortRange`] with a multiply and a shift, which spreads its high bits
//! evenly without a division.

use core::fmt;
use std::net::IpAddr;
use wire::checksum;
use wire::geneve::{self, HEADER_LEN as GENEVE_LEN};
use wire::{ethertype, ipproto, MacAddr};

use crate::flow_hash::inner_flow_hash;
use crate::options::Options;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
/// The longest template: Ethernet, IPv6, UDP and the Geneve base header.
const MAX_TEMPLATE_LEN: usize = ETH_LEN + IPV6_LEN + UDP_LEN + GENEVE_LEN;

/// Outer header length for an IPv4 underlay, without options.
pub const IPV4_HEADERS_LEN: usize = ETH_LEN + IPV4_LEN + UDP_LEN + GENEVE_LEN;
/// Outer header length for an IPv6 underlay, without options.
pub const IPV6_HEADERS_LEN: usize = MAX_TEMPLATE_LEN;

/// A half-open range of UDP source ports, `min..max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrcPortRange {
    /// First port of the range.
    pub min: u16,
    /// One past the last port of the range.
    pub max: u16,
}

impl Default for SrcPortRange {
    /// 32768..61000, the default ephemeral range of Linux (whose
    /// `ip_local_port_range` is 32768 to 60999 inclusive).
    fn default() -> SrcPortRange {
        SrcPortRange {
            min: 32768,
            max: 61000,
        }
    }
}

impl SrcPortRange {
    /// Maps a 32-bit flow hash into the range: `min + hash * span / 2^32`.
    #[inline]
    pub fn port(&self, hash: u32) -> u16 {
        let span = u64::from(self.max.saturating_sub(self.min));
        self.min + ((u64::from(hash) * span) >> 32) as u16
    }
}

/// Everything that is constant about one tunnel's outer headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Outer source MAC (our underlay interface).
    pub src_mac: MacAddr,
    /// Outer destination MAC (the next hop toward the remote endpoint).
    pub dst_mac: MacAddr,
    /// Local tunnel endpoint address.
    pub src_ip: IpAddr,
    /// Remote tunnel endpoint address; same family as `src_ip`.
    pub dst_ip: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 TOS byte or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 "don't fragment" (ignored for IPv6, which routers never fragment).
    pub df: bool,
    /// UDP destination port, 6081 unless the peer listens elsewhere.
    pub dst_port: u16,
    /// Range for the UDP source port derived from the flow hash.
    pub src_ports: SrcPortRange,
    /// Send a UDP checksum over IPv4 (always sent over IPv6).
    pub ipv4_udp_checksum: bool,
}

impl TunnelConfig {
    /// A configuration with the usual defaults: TTL 64, TOS 0, DF set,
    /// port 6081, source ports 32768..61000, no UDP checksum over IPv4.
    pub fn new(src_mac: MacAddr, dst_mac: MacAddr, src_ip: IpAddr, dst_ip: IpAddr) -> Self {
        TunnelConfig {
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            ttl: 64,
            tos: 0,
            df: true,
            dst_port: geneve::PORT,
            src_ports: SrcPortRange::default(),
            ipv4_udp_checksum: false,
        }
    }
}

/// Why a template could not be built. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateError {
    /// tunnel source and destination addresses are of different families
    MixedFamilies,
    /// udp source port range is empty
    EmptyPortRange,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplateError::MixedFamilies => {
                "tunnel source and destination addresses are of different families"
            }
            TemplateError::EmptyPortRange => "udp source port range is empty",
        })
    }
}

impl std::error::Error for TemplateError {}

/// Why a packet could not be encapsulated. Each variant's doc comment is its
/// message; [`EncapError::name`] is its drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncapError {
    /// packet offset and length lie outside the frame
    OutOfBounds,
    /// not enough headroom in front of the packet for the tunnel headers
    NoHeadroom,
    /// encapsulated packet would exceed the 65535-byte ip length limit
    TooLong,
}

impl EncapError {
    /// The drop counter this error increments.
    pub const fn name(self) -> &'static str {
        match self {
            EncapError::OutOfBounds => "encap_out_of_bounds",
            EncapError::NoHeadroom => "encap_no_headroom",
            EncapError::TooLong => "encap_too_long",
        }
    }

    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            EncapError::OutOfBounds => "packet offset and length lie outside the frame",
            EncapError::NoHeadroom => {
                "not enough headroom in front of the packet for the tunnel headers"
            }
            EncapError::TooLong => {
                "encapsulated packet would exceed the 65535-byte ip length limit"
            }
        }
    }
}

impl fmt::Display for EncapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EncapError {}

/// What varies per packet.
#[derive(Debug, Clone, Copy)]
pub struct PerPacket<'a> {
    /// Virtual network identifier (low 24 bits).
    pub vni: u32,
    /// Options to send (often empty).
    pub options: &'a Options,
    /// IPv4 identification; the caller keeps the counter (RFC 6864 allows
    /// any value when DF is set). Ignored for IPv6.
    pub ip_id: u16,
    /// Set the Geneve O bit (a control packet).
    pub oam: bool,
}

/// A tunnel's outer headers, ready to be copied in front of inner frames.
#[derive(Debug, Clone)]
pub struct Template {
    hdr: [u8; MAX_TEMPLATE_LEN],
    len: usize,
    ipv6: bool,
    /// Sum of the IPv4 header words with length, id and checksum zero.
    ip_partial: u32,
    /// Sum of the constant words the UDP checksum covers: the pseudo-header
    /// without its length, the destination port and the protocol type.
    udp_partial: u32,
    udp_checksum: bool,
    src_ports: SrcPortRange,
}

impl Template {
    /// Builds the template for a tunnel.
    pub fn new(cfg: &TunnelConfig) -> Result<Template, TemplateError> {
        if cfg.src_ports.min >= cfg.src_ports.max {
            return Err(TemplateError::EmptyPortRange);
        }
        let mut hdr = [0u8; MAX_TEMPLATE_LEN];
        hdr[0..6].copy_from_slice(&cfg.dst_mac);
        hdr[6..12].copy_from_slice(&cfg.src_mac);
        let ip = &mut hdr[ETH_LEN..];
        let (ipv6, ip_len, ip_partial, pseudo) = match (cfg.src_ip, cfg.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ip[0] = 0x45;
                ip[1] = cfg.tos;
                // Total length (2..4), identification (4..6) and checksum
                // (10..12) stay zero: they are patched per packet.
                ip[6] = if cfg.df { 0x40 } else { 0 };
                ip[8] = cfg.ttl;
                ip[9] = ipproto::UDP;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let partial = checksum::sum(&ip[..IPV4_LEN]);
                let pseudo = checksum::pseudo_header_v4(s.octets(), d.octets(), ipproto::UDP, 0);
                (false, IPV4_LEN, partial, pseudo)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let vtc = (6u32 << 28) | (u32::from(cfg.tos) << 20);
                ip[0..4].copy_from_slice(&vtc.to_be_bytes());
                ip[6] = ipproto::UDP;
                ip[7] = cfg.ttl;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                let pseudo = checksum::pseudo_header_v6(&s.octets(), &d.octets(), ipproto::UDP, 0);
                (true, IPV6_LEN, 0, pseudo)
            }
            _ => return Err(TemplateError::MixedFamilies),
        };
        let et = if ipv6 {
            ethertype::IPV6
        } else {
            ethertype::IPV4
        };
        hdr[12..14].copy_from_slice(&et.to_be_bytes());
        let udp = ETH_LEN + ip_len;
        hdr[udp + 2..udp + 4].copy_from_slice(&cfg.dst_port.to_be_bytes());
        let g = udp + UDP_LEN;
        hdr[g + 2..g + 4].copy_from_slice(&geneve::PROTO_ETHERNET.to_be_bytes());
        Ok(Template {
            hdr,
            len: g + GENEVE_LEN,
            ipv6,
            ip_partial,
            udp_partial: pseudo + u32::from(cfg.dst_port) + u32::from(geneve::PROTO_ETHERNET),
            udp_checksum: ipv6 || cfg.ipv4_udp_checksum,
            src_ports: cfg.src_ports,
        })
    }

    /// True for an IPv6 underlay.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// True when a UDP checksum is sent (always over IPv6).
    #[inline]
    pub fn udp_checksum(&self) -> bool {
        self.udp_checksum
    }

    /// The outer UDP source port [`Template::push`] writes for an inner
    /// flow of hash `flow_hash`.
    #[inline]
    pub fn src_port(&self, flow_hash: u32) -> u16 {
        self.src_ports.port(flow_hash)
    }

    /// Bytes the tunnel headers take in front of the inner frame with
    /// `opt_len` bytes of options: the headroom `push` needs.
    #[inline]
    pub fn header_len(&self, opt_len: usize) -> usize {
        self.len + opt_len
    }

    /// The template bytes (outer headers with per-packet fields zeroed).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.hdr[..self.len]
    }

    /// Encapsulates the inner Ethernet frame at `frame[off..off + len]` by
    /// writing the tunnel headers into the headroom just before it. Returns
    /// the new offset and length of the outer frame. The inner bytes are not
    /// moved; on error the frame is left untouched.
    #[inline]
    pub fn push(
        &self,
        frame: &mut [u8],
        off: usize,
        len: usize,
        pkt: &PerPacket<'_>,
    ) -> Result<(usize, usize), EncapError> {
        if off > frame.len() || len > frame.len() - off {
            return Err(EncapError::OutOfBounds);
        }
        let opts = pkt.options.as_bytes();
        let hdr_len = self.len + opts.len();
        if off < hdr_len {
            return Err(EncapError::NoHeadroom);
        }
        let ip_len = if self.ipv6 { IPV6_LEN } else { IPV4_LEN };
        let udp_len = UDP_LEN + GENEVE_LEN + opts.len() + len;
        // IPv4 counts its own header in the total length; the IPv6 payload
        // length counts only what follows the fixed header.
        let ip_field = if self.ipv6 { udp_len } else { udp_len + ip_len };
        if ip_field > usize::from(u16::MAX) {
            return Err(EncapError::TooLong);
        }
        let new_off = off - hdr_len;
        let hash = inner_flow_hash(&frame[off..off + len]);
        let out = &mut frame[new_off..off + len];
        // One copy of the patching code per address family, so that every
        // header offset below is a constant and the bounds checks fold away.
        if self.ipv6 {
            self.write::<true>(out, pkt, hash, udp_len as u16);
        } else {
            self.write::<false>(out, pkt, hash, udp_len as u16);
        }
        Ok((new_off, hdr_len + len))
    }

    /// Writes the headers into `out`, which starts where the outer frame
    /// will and ends with the inner frame; `push` checked every length.
    /// `hash` is the inner flow's.
    #[inline(always)]
    fn write<const V6: bool>(&self, out: &mut [u8], pkt: &PerPacket<'_>, hash: u32, udp_len: u16) {
        let ip_len = if V6 { IPV6_LEN } else { IPV4_LEN };
        let base = ETH_LEN + ip_len + UDP_LEN + GENEVE_LEN;
        let opts = pkt.options.as_bytes();
        out[..base].copy_from_slice(&self.hdr[..base]);
        out[base..base + opts.len()].copy_from_slice(opts);

        let h = &mut out[..base];
        let u = ETH_LEN + ip_len;
        let g = u + UDP_LEN;
        // Geneve: version 0 and the option length in words; O and C bits.
        // RFC 8926 §3.4: the C bit is set if "One or more options has the
        // Critical bit set", so it follows from the options themselves.
        h[g] = (opts.len() / 4) as u8;
        h[g + 1] = (u8::from(pkt.oam) << 7) | (u8::from(pkt.options.any_critical()) << 6);
        let vni = (pkt.vni << 8).to_be_bytes();
        h[g + 4..g + 7].copy_from_slice(&vni[..3]);

        let sport = self.src_port(hash);
        h[u..u + 2].copy_from_slice(&sport.to_be_bytes());
        h[u + 4..u + 6].copy_from_slice(&udp_len.to_be_bytes());

        let ip = ETH_LEN;
        if V6 {
            h[ip + 4..ip + 6].copy_from_slice(&udp_len.to_be_bytes());
            // RFC 6438 §3: a tunnel endpoint sets the flow label from the
            // inner flow so that the underlay can balance on it. The
            // template's label is zero, so OR-ing it in is enough.
            let label = (hash & 0x000f_ffff).to_be_bytes();
            h[ip + 1] |= label[1];
            h[ip + 2] = label[2];
            h[ip + 3] = label[3];
        } else {
            let total = udp_len + IPV4_LEN as u16;
            h[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            h[ip + 4..ip + 6].copy_from_slice(&pkt.ip_id.to_be_bytes());
            let sum = self.ip_partial + u32::from(total) + u32::from(pkt.ip_id);
            h[ip + 10..ip + 12].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        }

        if V6 || self.udp_checksum {
            // Sum the datagram from its parts rather than reading back the
            // header just written: a load that overlaps fresh narrow stores
            // stalls on store forwarding, and the constant parts (pseudo
            // header, destination port, protocol type) are already summed.
            // Every part before the inner frame has even length, so the
            // partial sums add up (RFC 1071 §2(B)). The length appears
            // twice: in the pseudo-header and in the UDP header.
            let flags = u32::from_be_bytes([0, 0, h[g], h[g + 1]]);
            let vni = pkt.vni & 0x00ff_ffff;
            let sum = self.udp_partial
                + 2 * u32::from(udp_len)
                + u32::from(sport)
                + flags
                + (vni >> 8)
                + ((vni & 0xff) << 8)
                + checksum::sum(opts)
                + checksum::sum(&out[base + opts.len()..]);
            let c = !checksum::fold(sum);
            // RFC 768: a computed 0 is sent as all ones.
            let c = if c == 0 { 0xffff } else { c };
            out[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cfg4() -> TunnelConfig {
        TunnelConfig::new(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv4Addr::new(192, 0, 2, 2).into(),
        )
    }

    #[test]
    fn port_range_scaling() {
        let r = SrcPortRange::default();
        assert_eq!(r.port(0), 32768);
        assert_eq!(r.port(u32::MAX), 60999);
        let one = SrcPortRange { min: 7, max: 8 };
        assert_eq!(one.port(u32::MAX), 7);
    }

    #[test]
    fn config_errors() {
        let mut c = cfg4();
        c.dst_ip = Ipv6Addr::LOCALHOST.into();
        assert_eq!(Template::new(&c).unwrap_err(), TemplateError::MixedFamilies);
        let mut c = cfg4();
        c.src_ports = SrcPortRange { min: 9, max: 9 };
        assert_eq!(
            Template::new(&c).unwrap_err(),
            TemplateError::EmptyPortRange
        );
    }

    #[test]
    fn push_errors_leave_frame_alone() {
        let t = Template::new(&cfg4()).unwrap();
        let opts = Options::new();
        let pkt = PerPacket {
            vni: 1,
            options: &opts,
            ip_id: 0,
            oam: false,
        };
        let mut frame = [0xaau8; 200];
        assert_eq!(
            t.push(&mut frame, 49, 60, &pkt),
            Err(EncapError::NoHeadroom)
        );
        assert_eq!(
            t.push(&mut frame, 150, 60, &pkt),
            Err(EncapError::OutOfBounds)
        );
        assert_eq!(
            t.push(&mut frame, 201, 0, &pkt),
            Err(EncapError::OutOfBounds)
        );
        assert!(frame.iter().all(|&b| b == 0xaa));
        assert_eq!(t.push(&mut frame, 50, 60, &pkt), Ok((0, 110)));
        assert_eq!(
            EncapError::TooLong.to_string(),
            EncapError::TooLong.message()
        );
        assert_eq!(EncapError::NoHeadroom.name(), "encap_no_headroom");
        let mut big = vec![0u8; 70_000];
        assert_eq!(
            t.push(&mut big, 100, 65_500, &pkt),
            Err(EncapError::TooLong)
        );
    }

    #[test]
    fn ipv4_header_checksum_is_right() {
        let t = Template::new(&cfg4()).unwrap();
        let opts = Options::new();
        let mut frame = [0u8; 256];
        for id in [0u16, 1, 0xffff, 0x1234] {
            let pkt = PerPacket {
                vni: 0xabcdef,
                options: &opts,
                ip_id: id,
                oam: false,
            };
            let (o, _) = t.push(&mut frame, 100, 100, &pkt).unwrap();
            assert_eq!(checksum::checksum(&frame[o + 14..o + 34]), 0);
        }
    }
}
