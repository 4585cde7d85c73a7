//! The poll-mode thread: owns its ports, its frame pool (the UMEM), its
//! caches, and runs receive → pipeline → transmit in batches.
//!
//! Polling is adaptive: while packets arrive the loop spins; 300 µs after the
//! last packet it sleeps in `poll(2)` on every port's descriptor (AF_XDP
//! with need_wakeup lets the kernel wake it), with a timeout so that rule
//! changes, statistics and port checks still happen. An idle switch thus costs
//! a few wake-ups a second instead of a core.
//!
//! The thread opens no port itself: the control thread opens each queue for
//! it and hands it over through the thread's [`Inbox`] (`daemon::attach`);
//! the thread activates it between two batches and polls it from then on.
//! A port detached (deleted, or its interface gone) is drained and given
//! back to the control thread to close, so no socket teardown ever runs
//! on the packet path.

use super::inbox::{Inbox, Released, ToPmd};
use super::portset::PortSet;
use super::publish::Published;
use crate::buf::{Batch, FramePool};
use crate::pipeline::{Pmd, PmdConfig};
use crate::stats::PmdStats;
use flowtable::mac::Learn;
use flowtable::{Bridge, PortNo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

pub use super::attach::Opener;

/// What a poll thread tells the control thread.
#[derive(Debug)]
pub enum ToControl {
    /// MAC learning from upcalls and from megaflows still in use.
    Learned(Vec<Learn>),
    /// Rules made by `learn(...)` in upcalls.
    LearnedFlows(Vec<flowtable::FlowSpec>),
    /// A port went up or down on one thread.
    PortState {
        /// The thread.
        thread: usize,
        /// The port.
        no: PortNo,
        /// Up or down.
        up: bool,
    },
    /// The thread's counters, once a second.
    Report(PmdReport),
    /// The thread's last counters, at exit.
    Exited(PmdReport),
    /// Remote VTEPs that packets wanted and that have no route yet.
    Resolve(Vec<std::net::IpAddr>),
    /// The thread's megaflows, formatted, answering dump request `seq`,
    /// and the audit of its caches against the current rules.
    Megaflows {
        /// The thread.
        thread: usize,
        /// The request answered.
        seq: u64,
        /// One line per megaflow.
        lines: Vec<String>,
        /// `revalidate --check`'s answer for this thread.
        check: CheckReport,
    },
    /// A control-socket or metrics request for the control thread.
    Call(super::handle::Call),
    /// Packets copied for `capture`.
    Captured(Vec<Captured>),
    /// Policy log records (`log(name=...)`), to be written as lines.
    PolicyLog(Vec<crate::policy_log::LogRecord>),
    /// Flow keys offered to the XDP fast path (`daemon::fastpath`).
    Offer(Vec<flowtable::FlowKey>),
    /// A port the thread gave back, to be closed by the control thread.
    Released {
        /// The thread.
        thread: usize,
        /// The port.
        no: PortNo,
        /// The port itself (dropping it closes it).
        port: Released,
        /// It could not be activated (else it was detached).
        failed: bool,
    },
}

impl From<super::handle::Call> for ToControl {
    fn from(c: super::handle::Call) -> ToControl {
        ToControl::Call(c)
    }
}

/// A poll thread's counters and the state of its ports.
#[derive(Debug, Clone, Default)]
pub struct PmdReport {
    /// Thread number (= the queue it owns on every port).
    pub thread: usize,
    /// The core it is pinned to.
    pub core: Option<usize>,
    /// Pipeline counters.
    pub stats: PmdStats,
    /// Time spent in loop iterations that received packets.
    pub busy_ns: u64,
    /// Time since the thread started.
    pub total_ns: u64,
    /// Frames in its pool (the UMEM).
    pub umem_frames: usize,
    /// Of those, frames free in the pool: neither lent to the kernel (fill
    /// and transmit rings) nor held by the thread.
    pub umem_free: usize,
    /// Its ports.
    pub ports: Vec<PortReport>,
}

/// One port as one poll thread sees it.
#[derive(Debug, Clone)]
pub struct PortReport {
    /// Port number.
    pub no: PortNo,
    /// Interface name.
    pub name: String,
    /// Attachment (`afxdp native copy`, `af_packet tx-only`, ...), or
    /// `down`.
    pub mode: String,
    /// The queue this thread uses.
    pub queue: u32,
    /// Open.
    pub up: bool,
    /// Counters of this thread's socket on the port (kept across a
    /// reopen).
    pub stats: crate::stats::PortStats,
}

/// What `capture` is watching: set by the control thread, read by the poll
/// threads once per loop (one relaxed load while nobody captures).
#[derive(Default)]
pub struct Tap {
    /// Port number, 0 for none.
    pub port: std::sync::atomic::AtomicU32,
}

pub use super::portset::Captured;

/// How long the thread keeps spinning after the last packet before it
/// sleeps: long enough to catch the reply to what it just forwarded (a ping
/// answered by the pod on the other port) without paying a wake-up, short
/// enough that sparse traffic costs little CPU.
const SPIN_AFTER_TRAFFIC: std::time::Duration = std::time::Duration::from_micros(300);
/// Longest sleep, so control work still happens on an idle switch.
const SLEEP_MS: i32 = 100;
/// Megaflows idle this long are deleted (OVS's default max-idle).
const MEGAFLOW_IDLE_MS: u64 = 10_000;

/// Everything a poll thread needs to start.
pub struct PmdThread {
    /// Thread number; the thread owns this queue of every port.
    pub id: usize,
    /// Its frames: the UMEM of its AF_XDP sockets (made by the control
    /// thread, which opens the sockets on it).
    pub pool: FramePool,
    /// Ports handed over and taken back by the control thread.
    pub inbox: Arc<Inbox>,
    /// Cache tunables.
    pub cfg: PmdConfig,
    /// Policy log lines per second and dedupe window in milliseconds.
    pub policy_log: (u32, u64),
    /// Core to pin to.
    pub core: Option<usize>,
    /// Rule sets from the control thread.
    pub published: Arc<Published>,
    /// Messages to the control thread.
    pub to_control: Sender<ToControl>,
    /// Set to stop.
    pub shutdown: Arc<AtomicBool>,
    /// The daemon's clock: rule counters credited here are read by the
    /// control thread against the same start.
    pub epoch: Instant,
    /// Bumped by the control thread to ask for a megaflow dump.
    pub dump: Arc<std::sync::atomic::AtomicU64>,
    /// The port `capture` watches.
    pub tap: Arc<Tap>,
    /// The switch's connection table.
    pub ct: Arc<flowtable::conntrack::ConnTrack>,
    /// Offer flow keys to the XDP fast path.
    pub fast_path: bool,
}

impl PmdThread {
    /// Runs until `shutdown` is set.
    pub fn run(mut self) {
        if let Some(core) = self.core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::warn!(core, thread = self.id, "could not pin the poll thread");
            }
        }
        let mut pool = std::mem::replace(&mut self.pool, FramePool::new(0));
        let mut pmd = Pmd::new(self.cfg);
        pmd.ct = self.ct.clone();
        pmd.policy_log = crate::policy_log::PolicyLog::new(self.policy_log.0, self.policy_log.1);
        if self.fast_path {
            pmd.offers = crate::pipeline::Offers::enabled();
        }
        let mut seen = 0u64;
        let mut bridge: Arc<Bridge> = self.published.changed_since(&mut seen).unwrap_or_default();
        let mut ports = PortSet::new();
        let start = self.epoch;
        let mut dump_seen = self.dump.load(Ordering::Relaxed);
        let mut last_check = 0u64;
        let mut learned = Vec::new();
        let mut learned_flows = Vec::new();
        let mut unresolved = Vec::new();
        let mut batch = Batch::default();
        let mut last_packet = std::time::Duration::ZERO;
        let mut fds = Vec::new();
        let mut inbox = Vec::new();
        // Busy time: iterations that moved packets, measured from the clock
        // reads the loop makes anyway.
        let mut busy_ns = 0u64;
        let mut prev = (std::time::Duration::ZERO, false);
        while !self.shutdown.load(Ordering::Relaxed) {
            let now = start.elapsed();
            let now_ms = now.as_millis() as u64;
            if prev.1 {
                busy_ns += (now - prev.0).as_nanos() as u64;
            }
            prev = (now, false);
            if let Some(b) = self.published.changed_since(&mut seen) {
                bridge = b;
            }
            if self.inbox.pending() {
                self.inbox.take(&mut inbox);
                for m in inbox.drain(..) {
                    take_message(
                        &mut ports,
                        &mut pool,
                        m,
                        self.id,
                        &self.to_control,
                        &mut pmd.stats,
                    );
                }
            }
            let want = self.dump.load(Ordering::Relaxed);
            if want != dump_seen {
                dump_seen = want;
                let lines = dump_megaflows(self.id, &pmd, &bridge, now_ms);
                // Audit the caches as the next batch would use them:
                // brought in line with the current rules first.
                pmd.sync(&bridge);
                let check = check_caches(self.id, &pmd, &bridge);
                let _ = self.to_control.send(ToControl::Megaflows {
                    thread: self.id,
                    seq: want,
                    lines,
                    check,
                });
            }
            ports.tap = self.tap.port.load(Ordering::Relaxed);
            let got = ports.poll(&mut pmd, &bridge, &mut pool, &mut batch, now_ms);
            if !ports.captured.is_empty() {
                let c = std::mem::take(&mut ports.captured);
                let _ = self.to_control.send(ToControl::Captured(c));
            }
            pmd.tunnel.take_unresolved(&mut unresolved);
            if !unresolved.is_empty() {
                let _ = self
                    .to_control
                    .send(ToControl::Resolve(std::mem::take(&mut unresolved)));
            }
            if !pmd.policy_log.is_empty() {
                let mut recs = Vec::new();
                pmd.policy_log.take(&mut recs);
                let _ = self.to_control.send(ToControl::PolicyLog(recs));
            }
            if !pmd.offers.is_empty() {
                let mut keys = Vec::new();
                pmd.offers.take(&mut keys);
                let _ = self.to_control.send(ToControl::Offer(keys));
            }
            pmd.take_learned(&mut learned);
            if !learned.is_empty() {
                let _ = self
                    .to_control
                    .send(ToControl::Learned(std::mem::take(&mut learned)));
            }
            pmd.take_learned_flows(&mut learned_flows);
            if !learned_flows.is_empty() {
                let _ = self
                    .to_control
                    .send(ToControl::LearnedFlows(std::mem::take(&mut learned_flows)));
            }
            if now_ms >= last_check + 1000 {
                last_check = now_ms;
                let mut refresh = Vec::new();
                pmd.megaflows.push_stats(now_ms, &mut refresh);
                pmd.megaflows.expire(now_ms, MEGAFLOW_IDLE_MS);
                if !refresh.is_empty() {
                    let _ = self.to_control.send(ToControl::Learned(refresh));
                }
                // Frames of ports closed by the control thread, for a thread
                // that has no AF_XDP port left to reclaim them in `flush`.
                pool.reclaim();
                let r = report(&self, &ports, &pool, &pmd.stats, busy_ns, now);
                let _ = self.to_control.send(ToControl::Report(r));
            }
            if got > 0 {
                last_packet = now;
                prev.1 = true;
                continue;
            }
            if now.saturating_sub(last_packet) >= SPIN_AFTER_TRAFFIC {
                fds.clear();
                fds.extend(self.inbox.poll_fd());
                fds.extend(
                    ports
                        .slots
                        .iter()
                        .filter_map(|s| s.port.as_ref().and_then(|p| p.poll_fd())),
                );
                if fds.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(SLEEP_MS as u64));
                } else if let Err(e) = crate::sys::poll_readable(&fds, SLEEP_MS) {
                    tracing::warn!(error = %e, "poll failed");
                }
                ports.sweep_next();
            }
        }
        let r = report(&self, &ports, &pool, &pmd.stats, busy_ns, start.elapsed());
        let _ = self.to_control.send(ToControl::Exited(r));
    }
}

/// One poll thread's audit of its caches (`revalidate --check`).
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Megaflows translated again.
    pub megaflows: usize,
    /// EMC entries naming a live megaflow.
    pub emc_live: usize,
    /// EMC entries naming a deleted one.
    pub emc_dead: usize,
    /// One line per entry the current rules would not produce.
    pub bad: Vec<String>,
}

/// Re-translates every megaflow of the thread against `br` and checks its
/// EMC (see [`flowtable::cache_check`]).
fn check_caches(id: usize, pmd: &Pmd, br: &Bridge) -> CheckReport {
    let c = flowtable::cache_check::check(&pmd.emc, &pmd.megaflows, |k| {
        flowtable::translate(br, k, None)
    });
    let bad = c
        .bad
        .iter()
        .map(|(why, key)| {
            let m = flowtable::Match {
                key: *key,
                mask: pmd
                    .megaflows
                    .iter()
                    .find(|mf| mf.key.same(key))
                    .map_or_else(flowtable::FlowMask::exact, |mf| mf.mask),
                conj_id: None,
            };
            format!(
                "pmd{id}: {why:?}: {}",
                ctl::ofp::format_match(&m, &br.ports)
            )
        })
        .collect();
    CheckReport {
        megaflows: c.megaflows,
        emc_live: c.emc_live,
        emc_dead: c.emc_dead,
        bad,
    }
}

/// The thread's megaflows as `dump-megaflows` prints them.
fn dump_megaflows(id: usize, pmd: &Pmd, br: &Bridge, now_ms: u64) -> Vec<String> {
    pmd.megaflows
        .iter()
        .map(|mf| {
            let m = flowtable::Match {
                key: mf.key,
                mask: mf.mask,
                conj_id: None,
            };
            format!(
                "pmd{id}: {}, packets:{}, bytes:{}, used:{:.3}s, actions:{}",
                ctl::ofp::format_match(&m, &br.ports),
                mf.packets,
                mf.bytes,
                now_ms.saturating_sub(mf.used_ms) as f64 / 1000.0,
                ctl::odp::format_dp_actions(&mf.actions)
            )
        })
        .collect()
}

fn report(
    t: &PmdThread,
    ports: &PortSet,
    pool: &FramePool,
    stats: &PmdStats,
    busy_ns: u64,
    now: std::time::Duration,
) -> PmdReport {
    PmdReport {
        thread: t.id,
        core: t.core,
        stats: *stats,
        busy_ns,
        total_ns: now.as_nanos() as u64,
        umem_frames: pool.n_frames(),
        umem_free: pool.n_free(),
        ports: ports
            .slots
            .iter()
            .map(|s| {
                let mut st = s.past;
                if let Some(p) = &s.port {
                    st.add(&p.stats());
                }
                st.add(&s.fate);
                PortReport {
                    no: s.cfg.no,
                    name: s.cfg.name.clone(),
                    mode: s.port.as_ref().map_or("down".into(), |p| p.mode()),
                    queue: t.id as u32,
                    up: s.port.is_some(),
                    stats: st,
                }
            })
            .collect(),
    }
}

/// Handles one message of the control thread: a port to poll, or one to
/// give back.
fn take_message(
    ports: &mut PortSet,
    pool: &mut FramePool,
    m: ToPmd,
    id: usize,
    tx: &Sender<ToControl>,
    stats: &mut PmdStats,
) {
    match m {
        ToPmd::Attach { cfg, mut port } => {
            let no = cfg.no;
            if let Err(e) = port.activate(pool) {
                tracing::warn!(port = %cfg.name, thread = id, error = %e, "cannot open port; will retry");
                let _ = tx.send(ToControl::Released {
                    thread: id,
                    no,
                    port: Released(port),
                    failed: true,
                });
                return;
            }
            tracing::info!(port = %cfg.name, no, thread = id, mode = %port.mode(), "port up");
            if let Some(old) = ports.attach(cfg, port) {
                // Never expected: the control thread detaches before it
                // attaches again. Give the old one back rather than leak it.
                if let Some(i) = ports.slot_of(no) {
                    ports.slots[i].past.add(&old.stats());
                }
                let _ = tx.send(ToControl::Released {
                    thread: id,
                    no,
                    port: Released(old),
                    failed: false,
                });
            }
            let _ = tx.send(ToControl::PortState {
                thread: id,
                no,
                up: true,
            });
        }
        ToPmd::Detach { no, forget } => {
            let Some(idx) = ports.slot_of(no) else {
                return;
            };
            let open = if forget {
                ports.remove(no)
            } else {
                ports.slots[idx].port.take()
            };
            if let Some(mut p) = open {
                p.deactivate(pool);
                if !forget {
                    ports.slots[idx].past.add(&p.stats());
                    stats.port_down += 1;
                }
                let _ = tx.send(ToControl::Released {
                    thread: id,
                    no,
                    port: Released(p),
                    failed: false,
                });
                let _ = tx.send(ToControl::PortState {
                    thread: id,
                    no,
                    up: false,
                });
            }
        }
    }
}
