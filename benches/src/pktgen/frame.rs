//! The frames `oxvs-pktgen` sends, and the stamp it reads back.
//!
//! A frame is Ethernet II + IPv4 (no options, DF, ID 0, TTL 64) + UDP to
//! port 9 (discard), from source port [`BASE_SPORT`] + flow, followed by the
//! stamp and zero padding up to the requested size (FCS excluded):
//!
//! ```text
//! 0        14         34      42      46      50    52          60
//! | eth    | ipv4     | udp   | magic | run   | flow| seq (BE)  | zero padding...
//! ```
//!
//! The smallest Ethernet frame without FCS, 60 bytes, holds exactly the
//! stamp. A [`Templates`] holds one finished frame per flow, built once;
//! per packet only the sequence number and the UDP checksum change, and the
//! checksum is finished from a partial sum kept per flow (RFC 1071 §2(B):
//! the ones'-complement sum is independent of where the words are added),
//! so a packet costs four 16-bit additions, not a pass over its bytes. The
//! IPv4 header never changes: ID 0 is allowed for atomic datagrams (DF set,
//! RFC 6864 §4.1), so its checksum is computed once per flow.
//!
//! The receiver trusts only the stamp, not addresses or ports, so a switch
//! may rewrite MACs, addresses (NAT) or ports without breaking the checks.

use datapath::buf::{FRAME_SIZE, HEADROOM};
use std::net::Ipv4Addr;
use wire::checksum::{fold, pseudo_header_v4, sum};

/// Smallest frame: the minimum Ethernet frame without FCS.
pub const MIN_SIZE: usize = 60;
/// Largest frame: a UMEM frame after its headroom. Frames longer than the
/// interface takes (its MTU plus the Ethernet header, and on a veth a VLAN
/// tag's allowance) are dropped by the kernel.
pub const MAX_SIZE: usize = FRAME_SIZE - HEADROOM;
/// "OXPG": marks a frame as ours.
pub const MAGIC: u32 = 0x4f58_5047;
/// UDP source port of flow 0; flow `i` uses `BASE_SPORT + i`.
pub const BASE_SPORT: u16 = 10_000;
/// Most flows: one per source port from [`BASE_SPORT`] to 65535.
pub const MAX_FLOWS: usize = 65_536 - BASE_SPORT as usize;
/// UDP destination port (discard, RFC 863).
pub const DST_PORT: u16 = 9;

/// Byte ranges of the frame, fixed because the generator writes no options.
mod field {
    use std::ops::Range;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const IP: usize = 14;
    pub const IP_VER_IHL: usize = 14;
    pub const IP_PROTO: usize = 23;
    pub const UDP: usize = 34;
    pub const UDP_CSUM: Range<usize> = 40..42;
    pub const MAGIC: Range<usize> = 42..46;
    pub const RUN: Range<usize> = 46..50;
    pub const FLOW: Range<usize> = 50..52;
    pub const SEQ: Range<usize> = 52..60;
}

/// What the frames carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// Frame length without FCS, [`MIN_SIZE`]..=[`MAX_SIZE`].
    pub size: usize,
    /// Number of flows, 1..=[`MAX_FLOWS`].
    pub flows: usize,
    /// The run id stamped into every frame.
    pub run_id: u32,
}

/// The stamp of a generator frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Which run sent it.
    pub run_id: u32,
    /// Flow index.
    pub flow: u16,
    /// Sequence number within the flow, from 0.
    pub seq: u64,
}

/// One finished frame per flow, and the partial UDP checksum of each with
/// its sequence number zero.
pub struct Templates {
    size: usize,
    frames: Vec<u8>,
    udp_sums: Vec<u32>,
}

impl Templates {
    /// Builds every flow's frame.
    ///
    /// Panics if the size or the flow count is out of range (the argument
    /// parser refuses those first).
    pub fn new(spec: &FrameSpec) -> Templates {
        assert!(
            (MIN_SIZE..=MAX_SIZE).contains(&spec.size),
            "size {}",
            spec.size
        );
        assert!(
            (1..=MAX_FLOWS).contains(&spec.flows),
            "flows {}",
            spec.flows
        );
        let mut frames = vec![0u8; spec.size * spec.flows];
        let mut udp_sums = Vec::with_capacity(spec.flows);
        for (flow, f) in frames.chunks_exact_mut(spec.size).enumerate() {
            udp_sums.push(build(spec, flow as u16, f));
        }
        Templates {
            size: spec.size,
            frames,
            udp_sums,
        }
    }

    /// Frame length.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Writes flow `flow`'s frame with sequence number `seq` into `out`
    /// (exactly [`Templates::size`] bytes). With `fresh` false, `out`
    /// already holds this flow's frame from an earlier packet and only the
    /// sequence number and checksum are written.
    #[inline]
    pub fn write(&self, flow: usize, seq: u64, out: &mut [u8], fresh: bool) {
        if fresh {
            let start = flow * self.size;
            out.copy_from_slice(&self.frames[start..start + self.size]);
        }
        out[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        let words = (seq >> 48) + ((seq >> 32) & 0xffff) + ((seq >> 16) & 0xffff) + (seq & 0xffff);
        let csum = udp_checksum(u64::from(self.udp_sums[flow]) + words);
        out[field::UDP_CSUM].copy_from_slice(&csum.to_be_bytes());
    }
}

/// The finished UDP checksum of a partial sum: RFC 768 sends a computed
/// zero as all ones, since zero means "no checksum".
#[inline]
fn udp_checksum(partial: u64) -> u16 {
    match !fold(partial) {
        0 => 0xffff,
        c => c,
    }
}

/// Writes flow `flow`'s frame with sequence number 0 and a zero UDP
/// checksum into `f`; returns the partial sum of its UDP checksum
/// (pseudo-header, header, payload).
fn build(spec: &FrameSpec, flow: u16, f: &mut [u8]) -> u32 {
    let size = spec.size;
    let ip_len = (size - field::IP) as u16;
    let udp_len = (size - field::UDP) as u16;
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    f[field::ETHERTYPE].copy_from_slice(&0x0800u16.to_be_bytes());

    let ip = &mut f[field::IP..field::UDP];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&0u16.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
    ip[8] = 64;
    ip[9] = 17;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&spec.src_ip.octets());
    ip[16..20].copy_from_slice(&spec.dst_ip.octets());
    let ip_csum = !fold(sum(ip));
    ip[10..12].copy_from_slice(&ip_csum.to_be_bytes());

    let udp = &mut f[field::UDP..];
    udp[0..2].copy_from_slice(&(BASE_SPORT + flow).to_be_bytes());
    udp[2..4].copy_from_slice(&DST_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    f[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
    f[field::RUN].copy_from_slice(&spec.run_id.to_be_bytes());
    f[field::FLOW].copy_from_slice(&flow.to_be_bytes());
    f[field::SEQ].copy_from_slice(&0u64.to_be_bytes());
    let pseudo = pseudo_header_v4(spec.src_ip.octets(), spec.dst_ip.octets(), 17, udp_len);
    let partial = pseudo + sum(&f[field::UDP..]);
    let csum = udp_checksum(u64::from(partial));
    f[field::UDP_CSUM].copy_from_slice(&csum.to_be_bytes());
    partial
}

/// The stamp of a generator frame, or `None` for anything else: a frame
/// too short, not IPv4 without options, not UDP, or without the magic.
#[inline]
pub fn stamp(frame: &[u8]) -> Option<Stamp> {
    let f = frame.get(..MIN_SIZE)?;
    if f[field::ETHERTYPE] != [0x08, 0x00]
        || f[field::IP_VER_IHL] != 0x45
        || f[field::IP_PROTO] != 17
        || f[field::MAGIC] != MAGIC.to_be_bytes()
    {
        return None;
    }
    let be32 = |r: std::ops::Range<usize>| {
        u32::from_be_bytes([f[r.start], f[r.start + 1], f[r.start + 2], f[r.start + 3]])
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&f[field::SEQ]);
    Some(Stamp {
        run_id: be32(field::RUN),
        flow: u16::from_be_bytes([f[field::FLOW.start], f[field::FLOW.start + 1]]),
        seq: u64::from_be_bytes(seq),
    })
}

/// Swaps the Ethernet source and destination of `frame` in place (a frame
/// shorter than 12 bytes is left alone).
#[inline]
pub fn swap_macs(frame: &mut [u8]) {
    if let Some(h) = frame.get_mut(..12) {
        let (dst, src) = h.split_at_mut(6);
        dst.swap_with_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn spec(size: usize, flows: usize) -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 1, 0, 1],
            dst_mac: [2, 0, 0, 1, 0, 2],
            src_ip: Ipv4Addr::new(10, 244, 1, 2),
            dst_ip: Ipv4Addr::new(10, 244, 1, 3),
            size,
            flows,
            run_id: 0xdead_beef,
        }
    }

    /// Checks a frame with etherparse and our own checksum routine, and
    /// returns its stamp.
    fn verify(f: &[u8], s: &FrameSpec, flow: u16) -> Stamp {
        let p = SlicedPacket::from_ethernet(f).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header();
        assert_eq!(h.source_addr(), s.src_ip);
        assert_eq!(h.destination_addr(), s.dst_ip);
        assert_eq!(h.total_len() as usize, s.size - 14);
        assert!(h.dont_fragment());
        assert_eq!(
            wire::checksum::checksum(h.slice()),
            0,
            "IPv4 header checksum"
        );
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.source_port(), BASE_SPORT + flow);
        assert_eq!(udp.destination_port(), DST_PORT);
        assert_ne!(udp.checksum(), 0);
        let udp_bytes = &f[34..];
        let pseudo = pseudo_header_v4(
            s.src_ip.octets(),
            s.dst_ip.octets(),
            17,
            udp_bytes.len() as u16,
        );
        assert_eq!(fold(pseudo + sum(udp_bytes)), 0xffff, "UDP checksum");
        let etherparse_sum = udp
            .to_header()
            .calc_checksum_ipv4_raw(s.src_ip.octets(), s.dst_ip.octets(), udp.payload())
            .expect("sums");
        assert_eq!(udp.checksum(), etherparse_sum);
        stamp(f).expect("stamped")
    }

    #[test]
    fn every_flow_and_sequence_number_gives_a_valid_frame() {
        for size in [MIN_SIZE, 64, 1514] {
            let s = spec(size, 5);
            let t = Templates::new(&s);
            let mut out = vec![0u8; size];
            for flow in 0..5 {
                for seq in [
                    0,
                    1,
                    0xfffe,
                    0xffff,
                    0x1_0000,
                    u64::MAX,
                    0x0123_4567_89ab_cdef,
                ] {
                    t.write(flow, seq, &mut out, true);
                    let st = verify(&out, &s, flow as u16);
                    assert_eq!(
                        st,
                        Stamp {
                            run_id: 0xdead_beef,
                            flow: flow as u16,
                            seq
                        }
                    );
                    assert!(out[60..].iter().all(|&b| b == 0), "zero padding");
                }
            }
        }
    }

    #[test]
    fn patching_only_the_varying_bytes_equals_a_fresh_write() {
        let s = spec(64, 3);
        let t = Templates::new(&s);
        let (mut patched, mut fresh) = (vec![0u8; 64], vec![0u8; 64]);
        t.write(2, 7, &mut patched, true);
        for seq in (8..5000).step_by(97) {
            t.write(2, seq, &mut patched, false);
            t.write(2, seq, &mut fresh, true);
            assert_eq!(patched, fresh);
        }
    }

    #[test]
    fn other_frames_carry_no_stamp() {
        let s = spec(64, 1);
        let t = Templates::new(&s);
        let mut f = vec![0u8; 64];
        t.write(0, 3, &mut f, true);
        assert!(stamp(&f).is_some());
        assert_eq!(stamp(&f[..59]), None);
        for (at, v) in [(12, 0x86), (14, 0x46), (23, 6), (42, 0)] {
            let mut g = f.clone();
            g[at] = v;
            assert_eq!(stamp(&g), None, "byte {at}");
        }
    }

    #[test]
    fn macs_swap() {
        let mut f = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        swap_macs(&mut f);
        assert_eq!(f, [7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 13]);
        let mut short = [1u8; 5];
        swap_macs(&mut short);
    }
}
