//! `oxvsd`: the switch daemon. The main thread is the control thread: it
//! owns the master [`Bridge`], loads the flow file before any port opens,
//! applies what poll threads report (MAC learning, port state), expires
//! rules, and publishes rule-set snapshots. The poll threads ([`pmd`]), one
//! per configured core, own the ports' queues and move the packets.

pub mod config;
pub mod control;
pub mod handle;
pub mod metrics;
pub mod open;
pub mod persist;
pub mod pmd;
pub mod publish;
pub mod resolve;
pub mod state;

use config::Config;
use flowtable::Bridge;
use pmd::{Opener, PmdReport, PmdThread, ToControl};
use publish::Published;
use state::ControlState;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames a poll thread's pool (its UMEM) has beyond what its ports keep in
/// their rings: batches being processed and copies for second outputs.
pub const SPARE_FRAMES: usize = 1024;

/// Loads a flow file into `br`, all or nothing, errors naming the line.
pub fn load_flows(br: &mut Bridge, text: &str) -> Result<usize, String> {
    let file = ctl::ofp::parse_flow_file(text, &br.ports).map_err(|e| e.to_string())?;
    let (changes, lines) = ctl::load::file_changes(&file);
    br.apply(&changes, 0)
        .map_err(|(i, e)| format!("line {}: {e}", lines[i]))?;
    Ok(changes.len())
}

/// The bridge's TLV map from `[switch] tlv_map` (`ovs-ofctl add-tlv-map`
/// syntax).
fn tlv_map(text: &str) -> Result<flowtable::tunnel::TlvMap, String> {
    let parsed = encap::TlvMap::parse(text).map_err(|e| format!("tlv_map: {e}"))?;
    let mut map = flowtable::tunnel::TlvMap::default();
    for e in parsed.entries() {
        let slot = map.slots.get_mut(e.slot as usize).ok_or_else(|| {
            format!(
                "tlv_map: tun_metadata{} is not supported (0 and 1 are)",
                e.slot
            )
        })?;
        if e.len > 8 {
            return Err(format!(
                "tlv_map: tun_metadata{} is {} bytes; at most 8 are supported",
                e.slot, e.len
            ));
        }
        *slot = Some(flowtable::tunnel::TlvSlot {
            class: e.class,
            ty: e.typ,
            len: e.len,
        });
    }
    Ok(map)
}

/// Adds the rules `learn(...)` made, each on its own: one the bridge
/// refuses (a missing prerequisite in the learn spec) is logged and the
/// rest still go in. An identical rule is replaced, which restarts its
/// timeouts, as a re-learned rule does in OVS.
fn add_learned(st: &mut ControlState, specs: Vec<flowtable::FlowSpec>, now_ms: u64) {
    for spec in specs {
        let table = spec.table;
        if let Err((_, e)) = st.bridge.apply(&[flowtable::Change::AddFlow(spec)], now_ms) {
            tracing::warn!(table, error = %e, "learned rule refused");
        }
    }
}

/// Conntrack entries looked at per turn of the control loop for expiry.
const CT_EXPIRE_BUDGET: usize = 20_000;

/// At most this many queued messages are handled per turn of the control
/// loop, so that expiry, dumps and captures keep their pace under a flood.
const MAX_MESSAGES_PER_TURN: usize = 256;

/// The connection table, with a hash seed chosen at random so that a peer
/// cannot aim its tuples at one chain.
fn new_conntrack(cfg: &Config) -> flowtable::conntrack::ConnTrack {
    use std::hash::BuildHasher;
    let mut c = flowtable::conntrack::CtConfig {
        seed: std::collections::hash_map::RandomState::new().hash_one(0x6f78_7673u64),
        ..Default::default()
    };
    if let Some(max) = cfg.switch.ct_max_conns {
        c.max_conns = max;
    }
    flowtable::conntrack::ConnTrack::new(c)
}

/// Runs the switch until `shutdown` is set (SIGTERM/SIGINT in `oxvsd`).
pub fn run(cfg: Config, open: Opener, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    let mut bridge = Bridge::default();
    let mut fixed_remotes = Vec::new();
    for p in &cfg.ports {
        match p.tunnel()? {
            Some(t) => {
                fixed_remotes.extend(t.remote);
                bridge.ports.add_tunnel(p.no, &p.name, t);
            }
            None => {
                bridge.add_port(p.no, &p.name);
                // Down until a poll thread has opened it, so flooding skips it.
                bridge.set_port_up(p.no, false);
            }
        }
    }
    if let Some(text) = &cfg.switch.tlv_map {
        bridge.tlv = tlv_map(text)?;
    }
    let uplinks = cfg
        .ports
        .iter()
        .filter(|p| p.uplink)
        .map(|p| (p.name.clone(), p.no))
        .collect();
    let mut resolver = resolve::Resolver::new(uplinks);
    resolver.want(&fixed_remotes, &mut bridge);
    let restored = load_rules(&cfg, &mut bridge)?;
    let mut st = ControlState::new(bridge);
    // One clock for rule times, in this thread and in the poll threads.
    let epoch = st.start;
    st.persist = cfg.switch.state.clone().map(persist::StateFile::new);
    // A switch started from its flow file records it, so that the next
    // start restores it (with every change made in between).
    if let (Some(p), false) = (&st.persist, restored) {
        p.save(&st.bridge).map_err(|e| e.to_string())?;
    }
    let published = Arc::new(Published::new(st.bridge.clone()));
    let (to_control, from_pmd) = std::sync::mpsc::channel();
    let _ctl = match &cfg.switch.socket {
        Some(p) => {
            Some(control::ControlServer::start(p, to_control.clone()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let _metrics = match cfg.switch.metrics {
        Some(a) => Some(
            metrics::MetricsServer::start(a, to_control.clone())
                .map_err(|e| format!("metrics on {a}: {e}"))?,
        ),
        None => None,
    };
    // One thread per configured core; thread i owns queue i of every port.
    let cores: Vec<Option<usize>> = if cfg.switch.poll_cores.is_empty() {
        vec![None]
    } else {
        cfg.switch.poll_cores.iter().map(|&c| Some(c)).collect()
    };
    let dump = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tap = Arc::new(pmd::Tap::default());
    let ct = Arc::new(new_conntrack(&cfg));
    st.conntrack = Some(ct.clone());
    let mut capture: Option<Capture> = None;
    let mut handles = Vec::new();
    for (id, core) in cores.iter().enumerate() {
        let thread = PmdThread {
            id,
            ports: cfg.ports.clone(),
            frames: cfg.ports.len() * open::FRAMES_PER_PORT + SPARE_FRAMES,
            cfg: Default::default(),
            policy_log: (
                cfg.switch
                    .policy_log_rate
                    .unwrap_or(crate::policy_log::DEFAULT_RATE),
                cfg.switch
                    .policy_log_window
                    .map_or(crate::policy_log::DEFAULT_WINDOW_MS, |s| s * 1000),
            ),
            core: *core,
            published: published.clone(),
            to_control: to_control.clone(),
            shutdown: shutdown.clone(),
            open: open.clone(),
            epoch,
            dump: dump.clone(),
            tap: tap.clone(),
            ct: ct.clone(),
        };
        let h = std::thread::Builder::new()
            .name(format!("oxvs-pmd{id}"))
            .spawn(move || thread.run())
            .map_err(|e| format!("cannot start poll thread {id}: {e}"))?;
        handles.push(h);
    }
    drop(to_control);
    let mut policy = PolicySink::open(cfg.switch.policy_log.as_deref(), epoch)?;
    let mut last_expire = Instant::now();
    let mut published_version = st.bridge.version();
    // Which threads have each port open: a port is up for flooding while
    // any thread can send to it.
    let mut up_on: BTreeMap<u32, u64> = Default::default();
    let mut reports: BTreeMap<usize, PmdReport> = Default::default();
    let mut exited: Vec<PmdReport> = Vec::new();
    let mut macs: BTreeMap<String, Option<[u8; 6]>> = Default::default();
    // dump-megaflows waits for every poll thread's answer to request `seq`.
    let mut dumps: Vec<handle::Call> = Vec::new();
    let mut dump_lines: BTreeMap<usize, (u64, Vec<String>)> = Default::default();
    let mut dump_asked_at = Instant::now();
    while !shutdown.load(Ordering::Relaxed) || exited.len() < handles.len() {
        let now_ms = st.now_ms();
        let mut next = match from_pmd.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => Some(m),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // Whatever else is already queued is handled before the bridge is
        // published: under a burst of learned rules the poll threads then
        // take one snapshot (and the rule table is copied once) per turn,
        // not one per message, and a quiet switch loses no time waiting.
        let mut handled = 0;
        while let Some(msg) = next.take() {
            handled += 1;
            if handled < MAX_MESSAGES_PER_TURN {
                next = from_pmd.try_recv().ok();
            }
            match msg {
                ToControl::Resolve(ips) => resolver.want(&ips, &mut st.bridge),
                ToControl::Learned(l) => st.bridge.learn(&l, now_ms),
                ToControl::LearnedFlows(specs) => add_learned(&mut st, specs, now_ms),
                ToControl::PortState { thread, no, up } => {
                    let m = up_on.entry(no).or_default();
                    if up {
                        *m |= 1 << thread;
                    } else {
                        *m &= !(1 << thread);
                    }
                    st.bridge.set_port_up(no, *m != 0);
                }
                ToControl::Report(r) => {
                    reports.insert(r.thread, r);
                    fill_status(&mut st, &reports, &mut macs);
                }
                ToControl::Exited(r) => {
                    reports.insert(r.thread, r.clone());
                    fill_status(&mut st, &reports, &mut macs);
                    exited.push(r);
                }
                ToControl::Megaflows { thread, seq, lines } => {
                    dump_lines.insert(thread, (seq, lines));
                }
                ToControl::PolicyLog(recs) => policy.write(&recs, &st.bridge.log_names),
                ToControl::Captured(pkts) => {
                    if let Some(cap) = capture.as_mut() {
                        cap.add(&pkts);
                    }
                }
                // A capture waits for packets, so this loop answers it; a request
                // of another protocol version goes to `handle`, which refuses it.
                ToControl::Call(c)
                    if c.req.version == ctl::proto::VERSION
                        && matches!(c.req.cmd, ctl::proto::Command::Capture { .. }) =>
                {
                    start_capture(c, &st, &tap, &mut capture);
                }
                ToControl::Call(c) => {
                    if matches!(c.req.cmd, ctl::proto::Command::DumpMegaflows) {
                        if dumps.is_empty() {
                            dump.fetch_add(1, Ordering::Relaxed);
                            dump_asked_at = Instant::now();
                        }
                        dumps.push(c);
                    } else {
                        handle::answer(c, &mut st);
                    }
                }
            }
        }
        if !dumps.is_empty() {
            let seq = dump.load(Ordering::Relaxed);
            let all =
                dump_lines.len() >= handles.len() && dump_lines.values().all(|(s, _)| *s == seq);
            // A thread that cannot answer within 2 s (it is gone) does not
            // hold the others' answer back.
            if all || dump_asked_at.elapsed() > Duration::from_secs(2) {
                st.megaflows = dump_lines
                    .values()
                    .filter(|(s, _)| *s == seq)
                    .flat_map(|(_, l)| l.iter().cloned())
                    .collect();
                for c in dumps.drain(..) {
                    handle::answer(c, &mut st);
                }
            }
        }
        if capture.as_ref().is_some_and(Capture::done) {
            tap.port.store(0, Ordering::Relaxed);
            if let Some(cap) = capture.take() {
                cap.answer();
            }
        }
        resolver.tick(&mut st.bridge);
        // Expiry a slice at a time: each turn of this loop (at least ten a
        // second) looks at a bounded number of entries, so no poll thread
        // ever waits behind a sweep of the whole table.
        ct.expire(st.now_ms(), CT_EXPIRE_BUDGET);
        st.conntrack_len = ct.len();
        if last_expire.elapsed() >= Duration::from_secs(1) {
            last_expire = Instant::now();
            let gone = st.bridge.expire(now_ms);
            if !gone.is_empty() {
                tracing::info!(rules = gone.len(), "rules expired");
            }
        }
        if st.bridge.version() != published_version {
            published_version = st.bridge.version();
            published.publish(st.bridge.clone());
        }
    }
    for h in handles {
        h.join().map_err(|_| "a poll thread panicked".to_string())?;
    }
    for r in exited {
        let s = r.stats;
        let port_drops: u64 = r
            .ports
            .iter()
            .map(|p| p.stats.rx_dropped + p.stats.tx_dropped)
            .sum();
        tracing::info!(
            thread = r.thread,
            rx = s.rx_packets,
            emc_hit = s.emc_hit,
            megaflow_hit = s.megaflow_hit,
            upcall = s.upcall,
            drops = s.total_drops(),
            port_drops,
            port_down = s.port_down,
            "poll thread stopped"
        );
    }
    Ok(())
}

/// Where policy log lines go: the daemon's log (target `oxvs::policy`)
/// and, if configured, a file of their own, one line per record.
struct PolicySink {
    file: Option<(std::path::PathBuf, std::fs::File)>,
    epoch: Instant,
}

impl PolicySink {
    fn open(path: Option<&std::path::Path>, epoch: Instant) -> Result<PolicySink, String> {
        let file = match path {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("policy_log {}: {e}", p.display()))?;
                Some((p.to_path_buf(), f))
            }
            None => None,
        };
        Ok(PolicySink { file, epoch })
    }

    fn write(
        &mut self,
        recs: &[crate::policy_log::LogRecord],
        names: &flowtable::bridge::LogNames,
    ) {
        use std::io::Write;
        // Records carry the poll threads' clock (milliseconds since the
        // epoch); the line shows wall-clock time.
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let now_rel = self.epoch.elapsed().as_millis() as u64;
        let mut text = String::new();
        for r in recs {
            let unix = now_unix.saturating_sub(now_rel.saturating_sub(r.time_ms));
            let line = crate::policy_log::format_line(r, names.name(r.name), unix);
            tracing::info!(target: "oxvs::policy", "policy {line}");
            text.push_str(&line);
            text.push('\n');
        }
        if let Some((path, f)) = self.file.as_mut() {
            // One write per batch of records, so lines are never torn.
            if let Err(e) = f.write_all(text.as_bytes()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the policy log");
            }
        }
    }
}

/// A `capture` in progress: the waiting client and what has arrived.
struct Capture {
    call: handle::Call,
    count: usize,
    deadline: Instant,
    lines: Vec<String>,
}

impl Capture {
    fn add(&mut self, pkts: &[pmd::Captured]) {
        for p in pkts {
            if self.lines.len() >= self.count {
                return;
            }
            let t =
                p.at.duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
            let mut line = format!(
                "{}.{:09} {} ",
                t.as_secs(),
                t.subsec_nanos(),
                if p.rx { "rx" } else { "tx" }
            );
            for b in &p.bytes {
                line.push_str(&format!("{b:02x}"));
            }
            self.lines.push(line);
        }
    }

    fn done(&self) -> bool {
        self.lines.len() >= self.count || Instant::now() >= self.deadline
    }

    fn answer(self) {
        let mut text = self.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = self.call.reply.send(ctl::proto::Response::Ok(text));
    }
}

/// Starts a capture, or refuses it (unknown or tunnel port, one already
/// running).
fn start_capture(
    c: handle::Call,
    st: &ControlState,
    tap: &pmd::Tap,
    capture: &mut Option<Capture>,
) {
    use ctl::proto::{Command, Failure, FailureKind, Response};
    let Command::Capture {
        port,
        count,
        timeout_ms,
    } = c.req.cmd.clone()
    else {
        return;
    };
    let refuse = |c: handle::Call, why: String| {
        let _ = c
            .reply
            .send(Response::Err(Failure::new(FailureKind::Rejected, why)));
    };
    let ports = &st.bridge.ports;
    let no = port
        .parse::<u32>()
        .ok()
        .filter(|n| ports.contains(*n))
        .or_else(|| ports.by_name(&port));
    match no {
        None => refuse(c, format!("no port {port}")),
        Some(n) if ports.tunnel(n).is_some() => refuse(
            c,
            format!("{port} is a tunnel port; capture the uplink to see its packets"),
        ),
        Some(_) if capture.is_some() => refuse(c, "a capture is already running".into()),
        Some(n) => {
            let (count, timeout) = (count as usize, Duration::from_millis(timeout_ms as u64));
            tap.port.store(n, Ordering::Relaxed);
            *capture = Some(Capture {
                call: c,
                count: count.clamp(1, 100_000),
                deadline: Instant::now() + timeout.min(Duration::from_secs(3600)),
                lines: Vec::new(),
            });
        }
    }
}

/// The rules at start: the persisted state if there is one (it holds every
/// change accepted since the flow file was first loaded, deletions
/// included), otherwise the flow file. True if the state was restored.
fn load_rules(cfg: &Config, bridge: &mut Bridge) -> Result<bool, String> {
    if let Some(path) = &cfg.switch.state {
        if let Some(n) = persist::restore(path, bridge).map_err(|e| e.to_string())? {
            tracing::info!(state = %path.display(), changes = n, "rules restored");
            return Ok(true);
        }
    }
    if let Some(path) = &cfg.switch.flows {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = load_flows(bridge, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(flows = %path.display(), changes = n, "rules loaded");
    }
    Ok(false)
}

/// Refreshes what `show`, `dump-ports`, `pmd-stats` and the metrics read
/// from the poll threads' latest reports.
fn fill_status(
    st: &mut ControlState,
    reports: &BTreeMap<usize, PmdReport>,
    macs: &mut BTreeMap<String, Option<[u8; 6]>>,
) {
    st.pmds = reports
        .values()
        .map(|r| state::PmdStatus {
            id: r.thread,
            core: r.core,
            stats: r.stats,
            busy_ns: r.busy_ns,
            total_ns: r.total_ns,
        })
        .collect();
    let mut ports: BTreeMap<u32, state::PortStatus> = BTreeMap::new();
    for r in reports.values() {
        for p in &r.ports {
            let e = ports.entry(p.no).or_insert_with(|| state::PortStatus {
                no: p.no,
                name: p.name.clone(),
                mac: *macs
                    .entry(p.name.clone())
                    .or_insert_with(|| if_mac(&p.name)),
                ..Default::default()
            });
            if p.up {
                e.up = true;
                e.queues += 1;
                e.pmds.push(r.thread);
                if e.mode.is_empty() || r.thread == 0 {
                    e.mode = p.mode.clone();
                }
            }
            e.stats.add(&p.stats);
        }
    }
    for p in ports.values_mut() {
        if p.mode.is_empty() {
            p.mode = "down".into();
        }
    }
    for (no, info) in st.bridge.ports.iter().map(|i| (i.no, i)) {
        if let Some(t) = &info.tunnel {
            ports.insert(
                no,
                state::PortStatus {
                    no,
                    name: info.name.clone(),
                    mode: format!("geneve local_ip={}", t.local),
                    up: true,
                    ..Default::default()
                },
            );
        }
    }
    st.ports = ports.into_values().collect();
}

/// The MAC of interface `name` in this namespace, if it has one.
fn if_mac(name: &str) -> Option<[u8; 6]> {
    let idx = crate::sys::if_index(name)?;
    let mut nl = crate::sys::netlink::Netlink::open().ok()?;
    nl.link(idx).ok().map(|l| l.mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_flow_file_names_the_line_and_applies_nothing() {
        let mut br = Bridge::default();
        br.add_port(1, "v1p1");
        let e = load_flows(
            &mut br,
            "in_port=1,actions=drop\n\nin_port=1,actions=output:7\n",
        )
        .unwrap_err();
        assert!(e.starts_with("line 3: "), "{e}");
        assert!(e.contains("port 7"), "{e}");
        assert!(br.cls.is_empty());
        let e = load_flows(
            &mut br,
            "in_port=1,actions=drop\nip,nw_dst=10.0.0.300,actions=drop\n",
        )
        .unwrap_err();
        assert!(e.starts_with("line 2, column 11"), "{e}");
        assert!(br.cls.is_empty());
        assert_eq!(load_flows(&mut br, "in_port=1,actions=drop\n").unwrap(), 1);
        assert_eq!(br.cls.len(), 1);
    }
}
