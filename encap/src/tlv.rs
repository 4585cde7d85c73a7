//! The TLV map: which Geneve option lands in which `tun_metadataN` slot.
//!
//! OVS lets an operator name Geneve options so that flows can match and set
//! them: `add-tlv-map {class=0x0102,type=0x80,len=4}->tun_metadata0`. A
//! [`TlvMap`] is that table, parsed once from the same text
//! ([`TlvMap::parse`], in the `parse` submodule) or built entry by entry.
//! On receive, [`TlvMap::decode`] moves the options of a packet into a
//! [`TunMetadata`]; on send, [`TlvMap::encode`] turns the slots a flow set
//! back into option bytes for [`crate::Template::push`].
//!
//! Storage: like OVS, all mapped slots share one 256-byte area, and each
//! entry gets a fixed offset in it when it is added. A decoded packet's
//! metadata is therefore a bitmap of present slots plus that area, a plain
//! `Copy` value with no pointers, which a flow key can embed and compare.
//!
//! Receive rules. A known option fills its slot; a known option whose
//! length differs from its mapping is a drop (`geneve_opt_len_mismatch`),
//! as in OVS, because matching on a truncated or padded value would be
//! wrong either way. An unknown option is skipped unless it is critical:
//! RFC 8926 §3.5, "If the receiving tunnel endpoint does not recognize this
//! option and this bit is set, then the packet MUST be dropped." When the
//! same option appears twice, the last one wins.

use core::fmt;

use crate::decap::DecapError;
use crate::options::{Options, OptionsError};
use wire::geneve::MAX_OPT_DATA_LEN;

mod parse;
pub use parse::{TlvParseError, TlvParseErrorKind};

/// Number of metadata slots, `tun_metadata0` to `tun_metadata63`.
pub const MAX_SLOTS: usize = 64;
/// Bytes shared by all mapped slots.
pub const METADATA_SPACE: usize = 256;

/// One mapping: option class and type to a slot of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlvEntry {
    /// Option class.
    pub class: u16,
    /// Option type, critical bit included.
    pub typ: u8,
    /// Option data length in bytes: a multiple of 4, at most 124.
    pub len: u8,
    /// Slot number, 0 to 63.
    pub slot: u8,
}

/// Why an entry could not be added. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlvMapError {
    /// slot number is not below 64
    BadSlot,
    /// length is not a multiple of 4 or exceeds 124
    BadLen,
    /// slot is already mapped
    DuplicateSlot,
    /// option class and type are already mapped
    DuplicateOption,
    /// mapped slots exceed the 256 bytes of metadata space
    OutOfSpace,
    /// slot is not mapped
    UnmappedSlot,
}

impl TlvMapError {
    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            TlvMapError::BadSlot => "slot number is not below 64",
            TlvMapError::BadLen => "length is not a multiple of 4 or exceeds 124",
            TlvMapError::DuplicateSlot => "slot is already mapped",
            TlvMapError::DuplicateOption => "option class and type are already mapped",
            TlvMapError::OutOfSpace => "mapped slots exceed the 256 bytes of metadata space",
            TlvMapError::UnmappedSlot => "slot is not mapped",
        }
    }
}

impl fmt::Display for TlvMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TlvMapError {}

/// Where a mapped slot's value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Slot {
    class: u16,
    typ: u8,
    len: u8,
    offset: u16,
}

/// Option values of one packet, by slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunMetadata {
    present: u64,
    data: [u8; METADATA_SPACE],
}

impl Default for TunMetadata {
    fn default() -> TunMetadata {
        TunMetadata::new()
    }
}

impl TunMetadata {
    /// No slot present.
    pub const fn new() -> TunMetadata {
        TunMetadata {
            present: 0,
            data: [0; METADATA_SPACE],
        }
    }

    /// Bit `n` is set when slot `n` holds a value.
    #[inline]
    pub fn present(&self) -> u64 {
        self.present
    }
}

/// The option-to-slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvMap {
    slots: [Slot; MAX_SLOTS],
    mapped: u64,
    used: u16,
}

impl Default for TlvMap {
    fn default() -> TlvMap {
        TlvMap::new()
    }
}

impl TlvMap {
    /// An empty map: every option is unknown.
    pub const fn new() -> TlvMap {
        TlvMap {
            slots: [Slot {
                class: 0,
                typ: 0,
                len: 0,
                offset: 0,
            }; MAX_SLOTS],
            mapped: 0,
            used: 0,
        }
    }

    /// Adds one mapping.
    pub fn insert(&mut self, e: TlvEntry) -> Result<(), TlvMapError> {
        let slot = usize::from(e.slot);
        if slot >= MAX_SLOTS {
            return Err(TlvMapError::BadSlot);
        }
        if e.len % 4 != 0 || usize::from(e.len) > MAX_OPT_DATA_LEN {
            return Err(TlvMapError::BadLen);
        }
        if self.mapped & (1 << slot) != 0 {
            return Err(TlvMapError::DuplicateSlot);
        }
        if self.find(e.class, e.typ).is_some() {
            return Err(TlvMapError::DuplicateOption);
        }
        if usize::from(self.used) + usize::from(e.len) > METADATA_SPACE {
            return Err(TlvMapError::OutOfSpace);
        }
        self.slots[slot] = Slot {
            class: e.class,
            typ: e.typ,
            len: e.len,
            offset: self.used,
        };
        self.used += u16::from(e.len);
        self.mapped |= 1 << slot;
        Ok(())
    }

    /// The mappings, in slot order.
    pub fn entries(&self) -> impl Iterator<Item = TlvEntry> + '_ {
        (0..MAX_SLOTS)
            .filter(|&n| self.mapped & (1 << n) != 0)
            .map(|n| {
                let s = &self.slots[n];
                TlvEntry {
                    class: s.class,
                    typ: s.typ,
                    len: s.len,
                    slot: n as u8,
                }
            })
    }

    /// True if no slot is mapped.
    pub fn is_empty(&self) -> bool {
        self.mapped == 0
    }

    /// The slot mapped to an option class and type.
    #[inline]
    fn find(&self, class: u16, typ: u8) -> Option<usize> {
        let mut m = self.mapped;
        while m != 0 {
            let n = m.trailing_zeros() as usize;
            let s = &self.slots[n];
            if s.class == class && s.typ == typ {
                return Some(n);
            }
            m &= m - 1;
        }
        None
    }

    #[inline]
    fn range(&self, n: usize) -> core::ops::Range<usize> {
        let s = &self.slots[n];
        usize::from(s.offset)..usize::from(s.offset) + usize::from(s.len)
    }

    /// The value of a slot, if the metadata holds one.
    #[inline]
    pub fn get<'a>(&self, md: &'a TunMetadata, slot: usize) -> Option<&'a [u8]> {
        if slot >= MAX_SLOTS || md.present & self.mapped & (1 << slot) == 0 {
            return None;
        }
        Some(&md.data[self.range(slot)])
    }

    /// Sets a slot's value; `value` must have the mapped length.
    #[inline]
    pub fn set(&self, md: &mut TunMetadata, slot: usize, value: &[u8]) -> Result<(), TlvMapError> {
        if slot >= MAX_SLOTS || self.mapped & (1 << slot) == 0 {
            return Err(TlvMapError::UnmappedSlot);
        }
        if value.len() != usize::from(self.slots[slot].len) {
            return Err(TlvMapError::BadLen);
        }
        md.data[self.range(slot)].copy_from_slice(value);
        md.present |= 1 << slot;
        Ok(())
    }

    /// Fills `md` from received options (see the module doc for the rules).
    /// `md` is reset first, so it never carries values of an earlier packet.
    #[inline]
    pub fn decode(&self, options: &Options, md: &mut TunMetadata) -> Result<(), DecapError> {
        *md = TunMetadata::new();
        for opt in options.iter() {
            match self.find(opt.class, opt.typ) {
                Some(n) => {
                    if opt.data.len() != usize::from(self.slots[n].len) {
                        return Err(DecapError::OptLenMismatch);
                    }
                    md.data[self.range(n)].copy_from_slice(opt.data);
                    md.present |= 1 << n;
                }
                None if opt.is_critical() => return Err(DecapError::CriticalUnknown),
                None => {}
            }
        }
        Ok(())
    }

    /// Writes the present slots of `md` as options, in slot order.
    #[inline]
    pub fn encode(&self, md: &TunMetadata, out: &mut Options) -> Result<(), OptionsError> {
        out.clear();
        let mut m = md.present & self.mapped;
        while m != 0 {
            let n = m.trailing_zeros() as usize;
            let s = &self.slots[n];
            out.push(s.class, s.typ, &md.data[self.range(n)])?;
            m &= m - 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ovn_map() -> TlvMap {
        TlvMap::parse("{class=0x0102,type=0x80,len=4}->tun_metadata0").unwrap()
    }

    #[test]
    fn decode_known_unknown_and_critical() {
        let map = ovn_map();
        let mut md = TunMetadata::new();
        let mut o = Options::new();
        o.push(0xffff, 0x01, &[9; 8]).unwrap(); // unknown, not critical
        o.push(0x0102, 0x80, &[0, 1, 0, 2]).unwrap();
        map.decode(&o, &mut md).unwrap();
        assert_eq!(md.present(), 1);
        assert_eq!(map.get(&md, 0), Some(&[0, 1, 0, 2][..]));
        assert_eq!(map.get(&md, 1), None);

        let mut back = Options::new();
        map.encode(&md, &mut back).unwrap();
        assert_eq!(back.as_bytes(), &[1, 2, 0x80, 1, 0, 1, 0, 2]);

        o.push(0xffff, 0x81, &[]).unwrap(); // unknown and critical
        assert_eq!(map.decode(&o, &mut md), Err(DecapError::CriticalUnknown));

        let mut o = Options::new();
        o.push(0x0102, 0x80, &[0; 8]).unwrap();
        assert_eq!(map.decode(&o, &mut md), Err(DecapError::OptLenMismatch));
    }

    #[test]
    fn insert_rules() {
        let mut map = TlvMap::new();
        let e = TlvEntry {
            class: 1,
            typ: 2,
            len: 124,
            slot: 0,
        };
        map.insert(e).unwrap();
        assert_eq!(map.insert(e), Err(TlvMapError::DuplicateSlot));
        assert_eq!(
            map.insert(TlvEntry { slot: 1, ..e }),
            Err(TlvMapError::DuplicateOption)
        );
        assert_eq!(
            map.insert(TlvEntry {
                slot: 64,
                typ: 3,
                ..e
            }),
            Err(TlvMapError::BadSlot)
        );
        assert_eq!(
            map.insert(TlvEntry {
                slot: 1,
                typ: 3,
                len: 6,
                ..e
            }),
            Err(TlvMapError::BadLen)
        );
        map.insert(TlvEntry {
            slot: 1,
            typ: 3,
            ..e
        })
        .unwrap();
        assert_eq!(
            map.insert(TlvEntry {
                slot: 2,
                typ: 4,
                len: 12,
                ..e
            }),
            Err(TlvMapError::OutOfSpace)
        );
        map.insert(TlvEntry {
            slot: 63,
            typ: 4,
            len: 8,
            ..e
        })
        .unwrap();
        assert_eq!(map.entries().count(), 3);

        let mut md = TunMetadata::new();
        assert_eq!(map.set(&mut md, 5, &[]), Err(TlvMapError::UnmappedSlot));
        assert_eq!(map.set(&mut md, 63, &[1; 4]), Err(TlvMapError::BadLen));
        map.set(&mut md, 63, &[7; 8]).unwrap();
        map.set(&mut md, 0, &[1; 124]).unwrap();
        let mut o = Options::new();
        map.encode(&md, &mut o).unwrap();
        assert_eq!(o.len(), 128 + 12);
        let mut md2 = TunMetadata::new();
        map.decode(&o, &mut md2).unwrap();
        assert_eq!(md, md2);
    }
}
