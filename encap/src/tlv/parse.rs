//! The text form of a TLV map, as `ovs-ofctl add-tlv-map` takes it:
//! `{class=0x0102,type=0x80,len=4}->tun_metadata0`, several entries
//! separated by commas, whitespace allowed between tokens.
//!
//! This runs once, at configuration time, so it favours plain code over
//! speed: a cursor over the bytes that remembers its position, so every
//! error points at the character where the text went wrong (columns count
//! from 1, in bytes). Numbers are decimal or `0x` hexadecimal.

use core::fmt;

use super::{TlvEntry, TlvMap, TlvMapError};

/// A TLV map text that could not be parsed, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlvParseError {
    /// 1-based column (byte position) of the offending character.
    pub column: usize,
    /// What is wrong there.
    pub kind: TlvParseErrorKind,
}

/// What is wrong with a TLV map text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlvParseErrorKind {
    /// Expected this token (its text is the payload).
    Expected(&'static str),
    /// A key other than `class`, `type` and `len`.
    UnknownKey,
    /// The same key twice in one entry.
    RepeatedKey,
    /// An entry without `class`, `type` or `len` (the payload names it).
    MissingKey(&'static str),
    /// A number too large for its field.
    OutOfRange,
    /// The entry is valid text but cannot be added to the map.
    Map(TlvMapError),
}

impl fmt::Display for TlvParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: ", self.column)?;
        match self.kind {
            TlvParseErrorKind::Expected(what) => write!(f, "expected {what}"),
            TlvParseErrorKind::UnknownKey => f.write_str("unknown key (class, type or len)"),
            TlvParseErrorKind::RepeatedKey => f.write_str("key given twice"),
            TlvParseErrorKind::MissingKey(k) => write!(f, "missing {k}"),
            TlvParseErrorKind::OutOfRange => f.write_str("number out of range"),
            TlvParseErrorKind::Map(e) => f.write_str(e.message()),
        }
    }
}

impl std::error::Error for TlvParseError {}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn err(&self, kind: TlvParseErrorKind) -> TlvParseError {
        TlvParseError {
            column: self.pos + 1,
            kind,
        }
    }

    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, tok: &'static str) -> bool {
        if self.s[self.pos..].starts_with(tok.as_bytes()) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &'static str, what: &'static str) -> Result<(), TlvParseError> {
        self.ws();
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.err(TlvParseErrorKind::Expected(what)))
        }
    }

    /// A decimal or `0x` number no larger than `max`.
    fn number(&mut self, max: u64) -> Result<u64, TlvParseError> {
        self.ws();
        let start = self.pos;
        let radix = if self.eat("0x") || self.eat("0X") {
            16
        } else {
            10
        };
        let digits = self.pos;
        let mut v: u64 = 0;
        while let Some(d) = self
            .s
            .get(self.pos)
            .and_then(|&c| (c as char).to_digit(radix))
        {
            v = v
                .saturating_mul(u64::from(radix))
                .saturating_add(u64::from(d));
            self.pos += 1;
        }
        if self.pos == digits {
            return Err(self.err(TlvParseErrorKind::Expected("a number")));
        }
        if v > max {
            return Err(TlvParseError {
                column: start + 1,
                kind: TlvParseErrorKind::OutOfRange,
            });
        }
        Ok(v)
    }

    /// `{class=..,type=..,len=..}->tun_metadataN`
    fn entry(&mut self) -> Result<TlvEntry, TlvParseError> {
        self.expect("{", "'{'")?;
        let mut vals: [Option<u64>; 3] = [None; 3];
        loop {
            self.ws();
            let key_at = self.pos;
            let (i, max) = if self.eat("class") {
                (0, u64::from(u16::MAX))
            } else if self.eat("type") {
                (1, u64::from(u8::MAX))
            } else if self.eat("len") {
                (2, u64::from(u8::MAX))
            } else {
                return Err(self.err(TlvParseErrorKind::UnknownKey));
            };
            if vals[i].is_some() {
                return Err(TlvParseError {
                    column: key_at + 1,
                    kind: TlvParseErrorKind::RepeatedKey,
                });
            }
            self.expect("=", "'='")?;
            vals[i] = Some(self.number(max)?);
            self.ws();
            if self.eat("}") {
                break;
            }
            self.expect(",", "',' or '}'")?;
        }
        let close = self.pos;
        let missing = |k| TlvParseError {
            column: close,
            kind: TlvParseErrorKind::MissingKey(k),
        };
        let class = vals[0].ok_or_else(|| missing("class"))? as u16;
        let typ = vals[1].ok_or_else(|| missing("type"))? as u8;
        let len = vals[2].ok_or_else(|| missing("len"))? as u8;
        self.expect("->", "'->'")?;
        self.expect("tun_metadata", "tun_metadata")?;
        let slot = self.number(u64::from(u8::MAX))? as u8;
        Ok(TlvEntry {
            class,
            typ,
            len,
            slot,
        })
    }
}

impl TlvMap {
    /// Parses a comma-separated list of `{class=C,type=T,len=L}->tun_metadataN`
    /// entries into a map. An empty or all-blank text is an empty map.
    pub fn parse(text: &str) -> Result<TlvMap, TlvParseError> {
        let mut map = TlvMap::new();
        let mut c = Cursor {
            s: text.as_bytes(),
            pos: 0,
        };
        c.ws();
        if c.pos == c.s.len() {
            return Ok(map);
        }
        loop {
            c.ws();
            let start = c.pos;
            let e = c.entry()?;
            map.insert(e).map_err(|m| TlvParseError {
                column: start + 1,
                kind: TlvParseErrorKind::Map(m),
            })?;
            c.ws();
            if c.pos == c.s.len() {
                return Ok(map);
            }
            c.expect(",", "',' or end of text")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, TlvParseErrorKind) {
        let e = TlvMap::parse(text).unwrap_err();
        (e.column, e.kind)
    }

    #[test]
    fn parses_lists_with_whitespace() {
        let m = TlvMap::parse(
            " {class=0x0102,type=0x80,len=4}->tun_metadata0 ,\n\
             { len = 8 , class = 65535 , type = 1 } -> tun_metadata63",
        )
        .unwrap();
        let e: Vec<_> = m.entries().collect();
        assert_eq!(
            e,
            [
                TlvEntry {
                    class: 0x0102,
                    typ: 0x80,
                    len: 4,
                    slot: 0
                },
                TlvEntry {
                    class: 0xffff,
                    typ: 1,
                    len: 8,
                    slot: 63
                },
            ]
        );
        assert!(TlvMap::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn errors_carry_columns() {
        use TlvParseErrorKind::*;
        assert_eq!(err("class=1"), (1, Expected("'{'")));
        assert_eq!(err("{klass=1}"), (2, UnknownKey));
        assert_eq!(err("{class=1,class=2}"), (10, RepeatedKey));
        assert_eq!(err("{class 1}"), (8, Expected("'='")));
        assert_eq!(err("{class=}"), (8, Expected("a number")));
        assert_eq!(err("{class=0x10000}"), (8, OutOfRange));
        assert_eq!(err("{type=256}"), (7, OutOfRange));
        assert_eq!(
            err("{class=1,type=2}->tun_metadata0"),
            (16, MissingKey("len"))
        );
        assert_eq!(
            err("{class=1,type=2,len=4}tun_metadata0"),
            (23, Expected("'->'"))
        );
        assert_eq!(
            err("{class=1,type=2,len=4}->md0"),
            (25, Expected("tun_metadata"))
        );
        assert_eq!(
            err("{class=1,type=2,len=4}->tun_metadata64"),
            (1, Map(TlvMapError::BadSlot))
        );
        assert_eq!(
            err("{class=1,type=2,len=4}->tun_metadata0,{class=1,type=2,len=6}->tun_metadata1"),
            (39, Map(TlvMapError::BadLen))
        );
        assert_eq!(
            err("{class=1,type=2,len=4}->tun_metadata0 x"),
            (39, Expected("',' or end of text"))
        );
        assert_eq!(
            err("{class=1,type=2,len=128}->tun_metadata0"),
            (1, Map(TlvMapError::BadLen))
        );
        let e = TlvMap::parse("{class=1").unwrap_err();
        assert_eq!(e.to_string(), "column 9: expected ',' or '}'");
    }
}
