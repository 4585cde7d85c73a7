//! TCP headers (RFC 9293 §3.1).
//!
//! `new_checked` proves the 20 fixed bytes and a data offset of at least 5
//! words whose options fit in the buffer. The view treats its whole buffer
//! as the segment: the caller gives exactly the IP payload, which is also
//! what the checksum covers (RFC 9293 §3.1, "Checksum"), and the payload is
//! everything after the options.
//!
//! [`TcpPacket::flags`] returns the low 12 bits of the offset/flags word,
//! NS through FIN plus the three reserved bits, the same encoding as
//! OpenFlow's `tcp_flags` match field and Open vSwitch's `TCP_FLAGS()`, so
//! the flow extractor can store it without shuffling bits.

use crate::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::checksum;
use crate::ipproto;
use crate::{Error, ErrorKind, Layer};

/// TCP flag bits as returned by [`TcpPacket::flags`] (RFC 9293 §3.1,
/// RFC 3168 §6.1 for ECE and CWR, RFC 3540 for the historic NS bit).
pub mod flags {
    /// No more data from sender.
    pub const FIN: u16 = 0x001;
    /// Synchronize sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset the connection.
    pub const RST: u16 = 0x004;
    /// Push function.
    pub const PSH: u16 = 0x008;
    /// Acknowledgment field is significant.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer field is significant.
    pub const URG: u16 = 0x020;
    /// ECN-Echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce sum (RFC 3540, now historic).
    pub const NS: u16 = 0x100;
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFF_FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

/// The flag bits of the offset/flags word.
const FLAGS_MASK: u16 = 0x0fff;

/// A view of a TCP segment: header, options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps `buffer` without validation; accessors panic if the header
    /// does not fit.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after validating the header length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 20 bytes present (`Truncated`), data offset at
    /// least 5 (`BadHeaderLen`), data offset * 4 bytes present
    /// (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        let err = |kind| Err(Error::new(Layer::Tcp, kind));
        if len < field::OPTIONS {
            return err(ErrorKind::Truncated);
        }
        let header_len = self.header_len();
        if header_len < field::OPTIONS {
            return err(ErrorKind::BadHeaderLen);
        }
        if header_len > len {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number (significant when ACK is set).
    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset times 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFF_FLAGS] >> 4) * 4
    }

    /// The low 12 bits of bytes 12..14: reserved bits, NS, CWR, ECE, URG,
    /// ACK, PSH, RST, SYN, FIN; see [`flags`].
    #[inline]
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OFF_FLAGS) & FLAGS_MASK
    }

    /// Receive window, unscaled.
    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer (significant when URG is set).
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Options, the header bytes after the fixed 20; not interpreted.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Checksum of the pseudo-header partial sum plus the whole segment.
    #[inline]
    fn folded(&self, pseudo: u32) -> u16 {
        checksum::fold(pseudo + checksum::sum(self.buffer.as_ref()))
    }

    /// True if the checksum is correct for an IPv4 pseudo-header with these
    /// addresses and the buffer's length.
    #[inline]
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        let len = self.buffer.as_ref().len() as u16;
        self.folded(checksum::pseudo_header_v4(src, dst, ipproto::TCP, len)) == 0xffff
    }

    /// True if the checksum is correct for an IPv6 pseudo-header with these
    /// addresses and the buffer's length.
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let len = self.buffer.as_ref().len() as u32;
        self.folded(checksum::pseudo_header_v6(src, dst, ipproto::TCP, len)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, value);
    }

    /// Sets the 12 flag bits, keeping the data offset.
    #[inline]
    pub fn set_flags(&mut self, value: u16) {
        let data = self.buffer.as_mut();
        let word = (get_u16(data, field::OFF_FLAGS) & !FLAGS_MASK) | (value & FLAGS_MASK);
        set_u16(data, field::OFF_FLAGS, word);
    }

    /// Sets the header length in bytes, a multiple of 4 from 20 to 60
    /// (other values are truncated to that form), keeping the flags.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (field::OPTIONS..=60).contains(&len));
        let words = ((len / 4) & 0x0f) as u8;
        let b = &mut self.buffer.as_mut()[field::OFF_FLAGS];
        *b = (*b & 0x0f) | (words << 4);
    }

    /// Sets the receive window.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Stores a checksum as given.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Mutable access to the options.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Mutable access to everything after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Recomputes the checksum over an IPv4 pseudo-header and the buffer.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let len = self.buffer.as_ref().len() as u16;
        let value = !self.folded(checksum::pseudo_header_v4(src, dst, ipproto::TCP, len));
        self.set_checksum(value);
    }

    /// Recomputes the checksum over an IPv6 pseudo-header and the buffer.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let len = self.buffer.as_ref().len() as u32;
        let value = !self.folded(checksum::pseudo_header_v6(src, dst, ipproto::TCP, len));
        self.set_checksum(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TCP_SYN;
    use proptest::prelude::*;

    const SRC: [u8; 4] = [192, 168, 1, 100];
    const DST: [u8; 4] = [93, 184, 216, 34];

    #[test]
    fn syn_with_options_fixture() {
        let t = TcpPacket::new_checked(&TCP_SYN[34..]).unwrap();
        assert_eq!(t.src_port(), 51234);
        assert_eq!(t.dst_port(), 443);
        assert_eq!(t.seq_number(), 0x2f6c_9b11);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), flags::SYN);
        assert_eq!(t.window_len(), 64240);
        assert_eq!(t.checksum(), 0x078e);
        assert_eq!(t.urgent_at(), 0);
        assert_eq!(
            t.options(),
            &[2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x9a, 0x3c, 0x1f, 0x02, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        assert!(t.payload().is_empty());
        assert!(t.verify_checksum_v4(SRC, DST));
        assert!(!t.verify_checksum_v4(SRC, [93, 184, 216, 35]));
    }

    #[test]
    fn nat_rewrite_with_incremental_patch() {
        // Rewrite the source port and address as SNAT does, patching the
        // checksum for both (the address through the pseudo-header).
        let mut buf = TCP_SYN[34..].to_vec();
        let mut t = TcpPacket::new_checked(&mut buf[..]).unwrap();
        let new_src = [203, 0, 113, 9];
        let mut c = checksum::update16(t.checksum(), t.src_port(), 40000);
        c = checksum::update32(c, u32::from_be_bytes(SRC), u32::from_be_bytes(new_src));
        t.set_src_port(40000);
        t.set_checksum(c);
        assert!(t.verify_checksum_v4(new_src, DST));
        t.fill_checksum_v4(new_src, DST);
        assert_eq!(t.checksum(), c);
    }

    #[test]
    fn header_errors() {
        let seg = &TCP_SYN[34..];
        for n in 0..20 {
            assert_eq!(
                TcpPacket::new_checked(&seg[..n]),
                Err(Error::new(Layer::Tcp, ErrorKind::Truncated))
            );
        }
        // Options run past the end of the buffer.
        assert_eq!(
            TcpPacket::new_checked(&seg[..39]).unwrap_err().kind,
            ErrorKind::Truncated
        );
        let mut b = seg.to_vec();
        b[12] = 0x40 | (b[12] & 0x0f);
        assert_eq!(
            TcpPacket::new_checked(&b[..]),
            Err(Error::new(Layer::Tcp, ErrorKind::BadHeaderLen))
        );
    }

    #[test]
    fn all_flag_bits_and_reserved() {
        let mut t = TcpPacket::new_unchecked([0u8; 20]);
        t.set_header_len(20);
        t.set_flags(0xffff);
        assert_eq!(t.flags(), 0x0fff);
        assert_eq!(t.header_len(), 20);
        t.set_flags(flags::NS | flags::CWR | flags::ECE | flags::ACK | flags::FIN);
        assert_eq!(t.into_inner()[12..14], [0x51, 0xd1]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(t) = TcpPacket::new_checked(&data[..]) {
                let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags(),
                         t.window_len(), t.checksum(), t.urgent_at(),
                         t.verify_checksum_v4([1; 4], [2; 4]), t.verify_checksum_v6(&[1; 16], &[2; 16]));
                prop_assert_eq!(t.options().len() + 20, t.header_len());
                prop_assert_eq!(t.payload().len() + t.header_len(), data.len());
            }
        }

        #[test]
        fn setters_round_trip(sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
                              words in 5usize..16, fl in 0u16..0x1000, win in any::<u16>(), urg in any::<u16>(),
                              payload in prop::collection::vec(any::<u8>(), 0..30),
                              src in any::<[u8; 16]>(), dst in any::<[u8; 16]>()) {
            let mut buf = vec![0u8; words * 4];
            buf.extend_from_slice(&payload);
            let mut t = TcpPacket::new_unchecked(buf);
            t.set_src_port(sp);
            t.set_dst_port(dp);
            t.set_seq_number(seq);
            t.set_ack_number(ack);
            t.set_flags(fl);
            t.set_header_len(words * 4);
            t.set_window_len(win);
            t.set_urgent_at(urg);
            t.fill_checksum_v6(&src, &dst);
            let t = TcpPacket::new_checked(t.into_inner()).unwrap();
            prop_assert_eq!((t.src_port(), t.dst_port(), t.seq_number(), t.ack_number()), (sp, dp, seq, ack));
            prop_assert_eq!((t.flags(), t.header_len(), t.window_len(), t.urgent_at()), (fl, words * 4, win, urg));
            prop_assert_eq!(t.payload(), &payload[..]);
            prop_assert!(t.verify_checksum_v6(&src, &dst));
        }
    }
}
