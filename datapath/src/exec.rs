//! The action executor: applies one datapath rewrite to a packet's bytes.
//!
//! Rewrites use the offsets `extract` recorded, so nothing is parsed again,
//! and update checksums incrementally (RFC 1624) instead of recomputing them:
//! an address rewrite touches the IPv4 header checksum and the TCP/UDP (or
//! ICMPv6) checksum through its pseudo-header. VLAN push and pop move only the
//! 12 bytes of Ethernet addresses into or out of the frame's headroom.
//!
//! A rewrite the packet cannot take (no headroom, no such header) returns a
//! drop reason; nothing here panics on any packet `extract` accepted.

use crate::buf::PacketDesc;
use flowtable::extract::Layout;
use flowtable::{DpAction, DropReason};
use wire::checksum::{update16, update_bytes};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// Applies a rewrite action (not `Output` or `Drop`, which the caller
/// handles) to the packet `d` inside `frame`.
#[inline]
pub fn rewrite(
    frame: &mut [u8],
    d: &mut PacketDesc,
    lay: &mut Layout,
    a: &DpAction,
) -> Result<(), DropReason> {
    let off = d.off as usize;
    let end = off + d.len as usize;
    let pkt = &mut frame[off..end];
    let l3 = lay.l3 as usize;
    match *a {
        DpAction::SetEthSrc(m) => pkt[6..12].copy_from_slice(&m),
        DpAction::SetEthDst(m) => pkt[0..6].copy_from_slice(&m),
        DpAction::PushVlan { tpid, tci } => {
            if off < 4 {
                return Err(DropReason::BadRewrite);
            }
            frame.copy_within(off..off + 12, off - 4);
            let start = off - 4;
            frame[start + 12..start + 14].copy_from_slice(&tpid.to_be_bytes());
            frame[start + 14..start + 16].copy_from_slice(&tci.to_be_bytes());
            d.off -= 4;
            d.len += 4;
            shift(lay, 4);
        }
        DpAction::PopVlan => {
            if !is_tagged(pkt) {
                return Ok(());
            }
            frame.copy_within(off..off + 12, off + 4);
            d.off += 4;
            d.len -= 4;
            shift(lay, -4);
        }
        DpAction::SetVlanTci(tci) => {
            if !is_tagged(pkt) {
                return Err(DropReason::BadRewrite);
            }
            pkt[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        DpAction::SetIpv4Src(a) => set_ipv4_addr(pkt, lay, 12, a)?,
        DpAction::SetIpv4Dst(a) => set_ipv4_addr(pkt, lay, 16, a)?,
        DpAction::SetIpv6Src(a) => set_ipv6_addr(pkt, lay, 8, a)?,
        DpAction::SetIpv6Dst(a) => set_ipv6_addr(pkt, lay, 24, a)?,
        DpAction::SetTos(tos) => match ip_version(pkt, l3) {
            4 => {
                let old = u16::from_be_bytes([pkt[l3], pkt[l3 + 1]]);
                pkt[l3 + 1] = tos;
                let new = u16::from_be_bytes([pkt[l3], pkt[l3 + 1]]);
                fix_ip_csum(pkt, l3, old, new);
            }
            6 => {
                // The traffic class straddles the first two bytes (RFC 8200 §3).
                pkt[l3] = (pkt[l3] & 0xf0) | (tos >> 4);
                pkt[l3 + 1] = (pkt[l3 + 1] & 0x0f) | (tos << 4);
            }
            _ => return Err(DropReason::BadRewrite),
        },
        DpAction::SetTtl(ttl) => match ip_version(pkt, l3) {
            4 => {
                let old = u16::from_be_bytes([pkt[l3 + 8], pkt[l3 + 9]]);
                pkt[l3 + 8] = ttl;
                let new = u16::from_be_bytes([pkt[l3 + 8], pkt[l3 + 9]]);
                fix_ip_csum(pkt, l3, old, new);
            }
            6 => pkt[l3 + 7] = ttl,
            _ => return Err(DropReason::BadRewrite),
        },
        DpAction::SetArp {
            op,
            sha,
            spa,
            tha,
            tpa,
        } => {
            // RFC 826 over Ethernet/IPv4 (extract only gives ARP fields to
            // that shape): op at 6, then sha, spa, tha, tpa; 28 bytes.
            let arp = pkt.get_mut(l3..l3 + 28).ok_or(DropReason::BadRewrite)?;
            arp[6..8].copy_from_slice(&op.to_be_bytes());
            arp[8..14].copy_from_slice(&sha);
            arp[14..18].copy_from_slice(&spa);
            arp[18..24].copy_from_slice(&tha);
            arp[24..28].copy_from_slice(&tpa);
        }
        DpAction::SetTpSrc(p) => set_port(pkt, lay, 0, p)?,
        DpAction::SetTpDst(p) => set_port(pkt, lay, 2, p)?,
        DpAction::Output(_)
        | DpAction::Drop(_)
        | DpAction::TunnelMetadata { .. }
        | DpAction::TunnelPush { .. }
        | DpAction::Ct(_)
        | DpAction::Reject(_)
        | DpAction::Log { .. } => {}
    }
    Ok(())
}

fn is_tagged(pkt: &[u8]) -> bool {
    let t = u16::from_be_bytes([pkt[12], pkt[13]]);
    (t == 0x8100 || t == 0x88a8) && pkt.len() >= 18
}

fn shift(lay: &mut Layout, by: i16) {
    lay.l3 = lay.l3.wrapping_add_signed(by);
    if lay.l4 != 0 {
        lay.l4 = lay.l4.wrapping_add_signed(by);
    }
}

fn ip_version(pkt: &[u8], l3: usize) -> u8 {
    pkt.get(l3).map_or(0, |b| b >> 4)
}

fn fix_ip_csum(pkt: &mut [u8], l3: usize, old: u16, new: u16) {
    let c = u16::from_be_bytes([pkt[l3 + 10], pkt[l3 + 11]]);
    pkt[l3 + 10..l3 + 12].copy_from_slice(&update16(c, old, new).to_be_bytes());
}

/// Where the L4 checksum that covers the pseudo-header sits, if it must be
/// updated: TCP always, UDP unless zero (RFC 768: zero means none over
/// IPv4), ICMPv6 always (RFC 4443 §2.3).
fn l4_csum_at(pkt: &[u8], lay: &Layout) -> Option<usize> {
    if lay.l4 == 0 {
        return None;
    }
    let l4 = lay.l4 as usize;
    let at = match lay.proto {
        TCP => l4 + 16,
        UDP => l4 + 6,
        ICMPV6 => l4 + 2,
        _ => return None,
    };
    if at + 2 > pkt.len() {
        return None;
    }
    if lay.proto == UDP && pkt[at] == 0 && pkt[at + 1] == 0 {
        return None;
    }
    Some(at)
}

fn fix_l4_csum(pkt: &mut [u8], lay: &Layout, old: &[u8], new: &[u8]) {
    if let Some(at) = l4_csum_at(pkt, lay) {
        let c = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
        let mut n = update_bytes(c, old, new);
        if lay.proto == UDP && n == 0 {
            n = 0xffff;
        }
        pkt[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }
}

fn set_ipv4_addr(pkt: &mut [u8], lay: &Layout, at: usize, a: [u8; 4]) -> Result<(), DropReason> {
    let l3 = lay.l3 as usize;
    if ip_version(pkt, l3) != 4 {
        return Err(DropReason::BadRewrite);
    }
    let p = l3 + at;
    let mut old = [0u8; 4];
    old.copy_from_slice(&pkt[p..p + 4]);
    pkt[p..p + 4].copy_from_slice(&a);
    let c = u16::from_be_bytes([pkt[l3 + 10], pkt[l3 + 11]]);
    pkt[l3 + 10..l3 + 12].copy_from_slice(&update_bytes(c, &old, &a).to_be_bytes());
    fix_l4_csum(pkt, lay, &old, &a);
    Ok(())
}

fn set_ipv6_addr(pkt: &mut [u8], lay: &Layout, at: usize, a: [u8; 16]) -> Result<(), DropReason> {
    let l3 = lay.l3 as usize;
    if ip_version(pkt, l3) != 6 {
        return Err(DropReason::BadRewrite);
    }
    let p = l3 + at;
    let mut old = [0u8; 16];
    old.copy_from_slice(&pkt[p..p + 16]);
    pkt[p..p + 16].copy_from_slice(&a);
    fix_l4_csum(pkt, lay, &old, &a);
    Ok(())
}

fn set_port(pkt: &mut [u8], lay: &Layout, at: usize, port: u16) -> Result<(), DropReason> {
    if lay.l4 == 0 || !(lay.proto == TCP || lay.proto == UDP) {
        return Err(DropReason::BadRewrite);
    }
    let p = lay.l4 as usize + at;
    let old = u16::from_be_bytes([pkt[p], pkt[p + 1]]);
    pkt[p..p + 2].copy_from_slice(&port.to_be_bytes());
    fix_l4_csum(pkt, lay, &old.to_be_bytes(), &port.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtable::key::FlowKey;

    /// An ARP responder's answer: the request turned into a reply in place.
    #[test]
    fn set_arp_rewrites_the_arp_header() {
        let mut frame = vec![0u8; 64];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&[0x0a, 0x58, 10, 244, 0, 2]);
        frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        // htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request).
        frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        frame[22..28].copy_from_slice(&[0x0a, 0x58, 10, 244, 0, 2]);
        frame[28..32].copy_from_slice(&[10, 244, 0, 2]);
        frame[38..42].copy_from_slice(&[10, 244, 0, 1]);
        let mut key = FlowKey::default();
        let mut lay = flowtable::extract::extract(&frame[..42], 1, &mut key).unwrap();
        let mut d = PacketDesc {
            frame: 0,
            off: 0,
            len: 42,
        };
        let gw = [0x0a, 0x58, 10, 244, 0, 1];
        let a = DpAction::SetArp {
            op: 2,
            sha: gw,
            spa: [10, 244, 0, 1],
            tha: [0x0a, 0x58, 10, 244, 0, 2],
            tpa: [10, 244, 0, 2],
        };
        rewrite(&mut frame, &mut d, &mut lay, &a).unwrap();
        assert_eq!(&frame[20..22], &[0, 2]);
        assert_eq!(&frame[22..28], &gw);
        assert_eq!(&frame[28..32], &[10, 244, 0, 1]);
        assert_eq!(&frame[32..38], &[0x0a, 0x58, 10, 244, 0, 2]);
        assert_eq!(&frame[38..42], &[10, 244, 0, 2]);
        // Cut short: refused, not a panic.
        let mut d = PacketDesc {
            frame: 0,
            off: 0,
            len: 30,
        };
        assert_eq!(
            rewrite(&mut frame, &mut d, &mut lay, &a),
            Err(DropReason::BadRewrite)
        );
    }
}
