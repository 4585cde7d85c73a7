//! IPv4 headers (RFC 791) and the IP protocol numbers shared with IPv6.
//!
//! `new_checked` proves, once, everything the accessors rely on: the 20
//! fixed bytes, version 4, an IHL of at least 5 words whose options fit in
//! the buffer, and a total length that covers the header and fits in the
//! buffer. The buffer may be longer than the total length, because Ethernet
//! pads short frames to 60 bytes; [`Ipv4Packet::payload`] therefore ends at
//! the total length, never at the end of the buffer.
//!
//! The header checksum is not verified on parse: a switch forwarding at
//! layer 2 does not own the IPv4 header, and summing it would cost every
//! packet. Callers that act as a router, which RFC 1812 §5.2.2 requires to
//! validate the checksum, call [`Ipv4Packet::verify_checksum`]; callers that
//! rewrite TTL, TOS or an address patch the checksum with
//! [`crate::checksum::update16`] and friends rather than summing the header
//! again.
//!
//! The setters that change lengths (`set_version_ihl`, `set_total_len`) can
//! break what `new_checked` proved; after using them on a view, call
//! [`Ipv4Packet::check_len`] before trusting the length-dependent accessors.

use crate::bytes::{get_array, get_u16, set_array, set_u16};
use crate::checksum;
use crate::{Error, ErrorKind, Layer};

/// The most an ICMP error datagram may carry, IP header included: as much
/// of the offending packet as fits in 576 bytes (RFC 1812 §4.3.2.3).
pub const ERROR_DATAGRAM_MAX: usize = 576;

/// The TTL (and IPv6 hop limit) of packets the switch originates, such as
/// ICMP errors and TCP resets: what Linux uses for its own.
pub const DEFAULT_TTL: u8 = 64;

/// Whether `a` names a single host (RFC 1122 §3.2.1.3): not zero,
/// loopback, multicast, broadcast or class E. No ICMP error or reset is
/// sent to or about anything else (RFC 1122 §3.2.2).
pub fn is_single_host(a: core::net::Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.octets()[0] >= 240)
}

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), used in
/// the IPv4 protocol field and the IPv6 next header field alike.
pub mod ipproto {
    /// IPv6 hop-by-hop options (RFC 8200 §4.3).
    pub const HOPOPTS: u8 = 0;
    /// Internet Control Message Protocol (RFC 792).
    pub const ICMP: u8 = 1;
    /// Internet Group Management Protocol (RFC 3376).
    pub const IGMP: u8 = 2;
    /// IPv4 encapsulation (RFC 2003).
    pub const IPIP: u8 = 4;
    /// Transmission Control Protocol (RFC 9293).
    pub const TCP: u8 = 6;
    /// User Datagram Protocol (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation (RFC 2473).
    pub const IPV6: u8 = 41;
    /// IPv6 routing header (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Generic Routing Encapsulation (RFC 2784).
    pub const GRE: u8 = 47;
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header" (RFC 8200 §4.7).
    pub const NONXT: u8 = 59;
    /// IPv6 destination options (RFC 8200 §4.6).
    pub const DSTOPTS: u8 = 60;
    /// Stream Control Transmission Protocol (RFC 9260).
    pub const SCTP: u8 = 132;
    /// Mobility header (RFC 6275).
    pub const MOBILITY: u8 = 135;
    /// Host Identity Protocol (RFC 7401).
    pub const HIP: u8 = 139;
    /// Shim6 protocol (RFC 5533).
    pub const SHIM6: u8 = 140;
}

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const OPTIONS: usize = 20;
}

/// Don't-fragment flag in the flags/fragment-offset word (RFC 791 §3.1).
const DF: u16 = 0x4000;
/// More-fragments flag.
const MF: u16 = 0x2000;
/// Fragment offset, in 8-byte units.
const FRAG_OFFSET: u16 = 0x1fff;

/// A view of an IPv4 header and the payload its total length covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps `buffer` without validation; accessors panic if the header or
    /// the lengths it claims do not fit. Use on buffers the caller built.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after validating version and lengths (see the module
    /// documentation for the checks, which [`Self::check_len`] performs).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 20 bytes present (`Truncated`), version 4
    /// (`BadVersion`), IHL at least 5 (`BadHeaderLen`), IHL*4 bytes present
    /// (`Truncated`), and IHL*4 <= total length <= buffer (`BadTotalLen`).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        let err = |kind| Err(Error::new(Layer::Ipv4, kind));
        if data.len() < field::OPTIONS {
            return err(ErrorKind::Truncated);
        }
        if self.version() != 4 {
            return err(ErrorKind::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < field::OPTIONS {
            return err(ErrorKind::BadHeaderLen);
        }
        if header_len > data.len() {
            return err(ErrorKind::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > data.len() {
            return err(ErrorKind::BadTotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version; always 4 after `new_checked`.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL times 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The whole former TOS byte: DSCP in the top 6 bits, ECN in the low 2.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Differentiated services code point (RFC 2474 §3).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit congestion notification bits (RFC 3168 §5).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length of header and payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// Identification, used to reassemble fragments.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & DF != 0
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & MF != 0
    }

    /// Fragment offset in 8-byte units, as on the wire.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.flags_frag() & FRAG_OFFSET
    }

    /// True for any fragment, first or later: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (MF | FRAG_OFFSET) != 0
    }

    /// The flags/fragment-offset word, read once for the helpers above.
    #[inline]
    fn flags_frag(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload; see [`ipproto`].
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::DST)
    }

    /// Options, the header bytes after the fixed 20; often empty.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The payload, from the end of the header to the total length; any
    /// Ethernet padding after it is excluded.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let total = usize::from(self.total_len());
        &self.buffer.as_ref()[self.header_len()..total]
    }

    /// True if the header checksum is correct (RFC 791 §3.1; the sum over
    /// the header, checksum included, folds to 0xFFFF).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        checksum::fold(checksum::sum(header)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in 32-bit words (5 to 15).
    #[inline]
    pub fn set_version_ihl(&mut self, ihl_words: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (ihl_words & 0x0f);
    }

    /// Sets the whole DS byte (DSCP and ECN).
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets the DF and MF flags and the fragment offset (8-byte units; only
    /// the low 13 bits are used). The reserved flag is cleared, as RFC 791
    /// §3.1 requires.
    #[inline]
    pub fn set_flags_frag(&mut self, df: bool, mf: bool, offset: u16) {
        let word = if df { DF } else { 0 } | if mf { MF } else { 0 } | (offset & FRAG_OFFSET);
        set_u16(self.buffer.as_mut(), field::FLAGS_FRAG, word);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol of the payload.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Stores a header checksum as given.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address. The checksum is not updated.
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        set_array(self.buffer.as_mut(), field::SRC, &addr);
    }

    /// Sets the destination address. The checksum is not updated.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        set_array(self.buffer.as_mut(), field::DST, &addr);
    }

    /// Recomputes the header checksum from scratch over `header_len()` bytes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let value = checksum::checksum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(value);
    }

    /// Mutable access to the payload (header end to total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ICMP_ECHO, TCP_SYN, UDP_DNS};
    use proptest::prelude::*;

    fn err(kind: ErrorKind) -> Result<Ipv4Packet<&'static [u8]>, Error> {
        Err(Error::new(Layer::Ipv4, kind))
    }

    #[test]
    fn tcp_syn_header() {
        let ip = Ipv4Packet::new_checked(&TCP_SYN[14..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!((ip.tos(), ip.dscp(), ip.ecn()), (0, 0, 0));
        assert_eq!(ip.total_len(), 60);
        assert_eq!(ip.ident(), 0x8f21);
        assert!(ip.dont_frag());
        assert!(!ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), ipproto::TCP);
        assert_eq!(ip.checksum(), 0xb3b3);
        assert_eq!(ip.src_addr(), [192, 168, 1, 100]);
        assert_eq!(ip.dst_addr(), [93, 184, 216, 34]);
        assert!(ip.options().is_empty());
        assert_eq!(ip.payload().len(), 40);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn udp_and_icmp_headers() {
        let ip = Ipv4Packet::new_checked(&UDP_DNS[14..]).unwrap();
        assert!(!ip.dont_frag());
        assert_eq!(ip.protocol(), ipproto::UDP);
        assert_eq!(ip.payload().len(), 37);
        assert!(ip.verify_checksum());
        let ip = Ipv4Packet::new_checked(&ICMP_ECHO[14..]).unwrap();
        assert_eq!(ip.protocol(), ipproto::ICMP);
        assert_eq!(ip.dst_addr(), [8, 8, 8, 8]);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // Trailing bytes after the total length, as a NIC that pads frames
        // (or a short datagram in a 60-byte frame) leaves them.
        let mut buf = TCP_SYN[14..].to_vec();
        buf.extend_from_slice(&[0; 6]);
        let ip = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(ip.payload(), &TCP_SYN[34..]);
    }

    #[test]
    fn options_are_covered() {
        // A header with a router alert option (RFC 2113), as IGMP uses.
        let mut ip = Ipv4Packet::new_unchecked([0u8; 28]);
        ip.set_version_ihl(6);
        ip.set_total_len(28);
        ip.set_ttl(1);
        ip.set_protocol(ipproto::IGMP);
        ip.set_src_addr([10, 0, 0, 1]);
        ip.set_dst_addr([224, 0, 0, 22]);
        let mut buf = ip.into_inner();
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]);
        let mut ip = Ipv4Packet::new_checked(buf).unwrap();
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(ip.payload().len(), 4);
    }

    #[test]
    fn each_inconsistency_has_its_error() {
        let good = &TCP_SYN[14..];
        for n in 0..20 {
            assert_eq!(
                Ipv4Packet::new_checked(&good[..n]),
                err(ErrorKind::Truncated)
            );
        }
        let mut b = good.to_vec();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err().kind,
            ErrorKind::BadVersion
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err().kind,
            ErrorKind::BadHeaderLen
        );
        // IHL 15 asks for 60 header bytes; the 20-byte prefix has fewer.
        b[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..20]).unwrap_err().kind,
            ErrorKind::Truncated
        );
        b[0] = 0x45;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err().kind,
            ErrorKind::BadTotalLen
        );
        b[2..4].copy_from_slice(&61u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err().kind,
            ErrorKind::BadTotalLen
        );
        // Total length 20 with IHL 5: a header-only packet is valid.
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&b[..])
            .unwrap()
            .payload()
            .is_empty());
        // Offsets rebase onto the frame.
        let e = Ipv4Packet::new_checked(&TCP_SYN[14..30])
            .unwrap_err()
            .at(14);
        assert_eq!(e.to_string(), "ipv4 header at offset 14: truncated");
    }

    #[test]
    fn ttl_decrement_patch_matches_recompute() {
        let mut buf = TCP_SYN[14..].to_vec();
        let mut ip = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        let old = get_u16(&[ip.ttl(), ip.protocol()], 0);
        ip.set_ttl(ip.ttl() - 1);
        let new = get_u16(&[ip.ttl(), ip.protocol()], 0);
        let patched = checksum::update16(ip.checksum(), old, new);
        ip.fill_checksum();
        assert_eq!(patched, ip.checksum());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..80), fix in any::<bool>()) {
            // Half of the cases get a plausible first byte so that the deeper
            // checks are reached too.
            if fix && !data.is_empty() {
                data[0] = 0x45 + (data[0] & 0x03);
            }
            if let Ok(ip) = Ipv4Packet::new_checked(&data[..]) {
                let _ = (ip.version(), ip.tos(), ip.dscp(), ip.ecn(), ip.ident(), ip.dont_frag(),
                         ip.more_frags(), ip.frag_offset(), ip.is_fragment(), ip.ttl(),
                         ip.protocol(), ip.checksum(), ip.src_addr(), ip.dst_addr(),
                         ip.verify_checksum());
                prop_assert_eq!(ip.options().len() + 20, ip.header_len());
                prop_assert_eq!(ip.payload().len() + ip.header_len(), usize::from(ip.total_len()));
            }
        }

        #[test]
        fn setters_round_trip(tos in any::<u8>(), ident in any::<u16>(), df in any::<bool>(),
                              mf in any::<bool>(), off in 0u16..0x2000, ttl in any::<u8>(),
                              proto in any::<u8>(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
            let mut ip = Ipv4Packet::new_unchecked(vec![0u8; 20]);
            ip.set_version_ihl(5);
            ip.set_total_len(20);
            ip.set_tos(tos);
            ip.set_ident(ident);
            ip.set_flags_frag(df, mf, off);
            ip.set_ttl(ttl);
            ip.set_protocol(proto);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
            let ip = Ipv4Packet::new_checked(ip.into_inner()).unwrap();
            prop_assert_eq!((ip.tos(), ip.ident(), ip.dont_frag(), ip.more_frags(), ip.frag_offset()),
                            (tos, ident, df, mf, off));
            prop_assert_eq!((ip.ttl(), ip.protocol(), ip.src_addr(), ip.dst_addr()), (ttl, proto, src, dst));
            prop_assert_eq!((ip.dscp(), ip.ecn()), (tos >> 2, tos & 3));
            prop_assert!(ip.verify_checksum());
        }

        #[test]
        fn address_rewrite_patch_matches_recompute(dst in any::<[u8; 4]>()) {
            let mut buf = UDP_DNS[14..].to_vec();
            let mut ip = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            let old = u32::from_be_bytes(ip.dst_addr());
            ip.set_dst_addr(dst);
            let patched = checksum::update32(ip.checksum(), old, u32::from_be_bytes(dst));
            ip.set_checksum(patched);
            prop_assert!(ip.verify_checksum());
            ip.fill_checksum();
            prop_assert_eq!(patched, ip.checksum());
        }
    }
}
