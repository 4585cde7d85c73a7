//! The two bits of arithmetic policy compilation needs: an `ipBlock`'s CIDR
//! minus its `except` prefixes as a list of disjoint prefixes (OpenFlow
//! matches prefixes, not differences), and a port range (`port`..`endPort`,
//! ANP `portRange`) as the fewest value/mask matches on `tp_dst` — the
//! decomposition Antrea and OVN use for ranges.

use crate::net::Cidr;
use std::net::Ipv4Addr;

/// `cidr` minus every prefix of `except`, as disjoint prefixes in address
/// order. Excepts outside `cidr` remove nothing.
pub fn subtract(cidr: Cidr, except: &[Cidr]) -> Vec<Cidr> {
    let mut out = Vec::new();
    split(cidr, except, &mut out);
    out
}

fn split(c: Cidr, except: &[Cidr], out: &mut Vec<Cidr>) {
    if except.iter().any(|e| e.covers(&c)) {
        return; // all of it is excepted
    }
    if !except.iter().any(|e| c.covers(e)) {
        out.push(c); // nothing excepted inside
        return;
    }
    // Some except lies strictly inside: halve and recurse. Depth is at
    // most 32, and each level adds at most one prefix per except.
    let len = c.len + 1;
    let lo = Cidr::new(c.addr, len);
    let hi = Cidr::new(
        Ipv4Addr::from(c.first() | (1u32 << (32 - u32::from(len)))),
        len,
    );
    split(lo, except, out);
    split(hi, except, out);
}

/// The inclusive range `lo..=hi` as (value, mask) pairs on a 16-bit field:
/// the fewest aligned power-of-two blocks that tile it.
pub fn port_masks(lo: u16, hi: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // The largest block aligned at lo that stays within hi.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, (!(size - 1) & 0xffff) as u16));
        lo += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn except_inside() {
        let got = subtract(c("10.244.3.0/24"), &[c("10.244.3.0/28")]);
        let want: Vec<Cidr> = [
            "10.244.3.16/28",
            "10.244.3.32/27",
            "10.244.3.64/26",
            "10.244.3.128/25",
        ]
        .iter()
        .map(|s| c(s))
        .collect();
        assert_eq!(got, want);
        assert!(subtract(c("10.0.0.0/8"), &[c("0.0.0.0/0")]).is_empty());
        assert_eq!(
            subtract(c("10.0.0.0/8"), &[c("11.0.0.0/8")]),
            vec![c("10.0.0.0/8")]
        );
        assert_eq!(subtract(c("0.0.0.0/4"), &[c("10.244.1.11/32")]).len(), 28);
    }

    #[test]
    fn ranges() {
        assert_eq!(port_masks(80, 80), vec![(80, 0xffff)]);
        assert_eq!(port_masks(80, 81), vec![(80, 0xfffe)]);
        assert_eq!(port_masks(0, 65535), vec![(0, 0)]);
        assert_eq!(port_masks(53, 84).len(), 6);
    }

    proptest! {
        #[test]
        fn masks_tile_the_range(a in 0u16..=65535, b in 0u16..=65535, p in 0u16..=65535) {
            let (lo, hi) = (a.min(b), a.max(b));
            let m = port_masks(lo, hi);
            let hits = m.iter().filter(|(v, k)| p & k == *v).count();
            prop_assert_eq!(hits, usize::from((lo..=hi).contains(&p)));
            prop_assert!(m.len() <= 30);
        }

        #[test]
        fn subtract_is_set_difference(ip in any::<u32>(), l in 0u8..=32, e1 in any::<u32>(), el in 0u8..=32) {
            let base = Cidr::new(Ipv4Addr::from(ip), l);
            let ex = Cidr::new(Ipv4Addr::from(e1), el);
            let probe = Ipv4Addr::from(e1 ^ 1);
            let parts = subtract(base, &[ex]);
            let inside = parts.iter().filter(|p| p.contains(probe)).count();
            prop_assert_eq!(inside, usize::from(base.contains(probe) && !ex.contains(probe)));
        }
    }
}
