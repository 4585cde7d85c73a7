//! The in-memory port: receive and transmit queues of descriptors into the
//! shared frame pool. Tests inject real packet bytes and read back what was
//! transmitted; the pipeline cannot tell it from a socket.

use crate::buf::{Batch, FramePool, PacketDesc};
use crate::stats::PortStats;
use std::collections::VecDeque;

/// Default queue depth (an AF_XDP ring's default size).
pub const QUEUE_DEPTH: usize = 2048;

/// A port whose wire is two queues in memory.
pub struct MemPort {
    /// Interface name.
    pub name: String,
    rx: VecDeque<PacketDesc>,
    tx: VecDeque<PacketDesc>,
    depth: usize,
    /// Whether the port is up; a down port drops what is sent to it.
    pub up: bool,
    /// Counters.
    pub stats: PortStats,
}

impl MemPort {
    /// A port with queues of `depth` packets.
    pub fn new(name: &str, depth: usize) -> MemPort {
        MemPort {
            name: name.to_string(),
            rx: VecDeque::with_capacity(depth),
            tx: VecDeque::with_capacity(depth),
            depth,
            up: true,
            stats: PortStats::default(),
        }
    }

    /// Puts a packet on the receive queue, as if it arrived on the wire.
    /// Returns false (and frees the frame) when the queue is full.
    pub fn deliver(&mut self, d: PacketDesc, pool: &mut FramePool) -> bool {
        if self.rx.len() >= self.depth {
            self.stats.rx_dropped += 1;
            pool.free(d);
            return false;
        }
        self.rx.push_back(d);
        true
    }

    /// Takes up to a batch of received packets.
    pub fn rx_burst(&mut self, batch: &mut Batch) {
        batch.len = 0;
        while let Some(d) = self.rx.front() {
            if !batch.push(*d) {
                break;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += d.len as u64;
            self.rx.pop_front();
        }
    }

    /// Queues a packet for transmission; false when the queue is full.
    #[inline]
    pub fn transmit(&mut self, d: PacketDesc) -> bool {
        if !self.up || self.tx.len() >= self.depth {
            self.stats.tx_dropped += 1;
            return false;
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += d.len as u64;
        self.tx.push_back(d);
        true
    }

    /// Takes the transmitted packets (the frames stay allocated).
    pub fn take_tx(&mut self) -> impl Iterator<Item = PacketDesc> + '_ {
        self.tx.drain(..)
    }

    /// Packets waiting to be received.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }
}
