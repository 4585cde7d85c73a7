//! A Service endpoint taken out while a UDP client keeps talking to the
//! Service from one socket, on the Service lab (datapath/tests/services,
//! docs/services.md "When an endpoint goes away"):
//!
//! 1. the client's datagrams to the ClusterIP all reach one endpoint X;
//! 2. X is removed from node 1's select groups of the Service
//!    (`mod-group`), as an agent does when its pod goes: the client still
//!    reaches X, because its connection keeps the translation it was
//!    committed with;
//! 3. `flush-conntrack` with a reply tuple naming X removes that
//!    connection, and the client's next datagrams reach one other endpoint.
//!
//! Needs root and python3; without root it says why and passes.

mod common;
mod services;

use common::root_serial;
use services::*;
use std::collections::BTreeSet;

/// The client's source port: every run of the client is the same
/// connection as far as conntrack can tell.
const SPORT: &str = "40000";

#[test]
fn gone_endpoint_is_flushed_and_the_client_moves_on() {
    let Some(_serial) = root_serial() else { return };
    let s = ServiceLab::up("ep", Switch::Oxvsd);
    let mut servers = Vec::new();
    for (pod, _, name) in PODS {
        if name.starts_with("backend") {
            servers.push((name, s.serve(pod, "http", name)));
        }
    }
    s.wait_overlay();
    let talk = |n: &str| s.client("n1-p1", &["udp-from", CLUSTER_IP, "53", n, SPORT]);
    let one = |got: &[String], what: &str| -> String {
        let names: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(names.len(), 1, "{what}: {got:?}\n{}", s.report());
        let name = got[0].clone();
        assert!(
            name.starts_with("backend-"),
            "{what}: {got:?}\n{}",
            s.report()
        );
        name
    };

    let x = one(&talk("5"), "before");
    let (_, x_ip, _) = PODS.iter().find(|p| p.2 == x).expect("a pod");
    let x_u32 = u32::from(x_ip.parse::<std::net::Ipv4Addr>().expect("IPv4"));
    // X's bucket as the flow file writes it and as dump-groups prints it.
    let x_reg3 = format!("load:0x{x_u32:08x}->NXM_NX_REG3[]");
    let x_printed = format!("load:{x_u32:#x}->reg3[]");

    // Node 1's Service groups (1 for TCP :80, 2 for UDP :53) without X's
    // bucket, as an agent rewrites them when X's pod goes.
    let file = flows(1);
    for id in [1, 2] {
        let group = file
            .lines()
            .find(|l| l.starts_with(&format!("group_id={id},")))
            .expect("the group in node1.flows");
        let mut parts = group.split(",bucket=");
        let head = parts.next().expect("group head");
        let kept: Vec<&str> = parts.filter(|b| !b.contains(&x_reg3)).collect();
        assert_eq!(
            kept.len(),
            2,
            "{x} ({x_reg3}) is one of three buckets: {group}"
        );
        let without = format!("{head},bucket={}", kept.join(",bucket="));
        s.ctl("n1", &["mod-group", &without]);
    }
    let groups = s.ctl("n1", &["dump-groups"]);
    assert_eq!(
        groups.lines().filter(|l| l.contains(&x_printed)).count(),
        1,
        "X stays only in group 3 (the affinity Service's):\n{groups}"
    );

    let stale = one(&talk("3"), "after mod-group, before the flush");
    assert_eq!(stale, x, "the connection keeps its endpoint until flushed");

    let reply = format!("ct_nw_src={x_ip},ct_nw_proto=17,ct_tp_src=5353");
    let out = s.ctl(
        "n1",
        &["flush-conntrack", "zone=65520", "ct_nw_proto=17", &reply],
    );
    assert!(out.trim().is_empty(), "{out}");
    let table = s.ctl("n1", &["dump-conntrack", "zone=65520"]);
    let to_x = format!("reply=(src={x_ip},");
    assert!(
        !table
            .lines()
            .any(|l| l.starts_with("udp,") && l.contains(&to_x)),
        "a UDP connection to {x} left:\n{table}"
    );

    let moved = one(&talk("5"), "after the flush");
    assert_ne!(moved, x, "the client moved to a live endpoint");
    for (name, srv) in &servers {
        assert!(srv.running(), "{name} died:\n{}", srv.log());
    }
    assert_no_fault_drops(&s.lab, "n1");
}
