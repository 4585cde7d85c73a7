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
//! the ephemeral range 1024-65535 on a collision.
//!
//! DNAT of TCP or UDP never moves a destination port the rule did not
//! name, since the server listens there. When every destination the rule
//! allows is taken, which happens when two Services send one client port to
//! the same endpoint, the source port moves instead, to one from the
//! ephemeral range, as Linux's implicit source NAT and OVS do. Replies are
//! translated back to the client's own port.
//!
//! Each walk is bounded ([`MAX_ATTEMPTS`]) so a nearly full range costs a
//! bounded number of probes per new connection; when it gives up the
//! packet is dropped with `DropReason::CtNatExhausted`.

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
    /// DNAT of a protocol with ports: after `total` destinations, walk
    /// source ports from the ephemeral range (see the module docs).
    move_sport: bool,
    /// Where the walk starts in the address and port ranges, from the hash
    /// of the original tuple; computed once because `u128` division is a
    /// library call, not an instruction.
    a_off: u128,
    p_off: u32,
    /// The hash itself, for the source-port walk's start.
    hash: u64,
    i: u32,
    total: u32,
}

impl<A: CtAddr> Candidates<A> {
    /// The candidates for `range` applied to `orig` (source side if `src`);
    /// `ports`: the protocol has real ports (TCP, UDP), not an ICMP
    /// identifier or none. `None` if the range's family does not match or
    /// it is reversed.
    pub fn new(
        orig: &Tuple<A>,
        range: &NatRange,
        src: bool,
        ports: bool,
        seed: u64,
    ) -> Option<Self> {
        let lo = A::from_ip(range.addr_min)?.to_u128();
        let hi = A::from_ip(range.addr_max)?.to_u128();
        if hi < lo || range.port_max < range.port_min {
            return None;
        }
        let keep_port = range.port_min == 0 && range.port_max == 0;
        let move_sport = !src && ports;
        let (port_min, port_max) = match keep_port {
            // The kept destination port is the only one.
            true if move_sport => (orig.dport, orig.dport),
            true => EPHEMERAL,
            false => (range.port_min, range.port_max),
        };
        let addr_count = (hi - lo).saturating_add(1);
        let port_count = (port_max - port_min) as u32 + 1;
        let space = addr_count.saturating_mul(port_count as u128);
        // Keeping the port adds one candidate in front of the range walk,
        // unless that walk is the kept port itself.
        let keep_first = keep_port && !move_sport;
        let total = space.min(MAX_ATTEMPTS as u128) as u32 + keep_first as u32;
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
            keep_port: keep_first,
            move_sport,
            a_off,
            p_off: (h >> 32) as u32 % port_count,
            hash: h,
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

    /// The source-port walk of DNAT, once every destination was taken:
    /// the first destination with the `n`th ephemeral port after the
    /// hashed start, skipping the client's own port (already tried).
    fn next_sport(&mut self) -> Option<Tuple<A>> {
        let (lo, hi) = EPHEMERAL;
        let count = (hi - lo) as u32 + 1;
        loop {
            let n = self.i - self.total;
            if !self.move_sport || n >= MAX_ATTEMPTS {
                return None;
            }
            self.i += 1;
            // Another part of the hash than the destination walk's.
            let start = (self.hash >> 16) as u32 % count;
            let port = lo + ((start + n) % count) as u16;
            if port == self.orig.sport {
                continue;
            }
            let (addr, dport) = self.pick(0);
            let mut r = self.orig.reverse();
            (r.src, r.sport, r.dport) = (addr, dport, port);
            return Some(r);
        }
    }
}

impl<A: CtAddr> Iterator for Candidates<A> {
    /// The reply tuple the candidate would give.
    type Item = Tuple<A>;

    fn next(&mut self) -> Option<Tuple<A>> {
        if self.i >= self.total {
            return self.next_sport();
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
