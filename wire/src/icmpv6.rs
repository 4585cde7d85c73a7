//! ICMP for IPv6 (RFC 4443), with the neighbor discovery fields (RFC 4861)
//! that a switch matches on and answers.
//!
//! Every ICMPv6 message has type, code and checksum (RFC 4443 §2.1), so the
//! view requires 4 bytes; the types whose fixed fields the accessors read
//! require more: 8 for echo request and reply (identifier and sequence,
//! RFC 4443 §4) and 24 for neighbor solicitation and advertisement
//! (reserved/flags word and target address, RFC 4861 §4.3 and §4.4). A short
//! message of another type is still accepted, so a switch can forward ICMPv6
//! types it does not know.
//!
//! Type-dependent accessors (`echo_*`, `nd_*`) look their bytes up with
//! `get`, so they stay panic-free even if `set_msg_type` later changes the
//! type of a short message; they report 0 or `None` when the bytes are not
//! there.
//!
//! The checksum covers an IPv6 pseudo-header and the whole message
//! (RFC 4443 §2.3), so the view must be given exactly the ICMPv6 message,
//! and the caller passes the addresses of the enclosing IPv6 header.

use crate::bytes::{get_array, get_u16, set_array, set_u16};
use crate::checksum;
use crate::ipproto;
use crate::{Error, ErrorKind, Layer, MacAddr};

/// ICMPv6 message types (RFC 4443, RFC 4861, IANA "ICMPv6 Parameters").
pub mod msg_type {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Multicast listener query (RFC 2710).
    pub const MLD_QUERY: u8 = 130;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbor solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
    /// Multicast listener report version 2 (RFC 3810).
    pub const MLD2_REPORT: u8 = 143;
}

/// Flags in the first byte of a neighbor advertisement (RFC 4861 §4.4).
pub mod nd_flags {
    /// Router: the sender is a router.
    pub const ROUTER: u8 = 0x80;
    /// Solicited: sent in response to a solicitation.
    pub const SOLICITED: u8 = 0x40;
    /// Override: replace an existing cache entry.
    pub const OVERRIDE: u8 = 0x20;
}

/// ND option type of a source link-layer address (RFC 4861 §4.6.1).
pub const ND_OPT_SOURCE_LLADDR: u8 = 1;
/// ND option type of a target link-layer address (RFC 4861 §4.6.1).
pub const ND_OPT_TARGET_LLADDR: u8 = 2;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const BODY: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const ECHO_END: usize = 8;
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: usize = 8;
    pub const ND_OPTIONS: usize = 24;
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Length of the part every message has: type, code and checksum.
    pub const HEADER_LEN: usize = field::BODY;

    /// Wraps `buffer` without validation; accessors panic if it is shorter
    /// than [`Self::HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` after checking the length its type requires.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks for 4 bytes, and for 8 (echo) or 24 (NS, NA) by type; a short
    /// message is `Truncated`.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        let need = if len < field::BODY {
            field::BODY
        } else {
            match self.msg_type() {
                msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY => field::ECHO_END,
                msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => field::ND_OPTIONS,
                _ => field::BODY,
            }
        };
        if len < need {
            return Err(Error::new(Layer::Icmpv6, ErrorKind::Truncated));
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type; see [`msg_type`].
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code, whose meaning depends on the type.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Everything after type, code and checksum.
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY..]
    }

    /// The 16-bit word at `at`, or 0 if the message is too short for it.
    #[inline]
    fn word_or_zero(&self, at: usize) -> u16 {
        match self.buffer.as_ref().get(at..at + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        }
    }

    /// Echo identifier (bytes 4..6), or 0 if the message is shorter than 8
    /// bytes. Meaningful for echo request and reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        if self.buffer.as_ref().len() < field::ECHO_END {
            return 0;
        }
        self.word_or_zero(field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8), or 0 if the message is shorter
    /// than 8 bytes.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        self.word_or_zero(field::ECHO_SEQ)
    }

    /// True for neighbor solicitations and advertisements.
    #[inline]
    fn is_nd(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT
        )
    }

    /// The target address of a neighbor solicitation or advertisement;
    /// `None` for other types.
    #[inline]
    pub fn nd_target(&self) -> Option<[u8; 16]> {
        if !self.is_nd() {
            return None;
        }
        let data = self.buffer.as_ref();
        if data.len() < field::ND_OPTIONS {
            return None;
        }
        Some(get_array(data, field::ND_TARGET))
    }

    /// The R, S and O flags of a neighbor advertisement (see [`nd_flags`]);
    /// 0 for other types.
    #[inline]
    pub fn nd_flags(&self) -> u8 {
        if self.msg_type() != msg_type::NEIGHBOR_ADVERT {
            return 0;
        }
        self.buffer
            .as_ref()
            .get(field::ND_FLAGS)
            .copied()
            .unwrap_or(0)
            & 0xe0
    }

    /// The source and target link-layer address options of a neighbor
    /// solicitation or advertisement, as `(sll, tll)`.
    ///
    /// Options are TLVs whose length counts 8-byte units (RFC 4861 §4.6).
    /// Only 8-byte address options are taken, since only those hold a MAC;
    /// the first of each kind wins. A zero length is invalid (RFC 4861
    /// §4.6: "nodes MUST silently discard an ND packet that contains an
    /// option with length zero"), and an option overrunning the message
    /// is malformed: either ends the walk with what was found before it,
    /// leaving the drop decision to the caller. Other types give
    /// `(None, None)`.
    #[inline]
    pub fn nd_option_lladdr(&self) -> (Option<MacAddr>, Option<MacAddr>) {
        let mut sll = None;
        let mut tll = None;
        if !self.is_nd() {
            return (sll, tll);
        }
        let mut opts = self.buffer.as_ref().get(field::ND_OPTIONS..).unwrap_or(&[]);
        while opts.len() >= 2 {
            let len = usize::from(opts[1]) * 8;
            if len == 0 || len > opts.len() {
                break;
            }
            if len == 8 {
                match opts[0] {
                    ND_OPT_SOURCE_LLADDR if sll.is_none() => sll = Some(get_array(opts, 2)),
                    ND_OPT_TARGET_LLADDR if tll.is_none() => tll = Some(get_array(opts, 2)),
                    _ => {}
                }
            }
            opts = &opts[len..];
        }
        (sll, tll)
    }

    /// Partial sum of the pseudo-header for this message.
    #[inline]
    fn pseudo_sum(&self, src: &[u8; 16], dst: &[u8; 16]) -> u32 {
        let len = self.buffer.as_ref().len() as u32;
        checksum::pseudo_header_v6(src, dst, ipproto::ICMPV6, len)
    }

    /// True if the checksum over the pseudo-header built from `src` and
    /// `dst` and the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let sum = self.pseudo_sum(src, dst) + checksum::sum(self.buffer.as_ref());
        checksum::fold(sum) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type. The length the new type needs is not checked.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Stores a checksum as given.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier. Panics if the message is shorter than 8
    /// bytes, which `new_checked` rules out for echo messages.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number. Panics if the message is shorter than
    /// 8 bytes.
    #[inline]
    pub fn set_echo_seq(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Sets the flags byte of a neighbor advertisement and clears the rest
    /// of the reserved word. Panics if the message is shorter than 8 bytes.
    #[inline]
    pub fn set_nd_flags(&mut self, flags: u8) {
        let data = self.buffer.as_mut();
        data[field::ND_FLAGS..field::ND_TARGET].copy_from_slice(&[flags & 0xe0, 0, 0, 0]);
    }

    /// Sets the target address of a neighbor solicitation or advertisement.
    /// Panics if the message is shorter than 24 bytes, which `new_checked`
    /// rules out for those types.
    #[inline]
    pub fn set_nd_target(&mut self, addr: [u8; 16]) {
        set_array(self.buffer.as_mut(), field::ND_TARGET, &addr);
    }

    /// Mutable access to everything after type, code and checksum.
    #[inline]
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY..]
    }

    /// Recomputes the checksum over the pseudo-header and whole message.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let sum = self.pseudo_sum(src, dst) + checksum::sum(self.buffer.as_ref());
        self.set_checksum(!checksum::fold(sum));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ND_NS;
    use proptest::prelude::*;

    fn addrs() -> ([u8; 16], [u8; 16]) {
        (
            ND_NS[22..38].try_into().unwrap(),
            ND_NS[38..54].try_into().unwrap(),
        )
    }

    #[test]
    fn neighbor_solicitation_fixture() {
        let (src, dst) = addrs();
        let p = Icmpv6Packet::new_checked(&ND_NS[54..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x7212);
        let mut target = [0u8; 16];
        target[..2].copy_from_slice(&[0xfe, 0x80]);
        target[15] = 1;
        assert_eq!(p.nd_target(), Some(target));
        assert_eq!(p.nd_flags(), 0);
        assert_eq!(
            p.nd_option_lladdr(),
            (Some([0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a]), None)
        );
        assert_eq!(p.body().len(), 28);
        assert!(p.verify_checksum(&src, &dst));
        // The pseudo-header matters: another destination fails.
        let mut other = dst;
        other[15] ^= 1;
        assert!(!p.verify_checksum(&src, &other));
        // An echo accessor on a non-echo message reads the reserved word.
        assert_eq!((p.echo_ident(), p.echo_seq()), (0, 0));
    }

    #[test]
    fn answer_with_an_advertisement() {
        // Build the NA a switch's ND responder would send for the fixture.
        let (src, _) = addrs();
        let target: [u8; 16] = ND_NS[62..78].try_into().unwrap();
        let mut buf = [0u8; 32];
        let mut na = Icmpv6Packet::new_unchecked(&mut buf[..]);
        na.set_msg_type(msg_type::NEIGHBOR_ADVERT);
        na.set_nd_flags(nd_flags::SOLICITED | nd_flags::OVERRIDE | 0x1f);
        na.set_nd_target(target);
        na.body_mut()[20..28].copy_from_slice(&[2, 1, 2, 0, 0, 0, 0, 1]);
        na.fill_checksum(&target, &src);
        let na = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(na.nd_flags(), 0x60);
        assert_eq!(na.nd_target(), Some(target));
        assert_eq!(na.nd_option_lladdr(), (None, Some([2, 0, 0, 0, 0, 1])));
        assert!(na.verify_checksum(&target, &src));
    }

    #[test]
    fn option_walk_is_defensive() {
        let mut buf = ND_NS[54..].to_vec();
        // A zero-length option first: nothing is found.
        buf[25] = 0;
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.nd_option_lladdr(), (None, None));
        // An option longer than the message.
        buf[25] = 2;
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.nd_option_lladdr(), (None, None));
        // A 16-byte option of another type (a nonce, RFC 3971), then a
        // TLL, then two SLLs of which the first wins.
        let mut buf = ND_NS[54..78].to_vec();
        buf.extend_from_slice(&[14, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        buf.extend_from_slice(&[2, 1, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        buf.extend_from_slice(&[1, 1, 1, 1, 1, 1, 1, 1]);
        buf.extend_from_slice(&[1, 1, 2, 2, 2, 2, 2, 2]);
        buf.push(1); // A trailing odd byte is not an option.
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.nd_option_lladdr(),
            (Some([1; 6]), Some([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]))
        );
    }

    #[test]
    fn length_by_type() {
        let err = Err(Error::new(Layer::Icmpv6, ErrorKind::Truncated));
        for n in 0..4 {
            assert_eq!(Icmpv6Packet::new_checked(&ND_NS[54..54 + n]), err);
        }
        for n in 4..24 {
            assert_eq!(Icmpv6Packet::new_checked(&ND_NS[54..54 + n]), err);
        }
        let echo = [128u8, 0, 0, 0, 0, 7, 0, 9];
        for n in 4..8 {
            assert_eq!(Icmpv6Packet::new_checked(&echo[..n]), err);
        }
        let p = Icmpv6Packet::new_checked(&echo[..]).unwrap();
        assert_eq!((p.echo_ident(), p.echo_seq()), (7, 9));
        assert_eq!(p.nd_target(), None);
        assert_eq!(p.nd_option_lladdr(), (None, None));
        // A 4-byte message of a type the view has no fields for is fine,
        // and its type-dependent accessors report nothing.
        let mut short = [1u8, 0, 0, 0];
        let mut p = Icmpv6Packet::new_checked(&mut short[..]).unwrap();
        assert_eq!((p.echo_ident(), p.echo_seq()), (0, 0));
        p.set_msg_type(msg_type::NEIGHBOR_ADVERT);
        assert_eq!((p.nd_target(), p.nd_flags()), (None, 0));
        assert_eq!(p.nd_option_lladdr(), (None, None));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..64),
                                       t in prop::sample::select(vec![1u8, 128, 129, 133, 135, 136, 200])) {
            if !data.is_empty() {
                data[0] = t;
            }
            if let Ok(p) = Icmpv6Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.body(), p.echo_ident(), p.echo_seq(),
                         p.nd_target(), p.nd_flags(), p.nd_option_lladdr(),
                         p.verify_checksum(&[0; 16], &[1; 16]));
            }
        }

        #[test]
        fn setters_round_trip(code in any::<u8>(), id in any::<u16>(), seq in any::<u16>(),
                              src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
                              data in prop::collection::vec(any::<u8>(), 0..20)) {
            let mut buf = vec![0u8; 8];
            buf.extend_from_slice(&data);
            let mut p = Icmpv6Packet::new_unchecked(buf);
            p.set_msg_type(msg_type::ECHO_REPLY);
            p.set_code(code);
            p.set_echo_ident(id);
            p.set_echo_seq(seq);
            p.fill_checksum(&src, &dst);
            let p = Icmpv6Packet::new_checked(p.into_inner()).unwrap();
            prop_assert_eq!((p.msg_type(), p.code(), p.echo_ident(), p.echo_seq()),
                            (msg_type::ECHO_REPLY, code, id, seq));
            prop_assert!(p.verify_checksum(&src, &dst));
        }
    }
}
