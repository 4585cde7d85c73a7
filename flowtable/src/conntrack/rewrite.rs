//! Applying a [`NatRewrite`] to packet bytes, with checksums patched
//! incrementally (RFC 1624) instead of recomputed.
//!
//! A changed address is covered by the IPv4 header checksum and, through
//! the pseudo-header, by the TCP, UDP and ICMPv6 checksums (RFC 793 §3.1,
//! RFC 768, RFC 8200 §8.1); a changed port or echo identifier by its own
//! L4 checksum. In an ICMP error the quoted header is part of the ICMP
//! payload, so every byte changed there, the quoted checksums included,
//! also patches the outer ICMP checksum (RFC 5508 §4 asks NATs to
//! translate the quoted header this way). Quoted packets are often cut
//! short, so a quoted checksum missing from the quote is left alone.

use super::types::{proto, HeaderRewrite, NatRewrite};
use std::net::IpAddr;
use wire::checksum::update_bytes;

/// Why a rewrite could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// The packet is shorter than the headers the rewrite touches.
    Truncated,
    /// The bytes at the L3 offset are not an IPv4 or IPv6 header.
    NotIp,
    /// The rewrite's addresses are of the other IP family.
    FamilyMismatch,
}

fn rd16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Writes `new` at `off` and patches the checksum at each offset in
/// `csums` (skipping any that is out of bounds, or zero when `zero_is_none`
/// marks it as a UDP-over-IPv4 "no checksum").
fn set(buf: &mut [u8], off: usize, new: &[u8], csums: &[(usize, bool)]) {
    let n = new.len();
    let mut old = [0u8; 16];
    old[..n].copy_from_slice(&buf[off..off + n]);
    if old[..n] == *new {
        return;
    }
    buf[off..off + n].copy_from_slice(new);
    for &(c, zero_is_none) in csums {
        if c + 2 > buf.len() {
            continue;
        }
        let ck = rd16(buf, c);
        if zero_is_none && ck == 0 {
            continue;
        }
        let mut v = update_bytes(ck, &old[..n], new);
        if zero_is_none && v == 0 {
            // RFC 768: a computed zero is sent as all ones.
            v = 0xffff;
        }
        buf[c..c + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Like [`set`] for a checksum field that is itself covered by `outer`.
fn set_covered(
    buf: &mut [u8],
    off: usize,
    new: &[u8],
    csums: &[(usize, bool)],
    outer: Option<usize>,
) {
    let Some(o) = outer else {
        set(buf, off, new, csums);
        return;
    };
    // Snapshot the covered checksums, patch, then carry their change into
    // the outer checksum.
    let mut before = [0u16; 2];
    for (i, &(c, _)) in csums.iter().enumerate().take(2) {
        before[i] = if c + 2 <= buf.len() { rd16(buf, c) } else { 0 };
    }
    let n = new.len();
    let mut old = [0u8; 16];
    old[..n].copy_from_slice(&buf[off..off + n]);
    set(buf, off, new, csums);
    if old[..n] != *new {
        let ck = rd16(buf, o);
        let v = update_bytes(ck, &old[..n], new);
        buf[o..o + 2].copy_from_slice(&v.to_be_bytes());
    }
    for (i, &(c, _)) in csums.iter().enumerate().take(2) {
        if c + 2 <= buf.len() {
            let after = rd16(buf, c);
            let ck = rd16(buf, o);
            let v = update_bytes(ck, &before[i].to_be_bytes(), &after.to_be_bytes());
            buf[o..o + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Where one IP header and its L4 header sit, and which checksums cover
/// what.
struct Layout {
    v6: bool,
    src: usize,
    dst: usize,
    /// IPv4 header checksum.
    ip_ck: Option<usize>,
    l4: usize,
    proto: u8,
    /// Whether the L4 header is present (not a later fragment).
    has_l4: bool,
}

fn layout(buf: &[u8], l3: usize, l4: Option<usize>) -> Result<Layout, RewriteError> {
    let b = buf.get(l3..).ok_or(RewriteError::Truncated)?;
    match b.first().map(|v| v >> 4) {
        Some(4) => {
            if b.len() < 20 {
                return Err(RewriteError::Truncated);
            }
            let ihl = (b[0] & 0x0f) as usize * 4;
            if ihl < 20 || b.len() < ihl {
                return Err(RewriteError::Truncated);
            }
            let later_fragment = rd16(b, 6) & 0x1fff != 0;
            Ok(Layout {
                v6: false,
                src: l3 + 12,
                dst: l3 + 16,
                ip_ck: Some(l3 + 10),
                l4: l4.unwrap_or(l3 + ihl),
                proto: b[9],
                has_l4: !later_fragment,
            })
        }
        Some(6) => {
            if b.len() < 40 {
                return Err(RewriteError::Truncated);
            }
            let (proto_, at, later_fragment) = v6_upper_layer(b, l4.map(|o| o.saturating_sub(l3)));
            Ok(Layout {
                v6: true,
                src: l3 + 8,
                dst: l3 + 24,
                ip_ck: None,
                l4: l3 + at,
                proto: proto_,
                has_l4: !later_fragment,
            })
        }
        Some(_) => Err(RewriteError::NotIp),
        None => Err(RewriteError::Truncated),
    }
}

/// Walks IPv6 extension headers (RFC 8200 §4) from the fixed header to the
/// upper-layer header: its protocol, its offset within `b`, and whether this
/// is a fragment other than the first (whose L4 header is elsewhere). Stops
/// at `stop` when the caller already knows the L4 offset, at an unknown
/// header, or at the end of the bytes.
fn v6_upper_layer(b: &[u8], stop: Option<usize>) -> (u8, usize, bool) {
    let (mut nh, mut at, mut later_fragment) = (b[6], 40usize, false);
    for _ in 0..8 {
        if stop.is_some_and(|s| at >= s) || at + 8 > b.len() {
            break;
        }
        let len = match nh {
            0 | 43 | 60 => (b[at + 1] as usize + 1) * 8,
            44 => {
                later_fragment |= rd16(b, at + 2) & 0xfff8 != 0;
                8
            }
            _ => break,
        };
        nh = b[at];
        at += len;
    }
    (nh, stop.unwrap_or(at), later_fragment)
}

fn addr_bytes(a: IpAddr, v6: bool) -> Result<([u8; 16], usize), RewriteError> {
    let mut out = [0u8; 16];
    match (a, v6) {
        (IpAddr::V4(x), false) => {
            out[..4].copy_from_slice(&x.octets());
            Ok((out, 4))
        }
        (IpAddr::V6(x), true) => {
            out.copy_from_slice(&x.octets());
            Ok((out, 16))
        }
        _ => Err(RewriteError::FamilyMismatch),
    }
}

/// Rewrites one IP header and its L4 header; `outer` is the checksum of an
/// enclosing ICMP message when this is a quoted header.
fn rewrite_one(
    buf: &mut [u8],
    l: &Layout,
    rw: &HeaderRewrite,
    outer: Option<usize>,
) -> Result<(), RewriteError> {
    let (src, n) = addr_bytes(rw.src, l.v6)?;
    let (dst, _) = addr_bytes(rw.dst, l.v6)?;
    let end = buf.len();
    let avail = end.saturating_sub(l.l4);
    // The L4 checksum, when it is in the buffer, and whether it covers the
    // pseudo-header.
    let (l4_ck, pseudo, zero_none) = match l.proto {
        proto::TCP if l.has_l4 => (Some(l.l4 + 16), true, false),
        proto::UDP if l.has_l4 => (Some(l.l4 + 6), true, !l.v6),
        proto::ICMP if l.has_l4 => (Some(l.l4 + 2), false, false),
        proto::ICMPV6 if l.has_l4 => (Some(l.l4 + 2), true, false),
        _ => (None, false, false),
    };
    let l4_ck = l4_ck.filter(|&c| c + 2 <= end);
    let mut cks = [(0usize, false); 2];
    let mut k = 0;
    if let Some(c) = l.ip_ck {
        cks[k] = (c, false);
        k += 1;
    }
    if let (Some(c), true) = (l4_ck, pseudo) {
        cks[k] = (c, zero_none);
        k += 1;
    }
    set_covered(buf, l.src, &src[..n], &cks[..k], outer);
    set_covered(buf, l.dst, &dst[..n], &cks[..k], outer);
    if !l.has_l4 {
        return Ok(());
    }
    let l4arr = [(l4_ck.unwrap_or(0), zero_none)];
    let l4cks = if l4_ck.is_some() {
        &l4arr[..]
    } else {
        &l4arr[..0]
    };
    match l.proto {
        proto::TCP | proto::UDP => {
            if avail < 4 {
                return Err(RewriteError::Truncated);
            }
            set_covered(buf, l.l4, &rw.sport.to_be_bytes(), l4cks, outer);
            set_covered(buf, l.l4 + 2, &rw.dport.to_be_bytes(), l4cks, outer);
        }
        proto::ICMP | proto::ICMPV6 => {
            let t = buf.get(l.l4).copied().ok_or(RewriteError::Truncated)?;
            if matches!(t, 0 | 8 | 128 | 129) {
                if avail < 6 {
                    return Err(RewriteError::Truncated);
                }
                // Echo: the identifier stands in for the ports, and both
                // carry it.
                set_covered(buf, l.l4 + 4, &rw.sport.to_be_bytes(), l4cks, outer);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Applies `rw` to the packet in `buf` whose IP header starts at `l3` and
/// whose L4 header starts at `l4` (the offsets the parser recorded; 0 when
/// there is none, as for a later fragment, whose addresses alone are
/// rewritten). For an
/// ICMP error the quoted header, at `l4 + 8`, is rewritten with
/// `rw.inner`.
pub fn apply_rewrite(
    buf: &mut [u8],
    l3: usize,
    l4: usize,
    rw: &NatRewrite,
) -> Result<(), RewriteError> {
    // The parser records no L4 offset (0) for a later fragment.
    let outer = layout(buf, l3, (l4 != 0).then_some(l4))?;
    rewrite_one(buf, &outer, &rw.outer, None)?;
    let Some(inner_rw) = rw.inner else {
        return Ok(());
    };
    if !matches!(outer.proto, proto::ICMP | proto::ICMPV6) {
        return Ok(());
    }
    let icmp_ck = outer.l4 + 2;
    if icmp_ck + 2 > buf.len() {
        return Err(RewriteError::Truncated);
    }
    let inner = layout(buf, outer.l4 + 8, None)?;
    rewrite_one(buf, &inner, &inner_rw, Some(icmp_ck))
}
