//! IPv6 fixed headers (RFC 8200 §3) and the walk over extension headers.
//!
//! `new_checked` proves the 40-byte fixed header, version 6, and that the
//! payload length fits in the buffer (which, as with IPv4, may be longer
//! because of Ethernet padding). Jumbograms (RFC 2675, payload length 0 plus
//! a hop-by-hop option) cannot arrive over Ethernet and are not supported:
//! their payload reads as empty.
//!
//! The upper-layer protocol of an IPv6 packet hides behind a chain of
//! extension headers. [`Ipv6Packet::upper_layer`] walks that chain once, with
//! a bound on its length, and returns the protocol, its offset and any
//! fragment header, which is what a flow extractor needs and all it needs:
//! options inside the headers are not interpreted. The walk is a method
//! rather than part of `new_checked` because most callers only need it for
//! IPv6 traffic they actually classify, and its errors are of a different
//! layer ([`Layer::Ipv6Ext`]) so that counters can tell them apart.

use crate::bytes::{get_array, get_u16, get_u32, set_array, set_u16, set_u32};
use crate::ipproto;
use crate::{Error, ErrorKind, Layer};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const PAYLOAD: usize = 40;
}

/// The minimum IPv6 MTU (RFC 8200 §5), which is also the ceiling for an
/// ICMPv6 error and the packet it quotes (RFC 4443 §2.4(c)).
pub const MIN_MTU: usize = 1280;

/// How many extension headers [`Ipv6Packet::upper_layer`] walks before it
/// gives up with `Unsupported`. RFC 8200 §4.1 recommends an order with at
/// most one of each kind (destination options twice), seven in all; eight
/// leaves room for one more and bounds the per-packet work.
pub const MAX_EXT_HEADERS: usize = 8;

/// Where the upper-layer header of an IPv6 packet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Upper {
    /// Protocol number of the first header that is not an extension header
    /// (59, "no next header", is returned as such).
    pub protocol: u8,
    /// Offset of that header from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header, if one was crossed.
    pub fragment: Option<Ipv6Frag>,
}

/// The fields of an IPv6 fragment header (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Frag {
    /// Fragment offset in 8-byte units, as on the wire.
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more: bool,
    /// Identification shared by all fragments of the packet.
    pub ident: u32,
}

impl Ipv6Frag {
    /// True for the first fragment, the only one that carries the upper
    /// layer header.
    #[inline]
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// A view of an IPv6 fixed header and the payload its length covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without validation; accessors panic if the header or
    /// the payload it claims do not fit.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after validating version and lengths.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 40 bytes present (`Truncated`), version 6
    /// (`BadVersion`), 40 + payload length <= buffer (`BadTotalLen`).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        let err = |kind| Err(Error::new(Layer::Ipv6, kind));
        if data.len() < field::PAYLOAD {
            return err(ErrorKind::Truncated);
        }
        if self.version() != 6 {
            return err(ErrorKind::BadVersion);
        }
        if field::PAYLOAD + usize::from(self.payload_len()) > data.len() {
            return err(ErrorKind::BadTotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The first 32-bit word: version, traffic class and flow label.
    #[inline]
    fn word0(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// IP version; always 6 after `new_checked`.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class: DSCP in the top 6 bits, ECN in the low 2.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    /// Differentiated services code point (RFC 2474 §3).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// Explicit congestion notification bits (RFC 3168 §5).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Length of everything after the fixed header, extension headers
    /// included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Type of the header that follows the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        get_array(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        get_array(self.buffer.as_ref(), field::DST)
    }

    /// The payload length's worth of bytes after the fixed header,
    /// extension headers included; trailing padding is excluded.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..self.payload_end()]
    }

    /// Offset one past the payload; `new_checked` proved it in bounds.
    #[inline]
    fn payload_end(&self) -> usize {
        field::PAYLOAD + usize::from(self.payload_len())
    }

    /// Walks the extension headers to the upper-layer protocol.
    ///
    /// Hop-by-hop (0), routing (43), destination options (60), mobility
    /// (135), HIP (139) and shim6 (140) headers share the RFC 8200 §4 length
    /// format, `(len + 1) * 8` bytes; AH (51) counts 4-byte units minus 2
    /// (RFC 4302 §2.2); a fragment header (44) is 8 bytes. Anything else,
    /// ESP and "no next header" included, ends the walk. After a fragment
    /// header with a non-zero offset the walk stops too, because the bytes
    /// behind it are the middle of some other header (RFC 8200 §4.5), and
    /// the result names that fragment header's next header.
    ///
    /// Errors have layer [`Layer::Ipv6Ext`] and the offset, from the start
    /// of the IPv6 header, of the extension header that does not fit in the
    /// payload (`Truncated`) or that would exceed [`MAX_EXT_HEADERS`]
    /// (`Unsupported`).
    #[inline]
    pub fn upper_layer(&self) -> Result<Ipv6Upper, Error> {
        let data = self.buffer.as_ref();
        let end = self.payload_end();
        let mut protocol = self.next_header();
        let mut offset = field::PAYLOAD;
        let mut fragment = None;
        let mut walked = 0;
        loop {
            let generic = matches!(
                protocol,
                ipproto::HOPOPTS
                    | ipproto::ROUTING
                    | ipproto::DSTOPTS
                    | ipproto::MOBILITY
                    | ipproto::HIP
                    | ipproto::SHIM6
            );
            if !generic && protocol != ipproto::AH && protocol != ipproto::FRAGMENT {
                return Ok(Ipv6Upper {
                    protocol,
                    offset,
                    fragment,
                });
            }
            let err = |kind| Err(Error::new(Layer::Ipv6Ext, kind).at(offset));
            if walked == MAX_EXT_HEADERS {
                return err(ErrorKind::Unsupported);
            }
            // Every extension header starts with next header and a length
            // byte, and none is shorter than 8 bytes.
            if offset + 8 > end {
                return err(ErrorKind::Truncated);
            }
            let next = data[offset];
            let len = match protocol {
                ipproto::FRAGMENT => 8,
                ipproto::AH => (usize::from(data[offset + 1]) + 2) * 4,
                _ => (usize::from(data[offset + 1]) + 1) * 8,
            };
            if offset + len > end {
                return err(ErrorKind::Truncated);
            }
            if protocol == ipproto::FRAGMENT {
                let word = get_u16(data, offset + 2);
                let frag = Ipv6Frag {
                    offset: word >> 3,
                    more: word & 1 != 0,
                    ident: get_u32(data, offset + 4),
                };
                fragment = Some(frag);
                if !frag.is_first() {
                    return Ok(Ipv6Upper {
                        protocol: next,
                        offset: offset + len,
                        fragment,
                    });
                }
            }
            protocol = next;
            offset += len;
            walked += 1;
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the version nibble (6 for a valid packet), keeping the rest.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_TC_FLOW];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the traffic class (DSCP and ECN).
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let word = (self.word0() & 0xf00f_ffff) | (u32::from(tc) << 20);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word);
    }

    /// Sets the flow label; only the low 20 bits of `label` are used.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let word = (self.word0() & 0xfff0_0000) | (label & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    /// Sets the type of the header that follows the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, next: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next;
    }

    /// Sets the hop limit. IPv6 has no header checksum to patch.
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address; upper-layer checksums are not updated.
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        set_array(self.buffer.as_mut(), field::SRC, &addr);
    }

    /// Sets the destination address; upper-layer checksums are not updated.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        set_array(self.buffer.as_mut(), field::DST, &addr);
    }

    /// Mutable access to the payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{IPV6_HBH_FRAG, ND_NS};
    use proptest::prelude::*;

    fn ext_err(offset: usize, kind: ErrorKind) -> Result<Ipv6Upper, Error> {
        Err(Error {
            layer: Layer::Ipv6Ext,
            offset,
            kind,
        })
    }

    /// An IPv6 header followed by `exts` (each a next-header/bytes pair,
    /// chained in order) and `tail` bytes of upper-layer data.
    fn chain(first: u8, exts: &[(u8, Vec<u8>)], tail: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 40];
        buf[0] = 0x60;
        buf[6] = first;
        for (next, bytes) in exts {
            let at = buf.len();
            buf.extend_from_slice(bytes);
            buf[at] = *next;
        }
        buf.extend(std::iter::repeat_n(0xee, tail));
        let len = (buf.len() - 40) as u16;
        buf[4..6].copy_from_slice(&len.to_be_bytes());
        buf
    }

    #[test]
    fn hop_by_hop_and_fragment_fixture() {
        let ip = Ipv6Packet::new_checked(&IPV6_HBH_FRAG[14..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0x2e);
        assert_eq!((ip.dscp(), ip.ecn()), (0x0b, 0x02));
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 48);
        assert_eq!(ip.next_header(), ipproto::HOPOPTS);
        assert_eq!(ip.hop_limit(), 64);
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let mut dst = src;
        src[15] = 1;
        dst[15] = 2;
        assert_eq!(ip.src_addr(), src);
        assert_eq!(ip.dst_addr(), dst);
        assert_eq!(ip.payload().len(), 48);
        assert_eq!(
            ip.upper_layer(),
            Ok(Ipv6Upper {
                protocol: ipproto::UDP,
                offset: 56,
                fragment: Some(Ipv6Frag {
                    offset: 0,
                    more: true,
                    ident: 0xdead_beef
                }),
            })
        );
    }

    #[test]
    fn no_extension_headers() {
        let ip = Ipv6Packet::new_checked(&ND_NS[14..]).unwrap();
        assert_eq!(ip.traffic_class(), 0);
        assert_eq!(ip.flow_label(), 0);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(
            ip.upper_layer(),
            Ok(Ipv6Upper {
                protocol: ipproto::ICMPV6,
                offset: 40,
                fragment: None
            })
        );
    }

    #[test]
    fn later_fragment_stops_the_walk() {
        // Fragment at offset 3 (24 bytes), then what would parse as a
        // destination options header: the walk must not look at it.
        let frag = vec![0, 0, 0, 3 << 3, 0, 0, 0, 7];
        let buf = chain(ipproto::FRAGMENT, &[(ipproto::DSTOPTS, frag)], 16);
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            ip.upper_layer(),
            Ok(Ipv6Upper {
                protocol: ipproto::DSTOPTS,
                offset: 48,
                fragment: Some(Ipv6Frag {
                    offset: 3,
                    more: false,
                    ident: 7
                }),
            })
        );
    }

    #[test]
    fn every_length_format() {
        // Routing (24 bytes), AH (payload len 4 -> 24 bytes), destination
        // options (8 bytes), mobility (16 bytes) then no next header.
        let exts = [
            (ipproto::AH, {
                let mut v = vec![0; 24];
                v[1] = 2;
                v
            }),
            (ipproto::DSTOPTS, {
                let mut v = vec![0; 24];
                v[1] = 4;
                v
            }),
            (ipproto::MOBILITY, vec![0; 8]),
            (ipproto::NONXT, {
                let mut v = vec![0; 16];
                v[1] = 1;
                v
            }),
        ];
        let buf = chain(ipproto::ROUTING, &exts, 0);
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let up = ip.upper_layer().unwrap();
        assert_eq!((up.protocol, up.offset, up.fragment), (59, 40 + 72, None));
        // HIP and shim6 use the same format as the others.
        for proto in [ipproto::HIP, ipproto::SHIM6] {
            let buf = chain(proto, &[(ipproto::TCP, vec![0; 8])], 20);
            let up = Ipv6Packet::new_checked(&buf[..]).unwrap().upper_layer();
            assert_eq!(up.unwrap().offset, 48);
        }
    }

    #[test]
    fn truncated_extension_headers() {
        // The payload length ends inside the hop-by-hop header's first 8.
        let mut buf = IPV6_HBH_FRAG[14..].to_vec();
        buf[4..6].copy_from_slice(&4u16.to_be_bytes());
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(ip.upper_layer(), ext_err(40, ErrorKind::Truncated));
        // A routing header whose length byte claims more than is there.
        let mut rt = vec![0u8; 8];
        rt[1] = 5;
        let buf = chain(ipproto::ROUTING, &[(ipproto::TCP, rt)], 20);
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(ip.upper_layer(), ext_err(40, ErrorKind::Truncated));
        // The fragment header cut short, behind the hop-by-hop header.
        let mut buf = IPV6_HBH_FRAG[14..].to_vec();
        buf[4..6].copy_from_slice(&12u16.to_be_bytes());
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let e = ip.upper_layer().unwrap_err();
        assert_eq!(
            e,
            Error {
                layer: Layer::Ipv6Ext,
                offset: 48,
                kind: ErrorKind::Truncated
            }
        );
        assert_eq!(
            e.at(14).to_string(),
            "ipv6 extension header at offset 62: truncated"
        );
    }

    #[test]
    fn too_many_extension_headers() {
        let exts: Vec<_> = (0..9)
            .map(|i| {
                (
                    if i < 8 {
                        ipproto::DSTOPTS
                    } else {
                        ipproto::UDP
                    },
                    vec![0; 8],
                )
            })
            .collect();
        let buf = chain(ipproto::DSTOPTS, &exts, 8);
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            ip.upper_layer(),
            ext_err(40 + 8 * 8, ErrorKind::Unsupported)
        );
        let buf = chain(ipproto::DSTOPTS, &exts[1..], 8);
        let up = Ipv6Packet::new_checked(&buf[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((up.protocol, up.offset), (ipproto::UDP, 40 + 8 * 8));
    }

    #[test]
    fn fixed_header_errors() {
        let good = &ND_NS[14..];
        for n in 0..40 {
            assert_eq!(
                Ipv6Packet::new_checked(&good[..n]),
                Err(Error::new(Layer::Ipv6, ErrorKind::Truncated))
            );
        }
        let mut b = good.to_vec();
        b[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err().kind,
            ErrorKind::BadVersion
        );
        assert_eq!(
            Ipv6Packet::new_checked(&good[..good.len() - 1]).unwrap_err(),
            Error::new(Layer::Ipv6, ErrorKind::BadTotalLen)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..160),
                                       nh in prop::sample::select(vec![0u8, 6, 17, 43, 44, 51, 58, 59, 60, 135, 139, 140])) {
            if data.len() >= 40 {
                data[0] = 0x60 | (data[0] & 0x0f);
                data[6] = nh;
                let len = (data[4] as usize * 256 + data[5] as usize) % (data.len() - 39);
                data[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            }
            if let Ok(ip) = Ipv6Packet::new_checked(&data[..]) {
                let _ = (ip.traffic_class(), ip.dscp(), ip.ecn(), ip.flow_label(), ip.next_header(),
                         ip.hop_limit(), ip.src_addr(), ip.dst_addr());
                prop_assert_eq!(ip.payload().len(), usize::from(ip.payload_len()));
                match ip.upper_layer() {
                    Ok(up) => prop_assert!(up.offset <= 40 + ip.payload().len()),
                    Err(e) => {
                        prop_assert_eq!(e.layer, Layer::Ipv6Ext);
                        prop_assert!(e.offset <= 40 + ip.payload().len());
                    }
                }
            }
        }

        #[test]
        fn setters_round_trip(tc in any::<u8>(), flow in 0u32..0x10_0000, len in any::<u16>(), nh in any::<u8>(),
                              hl in any::<u8>(), src in any::<[u8; 16]>(), dst in any::<[u8; 16]>()) {
            let mut ip = Ipv6Packet::new_unchecked([0u8; 40]);
            ip.set_version(6);
            ip.set_flow_label(flow);
            ip.set_traffic_class(tc);
            ip.set_payload_len(len);
            ip.set_next_header(nh);
            ip.set_hop_limit(hl);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            prop_assert_eq!((ip.version(), ip.traffic_class(), ip.flow_label(), ip.payload_len()), (6, tc, flow, len));
            prop_assert_eq!((ip.next_header(), ip.hop_limit(), ip.src_addr(), ip.dst_addr()), (nh, hl, src, dst));
        }
    }
}
