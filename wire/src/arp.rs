//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! ARP is generic over hardware and protocol address sizes, but a switch only
//! ever needs the Ethernet/IPv4 form, which is what OpenFlow's `arp_*` match
//! fields describe. Accepting only htype 1, ptype 0x0800, hlen 6, plen 4 makes
//! every address a fixed offset in a 28-byte packet, so the accessors are
//! plain loads; anything else is reported as `Unsupported` and can be
//! flooded or dropped by policy without being parsed.

use crate::bytes::{get_array, get_u16, set_array, set_u16};
use crate::{ethertype, Error, ErrorKind, Layer, MacAddr};

/// Values of the ARP operation field (RFC 826, RFC 5227).
pub mod oper {
    /// ARP request ("who has").
    pub const REQUEST: u16 = 1;
    /// ARP reply ("is at").
    pub const REPLY: u16 = 2;
}

/// Hardware type for Ethernet (RFC 826; IANA ARP parameters).
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const END: usize = 28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const HEADER_LEN: usize = field::END;

    /// Wraps `buffer` without validation; accessors panic if it is shorter
    /// than [`Self::HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking that it holds 28 bytes of Ethernet/IPv4
    /// ARP. Trailing bytes (Ethernet padding) are allowed and ignored.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the length, then the four type and size fields.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        if data.len() < field::END {
            return Err(Error::new(Layer::Arp, ErrorKind::Truncated));
        }
        if self.htype() != HTYPE_ETHERNET
            || self.ptype() != ethertype::IPV4
            || self.hlen() != 6
            || self.plen() != 4
        {
            return Err(Error::new(Layer::Arp, ErrorKind::Unsupported));
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type; always 1 (Ethernet) after `new_checked`.
    #[inline]
    pub fn htype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type; always 0x0800 (IPv4) after `new_checked`.
    #[inline]
    pub fn ptype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length; always 6 after `new_checked`.
    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length; always 4 after `new_checked`.
    #[inline]
    pub fn plen(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation: [`oper::REQUEST`], [`oper::REPLY`] or another value.
    #[inline]
    pub fn oper(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        get_array(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol (IPv4) address.
    #[inline]
    pub fn spa(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address (zero in a request).
    #[inline]
    pub fn tha(&self) -> MacAddr {
        get_array(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol (IPv4) address.
    #[inline]
    pub fn tpa(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the Ethernet/IPv4 type and size fields, for building a packet
    /// in a buffer of at least 28 bytes.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let data = self.buffer.as_mut();
        set_u16(data, field::HTYPE, HTYPE_ETHERNET);
        set_u16(data, field::PTYPE, ethertype::IPV4);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_oper(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::OPER, value);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sha(&mut self, mac: MacAddr) {
        set_array(self.buffer.as_mut(), field::SHA, &mac);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_spa(&mut self, addr: [u8; 4]) {
        set_array(self.buffer.as_mut(), field::SPA, &addr);
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_tha(&mut self, mac: MacAddr) {
        set_array(self.buffer.as_mut(), field::THA, &mac);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_tpa(&mut self, addr: [u8; 4]) {
        set_array(self.buffer.as_mut(), field::TPA, &addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A captured ARP request, "who has 192.168.1.1? tell 192.168.1.100",
    /// with the 18 bytes of padding that bring the frame to 60 bytes.
    pub(crate) const REQUEST: [u8; 46] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen oper
        0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a, // sha
        0xc0, 0xa8, 0x01, 0x64, // spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        0xc0, 0xa8, 0x01, 0x01, // tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn real_request_accessors() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.htype(), 1);
        assert_eq!(p.ptype(), 0x0800);
        assert_eq!((p.hlen(), p.plen()), (6, 4));
        assert_eq!(p.oper(), oper::REQUEST);
        assert_eq!(p.sha(), [0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a]);
        assert_eq!(p.spa(), [192, 168, 1, 100]);
        assert_eq!(p.tha(), [0; 6]);
        assert_eq!(p.tpa(), [192, 168, 1, 1]);
    }

    #[test]
    fn truncated() {
        for n in 0..28 {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..n]),
                Err(Error::new(Layer::Arp, ErrorKind::Truncated))
            );
        }
        assert!(ArpPacket::new_checked(&REQUEST[..28]).is_ok());
    }

    #[test]
    fn other_address_families_are_unsupported() {
        // Patch, in turn, htype (IEEE 802 networks = 6), ptype (IPv6), hlen
        // and plen.
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut buf = REQUEST;
            buf[at] = value;
            assert_eq!(
                ArpPacket::new_checked(&buf[..]),
                Err(Error::new(Layer::Arp, ErrorKind::Unsupported))
            );
        }
    }

    #[test]
    fn build_reply() {
        let mut p = ArpPacket::new_unchecked([0u8; 28]);
        p.set_ethernet_ipv4();
        p.set_oper(oper::REPLY);
        p.set_sha([2, 0, 0, 0, 0, 1]);
        p.set_spa([192, 168, 1, 1]);
        p.set_tha([0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a]);
        p.set_tpa([192, 168, 1, 100]);
        let p = ArpPacket::new_checked(p.into_inner()).unwrap();
        assert_eq!(p.oper(), oper::REPLY);
        assert_eq!(p.sha(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.spa(), [192, 168, 1, 1]);
        assert_eq!(p.tha(), [0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a]);
        assert_eq!(p.tpa(), [192, 168, 1, 100]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..40), eth in any::<bool>()) {
            let mut data = data;
            if eth && data.len() >= 6 {
                data[..6].copy_from_slice(&REQUEST[..6]);
            }
            if let Ok(p) = ArpPacket::new_checked(&data[..]) {
                let _ = (p.oper(), p.sha(), p.spa(), p.tha(), p.tpa());
            }
        }

        #[test]
        fn setters_round_trip(op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(),
                              tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
            let mut p = ArpPacket::new_checked(REQUEST).unwrap();
            p.set_oper(op);
            p.set_sha(sha);
            p.set_spa(spa);
            p.set_tha(tha);
            p.set_tpa(tpa);
            prop_assert_eq!((p.oper(), p.sha(), p.spa(), p.tha(), p.tpa()), (op, sha, spa, tha, tpa));
        }
    }
}
