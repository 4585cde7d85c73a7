//! UDP headers (RFC 768).
//!
//! `new_checked` proves the 8-byte header and a length field that is at
//! least 8 and fits in the buffer. The length field, not the buffer, bounds
//! the payload and the checksum, so trailing bytes (padding of a short frame
//! that the IP layer did not trim) are ignored as RFC 768 intends.
//!
//! The checksum has two special values. RFC 768: a transmitted 0 means the
//! sender computed no checksum, which IPv4 allows, so a computed 0 is sent
//! as 0xFFFF (its ones'-complement equivalent). RFC 8200 §8.1: over IPv6
//! the checksum is mandatory and a received 0 is invalid. Callers that patch
//! a UDP checksum incrementally (`checksum::update16` and friends) must keep
//! both rules themselves: leave a 0 checksum alone over IPv4, and store an
//! updated result of 0 as 0xFFFF.

use crate::bytes::{get_u16, set_u16};
use crate::checksum;
use crate::ipproto;
use crate::{Error, ErrorKind, Layer};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// A view of a UDP datagram: header and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without validation; accessors panic if the header or
    /// the length it claims do not fit.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after validating the length field.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 8 bytes present (`Truncated`), length field at
    /// least 8 (`BadLength`), length field <= buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        let err = |kind| Err(Error::new(Layer::Udp, kind));
        if len < field::PAYLOAD {
            return err(ErrorKind::Truncated);
        }
        let claimed = usize::from(self.len());
        if claimed < field::PAYLOAD {
            return err(ErrorKind::BadLength);
        }
        if claimed > len {
            return err(ErrorKind::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum as stored; 0 means none over IPv4.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, from byte 8 to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    /// The bytes the checksum covers: header and payload, per the length.
    #[inline]
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Folded sum of a pseudo-header partial sum and the datagram.
    #[inline]
    fn folded(&self, pseudo: u32) -> u16 {
        checksum::fold(pseudo + checksum::sum(self.datagram()))
    }

    /// True if the checksum is absent (0, allowed over IPv4 by RFC 768) or
    /// correct for an IPv4 pseudo-header with these addresses.
    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        self.folded(checksum::pseudo_header_v4(
            src,
            dst,
            ipproto::UDP,
            self.len(),
        )) == 0xffff
    }

    /// True if the checksum is present and correct for an IPv6
    /// pseudo-header with these addresses (RFC 8200 §8.1: a 0 checksum is
    /// invalid over IPv6).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let len = u32::from(self.len());
        self.folded(checksum::pseudo_header_v6(src, dst, ipproto::UDP, len)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port. The checksum is not updated.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port. The checksum is not updated.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field. Re-run `check_len` before trusting
    /// `payload()` if the new value might exceed the buffer.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Stores a checksum as given (0 to send none over IPv4).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable access to the payload, from byte 8 to the length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }

    /// Computes and stores the checksum for an IPv4 pseudo-header; a
    /// computed 0 is stored as 0xFFFF (RFC 768).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, ipproto::UDP, self.len());
        self.store(!self.folded(pseudo));
    }

    /// Computes and stores the checksum for an IPv6 pseudo-header; a
    /// computed 0 is stored as 0xFFFF (RFC 8200 §8.1).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v6(src, dst, ipproto::UDP, u32::from(self.len()));
        self.store(!self.folded(pseudo));
    }

    /// Stores a computed checksum, mapping 0 to 0xFFFF.
    #[inline]
    fn store(&mut self, computed: u16) {
        self.set_checksum(if computed == 0 { 0xffff } else { computed });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::UDP_DNS;
    use proptest::prelude::*;

    const SRC: [u8; 4] = [192, 168, 1, 100];
    const DST: [u8; 4] = [8, 8, 8, 8];

    #[test]
    fn dns_query_fixture() {
        let u = UdpPacket::new_checked(&UDP_DNS[34..]).unwrap();
        assert_eq!(u.src_port(), 54321);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.len(), 37);
        assert_eq!(u.checksum(), 0xcac3);
        assert_eq!(&u.payload()[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&u.payload()[12..25], b"\x07example\x03com\x00");
        assert_eq!(u.payload().len(), 29);
        assert!(u.verify_checksum_v4(SRC, DST));
        assert!(!u.verify_checksum_v4(DST, [8, 8, 4, 4]));
    }

    #[test]
    fn trailing_bytes_are_outside_the_datagram() {
        let mut buf = UDP_DNS[34..].to_vec();
        buf.extend_from_slice(&[0xff; 9]);
        let u = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(u.payload().len(), 29);
        assert!(u.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn zero_checksum_rules() {
        let mut buf = UDP_DNS[34..].to_vec();
        buf[6] = 0;
        buf[7] = 0;
        let u = UdpPacket::new_checked(&buf[..]).unwrap();
        assert!(u.verify_checksum_v4(SRC, DST));
        assert!(!u.verify_checksum_v6(&[0; 16], &[0; 16]));

        // Pick the last payload word so that the checksum computes to 0;
        // it must then be sent as 0xFFFF and still verify.
        let n = buf.len();
        buf.push(0); // Make the payload even so the last word is whole.
        buf[4..6].copy_from_slice(&((n + 1) as u16).to_be_bytes());
        let pseudo = checksum::pseudo_header_v4(SRC, DST, 17, (n + 1) as u16);
        buf[n - 1] = 0;
        let s = checksum::fold(pseudo + checksum::sum(&buf));
        buf[n - 1..].copy_from_slice(&(0xffff - s).to_be_bytes());
        let mut u = UdpPacket::new_checked(&mut buf[..]).unwrap();
        u.fill_checksum_v4(SRC, DST);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn length_errors() {
        let d = &UDP_DNS[34..];
        for n in 0..8 {
            assert_eq!(
                UdpPacket::new_checked(&d[..n]),
                Err(Error::new(Layer::Udp, ErrorKind::Truncated))
            );
        }
        let mut b = d.to_vec();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&b[..]),
            Err(Error::new(Layer::Udp, ErrorKind::BadLength))
        );
        b[4..6].copy_from_slice(&38u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&b[..]),
            Err(Error::new(Layer::Udp, ErrorKind::Truncated))
        );
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(UdpPacket::new_checked(&b[..]).unwrap().payload().is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..40), fix in any::<bool>()) {
            if fix && data.len() >= 8 {
                let len = 8 + usize::from(data[5]) % (data.len() - 7);
                data[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            }
            if let Ok(u) = UdpPacket::new_checked(&data[..]) {
                let _ = (u.src_port(), u.dst_port(), u.checksum(),
                         u.verify_checksum_v4([1; 4], [2; 4]), u.verify_checksum_v6(&[1; 16], &[2; 16]));
                prop_assert_eq!(u.payload().len() + 8, usize::from(u.len()));
            }
        }

        #[test]
        fn setters_round_trip(sp in any::<u16>(), dp in any::<u16>(),
                              payload in prop::collection::vec(any::<u8>(), 0..40),
                              src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
                              s4 in any::<[u8; 4]>(), d4 in any::<[u8; 4]>()) {
            let mut buf = vec![0u8; 8];
            buf.extend_from_slice(&payload);
            let mut u = UdpPacket::new_unchecked(buf);
            u.set_src_port(sp);
            u.set_dst_port(dp);
            u.set_len((payload.len() + 8) as u16);
            u.fill_checksum_v6(&src, &dst);
            prop_assert!(u.checksum() != 0);
            let mut u = UdpPacket::new_checked(u.into_inner()).unwrap();
            prop_assert_eq!((u.src_port(), u.dst_port(), u.payload()), (sp, dp, &payload[..]));
            prop_assert!(u.verify_checksum_v6(&src, &dst));
            u.fill_checksum_v4(s4, d4);
            prop_assert!(u.checksum() != 0);
            prop_assert!(u.verify_checksum_v4(s4, d4));
        }
    }
}
