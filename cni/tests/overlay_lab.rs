//! Containers on two nodes, attached by oxvs-cni, talking through oxvsd's
//! Geneve overlay: each node namespace runs oxvsd with its underlay veth
//! as uplink and a Geneve port, the plugin attaches one container per
//! node (one flat 10.244.0.0/16 pod network, host-local handing each node
//! its own range), and rules added over the control socket after ADD (as
//! an agent would, by the port names ADD made) deliver local traffic to
//! the pod's port and send the other node's range, ARP included, into the
//! tunnel. The containers ping each other and pass TCP across nodes; DEL
//! leaves no port, veth or address. Root only; run it under
//! `flock /tmp/oxvs-lab.lock`.

mod common;

use common::{invoke, ok, ping, root_or_skip, tcp_transfer, vars, Oxvsd, Sandbox};

const VNI: u32 = 0x2a;

fn conf(sb: &Sandbox, node: u32, sw: &Oxvsd) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("overlay{node}"),
        "type": "oxvs",
        "socket": sw.socket,
        "mtu": 1400,
        "ipam": {
            "type": "host-local",
            "subnet": "10.244.0.0/16",
            "rangeStart": format!("10.244.{node}.2"),
            "rangeEnd": format!("10.244.{node}.254"),
            "gateway": "10.244.0.1",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": sb.dir.join("ipam"),
        }
    })
    .to_string()
}

#[test]
fn containers_on_two_nodes_talk_through_geneve() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("o");
    let n1 = sb.netns("n1");
    let n2 = sb.netns("n2");
    let c1 = sb.netns("c1");
    let c2 = sb.netns("c2");
    // The underlay: one veth pair between the nodes.
    ok(&[
        "ip", "-n", &n1, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &n2,
    ]);
    for (i, n) in [(1, &n1), (2, &n2)] {
        ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
        ok(&[
            "ip",
            "-n",
            n,
            "addr",
            "add",
            &format!("192.168.77.{i}/24"),
            "dev",
            "ul0",
        ]);
        ok(&["ip", "-n", n, "link", "set", "ul0", "up"]);
    }
    let mut switches = Vec::new();
    for (i, n) in [(1, &n1), (2, &n2)] {
        let dir = sb.dir.join(format!("n{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = format!(
            "[[port]]\nname = \"ul0\"\nno = 10\nkind = \"afxdp\"\nuplink = true\n\
             [[port]]\nname = \"gnv0\"\nno = 100\nkind = \"geneve\"\nlocal_ip = \"192.168.77.{i}\"\n"
        );
        switches.push(Oxvsd::start(n, &dir, &ports));
    }
    let mut pods = Vec::new();
    for (i, (node, c)) in [(&n1, &c1), (&n2, &c2)].into_iter().enumerate() {
        let id = format!("ov{}", i + 1);
        let a = invoke(
            Some(node),
            &vars("ADD", &id, &Sandbox::netns_path(c), "eth0"),
            &conf(&sb, i as u32 + 1, &switches[i]),
        );
        assert!(a.ok, "ADD {id}: {} {}", a.json, a.stderr);
        let ip = a.json["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let port = a.json["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        pods.push((id, ip, port));
    }
    assert_eq!(pods[0].1, "10.244.1.2");
    assert_eq!(pods[1].1, "10.244.2.2");
    // The rules an agent would add once it knows the pod's port.
    for n in 0..2 {
        let m = 1 - n;
        let (_, ip, port) = &pods[n];
        let sw = &switches[n];
        let to_peer = format!(
            "set_field:192.168.77.{}->tun_dst,set_field:{VNI:#x}->tun_id,output:gnv0",
            m + 1
        );
        for proto in ["ip,nw_dst", "arp,arp_tpa"] {
            sw.add_flow(&format!(
                "priority=100,in_port=gnv0,tun_id={VNI:#x},{proto}={ip},actions=output:{port}"
            ));
            sw.add_flow(&format!("priority=90,{proto}={ip},actions=output:{port}"));
            sw.add_flow(&format!(
                "priority=80,{proto}=10.244.{}.0/24,actions={to_peer}",
                m + 1
            ));
        }
        sw.add_flow("priority=50,in_port=gnv0,actions=drop");
    }
    let logs = || format!("{}\n{}", switches[0].log_text(), switches[1].log_text());
    // Until both switches have resolved the other's VTEP (the kernel's
    // route and neighbour, asked once the rules name it) the tunnel drops.
    let t = std::time::Instant::now();
    while switches
        .iter()
        .any(|s| !s.log_text().contains("tunnel remote resolved"))
    {
        assert!(
            t.elapsed().as_secs() < 10,
            "no tunnel remote resolved:\n{}",
            logs()
        );
        ping(&c1, &pods[1].1, 1);
    }
    let t = std::time::Instant::now();
    while ping(&c1, &pods[1].1, 1) == 0 {
        assert!(
            t.elapsed().as_secs() < 10,
            "c1 never reached c2:\n{}",
            logs()
        );
    }
    assert_eq!(ping(&c1, &pods[1].1, 5), 5, "{}", logs());
    assert_eq!(ping(&c2, &pods[0].1, 3), 3, "{}", logs());
    assert_eq!(
        tcp_transfer(&c1, &c2, "10.244.2.2", 2000000),
        2000000,
        "{}",
        logs()
    );

    for (i, (node, c)) in [(&n1, &c1), (&n2, &c2)].into_iter().enumerate() {
        let d = invoke(
            Some(node),
            &vars("DEL", &pods[i].0, &Sandbox::netns_path(c), "eth0"),
            &conf(&sb, i as u32 + 1, &switches[i]),
        );
        assert!(d.ok, "DEL: {} {}", d.json, d.stderr);
        let left: Vec<String> = switches[i]
            .ports()
            .into_iter()
            .filter(|p| !p.configured)
            .map(|p| p.name)
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(Sandbox::links(node), ["lo", "ul0"]);
    }
    assert!(sb.allocations("overlay1").is_empty() && sb.allocations("overlay2").is_empty());
}
