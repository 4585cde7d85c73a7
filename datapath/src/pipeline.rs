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
use crate::policy_log::PolicyLog;
use crate::stats::PmdStats;
use crate::tunnel::TunnelState;
use flowtable::conntrack::{ConnTrack, CtConfig};
use flowtable::emc::{Emc, DEFAULT_ENTRIES, DEFAULT_INV_PROB};
use flowtable::extract::{extract, Layout};
use flowtable::mac::Learn;
use flowtable::megaflow::{MegaflowRef, MegaflowTable, RevalidateStats, DEFAULT_MAX_FLOWS};
use flowtable::tunnel::TunnelKey;
use flowtable::{translate, Bridge, DropReason, FlowKey, FlowSpec, PortNo};
use std::sync::Arc;

mod execute;
mod offers;
use execute::{execute, ExecCtx};
pub use offers::{Offers, OFFER_HIT_SAMPLE};

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

/// The state one poll thread owns: its caches, counters and the scratch
/// arrays a batch is processed in (kept here so they are not re-initialised
/// for every batch).
pub struct Pmd {
    /// Exact-match cache.
    pub emc: Emc,
    /// Megaflow table.
    pub megaflows: MegaflowTable,
    /// Counters.
    pub stats: PmdStats,
    /// The bridge's rules version and other version the caches were last
    /// brought in line with.
    seen_version: Option<(u64, u64)>,
    /// What the last revalidation did.
    pub last_revalidation: RevalidateStats,
    scratch: Box<Scratch>,
    batches: u64,
    /// What `normal` learned in upcalls since the caller last took it: the
    /// bridge is shared and read-only here, so learning goes back to whoever
    /// owns it ([`Pmd::take_learned`]).
    learned: Vec<Learn>,
    /// Geneve templates and unresolved remotes.
    pub tunnel: TunnelState,
    /// The connection table, shared by every poll thread of the switch.
    pub ct: Arc<ConnTrack>,
    /// Rules `learn(...)` made in upcalls, for the bridge's owner to add
    /// ([`Pmd::take_learned_flows`]).
    learned_flows: Vec<FlowSpec>,
    /// Records of `log` actions waiting for the control thread (replace
    /// it to change the rate limit or the dedupe window).
    pub policy_log: PolicyLog,
    /// Keys for the XDP fast path (replace with [`Offers::enabled`] to
    /// collect them).
    pub offers: Offers,
}

/// Learned rules a poll thread holds for its owner at most; more are
/// dropped until the owner takes them (an upcall later learns them again).
const MAX_PENDING_LEARNED: usize = 4096;

/// Per-batch working state.
struct Scratch {
    pkts: [PacketDesc; BATCH],
    keys: [FlowKey; BATCH],
    layouts: [Layout; BATCH],
    hashes: [u32; BATCH],
    flows: [Option<MegaflowRef>; BATCH],
    groups: [Group; BATCH],
    /// Packets that a `ct(table=T)` sent to another pass.
    recirc: Recirc,
}

/// The packets of the next pass: each with the key it is looked up by
/// (re-parsed after conntrack, with registers, metadata, tunnel and `ct_*`
/// fields carried in) and its layout.
struct Recirc {
    pkts: [PacketDesc; BATCH],
    keys: [FlowKey; BATCH],
    layouts: [Layout; BATCH],
    n: usize,
}

/// How many passes one packet may make (OVS's userspace datapath allows
/// the same number of recirculations).
pub const MAX_PASSES: u32 = 6;

/// Packets of one batch that share a megaflow.
#[derive(Clone, Copy)]
struct Group {
    flow: MegaflowRef,
    members: [u8; BATCH],
    n: u8,
}

/// How often (in batches) subtables are re-sorted by hits.
const SORT_EVERY: u64 = 1024;

impl Pmd {
    /// A poll thread's state with the given tunables.
    pub fn new(cfg: PmdConfig) -> Pmd {
        let none = MegaflowRef { slot: 0, gen: 0 };
        Pmd {
            emc: Emc::new(cfg.emc_entries, cfg.emc_inv_prob),
            megaflows: MegaflowTable::new(cfg.max_megaflows),
            stats: PmdStats::default(),
            seen_version: None,
            last_revalidation: RevalidateStats::default(),
            scratch: Box::new(Scratch {
                pkts: [PacketDesc::default(); BATCH],
                keys: [FlowKey::default(); BATCH],
                layouts: [Layout::default(); BATCH],
                hashes: [0; BATCH],
                flows: [None; BATCH],
                groups: [Group {
                    flow: none,
                    members: [0; BATCH],
                    n: 0,
                }; BATCH],
                recirc: Recirc {
                    pkts: [PacketDesc::default(); BATCH],
                    keys: [FlowKey::default(); BATCH],
                    layouts: [Layout::default(); BATCH],
                    n: 0,
                },
            }),
            batches: 0,
            learned: Vec::new(),
            tunnel: TunnelState::default(),
            ct: Arc::new(ConnTrack::new(CtConfig::default())),
            learned_flows: Vec::new(),
            policy_log: PolicyLog::new(
                crate::policy_log::DEFAULT_RATE,
                crate::policy_log::DEFAULT_WINDOW_MS,
            ),
            offers: Offers::default(),
        }
    }

    /// Brings the caches in line with `br` if its rules or MAC table changed
    /// since they were built. When only rules changed and the bridge's
    /// journal still covers every change since, only the megaflows whose
    /// translation looked up a changed table are re-translated.
    pub fn sync(&mut self, br: &Bridge) {
        let now = (br.rules_version(), br.other_version());
        let changed = match self.seen_version {
            Some(seen) if seen == now => return,
            Some((rules, other)) if other == now.1 => br.tables_changed_since(rules),
            _ => None,
        };
        self.last_revalidation = self
            .megaflows
            .revalidate_some(changed.as_ref(), |k| translate(br, k, None));
        let r = &self.last_revalidation;
        self.stats.revalidations += 1;
        self.stats.revalidated_flows += (r.kept + r.updated + r.deleted) as u64;
        self.stats.revalidation_skipped += r.skipped as u64;
        self.offers.forget();
        self.seen_version = Some(now);
    }

    /// MAC learning from upcalls since the last call, for the bridge's owner
    /// to apply ([`Bridge::learn`]); the next batch then revalidates.
    pub fn take_learned(&mut self, out: &mut Vec<Learn>) {
        out.append(&mut self.learned);
    }

    /// The rules `learn(...)` made since the last call, for the bridge's
    /// owner to add; the next batch then revalidates.
    pub fn take_learned_flows(&mut self, out: &mut Vec<FlowSpec>) {
        out.append(&mut self.learned_flows);
    }

    /// Runs one batch received on `in_port` through the pipeline.
    pub fn process(
        &mut self,
        br: &Bridge,
        pool: &mut FramePool,
        tx: &mut impl TxPorts,
        in_port: PortNo,
        batch: &Batch,
        now_ms: u64,
    ) {
        self.process_with(br, pool, tx, in_port, batch, None, now_ms)
    }

    /// Runs a batch received on an uplink: Geneve packets for one of the
    /// bridge's tunnel ports are decapsulated and enter on that port; the
    /// rest are dropped and counted.
    pub fn process_uplink(
        &mut self,
        br: &Bridge,
        pool: &mut FramePool,
        tx: &mut impl TxPorts,
        batch: &Batch,
        now_ms: u64,
    ) {
        let mut ports = [0 as PortNo; BATCH];
        let mut keys = [TunnelKey::default(); BATCH];
        let mut ok = Batch::default();
        let mut n_ok = 0;
        for i in 0..batch.len {
            let mut p = batch.pkts[i];
            match self.tunnel.decap(br, pool.data(&p), &mut p) {
                Ok((port, key)) => {
                    ports[n_ok] = port;
                    keys[n_ok] = key;
                    ok.pkts[n_ok] = p;
                    n_ok += 1;
                }
                Err(reason) => {
                    self.stats.rx_packets += 1;
                    self.stats.drop(reason);
                    pool.free(p);
                }
            }
        }
        ok.len = n_ok;
        // Nearly always one tunnel port; otherwise one pass per port.
        if n_ok > 0 && ports[..n_ok].iter().all(|&p| p == ports[0]) {
            self.process_with(br, pool, tx, ports[0], &ok, Some(&keys), now_ms);
            return;
        }
        let mut left = n_ok;
        while left > 0 {
            let port = ports[0];
            let mut sub = Batch::default();
            let mut sub_keys = [TunnelKey::default(); BATCH];
            let mut rest = 0;
            for i in 0..left {
                if ports[i] == port {
                    sub_keys[sub.len] = keys[i];
                    sub.pkts[sub.len] = ok.pkts[i];
                    sub.len += 1;
                } else {
                    ports[rest] = ports[i];
                    keys[rest] = keys[i];
                    ok.pkts[rest] = ok.pkts[i];
                    rest += 1;
                }
            }
            left = rest;
            self.process_with(br, pool, tx, port, &sub, Some(&sub_keys), now_ms);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn process_with(
        &mut self,
        br: &Bridge,
        pool: &mut FramePool,
        tx: &mut impl TxPorts,
        in_port: PortNo,
        batch: &Batch,
        tun: Option<&[TunnelKey; BATCH]>,
        now_ms: u64,
    ) {
        self.sync(br);
        self.batches += 1;
        if self.batches % SORT_EVERY == 0 {
            self.megaflows.sort_subtables();
        }
        let mut n = batch.len;
        let Pmd {
            emc,
            megaflows,
            stats,
            scratch,
            learned,
            tunnel,
            ct,
            learned_flows,
            policy_log,
            offers,
            ..
        } = self;
        let sc = &mut **scratch;
        stats.rx_packets += n as u64;
        sc.pkts = batch.pkts;

        // Parse every packet once.
        let mut alive: u32 = 0;
        for i in 0..n {
            let pkt = sc.pkts[i];
            match extract(pool.data(&pkt), in_port, &mut sc.keys[i]) {
                Ok(l) => {
                    if let Some(t) = tun {
                        t[i].write(&mut sc.keys[i]);
                    }
                    sc.layouts[i] = l;
                    alive |= 1 << i;
                }
                Err(reason) => {
                    stats.drop(reason);
                    pool.free(pkt);
                }
            }
        }

        let mut passes = 1;
        loop {
            let mut st = Stages {
                br,
                emc,
                megaflows,
                stats,
                learned,
                learned_flows,
                tunnel,
                ct,
                policy_log,
                offers,
                in_port,
                now_ms,
            };
            st.pass(pool, tx, sc, n, alive);
            let r = &mut sc.recirc;
            if r.n == 0 {
                return;
            }
            n = std::mem::take(&mut r.n);
            if passes == MAX_PASSES {
                for p in &r.pkts[..n] {
                    stats.drop(DropReason::RecircLimit);
                    pool.free(*p);
                }
                return;
            }
            passes += 1;
            stats.recirc += n as u64;
            sc.pkts[..n].copy_from_slice(&r.pkts[..n]);
            sc.keys[..n].copy_from_slice(&r.keys[..n]);
            sc.layouts[..n].copy_from_slice(&r.layouts[..n]);
            alive = (((1u64 << n) - 1) & u32::MAX as u64) as u32;
        }
    }
}

/// The parts of a poll thread one pass over a batch works with.
struct Stages<'a> {
    br: &'a Bridge,
    emc: &'a mut Emc,
    megaflows: &'a mut MegaflowTable,
    stats: &'a mut PmdStats,
    learned: &'a mut Vec<Learn>,
    learned_flows: &'a mut Vec<FlowSpec>,
    tunnel: &'a mut TunnelState,
    ct: &'a ConnTrack,
    policy_log: &'a mut PolicyLog,
    offers: &'a mut Offers,
    in_port: PortNo,
    now_ms: u64,
}

impl Stages<'_> {
    /// One pass over the packets of `sc` marked `alive`, whose keys are
    /// filled in: caches, upcalls, then each flow's actions. Packets that
    /// recirculate land in `sc.recirc` for the next pass.
    fn pass(
        &mut self,
        pool: &mut FramePool,
        tx: &mut impl TxPorts,
        sc: &mut Scratch,
        n: usize,
        mut alive: u32,
    ) {
        let Stages {
            br,
            emc,
            megaflows,
            stats,
            learned,
            learned_flows,
            tunnel,
            ct,
            policy_log,
            offers,
            in_port,
            now_ms,
        } = self;
        let (br, ct, in_port, now_ms) = (*br, *ct, *in_port, *now_ms);

        // Exact-match cache.
        let mut miss: u32 = 0;
        for i in 0..n {
            if alive & (1 << i) == 0 {
                continue;
            }
            let hash = sc.keys[i].hash();
            sc.hashes[i] = hash;
            sc.flows[i] = emc
                .lookup(&sc.keys[i], hash)
                .filter(|r| megaflows.get(*r).is_some());
            if sc.flows[i].is_none() {
                miss |= 1 << i;
            } else {
                offers.hit(&sc.keys[i]);
            }
        }
        stats.emc_hit += (alive & !miss).count_ones() as u64;

        // Megaflow table, a subtable at a time over all misses.
        if miss != 0 {
            let left = megaflows.lookup_batch(&sc.keys[..n], miss, &mut sc.flows);
            let mut hit = miss & !left;
            stats.megaflow_hit += hit.count_ones() as u64;
            while hit != 0 {
                let i = hit.trailing_zeros() as usize;
                hit &= hit - 1;
                if let Some(r) = sc.flows[i] {
                    if emc.insert(&sc.keys[i], sc.hashes[i], r) {
                        offers.inserted(&sc.keys[i]);
                    } else {
                        offers.megaflow_hit(&sc.keys[i], sc.hashes[i]);
                    }
                }
            }
            miss = left;
        }

        // Upcalls. A miss upcalled earlier in the batch installs a megaflow
        // that later misses of the same flow find.
        while miss != 0 {
            let i = miss.trailing_zeros() as usize;
            miss &= miss - 1;
            if let Some(r) = megaflows.lookup(&sc.keys[i]) {
                stats.megaflow_hit += 1;
                if emc.insert(&sc.keys[i], sc.hashes[i], r) {
                    offers.inserted(&sc.keys[i]);
                } else {
                    offers.megaflow_hit(&sc.keys[i], sc.hashes[i]);
                }
                sc.flows[i] = Some(r);
                continue;
            }
            stats.upcall += 1;
            let mut x = translate(br, &sc.keys[i], None);
            learned.extend_from_slice(&x.learned);
            if learned_flows.len() < MAX_PENDING_LEARNED {
                learned_flows.append(&mut x.learned_flows);
            }
            match megaflows.insert(&sc.keys[i], &x, now_ms) {
                Ok(r) => {
                    emc.insert(&sc.keys[i], sc.hashes[i], r);
                    // The packet that installs a megaflow is offered
                    // whatever the EMC does: a flow of a few packets (a
                    // ping) would otherwise wait for the EMC's 1 in 100.
                    offers.inserted(&sc.keys[i]);
                    sc.flows[i] = Some(r);
                }
                Err(_) => {
                    // The table is full: execute this translation uncached.
                    stats.upcall_uncached += 1;
                    alive &= !(1 << i);
                    let len = sc.pkts[i].len as u64;
                    for r in &x.rules {
                        r.stats.credit(1, len, now_ms);
                    }
                    let mut cx = ExecCtx {
                        br,
                        tunnel,
                        ct,
                        recirc: &mut sc.recirc,
                        key: &sc.keys[i],
                        in_port,
                        now_ms,
                        log: policy_log,
                    };
                    execute(
                        stats,
                        pool,
                        tx,
                        &mut cx,
                        &x.actions,
                        &mut sc.pkts[i],
                        &mut sc.layouts[i],
                    );
                }
            }
        }

        // Group by megaflow, then run each group's actions over its packets.
        let mut n_groups = 0;
        let mut left = alive;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            let Some(f) = sc.flows[i] else { continue };
            let g = match sc.groups[..n_groups].iter().position(|g| g.flow == f) {
                Some(g) => g,
                None => {
                    sc.groups[n_groups].flow = f;
                    sc.groups[n_groups].n = 0;
                    n_groups += 1;
                    n_groups - 1
                }
            };
            let grp = &mut sc.groups[g];
            grp.members[grp.n as usize] = i as u8;
            grp.n += 1;
        }
        for g in &sc.groups[..n_groups] {
            let members = &g.members[..g.n as usize];
            let bytes: u64 = members
                .iter()
                .map(|&m| sc.pkts[m as usize].len as u64)
                .sum();
            // Take the actions out of the table for the duration of the
            // group so the executor can borrow the pool and ports mutably.
            let Some(mf) = megaflows.get_mut(g.flow) else {
                continue;
            };
            mf.packets += g.n as u64;
            mf.bytes += bytes;
            mf.used_ms = now_ms;
            let actions = std::mem::take(&mut mf.actions);
            for &m in members {
                let m = m as usize;
                let mut cx = ExecCtx {
                    br,
                    tunnel,
                    ct,
                    recirc: &mut sc.recirc,
                    key: &sc.keys[m],
                    in_port,
                    now_ms,
                    log: policy_log,
                };
                execute(
                    stats,
                    pool,
                    tx,
                    &mut cx,
                    &actions,
                    &mut sc.pkts[m],
                    &mut sc.layouts[m],
                );
            }
            if let Some(mf) = megaflows.get_mut(g.flow) {
                mf.actions = actions;
            }
        }
    }
}
