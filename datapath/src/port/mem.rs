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

/// A port whose wire loops back: what is sent to it is received from it
/// again. Benches and tests of a poll thread's loop use it: one keeps a
/// batch circulating, idle ones stand for pod ports with nothing to say.
/// Each look at the "rings" is an atomic load from its own allocation, as
/// an AF_XDP port's look at a ring index is, so an idle one costs about
/// what an idle AF_XDP port costs a poll turn in loads (not in cache
/// misses: nothing else writes the line).
pub struct EchoPort {
    name: String,
    queue: VecDeque<PacketDesc>,
    ring: Box<std::sync::atomic::AtomicU32>,
    stats: PortStats,
}

impl EchoPort {
    /// A port holding `preload` as received packets.
    pub fn new(name: &str, preload: &[PacketDesc]) -> EchoPort {
        EchoPort {
            name: name.to_string(),
            queue: preload.iter().copied().collect(),
            ring: Box::default(),
            stats: PortStats::default(),
        }
    }
}

impl super::NetPort for EchoPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn mode(&self) -> String {
        "memory echo".into()
    }

    fn rx_burst(&mut self, _pool: &mut FramePool, batch: &mut Batch) {
        batch.len = 0;
        if self.ring.load(std::sync::atomic::Ordering::Acquire) == 0 && self.queue.is_empty() {
            return;
        }
        while let Some(d) = self.queue.front() {
            if !batch.push(*d) {
                break;
            }
            self.stats.rx_packets += 1;
            self.queue.pop_front();
        }
        self.ring.store(
            self.queue.len() as u32,
            std::sync::atomic::Ordering::Release,
        );
    }

    fn send(
        &mut self,
        _pool: &mut FramePool,
        pkt: PacketDesc,
    ) -> Result<(), flowtable::DropReason> {
        self.stats.tx_packets += 1;
        self.queue.push_back(pkt);
        Ok(())
    }

    fn flush(&mut self, _pool: &mut FramePool) {
        // Where an AF_XDP port looks at its TX, completion and fill rings.
        let _ = self.ring.load(std::sync::atomic::Ordering::Acquire);
    }

    fn poll_fd(&self) -> Option<i32> {
        None
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
