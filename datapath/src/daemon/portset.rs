//! The ports of one poll thread and one turn of its loop over them:
//! receive, process, transmit.
//!
//! With a few ports every turn polls and flushes every port. With hundreds
//! (one per pod), doing so would cost every packet: each idle AF_XDP port
//! costs a look at its RX ring and, in `flush`, at its TX, completion and
//! fill rings, and with 512 ports that is microseconds per turn against a
//! few nanoseconds per packet. So a turn that follows a turn with traffic
//! polls only the *hot* ports (those that received in the last
//! [`HOT_TURNS`] turns) and a window of [`WINDOW`] others in rotation, and
//! flushes only the ports it received on or sent to and that window. Only
//! after [`QUIET_TURNS`] turns without a packet (and on the turn after the
//! thread wakes from `poll(2)`, or gets a port) does a turn sweep every
//! port, as every turn does with at most [`FULL_SWEEP_PORTS`] ports: a
//! single empty turn is no sign of idleness under traffic that arrives a
//! packet at a time, and sweeping 512 ports after each of those cost a
//! veth-to-veth stream 60 % of its rate (scripts/bench-ports). A port that starts receiving while others
//! are busy is seen within `ports / WINDOW` turns (tens of microseconds
//! under load) and is hot from then on.

use super::config::PortConfig;
use crate::buf::{Batch, FramePool, PacketDesc};
use crate::pipeline::{Pmd, TxPorts};
use crate::port::NetPort;
use flowtable::{Bridge, DropReason, PortNo};

/// Up to this many ports, every turn polls and flushes them all.
pub const FULL_SWEEP_PORTS: usize = 16;
/// Cold ports polled and flushed per busy turn, in rotation. With 8, a
/// busy turn with 512 ports cost 8-11 % more per packet than with 2; with
/// 4, 5-7 % (`cargo bench --bench ports -- paired`). With 4,
/// a saturated thread looks at each of 512 ports every 128 turns (about
/// 0.2 ms), and an unsaturated one at every port every turn.
pub const WINDOW: usize = 4;
/// A port stays hot this many turns after it last received.
pub const HOT_TURNS: u64 = 64;
/// Turns without a packet after which a turn sweeps every port.
pub const QUIET_TURNS: u64 = 64;

/// One port of the thread.
pub(super) struct Slot {
    pub(super) cfg: PortConfig,
    /// Counters of sockets closed earlier (the port went down and came
    /// back), so the port's totals survive a reopen.
    pub(super) past: crate::stats::PortStats,
    pub(super) port: Option<Box<dyn NetPort>>,
    /// The turn it last received in.
    last_rx: u64,
    /// In `dirty` this turn.
    dirty: bool,
    /// In `hot`.
    hot: bool,
    /// What the pipeline did with the packets received here (the
    /// `pipeline_*` counters of [`crate::stats::PortStats`]); kept by the
    /// slot, so they survive a reopen.
    pub(super) fate: crate::stats::PortStats,
}

/// A packet copied for `capture`.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When.
    pub at: std::time::SystemTime,
    /// Received on the port (else sent to it).
    pub rx: bool,
    /// The frame.
    pub bytes: Vec<u8>,
}

/// The ports of one thread, indexed by port number for transmission.
#[derive(Default)]
pub struct PortSet {
    pub(super) slots: Vec<Slot>,
    by_no: Vec<Option<usize>>,
    /// The port being captured (0: none), read once per loop.
    pub(super) tap: PortNo,
    /// Packets copied for the capture since the last hand-off.
    pub(super) captured: Vec<Captured>,
    /// Slots that received recently.
    hot: Vec<usize>,
    /// Slots received on or sent to this turn (to flush).
    dirty: Vec<usize>,
    /// The next cold slot of the rotation.
    cursor: usize,
    turn: u64,
    /// Turns since one received a packet.
    quiet: u64,
    /// Sweep every port next turn.
    sweep: bool,
    /// Sweep every port every turn (the plain loop; benches compare).
    pub always_sweep: bool,
    /// Frames handed to a port successfully, for the per-port accounting.
    sent: u64,
}

impl PortSet {
    /// An empty set.
    pub fn new() -> PortSet {
        PortSet::default()
    }

    /// Ports (open or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no port.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of port `no`.
    pub(super) fn slot_of(&self, no: PortNo) -> Option<usize> {
        self.by_no.get(no as usize).copied().flatten()
    }

    /// Adds `port` as port `cfg.no`, or puts it in that port's slot;
    /// returns the port it replaces, if any.
    pub fn attach(&mut self, cfg: PortConfig, port: Box<dyn NetPort>) -> Option<Box<dyn NetPort>> {
        let no = cfg.no as usize;
        let idx = match self.slot_of(cfg.no) {
            Some(i) => i,
            None => {
                if self.by_no.len() <= no {
                    self.by_no.resize(no + 1, None);
                }
                self.slots.push(Slot {
                    cfg: cfg.clone(),
                    past: Default::default(),
                    port: None,
                    last_rx: 0,
                    dirty: false,
                    hot: false,
                    fate: Default::default(),
                });
                self.by_no[no] = Some(self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[idx];
        s.cfg = cfg;
        // A new port is polled at once (it is likely to receive soon).
        self.sweep = true;
        s.port.replace(port)
    }

    /// Removes port `no`'s slot; output to the number is a
    /// `drop_port_down` from now on. Returns the port, if it was open.
    pub fn remove(&mut self, no: PortNo) -> Option<Box<dyn NetPort>> {
        let idx = self.slot_of(no)?;
        let s = self.slots.remove(idx);
        self.by_no[no as usize] = None;
        for i in self.by_no.iter_mut().flatten() {
            if *i > idx {
                *i -= 1;
            }
        }
        // Indices moved: start the bookkeeping afresh.
        self.hot.clear();
        self.dirty.clear();
        for s in &mut self.slots {
            (s.hot, s.dirty) = (false, false);
        }
        self.cursor = 0;
        self.sweep = true;
        s.port
    }

    /// Makes the next turn sweep every port (after a sleep in `poll(2)`:
    /// whichever woke the thread is looked at).
    pub fn sweep_next(&mut self) {
        self.sweep = true;
    }

    /// One turn: receives from the ports this turn looks at, runs each
    /// batch through `pmd`, flushes what needs it. Returns the packets
    /// received.
    pub fn poll(
        &mut self,
        pmd: &mut Pmd,
        bridge: &Bridge,
        pool: &mut FramePool,
        batch: &mut Batch,
        now_ms: u64,
    ) -> usize {
        self.turn += 1;
        let n = self.slots.len();
        let full =
            self.always_sweep || self.sweep || self.quiet >= QUIET_TURNS || n <= FULL_SWEEP_PORTS;
        self.sweep = false;
        let mut got = 0;
        if full {
            for i in 0..n {
                got += self.rx_one(i, pmd, bridge, pool, batch, now_ms);
            }
        } else {
            for h in 0..self.hot.len() {
                let i = self.hot[h];
                got += self.rx_one(i, pmd, bridge, pool, batch, now_ms);
            }
            for _ in 0..WINDOW.min(n) {
                self.cursor = (self.cursor + 1) % n;
                let i = self.cursor;
                if !self.slots[i].hot {
                    got += self.rx_one(i, pmd, bridge, pool, batch, now_ms);
                    self.mark_dirty(i);
                }
            }
        }
        if full {
            for s in self.slots.iter_mut() {
                if let Some(p) = s.port.as_mut() {
                    p.flush(pool);
                }
                s.dirty = false;
            }
            self.dirty.clear();
        } else {
            for d in 0..self.dirty.len() {
                let s = &mut self.slots[self.dirty[d]];
                if let Some(p) = s.port.as_mut() {
                    p.flush(pool);
                }
                s.dirty = false;
            }
            self.dirty.clear();
        }
        if self.turn % HOT_TURNS == 0 {
            let (slots, turn) = (&mut self.slots, self.turn);
            self.hot.retain(|&i| {
                let keep = turn - slots[i].last_rx < HOT_TURNS;
                slots[i].hot = keep;
                keep
            });
        }
        self.quiet = if got == 0 { self.quiet + 1 } else { 0 };
        got
    }

    #[inline]
    fn rx_one(
        &mut self,
        i: usize,
        pmd: &mut Pmd,
        bridge: &Bridge,
        pool: &mut FramePool,
        batch: &mut Batch,
        now_ms: u64,
    ) -> usize {
        let no = self.slots[i].cfg.no;
        let Some(p) = self.slots[i].port.as_mut() else {
            return 0;
        };
        p.rx_burst(pool, batch);
        if batch.len == 0 {
            return 0;
        }
        let s = &mut self.slots[i];
        s.last_rx = self.turn;
        if !s.hot {
            s.hot = true;
            self.hot.push(i);
        }
        self.mark_dirty(i);
        if no == self.tap {
            for d in batch.as_slice() {
                self.copy(true, pool.data(d));
            }
        }
        let before = (self.sent, pmd.stats.total_drops(), pmd.stats.frames_made());
        if self.slots[i].cfg.uplink {
            pmd.process_uplink(bridge, pool, self, batch, now_ms);
        } else {
            pmd.process(bridge, pool, self, no, batch, now_ms);
        }
        // Every packet of the batch was sent or dropped before `process`
        // returned: charge what it did to this port.
        let fate = &mut self.slots[i].fate;
        fate.pipeline_sent += self.sent - before.0;
        fate.pipeline_dropped += pmd.stats.total_drops() - before.1;
        fate.pipeline_made += pmd.stats.frames_made().wrapping_sub(before.2);
        batch.len
    }

    #[inline]
    fn mark_dirty(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Copies a packet for the capture. This allocates, and only runs while
    /// someone captures this port.
    #[cold]
    pub(super) fn copy(&mut self, rx: bool, bytes: &[u8]) {
        self.captured.push(Captured {
            at: std::time::SystemTime::now(),
            rx,
            bytes: bytes.to_vec(),
        });
    }
}

impl TxPorts for PortSet {
    #[inline]
    fn send(
        &mut self,
        port: PortNo,
        pkt: PacketDesc,
        pool: &mut FramePool,
    ) -> Result<(), DropReason> {
        let idx = self.slot_of(port).ok_or(DropReason::PortDown)?;
        if port == self.tap {
            self.copy(false, pool.data(&pkt));
        }
        self.mark_dirty(idx);
        let r = match self.slots[idx].port.as_mut() {
            Some(p) => p.send(pool, pkt),
            None => Err(DropReason::PortDown),
        };
        self.sent += u64::from(r.is_ok());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::mem::EchoPort;

    fn cfg(no: PortNo) -> PortConfig {
        PortConfig {
            name: format!("p{no}"),
            no,
            kind: Default::default(),
            uplink: false,
            local_ip: None,
            remote_ip: None,
            key: None,
            runtime: true,
            mtu: None,
        }
    }

    fn frame(pool: &mut FramePool, dst: u8) -> PacketDesc {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xee]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        pool.alloc_from(&f).unwrap()
    }

    /// A UDP/IPv4 frame from 10.0.0.1 to 10.0.0.2.
    fn udp(pool: &mut FramePool) -> PacketDesc {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = [
            0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        f[14..34].copy_from_slice(&ip);
        let sum = wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        f[34..42].copy_from_slice(&[0x27, 0x10, 0x00, 0x35, 0, 26, 0, 0]);
        pool.alloc_from(&f).unwrap()
    }

    /// Every packet a port received was sent or dropped with a name, also
    /// when the pipeline copies it (two outputs), answers it (`reject`),
    /// lets it go after its copy (an output before a `log`) or runs out of
    /// frames for a copy (`drop_no_buffer`): per port, rx + made = sent +
    /// dropped after every turn, and no frame is lost from the pool.
    #[test]
    fn every_packet_received_is_sent_or_dropped_by_name() {
        const FRAMES: usize = 64;
        let mut pool = FramePool::new(FRAMES);
        let mut br = Bridge::default();
        for no in 1..=3 {
            br.add_port(no, &format!("p{no}"));
        }
        crate::daemon::load_flows(
            &mut br,
            "priority=10,in_port=1,actions=output:2,output:3\n\
             priority=10,in_port=2,udp,actions=reject\n\
             priority=5,in_port=2,actions=drop\n\
             priority=10,in_port=3,actions=output:1,output:1,log(name=seen)\n",
        )
        .unwrap();
        let mut pmd = Pmd::new(Default::default());
        let mut set = PortSet::new();
        let start: Vec<PacketDesc> = (0..8).map(|_| udp(&mut pool)).collect();
        set.attach(cfg(1), Box::new(EchoPort::new("p1", &start)));
        for no in 2..=3 {
            set.attach(cfg(no), Box::new(EchoPort::new("", &[])));
        }
        let mut batch = Batch::default();
        for turn in 0..40 {
            set.poll(&mut pmd, &br, &mut pool, &mut batch, turn);
            let mut queued = 0;
            for s in &set.slots {
                let mut st = s.port.as_ref().unwrap().stats();
                st.add(&s.fate);
                assert_eq!(
                    st.rx_packets + st.pipeline_made,
                    st.pipeline_sent + st.pipeline_dropped,
                    "port {} after turn {turn}: {st:?}",
                    s.cfg.no
                );
                queued += st.tx_packets - st.rx_packets;
            }
            // The preloaded frames were received without being sent.
            let in_queues = queued + start.len() as u64;
            assert_eq!(
                pool.n_free() as u64 + in_queues,
                FRAMES as u64,
                "turn {turn}"
            );
        }
        let t = &pmd.stats;
        for (what, n) in [
            ("copies", t.tx_copies),
            ("answers", t.answers_made),
            ("released", t.released),
            ("no_buffer", t.drops_for(DropReason::NoBuffer)),
            ("rejected", t.drops_for(DropReason::Rejected)),
        ] {
            assert!(n > 0, "no {what}: {t:?}");
        }
    }

    /// 64 ports: port 1 echoes a batch that keeps the thread busy; a
    /// packet waiting on a cold port is still received within a rotation
    /// of the window, and a removed port's number drops as port down.
    #[test]
    fn cold_ports_are_seen_while_hot_ones_are_busy() {
        let mut pool = FramePool::new(256);
        let mut br = Bridge::default();
        for no in 1..=64 {
            br.add_port(no, &format!("p{no}"));
        }
        crate::daemon::load_flows(
            &mut br,
            "priority=10,in_port=1,actions=IN_PORT\npriority=5,actions=drop\n",
        )
        .unwrap();
        let mut pmd = Pmd::new(Default::default());
        let mut set = PortSet::new();
        let busy: Vec<PacketDesc> = (0..32).map(|_| frame(&mut pool, 1)).collect();
        set.attach(cfg(1), Box::new(EchoPort::new("p1", &busy)));
        for no in 2..=64 {
            set.attach(cfg(no), Box::new(EchoPort::new("", &[])));
        }
        let mut batch = Batch::default();
        for _ in 0..10 {
            assert_eq!(set.poll(&mut pmd, &br, &mut pool, &mut batch, 0), 32);
        }
        // A packet for the cold port the rotation has just passed (the
        // worst case), put there as if it had arrived.
        let late_no = set.slots[set.cursor].cfg.no;
        assert_ne!(late_no, 1);
        let late = frame(&mut pool, late_no as u8);
        let i = set.slot_of(late_no).unwrap();
        let p = set.slots[i].port.as_mut().unwrap();
        p.send(&mut pool, late).unwrap();
        let mut turns = 0;
        loop {
            turns += 1;
            let got = set.poll(&mut pmd, &br, &mut pool, &mut batch, 0);
            if got == 33 {
                break;
            }
            assert_eq!(got, 32);
            assert!(
                turns <= 64 / WINDOW + 1,
                "port 40 unseen after {turns} turns"
            );
        }
        assert!(turns > 1, "the busy turns did not skip cold ports");
        assert!(set.remove(40).is_some());
        assert!(matches!(
            set.send(40, frame(&mut pool, 40), &mut pool),
            Err(DropReason::PortDown)
        ));
        assert_eq!(set.len(), 63);
    }
}
