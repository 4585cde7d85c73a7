//! `oxvs-pktgen` end to end, between two network namespaces A and B joined
//! by a veth pair (no switch): a rate-limited run arrives whole and in
//! order, an unlimited run reports its rate, the reflector sends every
//! frame back to the sender (which counts and checks what returns, so no
//! capture tool is needed), an idle receiver stops on time, and bad command
//! lines are refused.
//!
//! Each test builds its own pair, `oxpg<pid><tag>a` and `...b`, with
//! 10.244.250.1 and .2, MACs 02:00:00:fa:00:01 and :02, IPv6 off (no
//! neighbour discovery noise) and tx checksum offload off, as the lab does
//! for pods. A guard deletes the namespaces (and with them the veths) and
//! the JSON files, and each generator process is killed by its own guard,
//! even when an assertion fails. The tests take a lock so they never run at
//! the same time: they share two cores and measure. They need root,
//! iproute2 and ethtool; without root they say why and pass.
//!
//! Rates are printed, not asserted, except that a rate-limited sender keeps
//! its rate: that is a property of the token bucket, not of the machine.

use datapath::afxdp::sys::is_root;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_oxvs-pktgen");
const MAC_A: &str = "02:00:00:fa:00:01";
const MAC_B: &str = "02:00:00:fa:00:02";
const IP_A: &str = "10.244.250.1";
const IP_B: &str = "10.244.250.2";

/// One test at a time: they share the machine's two cores.
static SERIAL: Mutex<()> = Mutex::new(());

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: needs root (network namespaces, veths, AF_XDP)");
            return;
        }
    };
}

/// Runs a command, failing the test if it fails.
fn run_ok(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth; dropping it deletes both and the files
/// handed out by [`Pair::json_path`].
struct Pair {
    a: String,
    b: String,
    files: Vec<PathBuf>,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let base = format!("oxpg{}{tag}", std::process::id());
        let pair = Pair {
            a: format!("{base}a"),
            b: format!("{base}b"),
            files: Vec::new(),
        };
        // Leftovers of a crashed run with this PID must not make `add` fail.
        pair.delete();
        let (a, b) = (pair.a.as_str(), pair.b.as_str());
        run_ok(&["ip", "netns", "add", a]);
        run_ok(&["ip", "netns", "add", b]);
        // Created inside the namespaces: the root namespace is never touched.
        run_ok(&[
            "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            b,
        ]);
        for (ns, mac, ip) in [(a, MAC_A, IP_A), (b, MAC_B, IP_B)] {
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run_ok(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            run_ok(&["ip", "-n", ns, "link", "set", "eth0", "address", mac]);
            run_ok(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            run_ok(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off",
            ]);
            run_ok(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        }
        pair
    }

    fn delete(&self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// A fresh path for a `--json` file, removed with the pair.
    fn json_path(&mut self, name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("{}-{name}.json", self.a));
        self.files.push(p.clone());
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.delete();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A running `oxvs-pktgen`; dropping it kills the process if it still runs.
struct Gen {
    child: Child,
    what: String,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Gen {
    /// Starts `oxvs-pktgen ARGS` and waits for its "ready" line.
    fn start(args: &[&str]) -> Gen {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oxvs-pktgen");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, log) = (child.stderr.take().expect("piped"), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap_or_else(PoisonError::into_inner);
                l.push_str(&line);
                l.push('\n');
                let _ = tx.send(line);
            }
        });
        let g = Gen {
            child,
            what: args.join(" "),
            lines,
            stderr,
        };
        g.wait_ready();
        g
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(": ready on ") => return,
                Ok(_) => {}
                Err(_) => panic!("{} never became ready; stderr:\n{}", self.what, self.log()),
            }
        }
    }

    fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (at most `limit`) for the process to exit successfully and
    /// returns its JSON summary, checked to equal the `--json` file's.
    fn finish(mut self, limit: Duration, file: &PathBuf) -> Value {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}; stderr:\n{}",
                self.what,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut out).expect("read stdout");
        }
        assert!(
            status.success(),
            "{} failed ({status}); stderr:\n{}",
            self.what,
            self.log()
        );
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {out}", self.what));
        let f: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("--json file"))
            .expect("--json file is JSON");
        assert_eq!(v, f, "stdout and --json file differ");
        v
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a count in {v}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// `tx` from A to B with extra arguments.
fn tx_args<'a>(p: &'a Pair, json: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "tx",
        "--netns",
        &p.a,
        "--dev",
        "eth0",
        "--dst-mac",
        MAC_B,
        "--src-ip",
        IP_A,
        "--dst-ip",
        IP_B,
        "--json",
        json,
        "--quiet",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_rate_limited_run_arrives_whole_and_in_order() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut p = Pair::new("r");
    let (rx_json, tx_json) = (p.json_path("rx"), p.json_path("tx"));
    let (rxj, txj) = (
        rx_json.to_str().expect("utf-8"),
        tx_json.to_str().expect("utf-8"),
    );
    let rx = Gen::start(&[
        "rx",
        "--netns",
        &p.b,
        "--dev",
        "eth0",
        "--duration",
        "3",
        "--json",
        rxj,
    ]);
    let tx = Gen::start(&tx_args(
        &p,
        txj,
        &[
            "--rate",
            "20000",
            "--duration",
            "2",
            "--flows",
            "4",
            "--size",
            "64",
        ],
    ));
    let t = tx.finish(Duration::from_secs(10), &tx_json);
    let r = rx.finish(Duration::from_secs(10), &rx_json);
    eprintln!("tx: {t}\nrx: {r}");

    assert_eq!(t["mode"], "tx");
    assert_eq!(r["mode"], "rx");
    let sent = u(&t, "packets");
    assert_eq!(u(&t, "bytes"), sent * 64);
    assert!(
        t["port_mode"]
            .as_str()
            .is_some_and(|m| m.starts_with("afxdp ")),
        "{t}"
    );
    // The bucket holds the rate: 2 s at 20 kpps, give or take a burst.
    assert!((36_000..=40_100).contains(&sent), "sent {sent}");
    let pps = f(&t, "pps");
    assert!((18_000.0..=20_100.0).contains(&pps), "tx pps {pps}");
    assert_eq!(u(&t, "tx_dropped"), 0);

    let got = u(&r, "pktgen");
    assert!(got * 100 >= sent * 99, "rx saw {got} of {sent}");
    assert!(got <= sent, "rx saw {got}, more than the {sent} sent");
    assert_eq!(u(&r, "reordered"), 0, "{r}");
    assert_eq!(u(&r, "duplicate"), 0, "{r}");
    assert_eq!((u(&r, "flows"), u(&r, "runs")), (4, 1), "{r}");
    let rx_pps = f(&r, "pps");
    assert!((17_000.0..=21_000.0).contains(&rx_pps), "rx pps {rx_pps}");
}

#[test]
fn an_unlimited_run_reports_its_rate() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut p = Pair::new("u");
    let (rx_json, tx_json) = (p.json_path("rx"), p.json_path("tx"));
    let (rxj, txj) = (
        rx_json.to_str().expect("utf-8"),
        tx_json.to_str().expect("utf-8"),
    );
    let rx = Gen::start(&[
        "rx",
        "--netns",
        &p.b,
        "--dev",
        "eth0",
        "--duration",
        "2.5",
        "--json",
        rxj,
    ]);
    let tx = Gen::start(&tx_args(
        &p,
        txj,
        &["--rate", "0", "--duration", "1", "--flows", "4"],
    ));
    let t = tx.finish(Duration::from_secs(10), &tx_json);
    let r = rx.finish(Duration::from_secs(10), &rx_json);
    eprintln!(
        "unlimited: tx {} pps ({} packets, {}), rx {} pps (lost {}, rx_dropped {})",
        f(&t, "pps"),
        u(&t, "packets"),
        t["port_mode"],
        f(&r, "pps"),
        u(&r, "lost"),
        u(&r, "rx_dropped")
    );
    let sent = u(&t, "packets");
    assert!(sent > 0 && f(&t, "pps") > 0.0, "{t}");
    let got = u(&r, "pktgen");
    assert!(got > 0 && got <= sent, "rx saw {got} of {sent}");
    // Loss is allowed at full speed (the receiver may fall behind), disorder
    // and duplication are not: a veth keeps order.
    assert_eq!(u(&r, "reordered"), 0, "{r}");
    assert_eq!(u(&r, "duplicate"), 0, "{r}");
}

#[test]
fn the_reflector_sends_every_frame_back() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut p = Pair::new("f");
    let (rf_json, tx_json) = (p.json_path("reflect"), p.json_path("tx"));
    let (rfj, txj) = (
        rf_json.to_str().expect("utf-8"),
        tx_json.to_str().expect("utf-8"),
    );
    let rf = Gen::start(&[
        "reflect",
        "--netns",
        &p.b,
        "--dev",
        "eth0",
        "--duration",
        "3",
        "--json",
        rfj,
    ]);
    let tx = Gen::start(&tx_args(
        &p,
        txj,
        &["--rate", "20k", "--duration", "2", "--flows", "4"],
    ));
    let t = tx.finish(Duration::from_secs(10), &tx_json);
    let r = rf.finish(Duration::from_secs(10), &rf_json);
    eprintln!("tx: {t}\nreflect: {r}");

    assert_eq!(r["mode"], "reflect");
    let sent = u(&t, "packets");
    let reflected = u(&r, "reflected");
    assert!(
        reflected * 100 >= sent * 99,
        "reflected {reflected} of {sent}"
    );
    assert_eq!(u(&r, "reordered"), 0, "{r}");
    // What came back to A: the sender's own frames, checked again.
    let back = u(&t, "rx_pktgen");
    assert!(back * 100 >= sent * 99, "{back} of {sent} came back");
    assert_eq!(u(&t, "rx_reordered"), 0, "{t}");
    assert_eq!(u(&t, "rx_duplicate"), 0, "{t}");
}

#[test]
fn an_idle_receiver_stops_on_time() {
    require_root!();
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut p = Pair::new("i");
    let rx_json = p.json_path("rx");
    let rxj = rx_json.to_str().expect("utf-8");
    let started = Instant::now();
    let rx = Gen::start(&[
        "rx",
        "--netns",
        &p.b,
        "--dev",
        "eth0",
        "--duration",
        "1",
        "--json",
        rxj,
    ]);
    let r = rx.finish(Duration::from_secs(5), &rx_json);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let elapsed = f(&r, "elapsed");
    assert!((1.0..1.5).contains(&elapsed), "elapsed {elapsed}");
    assert_eq!((u(&r, "pktgen"), u(&r, "lost")), (0, 0), "{r}");
    assert_eq!(f(&r, "pps"), 0.0, "{r}");
}

#[test]
fn bad_command_lines_are_refused_and_help_is_given() {
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .output()
            .expect("run oxvs-pktgen")
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--netns",
        "--dev",
        "--dst-mac",
        "--src-ip",
        "--dst-ip",
        "--src-mac",
        "--size",
        "--flows",
        "--rate",
        "--duration",
        "--json",
        "--core",
    ] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    for (args, msg) in [
        (&["tx", "--dev", "eth0"][..], "--dst-mac is required for tx"),
        (
            &["rx", "--dev", "eth0", "--flows", "2"][..],
            "unknown option --flows for rx",
        ),
        (&["sweep"][..], "unknown mode sweep"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed a summary");
    }
}

#[test]
fn a_missing_namespace_is_an_error_not_a_summary() {
    require_root!();
    let ns = format!("oxpg{}none", std::process::id());
    let out = Command::new(BIN)
        .args(["rx", "--netns", &ns, "--dev", "eth0", "--duration", "1"])
        .output()
        .expect("run oxvs-pktgen");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot enter network namespace {ns}")),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
