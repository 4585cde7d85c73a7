//! AF_XDP rings: single-producer, single-consumer queues of descriptors that
//! user space shares with the kernel through a mapping.
//!
//! A ring is a power-of-two array of descriptors plus two free-running u32
//! indices, `producer` and `consumer`, and a `flags` word. Slots
//! `consumer..producer` (mod 2^32) hold entries; the rest belong to the
//! producer. The kernel's side uses `smp_load_acquire`/`smp_store_release`,
//! so ours does the same:
//!
//! * the producer reads `consumer` with Acquire before overwriting slots the
//!   consumer released (its reads happen before our writes), and publishes
//!   entries by storing `producer` with Release (our writes happen before
//!   its reads);
//! * the consumer reads `producer` with Acquire before reading entries and
//!   hands slots back by storing `consumer` with Release.
//!
//! Both halves cache the other side's index and touch it only when the
//! cached view cannot satisfy a request, so a batch costs two atomic
//! operations, not two per descriptor.
//!
//! The API has two steps on each side, after s2n-quic-xdp: a producer
//! [`Producer::reserve`]s slots, [`Producer::write`]s them and
//! [`Producer::submit`]s some or all; a consumer [`Consumer::peek`]s,
//! [`Consumer::read`]s and [`Consumer::release`]s. The same types run over
//! the kernel's rings and, in the tests below, over rings laid out in
//! anonymous memory with both halves in user space (test doubles), so the
//! index arithmetic is tested without a kernel, including wrap-around of
//! the u32 indices and two threads racing.
//!
//! Invariants: the constructor checks the layout against the mapping, so
//! every pointer the ring forms is in bounds and aligned; a ring never
//! hands out a slot outside its reservation or peek.

use super::sys::{Mmap, Pod, XdpRingOffset, XDP_RING_NEED_WAKEUP};
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The raw parts of a ring: validated pointers into a mapping it keeps
/// alive.
struct RawRing<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    size: u32,
    mask: u32,
    _map: Arc<Mmap>,
}

impl<T> RawRing<T> {
    fn new(map: Arc<Mmap>, off: &XdpRingOffset, size: u32) -> io::Result<RawRing<T>> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "ring layout: {what} (size {size}, offsets {off:?}, mapping {} bytes)",
                    map.len()
                ),
            )
        };
        if size == 0 || !size.is_power_of_two() {
            return Err(bad("size is not a power of two"));
        }
        let len = map.len() as u64;
        for (name, o) in [
            ("producer", off.producer),
            ("consumer", off.consumer),
            ("flags", off.flags),
        ] {
            if o % 4 != 0 || o + 4 > len {
                return Err(bad(name));
            }
        }
        let desc_end = off.desc + size as u64 * size_of::<T>() as u64;
        if off.desc % align_of::<T>() as u64 != 0 || desc_end > len {
            return Err(bad("descriptor array"));
        }
        let base = map.as_ptr();
        // SAFETY: each of the four offsets was checked above to lie inside
        // the mapping with room for its field, so the results stay in bounds
        // of one allocation.
        let (producer, consumer, flags, descs) = unsafe {
            (
                base.add(off.producer as usize) as *const AtomicU32,
                base.add(off.consumer as usize) as *const AtomicU32,
                base.add(off.flags as usize) as *const AtomicU32,
                base.add(off.desc as usize) as *mut T,
            )
        };
        Ok(RawRing {
            producer,
            consumer,
            flags,
            descs,
            size,
            mask: size - 1,
            _map: map,
        })
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned (checked in `new`), the mapping
        // lives as long as `self` (`_map`), and AtomicU32 has u32's layout;
        // the other side only touches the word atomically.
        unsafe { &*self.producer }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    #[inline]
    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }
    }

    #[inline]
    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask < size` and the array of `size` descriptors
        // was checked to fit in the mapping.
        unsafe { self.descs.add((idx & self.mask) as usize) }
    }
}

/// The producing half of a ring (fill and TX rings, for user space).
pub struct Producer<T> {
    raw: RawRing<T>,
    /// Our producer index (published or not).
    cached_prod: u32,
    /// The consumer index last read, plus the ring size: the first index we
    /// may not write.
    cached_limit: u32,
    /// Slots reserved and not yet submitted.
    reserved: u32,
}

// SAFETY: the producer is the only user-space writer of its ring; its raw
// pointers point into a mapping it co-owns through an Arc, and nothing about
// them is tied to the creating thread.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T: Pod> Producer<T> {
    /// The producer of the ring laid out at `off` in `map` with `size`
    /// slots. The layout is checked against the mapping.
    ///
    /// # Safety
    /// No other `Producer` may exist for this ring (two would write the
    /// same slots), and the consumer, kernel or test double, must follow
    /// the ring protocol: read only published slots, release them by
    /// storing `consumer` with Release.
    pub unsafe fn new(map: Arc<Mmap>, off: &XdpRingOffset, size: u32) -> io::Result<Producer<T>> {
        let raw = RawRing::new(map, off, size)?;
        let cached_prod = raw.producer().load(Ordering::Relaxed);
        let cached_limit = raw.consumer().load(Ordering::Acquire).wrapping_add(size);
        Ok(Producer {
            raw,
            cached_prod,
            cached_limit,
            reserved: 0,
        })
    }

    /// Reserves up to `want` slots (counting those already reserved) and
    /// returns how many are reserved now. Reads the consumer index only when
    /// the cached view is short.
    #[inline]
    pub fn reserve(&mut self, want: u32) -> u32 {
        let mut free = self.cached_limit.wrapping_sub(self.cached_prod);
        if free < want {
            self.cached_limit = self
                .raw
                .consumer()
                .load(Ordering::Acquire)
                .wrapping_add(self.raw.size);
            free = self.cached_limit.wrapping_sub(self.cached_prod);
        }
        self.reserved = want.min(free);
        self.reserved
    }

    /// Writes the `i`-th reserved slot.
    ///
    /// # Panics
    /// If `i` is outside the reservation.
    #[inline]
    pub fn write(&mut self, i: u32, v: T) {
        assert!(
            i < self.reserved,
            "ring slot {i} outside reservation of {}",
            self.reserved
        );
        let p = self.raw.slot(self.cached_prod.wrapping_add(i));
        // SAFETY: the slot is in bounds (`slot`), and it lies in
        // `cached_prod..cached_limit`, which the consumer has released and
        // will not read until we publish it (the contract of `new`: one
        // producer, a consumer that follows the protocol).
        unsafe { p.write(v) }
    }

    /// Publishes the first `n` reserved slots to the consumer.
    ///
    /// # Panics
    /// If `n` exceeds the reservation.
    #[inline]
    pub fn submit(&mut self, n: u32) {
        assert!(
            n <= self.reserved,
            "submit {n} of {} reserved",
            self.reserved
        );
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.reserved -= n;
        self.raw
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries published and not yet consumed.
    #[inline]
    pub fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }

    /// Whether the consumer (the kernel) asked to be woken up.
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.raw.flags().load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.raw.size
    }
}

/// The consuming half of a ring (RX and completion rings, for user space).
pub struct Consumer<T> {
    raw: RawRing<T>,
    /// The producer index last read.
    cached_prod: u32,
    /// Our consumer index (released or not).
    cached_cons: u32,
    /// Entries peeked and not yet released.
    peeked: u32,
}

// SAFETY: as for Producer: the only user-space reader of its ring, with
// pointers into a co-owned mapping and no thread affinity.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T: Pod> Consumer<T> {
    /// The consumer of the ring laid out at `off` in `map` with `size`
    /// slots. The layout is checked against the mapping.
    ///
    /// # Safety
    /// No other `Consumer` may exist for this ring, and the producer,
    /// kernel or test double, must follow the ring protocol: write only
    /// slots the consumer released, publish them by storing `producer` with
    /// Release.
    pub unsafe fn new(map: Arc<Mmap>, off: &XdpRingOffset, size: u32) -> io::Result<Consumer<T>> {
        let raw = RawRing::new(map, off, size)?;
        let cached_cons = raw.consumer().load(Ordering::Relaxed);
        let cached_prod = raw.producer().load(Ordering::Acquire);
        Ok(Consumer {
            raw,
            cached_prod,
            cached_cons,
            peeked: 0,
        })
    }

    /// Makes up to `max` entries readable and returns how many. Reads the
    /// producer index only when fewer than `max` are known.
    #[inline]
    pub fn peek(&mut self, max: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail < max {
            self.cached_prod = self.raw.producer().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        self.peeked = avail.min(max);
        self.peeked
    }

    /// The `i`-th peeked entry.
    ///
    /// # Panics
    /// If `i` is outside the peeked range.
    #[inline]
    pub fn read(&self, i: u32) -> T {
        assert!(
            i < self.peeked,
            "ring entry {i} outside peek of {}",
            self.peeked
        );
        let p = self.raw.slot(self.cached_cons.wrapping_add(i));
        // SAFETY: the slot is in bounds (`slot`) and lies in
        // `cached_cons..cached_prod`: the producer published it (Acquire
        // load in `peek`) and will not overwrite it until we release it;
        // `T: Pod` is valid for whatever bytes the kernel wrote.
        unsafe { p.read() }
    }

    /// Hands the first `n` peeked entries back to the producer.
    ///
    /// # Panics
    /// If `n` exceeds the peeked range.
    #[inline]
    pub fn release(&mut self, n: u32) {
        assert!(n <= self.peeked, "release {n} of {} peeked", self.peeked);
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.peeked -= n;
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }

    /// Slots in the ring.
    pub fn size(&self) -> u32 {
        self.raw.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::afxdp::sys::XdpDesc;

    /// A ring laid out like the kernel's (indices on separate cache lines,
    /// then the descriptors) in anonymous memory, with the producer and
    /// consumer indices starting at `start`.
    fn double<T: Pod>(size: u32, start: u32) -> (Producer<T>, Consumer<T>) {
        let off = XdpRingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let len = 192 + size as usize * size_of::<T>();
        let map = Arc::new(Mmap::anonymous(len).expect("mmap"));
        for o in [off.producer, off.consumer] {
            // SAFETY: the offsets are inside the fresh mapping, 4-aligned,
            // and no ring exists yet.
            unsafe { (map.as_ptr().add(o as usize) as *mut u32).write(start) };
        }
        // SAFETY: one producer and one consumer over fresh memory, both
        // this module's, which follow the protocol.
        unsafe {
            (
                Producer::new(map.clone(), &off, size).expect("producer"),
                Consumer::new(map, &off, size).expect("consumer"),
            )
        }
    }

    #[test]
    fn empty_ring_has_nothing_to_peek() {
        let (p, mut c) = double::<u64>(8, 0);
        assert_eq!(c.peek(32), 0);
        assert_eq!(p.outstanding(), 0);
        assert!(!p.needs_wakeup());
    }

    #[test]
    fn fills_to_size_then_refuses_until_released() {
        let (mut p, mut c) = double::<u64>(8, 0);
        assert_eq!(p.reserve(32), 8, "no more than the ring holds");
        for i in 0..8 {
            p.write(i, 100 + i as u64);
        }
        p.submit(8);
        assert_eq!(p.outstanding(), 8);
        assert_eq!(p.reserve(1), 0, "full");
        assert_eq!(c.peek(3), 3);
        assert_eq!((c.read(0), c.read(2)), (100, 102));
        c.release(3);
        assert_eq!(p.outstanding(), 5);
        assert_eq!(p.reserve(8), 3, "exactly what the consumer released");
        assert_eq!(c.peek(32), 5);
        assert_eq!(c.read(4), 107);
    }

    #[test]
    fn partial_submit_publishes_only_the_prefix() {
        let (mut p, mut c) = double::<XdpDesc>(16, 0);
        assert_eq!(p.reserve(4), 4);
        for i in 0..4 {
            p.write(
                i,
                XdpDesc {
                    addr: i as u64 * 4096,
                    len: 60,
                    options: 0,
                },
            );
        }
        p.submit(2);
        assert_eq!(c.peek(16), 2);
        assert_eq!(c.read(1).addr, 4096);
        c.release(2);
        // The unsubmitted reservation is still ours: reserve again and the
        // slots after the published ones are handed out.
        assert_eq!(p.reserve(1), 1);
        p.write(
            0,
            XdpDesc {
                addr: 9 * 4096,
                len: 1,
                options: 0,
            },
        );
        p.submit(1);
        assert_eq!(c.peek(16), 1);
        assert_eq!(c.read(0).addr, 9 * 4096);
    }

    #[test]
    fn indices_wrap_around_u32() {
        let (mut p, mut c) = double::<u64>(4, u32::MAX - 5);
        let mut next = 0u64;
        let mut expect = 0u64;
        for _ in 0..20 {
            let n = p.reserve(3);
            for i in 0..n {
                p.write(i, next);
                next += 1;
            }
            p.submit(n);
            let m = c.peek(2);
            for i in 0..m {
                assert_eq!(c.read(i), expect);
                expect += 1;
            }
            c.release(m);
        }
        let m = c.peek(4);
        for i in 0..m {
            assert_eq!(c.read(i), expect);
            expect += 1;
        }
        c.release(m);
        assert_eq!(expect, next, "everything produced was consumed, in order");
        assert_eq!(p.outstanding(), 0);
    }

    #[test]
    fn wakeup_flag_is_read_from_the_flags_word() {
        let off = XdpRingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let map = Arc::new(Mmap::anonymous(4096).expect("mmap"));
        // SAFETY: the only ring over this memory; nothing consumes.
        let p = unsafe { Producer::<u64>::new(map.clone(), &off, 8) }.expect("producer");
        assert!(!p.needs_wakeup());
        // SAFETY: offset 128 is inside the mapping and 4-aligned; the ring
        // reads the word atomically, this test is the only writer.
        unsafe { (*(map.as_ptr().add(128) as *const AtomicU32)).store(1, Ordering::Relaxed) };
        assert!(p.needs_wakeup());
    }

    #[test]
    fn bad_layouts_are_refused() {
        let map = Arc::new(Mmap::anonymous(4096).expect("mmap"));
        let ok = XdpRingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let odd = XdpRingOffset { desc: 196, ..ok };
        let out = XdpRingOffset { flags: 4096, ..ok };
        // SAFETY: every construction is refused, so no ring ever exists.
        unsafe {
            let p = |off, size| Producer::<u64>::new(map.clone(), off, size).is_err();
            let c = |off, size| Consumer::<u64>::new(map.clone(), off, size).is_err();
            assert!(p(&ok, 6), "not a power of two");
            assert!(p(&ok, 1024), "past the mapping");
            assert!(c(&odd, 8), "misaligned descriptors");
            assert!(c(&out, 8), "flags outside");
        }
    }

    #[test]
    #[should_panic(expected = "outside reservation")]
    fn writing_past_the_reservation_panics() {
        let (mut p, _c) = double::<u64>(8, 0);
        p.reserve(2);
        p.write(2, 0);
    }

    #[test]
    #[should_panic(expected = "release 2 of 1 peeked")]
    fn releasing_more_than_peeked_panics() {
        let (mut p, mut c) = double::<u64>(8, 0);
        p.reserve(1);
        p.write(0, 1);
        p.submit(1);
        c.peek(8);
        c.release(2);
    }

    #[test]
    fn two_threads_pass_a_sequence_through_a_small_ring() {
        const N: u64 = 200_000;
        let (mut p, mut c) = double::<u64>(8, u32::MAX - 1000);
        let t = std::thread::spawn(move || {
            let mut next = 0;
            while next < N {
                let n = p.reserve(5).min((N - next) as u32);
                for i in 0..n {
                    p.write(i, next);
                    next += 1;
                }
                p.submit(n);
            }
        });
        let mut expect = 0;
        while expect < N {
            let n = c.peek(3);
            for i in 0..n {
                assert_eq!(c.read(i), expect);
                expect += 1;
            }
            c.release(n);
        }
        t.join().expect("producer thread");
    }
}
