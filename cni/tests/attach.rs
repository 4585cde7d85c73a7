//! ADD, CHECK, DEL and GC in real network namespaces against a stand-in
//! for oxvsd's control socket ([`common::FakeSwitch`]): what ADD builds
//! (veth, MACs, MTU, addresses, routes, offloads, the port and its external
//! ids), that a second ADD is refused without harming the first, that a
//! refused add-port undoes every step, that DEL is idempotent, and that GC
//! removes exactly what is not valid. Root only; the test's namespaces and
//! host-local store are removed when it ends, pass or fail.

mod common;

use common::{invoke, ok, root_or_skip, vars, FakeSwitch, Sandbox};
use std::sync::atomic::Ordering;

fn host_name(container: &str, ifname: &str) -> String {
    cni::names::host_ifname(container, ifname)
}

#[test]
fn add_check_del_with_a_stand_in_switch() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("a");
    let node = sb.netns("node");
    let c1 = sb.netns("c1");
    let netns = Sandbox::netns_path(&c1);
    let sw = FakeSwitch::start(&sb.dir.join("oxvsd.sock"));
    let conf = sb.conf("attach", "1.1.0", &sw.socket, "10.244.8.0/24");
    let host = host_name("c1", "eth0");

    let a = invoke(Some(&node), &vars("ADD", "c1", &netns, "eth0"), &conf);
    assert!(a.ok, "ADD: {} {}", a.json, a.stderr);
    let r = &a.json;
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][0]["name"], host.as_str());
    assert!(r["interfaces"][0].get("sandbox").is_none());
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], netns.as_str());
    assert_eq!(r["interfaces"][1]["mac"], "0a:58:0a:f4:08:02");
    assert_eq!(r["ips"][0]["address"], "10.244.8.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.244.8.1");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");

    // The container side: up, MAC, MTU, address, default route, tx off,
    // GRO on.
    let link = ok(&["ip", "-n", &c1, "-d", "link", "show", "eth0"]);
    assert!(
        link.contains("0a:58:0a:f4:08:02") && link.contains("mtu 1450"),
        "{link}"
    );
    assert!(link.contains("state UP"), "{link}");
    let lo = ok(&["ip", "-n", &c1, "link", "show", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    let addr = ok(&["ip", "-n", &c1, "addr", "show", "eth0"]);
    assert!(addr.contains("10.244.8.2/24"), "{addr}");
    let route = ok(&["ip", "-n", &c1, "route", "show", "default"]);
    assert!(route.contains("via 10.244.8.1 dev eth0"), "{route}");
    let k = ok(&["ip", "netns", "exec", &c1, "ethtool", "-k", "eth0"]);
    assert!(k.contains("tx-checksumming: off"), "{k}");
    // GRO on, so the fast path can redirect into the pod's veth.
    assert!(k.contains("generic-receive-offload: on"), "{k}");
    // The host side, and the port with the pod's external ids.
    let hl = ok(&["ip", "-n", &node, "link", "show", &host]);
    assert!(hl.contains("mtu 1450") && hl.contains("UP"), "{hl}");
    {
        let ports = sw.ports.lock().unwrap();
        let p = ports.get(&host).expect("port added");
        let ids = &p.external_ids;
        assert_eq!(ids["iface-id"], "default/web-0");
        assert_eq!(ids["attached-mac"], "0a:58:0a:f4:08:02");
        assert_eq!(ids["container-id"], "c1");
        assert_eq!(ids["k8s-pod-namespace"], "default");
        assert_eq!(ids["k8s-pod-name"], "web-0");
        assert_eq!(ids["ip"], "10.244.8.2");
    }
    assert_eq!(sb.allocations("attach"), ["10.244.8.2"]);

    // CHECK against the result ADD printed.
    let mut with_prev: serde_json::Value = serde_json::from_str(&conf).unwrap();
    with_prev["prevResult"] = a.json.clone();
    let with_prev = with_prev.to_string();
    let c = invoke(
        Some(&node),
        &vars("CHECK", "c1", &netns, "eth0"),
        &with_prev,
    );
    assert!(c.ok, "CHECK: {} {}", c.json, c.stderr);
    // A second ADD is refused and leaves the first attachment intact.
    let again = invoke(Some(&node), &vars("ADD", "c1", &netns, "eth0"), &conf);
    assert!(!again.ok);
    assert_eq!(again.code(), 100, "{}", again.json);
    let c = invoke(
        Some(&node),
        &vars("CHECK", "c1", &netns, "eth0"),
        &with_prev,
    );
    assert!(c.ok, "CHECK after a refused ADD: {} {}", c.json, c.stderr);
    assert_eq!(sb.allocations("attach"), ["10.244.8.2"]);
    // CHECK notices a missing port.
    sw.ports.lock().unwrap().clear();
    let c = invoke(
        Some(&node),
        &vars("CHECK", "c1", &netns, "eth0"),
        &with_prev,
    );
    assert_eq!(c.code(), 104, "{}", c.json);

    // DEL removes everything; a second DEL, one without the netns, one
    // after the netns is gone and one for an unknown container succeed.
    let d = invoke(Some(&node), &vars("DEL", "c1", &netns, "eth0"), &with_prev);
    assert!(d.ok, "DEL: {} {}", d.json, d.stderr);
    assert!(!common::Sandbox::links(&node).contains(&host));
    assert!(!common::Sandbox::links(&c1).contains(&"eth0".to_string()));
    assert!(sb.allocations("attach").is_empty());
    assert!(sw.port_names().is_empty());
    for v in [
        vars("DEL", "c1", &netns, "eth0"),
        vars("DEL", "c1", "", "eth0"),
        vars("DEL", "never-added", &netns, "eth0"),
    ] {
        let d = invoke(Some(&node), &v, &conf);
        assert!(d.ok, "DEL {v:?}: {} {}", d.json, d.stderr);
    }
    sb.remove_netns(&c1);
    let d = invoke(Some(&node), &vars("DEL", "c1", &netns, "eth0"), &conf);
    assert!(d.ok, "DEL with the netns gone: {} {}", d.json, d.stderr);
}

#[test]
fn a_refused_or_unreachable_switch_leaves_nothing() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("r");
    let node = sb.netns("node");
    let c1 = sb.netns("c1");
    let netns = Sandbox::netns_path(&c1);
    let sw = FakeSwitch::start(&sb.dir.join("oxvsd.sock"));
    let before = (Sandbox::links(&node), Sandbox::links(&c1));

    sw.refuse_add.store(true, Ordering::SeqCst);
    let conf = sb.conf("refuse", "1.0.0", &sw.socket, "10.244.9.0/24");
    let a = invoke(Some(&node), &vars("ADD", "c1", &netns, "eth0"), &conf);
    assert_eq!(a.code(), 103, "{} {}", a.json, a.stderr);
    assert_eq!((Sandbox::links(&node), Sandbox::links(&c1)), before);
    assert!(sb.allocations("refuse").is_empty());

    // oxvsd down: code 11, and the steps before add-port are undone.
    let gone = sb.dir.join("down.sock");
    let conf = sb.conf("down", "1.0.0", &gone, "10.244.9.0/24");
    let a = invoke(Some(&node), &vars("ADD", "c1", &netns, "eth0"), &conf);
    assert_eq!(a.code(), 11, "{} {}", a.json, a.stderr);
    assert_eq!((Sandbox::links(&node), Sandbox::links(&c1)), before);
    assert!(sb.allocations("down").is_empty());
    // STATUS says the same.
    let s = invoke(
        Some(&node),
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &conf,
    );
    assert_eq!(s.code(), 50, "{}", s.json);
    let conf_up = sb.conf("down", "1.0.0", &sw.socket, "10.244.9.0/24");
    let s = invoke(
        Some(&node),
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &conf_up,
    );
    assert!(s.ok, "{} {}", s.json, s.stderr);
}

#[test]
fn gc_removes_what_is_not_valid() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("g");
    let node = sb.netns("node");
    let sw = FakeSwitch::start(&sb.dir.join("oxvsd.sock"));
    let conf = sb.conf("gcnet", "1.1.0", &sw.socket, "10.244.10.0/24");
    let mut nss = Vec::new();
    for c in ["c1", "c2", "c3"] {
        let ns = sb.netns(c);
        let a = invoke(
            Some(&node),
            &vars("ADD", c, &Sandbox::netns_path(&ns), "eth0"),
            &conf,
        );
        assert!(a.ok, "ADD {c}: {} {}", a.json, a.stderr);
        nss.push(ns);
    }
    // c3 "crashed" after its veth and allocation but before its port.
    sw.ports.lock().unwrap().remove(&host_name("c3", "eth0"));
    // A port of another network is never touched.
    let other = host_name("other", "eth0");
    sw.ports.lock().unwrap().insert(
        other.clone(),
        ctl::proto::PortInfo {
            name: other.clone(),
            no: 99,
            kind: "afxdp".into(),
            configured: false,
            external_ids: [("cni-network".to_string(), "elsewhere".to_string())].into(),
            mtu: None,
            state: "up".into(),
        },
    );
    assert_eq!(sb.allocations("gcnet").len(), 3);

    let mut gc: serde_json::Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": "c1", "ifname": "eth0"}]);
    let g = invoke(
        Some(&node),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &gc.to_string(),
    );
    assert!(g.ok, "GC: {} {}", g.json, g.stderr);
    let links = Sandbox::links(&node);
    assert!(links.contains(&host_name("c1", "eth0")));
    assert!(!links.contains(&host_name("c2", "eth0")));
    assert!(!links.contains(&host_name("c3", "eth0")));
    let mut ports = sw.port_names();
    ports.sort();
    let mut want = vec![host_name("c1", "eth0"), other];
    want.sort();
    assert_eq!(ports, want);
    assert_eq!(sb.allocations("gcnet"), ["10.244.10.2"]);
}
