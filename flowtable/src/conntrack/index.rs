//! The hash index of one conntrack table: `u32` values (slab positions)
//! found by a 64-bit hash, the keys themselves living in the slab.
//!
//! A general-purpose table such as hashbrown keeps its tag bytes and its
//! values in two arrays, so a lookup that finds something, and every
//! removal, touches two cache lines of the index before it reaches the
//! entry. Conntrack's index is far bigger than the caches, and creating
//! and expiring connections is mostly waiting on memory, so here a
//! bucket is one 64-byte line holding twelve 8-bit signatures and their
//! twelve values: a probe costs one line. Collisions spill into the next
//! bucket (linear probing over buckets), and each bucket counts the values
//! that spilled past it, so a lookup stops at the first bucket whose count
//! is zero and a removal needs no tombstones (F14's scheme).
//!
//! The bucket count is not held to a power of two: the bucket is the low
//! 32 bits of the hash scaled to the count (a multiply and a shift), so
//! the index can grow by half instead of doubling, which keeps it between
//! 53 % and 80 % full instead of 40 % and 80 %: the bytes per connection
//! matter at millions of connections. The signature comes from the hash's
//! top 8 bits and conntrack takes the shard from bits 32-35, so the three
//! never overlap.

/// Slots per bucket: 12 × (1 + 4) bytes, plus the spill count, fill 62 of
/// the 64 bytes.
const SLOTS: usize = 12;

/// The signature of an empty slot; a real signature is never 0.
const EMPTY: u8 = 0;

/// The index grows by half when more than 4 in 5 slots would be used.
const LOAD_NUM: usize = 4;
const LOAD_DEN: usize = 5;

/// Buckets of a newly allocated index.
const MIN_BUCKETS: usize = 4;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    sig: [u8; SLOTS],
    val: [u32; SLOTS],
    /// Values whose probe passed through this bucket and went on to a
    /// later one. Saturates: once at `u16::MAX` it never comes down, which
    /// only makes lookups through it look one bucket further.
    spill: u16,
}

const EMPTY_BUCKET: Bucket = Bucket {
    sig: [EMPTY; SLOTS],
    val: [0; SLOTS],
    spill: 0,
};

fn sig_of(h: u64) -> u8 {
    ((h >> 56) as u8).max(1)
}

/// The home bucket of hash `h` among `n`: its low 32 bits scaled to `n`.
fn home(h: u64, n: usize) -> usize {
    ((h as u32 as u64 * n as u64) >> 32) as usize
}

/// The bucket after `b` among `n`, wrapping.
fn next(b: usize, n: usize) -> usize {
    if b + 1 == n {
        0
    } else {
        b + 1
    }
}

/// A hash index from 64-bit hashes to `u32` values; equal hashes may hold
/// several values, and the caller's `eq` tells them apart.
pub(crate) struct Index {
    buckets: Vec<Bucket>,
    len: usize,
}

impl Index {
    /// An empty index; it allocates on first insert.
    pub fn new() -> Index {
        Index {
            buckets: Vec::new(),
            len: 0,
        }
    }

    /// Values stored.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub fn allocation_size(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// The first value stored under hash `h` for which `eq` holds.
    #[inline]
    pub fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let sig = sig_of(h);
        let n = self.buckets.len();
        let mut b = home(h, n);
        for _ in 0..n {
            let bucket = &self.buckets[b];
            for s in 0..SLOTS {
                if bucket.sig[s] == sig && eq(bucket.val[s]) {
                    return Some(bucket.val[s]);
                }
            }
            if bucket.spill == 0 {
                return None;
            }
            b = next(b, n);
        }
        None
    }

    /// Stores `v` under hash `h`. Growing rehashes every value with
    /// `rehash`, which gives a stored value's hash back.
    pub fn insert(&mut self, h: u64, v: u32, rehash: impl Fn(u32) -> u64) {
        if (self.len + 1) * LOAD_DEN > self.buckets.len() * SLOTS * LOAD_NUM {
            self.grow(rehash);
        }
        Self::place(&mut self.buckets, h, v);
        self.len += 1;
    }

    /// Puts `v` in the first free slot of its probe sequence, counting a
    /// spill in every full bucket passed. There is always a free slot: the
    /// load limit keeps some free.
    fn place(buckets: &mut [Bucket], h: u64, v: u32) {
        let n = buckets.len();
        let mut b = home(h, n);
        loop {
            let bucket = &mut buckets[b];
            if let Some(s) = bucket.sig.iter().position(|&x| x == EMPTY) {
                bucket.sig[s] = sig_of(h);
                bucket.val[s] = v;
                return;
            }
            bucket.spill = bucket.spill.saturating_add(1);
            b = next(b, n);
        }
    }

    fn grow(&mut self, rehash: impl Fn(u32) -> u64) {
        let n = (self.buckets.len() * 3 / 2).max(MIN_BUCKETS);
        let mut fresh = vec![EMPTY_BUCKET; n];
        for bucket in &self.buckets {
            for s in 0..SLOTS {
                if bucket.sig[s] != EMPTY {
                    let v = bucket.val[s];
                    Self::place(&mut fresh, rehash(v), v);
                }
            }
        }
        self.buckets = fresh;
    }

    /// Removes value `v` stored under hash `h`; returns whether it was there.
    pub fn remove(&mut self, h: u64, v: u32) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let sig = sig_of(h);
        let n = self.buckets.len();
        let start = home(h, n);
        let mut b = start;
        for _ in 0..n {
            let bucket = &mut self.buckets[b];
            if let Some(s) = (0..SLOTS).find(|&s| bucket.sig[s] == sig && bucket.val[s] == v) {
                bucket.sig[s] = EMPTY;
                let mut p = start;
                while p != b {
                    let spill = &mut self.buckets[p].spill;
                    if *spill != u16::MAX {
                        *spill -= 1;
                    }
                    p = next(p, n);
                }
                self.len -= 1;
                return true;
            }
            if bucket.spill == 0 {
                return false;
            }
            b = next(b, n);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A hash whose low 32 bits (the bucket) take only `spread` values, to
    /// force long spill chains, and whose signature bits vary.
    fn crowded(v: u32, spread: u64) -> u64 {
        let low = (v as u64 % spread) << 20;
        low | (v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) & !0xffff_ffff
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
    }

    #[test]
    fn finds_what_was_inserted_and_not_what_was_removed() {
        let mut ix = Index::new();
        let h = |v: u32| crowded(v, 3);
        for v in 0..2000 {
            ix.insert(h(v), v, h);
        }
        assert_eq!(ix.len(), 2000);
        for v in 0..2000 {
            assert_eq!(ix.find(h(v), |w| w == v), Some(v), "value {v}");
        }
        for v in (0..2000).step_by(2) {
            assert!(ix.remove(h(v), v));
            assert!(!ix.remove(h(v), v), "removed twice: {v}");
        }
        for v in 0..2000 {
            let want = (v % 2 == 1).then_some(v);
            assert_eq!(ix.find(h(v), |w| w == v), want, "value {v}");
        }
        // Spill counts came back down: with every value gone, every
        // bucket's count is zero again.
        for v in (1..2000).step_by(2) {
            assert!(ix.remove(h(v), v));
        }
        assert_eq!(ix.len(), 0);
        assert!(ix.buckets.iter().all(|b| b.spill == 0));
    }

    #[test]
    fn equal_hashes_are_told_apart_by_eq() {
        let mut ix = Index::new();
        for v in 0..50 {
            ix.insert(7, v, |_| 7);
        }
        for v in 0..50 {
            assert_eq!(ix.find(7, |w| w == v), Some(v));
        }
        assert_eq!(ix.find(7, |w| w == 50), None);
    }

    /// Random inserts and removals against a std map, through growth and
    /// crowded buckets.
    #[test]
    fn agrees_with_a_map_under_churn() {
        let mut ix = Index::new();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        let h = |v: u32| crowded(v, 64);
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 20_000) as u32;
            if let std::collections::hash_map::Entry::Vacant(e) = model.entry(v) {
                e.insert(h(v));
                ix.insert(h(v), v, h);
            } else {
                model.remove(&v);
                assert!(ix.remove(h(v), v));
            }
        }
        assert_eq!(ix.len(), model.len());
        for v in 0..20_000 {
            assert_eq!(ix.find(h(v), |w| w == v).is_some(), model.contains_key(&v));
        }
    }
}
