//! `oxvs-ctl` against a running oxvsd in the lab: rules added, dumped and
//! refused through the control socket while two pods ping; the switch
//! commands (`show`, `dump-ports`, `pmd-stats`, `dump-drops`,
//! `dump-megaflows`, live `trace`, `capture` read by tshark); the metrics
//! endpoint checked by promtool; `replace-flows` of 10 k rules under a ping
//! that loses nothing; and a warm restart: oxvsd killed with SIGKILL under a
//! 10 ms ping comes back with every rule and traffic resumes within a second.
//!
//! Uses the `oxvs-ctl` binary built next to this test (cargo builds every
//! binary of the workspace before running tests). Needs root; without it
//! the test says why and passes.

mod common;

use common::{ok, root_serial, Lab};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLOWS: &str = "table=0,priority=10,in_port=v1p1,actions=output:v1p2\n\
                     table=0,priority=10,in_port=v1p2,actions=output:v1p1\n";

/// Runs `oxvs-ctl --socket SOCK ARGS` in the node namespace; returns
/// (success, stdout + stderr).
fn ctl(lab: &Lab, sock: &str, args: &[&str]) -> (bool, String) {
    let out = lab.oxvs_ctl("n1", std::path::Path::new(sock), args);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The switch under test, with the XDP fast path as by default: `capture`
/// takes its port out of the fast path while it runs.
fn config(dir: &std::path::Path) -> String {
    format!(
        "[switch]\nflows = \"node.flows\"\nlog = \"info\"\nsocket = \"{}\"\nstate = \"{}\"\n\
         metrics = \"127.0.0.1:9477\"\n\
         [[port]]\nname = \"v1p1\"\nno = 1\nkind = \"afxdp\"\n\
         [[port]]\nname = \"v1p2\"\nno = 2\nkind = \"afxdp\"\n",
        dir.join("oxvsd.sock").display(),
        dir.join("rules.state").display()
    )
}

#[test]
fn oxvs_ctl_manages_a_running_switch_and_rules_survive_sigkill() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("ctl", 2);
    let dir = lab.dir.clone();
    let sock = dir.join("oxvsd.sock").to_str().unwrap().to_string();
    // Starts with no rules at all; everything comes through the socket.
    lab.start_switch_on("n1", &config(&dir), "", 2);
    assert_eq!(
        lab.ping("n1-p1", "10.244.1.3", 2),
        0,
        "no rules, no traffic"
    );
    std::fs::write(dir.join("add.flows"), FLOWS).unwrap();
    let (good, text) = ctl(
        &lab,
        &sock,
        &["add-flows", dir.join("add.flows").to_str().unwrap()],
    );
    assert!(good, "{text}");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 5), 5, "{}", lab.log());

    // Rule counters follow the poll threads' statistics push (once a
    // second, as OVS's revalidators do): wait for the echo packets.
    let packets = |flows: &str| -> u64 {
        flows
            .split("n_packets=")
            .skip(1)
            .filter_map(|r| r.split(',').next()?.parse::<u64>().ok())
            .sum()
    };
    let t = Instant::now();
    let mut flows = String::new();
    while t.elapsed() < Duration::from_secs(5) {
        flows = ctl(&lab, &sock, &["dump-flows"]).1;
        if packets(&flows) >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(flows.matches("priority=10").count(), 2, "{flows}");
    // At least the ten echo packets (the pods' ARP and IPv6 neighbour
    // traffic comes on top).
    assert!(packets(&flows) >= 10, "{flows}");
    assert!(
        flows.contains("actions=output:v1p2") || flows.contains("actions=output:2"),
        "{flows}"
    );

    // A bad line in a bundle: the error names line and column, nothing
    // changes.
    std::fs::write(
        dir.join("bad.flows"),
        "priority=20,in_port=v1p1,actions=drop\npriority=20,ip,nw_dst=10.0.0.300,actions=drop\n",
    )
    .unwrap();
    let (good, text) = ctl(
        &lab,
        &sock,
        &[
            "--bundle",
            "add-flows",
            dir.join("bad.flows").to_str().unwrap(),
        ],
    );
    assert!(!good, "{text}");
    assert!(text.contains("line 2, column"), "{text}");
    let (_, after) = ctl(&lab, &sock, &["dump-flows"]);
    assert_eq!(after.matches("priority=").count(), 2, "{after}");
    assert!(!after.contains("priority=20"), "{after}");

    // The switch commands.
    let (good, show) = ctl(&lab, &sock, &["show"]);
    assert!(good, "{show}");
    assert!(show.contains("v1p1") && show.contains("afxdp"), "{show}");
    let (_, ports) = ctl(&lab, &sock, &["dump-ports"]);
    assert!(ports.contains("rx pkts="), "{ports}");
    let (_, pmd) = ctl(&lab, &sock, &["pmd-stats"]);
    assert!(pmd.contains("emc hits"), "{pmd}");
    let (_, drops) = ctl(&lab, &sock, &["dump-drops"]);
    assert!(drops.contains("table_miss"), "{drops}");
    let (_, mf) = ctl(&lab, &sock, &["dump-megaflows"]);
    assert!(mf.contains("in_port=") && mf.contains("actions:2"), "{mf}");
    let (_, tr) = ctl(
        &lab,
        &sock,
        &[
            "trace",
            "in_port=1,icmp,nw_src=10.244.1.2,nw_dst=10.244.1.3",
        ],
    );
    assert!(tr.contains("Datapath actions: 2"), "{tr}");

    // The rest of the flow and group commands, as ovs-ofctl users type them.
    let run_ok = |args: &[&str]| {
        let (good, text) = ctl(&lab, &sock, args);
        assert!(good, "oxvs-ctl {args:?}: {text}");
        text
    };
    run_ok(&[
        "add-flow",
        "table=5,priority=7,cookie=0x1,ip,nw_dst=10.244.7.7,actions=drop",
    ]);
    run_ok(&[
        "mod-flows",
        "--strict",
        "table=5,priority=7,ip,nw_dst=10.244.7.7,actions=output:v1p1",
    ]);
    assert!(run_ok(&["dump-flows", "table=5"]).contains("actions=output:v1p1"));
    run_ok(&[
        "add-group",
        "group_id=1,type=select,bucket=output:v1p1,bucket=output:v1p2",
    ]);
    run_ok(&["mod-group", "group_id=1,type=select,bucket=output:v1p2"]);
    let groups = run_ok(&["dump-groups"]);
    assert!(
        groups.contains("group_id=1,type=select") && groups.matches("bucket=").count() == 1,
        "{groups}"
    );
    run_ok(&["del-groups", "group_id=1"]);
    assert!(!run_ok(&["dump-groups"]).contains("group_id=1"));
    assert!(run_ok(&["dump-tables"]).contains("table 5"));
    assert!(run_ok(&["dump-ports", "v1p1"]).contains("rx pkts="));
    std::fs::write(dir.join("same.flows"), FLOWS).unwrap();
    let diff = run_ok(&["diff-flows", dir.join("same.flows").to_str().unwrap()]);
    assert!(diff.contains("-table=5,priority=7,cookie=0x1"), "{diff}");
    run_ok(&["del-flows", "cookie=0x1/-1"]);
    assert!(run_ok(&["diff-flows", dir.join("same.flows").to_str().unwrap()]).is_empty());
    // Two clients changing rules at once: both land, nothing is lost.
    let a = (0..50).map(|i| format!("table=6,priority={i},ip,nw_dst=10.244.8.{i},actions=drop\n"));
    let b = (0..50).map(|i| format!("table=7,priority={i},ip,nw_dst=10.244.8.{i},actions=drop\n"));
    std::fs::write(dir.join("t6.flows"), a.collect::<String>()).unwrap();
    std::fs::write(dir.join("t7.flows"), b.collect::<String>()).unwrap();
    std::thread::scope(|s| {
        for f in ["t6.flows", "t7.flows"] {
            let path = dir.join(f);
            let (lab, sock) = (&lab, &sock);
            s.spawn(move || {
                let (good, text) = ctl(lab, sock, &["add-flows", path.to_str().unwrap()]);
                assert!(good, "{text}");
            });
        }
    });
    assert_eq!(run_ok(&["dump-flows", "table=6"]).lines().count(), 50);
    assert_eq!(run_ok(&["dump-flows", "table=7"]).lines().count(), 50);
    run_ok(&["del-flows", "table=6"]);
    run_ok(&["del-flows", "table=7"]);

    // capture: pcap of what pod 2's port sees, read by tshark. The pings
    // are carried by the XDP fast path first (entries into and out of
    // v1p2); the capture takes the port out of it while it runs, so the
    // poll threads, which copy what they handle, see every packet.
    let pcap = dir.join("v1p2.pcap");
    let pinger = lab.spawn_ping("n1-p1", "10.244.1.3", 100, "0.05");
    let on_port = |dump: &str| {
        let into = dump.lines().any(|l| l.ends_with("actions:2"));
        let from = dump
            .lines()
            .any(|l| l.contains("in_port=v1p2") || l.contains("in_port=2,"));
        into && from
    };
    let t = Instant::now();
    let mut fast = String::new();
    while t.elapsed() < Duration::from_secs(4) {
        fast = run_ok(&["dump-fastpath"]);
        if on_port(&fast) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        on_port(&fast),
        "fast-path entries of v1p2 before the capture:\n{fast}"
    );
    let (good, text) = ctl(
        &lab,
        &sock,
        &[
            "capture",
            "--count",
            "6",
            "--timeout",
            "5",
            "-w",
            pcap.to_str().unwrap(),
            "v1p2",
        ],
    );
    let _ = pinger.wait_with_output();
    assert!(good, "{text}");
    assert!(text.contains("6 packets written"), "{text}");
    let fields = ok(&[
        "tshark",
        "-r",
        pcap.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "icmp.type",
        "-e",
        "ip.src",
    ]);
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), 6, "{fields}");
    // Echo requests go out to pod 2 (tx), replies come in from it (rx).
    assert!(
        lines.iter().any(|l| l.starts_with("8\t10.244.1.2")),
        "{fields}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("0\t10.244.1.3")),
        "{fields}"
    );
    let (good, text) = ctl(&lab, &sock, &["capture", "nope"]);
    assert!(!good && text.contains("no port nope"), "{text}");
    // pmd-stats says what the capture did to the fast path.
    let pmd = run_ok(&["pmd-stats"]);
    let flushed = pmd
        .split("capture: none running (entries flushed ")
        .nth(1)
        .and_then(|r| r.split(',').next()?.parse::<u64>().ok());
    assert!(flushed.is_some_and(|n| n >= 2), "{pmd}");

    // Metrics, as Prometheus reads them.
    let metrics = ok(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("n1"),
        "python3",
        "-c",
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9477/metrics').read().decode(),end='')",
    ]);
    assert!(
        metrics.contains("oxvs_port_rx_packets_total{port=\"v1p1\"}"),
        "{metrics}"
    );
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // replace-flows with 10 k rules under traffic: the two forwarding rules
    // stay as they are, 10 000 others arrive; not one echo may be lost.
    let mut big = String::from(FLOWS);
    for i in 0..10_000u32 {
        big += &format!(
            "table=0,priority=100,ip,nw_src=10.{}.{}.{},nw_dst=10.244.9.9,actions=drop\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        );
    }
    std::fs::write(dir.join("big.flows"), &big).unwrap();
    let pinger = lab.spawn_ping("n1-p1", "10.244.1.3", 600, "0.005");
    std::thread::sleep(Duration::from_millis(1000));
    let (good, text) = ctl(
        &lab,
        &sock,
        &["replace-flows", dir.join("big.flows").to_str().unwrap()],
    );
    assert!(good, "{text}");
    assert_eq!(
        Lab::replies(pinger),
        600,
        "echoes lost during replace-flows"
    );
    let (_, n) = ctl(&lab, &sock, &["dump-flows"]);
    assert_eq!(n.lines().count(), 10_002, "rules after replace-flows");

    // Warm restart: SIGKILL under a 10 ms ping, start again: traffic comes
    // back with every rule. How fast is a figure (issue 5's goal: within
    // 1 s), measured on the release build by scripts/bench-restart; here,
    // in a debug build on a shared machine, the bound only separates
    // "resumes" from "stays down" (a CI run once took 1.15 s where this
    // machine takes 0.3-0.4 s).
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("n1-p1"),
            "ping",
            "-D",
            "-i",
            "0.01",
            "-w",
            "8",
            "10.244.1.3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_secs(2));
    let mut child = lab.take_switch("n1").expect("running");
    ok(&["kill", "-KILL", &child.id().to_string()]);
    let _ = child.wait();
    let t = Instant::now();
    lab.start_switch_on("n1", &config(&dir), "", 2);
    let restart = t.elapsed();
    let out = pinger.wait_with_output().expect("ping ends");
    let text = String::from_utf8_lossy(&out.stdout);
    let stamps: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    assert!(stamps.len() > 100, "{text}");
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    eprintln!("restart took {restart:?}; longest silence in a 10 ms ping: {gap:.3} s");
    assert!(gap < 4.0, "traffic stopped for {gap:.3} s\n{}", lab.log());
    let last = stamps.last().copied().unwrap_or(0.0);
    assert!(
        last - stamps[0] > 7.0,
        "no replies in the ping's last second after the restart:\n{text}"
    );
    let (_, restored) = ctl(&lab, &sock, &["dump-flows"]);
    assert_eq!(restored.matches("priority=10,").count(), 2, "{restored}");
    assert_eq!(restored.lines().count(), 10_002, "every rule restored");
    assert!(lab.log().contains("rules restored"), "{}", lab.log());
    assert!(lab.stop_switch().success());
    assert!(!dir.join("oxvsd.sock").exists(), "socket removed at exit");
}

/// `dump-conntrack` and `pmd-stats` show the connections a stateful
/// firewall committed, and the recirculations that tracked them;
/// `flush-conntrack` removes them.
#[test]
fn dump_conntrack_lists_committed_connections() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("ctd", 2);
    let dir = lab.dir.join("n1");
    std::fs::create_dir_all(&dir).unwrap();
    let flows = "\
table=0,priority=100,arp,actions=normal
table=0,priority=10,ip,actions=ct(table=1,zone=7)
table=1,priority=30,ip,ct_state=+trk+est,actions=normal
table=1,priority=20,ip,in_port=v1p1,ct_state=+trk+new,actions=ct(commit,zone=7,exec(set_field:0x2a->ct_mark)),normal
table=1,priority=10,ip,actions=drop
";
    lab.start_switch_on("n1", &config(&dir), flows, 2);
    let sock = dir.join("oxvsd.sock");
    let sock = sock.to_str().unwrap();
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 3), 3, "{}", lab.log());
    let (n, got, sent) = lab.tcp_transfer("n1-p1", "n1-p2", "10.244.1.3", 1 << 16);
    assert_eq!((n, got), (1 << 16, sent), "{}", lab.log());

    let (ok_, text) = ctl(&lab, sock, &["dump-conntrack", "zone=7"]);
    assert!(ok_, "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("icmp,orig=(src=10.244.1.2,dst=10.244.1.3,id=")
                && l.contains(",zone=7,mark=0x2a")
        ),
        "the ping's connection:\n{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("tcp,orig=(src=10.244.1.2,dst=10.244.1.3,")
                && l.contains("dport=5201),reply=(src=10.244.1.3,dst=10.244.1.2,sport=5201")
        ),
        "the transfer's connection:\n{text}"
    );
    let (_, other) = ctl(&lab, sock, &["dump-conntrack", "zone=8"]);
    assert!(other.trim().is_empty(), "zone 8 is empty:\n{other}");
    let (_, bad) = ctl(&lab, sock, &["dump-conntrack", "zone=x"]);
    assert!(bad.contains("zone=N"), "{bad}");

    // Poll threads report once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, stats) = ctl(&lab, sock, &["pmd-stats"]);
    let count = |what: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("recirculations:") > 10, "{stats}");
    assert!(count("conntrack connections:") >= 2, "{stats}");

    // flush-conntrack: a typo is refused with its place and removes
    // nothing; a tuple removes only what it names; a zone, the rest.
    let dump = |lab: &Lab| ctl(lab, sock, &["dump-conntrack", "zone=7"]).1;
    let (ok_, bad) = ctl(
        &lab,
        sock,
        &[
            "flush-conntrack",
            "zone=7",
            "ct_nw_proto=1,ct_nw_sorc=10.244.1.2",
        ],
    );
    assert!(!ok_, "{bad}");
    assert!(
        bad.contains("argument 2") && bad.contains("column 15"),
        "{bad}"
    );
    let kept = dump(&lab);
    assert!(
        kept.contains("icmp,") && kept.contains("tcp,"),
        "nothing flushed by a refused request:\n{kept}"
    );
    let (ok_, out) = ctl(
        &lab,
        sock,
        &[
            "flush-conntrack",
            "zone=7",
            "ct_nw_src=10.244.1.2,ct_nw_proto=1",
        ],
    );
    assert!(ok_ && out.trim().is_empty(), "{out}");
    let left = dump(&lab);
    assert!(
        !left.contains("icmp,"),
        "the ping's connection is gone:\n{left}"
    );
    assert!(
        left.contains("tcp,orig=(src=10.244.1.2"),
        "the transfer's stays:\n{left}"
    );
    let (ok_, _) = ctl(&lab, sock, &["flush-conntrack", "zone=7"]);
    assert!(ok_);
    assert!(dump(&lab).trim().is_empty(), "zone 7 flushed");
    // The firewall commits the next ping afresh.
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 2), 2, "{}", lab.log());
    assert!(dump(&lab).contains("icmp,"), "committed again");
    let status = lab.stop_switch();
    assert!(status.success(), "{}", lab.log());
}
