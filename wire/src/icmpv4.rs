//! ICMP for IPv4 (RFC 792).
//!
//! Every ICMP message starts with type, code and checksum, followed by a
//! 32-bit word whose meaning depends on the type (identifier and sequence
//! for echo, the next-hop MTU for "fragmentation needed", the gateway for a
//! redirect, unused otherwise). The view requires those 8 bytes so that the
//! "rest of header" accessors are plain loads for any type; RFC 792 defines
//! no message shorter than that.
//!
//! The checksum covers the whole ICMP message (RFC 792, "Checksum"), so the
//! view must be given exactly the IPv4 payload, not a frame with padding.

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::checksum;
use crate::{Error, ErrorKind, Layer};

/// ICMPv4 message types (RFC 792, RFC 1122, IANA "ICMP Parameters").
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Router advertisement (RFC 1256).
    pub const ROUTER_ADVERT: u8 = 9;
    /// Router solicitation (RFC 1256).
    pub const ROUTER_SOLICIT: u8 = 10;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const DATA: usize = 8;
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of the header: type, code, checksum and the rest-of-header
    /// word.
    pub const HEADER_LEN: usize = field::DATA;

    /// Wraps `buffer` without validation; accessors panic if it is shorter
    /// than [`Self::HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 8-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < field::DATA {
            return Err(Error::new(Layer::Icmpv4, ErrorKind::Truncated));
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

    /// Echo identifier (meaningful for echo and timestamp messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo and timestamp messages).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// The type-specific word at bytes 4..8.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST)
    }

    /// Everything after the 8-byte header: echo data, or the quoted IP
    /// header and leading payload bytes of an error message.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// True if the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
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

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Sets the type-specific word at bytes 4..8.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Mutable access to everything after the 8-byte header.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Recomputes the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ICMP_ECHO;
    use proptest::prelude::*;

    #[test]
    fn echo_request_fixture() {
        let p = Icmpv4Packet::new_checked(&ICMP_ECHO[34..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x116a);
        assert_eq!(p.echo_ident(), 0x1a2b);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.rest_of_header(), 0x1a2b_0001);
        assert_eq!(p.data().len(), 56);
        assert_eq!(&p.data()[16..], &(0x10..0x38).collect::<Vec<u8>>()[..]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn reply_built_in_place_verifies() {
        // Turn the request into its reply the way a responder does, patching
        // the checksum for the type change and comparing with a recompute.
        let mut buf = ICMP_ECHO[34..].to_vec();
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        let patched = checksum::update16(p.checksum(), 0x0800, 0x0000);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.fill_checksum();
        assert_eq!(p.checksum(), patched);
        assert!(p.verify_checksum());
        p.set_code(1);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn truncated() {
        for n in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&ICMP_ECHO[34..34 + n]),
                Err(Error::new(Layer::Icmpv4, ErrorKind::Truncated))
            );
        }
        assert!(Icmpv4Packet::new_checked(&ICMP_ECHO[34..42])
            .unwrap()
            .data()
            .is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(p) = Icmpv4Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq(),
                         p.rest_of_header(), p.data(), p.verify_checksum());
            }
        }

        #[test]
        fn setters_round_trip(t in any::<u8>(), c in any::<u8>(), id in any::<u16>(), seq in any::<u16>(),
                              data in prop::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = vec![0u8; 8];
            buf.extend_from_slice(&data);
            let mut p = Icmpv4Packet::new_checked(buf).unwrap();
            p.set_msg_type(t);
            p.set_code(c);
            p.set_echo_ident(id);
            p.set_echo_seq(seq);
            p.fill_checksum();
            prop_assert_eq!((p.msg_type(), p.code(), p.echo_ident(), p.echo_seq()), (t, c, id, seq));
            prop_assert_eq!(p.rest_of_header(), (u32::from(id) << 16) | u32::from(seq));
            prop_assert!(p.verify_checksum());
            p.set_rest_of_header(0x0102_0304);
            prop_assert_eq!((p.echo_ident(), p.echo_seq()), (0x0102, 0x0304));
            prop_assert_eq!(p.data(), &data[..]);
        }
    }
}
