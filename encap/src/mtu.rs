//! MTU arithmetic for Geneve tunnels, and the ICMP errors that tell a
//! sender its packet did not fit.
//!
//! An encapsulated packet is the inner Ethernet frame plus an outer IP, UDP
//! and Geneve header and the options, and all of that must fit the
//! underlay's IP MTU; the outer Ethernet header does not count, the inner
//! one does. So the MTU to configure on the pods (the inner IP MTU) is the
//! underlay MTU minus [`encap_overhead`] minus 14: 1450 over a 1500-byte
//! IPv4 underlay without options, 1430 over IPv6.
//!
//! Geneve endpoints do not fragment the outer packet (the template sets DF
//! and IPv6 routers never fragment), so an inner packet that is too large
//! must be refused at encap time and its sender told, by the ICMP errors
//! that [`icmp`] builds: "fragmentation needed" for IPv4 (RFC 1191) and
//! "packet too big" for IPv6 (RFC 8201, RFC 4443 §3.2).

pub mod icmp;

pub use icmp::{frag_needed_v4, packet_too_big_v6, IcmpError};

use wire::geneve::HEADER_LEN as GENEVE_LEN;

/// Length of an Ethernet header without tags.
pub const ETH_HEADER_LEN: usize = 14;
const UDP_LEN: usize = 8;

/// The address family of the underlay (outer) IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Underlay {
    /// IPv4 outer header (20 bytes, no options).
    Ipv4,
    /// IPv6 outer header (40 bytes, no extension headers).
    Ipv6,
}

impl Underlay {
    /// Length of the outer IP header.
    #[inline]
    pub const fn ip_header_len(self) -> usize {
        match self {
            Underlay::Ipv4 => 20,
            Underlay::Ipv6 => 40,
        }
    }
}

/// Bytes that encapsulation adds to the IP-level size of a packet: outer
/// IP, UDP and Geneve headers and `opt_len` bytes of options. The outer
/// Ethernet header is excluded because the underlay MTU does not count it.
#[inline]
pub const fn encap_overhead(underlay: Underlay, opt_len: usize) -> usize {
    underlay.ip_header_len() + UDP_LEN + GENEVE_LEN + opt_len
}

/// The largest inner IP packet that fits a tunnel over an underlay with IP
/// MTU `underlay_mtu`, for untagged inner frames (a VLAN-tagged inner frame
/// needs 4 bytes more). Saturates at 0 for absurdly small underlays.
#[inline]
pub const fn pod_mtu(underlay_mtu: u16, underlay: Underlay, opt_len: usize) -> u16 {
    let need = encap_overhead(underlay, opt_len) + ETH_HEADER_LEN;
    let mtu = underlay_mtu as usize;
    if mtu > need {
        (mtu - need) as u16
    } else {
        0
    }
}

/// True if an inner Ethernet frame of `inner_frame_len` bytes still fits
/// the underlay MTU once encapsulated.
#[inline]
pub const fn fits(
    inner_frame_len: usize,
    underlay_mtu: u16,
    underlay: Underlay,
    opt_len: usize,
) -> bool {
    encap_overhead(underlay, opt_len) + inner_frame_len <= underlay_mtu as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_values() {
        assert_eq!(encap_overhead(Underlay::Ipv4, 0), 36);
        assert_eq!(encap_overhead(Underlay::Ipv6, 8), 64);
        assert_eq!(pod_mtu(1500, Underlay::Ipv4, 0), 1450);
        assert_eq!(pod_mtu(1500, Underlay::Ipv6, 0), 1430);
        assert_eq!(pod_mtu(9000, Underlay::Ipv4, 8), 8942);
        assert_eq!(pod_mtu(40, Underlay::Ipv6, 0), 0);
        // A 1450-byte inner IP packet is a 1464-byte frame: fits exactly.
        assert!(fits(1464, 1500, Underlay::Ipv4, 0));
        assert!(!fits(1465, 1500, Underlay::Ipv4, 0));
        assert!(!fits(1464, 1500, Underlay::Ipv6, 0));
    }
}
