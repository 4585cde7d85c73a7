//! Fragment tracking without reassembly: which L4 ports a fragmented
//! datagram has, learned from its first fragment and handed to its later
//! ones, which carry no L4 header.
//!
//! This is what Cilium's eBPF datapath does (its `cilium_ipv4_frag_datagrams`
//! map from source, destination, protocol and IP identification to the
//! ports), rather than what Open vSwitch's `ipf` module and the kernel do
//! (hold the fragments until the datagram is whole, then track it). Holding
//! fragments would mean buffering packets across batches in a pipeline that
//! owns no memory beyond its frame pool; remembering ports costs one small
//! entry per datagram and forwards every fragment at once. What it cannot
//! do: a later fragment that arrives before its first one (reordering on
//! the path) finds nothing and is `+inv`, counted as
//! [`FragStats::orphans`]; reassembly would have waited for it.
//!
//! The key is (zone, source, destination, protocol, identification), with
//! the addresses the packet has when it reaches the `ct` action: a first
//! fragment that a `ct(nat)` translates and a second `ct` sees again is
//! remembered under both its original and its translated addresses, so a
//! later fragment meeting the same actions finds its ports at each `ct`.
//!
//! Entries live [`FRAG_TIMEOUT_MS`] from their first fragment. The table is
//! set-associative: a key hashes to one bucket of [`WAYS`] slots in one of
//! [`super::SHARDS`] shards, each behind its own lock (only fragments take
//! it). A first fragment whose bucket holds [`WAYS`] live entries of other
//! datagrams replaces the one that expires soonest, counted as
//! [`FragStats::evicted`]: the newest datagram is the one whose fragments
//! are still coming, as in Cilium's LRU map. So the table never holds more
//! than its configured size, never allocates after creation, and needs no
//! sweep: an expired slot is simply free.

use super::types::{mix, FragmentL4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How long a first fragment's ports are remembered: 5 s.
///
/// A sender emits a datagram's fragments back to back, so they arrive
/// within microseconds to milliseconds of each other; the kernel holds an
/// incomplete datagram for 30 s (`ipfrag_time`) and RFC 791 suggests a
/// 15 s reassembly timer, bounds for a sender that might pause between
/// fragments, which ours do not need. A shorter life also narrows the
/// window in which a reused identification (IPv4 has 16 bits, which a busy
/// pair of hosts wraps within seconds) could pair a stray later fragment
/// with another datagram's ports; a new first fragment always replaces the
/// entry of its key, so only a lost first fragment exposes that.
pub const FRAG_TIMEOUT_MS: u64 = 5_000;

/// Slots per bucket.
pub const WAYS: usize = 4;

/// What identifies a fragmented datagram at one `ct` action. IPv4
/// addresses are stored IPv4-mapped (`v6` tells the families apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FragKey {
    pub src: u128,
    pub dst: u128,
    pub id: u32,
    pub zone: u16,
    pub proto: u8,
    pub v6: bool,
}

impl FragKey {
    fn hash(&self, seed: u64) -> u64 {
        let a = mix((self.src >> 64) as u64 ^ mix(self.src as u64 ^ seed));
        let b = mix((self.dst >> 64) as u64 ^ mix(self.dst as u64 ^ a));
        mix(b
            ^ (self.id as u64) << 32
            ^ (self.zone as u64) << 16
            ^ (self.proto as u64) << 8
            ^ self.v6 as u64)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: FragKey,
    l4: FragmentL4,
    /// 0: free (no live entry expires at time 0).
    expires: u64,
}

/// Counters of fragment tracking, for `pmd-stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragStats {
    /// First fragments whose ports were remembered (one per `ct` action
    /// they passed).
    pub first: u64,
    /// Later fragments given their first fragment's ports.
    pub later: u64,
    /// Later fragments whose first fragment was not seen, or seen more than
    /// [`FRAG_TIMEOUT_MS`] before (reordered, lost, or a table full enough
    /// to evict it): `+trk+inv`.
    pub orphans: u64,
    /// Live entries replaced because their bucket was full.
    pub evicted: u64,
}

/// A shard on its own cache lines.
#[repr(align(128))]
struct Padded(Mutex<Box<[Slot]>>);

/// The table: [`super::SHARDS`] shards of `buckets` buckets of [`WAYS`].
pub(crate) struct FragTable {
    shards: Box<[Padded]>,
    buckets: usize,
    seed: u64,
    first: AtomicU64,
    later: AtomicU64,
    orphans: AtomicU64,
    evicted: AtomicU64,
}

impl FragTable {
    /// A table of at most `max` entries (rounded to whole buckets, at least
    /// one per shard).
    pub fn new(max: usize, seed: u64) -> FragTable {
        // Buckets per shard: a power of two, rounded down so that the
        // table never exceeds `max` (unless `max` is below one bucket a
        // shard).
        let per_shard = (max / (super::SHARDS * WAYS)).max(1);
        let buckets = 1 << (usize::BITS - 1 - per_shard.leading_zeros());
        let shards = (0..super::SHARDS)
            .map(|_| Padded(Mutex::new(vec![Slot::default(); buckets * WAYS].into())))
            .collect();
        FragTable {
            shards,
            buckets,
            seed: mix(seed ^ 0x6672_6167),
            first: AtomicU64::new(0),
            later: AtomicU64::new(0),
            orphans: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Most entries the table holds.
    pub fn capacity(&self) -> usize {
        super::SHARDS * self.buckets * WAYS
    }

    fn bucket(&self, k: &FragKey) -> (std::sync::MutexGuard<'_, Box<[Slot]>>, usize) {
        let h = k.hash(self.seed);
        let s = (h >> 32) as usize & (super::SHARDS - 1);
        let b = (h as usize & (self.buckets - 1)) * WAYS;
        let g = self.shards[s].0.lock().unwrap_or_else(|e| e.into_inner());
        (g, b)
    }

    /// Remembers that the datagram `k` has L4 fields `l4`, from `now`.
    pub fn remember(&self, k: &FragKey, l4: FragmentL4, now: u64) {
        self.first.fetch_add(1, Ordering::Relaxed);
        let (mut g, b) = self.bucket(k);
        let ways = &mut g[b..b + WAYS];
        let live = |s: &Slot| s.expires > now;
        let at = ways
            .iter()
            .position(|s| live(s) && s.key == *k)
            .or_else(|| ways.iter().position(|s| !live(s)));
        let at = match at {
            Some(i) => i,
            None => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                (0..WAYS).min_by_key(|&i| ways[i].expires).unwrap_or(0)
            }
        };
        ways[at] = Slot {
            key: *k,
            l4,
            // At least 1, so that an entry made at time 0 is not free.
            expires: now.saturating_add(FRAG_TIMEOUT_MS).max(1),
        };
    }

    /// The L4 fields of datagram `k`, if its first fragment was remembered
    /// and has not expired; counted either way.
    pub fn find(&self, k: &FragKey, now: u64) -> Option<FragmentL4> {
        let (g, b) = self.bucket(k);
        let found = g[b..b + WAYS]
            .iter()
            .find(|s| s.expires > now && s.key == *k)
            .map(|s| s.l4);
        drop(g);
        let c = if found.is_some() {
            &self.later
        } else {
            &self.orphans
        };
        c.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Live entries (a scan of the whole table, for tests and dumps).
    pub fn len(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|p| {
                let g = p.0.lock().unwrap_or_else(|e| e.into_inner());
                g.iter().filter(|s| s.expires > now).count()
            })
            .sum()
    }

    /// The counters.
    pub fn stats(&self) -> FragStats {
        FragStats {
            first: self.first.load(Ordering::Relaxed),
            later: self.later.load(Ordering::Relaxed),
            orphans: self.orphans.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }
}
