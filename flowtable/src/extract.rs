//! `extract`: parse a frame once into a [`FlowKey`] and record where its L3
//! and L4 headers start, so that nothing downstream parses it again.
//!
//! Field conventions follow Open vSwitch so that rules mean what OVS users
//! expect: `vlan_tci` carries the present bit 0x1000 when a tag exists, ARP's
//! opcode lives in `nw_proto` and its addresses in `nw_src`/`nw_dst`, ICMP type
//! and code live in `tp_src`/`tp_dst`, IPv6 neighbour discovery link-layer
//! addresses in `arp_sha`/`arp_tha`, and non-first fragments carry no L4 fields.
//!
//! A header that is cut short or contradicts itself drops the packet with a
//! named reason; a protocol we do not parse further is simply not extracted.
//! The L4 length checks (a UDP length within the packet, TCP options within
//! it) apply to unfragmented packets only: a first fragment's UDP length
//! counts the whole datagram, so it is read for its ports and forwarded, as
//! Open vSwitch and the kernel do.

use crate::drop::DropReason;
use crate::field::{frag, VLAN_PRESENT};
use crate::key::{word, FlowKey};
use wire::{
    ethertype, ipproto, ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet,
    Ipv6Packet,
};
use wire::{TcpPacket, UdpPacket, VlanHeader};

/// Where the headers of a parsed frame start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the L3 header (after any VLAN tag).
    pub l3: u16,
    /// Offset of the L4 header; 0 when there is none (not IP, or a later
    /// fragment, or a protocol without ports).
    pub l4: u16,
    /// The IP protocol of the L4 header (after IPv6 extension headers).
    pub proto: u8,
}

/// OVS's `dl_type` for 802.3 frames that carry a length instead of a type.
pub const DL_TYPE_NONE: u16 = 0x05ff;

#[inline(always)]
fn mac48(b: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Fills `key` from `frame` received on `in_port`; every field the packet
/// does not carry is zero. Returns where the headers start.
#[inline]
pub fn extract(frame: &[u8], in_port: u32, key: &mut FlowKey) -> Result<Layout, DropReason> {
    key.w = [0; crate::key::KEY_WORDS];
    key.w[word::PORT] = in_port as u64;
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::MalformedEthernet)?;
    let mut dl_type = eth.ethertype();
    let mut l3 = EthernetFrame::<&[u8]>::HEADER_LEN;
    let mut tci = 0u16;
    if dl_type == ethertype::VLAN || dl_type == ethertype::QINQ {
        let vlan = VlanHeader::new_checked(&frame[l3..]).map_err(|_| DropReason::MalformedVlan)?;
        tci = vlan.tci() | VLAN_PRESENT;
        dl_type = vlan.inner_ethertype();
        l3 += VlanHeader::<&[u8]>::HEADER_LEN;
    }
    if dl_type < 0x0600 {
        dl_type = DL_TYPE_NONE;
    }
    let (dst, src) = eth.macs_u48();
    key.w[word::DL_SRC] = src | (dl_type as u64) << 48;
    key.w[word::DL_DST] = dst | (tci as u64) << 48;
    let mut layout = Layout {
        l3: l3 as u16,
        l4: 0,
        proto: 0,
    };
    let l3buf = &frame[l3..];
    match dl_type {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3buf).map_err(|_| DropReason::MalformedIpv4)?;
            let proto = ip.protocol();
            let later = ip.frag_offset() != 0;
            let mut fr = 0u8;
            if ip.more_frags() || later {
                fr |= frag::ANY;
            }
            if later {
                fr |= frag::LATER;
            }
            key.w[word::NW_ADDR] = u32::from_be_bytes(ip.src_addr()) as u64
                | (u32::from_be_bytes(ip.dst_addr()) as u64) << 32;
            let mut nw =
                proto as u64 | (ip.tos() as u64) << 8 | (ip.ttl() as u64) << 16 | (fr as u64) << 24;
            if !later {
                let l4 = l3 + ip.header_len();
                let first = ip.more_frags();
                if let Some((tp, flags)) = l4_ports(ip.payload(), proto, first, key)? {
                    nw |= tp << 32;
                    key.w[word::L4X] = flags;
                    layout.l4 = l4 as u16;
                    layout.proto = proto;
                }
            }
            key.w[word::NW] = nw;
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3buf).map_err(|_| DropReason::MalformedIpv6)?;
            let up = ip.upper_layer().map_err(|_| DropReason::MalformedIpv6)?;
            let (src, dst) = (
                u128::from_be_bytes(ip.src_addr()),
                u128::from_be_bytes(ip.dst_addr()),
            );
            key.w[word::IPV6_SRC] = (src >> 64) as u64;
            key.w[word::IPV6_SRC + 1] = src as u64;
            key.w[word::IPV6_DST] = (dst >> 64) as u64;
            key.w[word::IPV6_DST + 1] = dst as u64;
            let label = (ip.flow_label() as u64) << 32;
            let mut fr = 0u8;
            let mut later = false;
            let first = up.fragment.is_some_and(|f| f.is_first());
            if let Some(f) = up.fragment {
                fr |= frag::ANY;
                if f.offset != 0 {
                    fr |= frag::LATER;
                    later = true;
                }
            }
            let proto = up.protocol;
            let mut l4x = label;
            let mut nw = proto as u64
                | (ip.traffic_class() as u64) << 8
                | (ip.hop_limit() as u64) << 16
                | (fr as u64) << 24;
            if !later {
                let end = Ipv6Packet::<&[u8]>::HEADER_LEN + ip.payload_len() as usize;
                let payload = &l3buf[up.offset.min(end)..end];
                if let Some((tp, flags)) = l4_ports(payload, proto, first, key)? {
                    nw |= tp << 32;
                    l4x |= flags;
                    layout.l4 = (l3 + up.offset) as u16;
                    layout.proto = proto;
                }
            }
            key.w[word::NW] = nw;
            key.w[word::L4X] = l4x;
        }
        ethertype::ARP => {
            // Only Ethernet/IPv4 ARP has these fields; other hardware or
            // protocol types are switched on their L2 fields alone.
            match ArpPacket::new_checked(l3buf) {
                Ok(arp) => {
                    let op = arp.oper();
                    key.w[word::NW] = if op <= 0xff { op as u64 } else { 0 };
                    key.w[word::NW_ADDR] = u32::from_be_bytes(arp.spa()) as u64
                        | (u32::from_be_bytes(arp.tpa()) as u64) << 32;
                    key.w[word::ARP_SHA] = mac48(arp.sha());
                    key.w[word::ARP_THA] = mac48(arp.tha());
                }
                Err(e) if e.kind == wire::ErrorKind::Unsupported => {}
                Err(_) => return Err(DropReason::MalformedArp),
            }
        }
        _ => {}
    }
    Ok(layout)
}

/// Parses the L4 header of an unfragmented packet, or of a first fragment
/// when `first_frag`, and returns `tp_src | tp_dst << 16` and the TCP
/// flags, or `None` for protocols without ports. ND link-layer addresses go
/// straight into `key`. The flags are returned rather than or-ed into the
/// key so that no key word is read back right after being written.
#[inline(always)]
fn l4_ports(
    buf: &[u8],
    proto: u8,
    first_frag: bool,
    key: &mut FlowKey,
) -> Result<Option<(u64, u64)>, DropReason> {
    let ports = |s: u16, d: u16| Some((s as u64 | (d as u64) << 16, 0));
    // ICMP type and code as the ports; an echo's identifier goes beside
    // the TCP flags, in the bits `FlowKey::echo_id` reads.
    let echo = |t: u8, c: u8, is_echo: bool, id: u16| {
        let id = if is_echo {
            (id as u64) << crate::key::ECHO_ID_SHIFT
        } else {
            0
        };
        Some((t as u64 | (c as u64) << 16, id))
    };
    if first_frag && (proto == ipproto::TCP || proto == ipproto::UDP) {
        return first_fragment_ports(buf, proto).map(Some);
    }
    Ok(match proto {
        ipproto::TCP => {
            let tcp = TcpPacket::new_checked(buf).map_err(|_| DropReason::MalformedL4)?;
            Some((
                tcp.src_port() as u64 | (tcp.dst_port() as u64) << 16,
                tcp.flags() as u64,
            ))
        }
        ipproto::UDP => {
            let udp = UdpPacket::new_checked(buf).map_err(|_| DropReason::MalformedL4)?;
            ports(udp.src_port(), udp.dst_port())
        }
        ipproto::SCTP => {
            // RFC 9260 §3.1: the common header is 12 bytes, ports first.
            if buf.len() < 12 {
                return Err(DropReason::MalformedL4);
            }
            ports(
                u16::from_be_bytes([buf[0], buf[1]]),
                u16::from_be_bytes([buf[2], buf[3]]),
            )
        }
        ipproto::ICMP => {
            let icmp = Icmpv4Packet::new_checked(buf).map_err(|_| DropReason::MalformedL4)?;
            let t = icmp.msg_type();
            echo(t, icmp.code(), matches!(t, 0 | 8), icmp.echo_ident())
        }
        ipproto::ICMPV6 => {
            let icmp = Icmpv6Packet::new_checked(buf).map_err(|_| DropReason::MalformedL4)?;
            let (sll, tll) = icmp.nd_option_lladdr();
            if let Some(m) = sll {
                key.w[word::ARP_SHA] = mac48(m);
            }
            if let Some(m) = tll {
                key.w[word::ARP_THA] = mac48(m);
            }
            let t = icmp.msg_type();
            echo(t, icmp.code(), matches!(t, 128 | 129), icmp.echo_ident())
        }
        _ => None,
    })
}

/// The ports (and TCP flags) of the first fragment of a TCP or UDP datagram.
///
/// The UDP length field counts the whole datagram (RFC 768), and a TCP
/// header's options may continue in the next fragment, so neither is
/// checked against this fragment's bytes, as `new_checked` would: the
/// datagram is only whole after reassembly, at its destination. What the
/// fragment must hold is the fixed header the key reads: UDP's 8 bytes
/// with a length of at least 8, TCP's 20 bytes with a data offset of at
/// least 5 words. A first fragment too short for the TCP flags is dropped:
/// rules on TCP flags or ports could not judge it (RFC 1858 §3, the "tiny
/// fragment" attack). Open vSwitch and the kernel likewise forward a first
/// fragment with its ports.
#[inline(never)]
fn first_fragment_ports(buf: &[u8], proto: u8) -> Result<(u64, u64), DropReason> {
    if proto == ipproto::TCP {
        if buf.len() < TcpPacket::<&[u8]>::MIN_HEADER_LEN {
            return Err(DropReason::MalformedL4);
        }
        // Only fixed fields within the 20 bytes just checked are read.
        let tcp = TcpPacket::new_unchecked(buf);
        if tcp.header_len() < TcpPacket::<&[u8]>::MIN_HEADER_LEN {
            return Err(DropReason::MalformedL4);
        }
        let tp = tcp.src_port() as u64 | (tcp.dst_port() as u64) << 16;
        Ok((tp, tcp.flags() as u64))
    } else {
        if buf.len() < UdpPacket::<&[u8]>::HEADER_LEN {
            return Err(DropReason::MalformedL4);
        }
        // Only fixed fields within the 8 bytes just checked are read.
        let udp = UdpPacket::new_unchecked(buf);
        if usize::from(udp.len()) < UdpPacket::<&[u8]>::HEADER_LEN {
            return Err(DropReason::MalformedL4);
        }
        Ok((udp.src_port() as u64 | (udp.dst_port() as u64) << 16, 0))
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
