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
use crate::policy_log::{Logged, PolicyLog};
use crate::stats::PmdStats;
use crate::tunnel::{PendingMetadata, PushCtx, PushError, TunnelState};
use flowtable::action::{CtSpec, FROZEN_WORDS};
use flowtable::conntrack::{apply_rewrite, ConnTrack, CtConfig, CtPacket, CtVerdict};
use flowtable::emc::{Emc, DEFAULT_ENTRIES, DEFAULT_INV_PROB};
use flowtable::extract::{extract, Layout};
use flowtable::mac::Learn;
use flowtable::megaflow::{MegaflowRef, MegaflowTable, RevalidateStats, DEFAULT_MAX_FLOWS};
use flowtable::tunnel::TunnelKey;
use flowtable::Field;
use flowtable::{translate, Bridge, DpAction, DropReason, FlowKey, FlowSpec, PortNo};
use std::sync::Arc;

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
    seen_version: Option<u64>,
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
                    emc.insert(&sc.keys[i], sc.hashes[i], r);
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
                emc.insert(&sc.keys[i], sc.hashes[i], r);
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
                        hash: sc.hashes[i],
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
                    hash: sc.hashes[m],
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

/// What the executor needs beyond the packet: the rule set (tunnel ports,
/// routes, TLV map), the thread's tunnel state, the connection table, where
/// recirculated packets go, the packet's key as looked up, and where the
/// packet came from (an ICMP error goes back there).
struct ExecCtx<'a> {
    br: &'a Bridge,
    tunnel: &'a mut TunnelState,
    ct: &'a ConnTrack,
    recirc: &'a mut Recirc,
    key: &'a FlowKey,
    in_port: PortNo,
    now_ms: u64,
    hash: u32,
    log: &'a mut PolicyLog,
}

/// Runs datapath actions on one packet: rewrites in place, a copy for every
/// output but the last, the packet itself for the last.
#[inline]
fn execute(
    stats: &mut PmdStats,
    pool: &mut FramePool,
    tx: &mut impl TxPorts,
    cx: &mut ExecCtx<'_>,
    actions: &[DpAction],
    pkt: &mut PacketDesc,
    lay: &mut Layout,
) {
    // The last action that needs the packet: an output, a recirculation,
    // or a reject, log or ct, which run even when the packet goes nowhere
    // (a connection is committed even when the packet is then dropped).
    let last_out = actions
        .iter()
        .rposition(|a| a.is_output() || a.acts_without_output() || matches!(a, DpAction::Ct(_)));
    let Some(last_out) = last_out else {
        let reason = match actions.last() {
            Some(DpAction::Drop(r)) => *r,
            _ => DropReason::NoOutput,
        };
        stats.drop(reason);
        pool.free(*pkt);
        return;
    };
    let mut md = PendingMetadata::default();
    // Whether the bytes may differ from the key the packet was looked up
    // by: a recirculated packet is then parsed again.
    let mut rewritten = false;
    for (i, a) in actions[..=last_out].iter().enumerate() {
        match a {
            DpAction::Output(_) | DpAction::TunnelPush { .. } | DpAction::Ct(_)
                if a.is_output() =>
            {
                let out = if i == last_out {
                    *pkt
                } else {
                    match pool.clone_packet(pkt) {
                        Some(c) => {
                            stats.tx_copies += 1;
                            c
                        }
                        None => {
                            stats.drop(DropReason::NoBuffer);
                            continue;
                        }
                    }
                };
                let mut out = out;
                let port = match *a {
                    DpAction::TunnelPush { port, vni, dst } => {
                        let push = PushCtx {
                            port,
                            vni,
                            dst,
                            hash: cx.hash,
                            now_ms: cx.now_ms,
                        };
                        match cx.tunnel.push(cx.br, pool, &mut out, &md, &push) {
                            Ok(p) => p,
                            Err(PushError::Drop(reason)) => {
                                stats.drop(reason);
                                pool.free(out);
                                continue;
                            }
                            Err(PushError::TooBig(mtu)) => {
                                too_big(stats, pool, tx, cx.in_port, &out, mtu);
                                stats.drop(DropReason::TunnelMtu);
                                pool.free(out);
                                continue;
                            }
                        }
                    }
                    DpAction::Output(p) => p,
                    DpAction::Ct(ref spec) => {
                        // The copy (or the packet itself, when last) is
                        // tracked and goes to the next pass.
                        let mut l = *lay;
                        match conntrack(cx, pool, &mut out, &mut l, spec) {
                            Ok(v) => {
                                let reparse = rewritten || v.nat.is_some();
                                recirculate(cx, stats, pool, out, &l, reparse, spec, &v)
                            }
                            Err(reason) => {
                                stats.drop(reason);
                                pool.free(out);
                            }
                        }
                        continue;
                    }
                    _ => continue,
                };
                if let Err(reason) = tx.send(port, out, pool) {
                    stats.drop(reason);
                    pool.free(out);
                }
            }
            DpAction::Ct(spec) => {
                // Tracked in place: NAT rewrites this packet, and the
                // actions after it see the result.
                match conntrack(cx, pool, pkt, lay, spec) {
                    Ok(v) => rewritten |= v.nat.is_some(),
                    Err(reason) => {
                        stats.drop(reason);
                        pool.free(*pkt);
                        return;
                    }
                }
            }
            DpAction::TunnelMetadata { slot, value } => {
                if let Some(v) = md.md.get_mut(*slot as usize) {
                    *v = *value;
                    md.set |= 1 << slot;
                }
            }
            DpAction::Drop(_) => {}
            DpAction::Reject(how) => {
                reject(stats, pool, tx, cx, pkt, lay, *how);
                stats.drop(DropReason::Rejected);
                pool.free(*pkt);
                return;
            }
            DpAction::Log { name, verdict } => {
                match cx
                    .log
                    .record(cx.now_ms, *name, *verdict, pool.data(pkt), lay)
                {
                    Logged::Recorded => stats.log_records += 1,
                    Logged::Deduped => stats.log_deduped += 1,
                    Logged::Limited => stats.log_rate_limited += 1,
                    Logged::NotIp => {}
                }
            }
            _ => {
                let mut d = *pkt;
                let frame = pool.frame_mut(&d);
                if let Err(reason) = rewrite(frame, &mut d, lay, a) {
                    stats.drop(reason);
                    pool.free(*pkt);
                    return;
                }
                rewritten = true;
                *pkt = d;
            }
        }
    }
    if !actions[last_out].is_output() {
        // A `log` or an in-place `ct` was the last action to need the
        // packet: it still has to be let go, and counted if it went
        // nowhere.
        if !actions.iter().any(DpAction::is_output) {
            let reason = match actions.last() {
                Some(DpAction::Drop(r)) => *r,
                _ => DropReason::NoOutput,
            };
            stats.drop(reason);
        }
        pool.free(*pkt);
    }
}

/// Answers a rejected packet where it came from: out of the port it came
/// in on or, for a packet that came out of a tunnel, encapsulated back to
/// the node that sent it, with the VNI it arrived with (its outer source
/// address and VNI are in the flow key). That is where a policy enforced
/// at the destination node (Antrea's ingress rules) rejects a pod of
/// another node.
fn reject(
    stats: &mut PmdStats,
    pool: &mut FramePool,
    tx: &mut impl TxPorts,
    cx: &mut ExecCtx<'_>,
    pkt: &PacketDesc,
    lay: &Layout,
    how: flowtable::RejectReply,
) {
    let Some(mut reply) = crate::reject::reply(pool, pkt, lay.l3 as usize, how) else {
        return;
    };
    let port = if cx.br.ports.tunnel(cx.in_port).is_some() {
        let src4 = cx.key.get(Field::TunSrc) as u32;
        let dst = if src4 != 0 {
            std::net::Ipv4Addr::from(src4).to_ipv6_mapped().octets()
        } else {
            cx.key.get(Field::TunIpv6Src).to_be_bytes()
        };
        let push = PushCtx {
            port: cx.in_port,
            vni: cx.key.get(Field::TunId) as u32 & 0xff_ffff,
            dst,
            hash: cx.hash,
            now_ms: cx.now_ms,
        };
        let md = PendingMetadata::default();
        match cx.tunnel.push(cx.br, pool, &mut reply, &md, &push) {
            Ok(uplink) => uplink,
            Err(e) => {
                stats.drop(match e {
                    PushError::Drop(reason) => reason,
                    PushError::TooBig(_) => DropReason::TunnelMtu,
                });
                pool.free(reply);
                return;
            }
        }
    } else {
        cx.in_port
    };
    match tx.send(port, reply, pool) {
        Ok(()) => stats.reject_sent += 1,
        Err(reason) => {
            stats.drop(reason);
            pool.free(reply);
        }
    }
}

/// Runs the packet through the connection table and applies the NAT
/// rewrite the verdict asks for. A packet conntrack cannot parse (a
/// fragment, a truncated header) is `+trk+inv`, as in OVS, and left for the
/// rules to judge; a connection that could not be committed is a drop.
fn conntrack(
    cx: &mut ExecCtx<'_>,
    pool: &mut FramePool,
    pkt: &mut PacketDesc,
    lay: &mut Layout,
    spec: &CtSpec,
) -> Result<CtVerdict, DropReason> {
    let verdict = match CtPacket::parse(pool.data(pkt), lay) {
        Ok(p) => cx.ct.process_exec(
            &p,
            spec.zone,
            cx.now_ms,
            spec.commit,
            spec.nat.as_ref(),
            &spec.exec,
        ),
        Err(_) => CtVerdict {
            state: flowtable::field::ct_state::TRK | flowtable::field::ct_state::INV,
            mark: 0,
            label: 0,
            nat: None,
            drop: None,
        },
    };
    if let Some(reason) = verdict.drop {
        return Err(reason);
    }
    if let Some(rw) = verdict.nat {
        let d = *pkt;
        let (off, len) = (d.off as usize, d.len as usize);
        let frame = pool.frame_mut(&d);
        apply_rewrite(
            &mut frame[off..off + len],
            lay.l3 as usize,
            lay.l4 as usize,
            &rw,
        )
        .map_err(|_| DropReason::BadRewrite)?;
    }
    Ok(verdict)
}

/// Queues a tracked packet for the next pass, keyed by its bytes as they
/// are now (parsed again when `reparse`, because a rewrite or NAT changed
/// them; otherwise the key it was looked up by still describes them), with
/// the input port and tunnel fields of its first pass, the registers and
/// metadata frozen at the `ct` action, and the verdict's `ct_*` fields.
#[allow(clippy::too_many_arguments)]
fn recirculate(
    cx: &mut ExecCtx<'_>,
    stats: &mut PmdStats,
    pool: &mut FramePool,
    pkt: PacketDesc,
    lay: &Layout,
    reparse: bool,
    spec: &CtSpec,
    v: &CtVerdict,
) {
    let (Some(table), r) = (spec.table, &mut *cx.recirc) else {
        pool.free(pkt);
        return;
    };
    if r.n == BATCH {
        stats.drop(DropReason::RecircLimit);
        pool.free(pkt);
        return;
    }
    let key = &mut r.keys[r.n];
    if !reparse {
        *key = *cx.key;
        r.layouts[r.n] = *lay;
    } else {
        match extract(pool.data(&pkt), cx.in_port, key) {
            Ok(l) => r.layouts[r.n] = l,
            Err(reason) => {
                stats.drop(reason);
                pool.free(pkt);
                return;
            }
        }
    }
    for f in [
        Field::TunId,
        Field::TunSrc,
        Field::TunDst,
        Field::TunIpv6Src,
        Field::TunIpv6Dst,
        Field::TunMetadata0,
        Field::TunMetadata1,
    ] {
        key.set(f, cx.key.get(f));
    }
    let first = Field::Metadata.word();
    key.w[first..first + FROZEN_WORDS].copy_from_slice(&spec.frozen);
    key.set(Field::CtState, v.state.into());
    key.set(Field::CtZone, spec.zone.into());
    key.set(Field::CtMark, v.mark.into());
    key.set(Field::CtLabel, v.label);
    key.set(Field::RecircId, flowtable::xlate::recirc_id(table).into());
    r.pkts[r.n] = pkt;
    r.n += 1;
}

/// Answers a packet too big for the tunnel with ICMP "fragmentation
/// needed" or "Packet Too Big" on the port it came from.
fn too_big(
    stats: &mut PmdStats,
    pool: &mut FramePool,
    tx: &mut impl TxPorts,
    in_port: PortNo,
    pkt: &PacketDesc,
    mtu: u16,
) {
    if let Some(reply) = crate::tunnel::icmp_too_big(pool, pkt, mtu) {
        stats.tunnel_mtu_replies += 1;
        if let Err(reason) = tx.send(in_port, reply, pool) {
            stats.drop(reason);
            pool.free(reply);
        }
    }
}
