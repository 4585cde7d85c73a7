//! oxvs-cni with a real oxvsd: two containers' namespaces attached by ADD
//! ping each other and pass TCP through the switch (one `normal` rule added
//! over the control socket), the ports carry the pods' external ids, and
//! DEL takes ports, veths and addresses away again. Root only; run it
//! under `flock /tmp/oxvs-lab.lock` like every lab test.

mod common;

use common::{invoke, ping, root_or_skip, tcp_transfer, vars, Oxvsd, Sandbox};

#[test]
fn two_containers_talk_through_oxvsd_and_del_cleans_up() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("s");
    let node = sb.netns("node");
    let c1 = sb.netns("c1");
    let c2 = sb.netns("c2");
    let sw = Oxvsd::start(&node, &sb.dir, "");
    sw.add_flow("priority=0,actions=normal");
    let conf = sb.conf("lab", "1.0.0", &sw.socket, "10.244.12.0/24");

    let mut results = Vec::new();
    for (id, ns) in [("c1", &c1), ("c2", &c2)] {
        let a = invoke(
            Some(&node),
            &vars("ADD", id, &Sandbox::netns_path(ns), "eth0"),
            &conf,
        );
        assert!(a.ok, "ADD {id}: {} {}\n{}", a.json, a.stderr, sw.log_text());
        results.push(a.json);
    }
    assert_eq!(results[0]["ips"][0]["address"], "10.244.12.2/24");
    assert_eq!(results[1]["ips"][0]["address"], "10.244.12.3/24");
    let ports = sw.ports();
    assert_eq!(ports.len(), 2, "{ports:?}");
    for (p, id) in ports.iter().zip(["c1", "c2"]) {
        assert_eq!(p.name, cni::names::host_ifname(id, "eth0"));
        assert_eq!(p.external_ids["container-id"], id);
        assert_eq!(p.external_ids["iface-id"], "default/web-0");
        assert!(!p.configured);
    }

    // The first ping also resolves ARP through the switch.
    assert_eq!(ping(&c1, "10.244.12.3", 5), 5, "{}", sw.log_text());
    assert_eq!(ping(&c2, "10.244.12.2", 3), 3);
    assert_eq!(tcp_transfer(&c1, &c2, "10.244.12.3", 4000000), 4000000);
    // oxvsd (fast path "auto", the default) can redirect into both pods:
    // with GRO turned on while the pod's interface was down the veth
    // driver left the host side without `ndo-xmit`, and oxvsd said so.
    let log = sw.log_text();
    assert!(log.contains("fast path on"), "{log}");
    assert!(!log.contains("cannot take redirected frames"), "{log}");

    // DEL c1: its port and veth go, c2 is untouched; a second DEL is fine.
    let d = invoke(
        Some(&node),
        &vars("DEL", "c1", &Sandbox::netns_path(&c1), "eth0"),
        &conf,
    );
    assert!(d.ok, "DEL: {} {}", d.json, d.stderr);
    let names: Vec<String> = sw.ports().into_iter().map(|p| p.name).collect();
    assert_eq!(names, [cni::names::host_ifname("c2", "eth0")]);
    let d = invoke(Some(&node), &vars("DEL", "c1", "", "eth0"), &conf);
    assert!(d.ok, "second DEL: {} {}", d.json, d.stderr);
    assert_eq!(ping(&c1, "10.244.12.3", 1), 0);
    let d = invoke(
        Some(&node),
        &vars("DEL", "c2", &Sandbox::netns_path(&c2), "eth0"),
        &conf,
    );
    assert!(d.ok);
    assert!(sw.ports().is_empty());
    assert_eq!(Sandbox::links(&node), ["lo"]);
    assert!(sb.allocations("lab").is_empty());
    let log = sw.log_text();
    assert!(!log.contains("ERROR"), "{log}");
}
