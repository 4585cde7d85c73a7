//! The small cluster's behaviours, each checked by sending a packet through
//! the compiled rules with the switch's own classifier.

mod common;

use agent::alloc::{cluster_ip, ingress_ip, pod_ip};
use agent::sim::Outcome;
use common::{node, small};
use std::net::Ipv4Addr;

fn pod_ip_of(c: &agent::app::Cluster, prefix: &str) -> Ipv4Addr {
    c.store
        .pods()
        .find(|p| p.metadata.name.as_deref().unwrap_or("").starts_with(prefix))
        .and_then(pod_ip)
        .unwrap()
}

fn svc<'a>(c: &'a agent::app::Cluster, name: &str) -> &'a k8s_openapi::api::core::v1::Service {
    c.store
        .services()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap()
}

/// The first local pod of `node` whose name starts with `prefix`: (port, ip).
fn local(n: &common::Node, c: &agent::app::Cluster, prefix: &str) -> (u32, Ipv4Addr) {
    let ((ns, name), p) = n
        .ports
        .iter()
        .find(|((_, name), _)| name.starts_with(prefix))
        .unwrap();
    (p.ofport, c.store.pod(ns, name).and_then(pod_ip).unwrap())
}

fn from_pod(port: u32, ip: Ipv4Addr, proto: &str, dst: Ipv4Addr, dport: u16, sport: u16) -> String {
    format!(
        "in_port={port},{proto},dl_src={},dl_dst=0a:58:0a:f4:00:01,nw_src={ip},nw_dst={dst},tp_src={sport},tp_dst={dport},nw_ttl=64",
        agent::net::mac_for(ip)
    )
}

#[test]
fn clusterip_reaches_every_endpoint_with_named_target_ports() {
    let c = small();
    let mut n1 = node(&c, "node1");
    let (port, ip) = local(&n1, &c, "frontend");
    let redis = cluster_ip(svc(&c, "redis")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for sport in 1000..1064 {
        // A fresh node each time: learned affinity would pin the client.
        let mut fresh = node(&c, "node1");
        let out = fresh
            .sim
            .send_text(&from_pod(port, ip, "tcp", redis, 6379, sport))
            .unwrap();
        seen.insert(out.destination().expect("delivered"));
    }
    let master = pod_ip_of(&c, "redis-master");
    let replica0 = pod_ip_of(&c, "redis-replica-ee213b663c-0");
    assert!(seen.contains(&(master, 6379)), "{seen:?}");
    assert!(
        seen.contains(&(replica0, 6380)),
        "named port resolved per pod: {seen:?}"
    );
    assert_eq!(seen.len(), 3);
    // Session affinity: once learned, the same client always gets the same endpoint.
    let first = n1
        .sim
        .send_text(&from_pod(port, ip, "tcp", redis, 6379, 2000))
        .unwrap();
    for sport in 2001..2020 {
        let again = n1
            .sim
            .send_text(&from_pod(port, ip, "tcp", redis, 6379, sport))
            .unwrap();
        assert_eq!(again.destination(), first.destination());
    }
    let learned = n1
        .sim
        .bridge()
        .cls
        .rules()
        .filter(|r| r.table == 41 && r.hard_timeout == 600)
        .count();
    assert_eq!(learned, 1, "one learned rule with the Service's timeout");
}

#[test]
fn remote_endpoints_go_through_the_tunnel() {
    let c = small();
    let mut n1 = node(&c, "node1");
    let (port, ip) = local(&n1, &c, "frontend");
    let master = pod_ip_of(&c, "redis-master");
    let out = n1
        .sim
        .send_text(&from_pod(port, ip, "tcp", master, 6379, 5555))
        .unwrap();
    match out {
        Outcome::Tunnel { dst, vni, .. } => {
            assert_eq!(dst, "192.168.77.2".parse::<Ipv4Addr>().unwrap());
            assert_eq!(vni, 42);
        }
        o => panic!("{o:?}"),
    }
    // And node2 delivers it to the pod's port.
    let mut n2 = node(&c, "node2");
    let (mport, _) = local(&n2, &c, "redis-master");
    let arrival = format!(
        "in_port=100,tun_id=42,tun_src=192.168.77.1,tun_dst=192.168.77.2,tcp,nw_src={ip},nw_dst={master},tp_src=5555,tp_dst=6379,nw_ttl=64"
    );
    match n2.sim.send_text(&arrival).unwrap() {
        Outcome::Port { port, .. } => assert_eq!(port, mport),
        o => panic!("{o:?}"),
    }
}

#[test]
fn no_endpoints_rejects_and_local_policies_drop() {
    let c = small();
    let mut n1 = node(&c, "node1");
    let (port, ip) = local(&n1, &c, "frontend");
    let empty = cluster_ip(svc(&c, "empty")).unwrap();
    assert_eq!(
        n1.sim
            .send_text(&from_pod(port, ip, "tcp", empty, 80, 1))
            .unwrap(),
        Outcome::Reject
    );
    assert_eq!(
        n1.sim
            .send_text(&from_pod(port, ip, "udp", empty, 53, 1))
            .unwrap(),
        Outcome::Reject
    );
    // dns has internalTrafficPolicy Local: node1 has one replica, used for
    // every client of node1.
    let dns = cluster_ip(svc(&c, "dns")).unwrap();
    let replica = local(&n1, &c, "redis-replica").1;
    for sport in 1..20 {
        let out = n1
            .sim
            .send_text(&from_pod(port, ip, "udp", dns, 53, sport))
            .unwrap();
        assert_eq!(out.destination(), Some((replica, 5353)));
    }
}

#[test]
fn terminating_endpoints_serve_when_nothing_is_ready() {
    let c = small();
    let mut n1 = node(&c, "node1");
    let (port, ip) = local(&n1, &c, "hello-world");
    let legacy = cluster_ip(svc(&c, "legacy")).unwrap();
    for sport in 1..16 {
        let out = n1
            .sim
            .send_text(&from_pod(port, ip, "tcp", legacy, 8000, sport))
            .unwrap();
        // Not a pod: the switch has no route for it, but the DNAT chose it.
        assert!(matches!(out, Outcome::Drop(_)), "{out:?}");
    }
    let text = n1.rules.text();
    assert!(
        text.contains("nat(dst=10.244.1.200:9000)"),
        "serving+terminating endpoint used"
    );
    assert!(
        !text.contains("10.244.1.201"),
        "a terminating endpoint that is not serving is not"
    );
}

#[test]
fn nodeport_and_loadbalancer_from_outside() {
    let c = small();
    let mut n1 = node(&c, "node1");
    let ext = "in_port=2,tcp,dl_src=0a:58:a9:fe:00:01,nw_src=192.168.77.100,tp_src=4444,nw_ttl=64";
    // NodePort, externalTrafficPolicy Cluster: any endpoint, SNATed to the node IP.
    let out = n1
        .sim
        .send_text(&format!("{ext},nw_dst=192.168.77.1,tp_dst=30080"))
        .unwrap();
    assert_eq!(out.destination().unwrap().1, 8080, "{out:?}");
    assert_eq!(
        out.source(),
        Some("192.168.77.1".parse().unwrap()),
        "SNATed to the node IP"
    );
    // LoadBalancer with externalTrafficPolicy Local: node1's endpoints only,
    // client address kept.
    let lb = ingress_ip(svc(&c, "hello-world")).unwrap();
    let local_hello: Vec<Ipv4Addr> = n1
        .ports
        .keys()
        .filter(|(_, n)| n.starts_with("hello"))
        .map(|(ns, n)| pod_ip(c.store.pod(ns, n).unwrap()).unwrap())
        .collect();
    for sport in 1..32 {
        let out = n1
            .sim
            .send_text(&format!("in_port=2,tcp,nw_src=192.168.77.100,tp_src={sport},nw_dst={lb},tp_dst=80,nw_ttl=64"))
            .unwrap();
        let (d, p) = out.destination().unwrap();
        assert!(local_hello.contains(&d) && p == 8080, "{out:?}");
        assert_eq!(
            out.source(),
            Some("192.168.77.100".parse().unwrap()),
            "client IP kept"
        );
        assert!(matches!(out, Outcome::Port { .. }));
    }
}

#[test]
fn egress_leaves_with_the_namespace_snat_ip_or_via_its_node() {
    let c = small();
    let mut n1 = node(&c, "node1");
    // development's SNAT IP is owned by node1: SNATed here.
    let (port, ip) = local(&n1, &c, "frontend");
    let out = n1
        .sim
        .send_text(&from_pod(
            port,
            ip,
            "tcp",
            "8.8.8.8".parse().unwrap(),
            443,
            3333,
        ))
        .unwrap();
    let dev = c.store.namespace("development").unwrap();
    let snat: Ipv4Addr = agent::object::annotation(&dev.metadata, agent::alloc::SNAT_IP)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(out.source(), Some(snat));
    assert!(matches!(out, Outcome::Port { port: 2, .. }), "{out:?}");
    // production's is owned by node2: node1 tunnels it there.
    let (port, ip) = local(&n1, &c, "hello-world");
    let out = n1
        .sim
        .send_text(&from_pod(
            port,
            ip,
            "tcp",
            "8.8.8.8".parse().unwrap(),
            443,
            3333,
        ))
        .unwrap();
    assert!(
        matches!(out, Outcome::Tunnel { dst, .. } if dst == "192.168.77.2".parse::<Ipv4Addr>().unwrap()),
        "{out:?}"
    );
}

#[test]
fn hairpin_and_arp() {
    let c = small();
    let mut n1 = node(&c, "node1");
    let (port, ip) = local(&n1, &c, "redis-replica");
    let dns = cluster_ip(svc(&c, "dns")).unwrap();
    // dns (iTP Local) on node1 has only this replica: it reaches itself.
    let out = n1
        .sim
        .send_text(&from_pod(port, ip, "udp", dns, 53, 7))
        .unwrap();
    assert_eq!(
        out.source(),
        Some("169.254.0.252".parse().unwrap()),
        "{out:?}"
    );
    assert!(matches!(out, Outcome::Port { port: p, .. } if p == port));
    // ARP for the gateway is answered on the asking port.
    let arp = format!(
        "in_port={port},arp,arp_op=1,dl_src={m},arp_sha={m},arp_spa={ip},arp_tpa=10.244.0.1",
        m = agent::net::mac_for(ip)
    );
    let out = n1.sim.send_text(&arp).unwrap();
    let Outcome::Port { port: p, key } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(*p, port);
    // The answer is a reply from the gateway's address and MAC to the
    // asker: the datapath writes these (DpAction::SetArp), so a pod's
    // kernel accepts it.
    use flowtable::Field;
    let gw_mac = agent::net::mac_for("10.244.0.1".parse().unwrap());
    assert_eq!(key.get(Field::NwProto), 2, "arp_op");
    assert_eq!(
        key.get(Field::NwSrc),
        u32::from(Ipv4Addr::new(10, 244, 0, 1)) as u128
    );
    assert_eq!(key.get(Field::NwDst), u32::from(ip) as u128);
    let mac_value = |m: &str| u128::from_str_radix(&m.replace(':', ""), 16).unwrap();
    assert_eq!(key.get(Field::ArpSha), mac_value(&gw_mac));
    assert_eq!(key.get(Field::ArpTha), mac_value(&agent::net::mac_for(ip)));
}
