//! Splits a line into items: the comma- or whitespace-separated pieces of
//! `ovs-ofctl` syntax, each with its byte offset in the line.
//!
//! Separators inside parentheses do not split (`resubmit(,10)` and
//! `output(port=1)` are one item each), so the splitter tracks depth and
//! refuses unbalanced parentheses up front; every later stage can then treat
//! an item as self-contained. Offsets are kept so that an error found deep in
//! a value still points at the right column of the original line.

use super::error::{fail, Res};

/// One comma- or whitespace-separated piece of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    /// The text, never empty, never containing a separator at depth 0.
    pub text: &'a str,
    /// Byte offset of `text` in the line.
    pub pos: usize,
}

impl<'a> Item<'a> {
    /// Splits `key=value` at the first `=`; the value's offset is returned
    /// with it. An item without `=` is a bare keyword.
    pub fn key_value(&self) -> (&'a str, Option<(&'a str, usize)>) {
        match self.text.find('=') {
            Some(i) => (
                &self.text[..i],
                Some((&self.text[i + 1..], self.pos + i + 1)),
            ),
            None => (self.text, None),
        }
    }
}

/// Whether `c` separates items (outside parentheses).
pub(crate) fn is_separator(c: char) -> bool {
    c == ',' || c.is_ascii_whitespace()
}

/// Splits `text` (which starts at byte `base` of its line) into items.
pub(crate) fn split(text: &str, base: usize) -> Res<Vec<Item<'_>>> {
    let mut items = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if open.is_empty() && is_separator(c) {
            if let Some(s) = start.take() {
                items.push(Item {
                    text: &text[s..i],
                    pos: base + s,
                });
            }
            continue;
        }
        start.get_or_insert(i);
        match c {
            '(' => open.push(i),
            ')' if open.pop().is_none() => return fail(base + i, "unbalanced ')'"),
            _ => {}
        }
    }
    if let Some(&i) = open.last() {
        return fail(base + i, "'(' is never closed");
    }
    if let Some(s) = start {
        items.push(Item {
            text: &text[s..],
            pos: base + s,
        });
    }
    Ok(items)
}

/// Splits the inside of parentheses on commas at depth 0, trimming blanks.
/// `resubmit(,10)` gives `["", "10"]`: empty arguments are meaningful.
pub(crate) fn split_args(text: &str, base: usize) -> Vec<Item<'_>> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut push = |s: usize, e: usize| {
        let raw = &text[s..e];
        let lead = raw.len() - raw.trim_start().len();
        args.push(Item {
            text: raw.trim(),
            pos: base + s + lead,
        });
    };
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                push(start, i);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(start, text.len());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(&str, usize)> {
        split(s, 0)
            .unwrap()
            .iter()
            .map(|i| (i.text, i.pos))
            .collect()
    }

    #[test]
    fn commas_and_blanks_separate_outside_parentheses() {
        assert_eq!(
            texts(" ip, nw_dst=1.2.3.4  actions=resubmit(,10),output:2"),
            vec![
                ("ip", 1),
                ("nw_dst=1.2.3.4", 5),
                ("actions=resubmit(,10)", 21),
                ("output:2", 43)
            ]
        );
        assert_eq!(texts(""), vec![]);
        assert_eq!(texts(",,"), vec![]);
    }

    #[test]
    fn unbalanced_parentheses_are_refused() {
        assert_eq!(split("a,b)", 0).unwrap_err().pos, 3);
        assert_eq!(split("x,resubmit(,1", 4).unwrap_err().pos, 14);
    }

    #[test]
    fn key_value_splits_at_the_first_equals() {
        let it = Item {
            text: "actions=output(port=1)",
            pos: 10,
        };
        assert_eq!(it.key_value(), ("actions", Some(("output(port=1)", 18))));
        assert_eq!(Item { text: "ip", pos: 0 }.key_value(), ("ip", None));
    }

    #[test]
    fn arguments_keep_empty_slots() {
        let a = split_args(", 10", 9);
        assert_eq!(
            a.iter().map(|i| (i.text, i.pos)).collect::<Vec<_>>(),
            vec![("", 9), ("10", 11)]
        );
    }
}
