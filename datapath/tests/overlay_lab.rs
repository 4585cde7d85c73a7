//! Pods on different nodes talking through oxvsd's Geneve overlay: a lab of
//! two nodes with two pods each, oxvsd on both nodes with the node's
//! underlay veth as uplink and a Geneve tunnel port; every pod pings every
//! other, TCP crosses nodes both ways (SHA-256 checked), the underlay is
//! captured with tshark in the underlay namespace (no XDP there) and must
//! dissect as Geneve with the VNI and option the rules set, and a packet too
//! big for the tunnel is answered with ICMP carrying the pod MTU. Once over
//! an IPv4 underlay, once over IPv6. And a `reject` at the destination node
//! (where Antrea enforces ingress policy) answers a pod of the other node
//! back through the tunnel: its connection is refused at once although the
//! pod listens, and its ping reports "Packet filtered".
//!
//! The tunnel ports have a fixed `key = 42` (a TOML integer). The underlay
//! is captured during a TCP transfer: every segment of the connection, SYN
//! to FIN, leaves on one outer UDP source port per direction (RFC 8926
//! §3.3). And Geneve sent by node 2's kernel with VNIs the port does not
//! take, or with the O bit, never reaches a pod: node 1 counts them as
//! `drop_geneve_vni` and `drop_geneve_oam`.
//!
//! Needs root (and tshark); without root it says why and passes. The lab
//! guard removes every namespace and switch even when a check fails.

mod common;

use common::{ok, root_serial, run, Lab};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const VNI: u32 = 0x2a;

/// The flows of node `n` whose peer node is `m`: L2 between its own pods
/// (ARP included), local delivery by address, everything for the other
/// node's /24 into the tunnel, and tunnel arrivals routed to the pod (MACs
/// rewritten to gateway → pod, TTL decremented). With `md`, packets carry
/// `tun_metadata0` and arrivals must carry it too.
fn node_flows(n: u32, m: u32, v6: bool, md: bool) -> String {
    let remote = if v6 {
        format!("set_field:fd00:77::{m}->tun_ipv6_dst")
    } else {
        format!("set_field:192.168.77.{m}->tun_dst")
    };
    let set_md = if md {
        "set_field:0xab->tun_metadata0,"
    } else {
        ""
    };
    let match_md = if md { "tun_metadata0=0xab," } else { "" };
    let mut f = String::new();
    f += &format!("priority=100,in_port=v{n}p1,arp,actions=output:v{n}p2\n");
    f += &format!("priority=100,in_port=v{n}p2,arp,actions=output:v{n}p1\n");
    for p in 1..=2 {
        f += &format!(
            "priority=100,in_port=gnv0,tun_id={VNI:#x},{match_md}ip,nw_dst=10.244.{n}.{ip},\
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
        "priority=80,ip,nw_dst=10.244.{m}.0/24,actions={remote},set_field:{VNI:#x}->tun_id,{set_md}output:gnv0\n"
    );
    f
}

fn node_config(n: u32, v6: bool, md: bool) -> String {
    let local = if v6 {
        format!("fd00:77::{n}")
    } else {
        format!("192.168.77.{n}")
    };
    let tlv = if md {
        "tlv_map = \"{class=0x0102,type=0x80,len=4}->tun_metadata0\"\n"
    } else {
        ""
    };
    format!(
        "[switch]\nflows = \"node.flows\"\nlog = \"info\"\nsocket = \"oxvsd.sock\"\n{tlv}\
         [[port]]\nname = \"v{n}p1\"\nno = 1\nkind = \"afxdp\"\n\
         [[port]]\nname = \"v{n}p2\"\nno = 2\nkind = \"afxdp\"\n\
         [[port]]\nname = \"ul0\"\nno = 10\nkind = \"afxdp\"\nuplink = true\n\
         [[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\nlocal_ip = \"{local}\"\nkey = {VNI}\n"
    )
}

fn overlay(tag: &str, v6: bool) {
    let Some(_serial) = root_serial() else { return };
    let md = !v6;
    let mut lab = Lab::up_with(tag, 2, 2, 1);
    // tshark writes its capture as an unprivileged user when it can.
    let _ = std::fs::set_permissions(
        &lab.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    );
    for (n, m) in [(1, 2), (2, 1)] {
        lab.start_switch_on(
            &format!("n{n}"),
            &node_config(n, v6, md),
            &node_flows(n, m, v6, md),
            3,
        );
    }
    // The first packet toward a remote makes the switch ask the kernel for
    // its route and neighbour; it is dropped (and counted) meanwhile.
    for (from, to) in [("n1-p1", "10.244.2.2"), ("n2-p1", "10.244.1.2")] {
        let _ = lab.ping(from, to, 1);
    }
    let pods = [
        ("n1-p1", "10.244.1.2"),
        ("n1-p2", "10.244.1.3"),
        ("n2-p1", "10.244.2.2"),
        ("n2-p2", "10.244.2.3"),
    ];
    for (from, _) in pods {
        for (to_ns, to) in pods {
            if to_ns != from {
                assert_eq!(
                    lab.ping(from, to, 3),
                    3,
                    "ping {from} -> {to}\nn1:\n{}\nn2:\n{}",
                    lab.log_of("n1"),
                    lab.log_of("n2")
                );
            }
        }
    }
    for (from, to, ip) in [
        ("n1-p1", "n2-p2", "10.244.2.3"),
        ("n2-p1", "n1-p2", "10.244.1.3"),
    ] {
        let (n, got, sent) = lab.tcp_transfer(from, to, ip, 4 << 20);
        assert_eq!(n, 4 << 20, "TCP {from} -> {to}\n{}", lab.log_of("n1"));
        assert_eq!(got, sent, "payload digest {from} -> {to}");
    }

    // One outer source port per direction of a TCP connection, whatever
    // each segment's flags (RFC 8926 §3.3).
    let conn = lab.dir.join("tcp-underlay.pcap");
    let cap = lab.capture_underlay(&conn, 256);
    let (n, got, sent) = lab.tcp_transfer("n1-p1", "n2-p2", "10.244.2.3", 1 << 20);
    assert_eq!(n, 1 << 20, "TCP under capture\n{}", lab.log_of("n1"));
    assert_eq!(got, sent, "payload digest under capture");
    // tcpdump writes each packet as it comes (-U); the last ACKs are
    // given a moment before it is stopped.
    std::thread::sleep(Duration::from_millis(300));
    cap.stop(Duration::from_secs(3));
    let dirs = outer_ports_by_direction(conn.to_str().unwrap(), 5201);
    assert_eq!(dirs.len(), 2, "both directions of one connection: {dirs:?}");
    for ((sport, dport), d) in &dirs {
        eprintln!(
            "{tag}: tcp {sport}->{dport}: {} segments, tcp flags {:?}, outer source ports {:?}",
            d.segments, d.flags, d.outer_ports
        );
        assert_eq!(
            d.outer_ports.len(),
            1,
            "tcp {sport}->{dport} left on several outer ports: {d:?}"
        );
        // At least the handshake's SYN (or SYN+ACK) and plain ACKs: the
        // flags that once gave one connection several ports.
        assert!(
            d.flags.len() >= 2 && d.segments >= 10,
            "the capture holds the connection's life: {d:?}"
        );
    }

    // Geneve from node 2's kernel that gnv0 (key = 42) must not deliver:
    // other VNIs, and a control packet with the right one. A raw socket
    // with the UDP checksum computed here: the kernel's own UDP sockets
    // leave it to an offload that AF_XDP does not complete.
    let (family, src, dst) = if v6 {
        ("AF_INET6", "fd00:77::2", "fd00:77::1")
    } else {
        ("AF_INET", "192.168.77.2", "192.168.77.1")
    };
    let script = format!(
        "import socket, struct\n\
         fam, src, dst = socket.{family}, '{src}', '{dst}'\n\
         def csum(b):\n\
         \x20   b += bytes(len(b) % 2); s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n\
         \x20   while s >> 16: s = (s & 0xffff) + (s >> 16)\n\
         \x20   return (~s & 0xffff) or 0xffff\n\
         a, b = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)\n\
         inner = bytes.fromhex('0a00000001fe' '020000020001' '0800') + bytes(46)\n\
         s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_UDP)\n\
         for vni, flags in [(0, 0), (43, 0), (0xffffff, 0), ({VNI}, 0x80)]:\n\
         \x20   body = bytes([0, flags, 0x65, 0x58]) + (vni << 8).to_bytes(4, 'big') + inner\n\
         \x20   n = 8 + len(body)\n\
         \x20   pseudo = a + b + (struct.pack('!BBH', 0, 17, n) if fam == socket.AF_INET else struct.pack('!I3xB', n, 17))\n\
         \x20   c = csum(pseudo + struct.pack('!HHHH', 50000, 6081, n, 0) + body)\n\
         \x20   s.sendto(struct.pack('!HHHH', 50000, 6081, n, c) + body, (dst, 0))\n"
    );
    let out = lab.exec("n2", &["python3", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    loop {
        let drops = dump_drops(&lab, "n1");
        let vni = drop_count(&drops, "drop_geneve_vni");
        let oam = drop_count(&drops, "drop_geneve_oam");
        if vni == 3 && oam == 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(8) && vni <= 3 && oam <= 1,
            "expected 3 drop_geneve_vni and 1 drop_geneve_oam:\n{drops}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // On the wire: Geneve with our VNI (and option), nothing malformed.
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
        "frame.protocols",
        "-e",
        "geneve.vni",
        "-e",
        "geneve.option.class",
    ]);
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), 4, "{fields}");
    let outer = if v6 {
        "ipv6:udp:geneve"
    } else {
        "ip:udp:geneve"
    };
    for l in &lines {
        let cols: Vec<&str> = l.split(';').collect();
        assert!(
            cols[0].contains(&format!("{outer}:eth:ethertype:ip:icmp")),
            "{l}"
        );
        assert_eq!(cols[1], format!("0x{VNI:06x}"), "{l}");
        assert_eq!(cols[2], if md { "0x0102" } else { "" }, "{l}");
    }
    common::assert_clean_dissection(p);

    // Too big for the tunnel: the pod hears the MTU that fits.
    let (outer_ip, opts) = if v6 { (40, 0) } else { (20, 8) };
    let pod_mtu = 1500 - outer_ip - 8 - 8 - opts - 14;
    let big = run(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("n1-p1"),
        "ping",
        "-c",
        "2",
        "-i",
        "0.3",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        "1472",
        "10.244.2.2",
    ]);
    let text =
        String::from_utf8_lossy(&big.stdout).to_string() + &String::from_utf8_lossy(&big.stderr);
    assert!(
        text.contains(&format!("mtu = {pod_mtu}")) || text.contains(&format!("mtu={pod_mtu}")),
        "expected an ICMP error with mtu {pod_mtu}:\n{text}\n{}",
        lab.log_of("n1")
    );
    // oxvsd said which pod MTU fits.
    assert!(
        lab.log_of("n1").contains(&format!("pod_mtu={pod_mtu}")),
        "{}",
        lab.log_of("n1")
    );
    // And a packet that fits still crosses.
    let fits = (pod_mtu - 28).to_string();
    let small = run(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("n1-p1"),
        "ping",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        &fits,
        "10.244.2.2",
    ]);
    assert!(
        small.status.success(),
        "{}",
        String::from_utf8_lossy(&small.stdout)
    );

    for node in ["n1", "n2"] {
        assert!(
            lab.log_of(node).contains("tunnel remote resolved"),
            "{}",
            lab.log_of(node)
        );
        assert!(lab.stop_switch_on(node).success(), "{}", lab.log_of(node));
    }
}

/// What the underlay carried of one direction of a TCP connection.
#[derive(Debug, Default)]
struct Direction {
    segments: usize,
    flags: BTreeSet<String>,
    outer_ports: BTreeSet<u16>,
}

/// The Geneve frames of `pcap` whose inner TCP segment has `port` at
/// either end, by inner (source, destination) port.
fn outer_ports_by_direction(pcap: &str, port: u16) -> BTreeMap<(u16, u16), Direction> {
    let fields = ok(&[
        "tshark",
        "-r",
        pcap,
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-e",
        "udp.srcport",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.flags",
    ]);
    let mut dirs: BTreeMap<(u16, u16), Direction> = BTreeMap::new();
    for l in fields.lines() {
        let c: Vec<&str> = l.split(';').collect();
        let num = |i: usize| c.get(i).and_then(|v| v.parse::<u16>().ok());
        let (Some(outer), Some(sport), Some(dport)) = (num(0), num(1), num(2)) else {
            continue;
        };
        if sport != port && dport != port {
            continue;
        }
        let d = dirs.entry((sport, dport)).or_default();
        d.segments += 1;
        d.flags.insert(c.get(3).unwrap_or(&"").to_string());
        d.outer_ports.insert(outer);
    }
    dirs
}

/// `oxvs-ctl dump-drops` against `node`'s switch.
fn dump_drops(lab: &Lab, node: &str) -> String {
    let sock = lab.dir.join(node).join("oxvsd.sock");
    ctl::cmd::run(&[
        "--socket".to_string(),
        sock.to_str().unwrap().to_string(),
        "dump-drops".to_string(),
    ])
    .unwrap_or_else(|e| panic!("oxvs-ctl dump-drops: {e}"))
}

/// The count of `reason` in a dump-drops listing.
fn drop_count(drops: &str, reason: &str) -> u64 {
    drops
        .lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(r, _)| r.trim() == reason)
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pods_across_nodes_over_ipv4_geneve() {
    overlay("g4", false);
}

#[test]
fn pods_across_nodes_over_ipv6_geneve() {
    overlay("g6", true);
}

/// Listens on 8080 in the rejecting node's pod and says what it accepted.
const LISTENER: &str = "\
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080)); s.listen(16); print('listening', flush=True)
while True:
    c, a = s.accept(); print('accepted', a[0], flush=True); c.close()
";

/// Connects to 10.244.2.2:8080 and prints the outcome and the seconds taken.
const CONNECT: &str = "\
import socket, time
s = socket.socket(); s.settimeout(5); t = time.monotonic()
try:
    s.connect(('10.244.2.2', 8080)); r = 'connected'
except ConnectionRefusedError: r = 'refused'
except socket.timeout: r = 'timeout'
except OSError as e: r = 'error-%d' % e.errno
print(r, '%.3f' % (time.monotonic() - t))
";

fn reject_across(tag: &str, v6: bool) {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up_with(tag, 2, 2, 1);
    // Node 2 rejects, for packets out of the tunnel only, TCP to pod 1's
    // port 8080 and pings to pod 2.
    let rejects = "priority=200,in_port=gnv0,tcp,nw_dst=10.244.2.2,tp_dst=8080,actions=reject\n\
                   priority=200,in_port=gnv0,icmp,icmp_type=8,nw_dst=10.244.2.3,actions=reject\n";
    for (n, m) in [(1, 2), (2, 1)] {
        let mut flows = node_flows(n, m, v6, false);
        if n == 2 {
            flows += rejects;
        }
        lab.start_switch_on(&format!("n{n}"), &node_config(n, v6, false), &flows, 3);
    }
    // Both nodes resolve each other: the way back is the way a reply takes.
    let t = Instant::now();
    while lab.ping("n1-p1", "10.244.2.2", 1) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            lab.log_of("n2")
        );
    }
    let listener = lab.spawn("n2-p1", "listener", &["python3", "-u", "-c", LISTENER]);
    listener.wait_log("listening", Duration::from_secs(5), "the listener");
    let out = lab.exec("n1-p1", &["python3", "-c", CONNECT]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = said.split_whitespace();
    assert_eq!(
        words.next(),
        Some("refused"),
        "{said}\n{}",
        lab.log_of("n2")
    );
    let secs: f64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(9.0);
    // A RST, not a timeout: well under the 1 s SYN retransmission.
    assert!(secs < 0.5, "refused after {secs} s");
    assert!(!listener.log().contains("accepted"), "{}", listener.log());

    let out = lab.exec(
        "n1-p1",
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.244.2.3"],
    );
    let ping =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        ping.contains("Packet filtered") || ping.contains("administratively prohibited"),
        "{ping}\n{}",
        lab.log_of("n2")
    );
    assert!(ping.contains("0 received"), "{ping}");
    // What is not rejected still crosses.
    assert_eq!(lab.ping("n1-p1", "10.244.2.2", 2), 2);
}

#[test]
fn reject_answers_across_ipv4_geneve() {
    reject_across("rj4", false);
}

#[test]
fn reject_answers_across_ipv6_geneve() {
    reject_across("rj6", true);
}

/// The kernel's neighbour garbage collector forgets entries that nothing in
/// the kernel uses, and the switch's packets never pass the kernel's
/// neighbour code: under churn of other entries, the next hop toward a
/// remote node vanishes from the kernel while it is still there. Deleting
/// node 1's entry for node 2, under a ping every 5 ms, with the underlay
/// bridge holding back broadcasts to node 2 for 300 ms (so the kernel's
/// first ARP request goes unanswered and it asks again a second later, as
/// on a loaded network), must cost no packet: the switch keeps the last MAC
/// while the kernel resolves it again (before, each deletion dropped
/// packets as `drop_tunnel_no_route` until the answer came).
#[test]
fn a_forgotten_underlay_neighbour_costs_no_packet() {
    let Some(_serial) = root_serial() else { return };
    let mut lab = Lab::up_with("nb", 2, 2, 1);
    for (n, m) in [(1, 2), (2, 1)] {
        // The poll threads' neighbour handling is under test: the XDP fast
        // path, which pushes with the template it was given, stays off.
        let config = node_config(n, false, false).replacen(
            "[switch]\n",
            "[switch]\nfast_path = \"off\"\n",
            1,
        );
        lab.start_switch_on(
            &format!("n{n}"),
            &config,
            &node_flows(n, m, false, false),
            3,
        );
    }
    let t = Instant::now();
    while lab.ping("n1-p1", "10.244.2.2", 1) == 0 || lab.ping("n2-p1", "10.244.1.2", 1) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            lab.log_of("n1")
        );
    }
    let before = drop_count(&dump_drops(&lab, "n1"), "drop_tunnel_no_route");
    let flood = lab.spawn(
        "n1-p1",
        "flood",
        &[
            "ping",
            "-q",
            "-i",
            "0.005",
            "-c",
            "1400",
            "-W",
            "1",
            "10.244.2.2",
        ],
    );
    let flood_to_n2 = |on: &str| {
        let out = lab.exec(
            "ul",
            &["bridge", "link", "set", "dev", "n2", "bcast_flood", on],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut deleted = 0;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        flood_to_n2("off");
        let out = lab.exec("n1", &["ip", "neigh", "del", "192.168.77.2", "dev", "ul0"]);
        if out.status.success() {
            deleted += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
        flood_to_n2("on");
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert!(flood.wait_exit(Duration::from_secs(20)), "the ping ended");
    let after = drop_count(&dump_drops(&lab, "n1"), "drop_tunnel_no_route");
    let log = lab.log_of("n1");
    assert_eq!(deleted, 3, "the kernel's entry was there to delete");
    assert_eq!(
        after - before,
        0,
        "packets dropped for want of a next hop while the kernel re-resolved\n{log}"
    );
    assert!(
        log.contains("keeping its last MAC"),
        "the switch saw the neighbour go:\n{log}"
    );
    // And the kernel has it again, so the switch is not running on a
    // remembered MAC for good.
    let neigh = lab.exec("n1", &["ip", "neigh", "show", "192.168.77.2", "dev", "ul0"]);
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    assert!(neigh.contains("lladdr"), "{neigh}");
    let summary = flood.log();
    assert!(
        summary.contains(" 0% packet loss"),
        "the pings across: {summary}"
    );
}
