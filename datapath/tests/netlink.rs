//! Next-hop resolution against a real kernel: two namespaces joined by a
//! veth, IPv4 and IPv6 on it, and a route through the peer. The resolver
//! must find the peer's MAC (which the test sets) for the on-link address
//! and for an address behind the gateway, after asking the kernel to
//! resolve it (ARP / neighbour solicitation on the veth only).
//!
//! Needs root; without it the test says why and passes. A guard deletes both
//! namespaces even when an assertion fails.

mod common;

use common::{ok, root_serial};
use datapath::sys::netlink::Netlink;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const PEER_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];

fn ip(args: &[&str]) {
    let mut cmd = vec!["ip"];
    cmd.extend_from_slice(args);
    ok(&cmd);
}

/// Two namespaces `a` and `b`; dropping deletes both (and the veth).
struct Pair {
    a: String,
    b: String,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Resolves `dst` from inside namespace `ns` on a thread of its own,
/// retrying until the kernel has the neighbour (at most 3 s).
fn resolve_in(ns: &str, dst: IpAddr) -> datapath::sys::netlink::NextHop {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        datapath::afxdp::sys::enter_netns(&ns).expect("enter namespace");
        let mut nl = Netlink::open().expect("netlink");
        let t = Instant::now();
        loop {
            let hop = nl.next_hop(dst).expect("next hop");
            if hop.dst_mac.is_some() || t.elapsed() > Duration::from_secs(3) {
                return hop;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .join()
    .expect("resolver thread")
}

#[test]
fn next_hops_of_on_link_and_routed_addresses_v4_and_v6() {
    let Some(_serial) = root_serial() else { return };
    let pid = std::process::id();
    let p = Pair {
        a: format!("oxnla{pid}"),
        b: format!("oxnlb{pid}"),
    };
    ip(&["netns", "add", &p.a]);
    ip(&["netns", "add", &p.b]);
    ip(&[
        "-n", &p.a, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &p.b,
    ]);
    ip(&[
        "-n",
        &p.b,
        "link",
        "set",
        "ul0",
        "address",
        "02:77:00:00:00:02",
    ]);
    for (ns, n) in [(&p.a, 1), (&p.b, 2)] {
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("192.168.77.{n}/24"),
            "dev",
            "ul0",
        ]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("fd00:77::{n}/64"),
            "dev",
            "ul0",
            "nodad",
        ]);
        ip(&["-n", ns, "link", "set", "ul0", "up"]);
    }
    ip(&[
        "-n",
        &p.a,
        "route",
        "add",
        "192.168.78.0/24",
        "via",
        "192.168.77.2",
    ]);
    let a_mac = {
        let out = Command::new("ip")
            .args(["-n", &p.a, "-br", "link", "show", "ul0"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .to_string()
    };

    let on_link = resolve_in(&p.a, "192.168.77.2".parse().unwrap());
    assert_eq!(on_link.dst_mac, Some(PEER_MAC), "{on_link:?}");
    assert_eq!(on_link.via, "192.168.77.2".parse::<IpAddr>().unwrap());
    assert_eq!(on_link.src_ip, Some("192.168.77.1".parse().unwrap()));
    let src = on_link
        .src_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(src, a_mac, "the egress interface's own MAC");
    assert_eq!(on_link.mtu, 1500);

    let routed = resolve_in(&p.a, "192.168.78.9".parse().unwrap());
    assert_eq!(routed.via, "192.168.77.2".parse::<IpAddr>().unwrap());
    assert_eq!(routed.dst_mac, Some(PEER_MAC), "{routed:?}");

    let v6 = resolve_in(&p.a, "fd00:77::2".parse().unwrap());
    assert_eq!(v6.dst_mac, Some(PEER_MAC), "{v6:?}");
    assert_eq!(v6.ifindex, on_link.ifindex);

    // No route at all is an error, not a guess.
    let none = std::thread::spawn({
        let ns = p.a.clone();
        move || {
            datapath::afxdp::sys::enter_netns(&ns).expect("enter namespace");
            Netlink::open()
                .unwrap()
                .next_hop("203.0.113.1".parse().unwrap())
        }
    })
    .join()
    .unwrap();
    assert!(none.is_err(), "{none:?}");
}
