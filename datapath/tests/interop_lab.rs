//! oxvsd and Open vSwitch at the two ends of one Geneve overlay: a lab of
//! two nodes with two pods each, oxvsd on node 1 (configured as in
//! overlay_lab.rs: IPv4 underlay, no TLV map) and Open vSwitch 3.1's
//! userspace datapath on node 2 with the same rules. Every pod pings every
//! pod of the other node, TCP crosses both ways (SHA-256 checked), a capture
//! on the underlay shows both switches writing the same Geneve header,
//! oxvsd counts no Geneve or malformed-header drop, and each switch
//! resolved the other's VTEP by itself.
//!
//! OVS tunnels in userspace only through a bridge that owns the underlay
//! address (its "userspace tunneling" how-to), so node 2 is:
//!
//! ```text
//! br-int  netdev, fail-mode secure: v2p1, v2p2 (afxdp, native XDP),
//!         gnv0 (geneve, remote_ip=flow, key=flow); the rules of node_flows
//! br-phy  netdev, standalone (NORMAL): ul0 (afxdp, native XDP); the
//!         internal port br-phy takes ul0's MAC and addresses
//! ```
//!
//! OVS reads the route to 192.168.77.0/24 from the namespace's kernel table
//! (ovs/route/show) and learns 192.168.77.1's MAC from the ARP it sees on
//! br-phy, sending a request of its own when it has none (tnl/arp/show), so
//! neither ovs/route/add nor tnl/arp/set is needed.
//!
//! OVS does not answer a packet too big for the tunnel with an ICMP error
//! (oxvsd does), and a veth drops a frame longer than its MTU, so TCP from a
//! node-2 pod at MTU 1500 stalls at the first full segment. Node 2's pods
//! get MTU 1450 (1500 less outer IPv4, UDP, Geneve and inner Ethernet), as a
//! CNI plugin sets it in front of OVS.
//!
//! Needs root, Open vSwitch (Debian: openvswitch-switch) and tshark; without
//! root it says why and passes, without OVS it fails naming the package.
//! The guards remove the OVS bridges (and with them OVS's XDP programs),
//! stop both OVS daemons, oxvsd and every namespace even when a check fails.

mod common;

use common::{is_root, ok, run, serial, Lab, Spawned};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VNI: u32 = 0x2a;

/// The Geneve header both switches must write for these rules (RFC 8926
/// §3.4): version 0, no options, O and C clear, protocol 0x6558
/// (Transparent Ethernet Bridging), VNI 0x00002a, reserved 0.
const GENEVE_HEADER: &str = "0000655800002a00";

/// Node 2's pods: 1500 less 20 (outer IPv4) + 8 (UDP) + 8 (Geneve) + 14
/// (inner Ethernet).
const OVS_POD_MTU: u32 = 1450;

const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const OVS_TOOLS: [&str; 6] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
];

/// The flows of node `n` whose peer is `m`, in the ovs-ofctl syntax both
/// switches read: overlay_lab.rs's `node_flows(n, m, false, false)`. L2
/// between its own pods (ARP included), local delivery by address,
/// everything for the other node's /24 into the tunnel, and tunnel arrivals
/// routed to the pod (MACs rewritten to gateway → pod, TTL decremented).
fn node_flows(n: u32, m: u32) -> String {
    let mut f = String::new();
    f += &format!("priority=100,in_port=v{n}p1,arp,actions=output:v{n}p2\n");
    f += &format!("priority=100,in_port=v{n}p2,arp,actions=output:v{n}p1\n");
    for p in 1..=2 {
        f += &format!(
            "priority=100,in_port=gnv0,tun_id={VNI:#x},ip,nw_dst=10.244.{n}.{ip},\
             actions=mod_dl_src:0a:00:00:00:{n:02x}:fe,mod_dl_dst:02:00:00:{n:02x}:00:{p:02x},dec_ttl,output:v{n}p{p}\n",
            ip = p + 1
        );
        f += &format!(
            "priority=90,ip,nw_dst=10.244.{n}.{ip},actions=output:v{n}p{p}\n",
            ip = p + 1
        );
    }
    f += "priority=50,in_port=gnv0,actions=drop\n";
    f += &format!(
        "priority=80,ip,nw_dst=10.244.{m}.0/24,actions=set_field:192.168.77.{m}->tun_dst,\
         set_field:{VNI:#x}->tun_id,output:gnv0\n"
    );
    f
}

/// oxvsd's configuration on node `n`: overlay_lab.rs's
/// `node_config(n, false, false)` plus a control socket, through which the
/// test reads the drop counters.
fn oxvsd_config(n: u32) -> String {
    format!(
        "[switch]\nflows = \"node.flows\"\nlog = \"info\"\nsocket = \"oxvsd.sock\"\n\
         [[port]]\nname = \"v{n}p1\"\nno = 1\nkind = \"afxdp\"\n\
         [[port]]\nname = \"v{n}p2\"\nno = 2\nkind = \"afxdp\"\n\
         [[port]]\nname = \"ul0\"\nno = 10\nkind = \"afxdp\"\nuplink = true\n\
         [[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\nlocal_ip = \"192.168.77.{n}\"\n"
    )
}

/// The first CPU this process may run on (a CI container may not have
/// CPU 0), where OVS's one PMD thread goes.
fn first_allowed_cpu() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| {
            let first = list.trim().split([',', '-']).next()?;
            first.parse().ok()
        })
        .filter(|&cpu| cpu < 64)
        .unwrap_or(0)
}

/// Where `tool` is on PATH (or in the sbin directories a root shell has).
fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
    {
        let candidate = Path::new(dir).join(tool);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// A private Open vSwitch in one lab node: its own ovsdb-server and
/// ovs-vswitchd with run, db, log and etc directories in the lab's temp
/// directory, started with `oxvs-lab spawn` so that the lab's teardown stops
/// them even if this guard could not. Dropping it (or [`Ovs::stop`]) deletes
/// its bridges first, so that ovs-vswitchd detaches its XDP programs.
struct Ovs {
    /// The lab node it runs in (`n2`).
    node: String,
    dir: PathBuf,
    /// ovsdb-server, then ovs-vswitchd once started.
    daemons: Vec<Spawned>,
    bridges: Vec<String>,
}

impl Ovs {
    /// Creates the database of an OVS for `node`; starts nothing yet.
    fn new(lab: &Lab, node: &str) -> Ovs {
        let dir = lab.dir.join("ovs");
        for d in ["run", "db", "log", "etc"] {
            std::fs::create_dir_all(dir.join(d)).expect("OVS directories");
        }
        let db = dir.join("db/conf.db");
        ok(&["ovsdb-tool", "create", db.to_str().unwrap(), OVS_SCHEMA]);
        Ovs {
            node: node.to_string(),
            dir,
            daemons: Vec::new(),
            bridges: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_str().unwrap().to_string()
    }

    /// `env OVS_RUNDIR=... ` in front of a daemon's command line, so that
    /// nothing it writes lands in the system's /var/run/openvswitch.
    fn env(&self) -> Vec<String> {
        let mut v = vec!["env".to_string()];
        for (var, d) in [
            ("OVS_RUNDIR", "run"),
            ("OVS_DBDIR", "db"),
            ("OVS_LOGDIR", "log"),
            ("OVS_SYSCONFDIR", "etc"),
        ] {
            v.push(format!("{var}={}", self.path(d)));
        }
        v
    }

    /// Starts ovsdb-server, initialises the database (one PMD thread, on
    /// the first core this test may use, that sleeps when idle, one handler, one revalidator: the
    /// machine is small and shared), then starts ovs-vswitchd.
    fn start(&mut self, lab: &Lab) {
        let mut cmd = self.env();
        cmd.extend([
            "ovsdb-server".to_string(),
            self.path("db/conf.db"),
            format!("--remote=punix:{}", self.path("run/db.sock")),
            format!("--pidfile={}", self.path("run/ovsdb-server.pid")),
            format!("--unixctl={}", self.path("run/ovsdb-server.ctl")),
            format!("--log-file={}", self.path("log/ovsdb-server.log")),
            "--no-chdir".to_string(),
        ]);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.daemons
            .push(lab.spawn(&self.node, "ovsdb-server", &args));
        self.wait_socket("run/db.sock", &self.daemons[0]);
        self.vsctl(&["--no-wait", "init"]);
        self.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!(
                "other_config:pmd-cpu-mask={:#x}",
                1u64 << first_allowed_cpu()
            ),
            "other_config:pmd-maxsleep=100",
            "other_config:n-handler-threads=1",
            "other_config:n-revalidator-threads=1",
        ]);

        let mut cmd = self.env();
        cmd.extend([
            "ovs-vswitchd".to_string(),
            format!("unix:{}", self.path("run/db.sock")),
            format!("--pidfile={}", self.path("run/ovs-vswitchd.pid")),
            format!("--unixctl={}", self.path("run/ovs-vswitchd.ctl")),
            format!("--log-file={}", self.path("log/ovs-vswitchd.log")),
            "--no-chdir".to_string(),
        ]);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.daemons
            .push(lab.spawn(&self.node, "ovs-vswitchd", &args));
        self.wait_socket("run/ovs-vswitchd.ctl", &self.daemons[1]);
    }

    fn wait_socket(&self, rel: &str, daemon: &Spawned) {
        let t = Instant::now();
        while !self.dir.join(rel).exists() {
            assert!(
                daemon.running() && t.elapsed() < Duration::from_secs(10),
                "{} did not open {rel}:\n{}\n{}",
                daemon.name,
                daemon.log(),
                std::fs::read_to_string(self.dir.join(format!("log/{}.log", daemon.name)))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn vsctl_cmd(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "ovs-vsctl".to_string(),
            format!("--db=unix:{}", self.path("run/db.sock")),
            "--timeout=20".to_string(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    fn vsctl(&self, args: &[&str]) -> String {
        let cmd = self.vsctl_cmd(args);
        ok(&cmd.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn appctl(&self, args: &[&str]) -> std::process::Output {
        let ctl = self.path("run/ovs-vswitchd.ctl");
        let mut cmd = vec!["ovs-appctl", "-t", &ctl, "--timeout=10"];
        cmd.extend_from_slice(args);
        run(&cmd)
    }

    fn appctl_text(&self, args: &[&str]) -> String {
        let out = self.appctl(args);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `ovs-vsctl add-br NAME -- set bridge NAME datapath_type=netdev ...`.
    fn add_bridge(&mut self, name: &str, settings: &[&str]) {
        // Recorded first: a half-made bridge is deleted too.
        self.bridges.push(name.to_string());
        let mut args = vec![
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ];
        args.extend_from_slice(settings);
        self.vsctl(&args);
    }

    /// Adds a port and checks that OVS opened it (an ofport, no error).
    fn add_port(&self, bridge: &str, port: &str, settings: &[&str]) {
        let mut args = vec!["add-port", bridge, port, "--", "set", "interface", port];
        args.extend_from_slice(settings);
        self.vsctl(&args);
        let ofport = self.vsctl(&["get", "interface", port, "ofport"]);
        let error = self.vsctl(&["get", "interface", port, "error"]);
        assert!(
            ofport.trim().parse::<i32>().is_ok_and(|n| n > 0) && error.trim() == "[]",
            "OVS did not open {port} ({settings:?}): ofport {} error {}\n{}",
            ofport.trim(),
            error.trim(),
            self.log_tail(20)
        );
    }

    fn add_flows(&self, bridge: &str, flows: &str) {
        let file = self.dir.join(format!("{bridge}.flows"));
        std::fs::write(&file, flows).unwrap();
        let mgmt = format!("unix:{}", self.path(&format!("run/{bridge}.mgmt")));
        ok(&["ovs-ofctl", "add-flows", &mgmt, file.to_str().unwrap()]);
    }

    fn log_tail(&self, lines: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.join("log/ovs-vswitchd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What OVS knows, for a failed check's message.
    fn diag(&self) -> String {
        let mgmt = format!("unix:{}", self.path("run/br-int.mgmt"));
        let flows = run(&["ovs-ofctl", "dump-flows", &mgmt]);
        format!(
            "--- ovs-vswitchd.log (tail)\n{}\n--- br-int flows\n{}\n--- datapath flows\n{}\
             --- tnl/arp/show\n{}--- ovs/route/show\n{}--- dpctl/show -s\n{}",
            self.log_tail(30),
            String::from_utf8_lossy(&flows.stdout),
            self.appctl_text(&["dpctl/dump-flows"]),
            self.appctl_text(&["tnl/arp/show"]),
            self.appctl_text(&["ovs/route/show"]),
            self.appctl_text(&["dpctl/show", "-s"]),
        )
    }

    /// Deletes the bridges (ovs-vswitchd then closes its ports and detaches
    /// their XDP programs), asks both daemons to exit, and waits for them;
    /// a daemon that does not exit within 3 s gets SIGTERM, then SIGKILL.
    /// Returns whether both exited when asked. Never panics: it also runs
    /// while a failed check unwinds.
    fn stop(&mut self) -> bool {
        let vswitchd_up = self.daemons.get(1).is_some_and(Spawned::running);
        for br in std::mem::take(&mut self.bridges).iter().rev() {
            if vswitchd_up {
                let cmd = self.vsctl_cmd(&["--if-exists", "del-br", br]);
                let _ = run(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        if vswitchd_up {
            let _ = self.appctl(&["exit", "--cleanup"]);
        }
        let mut clean = true;
        for d in std::mem::take(&mut self.daemons).iter().rev() {
            if d.name == "ovsdb-server" && d.running() {
                let ctl = self.path("run/ovsdb-server.ctl");
                let _ = run(&["ovs-appctl", "-t", &ctl, "--timeout=5", "exit"]);
            }
            clean &= d.wait_exit(Duration::from_secs(3)) || d.stop(Duration::from_secs(2));
        }
        clean
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Node 2 as OVS's userspace tunnelling wants it (see the top of this
/// file), with node_flows on br-int and node 2's pods at [`OVS_POD_MTU`].
/// Returns ul0's MAC, which br-phy takes.
fn open_vswitch_node(lab: &Lab, ovs: &mut Ovs) -> String {
    let ip = |args: &str| {
        let n2 = lab.ns("n2");
        let mut cmd = vec!["ip", "-n", &n2];
        cmd.extend(args.split_whitespace());
        ok(&cmd)
    };
    let ul0_mac = mac_of(&lab.ns("n2"), "ul0");
    let hwaddr = format!("other_config:hwaddr=\"{ul0_mac}\"");
    ovs.add_bridge("br-phy", &[&hwaddr]);
    ovs.add_port("br-phy", "ul0", &["type=afxdp", "options:xdp-mode=native"]);
    // The underlay addresses move to br-phy: the kernel (and OVS, which
    // copies its routes) then reach 192.168.77.0/24 through br-phy, and
    // nothing is left that would route through ul0.
    ip("addr flush dev ul0");
    ip("addr add 192.168.77.2/24 dev br-phy");
    ip("addr add fd00:77::2/64 dev br-phy nodad");
    ip("link set br-phy up");
    ovs.add_bridge("br-int", &["fail-mode=secure"]);
    for (port, no) in [("v2p1", "1"), ("v2p2", "2")] {
        let request = format!("ofport_request={no}");
        ovs.add_port(
            "br-int",
            port,
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
    ovs.add_flows("br-int", &node_flows(2, 1));
    for p in ["n2-p1", "n2-p2"] {
        let mtu = OVS_POD_MTU.to_string();
        ok(&["ip", "-n", &lab.ns(p), "link", "set", "eth0", "mtu", &mtu]);
    }
    ul0_mac
}

/// The MAC of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> String {
    let line = ok(&["ip", "-n", ns, "-br", "link", "show", "dev", dev]);
    line.split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {line}"))
        .to_string()
}

/// Pings until one reply comes back (the first packets toward a remote VTEP
/// wait for its neighbour on both switches), at most 10 s.
fn until_reply(lab: &Lab, from: &str, to: &str) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if lab.ping(from, to, 1) == 1 {
            return true;
        }
    }
    false
}

#[test]
fn oxvsd_and_open_vswitch_share_a_geneve_overlay() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let missing: Vec<&str> = OVS_TOOLS
        .into_iter()
        .filter(|t| find_tool(t).is_none())
        .collect();
    assert!(
        missing.is_empty() && Path::new(OVS_SCHEMA).is_file(),
        "Open vSwitch is not installed (missing: {missing:?}, schema {OVS_SCHEMA}); \
         this interop test runs against its userspace datapath: \
         apt-get install openvswitch-switch"
    );
    let _serial = serial();
    let began = Instant::now();
    let mut lab = Lab::up_with("ix", 2, 2, 1);
    // tshark writes its capture as an unprivileged user when it can.
    let _ = std::fs::set_permissions(
        &lab.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    );
    lab.start_switch_on("n1", &oxvsd_config(1), &node_flows(1, 2), 3);

    // Declared after the lab, so dropped before it: the bridges go while
    // the namespaces are still there.
    let mut ovs = Ovs::new(&lab, "n2");
    ovs.start(&lab);
    let ul0_mac = open_vswitch_node(&lab, &mut ovs);
    let n2 = lab.ns("n2");
    let report =
        |lab: &Lab, ovs: &Ovs| format!("--- oxvsd (n1)\n{}\n{}", lab.log_of("n1"), ovs.diag());

    for (from, to) in [("n1-p1", "10.244.2.2"), ("n2-p1", "10.244.1.2")] {
        assert!(
            until_reply(&lab, from, to),
            "no reply {from} -> {to} within 10 s\n{}",
            report(&lab, &ovs)
        );
    }
    let pods = [
        ("n1-p1", "10.244.1.2"),
        ("n1-p2", "10.244.1.3"),
        ("n2-p1", "10.244.2.2"),
        ("n2-p2", "10.244.2.3"),
    ];
    for (from, _) in pods {
        for (to_ns, to) in pods {
            if to_ns[..2] != from[..2] {
                assert_eq!(
                    lab.ping(from, to, 3),
                    3,
                    "ping {from} -> {to}\n{}",
                    report(&lab, &ovs)
                );
            }
        }
    }
    for (from, to, ip) in [
        ("n1-p1", "n2-p2", "10.244.2.3"),
        ("n2-p1", "n1-p2", "10.244.1.3"),
    ] {
        let (n, got, sent) = lab.tcp_transfer(from, to, ip, 4 << 20);
        assert_eq!(n, 4 << 20, "TCP {from} -> {to}\n{}", report(&lab, &ovs));
        assert_eq!(got, sent, "payload digest {from} -> {to}");
    }

    // On the wire: requests from oxvsd, replies from OVS, one header.
    let pcap = lab.dir.join("underlay.pcap");
    let (captured, said) = lab.capture_pings(&pcap, 4, "n1-p1", "10.244.2.2");
    assert!(captured, "tshark: {said}");
    let p = pcap.to_str().unwrap();
    let fields = ok(&[
        "tshark",
        "-r",
        p,
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-e",
        "ip.src",
        "-e",
        "udp.payload",
    ]);
    let mut senders = Vec::new();
    for l in fields.lines() {
        let (src, payload) = l.split_once(';').unwrap_or((l, ""));
        // The outer source first, then the inner one.
        let outer = src.split(',').next().unwrap_or("");
        assert_eq!(
            payload.get(..16),
            Some(GENEVE_HEADER),
            "Geneve header from {outer}:\n{fields}"
        );
        senders.push(outer.to_string());
    }
    // Four frames in a row of request/reply pairs hold at least one of each,
    // wherever the capture began.
    assert_eq!(senders.len(), 4, "{fields}");
    for vtep in ["192.168.77.1", "192.168.77.2"] {
        assert!(
            senders.iter().any(|s| s == vtep),
            "no frame from {vtep}:\n{fields}"
        );
    }
    common::assert_clean_dissection(p);

    // oxvsd took every frame OVS sent: no Geneve or header drop. (A table
    // miss is the pods' IPv6 neighbour discovery, which no rule matches;
    // a tunnel_no_route is the first packet, before 192.168.77.2 resolved.)
    let sock = lab.dir.join("n1/oxvsd.sock");
    let drops = ctl::cmd::run(&[
        "--socket".to_string(),
        sock.to_str().unwrap().to_string(),
        "dump-drops".to_string(),
    ])
    .unwrap_or_else(|e| panic!("oxvs-ctl dump-drops: {e}"));
    for line in drops.lines() {
        let (reason, n) = line.split_once(": ").unwrap_or((line, "0"));
        if reason.starts_with("drop_geneve_") || reason.starts_with("drop_malformed_") {
            assert_eq!(n.trim(), "0", "oxvsd dropped {reason}:\n{drops}");
        }
    }
    assert!(drops.contains("drop_geneve_malformed"), "{drops}");

    // Each side found the other's VTEP by itself: oxvsd through the kernel's
    // neighbour table, OVS from ARP on br-phy.
    let hop = format!("next_hop_mac={ul0_mac}");
    assert!(
        lab.log_of("n1")
            .lines()
            .any(|l| l.contains("tunnel remote resolved")
                && l.contains("remote=192.168.77.2")
                && l.contains(&hop)),
        "oxvsd never logged 'tunnel remote resolved' for 192.168.77.2 with {hop}\n{}",
        lab.log_of("n1")
    );
    let n1_ul0 = mac_of(&lab.ns("n1"), "ul0");
    let arp = ovs.appctl_text(&["tnl/arp/show"]);
    assert!(
        arp.lines()
            .any(|l| l.contains("192.168.77.1") && l.contains(&n1_ul0) && l.contains("br-phy")),
        "OVS has no neighbour 192.168.77.1 at {n1_ul0}:\n{arp}"
    );

    assert!(lab.stop_switch_on("n1").success(), "{}", lab.log_of("n1"));
    assert!(
        ovs.stop(),
        "OVS did not exit when asked\n{}",
        ovs.log_tail(20)
    );
    for dev in ["ul0", "v2p1", "v2p2"] {
        let link = ok(&["ip", "-n", &n2, "-d", "link", "show", "dev", dev]);
        assert!(
            !link.contains("prog/xdp"),
            "OVS left its XDP program on {dev}:\n{link}"
        );
    }
    eprintln!("interop lab took {:.1} s", began.elapsed().as_secs_f64());
}
