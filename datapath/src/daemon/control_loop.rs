//! The control thread's loop: what it does with what the poll threads and
//! the control socket send it, and the chores of each turn.
//!
//! A turn waits up to 100 ms for a message, handles it and whatever else is
//! already queued (up to [`MAX_MESSAGES_PER_TURN`]), then answers finished
//! `dump-megaflows` and `capture` requests, resolves tunnel next hops,
//! expires a slice of conntrack and, once a second, timed-out rules, and
//! publishes the bridge if anything changed. Handling the queue before
//! publishing matters under a burst of learned rules: the poll threads take
//! one snapshot per turn instead of one per message, and the rule table
//! being learned into, shared with the last snapshot, is copied once. The
//! exception is an `add-port` or `del-port` answer that the poll threads
//! release mid-turn: the bridge is published before it is sent, so a
//! client never acts on a switch whose threads still see its port down.

use super::handle;
use super::pmd::{self, PmdReport, ToControl};
use super::publish::Published;
use super::resolve::Resolver;
use super::state::{self, ControlState};
use flowtable::conntrack::ConnTrack;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// What the poll threads share with the control thread besides the
/// published bridge.
pub(super) struct Shared {
    /// Bumped to ask every poll thread for its megaflows.
    pub dump: Arc<AtomicU64>,
    /// The port being captured.
    pub tap: Arc<pmd::Tap>,
    /// The connection table.
    pub ct: Arc<ConnTrack>,
}

/// The control thread's state between turns.
pub(super) struct ControlLoop {
    st: ControlState,
    resolver: Resolver,
    policy: PolicySink,
    published: Arc<Published>,
    published_version: u64,
    dump: Arc<AtomicU64>,
    tap: Arc<pmd::Tap>,
    ct: Arc<ConnTrack>,
    /// How many poll threads there are.
    threads: usize,
    last_expire: Instant,
    /// Which threads have each port open: a port is up for flooding while
    /// any thread can send to it.
    up_on: BTreeMap<u32, u64>,
    reports: BTreeMap<usize, PmdReport>,
    exited: Vec<PmdReport>,
    macs: BTreeMap<String, Option<[u8; 6]>>,
    /// dump-megaflows waits for every poll thread's answer to request `seq`.
    dumps: Vec<handle::Call>,
    dump_lines: BTreeMap<usize, (u64, Vec<String>, pmd::CheckReport)>,
    dump_asked_at: Instant,
    capture: Option<Capture>,
    /// Opens ports for the poll threads and takes them back.
    attacher: super::attach::Attacher,
    /// The registry generation the attacher was last brought in step with.
    synced: u64,
    last_tick: Instant,
    /// Answers to `add-port` and `del-port` held until the poll threads
    /// have done their part.
    waiting: Vec<Waiting>,
}

/// What an answer waits for: port `no` up on a thread, or given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Up(u32, usize),
    Released(u32, usize),
}

/// An answer held until the poll threads report `events` (or 2 s pass:
/// a thread that cannot activate a port must not hang its client).
struct Waiting {
    reply: std::sync::mpsc::SyncSender<ctl::proto::Response>,
    resp: ctl::proto::Response,
    events: Vec<Event>,
    deadline: Instant,
}

/// Longest an `add-port` or `del-port` answer waits for the poll threads.
const PORT_WAIT: Duration = Duration::from_secs(2);

impl ControlLoop {
    pub(super) fn new(
        st: ControlState,
        resolver: Resolver,
        policy: PolicySink,
        published: Arc<Published>,
        shared: Shared,
        threads: usize,
        mut attacher: super::attach::Attacher,
    ) -> ControlLoop {
        // Every port, configured or restored, is opened now: the rules
        // are already in place, so the first packet meets them.
        attacher.sync(&st.registry.interfaces());
        let mut l = ControlLoop {
            synced: st.registry.generation(),
            attacher,
            last_tick: Instant::now(),
            waiting: Vec::new(),
            published_version: st.bridge.version(),
            st,
            resolver,
            policy,
            published,
            dump: shared.dump,
            tap: shared.tap,
            ct: shared.ct,
            threads,
            last_expire: Instant::now(),
            up_on: BTreeMap::new(),
            reports: BTreeMap::new(),
            exited: Vec::new(),
            macs: BTreeMap::new(),
            dumps: Vec::new(),
            dump_lines: BTreeMap::new(),
            dump_asked_at: Instant::now(),
            capture: None,
        };
        // How each port attached is known now, not at the first tick
        // (`pmd-stats` names the ports `fast_path = "auto"` leaves out).
        l.st.port_modes = l.attacher.modes();
        l.fast_interfaces();
        l
    }

    /// Turns until `shutdown` is set and every poll thread has exited (or
    /// all of them are gone); returns their last reports.
    pub(super) fn run(
        mut self,
        from_pmd: &Receiver<ToControl>,
        shutdown: &AtomicBool,
    ) -> Vec<PmdReport> {
        while !shutdown.load(Ordering::Relaxed) || self.exited.len() < self.threads {
            let now_ms = self.st.now_ms();
            let mut next = match from_pmd.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut handled = 0;
            while let Some(msg) = next.take() {
                handled += 1;
                if handled < MAX_MESSAGES_PER_TURN {
                    next = from_pmd.try_recv().ok();
                }
                self.handle(msg, now_ms);
            }
            self.end_turn(now_ms);
        }
        if let Some(f) = self.st.fast.as_mut() {
            f.tick(self.st.start.elapsed().as_millis() as u64);
            f.log_totals();
        }
        self.exited
    }

    fn handle(&mut self, msg: ToControl, now_ms: u64) {
        match msg {
            ToControl::Resolve(ips) => self.resolver.want(&ips, &mut self.st.bridge),
            ToControl::Learned(l) => self.st.bridge.learn(&l, now_ms),
            ToControl::LearnedFlows(specs) => add_learned(&mut self.st, specs, now_ms),
            ToControl::PortState { thread, no, up } => {
                let m = self.up_on.entry(no).or_default();
                if up {
                    *m |= 1 << thread;
                } else {
                    *m &= !(1 << thread);
                }
                self.st.bridge.set_port_up(no, *m != 0);
                // After the bridge says so: the answer it may release is
                // sent with the bridge published (`flush_waiting`).
                if up {
                    self.event(Event::Up(no, thread));
                }
            }
            ToControl::Released {
                thread,
                no,
                port,
                failed,
            } => {
                self.attacher.released(no, thread, failed);
                // Closing the socket here, off the packet path; the last
                // queue of an interface closes its XDP link.
                drop(port);
                self.event(Event::Released(no, thread));
            }
            ToControl::Report(r) => {
                self.reports.insert(r.thread, r);
                fill_status(&mut self.st, &self.reports, &mut self.macs);
            }
            ToControl::Exited(r) => {
                self.reports.insert(r.thread, r.clone());
                fill_status(&mut self.st, &self.reports, &mut self.macs);
                self.exited.push(r);
            }
            ToControl::Megaflows {
                thread,
                seq,
                lines,
                check,
            } => {
                self.dump_lines.insert(thread, (seq, lines, check));
            }
            ToControl::PolicyLog(recs) => self.policy.write(&recs, &self.st.bridge.log_names),
            ToControl::Offer(keys) => {
                if let Some(f) = self.st.fast.as_mut() {
                    f.offer(&self.st.bridge, &keys, now_ms);
                }
            }
            ToControl::Captured(pkts) => {
                if let Some(cap) = self.capture.as_mut() {
                    cap.add(&pkts);
                }
            }
            // A capture waits for packets, so this loop answers it; a request
            // of another protocol version goes to `handle`, which refuses it.
            ToControl::Call(c)
                if c.req.version == ctl::proto::VERSION
                    && matches!(c.req.cmd, ctl::proto::Command::Capture { .. }) =>
            {
                start_capture(c, &mut self.st, &self.tap, &mut self.capture);
            }
            ToControl::Call(c) => {
                if matches!(
                    c.req.cmd,
                    ctl::proto::Command::DumpMegaflows | ctl::proto::Command::RevalidateCheck
                ) {
                    if self.dumps.is_empty() {
                        self.dump.fetch_add(1, Ordering::Relaxed);
                        self.dump_asked_at = Instant::now();
                    }
                    self.dumps.push(c);
                } else {
                    self.answer(c);
                }
            }
        }
    }

    /// Answers a call; if it changed the ports, brings the poll threads in
    /// step first, and holds an `add-port` or `del-port` answer until they
    /// have the port open, or have given it back.
    fn answer(&mut self, c: handle::Call) {
        let resp = handle::handle(c.req, &mut self.st);
        // A change is in force before it is acknowledged: no fast-path
        // entry of the old rules is left, and the poll threads have the
        // new snapshot to pick up before their next batch.
        self.publish();
        if self.st.registry.generation() != self.synced {
            self.synced = self.st.registry.generation();
            let done = self.attacher.sync(&self.st.registry.interfaces());
            self.st.port_modes = self.attacher.modes();
            self.fast_interfaces();
            // `show` and `dump-ports` drop a deleted port and list an added
            // one now, not at the next report.
            for r in self.reports.values_mut() {
                r.ports
                    .retain(|p| !done.forgotten.iter().any(|f| f.0 == p.no));
            }
            self.up_on
                .retain(|no, _| self.st.bridge.ports.contains(*no));
            fill_status(&mut self.st, &self.reports, &mut self.macs);
            let events: Vec<Event> = done
                .attached
                .iter()
                .map(|&(n, t)| Event::Up(n, t))
                .chain(done.forgotten.iter().map(|&(n, t)| Event::Released(n, t)))
                .collect();
            if !events.is_empty() {
                self.waiting.push(Waiting {
                    reply: c.reply,
                    resp,
                    events,
                    deadline: Instant::now() + PORT_WAIT,
                });
                return;
            }
        }
        let _ = c.reply.send(resp);
    }

    /// A poll thread did something an answer may wait for.
    fn event(&mut self, e: Event) {
        if self.waiting.is_empty() {
            return;
        }
        for w in &mut self.waiting {
            w.events.retain(|x| *x != e);
        }
        self.flush_waiting(false);
    }

    /// Sends the answers that wait for nothing more (or, with `timeout`,
    /// whose time is up).
    ///
    /// The bridge is published first. The event that completed an
    /// `add-port` marked the port up in the master bridge only; the poll
    /// threads flood to it, and send to the MAC it learns, once they hold a
    /// snapshot saying so. Left to the end of the turn, which may go on for
    /// tens of milliseconds (another client's change persisted, a deleted
    /// port's socket closed), the snapshot came after the answer: the pod,
    /// started meanwhile, had its first ARP request flooded and the reply
    /// to it dropped, and waited for its kernel's retry a second later.
    /// Published before the answer, the snapshot is taken by every poll
    /// thread at the top of its next loop, before any batch that can hold
    /// an answer to what the pod sends.
    fn flush_waiting(&mut self, timeout: bool) {
        let now = Instant::now();
        let (ready, keep): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.events.is_empty() || (timeout && now >= w.deadline));
        self.waiting = keep;
        if !ready.is_empty() {
            self.publish();
        }
        for w in ready {
            let _ = w.reply.send(w.resp);
        }
    }

    fn end_turn(&mut self, now_ms: u64) {
        if !self.waiting.is_empty() {
            self.flush_waiting(true);
        }
        if self.last_tick.elapsed() >= Duration::from_secs(1) {
            self.last_tick = Instant::now();
            self.attacher.tick();
            self.st.port_modes = self.attacher.modes();
            self.fast_interfaces();
            let now = self.st.now_ms();
            if let Some(f) = self.st.fast.as_mut() {
                f.sync(&self.st.bridge, now);
                f.tick(now);
            }
        }
        if !self.dumps.is_empty() {
            let seq = self.dump.load(Ordering::Relaxed);
            let all = self.dump_lines.len() >= self.threads
                && self.dump_lines.values().all(|(s, _, _)| *s == seq);
            // A thread that cannot answer within 2 s (it is gone) does not
            // hold the others' answer back.
            if all || self.dump_asked_at.elapsed() > Duration::from_secs(2) {
                let answered = || self.dump_lines.values().filter(|(s, _, _)| *s == seq);
                self.st.megaflows = answered().flat_map(|(_, l, _)| l.iter().cloned()).collect();
                self.st.cache_check = cache_check_text(
                    answered().map(|(_, _, c)| c),
                    answered().count(),
                    self.threads,
                );
                if let Some(f) = &self.st.fast {
                    self.st.cache_check += &f.check(&self.st.bridge, now_ms);
                }
                for c in self.dumps.drain(..) {
                    handle::answer(c, &mut self.st);
                }
            }
        }
        if self.capture.as_ref().is_some_and(Capture::done) {
            self.tap.port.store(0, Ordering::Relaxed);
            // The port's flows may take the fast path again.
            let now = self.st.now_ms();
            if let Some(f) = self.st.fast.as_mut() {
                f.set_capture(None, now);
            }
            if let Some(cap) = self.capture.take() {
                cap.answer();
            }
        }
        self.resolver.tick(&mut self.st.bridge);
        // Expiry a slice at a time: each turn of this loop (at least ten a
        // second) looks at a bounded number of entries, so no poll thread
        // ever waits behind a sweep of the whole table.
        self.ct.expire(self.st.now_ms(), CT_EXPIRE_BUDGET);
        self.st.conntrack_len = self.ct.len();
        if self.last_expire.elapsed() >= Duration::from_secs(1) {
            self.last_expire = Instant::now();
            let gone = self.st.bridge.expire(now_ms);
            if !gone.is_empty() {
                tracing::info!(rules = gone.len(), "rules expired");
            }
        }
        self.publish();
    }

    /// Hands the poll threads the bridge as it now is, if it changed, after
    /// removing every fast-path entry translated under the old one.
    fn publish(&mut self) {
        if let Some(f) = self.st.fast.as_mut() {
            let now = self.st.start.elapsed().as_millis() as u64;
            f.sync(&self.st.bridge, now);
        }
        if self.st.bridge.version() != self.published_version {
            self.published_version = self.st.bridge.version();
            self.published.publish(self.st.bridge.clone());
        }
    }

    /// Tells the fast path which interfaces the poll threads hold.
    fn fast_interfaces(&mut self) {
        if let Some(f) = self.st.fast.as_mut() {
            f.set_interfaces(&self.attacher.open_interfaces());
        }
    }
}

/// Where policy log lines go: the daemon's log (target `oxvs::policy`)
/// and, if configured, a file of their own, one line per record.
pub(super) struct PolicySink {
    file: Option<(std::path::PathBuf, std::fs::File)>,
    epoch: Instant,
}

impl PolicySink {
    pub(super) fn open(
        path: Option<&std::path::Path>,
        epoch: Instant,
    ) -> Result<PolicySink, String> {
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
/// running). The port leaves the fast path first: packets an entry
/// forwards inside XDP never reach the poll threads that copy them.
fn start_capture(
    c: handle::Call,
    st: &mut ControlState,
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
            let now = st.now_ms();
            if let Some(f) = st.fast.as_mut() {
                f.set_capture(Some(n), now);
            }
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

/// `revalidate --check`'s answer: totals over the threads that answered,
/// then one line per cache entry the current rules would not produce.
fn cache_check_text<'a>(
    checks: impl Iterator<Item = &'a pmd::CheckReport>,
    answered: usize,
    threads: usize,
) -> String {
    let (mut mf, mut live, mut dead, mut bad) = (0, 0, 0, Vec::new());
    for c in checks {
        mf += c.megaflows;
        live += c.emc_live;
        dead += c.emc_dead;
        bad.extend(c.bad.iter().cloned());
    }
    let mut s = format!(
        "megaflows checked: {mf}, emc entries checked: {live} (dead: {dead}), mismatches: {}, threads: {answered} of {threads}\n",
        bad.len()
    );
    for l in bad {
        s.push_str(&l);
        s.push('\n');
    }
    s
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
            umem_frames: r.umem_frames,
            umem_free: r.umem_free,
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
        if info.tunnel.is_none() && !ports.contains_key(&no) {
            // No thread has held it yet: its interface is awaited.
            ports.insert(
                no,
                state::PortStatus {
                    no,
                    name: info.name.clone(),
                    mode: "down".into(),
                    ..Default::default()
                },
            );
        }
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
