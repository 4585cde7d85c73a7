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

use common::{find_tool, ok, root_serial, Lab, Ovs, OVS_SCHEMA, OVS_TOOLS};
use std::path::Path;
use std::time::{Duration, Instant};

const VNI: u32 = 0x2a;

/// The Geneve header both switches must write for these rules (RFC 8926
/// §3.4): version 0, no options, O and C clear, protocol 0x6558
/// (Transparent Ethernet Bridging), VNI 0x00002a, reserved 0.
const GENEVE_HEADER: &str = "0000655800002a00";

/// Node 2's pods: 1500 less 20 (outer IPv4) + 8 (UDP) + 8 (Geneve) + 14
/// (inner Ethernet).
const OVS_POD_MTU: u32 = 1450;

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
    for (port, no) in [("v2p1", 1), ("v2p2", 2)] {
        ovs.add_afxdp_port("br-int", port, no);
    }
    ovs.add_geneve_flow_port("br-int");
    ovs.add_flow_file("br-int", &node_flows(2, 1));
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
    let Some(_serial) = root_serial() else { return };
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
    let mut ovs = Ovs::start(&lab, "n2");
    let ul0_mac = open_vswitch_node(&lab, &mut ovs);
    let n2 = lab.ns("n2");
    let report = |lab: &Lab, ovs: &Ovs| {
        format!(
            "--- oxvsd (n1)\n{}\n{}",
            lab.log_of("n1"),
            ovs.diag("br-int")
        )
    };

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
