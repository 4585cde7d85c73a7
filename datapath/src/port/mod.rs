//! Ports: where packets enter and leave the datapath.
//!
//! Every port kind (in-memory for tests, AF_XDP, and AF_PACKET where AF_XDP
//! is unavailable) draws its buffers from the poll thread's [`FramePool`],
//! receives a batch at a time and queues transmissions that [`NetPort::flush`]
//! hands to the kernel, so the pipeline never knows which kind it talks to.

pub mod mem;
pub mod packet;
pub mod xsk;
pub mod xsk_own;

use crate::buf::{Batch, FramePool, PacketDesc};
use crate::stats::PortStats;
use flowtable::DropReason;

/// A port a poll thread owns. `Send`: the control thread opens ports and
/// hands them to the poll threads, and takes them back to close them.
pub trait NetPort: Send {
    /// Interface name.
    fn name(&self) -> &str;
    /// How the port is attached, for `show`: e.g. `afxdp native zerocopy`,
    /// `afxdp generic copy`, `af_packet`, `memory`.
    fn mode(&self) -> String;
    /// Receives up to a batch of packets (fewer, or none, when idle); their
    /// frames now belong to the caller.
    fn rx_burst(&mut self, pool: &mut FramePool, batch: &mut Batch);
    /// Queues one packet for transmission; its frame belongs to the port
    /// until transmission completes. On error the caller keeps the frame.
    fn send(&mut self, pool: &mut FramePool, pkt: PacketDesc) -> Result<(), DropReason>;
    /// Pushes queued packets to the kernel, reclaims transmitted frames into
    /// the pool and gives the kernel fresh frames to receive into.
    fn flush(&mut self, pool: &mut FramePool);
    /// Starts receiving, on the poll thread that now owns the port (a port
    /// opened elsewhere receives nothing before this: an AF_XDP port's
    /// fill ring is filled from `pool` and its socket enters the XSKMAP).
    fn activate(&mut self, pool: &mut FramePool) -> Result<(), String> {
        let _ = pool;
        Ok(())
    }
    /// Stops receiving before the port leaves its poll thread to be closed:
    /// what its rings hold goes back to `pool`.
    fn deactivate(&mut self, pool: &mut FramePool) {
        self.flush(pool);
    }
    /// A file descriptor to `poll(2)` on for receive readiness when the
    /// thread sleeps, if the port has one.
    fn poll_fd(&self) -> Option<i32>;
    /// Counters.
    fn stats(&self) -> PortStats;
}
