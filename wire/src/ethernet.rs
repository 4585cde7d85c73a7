//! Ethernet II frames (IEEE 802.3 with an EtherType, RFC 894).
//!
//! The view covers the 14-byte header: destination and source MAC and the
//! 16-bit type field. That field is reported as it stands on the wire, so for
//! a tagged frame [`EthernetFrame::ethertype`] is the TPID (0x8100 or
//! 0x88a8) and the caller continues with a [`crate::VlanHeader`] over the
//! payload; this keeps the view a fixed-size header with no loop in it and
//! leaves the policy on how many tags to accept to the flow extractor.
//!
//! The frame check sequence is not part of the buffer: AF_XDP and every
//! other packet source the datapath uses strip it. Frames shorter than the
//! 60-byte minimum are accepted, because the kernel may hand us frames whose
//! padding was already removed; only the 14 header bytes are required.

use crate::bytes::{get_array, get_u16, set_array, set_u16};
use crate::{Error, ErrorKind, Layer, MacAddr};

/// Well-known values of the EtherType field (IEEE registry).
pub mod ethertype {
    /// Internet Protocol version 4 (RFC 894).
    pub const IPV4: u16 = 0x0800;
    /// Address Resolution Protocol (RFC 826).
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag (C-TAG) TPID.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (S-TAG) TPID, used for QinQ.
    pub const QINQ: u16 = 0x88a8;
    /// Internet Protocol version 6 (RFC 2464).
    pub const IPV6: u16 = 0x86dd;
    /// Values below this are IEEE 802.3 length fields, not EtherTypes
    /// (IEEE 802.3 §3.2.6).
    pub const MIN: u16 = 0x0600;
}

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// The all-ones broadcast address.
pub const BROADCAST: MacAddr = [0xff; 6];

/// True for group addresses: the I/G bit, the least significant bit of the
/// first octet, is set (IEEE 802 §8.2). Broadcast is a multicast address.
#[inline]
pub fn is_multicast(mac: &MacAddr) -> bool {
    mac[0] & 0x01 != 0
}

/// True for the all-ones broadcast address.
#[inline]
pub fn is_broadcast(mac: &MacAddr) -> bool {
    *mac == BROADCAST
}

/// A view of an Ethernet II header and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the header: two MAC addresses and the type field.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without validation; accessors panic if it is shorter
    /// than [`Self::HEADER_LEN`]. Use on buffers the caller built itself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the 14-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < field::PAYLOAD {
            return Err(Error::new(Layer::Ethernet, ErrorKind::Truncated));
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        get_array(self.buffer.as_ref(), field::DST)
    }

    /// Source MAC address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        get_array(self.buffer.as_ref(), field::SRC)
    }

    /// Destination and source MAC addresses as right-aligned 48-bit numbers
    /// (`02:00:00:00:00:01` is `0x0200_0000_0001`). Two 8-byte loads and byte
    /// swaps: the fast path's way to read both, where copying each address
    /// into an array and reassembling it costs several times as much.
    #[inline(always)]
    pub fn macs_u48(&self) -> (u64, u64) {
        let data = self.buffer.as_ref();
        let mut dst = [0u8; 8];
        dst.copy_from_slice(&data[0..8]);
        let mut src = [0u8; 8];
        src.copy_from_slice(&data[6..14]);
        (u64::from_be_bytes(dst) >> 16, u64::from_be_bytes(src) >> 16)
    }

    /// The type field at bytes 12..14: the EtherType of an untagged frame,
    /// or the outer TPID of a tagged one.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the header, including any Ethernet padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        set_array(self.buffer.as_mut(), field::DST, &mac);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        set_array(self.buffer.as_mut(), field::SRC, &mac);
    }

    /// Sets the type field at bytes 12..14.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// Mutable access to everything after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod macs_tests {
    use super::*;

    #[test]
    fn macs_u48_matches_the_arrays() {
        let f = [
            0x02, 0, 0, 0, 0, 0x0b, 0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x08, 0x00,
        ];
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.macs_u48(), (0x0200_0000_000b, 0x0abb_ccdd_eeff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The start of a real broadcast ARP request frame (the payload is the
    /// ARP fixture in `arp.rs`).
    const ARP_FRAME_HEAD: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a, 0x08, 0x06, 0x00,
        0x01,
    ];

    #[test]
    fn real_frame_accessors() {
        let f = EthernetFrame::new_checked(&ARP_FRAME_HEAD[..]).unwrap();
        assert_eq!(f.dst(), BROADCAST);
        assert_eq!(f.src(), [0x00, 0x0c, 0x29, 0x3e, 0x5b, 0x7a]);
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload(), &[0x00, 0x01]);
        assert!(is_broadcast(&f.dst()));
        assert!(is_multicast(&f.dst()));
        assert!(!is_multicast(&f.src()));
        assert!(is_multicast(&[0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(is_multicast(&[0x33, 0x33, 0, 0, 0, 1]));
        assert!(!is_broadcast(&[0x33, 0x33, 0, 0, 0, 1]));
    }

    #[test]
    fn header_only_frame_has_empty_payload() {
        let f = EthernetFrame::new_checked(&ARP_FRAME_HEAD[..14]).unwrap();
        assert!(f.payload().is_empty());
    }

    #[test]
    fn truncated_header() {
        for n in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_FRAME_HEAD[..n]),
                Err(Error {
                    layer: Layer::Ethernet,
                    offset: 0,
                    kind: ErrorKind::Truncated
                })
            );
        }
    }

    #[test]
    fn setters_round_trip() {
        let mut f = EthernetFrame::new_unchecked([0u8; 20]);
        f.set_dst([1, 2, 3, 4, 5, 6]);
        f.set_src([7, 8, 9, 10, 11, 12]);
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut().copy_from_slice(&[0xaa; 6]);
        assert_eq!(f.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(f.ethertype(), 0x86dd);
        assert_eq!(f.payload(), &[0xaa; 6]);
        let raw = f.into_inner();
        assert_eq!(&raw[12..14], &[0x86, 0xdd]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = EthernetFrame::new_checked(&data[..]) {
                let _ = (f.dst(), f.src(), f.ethertype(), f.payload().len());
                prop_assert_eq!(f.payload().len(), data.len() - 14);
            } else {
                prop_assert!(data.len() < 14);
            }
        }

        #[test]
        fn setters_round_trip_any(dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(), et in any::<u16>()) {
            let mut f = EthernetFrame::new_checked(vec![0u8; 14]).unwrap();
            f.set_dst(dst);
            f.set_src(src);
            f.set_ethertype(et);
            prop_assert_eq!((f.dst(), f.src(), f.ethertype()), (dst, src, et));
        }
    }
}
