//! A fixed-capacity buffer of Geneve option TLVs.
//!
//! Geneve's option length field is 6 bits of 4-byte words, so an option
//! area never exceeds 252 bytes (RFC 8926 §3.4). [`Options`] holds exactly
//! that much inline: decap copies the received options into it and encap
//! reads them from it, and neither needs the heap. Its contents are always a
//! well-formed sequence of options, because the only ways to fill it
//! ([`Options::from_wire`] and [`Options::push`]) check that.

use core::fmt;
use wire::geneve::{self, OptionIter, MAX_OPTIONS_LEN, MAX_OPT_DATA_LEN, OPT_HEADER_LEN};

/// Why options could not be stored. Each variant's doc comment is its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionsError {
    /// options exceed the 252-byte geneve option area
    TooLong,
    /// option data is not a multiple of 4 bytes or exceeds 124 bytes
    BadDataLen,
    /// option bytes do not form whole options
    Malformed,
}

impl OptionsError {
    /// The message printed by `Display`; identical to the variant's doc.
    pub const fn message(self) -> &'static str {
        match self {
            OptionsError::TooLong => "options exceed the 252-byte geneve option area",
            OptionsError::BadDataLen => {
                "option data is not a multiple of 4 bytes or exceeds 124 bytes"
            }
            OptionsError::Malformed => "option bytes do not form whole options",
        }
    }
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for OptionsError {}

/// Up to 252 bytes of well-formed Geneve options, stored inline.
#[derive(Clone, Copy)]
pub struct Options {
    len: u8,
    bytes: [u8; MAX_OPTIONS_LEN],
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Options) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Options {}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Options {
    /// No options.
    #[inline]
    pub const fn new() -> Options {
        Options {
            len: 0,
            bytes: [0; MAX_OPTIONS_LEN],
        }
    }

    /// Copies a raw option area after checking that it is whole options.
    #[inline]
    pub fn from_wire(area: &[u8]) -> Result<Options, OptionsError> {
        let mut o = Options::new();
        o.set_from_wire(area)?;
        Ok(o)
    }

    /// Replaces the contents with a raw option area after checking that it
    /// is whole options. Only `area.len()` bytes are written, so reusing one
    /// `Options` per packet costs no more than the options themselves; on
    /// error the contents are unchanged.
    #[inline]
    pub fn set_from_wire(&mut self, area: &[u8]) -> Result<(), OptionsError> {
        if area.len() > MAX_OPTIONS_LEN {
            return Err(OptionsError::TooLong);
        }
        geneve::check_options(area).map_err(|_| OptionsError::Malformed)?;
        self.bytes[..area.len()].copy_from_slice(area);
        self.len = area.len() as u8;
        Ok(())
    }

    /// Appends one option. `data` must be a multiple of 4 bytes, at most 124.
    #[inline]
    pub fn push(&mut self, class: u16, typ: u8, data: &[u8]) -> Result<(), OptionsError> {
        if data.len() % 4 != 0 || data.len() > MAX_OPT_DATA_LEN {
            return Err(OptionsError::BadDataLen);
        }
        let start = usize::from(self.len);
        let end = start + OPT_HEADER_LEN + data.len();
        if end > MAX_OPTIONS_LEN {
            return Err(OptionsError::TooLong);
        }
        let c = class.to_be_bytes();
        let words = (data.len() / 4) as u8;
        self.bytes[start..start + OPT_HEADER_LEN].copy_from_slice(&[c[0], c[1], typ, words]);
        self.bytes[start + OPT_HEADER_LEN..end].copy_from_slice(data);
        self.len = end as u8;
        Ok(())
    }

    /// Removes every option.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The options as they go on the wire.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length of the option area in bytes (a multiple of 4).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True if there are no options.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The options, in order.
    #[inline]
    pub fn iter(&self) -> OptionIter<'_> {
        OptionIter::new(self.as_bytes())
    }

    /// True if any option has the critical bit set.
    #[inline]
    pub fn any_critical(&self) -> bool {
        self.iter().any(|o| o.is_critical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut o = Options::new();
        assert!(o.is_empty());
        o.push(0x0102, 0x80, &[1, 2, 3, 4]).unwrap();
        o.push(0xffff, 0x01, &[]).unwrap();
        assert_eq!(o.as_bytes(), &[1, 2, 0x80, 1, 1, 2, 3, 4, 0xff, 0xff, 1, 0]);
        assert!(o.any_critical());
        assert_eq!(Options::from_wire(o.as_bytes()).unwrap(), o);
        assert_eq!(format!("{o:?}").matches("class").count(), 2);
    }

    #[test]
    fn limits() {
        let mut o = Options::new();
        assert_eq!(o.push(1, 1, &[0; 3]), Err(OptionsError::BadDataLen));
        assert_eq!(o.push(1, 1, &[0; 128]), Err(OptionsError::BadDataLen));
        o.push(1, 1, &[0; 124]).unwrap();
        o.push(1, 1, &[0; 120]).unwrap();
        assert_eq!(o.len(), 252);
        assert_eq!(o.push(1, 1, &[]), Err(OptionsError::TooLong));
        o.clear();
        assert_eq!(o.len(), 0);
        assert_eq!(Options::from_wire(&[0; 256]), Err(OptionsError::TooLong));
        assert_eq!(
            Options::from_wire(&[0, 1, 2, 1]),
            Err(OptionsError::Malformed)
        );
        assert_eq!(Options::from_wire(&[0, 1, 2]), Err(OptionsError::Malformed));
    }
}
