//! `{"type": "oxvs"}` through the real binary, as a runtime calls it: the
//! plugin waits for the node agent's answer (a stand-in agent on a unix
//! socket that says "pending" a few times first), sets the agent's MAC on
//! the pod's interface and reports it as `attached-mac`; with no answer in
//! time it fails with code 11 and leaves nothing behind. Root only.

mod common;

use common::{invoke, ok, root_or_skip, vars, FakeSwitch, Sandbox};
use ctl::podnet::{read_request, write_answer, PodAnswer};
use std::io::BufReader;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A stand-in agent: "pending" for the first `pending` questions, then
/// 10.244.5.9/24 for default/web-0 (and "pending" for any other pod).
fn agent(socket: &Path, pending: usize) -> Arc<AtomicUsize> {
    let l = UnixListener::bind(socket).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let Ok(req) = read_request(&mut BufReader::new(&c)) else {
                continue;
            };
            let n = a.fetch_add(1, Ordering::SeqCst);
            let ans = if n >= pending && req.namespace == "default" && req.name == "web-0" {
                PodAnswer {
                    ip: Some("10.244.5.9/24".into()),
                    gateway: Some("10.244.5.1".into()),
                    mac: Some("0a:58:0a:f4:05:09".into()),
                    node: Some("node1".into()),
                    pending: None,
                }
            } else {
                PodAnswer {
                    pending: Some(format!("no Pod {}/{} yet", req.namespace, req.name)),
                    ..Default::default()
                }
            };
            let _ = write_answer(&mut &c, &ans);
        }
    });
    asked
}

fn conf(switch: &Path, agent: &Path, timeout: f64) -> String {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "oxvs-agent-ipam",
        "type": "oxvs",
        "socket": switch,
        "mtu": 1450,
        "ipam": {"type": "oxvs", "socket": agent, "timeoutSeconds": timeout},
    })
    .to_string()
}

#[test]
fn add_waits_for_the_agent_and_uses_its_address_and_mac() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("ai");
    let node = sb.netns("node");
    let c1 = sb.netns("c1");
    let netns = Sandbox::netns_path(&c1);
    let sw = FakeSwitch::start(&sb.dir.join("oxvsd.sock"));
    let sock = sb.dir.join("agent.sock");
    let asked = agent(&sock, 4);
    let conf = conf(&sw.socket, &sock, 10.0);

    let a = invoke(Some(&node), &vars("ADD", "c1", &netns, "eth0"), &conf);
    assert!(a.ok, "ADD: {} {}", a.json, a.stderr);
    assert!(
        asked.load(Ordering::SeqCst) >= 5,
        "answered before it was allocated"
    );
    assert_eq!(a.json["ips"][0]["address"], "10.244.5.9/24");
    assert_eq!(a.json["ips"][0]["gateway"], "10.244.5.1");
    assert_eq!(a.json["interfaces"][1]["mac"], "0a:58:0a:f4:05:09");
    let link = ok(&["ip", "-n", &c1, "link", "show", "eth0"]);
    assert!(link.contains("0a:58:0a:f4:05:09"), "{link}");
    let route = ok(&["ip", "-n", &c1, "route", "show", "default"]);
    assert!(route.contains("via 10.244.5.1 dev eth0"), "{route}");
    {
        let ports = sw.ports.lock().unwrap();
        let host = cni::names::host_ifname("c1", "eth0");
        let ids = &ports.get(&host).expect("port added").external_ids;
        assert_eq!(ids["attached-mac"], "0a:58:0a:f4:05:09");
        assert_eq!(ids["ip"], "10.244.5.9");
        assert_eq!(ids["k8s-pod-name"], "web-0");
    }
    // DEL has nothing to release at the agent; it removes the rest.
    let d = invoke(Some(&node), &vars("DEL", "c1", &netns, "eth0"), &conf);
    assert!(d.ok, "DEL: {} {}", d.json, d.stderr);
    assert!(sw.port_names().is_empty());
}

#[test]
fn no_address_in_time_is_code_11_and_leaves_nothing() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("at");
    let node = sb.netns("node");
    let c1 = sb.netns("c1");
    let netns = Sandbox::netns_path(&c1);
    let sw = FakeSwitch::start(&sb.dir.join("oxvsd.sock"));
    let sock = sb.dir.join("agent.sock");
    let _asked = agent(&sock, usize::MAX);
    let before = (Sandbox::links(&node), Sandbox::links(&c1));

    let a = invoke(
        Some(&node),
        &vars("ADD", "c1", &netns, "eth0"),
        &conf(&sw.socket, &sock, 0.5),
    );
    assert_eq!(a.code(), 11, "{} {}", a.json, a.stderr);
    assert!(
        a.json["details"]
            .as_str()
            .unwrap_or("")
            .contains("no Pod default/web-0 yet"),
        "{}",
        a.json
    );
    assert_eq!((Sandbox::links(&node), Sandbox::links(&c1)), before);
    assert!(sw.port_names().is_empty());
    // No agent at all: the same, and STATUS says it is not available.
    let gone = sb.dir.join("nobody.sock");
    let c = conf(&sw.socket, &gone, 0.3);
    let a = invoke(Some(&node), &vars("ADD", "c1", &netns, "eth0"), &c);
    assert_eq!(a.code(), 11, "{} {}", a.json, a.stderr);
    let s = invoke(Some(&node), &[("CNI_COMMAND", "STATUS")], &c);
    assert_eq!(s.code(), 50, "{}", s.json);
}
