//! Geneve headers (RFC 8926 §3.4) and their option TLVs (RFC 8926 §3.5).
//!
//! `new_checked` proves, once, the 8-byte base header, version 0, that the
//! option area the header claims fits in the buffer, and that every option's
//! length stays inside that area. After that the option iterator and every
//! accessor are plain loads that cannot panic or run past the option area,
//! whatever bytes a remote tunnel endpoint sent.
//!
//! The view covers the Geneve header and everything after it (the UDP
//! payload). [`GenevePacket::payload`] starts after the options: for
//! protocol type 0x6558 that is an Ethernet frame.
//!
//! Errors are a small enum of their own rather than [`crate::Error`]: the
//! reasons a Geneve header is refused (bad version, bad option length) are
//! specific to this header and map one to one onto drop counters in `encap`.
//!
//! Version: RFC 8926 §3.4, "Packets received by a tunnel endpoint with an
//! unknown version MUST be dropped." Only version 0 exists, so the check
//! belongs to the parse, not to each caller.

use crate::bytes::{get_u16, set_u16};
use core::fmt;

/// The IANA-assigned UDP destination port of Geneve (RFC 8926 §3.3).
pub const PORT: u16 = 6081;
/// Protocol type of an Ethernet payload ("Transparent Ethernet Bridging").
pub const PROTO_ETHERNET: u16 = 0x6558;
/// The critical bit of an option's type byte (RFC 8926 §3.5).
pub const OPT_CRITICAL: u8 = 0x80;
/// Length of the base header.
pub const HEADER_LEN: usize = 8;
/// Length of an option's own header (class, type, length).
pub const OPT_HEADER_LEN: usize = 4;
/// The largest option area: a 6-bit length field counting 4-byte words.
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// The largest data of one option: a 5-bit length counting 4-byte words.
pub const MAX_OPT_DATA_LEN: usize = 31 * 4;

mod field {
    pub const VER_OPTLEN: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const VNI: usize = 4;
    pub const OPTIONS: usize = 8;
}

const FLAG_OAM: u8 = 0x80;
const FLAG_CRITICAL: u8 = 0x40;

/// Why a Geneve header was rejected. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeneveError {
    /// geneve header truncated
    Truncated,
    /// geneve version is not 0
    BadVersion,
    /// geneve option area or an option length runs past the header
    BadOptLen,
}

impl GeneveError {
    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            GeneveError::Truncated => "geneve header truncated",
            GeneveError::BadVersion => "geneve version is not 0",
            GeneveError::BadOptLen => "geneve option area or an option length runs past the header",
        }
    }
}

impl fmt::Display for GeneveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for GeneveError {}

/// One option TLV, as found in the option area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeneveOption<'a> {
    /// Option class (the namespace of the type).
    pub class: u16,
    /// Option type, critical bit included.
    pub typ: u8,
    /// The option data (a multiple of 4 bytes, at most 124).
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// True if the critical bit of the type is set.
    #[inline]
    pub fn is_critical(&self) -> bool {
        self.typ & OPT_CRITICAL != 0
    }

    /// Length of the option on the wire, header included.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        OPT_HEADER_LEN + self.data.len()
    }
}

/// Walks an option area, yielding options until the area ends or an option
/// would run past it (which [`check_options`] rules out beforehand).
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionIter<'a> {
    /// Iterates over a raw option area. Bytes that do not form a whole
    /// option end the iteration silently; validate with [`check_options`]
    /// first to tell that apart from a clean end.
    #[inline]
    pub fn new(area: &'a [u8]) -> OptionIter<'a> {
        OptionIter { rest: area }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = GeneveOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<GeneveOption<'a>> {
        let (class, typ, data_len) = opt_header(self.rest)?;
        let data = self.rest.get(OPT_HEADER_LEN..OPT_HEADER_LEN + data_len)?;
        self.rest = &self.rest[OPT_HEADER_LEN + data_len..];
        Some(GeneveOption { class, typ, data })
    }
}

/// Decodes an option header: class, type and data length in bytes.
#[inline]
fn opt_header(b: &[u8]) -> Option<(u16, u8, usize)> {
    let h = b.get(..OPT_HEADER_LEN)?;
    // RFC 8926 §3.5: "Length (5 bits): Length of the option, expressed in
    // 4-byte multiples, excluding the Option Header." The three bits above
    // it are reserved.
    Some((
        u16::from_be_bytes([h[0], h[1]]),
        h[2],
        usize::from(h[3] & 0x1f) * 4,
    ))
}

/// Checks that `area` is a whole number of options, each inside the area.
/// Returns whether any option has the critical bit set.
#[inline]
pub fn check_options(area: &[u8]) -> Result<bool, GeneveError> {
    let mut rest = area;
    let mut critical = false;
    while !rest.is_empty() {
        let (_, typ, data_len) = opt_header(rest).ok_or(GeneveError::BadOptLen)?;
        let total = OPT_HEADER_LEN + data_len;
        if total > rest.len() {
            return Err(GeneveError::BadOptLen);
        }
        critical |= typ & OPT_CRITICAL != 0;
        rest = &rest[total..];
    }
    Ok(critical)
}

/// A view of a Geneve header, its options and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenevePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    /// Length of the base header.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Wraps `buffer` without validation; accessors panic if the header or
    /// the option area it claims do not fit.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> GenevePacket<T> {
        GenevePacket { buffer }
    }

    /// Wraps `buffer` after validating it (see [`GenevePacket::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<GenevePacket<T>, GeneveError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 8 bytes present (`Truncated`), version 0
    /// (`BadVersion`), the option area inside the buffer and every option
    /// inside the option area (`BadOptLen`).
    #[inline]
    pub fn check_len(&self) -> Result<(), GeneveError> {
        let data = self.buffer.as_ref();
        if data.len() < field::OPTIONS {
            return Err(GeneveError::Truncated);
        }
        if self.version() != 0 {
            return Err(GeneveError::BadVersion);
        }
        let area = data
            .get(field::OPTIONS..field::OPTIONS + self.opt_len())
            .ok_or(GeneveError::BadOptLen)?;
        check_options(area).map(|_| ())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (2 bits).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }

    /// Length of the option area in bytes (the 6-bit field times 4).
    #[inline]
    pub fn opt_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) * 4
    }

    /// Length of the header with its options: where the payload starts.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn header_len(&self) -> usize {
        field::OPTIONS + self.opt_len()
    }

    /// The O bit: this is a control (OAM) packet.
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_OAM != 0
    }

    /// The C bit: at least one option is critical.
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_CRITICAL != 0
    }

    /// The protocol type of the payload (an EtherType).
    #[inline]
    pub fn protocol(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// The 24-bit virtual network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI..field::VNI + 3];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The raw option area.
    #[inline]
    pub fn options_raw(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The options, in wire order.
    #[inline]
    pub fn options(&self) -> OptionIter<'_> {
        OptionIter::new(self.options_raw())
    }

    /// The bytes after the options (the inner frame for protocol 0x6558).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GenevePacket<T> {
    /// Sets the version and the option area length in bytes (a multiple of
    /// 4, at most [`MAX_OPTIONS_LEN`]; the excess bits are dropped). Re-run
    /// `check_len` before trusting the option accessors afterwards.
    #[inline]
    pub fn set_version_opt_len(&mut self, version: u8, opt_len: usize) {
        let words = ((opt_len / 4) & 0x3f) as u8;
        self.buffer.as_mut()[field::VER_OPTLEN] = (version << 6) | words;
    }

    /// Sets the O and C bits; the reserved bits are cleared, as RFC 8926
    /// §3.4 requires of senders.
    #[inline]
    pub fn set_flags(&mut self, oam: bool, critical: bool) {
        let mut f = 0;
        if oam {
            f |= FLAG_OAM;
        }
        if critical {
            f |= FLAG_CRITICAL;
        }
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u16) {
        set_u16(self.buffer.as_mut(), field::PROTOCOL, protocol);
    }

    /// Sets the VNI (low 24 bits of `vni`) and clears the reserved byte.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let b = (vni << 8).to_be_bytes();
        self.buffer.as_mut()[field::VNI..field::VNI + 4].copy_from_slice(&[b[0], b[1], b[2], 0]);
    }

    /// Mutable access to the option area, per the length field.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Mutable access to the payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Geneve header as Linux and OVS send it for OVN: VNI 0x000005, one
    /// option of class 0x0102 (OVN), type 0x80 (critical), 4 bytes of data,
    /// followed by the first bytes of an inner Ethernet frame.
    const OVN: [u8; 22] = [
        0x02, 0x40, 0x65, 0x58, 0x00, 0x00, 0x05, 0x00, // ver 0, 2 words, C, 0x6558, VNI 5
        0x01, 0x02, 0x80, 0x01, 0x00, 0x01, 0x00, 0x02, // class 0x0102 type 0x80 len 1
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // inner dst MAC
    ];

    #[test]
    fn ovn_header() {
        let g = GenevePacket::new_checked(&OVN[..]).unwrap();
        assert_eq!(g.version(), 0);
        assert_eq!(g.opt_len(), 8);
        assert!(g.critical());
        assert!(!g.oam());
        assert_eq!(g.protocol(), PROTO_ETHERNET);
        assert_eq!(g.vni(), 5);
        assert_eq!(g.header_len(), 16);
        let opts: Vec<_> = g.options().collect();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0].class, 0x0102);
        assert_eq!(opts[0].typ, 0x80);
        assert!(opts[0].is_critical());
        assert_eq!(opts[0].data, &[0x00, 0x01, 0x00, 0x02]);
        assert_eq!(g.payload(), &[0xff; 6]);
    }

    #[test]
    fn no_options_and_big_vni() {
        let b = [0x00, 0x80, 0x65, 0x58, 0xab, 0xcd, 0xef, 0x00, 0x11];
        let g = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!(g.vni(), 0xabcdef);
        assert!(g.oam());
        assert_eq!(g.options().count(), 0);
        assert_eq!(g.payload(), &[0x11]);
    }

    #[test]
    fn errors() {
        for n in 0..8 {
            assert_eq!(
                GenevePacket::new_checked(&OVN[..n]),
                Err(GeneveError::Truncated)
            );
        }
        let mut b = OVN;
        b[0] = 0x42;
        assert_eq!(
            GenevePacket::new_checked(&b[..]),
            Err(GeneveError::BadVersion)
        );
        // The option area claims 6 words, more than the buffer holds.
        let mut b = OVN;
        b[0] = 0x06;
        assert_eq!(
            GenevePacket::new_checked(&b[..]),
            Err(GeneveError::BadOptLen)
        );
        // The option claims 2 data words inside a 2-word option area.
        let mut b = OVN;
        b[11] = 0x02;
        assert_eq!(
            GenevePacket::new_checked(&b[..]),
            Err(GeneveError::BadOptLen)
        );
        // Reserved bits above the option length are ignored.
        let mut b = OVN;
        b[11] = 0xe1;
        assert!(GenevePacket::new_checked(&b[..]).is_ok());
        // A 1-word area cannot hold more than an option header.
        let mut b = OVN;
        b[0] = 0x01;
        assert_eq!(
            GenevePacket::new_checked(&b[..]),
            Err(GeneveError::BadOptLen)
        );
        assert_eq!(
            GeneveError::BadOptLen.to_string(),
            GeneveError::BadOptLen.message()
        );
    }

    #[test]
    fn setters() {
        let mut b = [0u8; 20];
        let mut g = GenevePacket::new_unchecked(&mut b[..]);
        g.set_version_opt_len(0, 8);
        g.set_flags(true, true);
        g.set_protocol(PROTO_ETHERNET);
        g.set_vni(0x1234_5678);
        g.options_mut()
            .copy_from_slice(&[0xff, 0xff, 0x01, 0x01, 1, 2, 3, 4]);
        g.payload_mut().copy_from_slice(&[9; 4]);
        let g = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!(g.vni(), 0x34_5678);
        assert!(g.oam() && g.critical());
        let o = g.options().next().unwrap();
        assert_eq!(
            (o.class, o.typ, o.data, o.len()),
            (0xffff, 1, &[1, 2, 3, 4][..], 8)
        );
        assert_eq!(b[7], 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(g) = GenevePacket::new_checked(&data[..]) {
                let _ = (g.oam(), g.critical(), g.protocol(), g.vni());
                let total: usize = g.options().map(|o| o.len()).sum();
                prop_assert_eq!(total, g.opt_len());
                prop_assert_eq!(g.payload().len() + g.header_len(), data.len());
            }
        }
    }
}
