//! The batch pipeline of one poll thread: parse, exact-match cache, megaflow
//! table, upcall, then execute actions per flow.
//!
//! [`Pmd::process`] takes a batch of up to 32 packets received on one port and
//! does no I/O itself: transmitting goes through the [`TxPorts`] the caller
//! passes, and time is an argument. The same code therefore runs over the
//! in-memory ports of the tests and benches and over AF_XDP sockets.
//!
//! Steady state (every packet hits the EMC or a megaflow) allocates nothing,
//! takes no lock and makes no syscall: keys, layouts and flow groups live in
//! arrays on the stack. Packets of a batch that share a megaflow are grouped
//! and the group's actions run over all of them, with the flow's counters
//! updated once per group. Before each batch the thread compares the bridge's
//! version with the one its caches were built under and revalidates them if it
//! changed, so no packet is ever handled by a cache entry the current rules
//! would not produce.

use crate::buf::{Batch, FramePool, PacketDesc, BATCH};
use crate::exec::rewrite;
use crate::stats::PmdStats;
use flowtable::emc::{Emc, DEFAULT_ENTRIES, DEFAULT_INV_PROB};
use flowtable::extract::{extract, Layout};
use flowtable::megaflow::{MegaflowRef, MegaflowTable, RevalidateStats, DEFAULT_MAX_FLOWS};
use flowtable::{translate, Bridge, DpAction, DropReason, FlowKey, PortNo};

/// Where the pipeline sends packets. Ownership of the frame passes with the
/// descriptor; on error the pipeline frees it and counts the reason.
pub trait TxPorts {
    /// Queues `pkt` for transmission on `port`.
    fn send(
        &mut self,
        port: PortNo,
        pkt: PacketDesc,
        pool: &mut FramePool,
    ) -> Result<(), DropReason>;
}

/// Tunables of a poll thread.
#[derive(Clone, Copy, Debug)]
pub struct PmdConfig {
    /// EMC entries.
    pub emc_entries: usize,
    /// EMC inverse insertion probability (1: always insert).
    pub emc_inv_prob: u32,
    /// Megaflow capacity.
    pub max_megaflows: usize,
}

impl Default for PmdConfig {
    fn default() -> Self {
        PmdConfig {
            emc_entries: DEFAULT_ENTRIES,
            emc_inv_prob: DEFAULT_INV_PROB,
            max_megaflows: DEFAULT_MAX_FLOWS,
        }
    }
}

/// The state one poll thread owns: its caches and counters.
pub struct Pmd {
    /// Exact-match cache.
    pub emc: Emc,
    /// Megaflow table.
    pub megaflows: MegaflowTable,
    /// Counters.
    pub stats: PmdStats,
    seen_version: Option<u64>,
    /// What the last revalidation did.
    pub last_revalidation: RevalidateStats,
}

/// Packets of one batch that share a megaflow.
#[derive(Clone, Copy)]
struct Group {
    flow: MegaflowRef,
    members: [u8; BATCH],
    n: u8,
}

impl Pmd {
    /// A poll thread's state with the given tunables.
    pub fn new(cfg: PmdConfig) -> Pmd {
        Pmd {
            emc: Emc::new(cfg.emc_entries, cfg.emc_inv_prob),
            megaflows: MegaflowTable::new(cfg.max_megaflows),
            stats: PmdStats::default(),
            seen_version: None,
            last_revalidation: RevalidateStats::default(),
        }
    }

    /// Brings the caches in line with `br` if its rules or MAC table changed
    /// since they were built.
    pub fn sync(&mut self, br: &Bridge) {
        let v = br.version();
        if self.seen_version == Some(v) {
            return;
        }
        self.last_revalidation = self.megaflows.revalidate(|k| translate(br, k, None));
        self.stats.revalidations += 1;
        self.seen_version = Some(v);
    }

    /// Runs one batch received on `in_port` through the pipeline.
    pub fn process(
        &mut self,
        br: &mut Bridge,
        pool: &mut FramePool,
        tx: &mut impl TxPorts,
        in_port: PortNo,
        batch: &Batch,
        now_ms: u64,
    ) {
        self.sync(br);
        let n = batch.len;
        let mut pkts = batch.pkts;
        let mut keys = [FlowKey::default(); BATCH];
        let mut layouts = [Layout::default(); BATCH];
        let mut flows: [Option<MegaflowRef>; BATCH] = [None; BATCH];
        let mut alive = [false; BATCH];
        self.stats.rx_packets += n as u64;

        // Parse and look up in the EMC.
        for i in 0..n {
            match extract(pool.data(&pkts[i]), in_port, &mut keys[i]) {
                Ok(l) => {
                    layouts[i] = l;
                    alive[i] = true;
                }
                Err(reason) => {
                    self.stats.drop(reason);
                    pool.free(pkts[i]);
                    continue;
                }
            }
            let hash = keys[i].hash();
            if let Some(r) = self.emc.lookup(&keys[i], hash) {
                if self.megaflows.get(r).is_some() {
                    flows[i] = Some(r);
                    self.stats.emc_hit += 1;
                }
            }
        }

        // Misses: megaflow table, then upcall. A miss upcalled earlier in the
        // batch installs a megaflow that later misses of the same flow find.
        for i in 0..n {
            if !alive[i] || flows[i].is_some() {
                continue;
            }
            let hash = keys[i].hash();
            if let Some(r) = self.megaflows.lookup(&keys[i]) {
                self.stats.megaflow_hit += 1;
                self.emc.insert(&keys[i], hash, r);
                flows[i] = Some(r);
                continue;
            }
            self.stats.upcall += 1;
            let x = translate(br, &keys[i], None);
            if !x.learned.is_empty() {
                br.learn(&x.learned, now_ms);
            }
            match self.megaflows.insert(&keys[i], &x, now_ms) {
                Ok(r) => {
                    self.emc.insert(&keys[i], hash, r);
                    flows[i] = Some(r);
                }
                Err(_) => {
                    // The table is full: execute this translation uncached.
                    self.stats.upcall_uncached += 1;
                    alive[i] = false;
                    let len = pkts[i].len as u64;
                    for r in &x.rules {
                        r.stats.credit(1, len, now_ms);
                    }
                    self.execute(pool, tx, &x.actions, &mut pkts[i], &mut layouts[i]);
                }
            }
        }

        // Group by megaflow, then run each group's actions over its packets.
        let mut groups = [Group {
            flow: MegaflowRef { slot: 0, gen: 0 },
            members: [0; BATCH],
            n: 0,
        }; BATCH];
        let mut n_groups = 0;
        for i in 0..n {
            let Some(f) = flows[i].filter(|_| alive[i]) else {
                continue;
            };
            let g = match groups[..n_groups].iter().position(|g| g.flow == f) {
                Some(g) => g,
                None => {
                    groups[n_groups].flow = f;
                    groups[n_groups].n = 0;
                    n_groups += 1;
                    n_groups - 1
                }
            };
            let grp = &mut groups[g];
            grp.members[grp.n as usize] = i as u8;
            grp.n += 1;
        }
        for g in &groups[..n_groups] {
            let mut bytes = 0u64;
            for &m in &g.members[..g.n as usize] {
                bytes += pkts[m as usize].len as u64;
            }
            // Take the actions out of the table for the duration of the
            // group so the executor can borrow the pool and ports mutably.
            let Some(mf) = self.megaflows.get_mut(g.flow) else {
                continue;
            };
            mf.packets += g.n as u64;
            mf.bytes += bytes;
            mf.used_ms = now_ms;
            let actions = std::mem::take(&mut mf.actions);
            for &m in &g.members[..g.n as usize] {
                let m = m as usize;
                self.execute(pool, tx, &actions, &mut pkts[m], &mut layouts[m]);
            }
            if let Some(mf) = self.megaflows.get_mut(g.flow) {
                mf.actions = actions;
            }
        }
    }

    /// Runs datapath actions on one packet: rewrites in place, a copy for
    /// every output but the last, the packet itself for the last.
    fn execute(
        &mut self,
        pool: &mut FramePool,
        tx: &mut impl TxPorts,
        actions: &[DpAction],
        pkt: &mut PacketDesc,
        lay: &mut Layout,
    ) {
        let last_out = actions
            .iter()
            .rposition(|a| matches!(a, DpAction::Output(_)));
        let Some(last_out) = last_out else {
            let reason = match actions.last() {
                Some(DpAction::Drop(r)) => *r,
                _ => DropReason::NoOutput,
            };
            self.stats.drop(reason);
            pool.free(*pkt);
            return;
        };
        for (i, a) in actions[..=last_out].iter().enumerate() {
            match *a {
                DpAction::Output(port) => {
                    let out = if i == last_out {
                        *pkt
                    } else {
                        match pool.clone_packet(pkt) {
                            Some(c) => c,
                            None => {
                                self.stats.drop(DropReason::NoBuffer);
                                continue;
                            }
                        }
                    };
                    if i != last_out {
                        self.stats.tx_copies += 1;
                    }
                    if let Err(reason) = tx.send(port, out, pool) {
                        self.stats.drop(reason);
                        pool.free(out);
                    }
                }
                DpAction::Drop(_) => {}
                _ => {
                    let mut d = *pkt;
                    let frame = pool.frame_mut(&d);
                    if let Err(reason) = rewrite(frame, &mut d, lay, a) {
                        self.stats.drop(reason);
                        pool.free(*pkt);
                        return;
                    }
                    *pkt = d;
                }
            }
        }
    }
}
