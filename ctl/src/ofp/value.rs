//! Scalar values of flow syntax: numbers, Ethernet and IP addresses, their
//! masks, flag sets (`+trk-new`), fragment names and port names.
//!
//! Every reader takes the text and its byte offset in the line, and fails
//! with the offset of the offending piece, so "found" always points at what
//! was wrong rather than at the start of the item. Values come back as `u128`
//! right-aligned, the representation [`flowtable::Match`] uses for every
//! field, so one code path handles 8-bit protocols and 128-bit addresses.
//!
//! Numbers are decimal or `0x` hexadecimal only. `ovs-ofctl` hands some values
//! to `strtoull(…, 0)`, which would read `010` as octal 8; that surprise is not
//! worth reproducing, so a leading zero simply means decimal.

use super::error::{expected, fail, Res};
use super::PortNames;
use flowtable::port::{reserved, PortNo};

/// Reads an unsigned decimal or `0x` hexadecimal number.
pub(crate) fn number(text: &str, pos: usize) -> Res<u128> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return expected(pos, "a number", text);
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) => Ok(v),
        Err(_) => fail(pos, format!("value {text} is too large")),
    }
}

/// Reads a number of at most `bits` bits; `what` names the field or action
/// argument in the error.
pub(crate) fn uint(text: &str, pos: usize, bits: u32, what: &str) -> Res<u128> {
    let v = number(text, pos)?;
    if bits < 128 && v >> bits != 0 {
        return fail(
            pos,
            format!("value {text} does not fit in {what} ({bits} bits)"),
        );
    }
    Ok(v)
}

/// All ones in the low `bits` bits.
pub(crate) fn ones(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// A mask of `len` leading ones in a `bits`-bit field (a CIDR prefix).
pub(crate) fn prefix_mask(len: u32, bits: u32) -> u128 {
    ones(bits) & !ones(bits - len)
}

/// The prefix length of `mask` in a `bits`-bit field, if it is contiguous
/// leading ones.
pub(crate) fn prefix_len(mask: u128, bits: u32) -> Option<u32> {
    let len = (mask << (128 - bits)).leading_ones();
    (prefix_mask(len, bits) == mask).then_some(len)
}

/// Splits `value/mask` at the first `/`, keeping the mask's offset.
pub(crate) fn split_mask(text: &str, pos: usize) -> (&str, Option<(&str, usize)>) {
    match text.find('/') {
        Some(i) => (&text[..i], Some((&text[i + 1..], pos + i + 1))),
        None => (text, None),
    }
}

/// Reads `aa:bb:cc:dd:ee:ff` (one or two hex digits per byte).
pub(crate) fn mac(text: &str, pos: usize) -> Res<u128> {
    let parts: Vec<&str> = text.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return expected(pos, "an Ethernet address", text);
    }
    Ok(parts.iter().fold(0u128, |acc, p| {
        acc << 8 | u128::from(u8::from_str_radix(p, 16).unwrap_or(0))
    }))
}

/// Reads a dotted-quad IPv4 address.
pub(crate) fn ipv4(text: &str, pos: usize) -> Res<u128> {
    let parts: Vec<&str> = text.split('.').collect();
    let octet = |p: &&str| -> Option<u8> {
        if (1..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    let octets: Vec<u8> = parts.iter().filter_map(octet).collect();
    if parts.len() != 4 || octets.len() != 4 {
        return expected(pos, "an IPv4 address", text);
    }
    Ok(octets
        .iter()
        .fold(0u128, |acc, o| acc << 8 | u128::from(*o)))
}

/// Reads an IPv6 address in any RFC 4291 §2.2 text form (`::` compression
/// and a trailing dotted quad included).
pub(crate) fn ipv6(text: &str, pos: usize) -> Res<u128> {
    match text.parse::<std::net::Ipv6Addr>() {
        Ok(a) => Ok(u128::from(a)),
        Err(_) => expected(pos, "an IPv6 address", text),
    }
}

/// Reads a prefix length of at most `bits`.
fn prefix(text: &str, pos: usize, bits: u32) -> Res<u128> {
    match text.parse::<u32>() {
        Ok(len) if len <= bits && text.chars().all(|c| c.is_ascii_digit()) => {
            Ok(prefix_mask(len, bits))
        }
        _ => expected(pos, &format!("a prefix length of at most {bits}"), text),
    }
}

/// Reads an IPv4 mask: `/24` or `/255.255.255.0`.
pub(crate) fn ipv4_mask(text: &str, pos: usize) -> Res<u128> {
    if text.contains('.') {
        ipv4(text, pos)
    } else {
        prefix(text, pos, 32)
    }
}

/// Reads an IPv6 mask: `/64` or `/ffff:ffff::`.
pub(crate) fn ipv6_mask(text: &str, pos: usize) -> Res<u128> {
    if text.contains(':') {
        ipv6(text, pos)
    } else {
        prefix(text, pos, 128)
    }
}

/// Reads a flag set: `+trk+est-new` (value and mask), `est|trk` (value,
/// every other flag clear) or a number with an optional mask.
///
/// `names` lists the flags in bit order; `max` is the field's all-ones mask.
pub(crate) fn flags(
    text: &str,
    pos: usize,
    names: &[(&str, u128)],
    max: u128,
    what: &str,
) -> Res<(u128, u128, Option<usize>)> {
    let lookup = |name: &str, at: usize| -> Res<u128> {
        match names.iter().find(|(n, _)| *n == name) {
            Some((_, bit)) => Ok(*bit),
            None => fail(at, format!("unknown {what} flag {name:?}")),
        }
    };
    if text.starts_with(['+', '-']) {
        let (mut value, mut mask) = (0u128, 0u128);
        let mut rest = text;
        let mut at = pos;
        while let Some(sign) = rest.chars().next() {
            let body = &rest[1..];
            let len = body.find(['+', '-']).unwrap_or(body.len());
            let name = &body[..len];
            if !matches!(sign, '+' | '-') || name.is_empty() {
                return expected(at, &format!("+FLAG or -FLAG in {what}"), rest);
            }
            let bit = lookup(name, at + 1)?;
            let set = sign == '+';
            if mask & bit != 0 && (value & bit != 0) != set {
                return fail(at, format!("{what} flag {name} is both set and cleared"));
            }
            mask |= bit;
            if set {
                value |= bit;
            }
            at += 1 + len;
            rest = &body[len..];
        }
        return Ok((value, mask, None));
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return numeric_masked(text, pos, max, max, what);
    }
    let mut value = 0u128;
    let mut at = pos;
    for name in text.split('|') {
        value |= lookup(name, at)?;
        at += name.len() + 1;
    }
    Ok((value, max, None))
}

/// Reads `N` or `N/M` where both fit in `value_max` and `mask_max`; returns
/// the mask's offset when one was written.
pub(crate) fn numeric_masked(
    text: &str,
    pos: usize,
    value_max: u128,
    mask_max: u128,
    what: &str,
) -> Res<(u128, u128, Option<usize>)> {
    let (v, m) = split_mask(text, pos);
    let bits = |max: u128| 128 - max.leading_zeros();
    let value = uint(v, pos, bits(value_max), what)?;
    match m {
        None => Ok((value, mask_max, None)),
        Some((m, mpos)) => {
            let mask = uint(m, mpos, bits(mask_max), what)?;
            Ok((value, mask, Some(mpos - 1)))
        }
    }
}

/// `nw_frag` names and the value and mask each stands for (ovs-fields(7)):
/// bit 0 is "a fragment", bit 1 is "not the first fragment".
pub(crate) const FRAG_NAMES: [(&str, u128, u128); 5] = [
    ("no", 0, 1),
    ("yes", 1, 1),
    ("first", 1, 3),
    ("later", 3, 3),
    ("not_later", 0, 2),
];

/// Reads an `nw_frag` value: a name, or a number with an optional mask (the
/// printer's spelling for combinations that have no name).
pub(crate) fn frag(text: &str, pos: usize, max: u128) -> Res<(u128, u128, Option<usize>)> {
    if let Some((_, v, m)) = FRAG_NAMES.iter().find(|(n, _, _)| *n == text) {
        return Ok((*v, *m, None));
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return numeric_masked(text, pos, 3, max, "nw_frag");
    }
    expected(pos, "no, yes, first, later or not_later", text)
}

/// Looks up a reserved port name (`LOCAL`, `in_port`, ...), ignoring case as
/// `ovs-ofctl` does.
pub(crate) fn reserved_port(text: &str) -> Option<PortNo> {
    reserved::NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
        .map(|(_, p)| *p)
}

/// Reads a port: a number, a reserved name or a name `ports` knows.
pub(crate) fn port(text: &str, pos: usize, ports: &dyn PortNames) -> Res<PortNo> {
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(uint(text, pos, 32, "a port number")? as PortNo);
    }
    if let Some(p) = reserved_port(text) {
        return Ok(p);
    }
    match ports.port_no(text) {
        Some(p) => Ok(p),
        None if text.is_empty() => expected(pos, "a port number or name", text),
        None => fail(pos, format!("unknown port {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal_or_hex() {
        assert_eq!(number("80", 0), Ok(80));
        assert_eq!(number("0x1F", 0), Ok(31));
        assert_eq!(number("010", 0), Ok(10));
        assert_eq!(
            number("0x", 3).unwrap_err().message,
            "expected a number, found \"0x\""
        );
        assert_eq!(
            number("-1", 0).unwrap_err().message,
            "expected a number, found \"-1\""
        );
        let e = uint("70000", 7, 16, "tp_dst").unwrap_err();
        assert_eq!(
            (e.pos, e.message.as_str()),
            (7, "value 70000 does not fit in tp_dst (16 bits)")
        );
    }

    #[test]
    fn addresses_and_masks() {
        assert_eq!(mac("aa:BB:c:dd:ee:ff", 0), Ok(0xaabb_0cdd_eeff));
        assert!(mac("aa:bb:cc:dd:ee", 0).is_err());
        assert!(mac("aa:bb:cc:dd:ee:fff", 0).is_err());
        assert_eq!(ipv4("10.244.1.2", 0), Ok(0x0af4_0102));
        assert_eq!(
            ipv4("10.0.0", 4).unwrap_err().message,
            "expected an IPv4 address, found \"10.0.0\""
        );
        assert!(ipv4("10.0.0.256", 0).is_err());
        assert!(ipv4("10..0.1", 0).is_err());
        assert_eq!(ipv4_mask("24", 0), Ok(0xffff_ff00));
        assert_eq!(ipv4_mask("0", 0), Ok(0));
        assert_eq!(ipv4_mask("255.0.255.0", 0), Ok(0xff00_ff00));
        assert_eq!(
            ipv4_mask("33", 9).unwrap_err().message,
            "expected a prefix length of at most 32, found \"33\""
        );
        assert_eq!(ipv6("fe80::1", 0), Ok(0xfe80 << 112 | 1));
        assert_eq!(ipv6("::ffff:10.0.0.1", 0), Ok(0xffff_0a00_0001));
        assert_eq!(ipv6_mask("64", 0), Ok(u128::MAX << 64));
        assert_eq!(ipv6_mask("ffff::", 0), Ok(0xffff << 112));
        assert!(ipv6("fe80:::1", 0).is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_len(0xffff_ff00, 32), Some(24));
        assert_eq!(prefix_len(0xffff_ffff, 32), Some(32));
        assert_eq!(prefix_len(0xff00_ff00, 32), None);
        assert_eq!(prefix_len(u128::MAX, 128), Some(128));
    }

    #[test]
    fn flag_sets() {
        let names = [("new", 1u128), ("est", 2), ("trk", 0x20)];
        assert_eq!(
            flags("+trk+est-new", 0, &names, 0xff, "ct_state"),
            Ok((0x22, 0x23, None))
        );
        assert_eq!(
            flags("est|trk", 0, &names, 0xff, "ct_state"),
            Ok((0x22, 0xff, None))
        );
        assert_eq!(
            flags("0x22/0x22", 0, &names, 0xff, "ct_state"),
            Ok((0x22, 0x22, Some(4)))
        );
        let e = flags("+trk+bogus", 10, &names, 0xff, "ct_state").unwrap_err();
        assert_eq!(
            (e.pos, e.message.as_str()),
            (15, "unknown ct_state flag \"bogus\"")
        );
        assert!(flags("+trk-trk", 0, &names, 0xff, "ct_state").is_err());
        assert!(flags("+trk+", 0, &names, 0xff, "ct_state").is_err());
    }

    #[test]
    fn fragments_and_ports() {
        assert_eq!(frag("first", 0, 0xff), Ok((1, 3, None)));
        assert_eq!(frag("0/0x3", 0, 0xff), Ok((0, 3, Some(1))));
        assert!(frag("maybe", 0, 0xff).is_err());
        assert_eq!(port("LOCAL", 0, &()), Ok(reserved::LOCAL));
        assert_eq!(port("in_port", 0, &()), Ok(reserved::IN_PORT));
        assert_eq!(port("7", 0, &()), Ok(7));
        assert_eq!(
            port("vA1", 0, &()).unwrap_err().message,
            "unknown port \"vA1\""
        );
    }
}
