//! oxvsd with `fast_path = "on"` on real veths: a UDP stream between two
//! pods is offloaded to the XDP program (its entry listed by
//! `dump-fastpath`, its packets counted by the program and folded into the
//! rule's `n_packets`); a rule added to a table the stream's translation
//! never looks up leaves its entries alone; and a rule change made under
//! that stream takes effect for every packet sent after `oxvs-ctl`
//! returns: not one of them reaches the old destination through a stale
//! fast-path entry. Without `fast_path` in the configuration (`"auto"`) a
//! port that attaches natively runs the program and one that attaches in
//! generic mode only does not, and says so.
//!
//! One node, three pods (scripts/oxvs-lab, whose pods have GRO on so that
//! frames redirected into their veths are received; pod 3 has it off until
//! the stream has moved to it, and the switch must leave its port out of
//! the fast path until it is on, then offload the stream toward it). The stream's packets
//! carry a sequence number; the sender's count at the moment the
//! acknowledgement arrived splits them into before and after.
//!
//! Needs root; skips otherwise. Every namespace and process is removed by
//! the lab's guard, even when a check fails. Run under
//! `flock /tmp/oxvs-lab.lock`.

mod common;

use common::{ok, root_serial, Lab, Stream};
use datapath::afxdp::enter_netns;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FLOWS: &str = "\
priority=100,udp,in_port=1,tp_dst=5000,actions=output:2
priority=10,in_port=1,actions=output:2
priority=10,in_port=2,actions=output:1
priority=10,in_port=3,actions=output:1
";

/// The rule change: the stream goes to pod 3 instead (addressed to it).
const TO_P3: &str = "priority=100,udp,in_port=1,tp_dst=5000,\
                     actions=mod_dl_dst:02:00:00:01:00:03,mod_nw_dst:10.244.1.4,output:3";

/// Receives datagrams on port 5000 in pod namespace `ns` until `stop`;
/// returns their sequence numbers.
fn receiver(ns: String, stop: Arc<AtomicBool>) -> JoinHandle<Vec<u64>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        let s = UdpSocket::bind("0.0.0.0:5000").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = s.recv(&mut buf) {
                if n >= 8 {
                    got.push(u64::from_be_bytes(buf[..8].try_into().unwrap()));
                }
            }
        }
        got
    });
    ready_rx.recv().unwrap();
    h
}

fn ctl(lab: &Lab, sock: &std::path::Path, args: &[&str]) -> String {
    let out = lab.oxvs_ctl("n1", sock, args);
    assert!(
        out.status.success(),
        "oxvs-ctl {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n_packets` of the first `dump-flows` line containing `needle`.
fn n_packets(dump: &str, needle: &str) -> u64 {
    dump.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split("n_packets=").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no n_packets for {needle} in\n{dump}"))
}

/// The fast path's hit count in `pmd-stats`.
fn hits(stats: &str) -> u64 {
    stats
        .lines()
        .skip_while(|l| !l.starts_with("fast path:"))
        .find_map(|l| l.trim().strip_prefix("hits: "))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fast path hits in\n{stats}"))
}

/// Entries removed by changes so far, from `pmd-stats`.
fn flushed(stats: &str) -> u64 {
    stats
        .split("flushed ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no flushed count in\n{stats}"))
}

/// Polls `f` every 100 ms for at most `secs` seconds until it holds.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_rule_change_under_traffic_leaves_no_stale_fast_path_entry() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("fpd", 3);
    // Pod 3 starts without NAPI on its side: redirected frames would be
    // lost there, so the switch must not make it a fast-path output.
    ok(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("n1-p3"),
        "ethtool",
        "-K",
        "eth0",
        "gro",
        "off",
    ]);
    let sock = lab.dir.join("n1").join("oxvsd.sock");
    std::fs::create_dir_all(lab.dir.join("n1")).unwrap();
    let switch = format!("fast_path = \"on\"\nsocket = \"{}\"\n", sock.display());
    lab.start_switch_with(
        FLOWS,
        &[("v1p1", 1), ("v1p2", 2), ("v1p3", 3)],
        "afxdp",
        &switch,
        1,
    );
    assert!(
        lab.log().contains("fast path on"),
        "the program loads:\n{}",
        lab.log()
    );
    assert_eq!(
        lab.log().matches("mode=afxdp native copy fastpath").count(),
        3,
        "every port runs the fast-path program natively:\n{}",
        lab.log()
    );
    lab.wait_log(
        |l| l.contains("cannot take redirected frames") && l.contains("port=3"),
        "that pod 3's port cannot take redirected frames",
    );
    ok(&[
        "ip",
        "-n",
        &lab.ns("n1-p1"),
        "neigh",
        "replace",
        "10.244.1.3",
        "lladdr",
        "02:00:00:01:00:02",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let p2 = receiver(lab.ns("n1-p2"), stop.clone());
    let p3 = receiver(lab.ns("n1-p3"), stop.clone());
    let seq = Arc::new(AtomicU64::new(0));
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (ns, seq, sending) = (lab.ns("n1-p1"), seq.clone(), sending.clone());
        std::thread::spawn(move || {
            enter_netns(&ns).unwrap();
            let s = UdpSocket::bind("10.244.1.2:40000").unwrap();
            let mut buf = [0u8; 64];
            while sending.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
                buf[..8].copy_from_slice(&n.to_be_bytes());
                let _ = s.send_to(&buf, "10.244.1.3:5000");
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };

    // The stream is offloaded and the program forwards it.
    let mut entries = String::new();
    let offloaded = wait_for(10, || {
        entries = ctl(&lab, &sock, &["dump-fastpath"]);
        entries.contains("tp_dst=5000") && hits(&ctl(&lab, &sock, &["pmd-stats"])) > 100
    });
    assert!(
        offloaded,
        "the stream takes the fast path:\n{entries}\n{}\n{}",
        ctl(&lab, &sock, &["pmd-stats"]),
        lab.log()
    );
    assert!(entries.contains("actions:2"), "{entries}");

    // A rule in a table no translation of this stream looks up removes
    // none of its entries (the journal says which tables changed).
    let before = flushed(&ctl(&lab, &sock, &["pmd-stats"]));
    ctl(
        &lab,
        &sock,
        &[
            "add-flow",
            "table=5,priority=1,udp,tp_dst=5000,actions=drop",
        ],
    );
    let stats = ctl(&lab, &sock, &["pmd-stats"]);
    assert_eq!(flushed(&stats), before, "an unrelated table:\n{stats}");
    assert!(ctl(&lab, &sock, &["dump-fastpath"]).contains("tp_dst=5000"));

    // The change, under traffic.
    ctl(&lab, &sock, &["add-flow", TO_P3]);
    let acked = seq.load(Ordering::SeqCst);

    // Pod 3 cannot take redirected frames yet: the stream reaches it
    // through the poll thread. Once its GRO is on, its port becomes an
    // output and the new path is offloaded in turn.
    std::thread::sleep(Duration::from_millis(500));
    let slow = ctl(&lab, &sock, &["dump-fastpath"]);
    assert!(
        !slow.contains("set(eth(dst=02:00:00:01:00:03))"),
        "no entry toward pod 3 while it lacks NAPI:\n{slow}"
    );
    ok(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("n1-p3"),
        "ethtool",
        "-K",
        "eth0",
        "gro",
        "on",
    ]);
    lab.wait_log(
        |l| l.contains("takes redirected frames now"),
        "pod 3's port taking redirected frames once GRO is on",
    );
    let moved = wait_for(10, || {
        entries = ctl(&lab, &sock, &["dump-fastpath"]);
        entries.contains("actions:set(eth(dst=02:00:00:01:00:03))")
    });
    // Every entry in the kernel is what the current rules make.
    let check = ctl(&lab, &sock, &["revalidate", "--check"]);
    assert!(
        check.contains("mismatches: 0, threads")
            && check.contains("fast path entries checked: ")
            && check.contains(", mismatches: 0\n")
            && !check.contains("fast path entries checked: 0,"),
        "{check}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    sending.store(false, Ordering::Relaxed);
    sender.join().unwrap();
    let last = seq.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (got2, got3) = (p2.join().unwrap(), p3.join().unwrap());
    // Counters are folded once a second.
    std::thread::sleep(Duration::from_millis(2200));
    let flows = ctl(&lab, &sock, &["dump-flows"]);
    let stats = ctl(&lab, &sock, &["pmd-stats"]);

    let stale: Vec<u64> = got2.iter().copied().filter(|&s| s > acked).collect();
    assert!(
        stale.is_empty(),
        "{} packets sent after the acknowledgement reached the old destination \
         (first {:?}); acked at {acked}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    let after = got3.iter().filter(|&&s| s > acked).count() as u64;
    assert!(
        after * 10 >= (last - acked) * 9,
        "pod 3 received {after} of the {} packets sent after the change",
        last - acked
    );
    assert!(
        moved,
        "the new path is offloaded:\n{entries}\n{stats}\n{}",
        lab.log()
    );
    // dump-flows counts what the fast path forwarded: the new rule saw
    // (nearly) every packet pod 3 received, most of them in the kernel.
    let counted = n_packets(&flows, "mod_nw_dst:10.244.1.4");
    assert!(
        counted + 10 >= got3.len() as u64 && counted <= last,
        "the new rule counts {counted}, pod 3 received {}\n{flows}\n{stats}",
        got3.len()
    );
    assert!(
        hits(&stats) as f64 >= 0.5 * last as f64,
        "most of the stream took the fast path:\n{stats}"
    );
    let ports = ctl(&lab, &sock, &["dump-ports", "3"]);
    assert!(
        ports.contains("fastpath rx pkts=0, bytes=0, tx pkts="),
        "{ports}"
    );
    let metrics = ctl(&lab, &sock, &["metrics"]);
    assert!(
        metrics.contains("oxvs_fastpath_packets_total{outcome=\"hit\"}")
            && metrics.contains("oxvs_fastpath_port_tx_packets_total{port=\"3\"}"),
        "{metrics}"
    );
    promtool_accepts(&metrics);
    let status = lab.stop_switch();
    assert!(status.success(), "{}", lab.log());
    assert!(!lab.xdp_attached("v1p1"), "program detached at exit");
}

/// Node `n`'s flows (peer node `m`): its pods by address, the other node's
/// /24 into Geneve with VNI 42, arrivals routed to the pod (gateway MAC,
/// pod MAC, TTL decremented).
fn overlay_flows(n: u32, m: u32) -> String {
    let mut f = format!(
        "priority=80,ip,nw_dst=10.244.{m}.0/24,\
         actions=set_field:192.168.77.{m}->tun_dst,set_field:42->tun_id,output:gnv0\n"
    );
    for p in 1..=2u32 {
        f += &format!(
            "priority=100,in_port=gnv0,tun_id=42,ip,nw_dst=10.244.{n}.{ip},\
             actions=mod_dl_src:0a:00:00:00:{n:02x}:fe,mod_dl_dst:02:00:00:{n:02x}:00:{p:02x},\
             dec_ttl,output:v{n}p{p}\n",
            ip = p + 1
        );
    }
    f
}

fn overlay_config(n: u32) -> String {
    format!(
        "[switch]\nflows = \"node.flows\"\nlog = \"info\"\nsocket = \"oxvsd.sock\"\n\
         fast_path = \"on\"\n\
         [[port]]\nname = \"v{n}p1\"\nno = 1\nkind = \"afxdp\"\n\
         [[port]]\nname = \"v{n}p2\"\nno = 2\nkind = \"afxdp\"\n\
         [[port]]\nname = \"ul0\"\nno = 10\nkind = \"afxdp\"\nuplink = true\n\
         [[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\n\
         local_ip = \"192.168.77.{n}\"\nkey = 42\n"
    )
}

/// Two nodes, Geneve between them, the fast path on both: a TCP transfer
/// from a pod of node 1 to a pod of node 2 arrives whole (its digest
/// checked), with node 1's entries pushing Geneve and node 2's popping it
/// inside XDP, and most segments and acknowledgements taking them.
#[test]
fn pods_across_nodes_over_geneve_inside_xdp() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up_with("fpo", 2, 2, 1);
    for (n, m) in [(1, 2), (2, 1)] {
        lab.start_switch_on(
            &format!("n{n}"),
            &overlay_config(n),
            &overlay_flows(n, m),
            3,
        );
    }
    // The first packet toward a remote makes the switch resolve its route.
    let _ = lab.ping("n1-p1", "10.244.2.3", 1);
    let _ = lab.ping("n2-p2", "10.244.1.2", 1);
    assert_eq!(
        lab.ping("n1-p1", "10.244.2.3", 10),
        10,
        "ping across\n{}\n{}",
        lab.log_of("n1"),
        lab.log_of("n2")
    );
    let (n, got, sent) = lab.tcp_transfer("n1-p1", "n2-p2", "10.244.2.3", 8 << 20);
    assert_eq!(n, 8 << 20, "bytes received\n{}", lab.log_of("n1"));
    assert_eq!(got, sent, "payload digest");
    let sock = |n: u32| lab.dir.join(format!("n{n}")).join("oxvsd.sock");
    // Both read the kernel's counters when asked, entries after hits: no
    // entry has gone, so the entries hold at least every hit counted.
    let hits1 = hits(&ctl_on(&lab, "n1", &sock(1), &["pmd-stats"]));
    let fp1 = ctl_on(&lab, "n1", &sock(1), &["dump-fastpath"]);
    let fp2 = ctl_on(&lab, "n2", &sock(2), &["dump-fastpath"]);
    let counted: u64 = fp1
        .lines()
        .filter_map(|l| {
            l.split("packets:")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        hits1 > 1000 && counted >= hits1,
        "dump-fastpath counted {counted} packets, the program {hits1} hits:\n{fp1}"
    );
    assert!(
        fp1.contains("tnl_push(tnl_port(100),geneve(vni=0x2a),dst=192.168.77.2)"),
        "node 1 pushes Geneve in XDP:\n{fp1}"
    );
    assert!(
        fp2.contains("tun_id=0x2a") && fp2.contains("actions:set(eth(src=0a:00:00:00:02:fe))"),
        "node 2 pops it in XDP:\n{fp2}"
    );
    for (node, n) in [("n1", 1), ("n2", 2)] {
        let stats = ctl_on(&lab, node, &sock(n), &["pmd-stats"]);
        assert!(hits(&stats) > 1000, "{node}: {stats}");
    }
}

fn ctl_on(lab: &Lab, node: &str, sock: &std::path::Path, args: &[&str]) -> String {
    let out = lab.oxvs_ctl(node, sock, args);
    assert!(
        out.status.success(),
        "oxvs-ctl {args:?} on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `promtool check metrics` accepts `text` (Debian's prometheus package).
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Service in front of pod 2 (10.96.0.10, TCP 5201 and UDP 5353, DNAT
/// committed in zone 1), and a stateful firewall that drops what
/// conntrack calls invalid, as the agent's pipeline does.
const CT_FLOWS: &str = "\
table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)
table=0,priority=10,arp,in_port=1,actions=output:2
table=0,priority=10,arp,in_port=2,actions=output:1
table=1,priority=200,ct_state=+inv+trk,ip,actions=drop
table=1,priority=100,ct_state=+new+trk,tcp,nw_dst=10.96.0.10,tp_dst=5201,actions=ct(commit,table=2,zone=1,nat(dst=10.244.1.3:5201))
table=1,priority=100,ct_state=+new+trk,udp,nw_dst=10.96.0.10,tp_dst=5353,actions=ct(commit,table=2,zone=1,nat(dst=10.244.1.3:5353))
table=1,priority=90,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone=1)
table=1,priority=80,ct_state=+est+trk,ip,actions=resubmit(,2)
table=2,priority=100,ip,nw_dst=10.244.1.3,actions=mod_dl_dst:02:00:00:01:00:02,output:2
table=2,priority=100,ip,nw_dst=10.244.1.2,actions=mod_dl_dst:02:00:00:01:00:01,output:1
";

/// Entries removed with their connection, from `pmd-stats`.
fn ct_removed(stats: &str) -> u64 {
    stats
        .split("removed with their connection ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no conntrack removals in\n{stats}"))
}

/// Connections through a Service (DNAT) and a stateful firewall are
/// carried by the XDP program once established: a UDP stream's entries
/// go before `flush-conntrack` answers and come back with its new
/// connection; a TCP transfer of a few hundred megabytes arrives whole,
/// mostly through the fast path, and closes cleanly although the table
/// never saw its data segments (without the tolerant tracking of held
/// connections the FIN is invalid and dropped, and the transfer hangs).
#[test]
fn established_connections_through_dnat_and_a_firewall_take_the_fast_path() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("fpc", 2);
    let sock = lab.dir.join("n1").join("oxvsd.sock");
    std::fs::create_dir_all(lab.dir.join("n1")).unwrap();
    let switch = format!("fast_path = \"on\"\nsocket = \"{}\"\n", sock.display());
    lab.start_switch_with(CT_FLOWS, &[("v1p1", 1), ("v1p2", 2)], "afxdp", &switch, 1);

    // UDP: an echo in pod 2, a client in pod 1 asking through the VIP
    // every millisecond from one source port.
    let echo = lab.spawn(
        "n1-p2",
        "echo",
        &[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0',5353))\nwhile True:\n    d,a=s.recvfrom(2048); s.sendto(d,a)",
        ],
    );
    let udp_client = |name: &str| {
        lab.spawn(
            "n1-p1",
            name,
            &[
                "python3",
                "-c",
                "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('10.244.1.2',40001)); s.setblocking(False)\n\
             while True:\n    s.sendto(b'x'*64,('10.96.0.10',5353))\n    time.sleep(0.001)\n\
             \x20   try:\n        s.recv(2048)\n    except BlockingIOError:\n        pass",
            ],
        )
    };
    let client = udp_client("client");
    let mut dump = String::new();
    let held = wait_for(10, || {
        dump = ctl(&lab, &sock, &["dump-fastpath"]);
        dump.lines()
            .any(|l| l.contains("tp_dst=5353") && l.contains("conntrack:1"))
            && dump
                .lines()
                .any(|l| l.contains("tp_src=5353") && l.contains("conntrack:1"))
    });
    assert!(
        held,
        "both directions through conntrack:\n{dump}\n{}",
        lab.log()
    );
    assert!(
        dump.contains("set(ipv4(dst=10.244.1.3))") || dump.contains("10.244.1.3"),
        "the DNAT is in the entry:\n{dump}"
    );
    let conns = ctl(&lab, &sock, &["dump-conntrack"]);
    assert!(
        conns
            .lines()
            .any(|l| l.contains("dport=5353") && l.ends_with(",offloaded")),
        "dump-conntrack says which connections the fast path carries:\n{conns}"
    );
    // The flush removes them before it answers (the client paused first:
    // its next datagram would make a new connection within a millisecond,
    // and that one is offloaded in turn).
    client.stop(Duration::from_secs(2));
    assert!(ctl(&lab, &sock, &["dump-fastpath"]).contains("conntrack:1"));
    ctl(&lab, &sock, &["flush-conntrack"]);
    let after = ctl(&lab, &sock, &["dump-fastpath"]);
    assert!(
        !after.contains("conntrack:"),
        "no entry outlives its connection:\n{after}"
    );
    // The stream makes a new connection and is offloaded again.
    let client = udp_client("client2");
    assert!(
        wait_for(10, || ctl(&lab, &sock, &["dump-fastpath"])
            .contains("conntrack:1")),
        "offloaded again:\n{}",
        ctl(&lab, &sock, &["dump-fastpath"])
    );
    client.stop(Duration::from_secs(2));
    echo.stop(Duration::from_secs(2));

    // TCP: a paced transfer through the VIP for about 3 s.
    let before = hits(&ctl(&lab, &sock, &["pmd-stats"]));
    let (n, got, sent) =
        lab.tcp_stream("n1-p1", "n1-p2", "10.96.0.10", Stream::Paced { secs: 3.0 });
    assert!(
        n > 0 && got == sent,
        "the transfer arrives whole: {n} bytes, {got} vs {sent}\n{}",
        lab.log()
    );
    let stats = ctl(&lab, &sock, &["pmd-stats"]);
    let segments = n as u64 / 1448;
    assert!(
        hits(&stats) - before > segments / 2,
        "most of {segments} segments took the fast path:\n{stats}"
    );
    assert!(ct_removed(&stats) >= 2, "the flushed UDP entries:\n{stats}");
    // Its FIN closed the connection, and its entries went with it (well
    // before they would have been idle long enough to be evicted).
    assert!(
        wait_for(3, || !ctl(&lab, &sock, &["dump-fastpath"]).contains("5201")),
        "{}",
        ctl(&lab, &sock, &["dump-fastpath"])
    );
    let check = ctl(&lab, &sock, &["revalidate", "--check"]);
    assert!(check.contains("mismatches: 0"), "{check}");
}

/// Pings through the same firewall, one to pod 2's address and one to a
/// Service (DNAT of ICMP to pod 2, identifier kept), are carried by the
/// XDP program once their connections have seen a reply: an entry per
/// direction and ping standing on its connection, the program's hits
/// counted, no echo lost, `dump-conntrack` marking them offloaded; and
/// `flush-conntrack` removes their entries before it answers.
#[test]
fn pings_through_a_firewall_and_a_service_take_the_fast_path_after_the_first_reply() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("fpi", 2);
    let sock = lab.dir.join("n1").join("oxvsd.sock");
    std::fs::create_dir_all(lab.dir.join("n1")).unwrap();
    let switch = format!("fast_path = \"on\"\nsocket = \"{}\"\n", sock.display());
    let flows = format!(
        "{CT_FLOWS}table=1,priority=100,ct_state=+new+trk,icmp,nw_dst=10.96.0.10,\
         actions=ct(commit,table=2,zone=1,nat(dst=10.244.1.3))\n"
    );
    lab.start_switch_with(&flows, &[("v1p1", 1), ("v1p2", 2)], "afxdp", &switch, 1);
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 1), 1, "{}", lab.log());
    let before = hits(&ctl(&lab, &sock, &["pmd-stats"]));
    const COUNT: u32 = 400;
    let ping = |to: &str| lab.spawn_ping("n1-p1", to, COUNT, "0.01");
    let pings = [ping("10.244.1.3"), ping("10.96.0.10")];
    // Both directions of both pings, each on its connection.
    let mut dump = String::new();
    let held = wait_for(4, || {
        dump = ctl(&lab, &sock, &["dump-fastpath"]);
        let icmp = |dir: &str| {
            dump.lines()
                .filter(|l| l.contains("icmp") && l.contains(dir))
                .filter(|l| l.contains("echo_id:") && l.contains("conntrack:1"))
                .count()
        };
        // The Service's DNAT is in its request's entry and undone in its
        // reply's. (The first ping's entries, one echo, may be there too.)
        let dnat = dump
            .lines()
            .any(|l| l.contains("nw_dst=10.96.0.10") && l.contains("set(ipv4(dst=10.244.1.3))"));
        let undo = dump
            .lines()
            .any(|l| l.contains("icmp_type=0") && l.contains("set(ipv4(src=10.96.0.10))"));
        dnat && undo && icmp("icmp_type=8") >= 2 && icmp("icmp_type=0") >= 2
    });
    assert!(held, "pings through conntrack:\n{dump}\n{}", lab.log());
    let conns = ctl(&lab, &sock, &["dump-conntrack"]);
    assert!(
        conns
            .lines()
            .filter(|l| l.starts_with("icmp,") && l.ends_with(",offloaded"))
            .count()
            >= 2,
        "{conns}"
    );
    for p in pings {
        assert_eq!(Lab::replies(p), COUNT, "no echo lost");
    }
    // pmd-stats reads the program's counters when asked; the entries stay
    // (idle for 10 s).
    let stats = ctl(&lab, &sock, &["pmd-stats"]);
    assert!(
        hits(&stats) - before > u64::from(COUNT),
        "most of the {} echo packets took the fast path:\n{stats}",
        4 * COUNT
    );
    let dump = ctl(&lab, &sock, &["dump-fastpath"]);
    assert!(dump.contains("echo_id:"), "{dump}");
    // Each ping's entries are what its connection and the rules make now.
    let check = ctl(&lab, &sock, &["revalidate", "--check"]);
    assert!(
        check.contains("mismatches: 0") && !check.contains("fast path entries checked: 0,"),
        "{check}"
    );
    ctl(&lab, &sock, &["flush-conntrack"]);
    let after = ctl(&lab, &sock, &["dump-fastpath"]);
    assert!(
        !after.contains("conntrack:"),
        "no entry outlives its connection:\n{after}"
    );
    let stats = ctl(&lab, &sock, &["pmd-stats"]);
    assert!(ct_removed(&stats) >= 4, "{stats}");
}

/// With no `fast_path` in the configuration (`"auto"`, the default) a port
/// whose program attaches natively runs the fast path and one where only
/// generic mode attaches (its pod's MTU is too large for native XDP on a
/// veth) runs the plain redirect: the log says so once for that port,
/// `show` and `pmd-stats` say it too, and traffic still crosses both ways.
/// With `fast_path = "on"` the generic port runs the fast path as well.
#[test]
fn auto_runs_the_fast_path_where_native_xdp_attaches() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("fpa", 2);
    common::set_mtu(&lab.ns("n1-p2"), 9000);
    let sock = lab.dir.join("n1").join("oxvsd.sock");
    std::fs::create_dir_all(lab.dir.join("n1")).unwrap();
    let ports = [("v1p1", 1), ("v1p2", 2)];
    let flows = "in_port=1,actions=output:2\nin_port=2,actions=output:1\n";
    let switch = format!("socket = \"{}\"\n", sock.display());
    lab.start_switch_with(flows, &ports, "afxdp", &switch, 1);
    let log = lab.log();
    assert!(
        log.contains("fast path on for ports whose XDP program attaches natively"),
        "{log}"
    );
    let up = |port: &str| {
        log.lines()
            .find(|l| l.contains("port up") && l.contains(&format!("port={port} ")))
            .unwrap_or_else(|| panic!("{port} never came up:\n{log}"))
            .to_string()
    };
    assert!(
        up("v1p1").ends_with("mode=afxdp native copy fastpath"),
        "{log}"
    );
    assert!(up("v1p2").ends_with("mode=afxdp generic copy"), "{log}");
    assert_eq!(
        log.matches("fast path off for this port").count(),
        1,
        "said once, for v1p2:\n{log}"
    );
    // `show` has the modes once the poll thread has reported its ports.
    let mut show = String::new();
    wait_for(10, || {
        show = ctl(&lab, &sock, &["show"]);
        !show.contains("mode:   unknown")
    });
    assert!(
        show.contains("mode:   afxdp native copy fastpath"),
        "{show}"
    );
    assert!(show.contains("mode:   afxdp generic copy,"), "{show}");
    let stats = ctl(&lab, &sock, &["pmd-stats"]);
    assert!(
        stats.contains("fast path: auto (off on 2(v1p2): generic XDP only)"),
        "{stats}"
    );
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 5), 5, "{}", lab.log());
    assert_eq!(lab.ping("n1-p2", "10.244.1.2", 5), 5, "{}", lab.log());
    assert!(lab.stop_switch().success(), "{}", lab.log());

    let switch = format!("socket = \"{}\"\nfast_path = \"on\"\n", sock.display());
    lab.start_switch_with(flows, &ports, "afxdp", &switch, 1);
    wait_for(10, || {
        show = ctl(&lab, &sock, &["show"]);
        !show.contains("mode:   unknown")
    });
    assert!(
        show.contains("mode:   afxdp generic copy fastpath"),
        "{show}"
    );
    assert!(
        !lab.log().contains("fast path off for this port"),
        "{}",
        lab.log()
    );
    assert!(ctl(&lab, &sock, &["pmd-stats"]).contains("fast path: on\n"));
}
