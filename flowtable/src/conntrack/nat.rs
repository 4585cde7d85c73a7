//! NAT specifications and the choice of a translated tuple.
//!
//! A connection's reply tuple is the key its replies are found by, so two
//! connections must never share one: the caller tries candidates from
//! [`Candidates`] in order and takes the first whose reply tuple is free,
//! checking and inserting under the locks of both shards involved.
//!
//! Candidates start at a hash of the original tuple, so connections spread
//! over an address range, and walk the range from there. As in OVS, SNAT
//! without a port range first keeps the original port and falls back to
//! the ephemeral range 1024-65535 on a collision. The walk is bounded
//! ([`MAX_ATTEMPTS`]) so a nearly full range costs a bounded number of
//! probes per new connection; when it gives up the packet is dropped with
//! `DropReason::CtNatExhausted`.

use super::types::{mix, CtAddr, Tuple};
use std::net::IpAddr;

/// At most this many candidate tuples are probed per new connection.
pub const MAX_ATTEMPTS: u32 = 256;

/// First and last port of the range SNAT falls back to.
const EPHEMERAL: (u16, u16) = (1024, 65535);

/// An inclusive range of addresses and ports to translate to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange {
    /// First address.
    pub addr_min: IpAddr,
    /// Last address (same family as `addr_min`, not below it).
    pub addr_max: IpAddr,
    /// First port; `0` with `port_max == 0` means "keep the port".
    pub port_min: u16,
    /// Last port.
    pub port_max: u16,
}

impl NatRange {
    /// One address, ports kept.
    pub fn addr(a: IpAddr) -> NatRange {
        NatRange {
            addr_min: a,
            addr_max: a,
            port_min: 0,
            port_max: 0,
        }
    }

    /// One address and one port.
    pub fn addr_port(a: IpAddr, port: u16) -> NatRange {
        NatRange::addr_ports(a, a, port, port)
    }

    /// Addresses `min..=max` and ports `lo..=hi`.
    pub fn addr_ports(min: IpAddr, max: IpAddr, lo: u16, hi: u16) -> NatRange {
        NatRange {
            addr_min: min,
            addr_max: max,
            port_min: lo,
            port_max: hi,
        }
    }
}

/// The `nat` part of a `ct` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatSpec {
    /// `nat` without arguments: translate packets of connections already
    /// set up with NAT, set up nothing new.
    Existing,
    /// `nat(src=...)`: rewrite the source of the original direction.
    Src(NatRange),
    /// `nat(dst=...)`: rewrite the destination of the original direction.
    Dst(NatRange),
}

impl NatSpec {
    /// Masquerade: SNAT to the address of the output interface, which the
    /// caller looks up, with a port from the ephemeral range on collision.
    pub fn masquerade(addr: IpAddr) -> NatSpec {
        NatSpec::Src(NatRange::addr(addr))
    }
}

/// The candidate translated tuples for one connection, in probe order.
pub(crate) struct Candidates<A> {
    orig: Tuple<A>,
    src: bool,
    addr_min: u128,
    addr_count: u128,
    port_min: u16,
    port_count: u32,
    keep_port: bool,
    /// Where the walk starts in the address and port ranges, from the hash
    /// of the original tuple; computed once because `u128` division is a
    /// library call, not an instruction.
    a_off: u128,
    p_off: u32,
    i: u32,
    total: u32,
}

impl<A: CtAddr> Candidates<A> {
    /// The candidates for `range` applied to `orig` (source side if `src`).
    /// `None` if the range's family does not match or it is reversed.
    pub fn new(orig: &Tuple<A>, range: &NatRange, src: bool, seed: u64) -> Option<Self> {
        let lo = A::from_ip(range.addr_min)?.to_u128();
        let hi = A::from_ip(range.addr_max)?.to_u128();
        if hi < lo || range.port_max < range.port_min {
            return None;
        }
        let keep_port = range.port_min == 0 && range.port_max == 0;
        let (port_min, port_max) = if keep_port {
            EPHEMERAL
        } else {
            (range.port_min, range.port_max)
        };
        let addr_count = (hi - lo).saturating_add(1);
        let port_count = (port_max - port_min) as u32 + 1;
        let space = addr_count.saturating_mul(port_count as u128);
        // Keeping the port adds one candidate in front of the range walk.
        let total = space.min(MAX_ATTEMPTS as u128) as u32 + keep_port as u32;
        let h = mix(orig.src.word(orig.sport) ^ mix(orig.dst.word(orig.dport) ^ seed));
        let a_off = match u64::try_from(addr_count) {
            Ok(n) => (h % n) as u128,
            Err(_) => h as u128 % addr_count,
        };
        Some(Candidates {
            orig: *orig,
            src,
            addr_min: lo,
            addr_count,
            port_min,
            port_count,
            keep_port,
            a_off,
            p_off: (h >> 32) as u32 % port_count,
            i: 0,
            total,
        })
    }

    /// The `n`th candidate's address and port.
    fn pick(&self, n: u32) -> (A, u16) {
        if self.keep_port && n == 0 {
            let port = if self.src {
                self.orig.sport
            } else {
                self.orig.dport
            };
            return (A::from_u128(self.addr_min + self.a_off), port);
        }
        let n = n - self.keep_port as u32;
        let p_off = (self.p_off + n % self.port_count) % self.port_count;
        let a_step = (n / self.port_count) as u128;
        let a_off = if a_step == 0 {
            self.a_off
        } else {
            (self.a_off + a_step) % self.addr_count
        };
        (
            A::from_u128(self.addr_min + a_off),
            self.port_min + p_off as u16,
        )
    }
}

impl<A: CtAddr> Iterator for Candidates<A> {
    /// The reply tuple the candidate would give.
    type Item = Tuple<A>;

    fn next(&mut self) -> Option<Tuple<A>> {
        if self.i >= self.total {
            return None;
        }
        let (addr, port) = self.pick(self.i);
        self.i += 1;
        let mut r = self.orig.reverse();
        if self.src {
            // Replies go back to the translated source.
            r.dst = addr;
            r.dport = port;
        } else {
            // Replies come from the translated destination.
            r.src = addr;
            r.sport = port;
        }
        Some(r)
    }
}
