//! A whole datapath in memory: a bridge, a frame pool, in-memory ports and
//! one poll thread's state. Golden tests, property tests and benches drive
//! it; it is also what `oxvs-ctl` could replay captures through.

use crate::buf::{Batch, FramePool};
use crate::pipeline::{Pmd, PmdConfig, TxPorts};
use crate::port::mem::{MemPort, QUEUE_DEPTH};
use flowtable::bridge::{Bridge, Change, RuleError};
use flowtable::{DropReason, PortNo};

/// Highest port number an in-memory datapath accepts (ports index an array).
pub const MAX_PORT_NO: PortNo = 1023;

/// The ports, indexed by number, as the pipeline's transmit side.
pub struct PortArray {
    ports: Vec<Option<MemPort>>,
}

impl TxPorts for PortArray {
    #[inline]
    fn send(
        &mut self,
        port: PortNo,
        pkt: crate::buf::PacketDesc,
        _pool: &mut FramePool,
    ) -> Result<(), DropReason> {
        match self.ports.get_mut(port as usize).and_then(|p| p.as_mut()) {
            Some(p) if p.up => {
                if p.transmit(pkt) {
                    Ok(())
                } else {
                    Err(DropReason::TxFull)
                }
            }
            _ => Err(DropReason::PortDown),
        }
    }
}

/// Bridge + pool + ports + poll thread.
pub struct MemDatapath {
    /// The rules.
    pub bridge: Bridge,
    /// The frames.
    pub pool: FramePool,
    /// The ports.
    pub ports: PortArray,
    /// The poll thread's caches and counters.
    pub pmd: Pmd,
    learned: Vec<flowtable::mac::Learn>,
}

impl MemDatapath {
    /// A datapath with `frames` frames and the given poll-thread tunables.
    pub fn new(frames: usize, cfg: PmdConfig) -> MemDatapath {
        MemDatapath {
            bridge: Bridge::default(),
            pool: FramePool::new(frames),
            ports: PortArray { ports: Vec::new() },
            pmd: Pmd::new(cfg),
            learned: Vec::new(),
        }
    }

    /// Adds a port.
    ///
    /// # Panics
    /// If `no` exceeds [`MAX_PORT_NO`]: a configuration error, not a packet one.
    pub fn add_port(&mut self, no: PortNo, name: &str) {
        assert!(no <= MAX_PORT_NO, "port number {no} above {MAX_PORT_NO}");
        let i = no as usize;
        if self.ports.ports.len() <= i {
            self.ports.ports.resize_with(i + 1, || None);
        }
        self.ports.ports[i] = Some(MemPort::new(name, QUEUE_DEPTH));
        self.bridge.add_port(no, name);
    }

    /// The port numbered `no`.
    pub fn port(&self, no: PortNo) -> Option<&MemPort> {
        self.ports.ports.get(no as usize).and_then(|p| p.as_ref())
    }

    /// Sets a port up or down.
    pub fn set_port_up(&mut self, no: PortNo, up: bool) {
        if let Some(Some(p)) = self.ports.ports.get_mut(no as usize) {
            p.up = up;
        }
        self.bridge.set_port_up(no, up);
    }

    /// Applies rule and group changes, all or nothing.
    pub fn apply(&mut self, changes: &[Change], now_ms: u64) -> Result<(), (usize, RuleError)> {
        self.bridge.apply(changes, now_ms)
    }

    /// Copies `bytes` into a frame and queues it as received on port `no`.
    pub fn inject(&mut self, no: PortNo, bytes: &[u8]) -> bool {
        let Some(Some(port)) = self.ports.ports.get_mut(no as usize) else {
            return false;
        };
        match self.pool.alloc_from(bytes) {
            Some(d) => port.deliver(d, &mut self.pool),
            None => false,
        }
    }

    /// Polls every port once, one batch each; returns packets processed.
    pub fn poll(&mut self, now_ms: u64) -> usize {
        let mut total = 0;
        let mut batch = Batch::default();
        for no in 0..self.ports.ports.len() {
            let Some(port) = self.ports.ports[no].as_mut() else {
                continue;
            };
            port.rx_burst(&mut batch);
            if batch.len == 0 {
                continue;
            }
            total += batch.len;
            self.pmd.process(
                &self.bridge,
                &mut self.pool,
                &mut self.ports,
                no as PortNo,
                &batch,
                now_ms,
            );
            self.pmd.take_learned(&mut self.learned);
            if !self.learned.is_empty() {
                self.bridge.learn(&self.learned, now_ms);
                self.learned.clear();
            }
            let mut flows = Vec::new();
            self.pmd.take_learned_flows(&mut flows);
            for spec in flows {
                // A refused learned rule is what the daemon logs; here the
                // tests see it as a rule that never appears.
                let _ = self.bridge.apply(&[Change::AddFlow(spec)], now_ms);
            }
        }
        total
    }

    /// Polls until every receive queue is empty.
    pub fn run_until_idle(&mut self, now_ms: u64) {
        while self.poll(now_ms) > 0 {}
    }

    /// Takes the packets transmitted on port `no` as byte vectors, freeing
    /// their frames.
    pub fn take_tx(&mut self, no: PortNo) -> Vec<Vec<u8>> {
        let Some(Some(port)) = self.ports.ports.get_mut(no as usize) else {
            return Vec::new();
        };
        let descs: Vec<_> = port.take_tx().collect();
        descs
            .into_iter()
            .map(|d| {
                let v = self.pool.data(&d).to_vec();
                self.pool.free(d);
                v
            })
            .collect()
    }

    /// Frees transmitted packets without copying them (benches).
    pub fn discard_tx(&mut self) {
        for port in self.ports.ports.iter_mut().flatten() {
            for d in port.take_tx() {
                self.pool.free(d);
            }
        }
    }

    /// Credits rules with megaflow counters and refreshes MAC learning, as a
    /// poll thread does periodically.
    pub fn push_stats(&mut self, now_ms: u64) {
        let mut refresh = Vec::new();
        self.pmd.megaflows.push_stats(now_ms, &mut refresh);
        self.bridge.learn(&refresh, now_ms);
    }
}
