//! An AF_XDP port with a UMEM of its own, for the many small ports of pods.
//!
//! A socket that shares a UMEM with sockets of other interfaces costs the
//! kernel a buffer pool of its own with a 136-byte head for *every* frame
//! of the shared UMEM (`xp_create_and_assign_umem`). Measured here: a
//! thread UMEM of 66 560 frames (sized for 512 pod ports) cost 9.3 MB of
//! kernel memory per port, 4.7 GB for 512 ports, growing with the square
//! of the port count. A port with its own UMEM of 128 frames cost 512 KiB
//! of UMEM and 17 KiB of heads instead, whatever the number of ports; its
//! size is the daemon's choice (`daemon::open::RuntimeSizing`: a fill ring
//! and a few hundred frames for transmit).
//!
//! The price is one copy each way: a received packet is copied from the
//! port's UMEM into a frame of the poll thread's pool (its own frame goes
//! straight back to the fill ring), and a packet sent to the port is
//! copied from the pool into one of its frames. On a veth, which is
//! copy-only, the kernel already copies every frame in and out of the
//! UMEM; the pipeline itself still moves descriptors between the thread's
//! ports.

use super::xsk::XskPort;
use super::NetPort;
use crate::buf::{Batch, FramePool, PacketDesc};
use crate::stats::PortStats;
use flowtable::DropReason;

/// An AF_XDP port on its own UMEM.
pub struct OwnUmemPort {
    // Fields drop in order: the socket closes before its UMEM goes.
    inner: XskPort,
    own: FramePool,
    batch: Batch,
    /// Packets dropped because the thread's pool or the port's UMEM had no
    /// frame to copy into.
    no_frame: u64,
}

impl OwnUmemPort {
    /// Wraps `inner`, opened on `own`'s UMEM (with
    /// [`XskPort::open_detached`]).
    pub fn new(inner: XskPort, own: FramePool) -> OwnUmemPort {
        OwnUmemPort {
            inner,
            own,
            batch: Batch::default(),
            no_frame: 0,
        }
    }
}

impl NetPort for OwnUmemPort {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn mode(&self) -> String {
        format!("{} own-umem", self.inner.mode())
    }

    fn rx_burst(&mut self, pool: &mut FramePool, batch: &mut Batch) {
        batch.len = 0;
        self.inner.rx_burst(&mut self.own, &mut self.batch);
        for d in self.batch.as_slice() {
            match pool.alloc_from(self.own.data(d)) {
                Some(c) => {
                    batch.push(c);
                }
                None => self.no_frame += 1,
            }
            self.own.free(*d);
        }
        self.batch.len = 0;
    }

    fn send(&mut self, pool: &mut FramePool, pkt: PacketDesc) -> Result<(), DropReason> {
        let Some(c) = self.own.alloc_from(pool.data(&pkt)) else {
            self.no_frame += 1;
            return Err(DropReason::NoBuffer);
        };
        match self.inner.send(&mut self.own, c) {
            Ok(()) => {
                pool.free(pkt);
                Ok(())
            }
            Err(e) => {
                self.own.free(c);
                Err(e)
            }
        }
    }

    fn flush(&mut self, _pool: &mut FramePool) {
        self.inner.flush(&mut self.own);
    }

    fn activate(&mut self, _pool: &mut FramePool) -> Result<(), String> {
        self.inner
            .activate(&mut self.own)
            .map_err(|e| e.to_string())
    }

    fn deactivate(&mut self, _pool: &mut FramePool) {
        self.inner.deactivate(&mut self.own);
    }

    fn poll_fd(&self) -> Option<i32> {
        self.inner.poll_fd()
    }

    fn stats(&self) -> PortStats {
        let mut s = self.inner.stats();
        s.rx_dropped += self.no_frame;
        s
    }
}
