//! IEEE 802.1Q / 802.1ad VLAN tags.
//!
//! A tag is the TPID (0x8100 for a C-TAG, 0x88a8 for an S-TAG) followed by a
//! 16-bit tag control field and the EtherType of what follows. The TPID has
//! already been read as the enclosing header's type field, so this view
//! starts right after it and covers only the last 4 bytes: TCI and inner
//! EtherType. With that split, QinQ is two `VlanHeader`s in a row and
//! neither the Ethernet view nor this one needs to loop.
//!
//! The TCI holds PCP (3 bits, IEEE 802.1Q §6.9.3), DEI (1 bit, formerly CFI)
//! and the 12-bit VLAN ID. VID 0 means "priority tag only" and 0xFFF is
//! reserved; the view reports them as they are and leaves policy to callers.

use crate::bytes::{get_u16, set_u16};
use crate::{Error, ErrorKind, Layer};

mod field {
    pub const TCI: usize = 0;
    pub const INNER_ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// A view of the 4 bytes that follow a VLAN TPID, and the payload after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Length of the TCI and inner EtherType.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without validation; accessors panic if it is shorter
    /// than [`Self::HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VlanHeader<T> {
        VlanHeader { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 4 tag bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VlanHeader<T>, Error> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// Checks that the buffer holds the 4 tag bytes.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < field::PAYLOAD {
            return Err(Error::new(Layer::Vlan, ErrorKind::Truncated));
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole tag control information field.
    #[inline]
    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point, the top 3 bits of the TCI.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator, bit 12 of the TCI.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier, the low 12 bits of the TCI.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// EtherType (or the next TPID, for QinQ) of what follows the tag.
    #[inline]
    pub fn inner_ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::INNER_ETHERTYPE)
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the whole tag control information field.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        set_u16(self.buffer.as_mut(), field::TCI, tci);
    }

    /// Sets the priority code point; only the low 3 bits of `pcp` are used.
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci);
    }

    /// Sets the VLAN identifier; only the low 12 bits of `vid` are used.
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the EtherType of what follows the tag.
    #[inline]
    pub fn set_inner_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::INNER_ETHERTYPE, value);
    }

    /// Mutable access to everything after the tag.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ethertype, EthernetFrame};
    use proptest::prelude::*;

    /// Head of a QinQ frame: S-TAG VID 100 PCP 3, then C-TAG VID 42 with DEI
    /// set, then IPv4 (as a provider bridge would send it).
    const QINQ_HEAD: [u8; 22] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xa8, 0x60,
        0x64, 0x81, 0x00, 0x10, 0x2a, 0x08, 0x00,
    ];

    #[test]
    fn qinq_fixture() {
        let eth = EthernetFrame::new_checked(&QINQ_HEAD[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::QINQ);
        let outer = VlanHeader::new_checked(eth.payload()).unwrap();
        assert_eq!(outer.tci(), 0x6064);
        assert_eq!(outer.pcp(), 3);
        assert!(!outer.dei());
        assert_eq!(outer.vid(), 100);
        assert_eq!(outer.inner_ethertype(), ethertype::VLAN);
        let inner = VlanHeader::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.pcp(), 0);
        assert!(inner.dei());
        assert_eq!(inner.vid(), 42);
        assert_eq!(inner.inner_ethertype(), ethertype::IPV4);
        assert!(inner.payload().is_empty());
    }

    #[test]
    fn truncated_tag() {
        for n in 0..4 {
            let err = VlanHeader::new_checked(&QINQ_HEAD[14..14 + n]).unwrap_err();
            assert_eq!(err, Error::new(Layer::Vlan, ErrorKind::Truncated));
            assert_eq!(err.at(14).offset, 14);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..10)) {
            match VlanHeader::new_checked(&data[..]) {
                Ok(v) => {
                    let _ = (v.tci(), v.pcp(), v.dei(), v.vid(), v.inner_ethertype(), v.payload());
                }
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::Truncated),
            }
        }

        #[test]
        fn setters_round_trip(pcp in 0u8..8, vid in 0u16..4096, dei in any::<bool>(), et in any::<u16>()) {
            let mut v = VlanHeader::new_checked([0u8; 4]).unwrap();
            v.set_tci(if dei { 0x1000 } else { 0 });
            v.set_vid(vid);
            v.set_pcp(pcp);
            v.set_inner_ethertype(et);
            prop_assert_eq!((v.pcp(), v.dei(), v.vid(), v.inner_ethertype()), (pcp, dei, vid, et));
            prop_assert_eq!(v.tci(), (u16::from(pcp) << 13) | if dei { 0x1000 } else { 0 } | vid);
        }
    }
}
