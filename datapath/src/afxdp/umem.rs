//! The UMEM: the mapped memory a poll thread's frames live in, registered
//! with the kernel so AF_XDP sockets receive into it and transmit from it.
//!
//! One [`Umem`] backs one [`FramePool`](crate::buf::FramePool) (one per
//! poll thread). The region is anonymous, page-aligned and faulted in up
//! front; the kernel pins its pages when a socket registers it, so even a
//! region dropped while a socket still holds it stays valid kernel-side.
//!
//! Access is one frame at a time: [`Umem::slice`] and [`Umem::slice_mut`]
//! form a reference to the bytes asked for only, never to the whole region,
//! because the kernel may be writing other frames (those in a fill ring) at
//! the same moment. Which frames user space may touch is the frame
//! ownership protocol of `buf` and `port::xsk`: a frame in a fill or TX
//! ring belongs to the kernel until it comes back on RX or completion.
//!
//! [`UmemShared`] is the part the sockets of this UMEM share with the pool:
//! the list of bound sockets a new socket can share the UMEM with
//! (`XDP_SHARED_UMEM` needs a bound socket's fd), and the frames a closed
//! port hands back ("orphans"), which the pool takes in at its next
//! [`FramePool::reclaim`](crate::buf::FramePool::reclaim). A port cannot
//! free into the pool from its `Drop` (it has no pool there), hence the
//! hand-off.

use super::sys::{Mmap, XdpUmemReg};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Mapped frame memory.
pub struct Umem {
    map: Mmap,
    frame_size: usize,
    shared: Arc<UmemShared>,
}

/// State the pool and the sockets of one UMEM share.
#[derive(Debug, Default)]
pub struct UmemShared {
    id: u64,
    /// The region's registration, so that a socket can be registered and
    /// bound on another thread than the pool's (the control thread opens
    /// ports for the poll threads).
    reg: XdpUmemReg,
    /// Frames in the region.
    frames: usize,
    /// Bound sockets using this memory (added after bind, removed before
    /// close, under the lock, so a listed fd is always open and bound).
    sockets: Mutex<Vec<RawFd>>,
    /// Frames closed ports gave back.
    orphans: Mutex<Vec<u32>>,
    n_orphans: AtomicUsize,
    retired: AtomicU64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Umem {
    /// `frames` frames of `frame_size` bytes (a power of two, at least a
    /// page: the kernel's aligned-chunk mode).
    pub fn new(frames: usize, frame_size: usize) -> io::Result<Umem> {
        if !frame_size.is_power_of_two() || !(2048..=65536).contains(&frame_size) || frames == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let len = frames
            .checked_mul(frame_size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let map = Mmap::anonymous(len)?;
        let reg = XdpUmemReg {
            addr: map.as_ptr() as u64,
            len: map.len() as u64,
            chunk_size: frame_size as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        Ok(Umem {
            map,
            frame_size,
            shared: Arc::new(UmemShared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                reg,
                frames,
                ..UmemShared::default()
            }),
        })
    }

    /// `len` bytes from `start`.
    ///
    /// # Panics
    /// If the range leaves the region (like slice indexing).
    #[inline]
    pub(crate) fn slice(&self, start: usize, len: usize) -> &[u8] {
        self.check(start, len);
        // SAFETY: the range is inside the live mapping (checked), and by the
        // frame ownership protocol the kernel does not write a frame user
        // space holds, so nothing mutates these bytes while borrowed.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), len) }
    }

    /// `len` bytes from `start`, mutable.
    ///
    /// # Panics
    /// If the range leaves the region.
    #[inline]
    pub(crate) fn slice_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        self.check(start, len);
        // SAFETY: in bounds (checked); `&mut self` excludes other user-space
        // references, and the kernel does not touch frames user space holds.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(start), len) }
    }

    /// Copies `len` bytes from `src` to `dst` (ranges in different frames).
    ///
    /// # Panics
    /// If a range leaves the region or the two overlap.
    #[inline]
    pub(crate) fn copy(&mut self, src: usize, dst: usize, len: usize) {
        self.check(src, len);
        self.check(dst, len);
        assert!(
            src + len <= dst || dst + len <= src,
            "overlapping frame copy"
        );
        let base = self.map.as_ptr();
        // SAFETY: both ranges are inside the mapping and disjoint (checked),
        // and both frames belong to user space (ownership protocol).
        unsafe { std::ptr::copy_nonoverlapping(base.add(src), base.add(dst), len) }
    }

    #[inline]
    fn check(&self, start: usize, len: usize) {
        assert!(
            start <= self.map.len() && len <= self.map.len() - start,
            "range {start}+{len} outside UMEM of {} bytes",
            self.map.len()
        );
    }

    /// Bytes in the region.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region is empty (never: `new` refuses zero frames).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Frame size.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// The `XDP_UMEM_REG` argument for this region. Headroom 0: the kernel
    /// already leaves `XDP_PACKET_HEADROOM` (256 bytes, our
    /// [`HEADROOM`](crate::buf::HEADROOM)) before each received packet.
    pub fn registration(&self) -> XdpUmemReg {
        self.shared.reg
    }

    /// The state shared with this UMEM's sockets.
    pub fn shared(&self) -> &Arc<UmemShared> {
        &self.shared
    }
}

impl UmemShared {
    /// Identity of the UMEM (to catch a port used with another pool).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The `XDP_UMEM_REG` argument for the region (see
    /// [`Umem::registration`]). The region lives as long as its pool; a
    /// socket registered with it pins its pages, so it stays valid for the
    /// socket even if the pool goes first.
    pub fn registration(&self) -> XdpUmemReg {
        self.reg
    }

    /// Frames in the region.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frame size in bytes.
    pub fn frame_size(&self) -> usize {
        self.reg.chunk_size as usize
    }

    /// Runs `f` with a bound socket of this UMEM, if any, holding the list
    /// so that socket stays open and bound meanwhile.
    pub fn with_bound_socket<R>(&self, f: impl FnOnce(Option<RawFd>) -> R) -> R {
        let list = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        f(list.first().copied())
    }

    /// Lists a socket that is now bound to this UMEM.
    pub fn add_socket(&self, fd: RawFd) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fd);
    }

    /// Unlists a socket about to be closed.
    pub fn remove_socket(&self, fd: RawFd) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&s| s != fd);
    }

    /// Hands frames back from a closed socket.
    pub fn orphan(&self, frames: impl IntoIterator<Item = u32>) {
        let mut o = self.orphans.lock().unwrap_or_else(PoisonError::into_inner);
        o.extend(frames);
        self.n_orphans.store(o.len(), Ordering::Release);
    }

    /// Moves handed-back frames into `out`; returns how many. One relaxed
    /// load when there are none.
    #[inline]
    pub fn take_orphans(&self, out: &mut Vec<u32>) -> usize {
        if self.n_orphans.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut o = self.orphans.lock().unwrap_or_else(PoisonError::into_inner);
        let n = o.len();
        out.append(&mut o);
        self.n_orphans.store(0, Ordering::Release);
        n
    }

    /// Counts frames given up for good: a zero-copy driver may still write
    /// them after its socket closed (its teardown is deferred).
    pub fn retire(&self, n: u64) {
        self.retired.fetch_add(n, Ordering::Relaxed);
    }

    /// Frames retired so far.
    pub fn retired(&self) -> u64 {
        self.retired.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_separate_slices() {
        let mut u = Umem::new(4, 4096).expect("umem");
        assert_eq!(u.len(), 16384);
        u.slice_mut(4096 + 256, 4).copy_from_slice(&[1, 2, 3, 4]);
        u.copy(4096 + 256, 3 * 4096 + 256, 4);
        assert_eq!(u.slice(3 * 4096 + 256, 4), &[1, 2, 3, 4]);
        let r = u.registration();
        assert_eq!((r.len, r.chunk_size, r.headroom), (16384, 4096, 0));
        assert_eq!(r.addr % 4096, 0);
    }

    #[test]
    #[should_panic(expected = "outside UMEM")]
    fn out_of_range_panics() {
        let u = Umem::new(1, 4096).expect("umem");
        u.slice(4000, 97);
    }

    #[test]
    fn orphans_come_back_once() {
        let u = Umem::new(1, 4096).expect("umem");
        let mut out = Vec::new();
        assert_eq!(u.shared().take_orphans(&mut out), 0);
        u.shared().orphan([3, 5]);
        assert_eq!(u.shared().take_orphans(&mut out), 2);
        assert_eq!(u.shared().take_orphans(&mut out), 0);
        assert_eq!(out, vec![3, 5]);
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(Umem::new(0, 4096).is_err());
        assert!(Umem::new(4, 3000).is_err());
        assert!(Umem::new(usize::MAX, 4096).is_err());
    }
}
