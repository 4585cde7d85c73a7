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

use common::{ok, ovs_installed, root_serial, Lab, Ovs};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Pod namespaces with their address and name; the roles follow from the
/// name (and the flow files' labels).
const PODS: [(&str, &str, &str); 6] = [
    ("n1-p1", "10.244.1.2", "frontend-1"),
    ("n1-p2", "10.244.1.3", "backend-1"),
    ("n1-p3", "10.244.1.4", "backend-2"),
    ("n2-p1", "10.244.2.2", "frontend-2"),
    ("n2-p2", "10.244.2.3", "backend-3"),
    ("n2-p3", "10.244.2.4", "frontend-3"),
];

const CLUSTER_IP: &str = "10.96.0.10";
/// The ClusterIP of the Service with session affinity by client IP.
const STICKY_IP: &str = "10.96.0.11";
const LB_IP: &str = "172.16.100.10";
const EXTERNAL: &str = "192.168.77.100";
/// Pods and the external host: 1500 less outer IPv4, UDP, Geneve and inner
/// Ethernet, so that no Service connection needs a PMTU error that would
/// quote the translated addresses.
const MTU: u32 = 1450;

/// Every connection count below: with three endpoints the chance that one
/// of them is never picked in 24 independent picks is 3 * (2/3)^24 < 1e-4.
const CONNS: u32 = 24;

const SERVER: &str = r#"
import http.server, socketserver, socket, sys, threading
mode, name = sys.argv[1], sys.argv[2]
if mode == "peer":
    # Answers each connection with the address it came from.
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(64); print("ready", flush=True)
    while True:
        c, a = s.accept(); c.sendall(a[0].encode()); c.close()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("client", self.client_address[0], flush=True)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
def echo():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    while True:
        d, a = u.recvfrom(2048); u.sendto(name.encode() + b" " + d, a)
srv = S(("0.0.0.0", 80), H)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
srv.serve_forever()
"#;

const CLIENT: &str = r#"
import http.client, socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
out = []
def err(e):
    return "ERR:" + type(e).__name__
if mode == "http":  # n connections, one GET each
    for _ in range(n):
        c = http.client.HTTPConnection(host, port, timeout=3)
        try:
            c.request("GET", "/"); body = c.getresponse().read().decode()
            peer = c.sock.getpeername()[0]
            out.append(body if peer == host else "PEER:" + peer)
        except Exception as e:
            out.append(err(e))
        finally:
            c.close()
elif mode == "keepalive":  # one connection, n GETs
    c = http.client.HTTPConnection(host, port, timeout=3)
    for _ in range(n):
        try:
            c.request("GET", "/"); out.append(c.getresponse().read().decode())
        except Exception as e:
            out.append(err(e)); break
elif mode == "udp":  # n sockets (n source ports), one datagram each
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(b"ping%d" % i, (host, port))
        try:
            d, a = s.recvfrom(2048)
            name, _, echo = d.decode().partition(" ")
            if a != (host, port): out.append("FROM:%s:%d" % a)
            elif echo != "ping%d" % i: out.append("ECHO:" + echo)
            else: out.append(name)
        except Exception as e:
            out.append(err(e))
        s.close()
elif mode == "connect":
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((host, port)); out.append("ok")
    except socket.timeout:
        out.append("timeout")
    except ConnectionRefusedError:
        out.append("refused")
    except Exception as e:
        out.append(err(e))
elif mode == "read":  # what the server says first
    try:
        s = socket.create_connection((host, port), timeout=3); out.append(s.recv(100).decode())
    except Exception as e:
        out.append(err(e))
print("\n".join(out))
"#;

/// Which switch runs the flow files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Switch {
    Oxvsd,
    OpenVswitch,
}

/// The lab, its switches and scripts. Fields drop in order: the OVS
/// bridges go while the namespaces are still there.
struct ServiceLab {
    ovs: Vec<Ovs>,
    lab: Lab,
    client: PathBuf,
    server: PathBuf,
}

fn flows(n: u32) -> String {
    let path = common::repo().join(format!("examples/services/node{n}.flows"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// oxvsd's configuration on node `n`: the pods (1-3), the gateway port (4),
/// the uplink and the Geneve port, with a control socket.
fn oxvsd_config(n: u32) -> String {
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
    fn up(tag: &str, switch: Switch) -> ServiceLab {
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
            let ns = s.lab.ns(pod);
            ok(&[
                "ip",
                "-n",
                &ns,
                "link",
                "set",
                "eth0",
                "mtu",
                &MTU.to_string(),
            ]);
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

    /// Runs the client script in `ns`; one result per line.
    fn client(&self, ns: &str, args: &[&str]) -> Vec<String> {
        let mut cmd = vec!["python3", self.client.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let out = self.lab.exec(ns, &cmd);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts the server script in `ns` and waits until it listens.
    fn serve(&self, ns: &str, mode: &str, name: &str) -> common::Spawned {
        let srv = self.lab.spawn(
            ns,
            &format!("srv-{ns}"),
            &["python3", self.server.to_str().unwrap(), mode, name],
        );
        let t = Instant::now();
        while !srv.log().contains("ready") {
            assert!(
                srv.running() && t.elapsed() < Duration::from_secs(10),
                "server {name} in {ns} did not start:\n{}",
                srv.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        srv
    }

    /// Starts tcpdump on `ns`'s eth0 for what arrives from port 80 (TCP) or
    /// 53 or 5353 (UDP), and waits until it listens.
    fn sniff_replies(&self, ns: &str) -> common::Spawned {
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
        let t = Instant::now();
        while !dump.log().contains("listening on") {
            assert!(
                dump.running() && t.elapsed() < Duration::from_secs(10),
                "tcpdump in {ns} did not start (apt-get install tcpdump):\n{}",
                dump.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dump
    }

    /// Runs `oxvs-ctl` against `node`'s oxvsd.
    fn ctl(&self, node: &str, args: &[&str]) -> String {
        let sock = self.lab.dir.join(node).join("oxvsd.sock");
        let mut argv = vec!["--socket".to_string(), sock.to_str().unwrap().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        ctl::cmd::run(&argv).unwrap_or_else(|e| panic!("oxvs-ctl {args:?} in {node}: {e}"))
    }

    /// The rules of `node`'s switch that `filter` selects.
    fn dump_flows(&self, node: &str, filter: &str) -> String {
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
    fn report(&self) -> String {
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
fn gateway_port(lab: &Lab, n: u32) {
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
fn node_routing(lab: &Lab, n: u32, uplink: &str) {
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
fn open_vswitch_node(lab: &Lab, n: u32) -> Ovs {
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
        let request = format!("ofport_request={no}");
        ovs.add_port(
            "br-int",
            &port,
            &["type=afxdp", "options:xdp-mode=native", &request],
        );
    }
    ovs.add_port(
        "br-int",
        "gnv0",
        &[
            "type=geneve",
            "options:remote_ip=flow",
            "options:key=flow",
            "ofport_request=100",
        ],
    );
    ovs.add_flow_file("br-int", &flows(n));
    ovs
}

/// Drop reasons that no packet of this lab should meet: a malformed frame
/// (a NAT rewrite gone wrong would show here first), a Geneve fault, a full
/// conntrack table or NAT range, a recirculation or resubmit loop, a frame
/// too big for the tunnel (the pods' MTU leaves room).
const FAULTS: [&str; 8] = [
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
fn assert_no_fault_drops(lab: &Lab, node: &str) {
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

fn names(results: &[String]) -> BTreeSet<&str> {
    results.iter().map(String::as_str).collect()
}

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

    // The first packets toward the other node wait for its VTEP to resolve.
    for (from, to) in [("n1-p1", "10.244.2.3"), ("n2-p1", "10.244.1.3")] {
        let t = Instant::now();
        while s.lab.ping(from, to, 1) == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no reply {from} -> {to} within 10 s\n{}",
                s.report()
            );
        }
    }

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
