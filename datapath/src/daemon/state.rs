//! What the control thread knows about the running switch, for the control
//! socket and the metrics endpoint: the master [`Bridge`], and copies of the
//! port and poll-thread counters that the control thread refreshes from the
//! poll threads. Also the text reports built from it (`show`, `dump-ports`,
//! `dump-tables`, `dump-drops`, `pmd-stats`), in `ovs-ofctl` /
//! `ovs-appctl` layout.
//!
//! The state is owned by the control thread alone and only ever touched from
//! [`super::handle::handle`], so no field needs a lock; the poll threads never
//! see it, they see published snapshots of the bridge.

use super::persist::StateFile;
use crate::stats::{PmdStats, PortStats};
use flowtable::{Bridge, DropReason};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One port as `show` and `dump-ports` report it.
#[derive(Clone, Debug, Default)]
pub struct PortStatus {
    /// OpenFlow port number.
    pub no: u32,
    /// Interface name.
    pub name: String,
    /// The interface's MAC address, if known.
    pub mac: Option<[u8; 6]>,
    /// How it is attached, e.g. `afxdp native copy`, `af_packet`.
    pub mode: String,
    /// Number of queues.
    pub queues: usize,
    /// The poll threads serving its queues (thread `i` serves queue `i`).
    pub pmds: Vec<usize>,
    /// Whether it is up.
    pub up: bool,
    /// Its counters, summed over queues.
    pub stats: PortStats,
}

/// One poll thread as `pmd-stats` reports it.
#[derive(Clone, Debug, Default)]
pub struct PmdStatus {
    /// Thread index (`oxvs-pmdN`).
    pub id: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// Its counters.
    pub stats: PmdStats,
    /// Nanoseconds spent on batches that had packets.
    pub busy_ns: u64,
    /// Nanoseconds it has been polling.
    pub total_ns: u64,
    /// Frames in its UMEM.
    pub umem_frames: usize,
    /// Of those, free in the pool (not in a ring, not being processed).
    pub umem_free: usize,
}

impl PmdStatus {
    /// Busy share of polling time, in percent.
    pub fn busy_percent(&self) -> f64 {
        ratio(self.busy_ns, self.total_ns) * 100.0
    }

    /// Busy nanoseconds per received packet.
    pub fn ns_per_packet(&self) -> f64 {
        ratio(self.busy_ns, self.stats.rx_packets)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Everything [`super::handle::handle`] works on.
pub struct ControlState {
    /// The master rule set; a change here is published as a snapshot by the
    /// control thread after the request.
    pub bridge: Bridge,
    /// The clock of rule times: a rule's `created_ms` and `used_ms` are
    /// milliseconds since this instant, so every part of the daemon that
    /// stamps rules (the control thread's expiry, the poll threads' counters)
    /// must use the same one.
    pub start: Instant,
    /// Ports, refreshed by the control thread.
    pub ports: Vec<PortStatus>,
    /// Poll threads, refreshed by the control thread.
    pub pmds: Vec<PmdStatus>,
    /// Installed megaflows, one formatted line each.
    pub megaflows: Vec<String>,
    /// The last `revalidate --check` answer.
    pub cache_check: String,
    /// Where accepted changes are persisted, if anywhere.
    pub persist: Option<StateFile>,
    /// Live conntrack connections, refreshed by the control thread.
    pub conntrack_len: usize,
    /// The switch's connection table, for dumps.
    pub conntrack: Option<std::sync::Arc<flowtable::conntrack::ConnTrack>>,
    /// The ports the switch should have: configured and added at run time.
    pub registry: super::ports::PortRegistry,
    /// How each port a poll thread holds is attached, as the control
    /// thread opened it (known before the next report).
    pub port_modes: std::collections::BTreeMap<u32, String>,
    /// The XDP fast path's entries and counters, when it runs.
    pub fast: Option<super::fastpath::FastPath>,
    /// `fast_path` as configured (`auto` runs it on native ports only).
    pub fast_mode: super::config::FastPathMode,
}

impl ControlState {
    /// A state over `bridge`, with the clock starting now and no ports,
    /// poll threads or persistence yet.
    pub fn new(bridge: Bridge) -> ControlState {
        ControlState {
            bridge,
            start: Instant::now(),
            ports: Vec::new(),
            pmds: Vec::new(),
            megaflows: Vec::new(),
            cache_check: String::new(),
            persist: None,
            conntrack_len: 0,
            conntrack: None,
            registry: Default::default(),
            port_modes: Default::default(),
            fast: None,
            fast_mode: Default::default(),
        }
    }

    /// Milliseconds since [`ControlState::start`], the clock of rule times.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Drops summed over poll threads, indexed like [`DropReason::ALL`].
    pub fn drops(&self) -> [u64; DropReason::COUNT] {
        let mut d = [0; DropReason::COUNT];
        for p in &self.pmds {
            for (sum, n) in d.iter_mut().zip(p.stats.drops) {
                *sum += n;
            }
        }
        d
    }

    /// Per table with rules: (table, active rules, packets matched).
    pub fn tables(&self) -> Vec<(u8, usize, u64)> {
        self.bridge
            .cls
            .tables()
            .filter(|(_, t)| !t.is_empty())
            .map(|(n, t)| {
                let hits = t
                    .rules()
                    .map(|r| r.stats.packets.load(Ordering::Relaxed))
                    .sum();
                (n, t.len(), hits)
            })
            .collect()
    }

    /// `show`.
    pub fn show(&self) -> String {
        let mut s = format!(
            "oxvsd: up {:.3}s, {} rules, {} groups, {} poll threads\n",
            self.start.elapsed().as_secs_f64(),
            self.bridge.cls.len(),
            self.bridge.groups.len(),
            self.pmds.len()
        );
        for p in self.port_list() {
            let mac = p
                .mac
                .map_or_else(|| "unknown".to_string(), |m| mac_text(&m));
            let pmds: Vec<String> = p.pmds.iter().map(usize::to_string).collect();
            let _ = writeln!(s, " {}({}): addr:{mac}", p.no, p.name);
            let _ = writeln!(s, "     state:  {}", if p.up { "up" } else { "down" });
            let _ = writeln!(
                s,
                "     mode:   {}, queues: {}, pmd: {}",
                if p.mode.is_empty() {
                    "unknown"
                } else {
                    &p.mode
                },
                p.queues,
                if pmds.is_empty() {
                    "none".into()
                } else {
                    pmds.join(",")
                }
            );
        }
        s
    }

    /// The ports to report: the refreshed list, or (before the first
    /// refresh, or in tests) the bridge's ports with nothing else known.
    fn port_list(&self) -> Vec<PortStatus> {
        if !self.ports.is_empty() {
            return self.ports.clone();
        }
        self.bridge
            .ports
            .iter()
            .map(|p| PortStatus {
                no: p.no,
                name: p.name.clone(),
                up: p.up,
                ..Default::default()
            })
            .collect()
    }

    /// `dump-ports [PORT]` (a name or a number); an error if no port has it.
    pub fn dump_ports(&self, port: Option<&str>) -> Result<String, String> {
        let ports: Vec<PortStatus> = self
            .port_list()
            .into_iter()
            .filter(|p| port.is_none_or(|q| p.name == q || p.no.to_string() == q))
            .collect();
        if let (Some(q), true) = (port, ports.is_empty()) {
            return Err(format!("no port {q:?}"));
        }
        let mut s = format!("port stats: {} ports\n", ports.len());
        for p in ports {
            let t = &p.stats;
            let _ = writeln!(
                s,
                "  port {:>2}({}): rx pkts={}, bytes={}, drop={}, errs=?\n           tx pkts={}, bytes={}, drop={}, errs=?\n           pipeline sent={}, dropped={}, made={}",
                p.no, p.name, t.rx_packets, t.rx_bytes, t.rx_dropped, t.tx_packets, t.tx_bytes, t.tx_dropped,
                t.pipeline_sent, t.pipeline_dropped, t.pipeline_made
            );
            // The kernel's own drops for the port's AF_XDP sockets, which
            // the poll threads never see: a fill ring too small for the
            // port's bursts shows in `fill_ring_empty`.
            if p.mode.starts_with("afxdp") {
                let _ = writeln!(
                    s,
                    "           xsk rx_dropped={}, rx_ring_full={}, fill_ring_empty={}",
                    t.xsk_rx_dropped, t.xsk_rx_ring_full, t.xsk_rx_fill_ring_empty
                );
            }
            if let Some(f) = &self.fast {
                let fp = f.ports.get(&p.no).copied().unwrap_or_default();
                let _ = writeln!(
                    s,
                    "           fastpath rx pkts={}, bytes={}, tx pkts={}, bytes={}",
                    fp.rx_packets, fp.rx_bytes, fp.tx_packets, fp.tx_bytes
                );
            }
        }
        Ok(s)
    }

    /// `dump-tables`: tables holding rules (and table 0 always).
    pub fn dump_tables(&self) -> String {
        let mut tables = self.tables();
        if tables.first().is_none_or(|t| t.0 != 0) {
            tables.insert(0, (0, 0, 0));
        }
        let mut s = String::new();
        for (n, active, matched) in tables {
            let _ = writeln!(s, "  table {n}:\n    active={active}, matched={matched}");
        }
        let _ = writeln!(
            s,
            "  other tables: active=0 (matched counts packets credited to rules)"
        );
        s
    }

    /// `dump-drops`: every reason, zero or not, and the total.
    pub fn dump_drops(&self) -> String {
        let d = self.drops();
        let mut s = String::new();
        for r in DropReason::ALL {
            let _ = writeln!(s, "{}: {}", r.name(), d[r as usize]);
        }
        let _ = writeln!(s, "total: {}", d.iter().sum::<u64>());
        s
    }

    /// `dump-conntrack`: one `dpctl/dump-conntrack` line per connection
    /// (at most [`MAX_CT_DUMP`]).
    pub fn dump_conntrack(&self, zone: Option<u16>) -> String {
        let Some(ct) = &self.conntrack else {
            return String::new();
        };
        let mut s = String::new();
        for e in ct.dump(zone, self.now_ms(), MAX_CT_DUMP) {
            let _ = writeln!(s, "{}", e.line());
        }
        s
    }

    /// `flush-conntrack`: removes the matching connections. Like
    /// `dpctl/flush-conntrack` it prints nothing.
    pub fn flush_conntrack(&mut self, filter: &flowtable::conntrack::CtFilter) -> String {
        if let Some(ct) = &self.conntrack {
            let n = ct.flush(filter);
            self.conntrack_len = ct.len();
            // No entry may carry a flushed connection's packets once the
            // flush is acknowledged.
            let now = self.now_ms();
            if let Some(f) = self.fast.as_mut() {
                f.conntrack_changed(now);
            }
            tracing::info!(removed = n, "flush-conntrack");
        }
        String::new()
    }

    /// `pmd-stats`, in the layout of `ovs-appctl dpif-netdev/pmd-stats-show`.
    pub fn pmd_stats(&self) -> String {
        let mut s = String::new();
        for p in &self.pmds {
            let t = &p.stats;
            let core = p
                .core
                .map_or_else(|| "unpinned".into(), |c| format!("core_id {c}"));
            // Recirculated passes are looked up again, so hits are shares of
            // all lookups, not of packets received.
            let pct = |n: u64| ratio(n, t.rx_packets + t.recirc) * 100.0;
            let _ = writeln!(s, "pmd thread {} {core}:", p.id);
            let _ = writeln!(s, "  packets received: {}", t.rx_packets);
            let _ = writeln!(s, "  emc hits: {} ({:.1}%)", t.emc_hit, pct(t.emc_hit));
            let _ = writeln!(
                s,
                "  megaflow hits: {} ({:.1}%)",
                t.megaflow_hit,
                pct(t.megaflow_hit)
            );
            let _ = writeln!(s, "  upcalls: {} ({:.1}%)", t.upcall, pct(t.upcall));
            let _ = writeln!(s, "  upcalls not cached: {}", t.upcall_uncached);
            let _ = writeln!(s, "  recirculations: {}", t.recirc);
            let _ = writeln!(s, "  drops: {}", t.total_drops());
            let _ = writeln!(s, "  reject answers sent: {}", t.reject_sent);
            let _ = writeln!(
                s,
                "  policy log: {} lines, {} deduped, {} rate-limited",
                t.log_records, t.log_deduped, t.log_rate_limited
            );
            let _ = writeln!(
                s,
                "  revalidations: {} ({} megaflows translated again, {} untouched by the change)",
                t.revalidations, t.revalidated_flows, t.revalidation_skipped
            );
            let _ = writeln!(
                s,
                "  busy: {:.1}% ({} of {} ns)",
                p.busy_percent(),
                p.busy_ns,
                p.total_ns
            );
            let _ = writeln!(s, "  avg ns per packet: {:.1}", p.ns_per_packet());
            let _ = writeln!(
                s,
                "  umem frames: {} free of {}",
                p.umem_free, p.umem_frames
            );
        }
        let _ = writeln!(s, "conntrack connections: {}", self.conntrack_len);
        if let Some(ct) = &self.conntrack {
            // Later fragments take the ports their first fragment was seen
            // with; one whose first was not seen is +inv, and the agent's
            // pipeline drops it: those are the ones to watch.
            let f = ct.frag_stats();
            let _ = writeln!(
                s,
                "conntrack fragments: {} first, {} later tracked, {} later without their first (+inv), {} evicted",
                f.first, f.later, f.orphans, f.evicted
            );
        }
        if let Some(f) = &self.fast {
            s.push_str(&self.fast_path_ports());
            s.push_str(&fast_path_stats(&f.stats));
        }
        s
    }

    /// The first line of `pmd-stats`' fast-path part: the configured mode
    /// and, with `auto`, the AF_XDP ports that run without it because
    /// their program attaches in generic mode only.
    fn fast_path_ports(&self) -> String {
        let mode = self.fast_mode.name();
        if self.fast_mode != super::config::FastPathMode::Auto {
            return format!("fast path: {mode}\n");
        }
        let generic: Vec<String> = self
            .port_modes
            .iter()
            .filter(|(_, m)| m.starts_with("afxdp generic"))
            .map(|(no, _)| {
                let name = self.bridge.ports.name(*no).unwrap_or("?");
                format!("{no}({name})")
            })
            .collect();
        if generic.is_empty() {
            format!("fast path: {mode} (on for every natively attached AF_XDP port)\n")
        } else {
            format!(
                "fast path: {mode} (off on {}: generic XDP only)\n",
                generic.join(", ")
            )
        }
    }
}

/// The fast path's part of `pmd-stats`.
fn fast_path_stats(f: &super::fastpath::FastPathStats) -> String {
    use crate::afxdp::fastpath::FpCounter;
    let c = |k: FpCounter| f.program[k as usize];
    let seen: u64 = f.program.iter().sum::<u64>() - c(FpCounter::Error);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  hits: {} ({:.1}% of the packets it saw)",
        c(FpCounter::Hit),
        ratio(c(FpCounter::Hit), seen) * 100.0
    );
    let _ = writeln!(s, "  misses: {}", c(FpCounter::Miss));
    let punts: Vec<String> = FpCounter::ALL[2..]
        .iter()
        .map(|&k| format!("{} {}", k.name().trim_start_matches("fastpath_"), c(k)))
        .collect();
    let _ = writeln!(s, "  to the slow path: {}", punts.join(", "));
    let _ = writeln!(
        s,
        "  entries: {} (inserted {}, refused {}, full {}, flushed {}, evicted {}, errors {})",
        f.entries, f.inserted, f.refused, f.full, f.flushed, f.evicted, f.errors
    );
    let _ = writeln!(
        s,
        "  through conntrack: {} entries (not yet established {}, removed with their connection {})",
        f.ct_entries, f.ct_refused, f.ct_removed
    );
    let capture = match f.captured {
        Some(no) => format!("port {no} out of the fast path while it is captured"),
        None => "none running".into(),
    };
    let _ = writeln!(
        s,
        "  capture: {capture} (entries flushed {}, offers refused {})",
        f.capture_flushed, f.capture_refused
    );
    s
}

/// Most connections one `dump-conntrack` lists.
pub const MAX_CT_DUMP: usize = 100_000;

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::FastPathMode;

    #[test]
    fn pmd_stats_names_the_ports_auto_leaves_without_the_fast_path() {
        let mut br = Bridge::default();
        br.add_port(1, "v1p1");
        br.add_port(2, "v1p2");
        br.add_port(3, "eth9");
        let mut st = ControlState::new(br);
        st.port_modes.insert(1, "afxdp native copy fastpath".into());
        st.port_modes.insert(2, "afxdp generic copy".into());
        st.port_modes.insert(3, "af_packet".into());
        assert_eq!(
            st.fast_path_ports(),
            "fast path: auto (off on 2(v1p2): generic XDP only)\n"
        );
        st.port_modes.remove(&2);
        assert_eq!(
            st.fast_path_ports(),
            "fast path: auto (on for every natively attached AF_XDP port)\n"
        );
        st.fast_mode = FastPathMode::On;
        st.port_modes
            .insert(2, "afxdp generic copy fastpath".into());
        assert_eq!(st.fast_path_ports(), "fast path: on\n");
    }
}
