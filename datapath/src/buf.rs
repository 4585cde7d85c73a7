//! Packet buffers: a pool of fixed-size frames, the same shape as an AF_XDP
//! UMEM, and the descriptor that names a packet inside it.
//!
//! Every port of a datapath draws from one pool, so forwarding a packet from
//! one port to another moves a descriptor, not bytes. Each frame keeps
//! headroom before the packet so that a VLAN tag (and later a tunnel header)
//! can be prepended by moving the Ethernet addresses, not the payload.
//!
//! The frames live either on the heap (tests, benches, AF_PACKET-only
//! datapaths: [`FramePool::new`]) or in an mmap'd AF_XDP UMEM
//! ([`FramePool::new_umem`]) that the poll thread's sockets share. The two
//! are a private enum behind the same accessors, so the pipeline does not
//! know which it runs on; each accessor forms a reference to the frame asked
//! for only, never to the whole UMEM, since the kernel may be writing other
//! frames meanwhile.
//!
//! Ownership: a frame is free (in the pool), held by user space (named by a
//! [`PacketDesc`] in a batch or queue) or lent to the kernel (in a fill or
//! TX ring, until it comes back on RX or completion). Only held frames may
//! be read or written. Debug builds check this: freeing a free frame, and
//! touching or freeing a frame lent to the kernel, panic.

use crate::afxdp::umem::UmemShared;
use crate::afxdp::{Umem, XskError};
use std::sync::Arc;

/// Default frame size (an AF_XDP frame; holds 3840-byte packets after headroom).
pub const FRAME_SIZE: usize = 4096;
/// Default headroom in front of each packet.
pub const HEADROOM: usize = 256;

/// A packet: which frame, where in it, how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PacketDesc {
    /// Frame index in the pool.
    pub frame: u32,
    /// Offset of the first byte within the frame.
    pub off: u16,
    /// Length in bytes.
    pub len: u16,
}

/// Where a pool's frames live.
enum Memory {
    /// Heap memory.
    Heap(Box<[u8]>),
    /// An AF_XDP UMEM.
    Umem(Umem),
}

impl Memory {
    #[inline(always)]
    fn slice(&self, start: usize, len: usize) -> &[u8] {
        match self {
            Memory::Heap(b) => &b[start..start + len],
            Memory::Umem(u) => u.slice(start, len),
        }
    }

    #[inline(always)]
    fn slice_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        match self {
            Memory::Heap(b) => &mut b[start..start + len],
            Memory::Umem(u) => u.slice_mut(start, len),
        }
    }

    #[inline(always)]
    fn copy(&mut self, src: usize, dst: usize, len: usize) {
        match self {
            Memory::Heap(b) => b.copy_within(src..src + len, dst),
            Memory::Umem(u) => u.copy(src, dst, len),
        }
    }
}

/// A pool of frames.
pub struct FramePool {
    mem: Memory,
    frame_size: usize,
    free: Vec<u32>,
    /// Which frames are on the free list (debug builds only), so that a
    /// double free is caught in constant time rather than by a scan.
    #[cfg(debug_assertions)]
    on_free_list: Vec<bool>,
    /// Frames lent to the kernel (debug builds only).
    #[cfg(debug_assertions)]
    lent: Vec<bool>,
}

impl FramePool {
    /// A pool of `n` frames of [`FRAME_SIZE`] bytes on the heap.
    pub fn new(n: usize) -> FramePool {
        FramePool::with_memory(
            Memory::Heap(vec![0u8; n * FRAME_SIZE].into_boxed_slice()),
            n,
        )
    }

    /// A pool of `n` frames of [`FRAME_SIZE`] bytes in a fresh UMEM, for
    /// AF_XDP ports (one pool per poll thread, shared by its sockets).
    pub fn new_umem(n: usize) -> Result<FramePool, XskError> {
        let len = n.saturating_mul(FRAME_SIZE);
        let u = Umem::new(n, FRAME_SIZE).map_err(|err| XskError::Umem { len, err })?;
        Ok(FramePool::with_memory(Memory::Umem(u), n))
    }

    fn with_memory(mem: Memory, n: usize) -> FramePool {
        assert!(n <= u32::MAX as usize, "{n} frames");
        FramePool {
            mem,
            frame_size: FRAME_SIZE,
            free: (0..n as u32).rev().collect(),
            #[cfg(debug_assertions)]
            lent: vec![false; n],
            #[cfg(debug_assertions)]
            on_free_list: vec![true; n],
        }
    }

    /// Takes a free frame, positioned after the headroom, length 0.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketDesc> {
        let frame = self.free.pop()?;
        #[cfg(debug_assertions)]
        {
            self.on_free_list[frame as usize] = false;
        }
        Some(frame).map(|frame| PacketDesc {
            frame,
            off: HEADROOM as u16,
            len: 0,
        })
    }

    /// Returns a packet's frame to the pool.
    #[inline]
    pub fn free(&mut self, d: PacketDesc) {
        #[cfg(debug_assertions)]
        {
            let slot = &mut self.on_free_list[d.frame as usize];
            assert!(!*slot, "frame {} freed twice", d.frame);
            *slot = true;
        }
        self.check_held(d.frame);
        self.free.push(d.frame);
    }

    /// Number of free frames.
    pub fn n_free(&self) -> usize {
        self.free.len()
    }

    /// Number of frames.
    pub fn n_frames(&self) -> usize {
        match &self.mem {
            Memory::Heap(b) => b.len() / self.frame_size,
            Memory::Umem(u) => u.len() / self.frame_size,
        }
    }

    /// Frame size in bytes.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// The whole frame a packet lives in.
    #[inline]
    pub fn frame_mut(&mut self, d: &PacketDesc) -> &mut [u8] {
        self.check_held(d.frame);
        let start = d.frame as usize * self.frame_size;
        self.mem.slice_mut(start, self.frame_size)
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self, d: &PacketDesc) -> &[u8] {
        self.check_held(d.frame);
        let start = d.frame as usize * self.frame_size + d.off as usize;
        self.mem.slice(start, d.len as usize)
    }

    /// The packet's bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self, d: &PacketDesc) -> &mut [u8] {
        self.check_held(d.frame);
        let start = d.frame as usize * self.frame_size + d.off as usize;
        self.mem.slice_mut(start, d.len as usize)
    }

    /// Copies `bytes` into a fresh frame; `None` if the pool is empty or the
    /// packet does not fit after the headroom.
    pub fn alloc_from(&mut self, bytes: &[u8]) -> Option<PacketDesc> {
        if bytes.len() > self.frame_size - HEADROOM {
            return None;
        }
        let mut d = self.alloc()?;
        d.len = bytes.len() as u16;
        self.data_mut(&d).copy_from_slice(bytes);
        Some(d)
    }

    /// Copies packet `d` into a fresh frame (for a second output).
    #[inline]
    pub fn clone_packet(&mut self, d: &PacketDesc) -> Option<PacketDesc> {
        self.check_held(d.frame);
        let mut c = self.alloc()?;
        c.off = d.off;
        c.len = d.len;
        let fs = self.frame_size;
        let (src, dst) = (
            d.frame as usize * fs + d.off as usize,
            c.frame as usize * fs + c.off as usize,
        );
        self.mem.copy(src, dst, d.len as usize);
        Some(c)
    }

    /// Takes back the frames of AF_XDP ports closed since the last call
    /// (a port cannot free into the pool from its `Drop`); returns how many.
    /// Ports call it in `flush`; a thread that closes a port and polls no
    /// other AF_XDP port calls it itself.
    pub fn reclaim(&mut self) -> usize {
        let Memory::Umem(u) = &self.mem else {
            return 0;
        };
        let before = self.free.len();
        let n = u.shared().take_orphans(&mut self.free);
        if n == 0 {
            return 0;
        }
        for i in before..self.free.len() {
            let f = self.free[i];
            #[cfg(debug_assertions)]
            {
                let slot = &mut self.on_free_list[f as usize];
                assert!(!*slot, "orphaned frame {f} was already free");
                *slot = true;
            }
            self.returned(f);
        }
        n
    }

    /// The UMEM the frames live in, if they do.
    pub fn umem(&self) -> Option<&Umem> {
        match &self.mem {
            Memory::Umem(u) => Some(u),
            Memory::Heap(_) => None,
        }
    }

    /// The state this pool's UMEM shares with its sockets.
    pub(crate) fn umem_shared(&self) -> Option<&Arc<UmemShared>> {
        self.umem().map(Umem::shared)
    }

    /// Records that a held frame went into a fill or TX ring.
    #[inline]
    pub(crate) fn lend(&mut self, frame: u32) {
        self.check_held(frame);
        #[cfg(debug_assertions)]
        {
            self.lent[frame as usize] = true;
        }
    }

    /// Records that a lent frame came back from the kernel.
    #[inline]
    pub(crate) fn returned(&mut self, frame: u32) {
        #[cfg(debug_assertions)]
        {
            assert!(
                self.lent[frame as usize],
                "frame {frame} returned but not lent"
            );
            self.lent[frame as usize] = false;
        }
        let _ = frame;
    }

    #[inline(always)]
    fn check_held(&self, frame: u32) {
        #[cfg(debug_assertions)]
        {
            assert!(
                !self.lent.get(frame as usize).copied().unwrap_or(false),
                "frame {frame} is lent to the kernel"
            );
        }
        let _ = frame;
    }
}

/// Up to [`BATCH`] packets, on the stack.
pub const BATCH: usize = 32;

/// A batch of packets received together on one port.
#[derive(Clone, Copy)]
pub struct Batch {
    /// The packets; only the first `len` are valid.
    pub pkts: [PacketDesc; BATCH],
    /// How many.
    pub len: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            pkts: [PacketDesc::default(); BATCH],
            len: 0,
        }
    }
}

impl Batch {
    /// Appends a packet; false when full.
    #[inline]
    pub fn push(&mut self, d: PacketDesc) -> bool {
        if self.len == BATCH {
            return false;
        }
        self.pkts[self.len] = d;
        self.len += 1;
        true
    }

    /// The valid packets.
    pub fn as_slice(&self) -> &[PacketDesc] {
        &self.pkts[..self.len]
    }
}
