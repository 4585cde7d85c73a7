//! Connection tracking and NAT for IPv4 and IPv6, as pure logic.
//!
//! [`ConnTrack::process`] is the `ct(...)` action: it finds the connection a
//! packet belongs to by zone and 5-tuple (the ICMP echo identifier stands in
//! for both ports), in either direction, updates its state, optionally
//! commits a new one with NAT, and returns `ct_state` bits with OVS's values,
//! the mark and label, and the rewrite to apply ([`apply_rewrite`] does that
//! to packet bytes, checksums included). Nothing here reads a clock: callers
//! pass `now_ms`, and [`ConnTrack::expire`] removes timed-out entries a
//! bounded number at a time, so no call ever sweeps the table.
//!
//! Two poll threads share one table, and OVS's single conntrack lock is what
//! we want to avoid. The table is split into [`SHARDS`] shards, each behind
//! its own mutex, and a connection's shard is chosen by a hash that is the
//! same for a tuple and its reverse, so both directions of a connection
//! without NAT meet under one lock and each packet takes exactly one lock.
//! With NAT the reply tuple usually hashes elsewhere; it is then indexed in
//! its own shard as an *alias* pointing at the entry's home shard, slot and
//! generation. Committing such a connection holds both shards' locks, taken
//! in shard order so two threads cannot deadlock, which is also what makes
//! "is this translated tuple free?" and "take it" one atomic step: two
//! connections never get the same translated tuple. A reply then takes two
//! locks one after the other, never both.
//!
//! IP fragments are tracked without reassembly (`frag.rs`): a first
//! fragment's ports are remembered per datagram, and later fragments, which
//! carry none, are tracked with them.
//!
//! Limits (a global maximum and per-zone maxima) are atomic counters checked
//! before an entry is made; when one is reached the new connection is not
//! committed and its verdict names a drop reason.
//!
//! Behaviour follows OVS's userspace conntrack where the two can be
//! compared: a non-SYN TCP segment may start an entry (mid-stream pickup),
//! a SYN+ACK may not; ICMP errors quoting a tracked connection are `rel`
//! and their quoted header is translated back through NAT; timeouts are
//! OVS's defaults. One deliberate difference: a UDP entry stays `new` in
//! the original direction until a reply is seen (OVS reports `est` from the
//! third packet on), matching ICMP and the Linux conntrack.

mod dump;
mod flush;
mod frag;
mod index;
mod offload;
mod parse;
mod process;
mod related;
mod rewrite;
mod table;
mod tcp;
mod timeout;
mod types;

mod nat;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_flush;
#[cfg(test)]
mod tests_frag;
#[cfg(test)]
mod tests_nat;
#[cfg(test)]
mod tests_offload;
#[cfg(test)]
mod tests_parse;

pub use dump::CtEntry;
pub use flush::{CtFilter, TupleFilter};
pub use frag::{FragStats, FRAG_TIMEOUT_MS};
pub use nat::{NatRange, NatSpec, MAX_ATTEMPTS};
pub use offload::ConnRef;
pub use parse::CtParseError;
pub use rewrite::{apply_rewrite, RewriteError};
pub use timeout::{TimeoutClass, Timeouts};
pub use types::{
    ct_state, proto, tcp_flags, CtPacket, CtVerdict, Fragment, FragmentL4, HeaderRewrite,
    InnerTuple, NatRewrite, TcpInfo,
};

use crate::DropReason;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use table::Table;
use types::CtAddr;

/// How many shards the table is split into (a power of two).
pub const SHARDS: usize = 16;

/// Table-wide settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtConfig {
    /// Most connections in all zones together.
    pub max_conns: usize,
    /// Most connections in a zone without its own limit; 0 means no limit.
    pub default_zone_limit: u32,
    /// Timeout lengths.
    pub timeouts: Timeouts,
    /// Most fragmented datagrams whose ports are remembered at once (see
    /// `frag.rs`; rounded down to whole buckets).
    pub max_frags: usize,
    /// Hash seed. Pick it at random at start-up so a remote peer cannot aim
    /// its tuples at one hash chain.
    pub seed: u64,
}

impl Default for CtConfig {
    /// OVS's default limit of 3,000,000 connections, no zone limits.
    fn default() -> CtConfig {
        CtConfig {
            max_conns: 3_000_000,
            default_zone_limit: 0,
            timeouts: Timeouts::default(),
            // 1 MiB of 64-byte entries: at the 5 s timeout, 3,000
            // fragmented datagrams a second before the oldest are evicted.
            max_frags: 16_384,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// What `exec(...)` sets on a committed connection: values and masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtExec {
    /// `set_field:V/M->ct_mark`.
    pub mark: Option<(u32, u32)>,
    /// `set_field:V/M->ct_label`.
    pub label: Option<(u128, u128)>,
}

/// One shard: a table per address family.
pub(crate) struct Shard {
    v4: Table<[u8; 4]>,
    v6: Table<[u8; 16]>,
}

/// A shard on its own cache line(s), so two threads locking neighbouring
/// shards do not bounce one line between cores.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// An address family: its address type and its table in a shard.
pub(crate) trait Family: CtAddr {
    /// IPv6 (the other family is IPv4).
    const V6: bool;
    fn table(s: &mut Shard) -> &mut Table<Self>;
}

impl Family for [u8; 4] {
    const V6: bool = false;
    fn table(s: &mut Shard) -> &mut Table<Self> {
        &mut s.v4
    }
}

impl Family for [u8; 16] {
    const V6: bool = true;
    fn table(s: &mut Shard) -> &mut Table<Self> {
        &mut s.v6
    }
}

/// The connection table.
pub struct ConnTrack {
    shards: Box<[Padded]>,
    cfg: CtConfig,
    count: AtomicUsize,
    zone_count: Box<[AtomicU32]>,
    zone_limit: Box<[AtomicU32]>,
    cursor: AtomicUsize,
    frags: frag::FragTable,
}

impl ConnTrack {
    /// An empty table.
    pub fn new(cfg: CtConfig) -> ConnTrack {
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    v4: Table::new(cfg.seed),
                    v6: Table::new(cfg.seed),
                }))
            })
            .collect();
        let zones = || (0..=u16::MAX as usize).map(|_| AtomicU32::new(0)).collect();
        ConnTrack {
            shards,
            cfg,
            count: AtomicUsize::new(0),
            zone_count: zones(),
            zone_limit: zones(),
            cursor: AtomicUsize::new(0),
            frags: frag::FragTable::new(cfg.max_frags, cfg.seed),
        }
    }

    /// Counters of fragment tracking.
    pub fn frag_stats(&self) -> FragStats {
        self.frags.stats()
    }

    /// Fragmented datagrams whose ports are remembered at `now_ms` (a scan
    /// of that table).
    pub fn frag_len(&self, now_ms: u64) -> usize {
        self.frags.len(now_ms)
    }

    /// Most fragmented datagrams remembered at once.
    pub fn frag_capacity(&self) -> usize {
        self.frags.capacity()
    }

    /// The configuration.
    pub fn config(&self) -> &CtConfig {
        &self.cfg
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether there are no connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live connections in `zone`.
    pub fn zone_len(&self, zone: u16) -> u32 {
        self.zone_count[zone as usize].load(Ordering::Relaxed)
    }

    /// Sets `zone`'s own limit (0: back to the default).
    pub fn set_zone_limit(&self, zone: u16, limit: u32) {
        self.zone_limit[zone as usize].store(limit, Ordering::Relaxed);
    }

    /// Heap bytes of all shards' tables (the fixed per-zone counters, 512
    /// KiB, and the fixed fragment table are not included).
    pub fn heap_bytes(&self) -> usize {
        (0..SHARDS)
            .map(|s| {
                let g = self.lock(s);
                g.v4.heap_bytes() + g.v6.heap_bytes()
            })
            .sum()
    }

    fn lock(&self, s: usize) -> MutexGuard<'_, Shard> {
        // A thread that panicked while holding a shard left it consistent
        // enough to keep forwarding; poisoning is not worth a crash here.
        self.shards[s].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shard of a key hashing to `h`. The bits must be ones the
    /// shard's index does not use: it takes the bucket from the low bits
    /// and the 16-bit signature it filters probes with from the top 16.
    /// Had the shard come from the signature bits, every key of a shard
    /// would share four of them, and a probe would compare against 16
    /// times as many entries, each compare a likely cache miss. Bits 32 and
    /// up are beyond any bucket number a shard will have.
    fn shard_of(h: u64) -> usize {
        (h >> 32) as usize & (SHARDS - 1)
    }

    /// Counts a new connection in `zone` against the limits.
    fn reserve(&self, zone: u16) -> Result<(), DropReason> {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_conns {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(DropReason::CtFull);
        }
        let own = self.zone_limit[zone as usize].load(Ordering::Relaxed);
        let limit = if own != 0 {
            own
        } else {
            self.cfg.default_zone_limit
        };
        let zc = &self.zone_count[zone as usize];
        if zc.fetch_add(1, Ordering::Relaxed) >= limit && limit != 0 {
            zc.fetch_sub(1, Ordering::Relaxed);
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(DropReason::CtZoneFull);
        }
        Ok(())
    }

    /// Undoes [`ConnTrack::reserve`] when an entry goes away.
    fn release(&self, zone: u16) {
        self.zone_count[zone as usize].fetch_sub(1, Ordering::Relaxed);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Removes connections that timed out by `now_ms`, looking at no more
    /// than `budget` entries (each entry looked at counts, expired or not;
    /// every shard's lists are visited in turn, starting from a shard that
    /// rotates between calls). Returns how many were removed.
    ///
    /// Each shard is locked once for both families. NATed entries whose
    /// reply is an alias in another shard are noted in small on-stack
    /// batches and their aliases removed after the lock is dropped, since
    /// only one shard lock is ever held here.
    pub fn expire(&self, now_ms: u64, budget: usize) -> usize {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut budget = budget;
        let mut removed = 0;
        let mut gone4 = [Gone::<[u8; 4]>::default(); EXPIRE_BATCH];
        let mut gone6 = [Gone::<[u8; 16]>::default(); EXPIRE_BATCH];
        for k in 0..SHARDS {
            if budget == 0 {
                break;
            }
            let s = (start + k) % SHARDS;
            removed += self.expire_shard(s, now_ms, &mut budget, &mut gone4, &mut gone6);
        }
        removed
    }

    fn expire_shard(
        &self,
        s: usize,
        now: u64,
        budget: &mut usize,
        gone4: &mut [Gone<[u8; 4]>; EXPIRE_BATCH],
        gone6: &mut [Gone<[u8; 16]>; EXPIRE_BATCH],
    ) -> usize {
        let mut removed = 0;
        loop {
            let mut g = self.lock(s);
            let (r4, n4) = self.expire_table(&mut g.v4, now, budget, gone4);
            let (r6, n6) = if n4 < EXPIRE_BATCH {
                self.expire_table(&mut g.v6, now, budget, gone6)
            } else {
                (0, 0)
            };
            drop(g);
            removed += r4 + r6;
            for x in &gone4[..n4] {
                self.remove_alias::<[u8; 4]>(s, x);
            }
            for x in &gone6[..n6] {
                self.remove_alias::<[u8; 16]>(s, x);
            }
            if n4 < EXPIRE_BATCH && n6 < EXPIRE_BATCH {
                return removed;
            }
        }
    }

    /// Expires entries of one locked table; returns how many were removed
    /// and how many of them left an alias to remove, noted in `gone`.
    fn expire_table<A: Family>(
        &self,
        t: &mut Table<A>,
        now: u64,
        budget: &mut usize,
        gone: &mut [Gone<A>; EXPIRE_BATCH],
    ) -> (usize, usize) {
        let mut n = 0;
        let removed = t.expire(now, budget, |idx, c| {
            self.release(c.zone);
            if c.flags & table::F_REMOTE != 0 {
                gone[n] = Gone::of(idx, c);
                n += 1;
            }
            n < EXPIRE_BATCH
        });
        (removed, n)
    }

    /// Removes the alias of a NATed connection that lived in shard `home`.
    /// Called without any lock held.
    fn remove_alias<A: Family>(&self, home: usize, x: &Gone<A>) {
        let h = x.reply.hash(x.zone, x.proto, self.cfg.seed);
        let mut g = self.lock(Self::shard_of(h));
        let t = A::table(&mut g);
        if let Some(table::Found::Alias(ai)) = t.find(h, x.zone, x.proto, &x.reply) {
            let a = t.alias(ai);
            if a.home_shard as usize == home && a.home_idx == x.idx && a.home_gen == x.gen {
                t.remove_alias(ai, h);
            }
        }
    }
}

/// Entries expired per lock hold, at most, when their aliases must be
/// removed afterwards under other shards' locks.
const EXPIRE_BATCH: usize = 16;

/// What removing a NATed entry's alias needs to know of the entry.
#[derive(Clone, Copy, Default)]
pub(crate) struct Gone<A> {
    reply: types::Tuple<A>,
    idx: u32,
    gen: u16,
    zone: u16,
    proto: u8,
}

impl<A: Family> Gone<A> {
    /// Entry `c`, removed from slot `idx`.
    pub(crate) fn of(idx: u32, c: &table::Conn<A>) -> Gone<A> {
        Gone {
            reply: c.reply(),
            idx,
            gen: c.gen,
            zone: c.zone,
            proto: c.proto,
        }
    }
}
