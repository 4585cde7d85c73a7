//! The two-node lab of the Kubernetes Service example
//! (examples/services/node1.flows and node2.flows, docs/services.md), shared
//! by the tests that run it:
//!
//! ```text
//! n1: v1p1 frontend-1 10.244.1.2   v1p2 backend-1 10.244.1.3   v1p3 backend-2 10.244.1.4
//! n2: v2p1 frontend-2 10.244.2.2   v2p2 backend-3 10.244.2.3   v2p3 frontend-3 10.244.2.4
//! ext: 192.168.77.100 on the underlay bridge, 172.16.100.0/24 routed via node 1
//! ```
//!
//! Each backend runs an HTTP/1.1 server on :80 answering its own name and a
//! UDP echo on :5353 that prefixes its name; the client script makes
//! connections of each kind and prints, per answer, who answered. The lab
//! runs the flow files on oxvsd or on Open vSwitch 3.1's userspace datapath.

#![allow(dead_code)] // Each test file uses a different part.

use crate::common::{self, ok, Lab, Ovs};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Pod namespaces with their address and name; the roles follow from the
/// name (and the flow files' labels).
pub const PODS: [(&str, &str, &str); 6] = [
    ("n1-p1", "10.244.1.2", "frontend-1"),
    ("n1-p2", "10.244.1.3", "backend-1"),
    ("n1-p3", "10.244.1.4", "backend-2"),
    ("n2-p1", "10.244.2.2", "frontend-2"),
    ("n2-p2", "10.244.2.3", "backend-3"),
    ("n2-p3", "10.244.2.4", "frontend-3"),
];

pub const CLUSTER_IP: &str = "10.96.0.10";
/// The ClusterIP of the Service with session affinity by client IP.
pub const STICKY_IP: &str = "10.96.0.11";
pub const LB_IP: &str = "172.16.100.10";
pub const EXTERNAL: &str = "192.168.77.100";
/// Pods and the external host: 1500 less outer IPv4, UDP, Geneve and inner
/// Ethernet, so that no Service connection needs a PMTU error that would
/// quote the translated addresses.
pub const MTU: u32 = 1450;

/// Every connection count below: with three endpoints the chance that one
/// of them is never picked in 24 independent picks is 3 * (2/3)^24 < 1e-4.
pub const CONNS: u32 = 24;

/// The pods' server: `http NAME` (HTTP/1.1 on :80 answering NAME, UDP echo
/// on :5353) or `peer NAME` (TCP :8080 answering the caller's address).
pub const SERVER: &str = include_str!("server.py");

/// The client: `MODE HOST PORT [N [SPORT]]`, one line per answer.
pub const CLIENT: &str = include_str!("client.py");

/// Which switch runs the flow files.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Oxvsd,
    OpenVswitch,
}

/// The lab, its switches and scripts. Fields drop in order: the OVS
/// bridges go while the namespaces are still there.
pub struct ServiceLab {
    pub ovs: Vec<Ovs>,
    pub lab: Lab,
    client: PathBuf,
    server: PathBuf,
}

pub fn flows(n: u32) -> String {
    let path = common::repo().join(format!("examples/services/node{n}.flows"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// oxvsd's configuration on node `n`: the pods (1-3), the gateway port (4),
/// the uplink and the Geneve port, with a control socket.
pub fn oxvsd_config(n: u32) -> String {
    let mut c =
        "[switch]\nflows = \"node.flows\"\nlog = \"info\"\nsocket = \"oxvsd.sock\"\n".to_string();
    for p in 1..=3 {
        c += &format!("[[port]]\nname = \"v{n}p{p}\"\nno = {p}\nkind = \"afxdp\"\n");
    }
    c += "[[port]]\nname = \"gw0s\"\nno = 4\nkind = \"afxdp\"\n";
    c += "[[port]]\nname = \"ul0\"\nno = 10\nkind = \"afxdp\"\nuplink = true\n";
    c += &format!(
        "[[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\nlocal_ip = \"192.168.77.{n}\"\n"
    );
    c
}

impl ServiceLab {
    pub fn up(tag: &str, switch: Switch) -> ServiceLab {
        let lab = Lab::up_with(tag, 2, 3, 1);
        let client = lab.dir.join("client.py");
        let server = lab.dir.join("server.py");
        std::fs::write(&client, CLIENT).unwrap();
        std::fs::write(&server, SERVER).unwrap();
        let mut s = ServiceLab {
            ovs: Vec::new(),
            lab,
            client,
            server,
        };
        for (pod, _, _) in PODS {
            common::set_mtu(&s.lab.ns(pod), MTU);
        }
        s.lab
            .add_underlay_host("ext", "x0", &format!("{EXTERNAL}/24"), MTU);
        let ext = s.lab.ns("ext");
        ok(&[
            "ip",
            "-n",
            &ext,
            "route",
            "add",
            "172.16.100.0/24",
            "via",
            "192.168.77.1",
        ]);
        for n in [1, 2] {
            gateway_port(&s.lab, n);
        }
        for n in [1, 2] {
            let uplink = match switch {
                Switch::Oxvsd => {
                    s.lab
                        .start_switch_on(&format!("n{n}"), &oxvsd_config(n), &flows(n), 5);
                    "ul0"
                }
                Switch::OpenVswitch => {
                    let ovs = open_vswitch_node(&s.lab, n);
                    s.ovs.push(ovs);
                    "br-phy"
                }
            };
            node_routing(&s.lab, n, uplink);
        }
        s
    }

    /// Waits until each node reaches a pod of the other: the first packets
    /// toward a node wait for its VTEP to resolve.
    pub fn wait_overlay(&self) {
        for (from, to) in [("n1-p1", "10.244.2.3"), ("n2-p1", "10.244.1.3")] {
            let t = Instant::now();
            while self.lab.ping(from, to, 1) == 0 {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "no reply {from} -> {to} within 10 s\n{}",
                    self.report()
                );
            }
        }
    }

    /// Runs the client script in `ns`; one result per line.
    pub fn client(&self, ns: &str, args: &[&str]) -> Vec<String> {
        let mut cmd = vec!["python3", self.client.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let out = self.lab.exec(ns, &cmd);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts the server script in `ns` and waits until it listens.
    pub fn serve(&self, ns: &str, mode: &str, name: &str) -> common::Spawned {
        let srv = self.lab.spawn(
            ns,
            &format!("srv-{ns}"),
            &["python3", self.server.to_str().unwrap(), mode, name],
        );
        srv.wait_log(
            "ready",
            Duration::from_secs(10),
            &format!("server {name} in {ns}"),
        );
        srv
    }

    /// Starts tcpdump on `ns`'s eth0 for what arrives from port 80 (TCP) or
    /// 53 or 5353 (UDP), and waits until it listens.
    pub fn sniff_replies(&self, ns: &str) -> common::Spawned {
        let dump = self.lab.spawn(
            ns,
            &format!("tcpdump-{ns}"),
            &[
                "tcpdump",
                "-i",
                "eth0",
                "-n",
                "-l",
                "-Q",
                "in",
                "tcp src port 80 or udp src port 53 or udp src port 5353",
            ],
        );
        dump.wait_log(
            "listening on",
            Duration::from_secs(10),
            &format!("tcpdump in {ns} (apt-get install tcpdump)"),
        );
        dump
    }

    /// Runs `oxvs-ctl` against `node`'s oxvsd.
    pub fn ctl(&self, node: &str, args: &[&str]) -> String {
        let sock = self.lab.dir.join(node).join("oxvsd.sock");
        let mut argv = vec!["--socket".to_string(), sock.to_str().unwrap().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        ctl::cmd::run(&argv).unwrap_or_else(|e| panic!("oxvs-ctl {args:?} in {node}: {e}"))
    }

    /// The rules of `node`'s switch that `filter` selects.
    pub fn dump_flows(&self, node: &str, filter: &str) -> String {
        if let Some(o) = self.ovs.iter().find(|o| o.node == node) {
            return o.dump_flows("br-int", filter);
        }
        let sock = self.lab.dir.join(node).join("oxvsd.sock");
        ctl::cmd::run(&[
            "--socket".to_string(),
            sock.to_str().unwrap().to_string(),
            "dump-flows".to_string(),
            filter.to_string(),
        ])
        .unwrap_or_else(|e| panic!("oxvs-ctl dump-flows in {node}: {e}"))
    }

    /// What the switches know, for a failed check's message.
    pub fn report(&self) -> String {
        let mut r = String::new();
        for n in ["n1", "n2"] {
            r += &format!("--- oxvsd in {n}\n{}\n", self.lab.log_of(n));
        }
        for o in &self.ovs {
            r += &o.diag("br-int");
        }
        r
    }
}

/// The gateway veth of node `n`: `gw0` in the node's kernel with the pods'
/// gateway address and MAC (as Antrea's antrea-gw0), `gw0s` for the switch.
pub fn gateway_port(lab: &Lab, n: u32) {
    let node = lab.ns(&format!("n{n}"));
    let ip = |args: &str| {
        let mut cmd = vec!["ip", "-n", &node];
        cmd.extend(args.split_whitespace());
        ok(&cmd);
    };
    let mtu = MTU.to_string();
    ip("link add gw0 type veth peer name gw0s");
    ip(&format!(
        "link set gw0 address 0a:00:00:00:{n:02x}:fe mtu {mtu}"
    ));
    ip(&format!("link set gw0s mtu {mtu} addrgenmode none"));
    ok(&[
        "ip", "netns", "exec", &node, "ethtool", "-K", "gw0", "tx", "off",
    ]);
    ip(&format!("addr add 10.244.{n}.1/32 dev gw0"));
    ip("link set gw0 up");
    ip("link set gw0s up");
}

/// How node `n`'s kernel sends external traffic into the bridge (see
/// docs/services.md): the LoadBalancer pool through gw0 to a virtual next
/// hop; NodePort 30080 and the SNAT port range 61000-61999 arriving on the
/// uplink by a policy rule consulted before the local table (otherwise the
/// kernel would take them, being addressed to the node IP).
pub fn node_routing(lab: &Lab, n: u32, uplink: &str) {
    let node = lab.ns(&format!("n{n}"));
    let ip = |args: &str| {
        let mut cmd = vec!["ip", "-n", &node];
        cmd.extend(args.split_whitespace());
        ok(&cmd);
    };
    ip("neigh replace 169.254.0.253 lladdr aa:bb:cc:dd:ee:ff dev gw0 nud permanent");
    ip("route add 172.16.100.0/24 via 169.254.0.253 dev gw0 onlink");
    ip("route add default via 169.254.0.253 dev gw0 onlink table 200");
    ip("rule add pref 100 lookup local");
    ip("rule del pref 0");
    ip(&format!(
        "rule add pref 10 iif {uplink} ipproto tcp dport 30080 lookup 200"
    ));
    ip(&format!(
        "rule add pref 11 iif {uplink} ipproto tcp dport 61000-61999 lookup 200"
    ));
    ip(&format!(
        "rule add pref 12 iif {uplink} ipproto udp dport 61000-61999 lookup 200"
    ));
    let mut sysctl = vec!["ip", "netns", "exec", &node, "sysctl", "-qw"];
    let settings = [
        "net.ipv4.ip_forward=1".to_string(),
        "net.ipv4.conf.all.rp_filter=0".to_string(),
        "net.ipv4.conf.gw0.rp_filter=0".to_string(),
        format!("net.ipv4.conf.{uplink}.rp_filter=0"),
        // Replies of NodePort and egress connections come out of gw0 with
        // the node's own address as source.
        "net.ipv4.conf.gw0.accept_local=1".to_string(),
    ];
    sysctl.extend(settings.iter().map(String::as_str));
    ok(&sysctl);
}

/// Node `n` on Open vSwitch: br-phy owns the underlay address (OVS's
/// userspace tunnelling wants it so, see interop_lab.rs), br-int holds the
/// pods, the gateway and the Geneve port with the flow file loaded.
pub fn open_vswitch_node(lab: &Lab, n: u32) -> Ovs {
    let node = format!("n{n}");
    let ns = lab.ns(&node);
    let mut ovs = Ovs::start(lab, &node);
    let line = ok(&["ip", "-n", &ns, "-br", "link", "show", "dev", "ul0"]);
    let mac = line.split_whitespace().nth(2).unwrap_or("").to_string();
    ovs.add_bridge("br-phy", &[&format!("other_config:hwaddr=\"{mac}\"")]);
    ovs.add_port("br-phy", "ul0", &["type=afxdp", "options:xdp-mode=native"]);
    for args in [
        "addr flush dev ul0".to_string(),
        format!("addr add 192.168.77.{n}/24 dev br-phy"),
        "link set br-phy up".to_string(),
    ] {
        let mut cmd = vec!["ip", "-n", &ns];
        cmd.extend(args.split_whitespace());
        ok(&cmd);
    }
    ovs.add_bridge(
        "br-int",
        &[
            "fail-mode=secure",
            "protocols=OpenFlow10,OpenFlow13,OpenFlow15",
        ],
    );
    for (port, no) in [
        (format!("v{n}p1"), 1),
        (format!("v{n}p2"), 2),
        (format!("v{n}p3"), 3),
        ("gw0s".to_string(), 4),
    ] {
        ovs.add_afxdp_port("br-int", &port, no);
    }
    ovs.add_geneve_flow_port("br-int");
    ovs.add_flow_file("br-int", &flows(n));
    ovs
}

/// Drop reasons that no packet of this lab should meet: a malformed frame
/// (a NAT rewrite gone wrong would show here first), a Geneve fault, a full
/// conntrack table or NAT range, a recirculation or resubmit loop, a frame
/// too big for the tunnel (the pods' MTU leaves room).
pub const FAULTS: [&str; 8] = [
    "drop_malformed_",
    "drop_geneve_",
    "drop_ct_full",
    "drop_ct_zone_full",
    "drop_ct_nat_exhausted",
    "drop_recirc_limit",
    "drop_resubmit_limit",
    "drop_tunnel_mtu",
];

/// Reads oxvsd's drop counters in `node` and checks the [`FAULTS`] are 0.
pub fn assert_no_fault_drops(lab: &Lab, node: &str) {
    let sock = lab.dir.join(node).join("oxvsd.sock");
    let drops = ctl::cmd::run(&[
        "--socket".to_string(),
        sock.to_str().unwrap().to_string(),
        "dump-drops".to_string(),
    ])
    .unwrap_or_else(|e| panic!("oxvs-ctl dump-drops in {node}: {e}"));
    assert!(drops.contains("drop_ct_full"), "{drops}");
    for line in drops.lines() {
        let (reason, n) = line.split_once(": ").unwrap_or((line, "0"));
        if FAULTS.iter().any(|f| reason.trim().starts_with(f)) {
            assert_eq!(n.trim(), "0", "oxvsd in {node} dropped {reason}:\n{drops}");
        }
    }
}

pub fn names(results: &[String]) -> BTreeSet<&str> {
    results.iter().map(String::as_str).collect()
}
