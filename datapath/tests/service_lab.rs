//! The Kubernetes Service and stateful-firewall example of oxvs
//! (examples/services/node1.flows and node2.flows, explained in
//! docs/services.md) proven with real TCP and UDP clients in a lab of two
//! nodes with three pods each and an external client on the underlay:
//!
//! ```text
//! n1: v1p1 frontend-1 10.244.1.2   v1p2 backend-1 10.244.1.3   v1p3 backend-2 10.244.1.4
//! n2: v2p1 frontend-2 10.244.2.2   v2p2 backend-3 10.244.2.3   v2p3 frontend-3 10.244.2.4
//! ext: 192.168.77.100 on the underlay bridge, 172.16.100.0/24 routed via node 1
//! ```
//!
//! Each backend runs an HTTP/1.1 server on :80 answering its own name and a
//! UDP echo on :5353 that prefixes its name. The checks: every endpoint is
//! reached over many connections to the ClusterIP 10.96.0.10 (TCP :80, UDP
//! :53) from frontends of both nodes, and each answer comes from 10.96.0.10
//! (a UDP reply's source is read with recvfrom, and tcpdump in the client
//! pod sees every TCP and UDP reply arrive from the ClusterIP); a keep-alive
//! connection stays on one endpoint; every connection of a client to the
//! Service with session affinity (10.96.0.11) goes to one endpoint, through
//! a rule the switch learned; NodePort 30080 on both node IPs and the
//! LoadBalancer IP 172.16.100.10 answer the external client, whose
//! connections reach the backends SNATed to the node IP; frontends cannot
//! ping each other (same node or not) but ping and reach backends; a backend
//! cannot open a connection to a frontend (the SYN times out rather than
//! being refused); a backend reaching its own Service is answered by itself
//! too (hairpin, seen by the backend as coming from 169.254.0.252); a
//! frontend reaching the external host is SNATed to its node's IP.
//!
//! The same files run on oxvsd and, as the reference for their meaning, on
//! Open vSwitch 3.1's userspace datapath (as interop_lab.rs runs it). Needs
//! root, python3 and tcpdump; without root it says why and passes. The OVS
//! case fails naming the package when OVS is missing.

mod common;
mod services;

use common::{ovs_installed, root_serial};
use services::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn services(tag: &str, switch: Switch) {
    let Some(_serial) = root_serial() else { return };
    if switch == Switch::OpenVswitch {
        assert!(
            ovs_installed(),
            "Open vSwitch is not installed: apt-get install openvswitch-switch"
        );
    }
    let began = Instant::now();
    let s = ServiceLab::up(tag, switch);
    let mut servers = Vec::new();
    for (pod, _, name) in PODS {
        if name.starts_with("backend") {
            servers.push((name, s.serve(pod, "http", name)));
        }
    }
    let _fe1 = s.serve("n1-p1", "peer", "frontend-1");
    let _ext = s.serve("ext", "peer", "external");
    let backends: BTreeSet<&str> = ["backend-1", "backend-2", "backend-3"].into();

    s.wait_overlay();

    // The firewall: frontends reach backends, not each other; backends
    // cannot open connections toward frontends.
    for (from, to, want) in [
        ("n1-p1", "10.244.1.3", 3),
        ("n1-p1", "10.244.2.3", 3),
        ("n2-p3", "10.244.1.4", 3),
        ("n2-p1", "10.244.2.3", 3),
        ("n1-p1", "10.244.2.2", 0),
        ("n2-p1", "10.244.2.4", 0),
        ("n2-p3", "10.244.1.2", 0),
    ] {
        assert_eq!(
            s.lab.ping(from, to, want.max(2)),
            want,
            "ping {from} -> {to}\n{}",
            s.report()
        );
    }
    for (from, to, port, want) in [
        ("n1-p1", "10.244.2.3", "80", "ok"),
        ("n2-p1", "10.244.1.4", "80", "ok"),
        ("n1-p2", "10.244.1.2", "8080", "timeout"),
        ("n2-p2", "10.244.1.2", "8080", "timeout"),
    ] {
        assert_eq!(
            s.client(from, &["connect", to, port]),
            [want],
            "TCP {from} -> {to}:{port}\n{}",
            s.report()
        );
    }

    // ClusterIP from a frontend of each node: every endpoint, every answer.
    // What reaches frontend-1 meanwhile is captured: every reply must come
    // from the ClusterIP, none from an endpoint's own address.
    let dump = s.sniff_replies("n1-p1");
    let conns = CONNS.to_string();
    for from in ["n1-p1", "n2-p1"] {
        let got = s.client(from, &["http", CLUSTER_IP, "80", &conns]);
        assert_eq!(got.len(), CONNS as usize, "{got:?}\n{}", s.report());
        assert_eq!(names(&got), backends, "HTTP from {from}: {got:?}");
        let got = s.client(from, &["udp", CLUSTER_IP, "53", &conns]);
        assert_eq!(names(&got), backends, "UDP from {from}: {got:?}");
    }
    // A connection stays with its endpoint.
    for _ in 0..3 {
        let got = s.client("n1-p1", &["keepalive", CLUSTER_IP, "80", "20"]);
        assert_eq!(got.len(), 20, "{got:?}");
        assert_eq!(
            names(&got).len(),
            1,
            "one connection, several endpoints: {got:?}"
        );
        assert!(backends.contains(got[0].as_str()), "{got:?}");
    }
    dump.stop(Duration::from_secs(2));

    // Session affinity (web-sticky): all of a client's connections go to
    // one endpoint, through the rule its first connection learned.
    for from in ["n1-p1", "n2-p1", "n2-p3"] {
        let got = s.client(from, &["http", STICKY_IP, "80", &conns]);
        assert_eq!(got.len(), CONNS as usize, "{got:?}\n{}", s.report());
        assert_eq!(
            names(&got).len(),
            1,
            "affinity from {from}: {got:?}\n{}",
            s.dump_flows(&from[..2], "table=41") + &s.report()
        );
        assert!(backends.contains(got[0].as_str()), "{got:?}");
    }
    // A client port that reached an endpoint through the ClusterIP reaches
    // it again through web-sticky: the second connection's reply tuple
    // would be the first's, so the switch moves its source port (as Linux
    // does). Dropping it instead made ports that met this way time out.
    let sticky = s.client("n2-p1", &["http", STICKY_IP, "80"]);
    let mut met = 0;
    for port in (45000..45060).map(|p: u16| p.to_string()) {
        let first = s.client("n2-p1", &["http-from", CLUSTER_IP, "80", "1", &port]);
        if first != sticky {
            continue;
        }
        let again = s.client("n2-p1", &["http-from", STICKY_IP, "80", "1", &port]);
        assert_eq!(again, sticky, "from port {port}\n{}", s.report());
        met += 1;
        if met == 3 {
            break;
        }
    }
    assert_eq!(met, 3, "the ClusterIP never chose {sticky:?}");
    for (node, clients) in [
        ("n1", &["10.244.1.2"][..]),
        ("n2", &["10.244.2.2", "10.244.2.4"]),
    ] {
        let learned = s.dump_flows(node, "table=41");
        for client in clients {
            assert!(
                learned
                    .lines()
                    .any(|l| l.contains(&format!("nw_src={client},"))
                        && l.contains("nw_dst=10.96.0.11")
                        && l.contains("hard_timeout=10800")),
                "no affinity rule for {client} in {node}:\n{learned}"
            );
        }
    }
    let replies: Vec<String> = dump
        .log()
        .lines()
        .filter(|l| l.contains(" IP "))
        .map(str::to_string)
        .collect();
    // 24 HTTP connections, 24 datagrams and 3 x 20 keep-alive answers.
    assert!(replies.len() >= 108, "{}", dump.log());
    for l in &replies {
        let src = l.split(" IP ").nth(1).unwrap_or("");
        assert!(
            src.starts_with("10.96.0.10.80 >") || src.starts_with("10.96.0.10.53 >"),
            "a reply not from the ClusterIP: {l}"
        );
    }

    // A Service without endpoints refuses at once (oxvs's `reject`; Open
    // vSwitch has no such action, so only oxvsd loads these rules).
    if switch == Switch::Oxvsd {
        let file = common::repo().join("examples/services/no-endpoints.flows");
        for node in ["n1", "n2"] {
            s.ctl(node, &["add-flows", file.to_str().unwrap()]);
        }
        for from in ["n1-p1", "n2-p1"] {
            let t = Instant::now();
            let got = s.client(from, &["connect", "10.96.0.12", "80"]);
            assert_eq!(
                got,
                ["refused"],
                "empty Service from {from}\n{}",
                s.report()
            );
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "refused only after {:?}",
                t.elapsed()
            );
        }
    }
    // From outside: NodePort on each node, the LoadBalancer IP via node 1.
    for (to, port) in [
        ("192.168.77.1", "30080"),
        ("192.168.77.2", "30080"),
        (LB_IP, "80"),
    ] {
        let got = s.client("ext", &["http", to, port, &conns]);
        assert_eq!(
            names(&got),
            backends,
            "{to}:{port}: {got:?}\n{}",
            s.report()
        );
    }
    // The backends saw the external client as the node that took it in.
    let logs: String = servers.iter().map(|(_, srv)| srv.log()).collect();
    for node_ip in ["192.168.77.1", "192.168.77.2"] {
        assert!(logs.contains(&format!("client {node_ip}\n")), "{logs}");
    }
    assert!(
        !logs.contains(EXTERNAL),
        "a backend saw {EXTERNAL}:\n{logs}"
    );

    // Hairpin: backend-1 reaches its own Service, itself included.
    let got = s.client("n1-p2", &["http", CLUSTER_IP, "80", &conns]);
    assert_eq!(names(&got), backends, "hairpin: {got:?}\n{}", s.report());
    let own = &servers[0].1;
    assert!(
        own.log().contains("client 169.254.0.252\n"),
        "{}",
        own.log()
    );

    // Egress: a frontend reaches the external host as its node.
    for (from, node_ip) in [("n1-p1", "192.168.77.1"), ("n2-p1", "192.168.77.2")] {
        let got = s.client(from, &["read", EXTERNAL, "8080"]);
        assert_eq!(got, [node_ip], "egress from {from}\n{}", s.report());
    }

    for (name, srv) in &servers {
        assert!(srv.running(), "{name} died:\n{}", srv.log());
    }
    if switch == Switch::Oxvsd {
        for node in ["n1", "n2"] {
            assert_no_fault_drops(&s.lab, node);
        }
    }
    eprintln!("service lab took {:.1} s", began.elapsed().as_secs_f64());
}

#[test]
fn services_and_firewall_on_oxvsd() {
    services("sx", Switch::Oxvsd);
}

#[test]
fn services_and_firewall_on_open_vswitch() {
    services("so", Switch::OpenVswitch);
}
