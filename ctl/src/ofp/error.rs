//! Parse errors with a place: the line of the input and the column within it.
//!
//! Inside the parser an error is a [`Fail`]: a byte offset into the line being
//! parsed and a message. Byte offsets are what slicing produces, so every
//! helper can report "here" without knowing which line it is on. Only at the
//! public boundary is the offset turned into a 1-based line and a 1-based
//! character column ([`ParseError`]), because that is what a person counts
//! when looking at the line in an editor (a port name may contain non-ASCII
//! characters, so bytes and characters can differ).

use std::fmt;

/// A flow, group or packet description that could not be parsed, with where
/// and why.
///
/// Its `Display` is `line L, column C: MESSAGE`, for example
/// `line 3, column 17: expected an IPv4 address, found "10.0.0"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the input (1 for single-line parsers).
    pub line: usize,
    /// 1-based column, counted in characters, where the offending text starts.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// An error inside one line: a byte offset into that line and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fail {
    /// Byte offset into the line where the offending text starts.
    pub pos: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// What every parsing helper returns.
pub(crate) type Res<T> = Result<T, Fail>;

/// Makes a [`Fail`] at `pos`.
pub(crate) fn fail<T>(pos: usize, message: impl Into<String>) -> Res<T> {
    Err(Fail {
        pos,
        message: message.into(),
    })
}

/// The usual "expected X, found Y" failure.
pub(crate) fn expected<T>(pos: usize, what: &str, found: &str) -> Res<T> {
    fail(pos, format!("expected {what}, found {found:?}"))
}

impl Fail {
    /// Places the failure on line `line_no` of the input, whose text is
    /// `line`, converting the byte offset into a character column.
    pub(crate) fn at_line(self, line: &str, line_no: usize) -> ParseError {
        // An offset past the end (a missing item) points just after the last
        // character; an offset inside a character cannot happen because every
        // offset comes from slicing at a char boundary, but stay safe anyway.
        let mut pos = self.pos.min(line.len());
        while !line.is_char_boundary(pos) {
            pos -= 1;
        }
        ParseError {
            line: line_no,
            column: line[..pos].chars().count() + 1,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_line_and_column() {
        let e = ParseError {
            line: 3,
            column: 17,
            message: "expected an IPv4 address, found \"10.0.0\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "line 3, column 17: expected an IPv4 address, found \"10.0.0\""
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let line = "in_port=é,x";
        let e = Fail {
            pos: line.find(',').unwrap(),
            message: "m".into(),
        }
        .at_line(line, 2);
        assert_eq!((e.line, e.column), (2, 10));
        let end = Fail {
            pos: 999,
            message: "m".into(),
        }
        .at_line(line, 1);
        assert_eq!(end.column, line.chars().count() + 1);
    }
}
