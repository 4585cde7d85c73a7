//! oxvsd switching real traffic between real pods: a lab of network
//! namespaces (scripts/oxvs-lab), oxvsd in the node namespace, ping and a TCP
//! transfer between two pods, with explicit flows and with `normal`; a port
//! deleted and re-created under traffic; a clean stop on SIGTERM.
//!
//! Needs root; as anyone else the tests say why and pass without running.
//! Every namespace and process is removed by a guard, even when a check fails.

mod common;

use common::{ok, root_serial, Lab};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXPLICIT: &str = "in_port=1,actions=output:2\nin_port=2,actions=output:1\n";

fn two_pods(tag: &str, kind: &str, flows: &str) {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up(tag, 2);
    lab.start_switch(flows, &[("v1p1", 1), ("v1p2", 2)], kind);
    assert_eq!(
        lab.ping("n1-p1", "10.244.1.3", 10),
        10,
        "ping p1 -> p2\n{}",
        lab.log()
    );
    assert_eq!(lab.ping("n1-p2", "10.244.1.2", 10), 10, "ping p2 -> p1");
    let (n, got, sent) = lab.tcp_transfer("n1-p1", "n1-p2", "10.244.1.3", 4 << 20);
    assert_eq!(n, 4 << 20, "bytes received\n{}", lab.log());
    assert_eq!(got, sent, "payload digest");
    if kind != "af_packet" {
        assert!(
            lab.log().contains("mode=afxdp"),
            "ports attached with AF_XDP:\n{}",
            lab.log()
        );
    }
    let status = lab.stop_switch();
    assert!(
        status.success(),
        "oxvsd exit status {status}\n{}",
        lab.log()
    );
    assert!(lab.log().contains("poll thread stopped"), "{}", lab.log());
    assert!(
        !lab.xdp_attached("v1p1") && !lab.xdp_attached("v1p2"),
        "XDP program left after SIGTERM"
    );
}

#[test]
fn af_packet_explicit_flows() {
    two_pods("pe", "af_packet", EXPLICIT);
}

#[test]
fn af_packet_normal() {
    two_pods("pn", "af_packet", "actions=normal\n");
}

#[test]
fn afxdp_explicit_flows() {
    two_pods("xe", "afxdp", EXPLICIT);
}

#[test]
fn afxdp_normal() {
    two_pods("xn", "afxdp", "actions=normal\n");
}

/// Two poll threads on veths with two queues: each thread owns one queue of
/// each port, and flows spread over both.
#[test]
fn two_poll_threads_share_the_work() {
    two_threads("mq", EXPLICIT);
}

/// The same through a stateful firewall: a connection's packets and its
/// replies land on either thread (each direction's queue is the sender's
/// choice), so every transfer passes only because both threads track
/// connections in one shared table.
#[test]
fn two_poll_threads_share_one_connection_table() {
    two_threads("mc", CT_FIREWALL);
}

const CT_FIREWALL: &str = "\
table=0,priority=100,arp,actions=normal
table=0,priority=10,ip,actions=ct(table=1,zone=7)
table=1,priority=30,ip,ct_state=+trk+est,actions=normal
table=1,priority=30,ip,ct_state=+trk+rel,actions=normal
table=1,priority=20,ip,in_port=1,ct_state=+trk+new,actions=ct(commit,zone=7),normal
table=1,priority=10,ip,actions=drop
";

fn two_threads(tag: &str, flows: &str) {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up_with_queues(tag, 2, 2);
    lab.start_switch_with(
        flows,
        &[("v1p1", 1), ("v1p2", 2)],
        "afxdp",
        "poll_cores = [0, 1]\n",
        2,
    );
    let log = lab.log();
    for t in 0..2 {
        assert_eq!(
            log.matches(&format!("thread={t} mode=afxdp")).count(),
            2,
            "thread {t} has an AF_XDP queue on both ports:\n{log}"
        );
    }
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 5), 5, "ping\n{}", lab.log());
    if flows == CT_FIREWALL {
        assert_eq!(lab.ping("n1-p2", "10.244.1.2", 2), 0, "p2 may open nothing");
    }
    // Sixteen connections: the pod's kernel picks a transmit queue (and so
    // the switch's receive queue) by flow hash, so the chance that every
    // one lands on the same queue is 2^-15.
    for _ in 0..16 {
        let (n, got, sent) = lab.tcp_transfer("n1-p1", "n1-p2", "10.244.1.3", 64 << 10);
        assert_eq!(n, 64 << 10, "bytes received\n{}", lab.log());
        assert_eq!(got, sent, "payload digest");
    }
    assert!(lab.stop_switch().success(), "{}", lab.log());
    let log = lab.log();
    for t in 0..2 {
        let rx = log
            .lines()
            .find(|l| l.contains("poll thread stopped") && l.contains(&format!("thread={t} ")))
            .and_then(|l| l.split("rx=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse::<u64>().ok());
        assert!(
            rx.is_some_and(|n| n > 0),
            "thread {t} received packets:\n{log}"
        );
    }
}

#[test]
fn sigkill_leaves_no_xdp_program() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("k", 2);
    lab.start_switch(EXPLICIT, &[("v1p1", 1), ("v1p2", 2)], "afxdp");
    assert!(lab.xdp_attached("v1p1"), "program attached while running");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 3), 3);
    let mut child = lab.take_switch("n1").expect("running");
    ok(&["kill", "-KILL", &child.id().to_string()]);
    let _ = child.wait();
    // The program was attached through a BPF link: the kernel detaches it
    // when the last descriptor of the killed process closes.
    let t = Instant::now();
    while lab.xdp_attached("v1p1") || lab.xdp_attached("v1p2") {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "XDP program still attached after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And a new switch attaches again at once.
    lab.start_switch(EXPLICIT, &[("v1p1", 1), ("v1p2", 2)], "afxdp");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 3), 3, "{}", lab.log());
}

#[test]
fn port_deleted_and_recreated_under_traffic() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("d", 2);
    lab.start_switch(EXPLICIT, &[("v1p1", 1), ("v1p2", 2)], "auto");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 5), 5);
    // Pod 2's veth disappears (and with it the switch's port 2) while pod 1
    // keeps sending; then it comes back with the same names and addresses.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("n1-p1"),
            "ping",
            "-c",
            "40",
            "-i",
            "0.1",
            "-q",
            "10.244.1.3",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    ok(&["ip", "-n", &lab.ns("n1"), "link", "del", "v1p2"]);
    lab.wait_log(|l| l.contains("interface gone; port down"), "port down");
    let (node, pod) = (lab.ns("n1"), lab.ns("n1-p2"));
    ok(&[
        "ip",
        "-n",
        &pod,
        "link",
        "add",
        "eth0",
        "address",
        "02:00:00:01:00:02",
        "type",
        "veth",
        "peer",
        "name",
        "v1p2",
        "netns",
        &node,
    ]);
    ok(&[
        "ip", "netns", "exec", &pod, "ethtool", "-K", "eth0", "tx", "off",
    ]);
    ok(&[
        "ip",
        "-n",
        &pod,
        "addr",
        "add",
        "10.244.1.3/24",
        "dev",
        "eth0",
    ]);
    ok(&["ip", "-n", &pod, "link", "set", "eth0", "up"]);
    ok(&["ip", "-n", &node, "link", "set", "v1p2", "up"]);
    lab.wait_log(|l| l.matches("port up").count() >= 3, "port 2 up again");
    let _ = pinger.wait_with_output();
    assert_eq!(
        lab.ping("n1-p1", "10.244.1.3", 5),
        5,
        "traffic after the port returned\n{}",
        lab.log()
    );
    assert!(lab.stop_switch().success());
}

/// `ping -s 3000` through the same firewall: every request and reply is
/// three IP fragments, of which only the first carries the ICMP header.
/// Conntrack gives the later ones the first one's echo identifier, so they
/// are part of the connection (not `+inv`), and the pods' kernels reassemble.
#[test]
fn a_large_ping_crosses_the_firewall_in_fragments() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("cf", 2);
    lab.start_switch(CT_FIREWALL, &[("v1p1", 1), ("v1p2", 2)], "afxdp");
    let big_ping = |from: &str, to: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.ns(from), "ping", "-q", "-W", "1"])
            .args(["-c", "3", "-i", "0.2", "-s", "3000", "-M", "dont", to])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ping");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = text
            .split(", ")
            .find_map(|p| p.strip_suffix(" received"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        (n, text)
    };
    let (n, text) = big_ping("n1-p1", "10.244.1.3");
    assert_eq!(
        n,
        3,
        "p1 -> p2, 3000 bytes, and the replies\n{text}\n{}",
        lab.log()
    );
    let (n, _) = big_ping("n1-p2", "10.244.1.2");
    assert_eq!(n, 0, "p2 -> p1 is new and dropped, every fragment of it");
    let status = lab.stop_switch();
    assert!(
        status.success(),
        "oxvsd exit status {status}\n{}",
        lab.log()
    );
}

/// A stateful firewall through `ct()` on real AF_XDP ports: p1 may open
/// connections to p2 and gets its replies; p2 may open nothing towards p1.
#[test]
fn stateful_firewall_through_conntrack() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up("ct", 2);
    lab.start_switch(CT_FIREWALL, &[("v1p1", 1), ("v1p2", 2)], "afxdp");
    assert_eq!(
        lab.ping("n1-p1", "10.244.1.3", 5),
        5,
        "p1 -> p2 is allowed, and its replies pass\n{}",
        lab.log()
    );
    assert_eq!(
        lab.ping("n1-p2", "10.244.1.2", 3),
        0,
        "p2 -> p1 is new and dropped"
    );
    let (n, got, sent) = lab.tcp_transfer("n1-p1", "n1-p2", "10.244.1.3", 1 << 20);
    assert_eq!(n, 1 << 20, "bytes received\n{}", lab.log());
    assert_eq!(got, sent, "payload digest");
    let status = lab.stop_switch();
    assert!(
        status.success(),
        "oxvsd exit status {status}\n{}",
        lab.log()
    );
}
