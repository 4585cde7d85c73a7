//! The inner flow's hash, from which [`crate::Template::push`] derives the
//! outer UDP source port and the IPv6 flow label.
//!
//! RFC 8926 §3.3 asks that the source port be "the same for all packets
//! belonging to a single encapsulated flow", computed from "a hash of the
//! encapsulated packet headers using, for example, a traditional 5-tuple",
//! because ECMP routers and RSS in the underlay choose a path or a queue by
//! the outer 5-tuple: two ports for one flow are two paths, and packets of
//! one TCP connection on two paths arrive reordered.
//!
//! So the hash reads the inner frame itself and nothing else: no flow key
//! (whose exact-match hash covers TCP flags, TTL, conntrack state and the
//! recirculation pass, and so changed between the SYN, the data and the
//! FIN of one connection), no per-thread or per-batch state, no seed. What
//! it covers:
//!
//! - IPv4 and IPv6: source and destination address, the protocol (after
//!   IPv6 extension headers) and, for TCP, UDP, UDP-Lite, SCTP and DCCP,
//!   both ports. TTL, TOS, flags, lengths, the IPv6 flow label and the
//!   payload are not read.
//! - Fragments (IPv4 MF or offset, an IPv6 Fragment header): addresses and
//!   protocol only, for the first fragment too. A later fragment has no
//!   ports, and all fragments of one datagram must take one path (Linux's
//!   flow dissector does the same unless asked to parse first fragments).
//! - Anything else (ARP, other ethertypes, an IP header too damaged to
//!   read): destination and source MAC, the VLAN ID and the ethertype.
//!
//! Up to two VLAN tags (802.1Q, 802.1ad) are skipped to reach the L3
//! header. The hash is not symmetric: the two directions of a connection
//! are two flows and may take two paths, as they do with the kernel's own
//! tunnels.
//!
//! The function reads only what it bounds-checks and never panics, on any
//! bytes; it allocates nothing.

use wire::{ethertype, ipproto, Ipv4Packet, Ipv6Packet};

/// UDP-Lite (RFC 3828), ports where UDP has them.
const UDPLITE: u8 = 136;
/// DCCP (RFC 4340), ports first.
const DCCP: u8 = 33;

/// Odd 64-bit multipliers (digits of π and e); any odd constants with
/// well-mixed bits would do.
const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x9e37_79b9_7f4a_7c15;

/// Adds one word to the running hash: the multiply spreads each input bit
/// over the upper bits, the rotation brings them back down for the next.
#[inline(always)]
fn add(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K1).rotate_left(29)
}

/// Final avalanche (MurmurHash3's fmix64), folded to 32 bits: the port
/// scaling uses the high bits, the flow label the low 20.
#[inline(always)]
fn finish(mut h: u64) -> u32 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 32) as u32 ^ h as u32
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Whether the protocol carries a source and destination port in its
/// first four bytes.
#[inline(always)]
fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        ipproto::TCP | ipproto::UDP | ipproto::SCTP | UDPLITE | DCCP
    )
}

/// `sport << 16 | dport` from the L4 header at `l4`, or 0 when the header
/// is not there.
#[inline(always)]
fn ports(b: &[u8], l4: usize) -> u64 {
    match (be16(b, l4), be16(b, l4 + 2)) {
        (Some(s), Some(d)) => u64::from(s) << 16 | u64::from(d),
        _ => 0,
    }
}

/// The hash of the inner Ethernet frame's flow: its 5-tuple for IP (3-tuple
/// for fragments), its L2 addresses and type otherwise. A pure function of
/// those fields; see the module documentation.
#[inline]
pub fn inner_flow_hash(frame: &[u8]) -> u32 {
    let mut l3 = 14;
    let mut vid = 0u16;
    let mut et = be16(frame, 12).unwrap_or(0);
    for _ in 0..2 {
        if et != ethertype::VLAN && et != ethertype::QINQ {
            break;
        }
        match (be16(frame, l3), be16(frame, l3 + 2)) {
            (Some(tci), Some(inner)) => {
                vid = tci & 0x0fff;
                et = inner;
                l3 += 4;
            }
            _ => break,
        }
    }
    let ip = frame.get(l3..).unwrap_or_default();
    let l3_hash = match et {
        ethertype::IPV4 => ipv4(ip),
        ethertype::IPV6 => ipv6(ip),
        _ => None,
    };
    if let Some(h) = l3_hash {
        return finish(h);
    }
    // L2 fields: each MAC in a word of its own, the VLAN ID above the
    // source MAC, then the type.
    let mac = |at: usize| match frame.get(at..at + 6) {
        Some(m) => u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]),
        None => 0,
    };
    let h = add(add(K2, mac(0)), mac(6) | u64::from(vid) << 48);
    finish(add(h, u64::from(et)))
}

/// The running hash of an IPv4 header's flow, or `None` if the header
/// cannot be read.
#[inline(always)]
fn ipv4(b: &[u8]) -> Option<u64> {
    let ip = Ipv4Packet::new_checked(b).ok()?;
    let proto = ip.protocol();
    // RFC 791: a packet with MF set or a non-zero offset is a fragment;
    // only the first carries the ports, so none of them is hashed on them.
    let l4 = if ip.is_fragment() || !has_ports(proto) {
        0
    } else {
        ports(ip.payload(), 0)
    };
    Some(v4_words(ip.src_addr(), ip.dst_addr(), proto, l4))
}

/// The IPv4 words of the hash: both addresses, then protocol and ports.
#[inline(always)]
fn v4_words(src: [u8; 4], dst: [u8; 4], proto: u8, l4: u64) -> u64 {
    let addrs = u64::from(u32::from_be_bytes(src)) << 32 | u64::from(u32::from_be_bytes(dst));
    add(add(add(K2, 4), addrs), u64::from(proto) << 32 | l4)
}

/// The IPv6 words of the hash: both addresses as four words, then
/// protocol and ports.
#[inline(always)]
fn v6_words(src: [u8; 16], dst: [u8; 16], proto: u8, l4: u64) -> u64 {
    let mut h = add(K2, 6);
    for half in [&src[..8], &src[8..], &dst[..8], &dst[8..]] {
        let w: [u8; 8] = half.try_into().unwrap_or_default();
        h = add(h, u64::from_be_bytes(w));
    }
    add(h, u64::from(proto) << 32 | l4)
}

/// The hash [`inner_flow_hash`] gives an IP packet that is not a fragment,
/// from its fields instead of its bytes, for a caller that holds them
/// already (the XDP fast path fills an entry from a flow key and must put
/// the slow path's source port in it). `src` and `dst` are IPv4 in the
/// first four bytes when `v6` is false; the ports count only for the
/// protocols that have them.
pub fn ip_flow_hash(v6: bool, src: [u8; 16], dst: [u8; 16], proto: u8, ports: (u16, u16)) -> u32 {
    let l4 = if has_ports(proto) {
        u64::from(ports.0) << 16 | u64::from(ports.1)
    } else {
        0
    };
    let h = if v6 {
        v6_words(src, dst, proto, l4)
    } else {
        let four = |a: [u8; 16]| [a[0], a[1], a[2], a[3]];
        v4_words(four(src), four(dst), proto, l4)
    };
    finish(h)
}

/// The running hash of an IPv6 header's flow, or `None` if the fixed
/// header cannot be read. Extension headers that cannot be walked leave
/// the first next-header value as the protocol, without ports.
#[inline(always)]
fn ipv6(b: &[u8]) -> Option<u64> {
    let ip = Ipv6Packet::new_checked(b).ok()?;
    let (proto, l4) = match ip.upper_layer() {
        // RFC 8200 §4.5: any packet with a Fragment header is a fragment
        // of a larger one, the first included.
        Ok(up) if up.fragment.is_none() && has_ports(up.protocol) => {
            (up.protocol, ports(b, up.offset))
        }
        Ok(up) => (up.protocol, 0),
        Err(_) => (ip.next_header(), 0),
    };
    Some(v6_words(ip.src_addr(), ip.dst_addr(), proto, l4))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP, built by hand: ports 1000 -> 2000.
    fn udp4() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 244, 1, 2]);
        f[30..34].copy_from_slice(&[10, 244, 2, 2]);
        f[34..36].copy_from_slice(&1000u16.to_be_bytes());
        f[36..38].copy_from_slice(&2000u16.to_be_bytes());
        f[38..40].copy_from_slice(&8u16.to_be_bytes());
        f
    }

    #[test]
    fn never_panics_on_short_or_odd_frames() {
        let f = udp4();
        for n in 0..=f.len() {
            inner_flow_hash(&f[..n]);
        }
        inner_flow_hash(&[0x81; 40]);
    }

    #[test]
    fn ignores_ttl_tos_id_and_macs_but_not_ports() {
        let base = inner_flow_hash(&udp4());
        let mut f = udp4();
        f[0] = 0x0a;
        f[15] = 0xb8;
        f[18] = 0x12;
        f[22] = 3;
        assert_eq!(inner_flow_hash(&f), base);
        let mut f = udp4();
        f[35] ^= 1;
        assert_ne!(inner_flow_hash(&f), base);
    }

    #[test]
    fn the_hash_from_fields_is_the_hash_from_bytes() {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[10, 244, 1, 2]);
        dst[..4].copy_from_slice(&[10, 244, 2, 2]);
        let f = udp4();
        assert_eq!(
            ip_flow_hash(false, src, dst, 17, (1000, 2000)),
            inner_flow_hash(&f)
        );
        // ICMP (no ports): the ports given are not hashed.
        let mut icmp = udp4();
        icmp[23] = 1;
        assert_eq!(
            ip_flow_hash(false, src, dst, 1, (8, 0)),
            inner_flow_hash(&icmp)
        );
        // IPv6 + UDP.
        let mut f6 = vec![0u8; 14 + 40 + 8];
        f6[12..14].copy_from_slice(&[0x86, 0xdd]);
        f6[14] = 0x60;
        f6[18..20].copy_from_slice(&8u16.to_be_bytes());
        f6[20] = 17;
        f6[21] = 64;
        let s6 = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let d6 = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        f6[22..38].copy_from_slice(&s6);
        f6[38..54].copy_from_slice(&d6);
        f6[54..56].copy_from_slice(&5u16.to_be_bytes());
        f6[56..58].copy_from_slice(&6u16.to_be_bytes());
        f6[58..60].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(ip_flow_hash(true, s6, d6, 17, (5, 6)), inner_flow_hash(&f6));
    }

    #[test]
    fn fragments_hash_on_addresses_and_protocol() {
        let mut first = udp4();
        first[20] = 0x20; // MF
        let mut later = udp4();
        later[21] = 0x10; // offset 16 units
        later[34..40].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0]);
        assert_eq!(inner_flow_hash(&first), inner_flow_hash(&later));
        assert_ne!(inner_flow_hash(&first), inner_flow_hash(&udp4()));
    }
}
