//! Helpers shared by the encap integration tests: tunnel configurations,
//! real inner frames built with etherparse, and a frame buffer laid out
//! like the datapath's (packet after 256 bytes of headroom).

#![allow(dead_code)]

use encap::{Options, PerPacket, Template, TunnelConfig};
use etherparse::PacketBuilder;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Size of a datapath frame.
pub const FRAME: usize = 4096;
/// Headroom in front of the packet in a datapath frame.
pub const HEADROOM: usize = 256;

pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const DST4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// A tunnel configuration over IPv4 or IPv6.
pub fn config(ipv6: bool, ipv4_udp_checksum: bool) -> TunnelConfig {
    let mut c = if ipv6 {
        TunnelConfig::new(SRC_MAC, DST_MAC, SRC6.into(), DST6.into())
    } else {
        TunnelConfig::new(SRC_MAC, DST_MAC, SRC4.into(), DST4.into())
    };
    c.ttl = 61;
    c.tos = 0x28;
    c.ipv4_udp_checksum = ipv4_udp_checksum;
    c
}

/// An inner Ethernet + IPv4 + ICMP echo request frame of about `payload`
/// bytes of echo data.
pub fn inner_icmp4(payload: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let b = PacketBuilder::ethernet2([0x0a, 0, 0, 0, 0, 1], [0x0a, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(7, 1);
    let mut out = Vec::with_capacity(b.size(data.len()));
    b.write(&mut out, &data).expect("build inner frame");
    out
}

/// A datapath-like frame holding `inner` after the headroom.
pub fn frame_with(inner: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; FRAME];
    f[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
    f
}

/// Encapsulates `inner` and returns the outer frame's bytes.
pub fn encapsulate(t: &Template, inner: &[u8], vni: u32, options: &Options) -> Vec<u8> {
    let mut f = frame_with(inner);
    let pkt = PerPacket {
        vni,
        options,
        ip_id: 0x1234,
        oam: false,
    };
    let (off, len) = t.push(&mut f, HEADROOM, inner.len(), &pkt).expect("push");
    f[off..off + len].to_vec()
}

/// Rewrites the IPv4 header checksum of an outer frame after a mutation.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    frame[24] = 0;
    frame[25] = 0;
    let c = wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}
