//! The Prometheus endpoint: [`render`] turns the control state into the
//! text exposition format, and [`MetricsServer`] serves it on
//! `GET /metrics` over a minimal HTTP/1.1 listener.
//!
//! The listener does not read the switch state itself: it sends a
//! [`Command::Metrics`] request through the same channel as the control
//! socket, so the numbers are a consistent copy taken on the control thread
//! and no lock is shared with it. One scrape is served at a time, with
//! timeouts, which is all a Prometheus server needs and keeps a slow or
//! hostile peer from tying up more than one thread.
//!
//! Names follow Prometheus conventions: an `oxvs_` prefix, base units,
//! `_total` on counters, one label per dimension (`port`, `table`, `reason`,
//! `pmd`).

use super::handle::Call;
use super::state::ControlState;
use ctl::proto::{Command, Request, Response};
use flowtable::DropReason;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Writes one metric family: HELP, TYPE and one sample per label value.
fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Option<(&'static str, String)>, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (label, v) in samples {
        match label {
            Some((k, lv)) => {
                let _ = writeln!(out, "{name}{{{k}=\"{}\"}} {v}", escape(&lv));
            }
            None => {
                let _ = writeln!(out, "{name} {v}");
            }
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for `st`.
pub fn render(st: &ControlState) -> String {
    let mut o = String::new();
    let none = |v: f64| [(None, v)];
    family(
        &mut o,
        "oxvs_uptime_seconds",
        "gauge",
        "Seconds since oxvsd started.",
        none(st.start.elapsed().as_secs_f64()),
    );
    family(
        &mut o,
        "oxvs_groups",
        "gauge",
        "Groups installed.",
        none(st.bridge.groups.len() as f64),
    );
    family(
        &mut o,
        "oxvs_megaflows",
        "gauge",
        "Megaflows installed.",
        none(st.megaflows.len() as f64),
    );

    let port = |p: &super::state::PortStatus| Some(("port", p.name.clone()));
    type PortField = fn(&crate::stats::PortStats) -> u64;
    let port_counters: [(&str, &str, PortField); 12] = [
        ("rx_packets", "Packets received.", |s| s.rx_packets),
        ("rx_bytes", "Bytes received.", |s| s.rx_bytes),
        ("tx_packets", "Packets transmitted.", |s| s.tx_packets),
        ("tx_bytes", "Bytes transmitted.", |s| s.tx_bytes),
        ("rx_dropped", "Packets dropped on receive.", |s| {
            s.rx_dropped
        }),
        ("tx_dropped", "Packets dropped on transmit.", |s| {
            s.tx_dropped
        }),
        (
            "pipeline_sent",
            "Frames sent anywhere while handling the packets received on the port.",
            |s| s.pipeline_sent,
        ),
        (
            "pipeline_dropped",
            "Named drops while handling the packets received on the port.",
            |s| s.pipeline_dropped,
        ),
        (
            "pipeline_made",
            "Frames made while handling them (copies, reject and ICMP answers): rx + made = sent + dropped.",
            |s| s.pipeline_made,
        ),
        (
            "xsk_rx_dropped",
            "AF_XDP: frames the kernel dropped on receive (no frame in the fill ring, or too long); part of rx_dropped.",
            |s| s.xsk_rx_dropped,
        ),
        (
            "xsk_rx_ring_full",
            "AF_XDP: frames the kernel dropped because the RX ring was full; part of rx_dropped.",
            |s| s.xsk_rx_ring_full,
        ),
        (
            "xsk_rx_fill_ring_empty",
            "AF_XDP: frames that arrived while the fill ring was empty.",
            |s| s.xsk_rx_fill_ring_empty,
        ),
    ];
    for (what, help, get) in port_counters {
        family(
            &mut o,
            &format!("oxvs_port_{what}_total"),
            "counter",
            help,
            st.ports.iter().map(|p| (port(p), get(&p.stats))),
        );
    }
    family(
        &mut o,
        "oxvs_port_up",
        "gauge",
        "1 when the port is up.",
        st.ports.iter().map(|p| (port(p), u8::from(p.up))),
    );

    let tables = st.tables();
    family(
        &mut o,
        "oxvs_table_rules",
        "gauge",
        "Rules installed in the table.",
        tables
            .iter()
            .map(|t| (Some(("table", t.0.to_string())), t.1)),
    );
    family(
        &mut o,
        "oxvs_table_matched_packets_total",
        "counter",
        "Packets credited to the table's rules.",
        tables
            .iter()
            .map(|t| (Some(("table", t.0.to_string())), t.2)),
    );

    let drops = st.drops();
    family(
        &mut o,
        "oxvs_drops_total",
        "counter",
        "Packets dropped, by reason.",
        DropReason::ALL.iter().map(|r| {
            let name = r.name().trim_start_matches("drop_").to_string();
            (Some(("reason", name)), drops[*r as usize])
        }),
    );

    let pmd = |p: &super::state::PmdStatus| Some(("pmd", p.id.to_string()));
    type PmdField = fn(&super::state::PmdStatus) -> u64;
    let pmd_counters: [(&str, &str, PmdField); 13] = [
        ("rx_packets", "Packets received by the poll thread.", |p| {
            p.stats.rx_packets
        }),
        ("emc_hits", "Packets found in the exact-match cache.", |p| {
            p.stats.emc_hit
        }),
        (
            "megaflow_hits",
            "Packets found in the megaflow table.",
            |p| p.stats.megaflow_hit,
        ),
        ("upcalls", "Packets that needed a translation.", |p| {
            p.stats.upcall
        }),
        (
            "upcalls_uncached",
            "Translations that could not be cached.",
            |p| p.stats.upcall_uncached,
        ),
        (
            "revalidations",
            "Cache revalidations after rule changes.",
            |p| p.stats.revalidations,
        ),
        (
            "revalidated_megaflows",
            "Megaflows translated again by revalidations.",
            |p| p.stats.revalidated_flows,
        ),
        (
            "revalidation_skipped_megaflows",
            "Megaflows revalidations left alone: no table their translation looked up had changed.",
            |p| p.stats.revalidation_skipped,
        ),
        (
            "recirculations",
            "Passes after the first, made by packets that ct(table=T) recirculated.",
            |p| p.stats.recirc,
        ),
        (
            "reject_sent",
            "TCP RSTs and ICMP errors sent by reject.",
            |p| p.stats.reject_sent,
        ),
        ("policy_log_lines", "Policy log lines recorded.", |p| {
            p.stats.log_records
        }),
        (
            "policy_log_deduped",
            "Policy log lines left out as repeats of a logged connection.",
            |p| p.stats.log_deduped,
        ),
        (
            "policy_log_rate_limited",
            "Policy log lines held back by the rate limit.",
            |p| p.stats.log_rate_limited,
        ),
    ];
    for (what, help, get) in pmd_counters {
        family(
            &mut o,
            &format!("oxvs_pmd_{what}_total"),
            "counter",
            help,
            st.pmds.iter().map(|p| (pmd(p), get(p))),
        );
    }
    family(
        &mut o,
        "oxvs_pmd_busy_seconds_total",
        "counter",
        "Seconds the poll thread spent on batches with packets.",
        st.pmds.iter().map(|p| (pmd(p), p.busy_ns as f64 / 1e9)),
    );
    family(
        &mut o,
        "oxvs_pmd_poll_seconds_total",
        "counter",
        "Seconds the poll thread has been polling.",
        st.pmds.iter().map(|p| (pmd(p), p.total_ns as f64 / 1e9)),
    );
    family(
        &mut o,
        "oxvs_pmd_umem_frames",
        "gauge",
        "Frames in the poll thread's UMEM.",
        st.pmds.iter().map(|p| (pmd(p), p.umem_frames)),
    );
    family(
        &mut o,
        "oxvs_pmd_umem_free_frames",
        "gauge",
        "UMEM frames free in the pool: not in a ring, not being processed.",
        st.pmds.iter().map(|p| (pmd(p), p.umem_free)),
    );
    family(
        &mut o,
        "oxvs_conntrack_connections",
        "gauge",
        "Connections in the conntrack table.",
        [(None, st.conntrack_len)],
    );
    if let Some(ct) = &st.conntrack {
        let f = ct.frag_stats();
        family(
            &mut o,
            "oxvs_conntrack_fragments_total",
            "counter",
            "IP fragments through conntrack, by outcome: first (its ports remembered), later (given them), orphan (a later fragment whose first was not seen: +inv), evicted (a remembered datagram replaced because the table was full).",
            [
                ("first", f.first),
                ("later", f.later),
                ("orphan", f.orphans),
                ("evicted", f.evicted),
            ]
            .map(|(k, n)| (Some(("outcome", k.to_string())), n)),
        );
    }
    if let Some(f) = &st.fast {
        fast_path(&mut o, f);
    }
    o
}

/// The XDP fast path's families (only when it runs).
fn fast_path(o: &mut String, f: &super::fastpath::FastPath) {
    use crate::afxdp::fastpath::FpCounter;
    let s = &f.stats;
    family(
        o,
        "oxvs_fastpath_packets_total",
        "counter",
        "Packets the XDP fast path saw, by outcome: hit (forwarded in the kernel), miss, or the reason it left them to the slow path.",
        FpCounter::ALL.iter().map(|&c| {
            (
                Some(("outcome", c.name().trim_start_matches("fastpath_").to_string())),
                s.program[c as usize],
            )
        }),
    );
    family(
        o,
        "oxvs_fastpath_entries",
        "gauge",
        "Exact-match entries in the fast path.",
        [(None, s.entries as u64)],
    );
    family(
        o,
        "oxvs_fastpath_conntrack_entries",
        "gauge",
        "Fast-path entries whose path goes through conntrack.",
        [(None, s.ct_entries as u64)],
    );
    family(
        o,
        "oxvs_fastpath_entry_changes_total",
        "counter",
        "Fast-path entries inserted, flushed by a change of rules, ports, groups, MACs or routes, evicted when idle, and removed with a connection that went, closed or changed, or flushed when a capture started on their port; offers refused, not taken for want of room, waiting for their connection to be established, or refused while a capture runs on their port.",
        [
            ("inserted", s.inserted),
            ("flushed", s.flushed),
            ("evicted", s.evicted),
            ("ct_removed", s.ct_removed),
            ("refused", s.refused),
            ("full", s.full),
            ("ct_refused", s.ct_refused),
            ("capture_flushed", s.capture_flushed),
            ("capture_refused", s.capture_refused),
        ]
        .map(|(k, v)| (Some(("event", k.to_string())), v)),
    );
    family(
        o,
        "oxvs_fastpath_port_rx_packets_total",
        "counter",
        "Packets that entered on the port and the fast path forwarded.",
        f.ports
            .iter()
            .map(|(no, p)| (Some(("port", no.to_string())), p.rx_packets)),
    );
    family(
        o,
        "oxvs_fastpath_port_tx_packets_total",
        "counter",
        "Packets the fast path sent out of the port.",
        f.ports
            .iter()
            .map(|(no, p)| (Some(("port", no.to_string())), p.tx_packets)),
    );
}

/// How long one scrape may take to arrive and be answered.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 8192;

/// The running HTTP listener; dropping it stops it.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and answers scrapes with text obtained through
    /// `calls`. `T` is whatever the control thread receives (its own enum,
    /// with a variant for [`Call`]).
    pub fn start<T: From<Call> + Send + 'static>(
        addr: SocketAddr,
        calls: Sender<T>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("oxvs-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(c) = conn {
                        if let Err(e) = serve(c, &calls) {
                            tracing::debug!(error = %e, "metrics scrape failed");
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (useful when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept call so the thread sees the flag.
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let (true, Some(t)) = (woken, self.thread.take()) {
            let _ = t.join();
        }
    }
}

fn serve<T: From<Call>>(mut c: TcpStream, calls: &Sender<T>) -> std::io::Result<()> {
    c.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    c.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return reply(&mut c, "400 Bad Request", "bad request\n");
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, path) = (words.next(), words.next());
    if method != Some(b"GET") {
        return reply(&mut c, "405 Method Not Allowed", "only GET\n");
    }
    if !matches!(path, Some(b"/metrics") | Some(b"/")) {
        return reply(&mut c, "404 Not Found", "try /metrics\n");
    }
    let (tx, rx) = sync_channel(1);
    let call = Call {
        req: Request::new(Command::Metrics),
        reply: tx,
    };
    if calls.send(call.into()).is_err() {
        return reply(&mut c, "503 Service Unavailable", "oxvsd is stopping\n");
    }
    match rx.recv_timeout(SCRAPE_TIMEOUT) {
        Ok(Response::Ok(text)) => reply(&mut c, "200 OK", &text),
        Ok(Response::Err(f)) => reply(&mut c, "500 Internal Server Error", &f.message),
        Err(_) => reply(&mut c, "503 Service Unavailable", "oxvsd did not answer\n"),
    }
}

fn reply(c: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body.as_bytes())?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::handle::answer;
    use crate::daemon::state::{PmdStatus, PortStatus};
    use flowtable::Bridge;

    fn state() -> ControlState {
        let mut br = Bridge::default();
        br.add_port(1, "vA1");
        br.add_port(2, "we\"ird\\name");
        let mut st = ControlState::new(br);
        crate::daemon::load_flows(&mut st.bridge, "actions=drop\ntable=3,actions=drop\n").unwrap();
        st.ports = vec![
            PortStatus {
                no: 1,
                name: "vA1".into(),
                up: true,
                ..Default::default()
            },
            PortStatus {
                no: 2,
                name: "we\"ird\\name".into(),
                ..Default::default()
            },
        ];
        st.ports[0].stats.rx_packets = 42;
        st.ports[0].stats.xsk_rx_fill_ring_empty = 7;
        let mut p = PmdStatus {
            id: 0,
            busy_ns: 1_500_000_000,
            total_ns: 3_000_000_000,
            ..Default::default()
        };
        p.stats.drop(DropReason::TableMiss);
        st.pmds = vec![p];
        st
    }

    #[test]
    fn renders_prometheus_names_with_help_and_type() {
        let text = render(&state());
        assert!(
            text.contains("# TYPE oxvs_port_rx_packets_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("oxvs_port_rx_packets_total{port=\"vA1\"} 42\n"),
            "{text}"
        );
        assert!(text.contains("{port=\"we\\\"ird\\\\name\"}"), "{text}");
        assert!(
            text.contains("oxvs_port_xsk_rx_fill_ring_empty_total{port=\"vA1\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("oxvs_drops_total{reason=\"table_miss\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("oxvs_table_rules{table=\"3\"} 1\n"), "{text}");
        assert!(
            text.contains("oxvs_pmd_busy_seconds_total{pmd=\"0\"} 1.5\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}"
            );
        }
    }

    /// `promtool` comes with the Debian package `prometheus`.
    #[test]
    fn promtool_accepts_the_output() {
        let text = render(&state());
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "promtool is needed to check the metrics text ({e}); install the Debian package `prometheus` (apt-get install prometheus)"
            ),
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_listener_serves_get_metrics_through_the_call_channel() {
        let (tx, rx) = std::sync::mpsc::channel::<Call>();
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), tx).unwrap();
        let control = std::thread::spawn(move || {
            let mut st = state();
            for call in rx {
                answer(call, &mut st);
            }
        });
        let get = |req: &str| {
            let mut c = TcpStream::connect(server.addr()).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(
            r.contains("oxvs_port_rx_packets_total{port=\"vA1\"} 42"),
            "{r}"
        );
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get("GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("GET /metrics").starts_with("HTTP/1.1 400"));
        drop(server);
        control.join().unwrap();
    }
}
