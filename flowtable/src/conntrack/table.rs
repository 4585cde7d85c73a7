//! One shard's storage for one address family: a slab of entries, a hash
//! index over both directions' tuples, and the per-class expiry lists.
//!
//! The index stores only a `u32` per key (slab position and key kind), and
//! compares against the tuples in the slab. A connection without NAT has
//! one index slot: the shard hash is the same for a tuple and its reverse
//! ([`Tuple::hash`]), so the probe for a reply lands on the original
//! tuple's slot and the comparison tries both directions. A NATed
//! connection has a second slot (here or, as an alias, in another shard)
//! for its reply tuple, which differs from the reversed original only on
//! the translated side, so the entry stores just that side's address and
//! port. Labels, rarely set, live in a side slab so that an entry without
//! one does not carry 16 bytes of zeros. Expiry lists are intrusive (`prev` and
//! `next` slab positions inside each entry), so refreshing an entry is O(1)
//! and allocates nothing. Freed slots are reused through a free list; a
//! generation number tells a stale reference (a NAT alias in another shard)
//! from the slot's new occupant.

use super::index::Index;
use super::tcp::Peer;
use super::timeout::{TimeoutClass, Timeouts};
use super::types::{CtAddr, Tuple};

/// Entries per slab chunk. Chunks never grow or move, so a full slab
/// wastes at most one partly used chunk instead of a doubling `Vec`'s
/// spare half.
const CHUNK: usize = 1024;

/// A vector of `T` stored in fixed-size chunks.
pub(crate) struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, v: T) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].push(v);
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
            + self.chunks.len() * CHUNK * std::mem::size_of::<T>()
    }
}

impl<T> std::ops::Index<usize> for Slab<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Slab<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// "No slot" in lists and links.
pub(crate) const NIL: u32 = u32::MAX;
/// `class` of a free slot.
const FREE: u8 = 0xf;
/// A class and a lag share [`Conn::sched`]: the class in the top four bits.
const CLASS_SHIFT: u16 = 12;
const LAG_MASK: u16 = (1 << CLASS_SHIFT) - 1;
const _: () = assert!((TimeoutClass::COUNT as u8) < FREE);
const _: () = assert!(REQUEUE_MS <= LAG_MASK as u64);

/// How far a refreshed deadline may run ahead of an entry's list position
/// before the entry is moved to its list's tail.
pub(crate) const REQUEUE_MS: u64 = 1000;

/// Entry flag: the source was translated.
pub(crate) const F_SNAT: u8 = 0x01;
/// Entry flag: the destination was translated.
pub(crate) const F_DNAT: u8 = 0x02;
/// Entry flag: the reply tuple is indexed in another shard, as an alias.
pub(crate) const F_REMOTE: u8 = 0x04;
/// Entry flag: a reply-direction packet has been seen (UDP, ICMP).
pub(crate) const F_SEEN_REPLY: u8 = 0x08;

/// Index kinds, in the low two bits of an index value.
const K_ORIG: u32 = 0;
const K_REPLY: u32 = 1;
const K_ALIAS: u32 = 2;

/// A tracked connection. For IPv4 this is 80 bytes, for IPv6 112.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn<A> {
    pub orig: Tuple<A>,
    /// With [`F_SNAT`], the reply's destination address; with [`F_DNAT`],
    /// its source address; unused without NAT (see [`Conn::reply`]).
    nat_addr: A,
    /// The port (ICMP echo: identifier) translated along with `nat_addr`.
    nat_port: u16,
    /// With [`F_DNAT`], the reply's destination port: the original source
    /// port, unless the reply tuple was taken and NAT moved it.
    nat_sport: u16,
    pub zone: u16,
    pub tcp: [Peer; 2],
    pub expires: u64,
    pub mark: u32,
    /// Slot of the label in the table's label slab, or [`NIL`] for zero.
    label: u32,
    prev: u32,
    next: u32,
    pub gen: u16,
    /// The timeout class whose list holds the entry ([`FREE`] if none), and
    /// how far `expires` is past the deadline it was queued with (see
    /// [`Table::refresh`]), in one word to keep IPv6 entries at 112 bytes.
    sched: u16,
    pub proto: u8,
    pub flags: u8,
}

impl<A: CtAddr> Conn<A> {
    /// A fresh entry for `orig`, its reply the reverse (not yet in any
    /// list). Set NAT flags and then [`Conn::set_reply`] for NAT.
    pub fn new(zone: u16, proto: u8, orig: Tuple<A>) -> Conn<A> {
        Conn {
            orig,
            nat_addr: A::default(),
            nat_port: 0,
            nat_sport: orig.sport,
            zone,
            tcp: [Peer::default(); 2],
            expires: 0,
            mark: 0,
            label: NIL,
            prev: NIL,
            next: NIL,
            gen: 0,
            sched: (FREE as u16) << CLASS_SHIFT,
            proto,
            flags: 0,
        }
    }

    fn class(&self) -> u8 {
        (self.sched >> CLASS_SHIFT) as u8
    }

    fn lag(&self) -> u16 {
        self.sched & LAG_MASK
    }

    fn set_sched(&mut self, class: u8, lag: u16) {
        debug_assert!(class <= FREE && lag <= LAG_MASK);
        self.sched = (class as u16) << CLASS_SHIFT | lag;
    }

    /// Whether the connection is NATed (and so has a reply key of its own).
    pub fn is_nat(&self) -> bool {
        self.flags & (F_SNAT | F_DNAT) != 0
    }

    /// The reply tuple: the reversed original with the translated side
    /// replaced. ICMP echo carries its identifier in both "ports", so both
    /// take the translated one.
    pub fn reply(&self) -> Tuple<A> {
        let mut r = self.orig.reverse();
        if self.flags & F_DNAT != 0 {
            r.src = self.nat_addr;
            r.sport = self.nat_port;
            r.dport = if is_echo(self.proto) {
                self.nat_port
            } else {
                self.nat_sport
            };
        } else if self.flags & F_SNAT != 0 {
            r.dst = self.nat_addr;
            r.dport = self.nat_port;
            if is_echo(self.proto) {
                r.sport = self.nat_port;
            }
        }
        r
    }

    /// Stores reply tuple `r` of a connection whose NAT flag is set; `r`
    /// must differ from the reversed original only on the translated side.
    pub fn set_reply(&mut self, r: Tuple<A>) {
        if self.flags & F_DNAT != 0 {
            (self.nat_addr, self.nat_port, self.nat_sport) = (r.src, r.sport, r.dport);
        } else {
            (self.nat_addr, self.nat_port) = (r.dst, r.dport);
        }
        debug_assert!(self.reply() == r);
    }
}

/// ICMP and ICMPv6: the only protocols whose two "ports" are one number.
fn is_echo(proto: u8) -> bool {
    proto == super::types::proto::ICMP || proto == super::types::proto::ICMPV6
}

/// The reply key of a NATed connection whose entry lives in another shard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Alias<A> {
    pub tuple: Tuple<A>,
    pub home_idx: u32,
    pub home_gen: u16,
    pub home_shard: u16,
    pub zone: u16,
    pub proto: u8,
}

/// What a key lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// An entry here; `reply` says which of its tuples matched.
    Conn { idx: u32, reply: bool },
    /// An alias to an entry in another shard.
    Alias(u32),
}

/// Head and tail of one expiry list.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

/// One family's table within one shard.
pub(crate) struct Table<A> {
    conns: Slab<Conn<A>>,
    free: u32,
    aliases: Slab<Alias<A>>,
    alias_free: u32,
    index: Index,
    /// Labels of the entries that have one; a free slot holds the next
    /// free slot's position.
    labels: Slab<u128>,
    label_free: u32,
    lists: [List; TimeoutClass::COUNT],
    /// Bit `c` is set when list `c` is not empty, so that expiry, which
    /// visits every shard often, skips empty lists without reading them.
    busy: u16,
    seed: u64,
    /// Live entries.
    pub len: usize,
}

/// The hash of the key that index value `v` stands for.
fn key_hash<A: CtAddr>(conns: &Slab<Conn<A>>, aliases: &Slab<Alias<A>>, seed: u64, v: u32) -> u64 {
    let i = (v >> 2) as usize;
    match v & 3 {
        K_ORIG => conns[i].orig.hash(conns[i].zone, conns[i].proto, seed),
        K_REPLY => conns[i].reply().hash(conns[i].zone, conns[i].proto, seed),
        _ => aliases[i]
            .tuple
            .hash(aliases[i].zone, aliases[i].proto, seed),
    }
}

impl<A: CtAddr> Table<A> {
    /// An empty table hashing with `seed`.
    pub fn new(seed: u64) -> Table<A> {
        Table {
            conns: Slab::new(),
            free: NIL,
            aliases: Slab::new(),
            alias_free: NIL,
            index: Index::new(),
            labels: Slab::new(),
            label_free: NIL,
            lists: [List {
                head: NIL,
                tail: NIL,
            }; TimeoutClass::COUNT],
            busy: 0,
            seed,
            len: 0,
        }
    }

    /// Heap bytes held by this table (capacity, not just use).
    pub fn heap_bytes(&self) -> usize {
        self.conns.heap_bytes()
            + self.aliases.heap_bytes()
            + self.labels.heap_bytes()
            + self.index.allocation_size()
    }

    /// Looks up the key (`zone`, `proto`, `t`) whose hash is `h`.
    pub fn find(&self, h: u64, zone: u16, proto: u8, t: &Tuple<A>) -> Option<Found> {
        let (conns, aliases) = (&self.conns, &self.aliases);
        let v = self.index.find(h, |v| {
            let i = (v >> 2) as usize;
            match v & 3 {
                K_ORIG => {
                    // Without NAT this one slot stands for both directions.
                    let c = &conns[i];
                    c.zone == zone
                        && c.proto == proto
                        && (c.orig == *t || (!c.is_nat() && c.orig.reverse() == *t))
                }
                K_REPLY => {
                    let c = &conns[i];
                    c.zone == zone && c.proto == proto && c.reply() == *t
                }
                _ => {
                    let a = &aliases[i];
                    a.zone == zone && a.proto == proto && a.tuple == *t
                }
            }
        })?;
        let idx = v >> 2;
        Some(match v & 3 {
            K_ORIG => Found::Conn {
                idx,
                reply: conns[idx as usize].orig != *t,
            },
            K_REPLY => Found::Conn { idx, reply: true },
            _ => Found::Alias(idx),
        })
    }

    /// The label of entry `c` of this table.
    pub fn label(&self, c: &Conn<A>) -> u128 {
        match c.label {
            NIL => 0,
            l => self.labels[l as usize],
        }
    }

    /// Sets entry `idx`'s label, taking or freeing a label slot.
    pub fn set_label(&mut self, idx: u32, v: u128) {
        let cur = self.conns[idx as usize].label;
        if cur != NIL {
            if v != 0 {
                self.labels[cur as usize] = v;
            } else {
                self.free_label(idx);
            }
            return;
        }
        if v == 0 {
            return;
        }
        let l = if self.label_free != NIL {
            let l = self.label_free;
            self.label_free = self.labels[l as usize] as u32;
            self.labels[l as usize] = v;
            l
        } else {
            self.labels.push(v);
            (self.labels.len() - 1) as u32
        };
        self.conns[idx as usize].label = l;
    }

    fn free_label(&mut self, idx: u32) {
        let l = self.conns[idx as usize].label;
        if l != NIL {
            self.labels[l as usize] = self.label_free as u128;
            self.label_free = l;
            self.conns[idx as usize].label = NIL;
        }
    }

    /// The alias at `i`.
    pub fn alias(&self, i: u32) -> &Alias<A> {
        &self.aliases[i as usize]
    }

    /// Entry `idx`.
    pub fn conn(&self, idx: u32) -> &Conn<A> {
        &self.conns[idx as usize]
    }

    /// Entry `idx`, to update.
    pub fn conn_mut(&mut self, idx: u32) -> &mut Conn<A> {
        &mut self.conns[idx as usize]
    }

    /// Indexes `v`, whose key hashes to `h` (the caller has it at hand;
    /// only a growing index recomputes hashes, from the slab).
    fn index_insert(&mut self, v: u32, h: u64) {
        debug_assert_eq!(h, key_hash(&self.conns, &self.aliases, self.seed, v));
        let seed = self.seed;
        let (conns, aliases) = (&self.conns, &self.aliases);
        self.index
            .insert(h, v, |w| key_hash(conns, aliases, seed, w));
    }

    fn index_remove(&mut self, v: u32, h: u64) {
        self.index.remove(h, v);
    }

    /// Whether entry `c` has a reply slot of its own in this table: NATed,
    /// and the reply tuple not indexed as an alias elsewhere.
    fn has_reply_slot(c: &Conn<A>) -> bool {
        c.is_nat() && c.flags & F_REMOTE == 0
    }

    /// Stores `c` (which must carry no label yet), indexes its original
    /// tuple (and its reply tuple if NATed, unless [`F_REMOTE`] is set),
    /// and puts it on `class`'s list expiring at `expires`. Returns its
    /// slot.
    ///
    /// `h` is the hash of the original tuple, `hr` of the reply tuple (used
    /// only when the reply is indexed here).
    pub fn insert(
        &mut self,
        mut c: Conn<A>,
        class: TimeoutClass,
        expires: u64,
        h: u64,
        hr: u64,
    ) -> u32 {
        debug_assert!(c.label == NIL);
        c.label = NIL;
        let idx = if self.free != NIL {
            let i = self.free;
            self.free = self.conns[i as usize].next;
            c.gen = self.conns[i as usize].gen.wrapping_add(1);
            self.conns[i as usize] = c;
            i
        } else {
            self.conns.push(c);
            (self.conns.len() - 1) as u32
        };
        self.index_insert(idx << 2 | K_ORIG, h);
        if Self::has_reply_slot(&c) {
            self.index_insert(idx << 2 | K_REPLY, hr);
        }
        self.conns[idx as usize].expires = expires;
        self.push_back(class, idx);
        self.len += 1;
        idx
    }

    /// Removes entry `idx` and returns a copy of it (without its label).
    pub fn remove(&mut self, idx: u32) -> Conn<A> {
        self.free_label(idx);
        let c = self.conns[idx as usize];
        self.index_remove(idx << 2 | K_ORIG, c.orig.hash(c.zone, c.proto, self.seed));
        if Self::has_reply_slot(&c) {
            let hr = c.reply().hash(c.zone, c.proto, self.seed);
            self.index_remove(idx << 2 | K_REPLY, hr);
        }
        self.unlink(idx);
        let slot = &mut self.conns[idx as usize];
        slot.set_sched(FREE, 0);
        slot.next = self.free;
        slot.gen = slot.gen.wrapping_add(1);
        self.free = idx;
        self.len -= 1;
        c
    }

    /// Indexes an alias for a connection living in `home_shard`.
    /// `h` is the hash of its tuple.
    pub fn insert_alias(&mut self, a: Alias<A>, h: u64) {
        let i = if self.alias_free != NIL {
            let i = self.alias_free;
            self.alias_free = self.aliases[i as usize].home_idx;
            self.aliases[i as usize] = a;
            i
        } else {
            self.aliases.push(a);
            (self.aliases.len() - 1) as u32
        };
        self.index_insert(i << 2 | K_ALIAS, h);
    }

    /// Removes alias `i`, whose tuple hashes to `h`.
    pub fn remove_alias(&mut self, i: u32, h: u64) {
        self.index_remove(i << 2 | K_ALIAS, h);
        let a = &mut self.aliases[i as usize];
        a.home_idx = self.alias_free;
        a.home_gen = u16::MAX;
        self.alias_free = i;
    }

    /// Gives entry `idx` a new expiry in `class`.
    ///
    /// Moving the entry to its list's tail on every packet would touch two
    /// more entries (its neighbours) per packet, each a likely cache miss
    /// in a big table. So while the class stays the same and the deadline
    /// moved less than [`REQUEUE_MS`] past the one the entry was queued
    /// with, only `expires` changes. Lists then stay sorted to within
    /// `REQUEUE_MS`: [`Table::expire`] may remove an entry up to that much
    /// after its deadline, and lookups, which check `expires` themselves,
    /// never see it alive late.
    pub fn refresh(&mut self, idx: u32, class: TimeoutClass, expires: u64) {
        let c = &mut self.conns[idx as usize];
        let queued = c.expires - c.lag() as u64;
        if c.class() == class as u8 && expires >= queued && expires - queued < REQUEUE_MS {
            c.set_sched(class as u8, (expires - queued) as u16);
            c.expires = expires;
            return;
        }
        self.unlink(idx);
        self.conns[idx as usize].expires = expires;
        self.push_back(class, idx);
    }

    /// Every live entry with its label, in slab order (for dumps).
    pub fn live(&self) -> impl Iterator<Item = (&Conn<A>, u128)> + '_ {
        self.live_slots().map(|i| {
            let c = &self.conns[i as usize];
            (c, self.label(c))
        })
    }

    /// The slots of every live entry, in slab order.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.conns.len() as u32).filter(|&i| self.is_live(i))
    }

    /// Whether slot `idx` holds a live entry.
    pub fn is_live(&self, idx: u32) -> bool {
        self.conns
            .get(idx as usize)
            .is_some_and(|c| c.class() != FREE)
    }

    fn push_back(&mut self, class: TimeoutClass, idx: u32) {
        let l = &mut self.lists[class as usize];
        let tail = l.tail;
        l.tail = idx;
        if tail == NIL {
            l.head = idx;
            self.busy |= 1 << class as u16;
        }
        if tail != NIL {
            self.conns[tail as usize].next = idx;
        }
        let c = &mut self.conns[idx as usize];
        c.prev = tail;
        c.next = NIL;
        c.set_sched(class as u8, 0);
    }

    fn unlink(&mut self, idx: u32) {
        let c = &self.conns[idx as usize];
        let (class, prev, next) = (c.class(), c.prev, c.next);
        if class == FREE {
            return;
        }
        let l = &mut self.lists[class as usize];
        if prev == NIL {
            l.head = next;
        } else {
            self.conns[prev as usize].next = next;
        }
        if next == NIL {
            l.tail = prev;
        } else {
            self.conns[next as usize].prev = prev;
        }
        if self.lists[class as usize].head == NIL {
            self.busy &= !(1 << class as u16);
        }
    }

    /// Removes expired entries from the heads of the lists, looking at no
    /// more than `*budget` entries (each look costs one, expired or not)
    /// and stopping early when `out` cannot take another removed entry.
    /// Removed entries are passed to `out`; returns how many were removed.
    pub fn expire(
        &mut self,
        now: u64,
        budget: &mut usize,
        mut out: impl FnMut(u32, &Conn<A>) -> bool,
    ) -> usize {
        let mut removed = 0;
        let mut busy = self.busy;
        while busy != 0 {
            let class = busy.trailing_zeros() as usize;
            busy &= busy - 1;
            while *budget > 0 {
                let head = self.lists[class].head;
                if head == NIL {
                    break;
                }
                *budget -= 1;
                if self.conns[head as usize].expires > now {
                    break;
                }
                let c = self.remove(head);
                removed += 1;
                if !out(head, &c) {
                    return removed;
                }
            }
        }
        removed
    }

    /// The default timeouts' expiry for `class` from `now`.
    pub fn deadline(t: &Timeouts, class: TimeoutClass, now: u64) -> u64 {
        now.saturating_add(t.get(class))
    }
}
