//! TCP sequence tracking, after the pf algorithm that OVS's userspace
//! conntrack also uses (itself from Guido van Rooij's "Real Stateful TCP
//! Packet Filtering in IP Filter").
//!
//! Each side ("peer") remembers the lowest sequence number it may still send
//! (`seqlo`), the highest the other side has allowed it (`seqhi`), its
//! largest advertised window and its window scale. A segment is valid when
//! its last octet fits the receiver's window, it retransmits at most one
//! window back, and its acknowledgment is neither more than one window ahead
//! nor too far behind. Segments that fail are `inv` rather than dropped here:
//! the rules decide.
//!
//! Like OVS, a non-SYN segment may create an entry ("mid-stream pickup",
//! after a restart or a table flush): OVS refuses only invalid flag
//! combinations and SYN+ACK as a first packet. The picked-up entry starts
//! with unknown window scales and checks loosely until both sides are seen.

use super::timeout::TimeoutClass;
use super::types::{tcp_flags::*, TcpInfo};

/// Peer states, ordered so "at least closing" is a comparison.
pub(crate) const CLOSED: u8 = 0;
pub(crate) const SYN_SENT: u8 = 1;
pub(crate) const ESTABLISHED: u8 = 2;
pub(crate) const CLOSING: u8 = 3;
pub(crate) const FIN_WAIT_2: u8 = 4;
pub(crate) const TIME_WAIT: u8 = 5;

/// The window scale was negotiated (low bits hold the shift).
const WSCALE_FLAG: u8 = 0x80;
/// The connection was picked up mid-stream: the scale is not known.
const WSCALE_UNKNOWN: u8 = 0x40;
const WSCALE_MASK: u8 = 0x0f;
/// RFC 7323 §2.3: a shift count above 14 is treated as 14.
const MAX_WSCALE: u8 = 14;
/// How far an ACK may lag: one maximal unscaled window plus a fudge for a
/// reassembled fragment.
const MAX_ACK_WINDOW: i64 = 0xffff + 1500;

/// One side of a TCP connection (12 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    seqlo: u32,
    seqhi: u32,
    max_win: u16,
    pub state: u8,
    wscale: u8,
}

/// What a segment did to an existing connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Update {
    /// In window; the entry moved to this timeout class.
    Valid(TimeoutClass),
    /// Accepted loosely (a picked-up or closing connection); the timer is
    /// not refreshed.
    Loose,
    /// Outside the window or nonsense flags.
    Invalid,
    /// A SYN on a connection both sides have finished: start over.
    Reopen,
}

fn seq_geq(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Flag combinations no TCP sends: SYN with RST or FIN, neither ACK nor RST
/// nor SYN, or FIN/PSH/URG without ACK.
pub(crate) fn invalid_flags(flags: u8) -> bool {
    if flags & SYN != 0 {
        if flags & (RST | FIN) != 0 {
            return true;
        }
    } else if flags & (ACK | RST) == 0 {
        return true;
    }
    flags & ACK == 0 && flags & (FIN | PSH | URG) != 0
}

/// Whether a segment may create an entry: valid flags and not a SYN+ACK (a
/// half-open handshake is not something to pick up).
pub(crate) fn valid_new(t: &TcpInfo) -> bool {
    !invalid_flags(t.flags) && t.flags & (SYN | ACK) != (SYN | ACK)
}

fn wscale_of(t: &TcpInfo) -> u8 {
    match t.wscale {
        Some(s) => s.min(MAX_WSCALE) | WSCALE_FLAG,
        None => 0,
    }
}

/// The peers of a new entry created by segment `t` from the originator.
pub(crate) fn new_conn(t: &TcpInfo) -> [Peer; 2] {
    let mut src = Peer {
        seqlo: t.seq,
        seqhi: t.seq.wrapping_add(t.payload_len).wrapping_add(1),
        max_win: t.window.max(1),
        state: SYN_SENT,
        wscale: 0,
    };
    let mut dst = Peer {
        seqhi: 1,
        max_win: 1,
        state: CLOSED,
        ..Peer::default()
    };
    if t.flags & SYN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = wscale_of(t);
    } else {
        src.wscale = WSCALE_UNKNOWN;
        dst.wscale = WSCALE_UNKNOWN;
    }
    if src.wscale & WSCALE_MASK != 0 {
        let sws = src.wscale & WSCALE_MASK;
        src.max_win = (src.max_win as u32).div_ceil(1 << sws).max(1) as u16;
    }
    if t.flags & FIN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    [src, dst]
}

/// Re-learns the sequence space of peer `from` from its segment `t`, for
/// a connection whose segments went by without being seen (the XDP fast
/// path carried them): the sender's lowest sequence becomes the segment's,
/// its highest allowed one a window past the segment's end, and, from the
/// acknowledgment, what the other side has sent and may send. [`update`]
/// then judges the segment against that. A SYN is left alone: it starts
/// or reopens a connection, which the tracking follows anyway.
pub(crate) fn resync(peers: &mut [Peer; 2], from: usize, t: &TcpInfo) {
    if t.flags & SYN != 0 {
        return;
    }
    let (a, b) = peers.split_at_mut(1);
    let (src, dst) = if from == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    };
    let (sws, dws) = if src.wscale & dst.wscale & WSCALE_FLAG != 0 {
        (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
    } else if src.wscale & dst.wscale & WSCALE_UNKNOWN != 0 {
        (MAX_WSCALE, MAX_WSCALE)
    } else {
        (0, 0)
    };
    let mut end = t.seq.wrapping_add(t.payload_len);
    if t.flags & FIN != 0 {
        end = end.wrapping_add(1);
    }
    src.seqlo = t.seq;
    let dst_win = ((dst.max_win as u32) << dws).max(1);
    src.seqhi = end.wrapping_add(dst_win);
    if t.flags & ACK != 0 {
        dst.seqlo = t.ack;
        let win = (t.window as u32)
            .checked_shl(sws as u32)
            .unwrap_or(u32::MAX);
        dst.seqhi = t.ack.wrapping_add(win.max(1));
    }
}

/// Applies segment `t`, sent by peer `from` (0 original, 1 reply).
pub(crate) fn update(peers: &mut [Peer; 2], from: usize, t: &TcpInfo) -> Update {
    let flags = t.flags;
    if invalid_flags(flags) {
        return Update::Invalid;
    }
    let (src, dst) = if from == 0 {
        let (a, b) = peers.split_at_mut(1);
        (&mut a[0], &mut b[0])
    } else {
        let (a, b) = peers.split_at_mut(1);
        (&mut b[0], &mut a[0])
    };
    if flags & (SYN | ACK) == SYN && dst.state >= FIN_WAIT_2 && src.state >= FIN_WAIT_2 {
        return Update::Reopen;
    }
    let (mut sws, mut dws) = (0u8, 0u8);
    if src.wscale & dst.wscale & WSCALE_FLAG != 0 && flags & SYN == 0 {
        sws = src.wscale & WSCALE_MASK;
        dws = dst.wscale & WSCALE_MASK;
    } else if src.wscale & dst.wscale & WSCALE_UNKNOWN != 0 && flags & SYN == 0 {
        sws = MAX_WSCALE;
        dws = MAX_WSCALE;
    }
    let mut win = t.window as u32;
    let orig_seq = t.seq;
    let mut seq = t.seq;
    let mut ack = t.ack;
    let mut end = seq.wrapping_add(t.payload_len);
    if flags & SYN != 0 {
        end = end.wrapping_add(1);
    }
    if flags & FIN != 0 {
        end = end.wrapping_add(1);
    }
    let mut check_ackskew = true;
    if src.state < SYN_SENT {
        // First segment from this side (the SYN+ACK, normally).
        if flags & SYN != 0 && dst.wscale & WSCALE_FLAG != 0 {
            src.wscale = wscale_of(t);
            if src.wscale & WSCALE_FLAG != 0 {
                sws = src.wscale & WSCALE_MASK;
                win = win.div_ceil(1 << sws);
                dws = dst.wscale & WSCALE_MASK;
            } else {
                // The other side offered scaling and this one declined
                // (RFC 7323 §2.2): neither side scales.
                dst.max_win = (dst.max_win as u32)
                    .checked_shl((dst.wscale & WSCALE_MASK) as u32)
                    .unwrap_or(u32::MAX)
                    .min(u16::MAX as u32) as u16;
                dst.wscale = 0;
            }
        }
        src.seqlo = seq;
        src.state = SYN_SENT;
        let reach = end.wrapping_add(((dst.max_win as u32) << dws).max(1));
        if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
            src.seqhi = reach;
            check_ackskew = false;
        }
        if win > src.max_win as u32 {
            src.max_win = win.min(u16::MAX as u32) as u16;
        }
    }
    if flags & ACK == 0 || (ack == 0 && flags & (ACK | RST) == ACK | RST) {
        // No acknowledgment to check (or a broken stack's RST): let it pass.
        ack = dst.seqlo;
    }
    if seq == end {
        // Segments without data are judged loosely.
        seq = src.seqlo;
        end = seq;
    }
    let ackskew: i64 = if check_ackskew {
        dst.seqlo.wrapping_sub(ack) as i32 as i64
    } else {
        0
    };
    let dst_win = (dst.max_win as u32) << dws;
    let in_window = seq_geq(src.seqhi, end)
        && seq_geq(seq, src.seqlo.wrapping_sub(dst_win))
        && ackskew >= -MAX_ACK_WINDOW
        && ackskew <= MAX_ACK_WINDOW << sws
        && (flags & RST == 0
            || orig_seq == src.seqlo
            || orig_seq == src.seqlo.wrapping_add(1)
            || orig_seq.wrapping_add(1) == src.seqlo);
    let loose = !in_window
        && (dst.state < SYN_SENT || dst.state >= FIN_WAIT_2 || src.state >= FIN_WAIT_2)
        && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32));
    if !in_window && !loose {
        return Update::Invalid;
    }
    if (src.max_win as u32) < win {
        src.max_win = win.min(u16::MAX as u32) as u16;
    }
    if seq_gt(end, src.seqlo) {
        src.seqlo = end;
    }
    let scaled = win.checked_shl(sws as u32).unwrap_or(u32::MAX);
    if seq_geq(ack.wrapping_add(scaled), dst.seqhi) {
        dst.seqhi = ack.wrapping_add(scaled.max(1));
    }
    if flags & FIN != 0 && src.state < CLOSING {
        src.state = CLOSING;
    }
    if flags & RST != 0 {
        src.state = TIME_WAIT;
        dst.state = TIME_WAIT;
    }
    if in_window && flags & ACK != 0 {
        if dst.state == SYN_SENT {
            dst.state = ESTABLISHED;
        } else if dst.state == CLOSING {
            dst.state = FIN_WAIT_2;
        }
    }
    if !in_window {
        // pf does not refresh the timer for a loosely accepted segment, so a
        // flood of almost-valid segments cannot keep an entry alive.
        return Update::Loose;
    }
    let class = if src.state >= FIN_WAIT_2 && dst.state >= FIN_WAIT_2 {
        TimeoutClass::TcpClose
    } else if src.state >= CLOSING && dst.state >= CLOSING {
        TimeoutClass::TcpTimeWait
    } else if src.state < ESTABLISHED || dst.state < ESTABLISHED {
        TimeoutClass::TcpSynRecv
    } else if src.state >= CLOSING || dst.state >= CLOSING {
        TimeoutClass::TcpFinWait
    } else {
        TimeoutClass::TcpEstablished
    };
    Update::Valid(class)
}
