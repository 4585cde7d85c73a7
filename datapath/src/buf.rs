//! Packet buffers: a pool of fixed-size frames, the same shape as an AF_XDP
//! UMEM, and the descriptor that names a packet inside it.
//!
//! Every port of a datapath draws from one pool, so forwarding a packet from
//! one port to another moves a descriptor, not bytes. Each frame keeps
//! headroom before the packet so that a VLAN tag (and later a tunnel header)
//! can be prepended by moving the Ethernet addresses, not the payload.

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

/// A pool of frames.
pub struct FramePool {
    mem: Box<[u8]>,
    frame_size: usize,
    free: Vec<u32>,
}

impl FramePool {
    /// A pool of `n` frames of [`FRAME_SIZE`] bytes.
    pub fn new(n: usize) -> FramePool {
        FramePool {
            mem: vec![0u8; n * FRAME_SIZE].into_boxed_slice(),
            frame_size: FRAME_SIZE,
            free: (0..n as u32).rev().collect(),
        }
    }

    /// Takes a free frame, positioned after the headroom, length 0.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketDesc> {
        self.free.pop().map(|frame| PacketDesc {
            frame,
            off: HEADROOM as u16,
            len: 0,
        })
    }

    /// Returns a packet's frame to the pool.
    #[inline]
    pub fn free(&mut self, d: PacketDesc) {
        debug_assert!(
            !self.free.contains(&d.frame),
            "frame {} freed twice",
            d.frame
        );
        self.free.push(d.frame);
    }

    /// Number of free frames.
    pub fn n_free(&self) -> usize {
        self.free.len()
    }

    /// The whole frame a packet lives in.
    #[inline]
    pub fn frame_mut(&mut self, d: &PacketDesc) -> &mut [u8] {
        let start = d.frame as usize * self.frame_size;
        &mut self.mem[start..start + self.frame_size]
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self, d: &PacketDesc) -> &[u8] {
        let start = d.frame as usize * self.frame_size + d.off as usize;
        &self.mem[start..start + d.len as usize]
    }

    /// The packet's bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self, d: &PacketDesc) -> &mut [u8] {
        let start = d.frame as usize * self.frame_size + d.off as usize;
        &mut self.mem[start..start + d.len as usize]
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
        let mut c = self.alloc()?;
        c.off = d.off;
        c.len = d.len;
        let fs = self.frame_size;
        let (src, dst) = (
            d.frame as usize * fs + d.off as usize,
            c.frame as usize * fs + c.off as usize,
        );
        self.mem.copy_within(src..src + d.len as usize, dst);
        Some(c)
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
