//! The model test: random small clusters, compiled for every node and run
//! through the switch's own classifier. Every pod reaches every pod (on its
//! node, or through the tunnel and then the other node's rules); every
//! Service port reached from every pod lands on one of the endpoints the
//! Kubernetes model says it may (selector, named target port, internal
//! traffic policy), rejects when it has none, drops when a Local policy
//! leaves none on this node; and a deleted object leaves no rule behind
//! (no rule or group carries its cookie).

use agent::alloc::{self, cluster_ip, pod_ip, pod_node};
use agent::app::offline_ports;
use agent::compile::{compile, node_ips, NodeView, PortMap};
use agent::config::Config;
use agent::cookie::{object_bits, OBJECT_MASK};
use agent::object::{Kind, Object, ObjectKey};
use agent::rules::RuleSet;
use agent::sim::{Outcome, Sim};
use agent::store::{Event, Store};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeAddress, NodeStatus, Pod, PodSpec, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Clone, Debug)]
struct PodSpecGen {
    ns: usize,
    node: usize,
    app: usize,
}

#[derive(Clone, Debug)]
struct SvcGen {
    ns: usize,
    app: usize,
    udp: bool,
    named: bool,
    itp_local: bool,
    sticky: bool,
    node_port: bool,
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

fn build(nodes: usize, namespaces: usize, pods: &[PodSpecGen], svcs: &[SvcGen]) -> Vec<Object> {
    let mut out = Vec::new();
    for n in 0..nodes {
        out.push(Object::Node(Node {
            metadata: meta(None, &format!("node{n}")),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: format!("192.168.77.{}", n + 1),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    for i in 0..namespaces {
        out.push(Object::Namespace(Namespace {
            metadata: meta(None, &format!("ns{i}")),
            ..Default::default()
        }));
    }
    for (i, p) in pods.iter().enumerate() {
        let mut m = meta(
            Some(&format!("ns{}", p.ns % namespaces)),
            &format!("pod{i}"),
        );
        m.labels = Some([("app".to_string(), format!("app{}", p.app))].into());
        let proto = |udp: bool| Some(if udp { "UDP" } else { "TCP" }.to_string());
        out.push(Object::Pod(Pod {
            metadata: m,
            spec: Some(PodSpec {
                node_name: Some(format!("node{}", p.node % nodes)),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![
                        ContainerPort {
                            name: Some("web".into()),
                            container_port: 8000 + i as i32,
                            protocol: proto(false),
                            ..Default::default()
                        },
                        ContainerPort {
                            name: Some("web".into()),
                            container_port: 9000 + i as i32,
                            protocol: proto(true),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }));
    }
    for (i, s) in svcs.iter().enumerate() {
        out.push(Object::Service(Service {
            metadata: meta(
                Some(&format!("ns{}", s.ns % namespaces)),
                &format!("svc{i}"),
            ),
            spec: Some(ServiceSpec {
                type_: Some(if s.node_port { "NodePort" } else { "ClusterIP" }.into()),
                selector: Some([("app".to_string(), format!("app{}", s.app))].into()),
                internal_traffic_policy: s.itp_local.then(|| "Local".into()),
                session_affinity: s.sticky.then(|| "ClientIP".into()),
                ports: Some(vec![ServicePort {
                    name: Some("p".into()),
                    port: 80 + i as i32,
                    protocol: Some(if s.udp { "UDP" } else { "TCP" }.into()),
                    target_port: Some(if s.named {
                        IntOrString::String("web".into())
                    } else {
                        IntOrString::Int(7000)
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }));
    }
    out
}

fn cfg() -> Config {
    Config::parse("[cluster]\npod_cidr = \"10.244.0.0/16\"\nexternal_pool = [\"172.30.0.0/28\"]\n")
        .unwrap()
}

struct Compiled {
    rules: BTreeMap<String, RuleSet>,
    ports: BTreeMap<String, PortMap>,
}

fn compile_all(store: &Store, c: &Config) -> Compiled {
    let mut out = Compiled {
        rules: BTreeMap::new(),
        ports: BTreeMap::new(),
    };
    for node in node_ips(store, c).into_keys() {
        let ports = offline_ports(store, &node);
        let rules = compile(NodeView {
            store,
            config: c,
            node: &node,
            ports: &ports,
        })
        .unwrap();
        out.rules.insert(node.clone(), rules);
        out.ports.insert(node, ports);
    }
    out
}

fn sim(all: &Compiled, store: &Store, c: &Config, node: &str) -> Sim {
    let ip = node_ips(store, c)[node];
    Sim::new(&all.rules[node], c, &all.ports[node], ip).unwrap()
}

/// A pod's node, port and address.
fn place(all: &Compiled, p: &Pod) -> (String, u32, Ipv4Addr) {
    let node = pod_node(p).unwrap().to_string();
    let key = (
        p.metadata.namespace.clone().unwrap(),
        p.metadata.name.clone().unwrap(),
    );
    (
        node.clone(),
        all.ports[&node][&key].ofport,
        pod_ip(p).unwrap(),
    )
}

fn packet(port: u32, src: Ipv4Addr, proto: &str, dst: Ipv4Addr, dport: u16, sport: u16) -> String {
    format!(
        "in_port={port},{proto},dl_src={},nw_src={src},nw_dst={dst},tp_src={sport},tp_dst={dport},nw_ttl=64",
        agent::net::mac_for(src)
    )
}

fn check_cluster(store: &Store, c: &Config) -> Result<(), TestCaseError> {
    let all = compile_all(store, c);
    let ips = node_ips(store, c);
    let pods: Vec<&Pod> = store.pods().collect();
    // Every pod reaches every pod.
    for a in &pods {
        let (an, aport, aip) = place(&all, a);
        let mut s = sim(&all, store, c, &an);
        for b in &pods {
            let (bn, bport, bip) = place(&all, b);
            let out = s
                .send_text(&packet(aport, aip, "tcp", bip, 80, 40000))
                .unwrap();
            if an == bn {
                prop_assert!(
                    matches!(out, Outcome::Port { port, .. } if port == bport),
                    "{aip}->{bip}: {out:?}"
                );
            } else {
                prop_assert!(
                    matches!(out, Outcome::Tunnel { dst, .. } if dst == ips[&bn]),
                    "{aip}->{bip}: {out:?}"
                );
                let arrival = format!(
                    "in_port={},tun_id={},tun_src={},tun_dst={},tcp,nw_src={aip},nw_dst={bip},tp_src=40000,tp_dst=80,nw_ttl=64",
                    c.tunnel_port, c.vni, ips[&an], ips[&bn]
                );
                let out = sim(&all, store, c, &bn).send_text(&arrival).unwrap();
                prop_assert!(
                    matches!(out, Outcome::Port { port, .. } if port == bport),
                    "arrival {aip}->{bip}: {out:?}"
                );
            }
        }
    }
    // Every Service from every pod.
    for svc in store.services() {
        let cip = cluster_ip(svc).unwrap();
        let spec = svc.spec.as_ref().unwrap();
        let sp = &spec.ports.as_ref().unwrap()[0];
        let udp = sp.protocol.as_deref() == Some("UDP");
        let proto = if udp { "udp" } else { "tcp" };
        let ns = svc.metadata.namespace.as_deref().unwrap();
        let sel = spec.selector.as_ref().unwrap();
        let backends: Vec<&&Pod> = pods
            .iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && agent::object::selects(sel, p.metadata.labels.as_ref())
            })
            .collect();
        for a in &pods {
            let (an, aport, aip) = place(&all, a);
            let local = spec.internal_traffic_policy.as_deref() == Some("Local");
            let allowed: Vec<(Ipv4Addr, u16, String, u32)> = backends
                .iter()
                .filter(|b| !local || pod_node(b) == Some(an.as_str()))
                .map(|b| {
                    let (bn, bport, bip) = place(&all, b);
                    let tp = agent::endpoints::target_port(b, sp).unwrap();
                    (bip, tp, bn, bport)
                })
                .collect();
            let mut s = sim(&all, store, c, &an);
            for sport in 1000..1006 {
                let out = s
                    .send_text(&packet(aport, aip, proto, cip, sp.port as u16, sport))
                    .unwrap();
                if allowed.is_empty() {
                    let want_reject = backends.is_empty();
                    prop_assert!(
                        if want_reject {
                            out == Outcome::Reject
                        } else {
                            matches!(out, Outcome::Drop(_))
                        },
                        "{aip} -> {cip}:{} ({ns}): {out:?}",
                        sp.port
                    );
                    continue;
                }
                let (dip, dport) = out
                    .destination()
                    .ok_or_else(|| TestCaseError::fail(format!("{aip}->{cip}: {out:?}")))?;
                let ep = allowed.iter().find(|e| e.0 == dip && e.1 == dport);
                prop_assert!(
                    ep.is_some(),
                    "{aip} -> {cip}:{} went to {dip}:{dport}, allowed {allowed:?}",
                    sp.port
                );
                let (_, _, bn, bport) = ep.unwrap();
                match &out {
                    Outcome::Port { port, .. } if *bn == an => {
                        prop_assert_eq!(*port, *bport);
                        if dip == aip {
                            prop_assert_eq!(
                                out.source(),
                                Some("169.254.0.252".parse().unwrap()),
                                "hairpin SNAT"
                            );
                        }
                    }
                    Outcome::Tunnel { dst, .. } => prop_assert_eq!(*dst, ips[bn]),
                    o => prop_assert!(false, "{aip} -> {cip}: {o:?}"),
                }
            }
        }
    }
    Ok(())
}

fn owned_rules(all: &Compiled, key: &ObjectKey) -> usize {
    let bits = object_bits(key);
    all.rules
        .values()
        .map(|r| r.select(bits, OBJECT_MASK))
        .map(|r| r.flow_count() + r.group_count())
        .sum()
}

fn pod_gen() -> impl Strategy<Value = PodSpecGen> {
    (0usize..3, 0usize..3, 0usize..3).prop_map(|(ns, node, app)| PodSpecGen { ns, node, app })
}

fn svc_gen() -> impl Strategy<Value = SvcGen> {
    (
        0usize..3,
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.25),
        any::<bool>(),
    )
        .prop_map(
            |(ns, app, udp, named, itp_local, sticky, node_port)| SvcGen {
                ns,
                app,
                udp,
                named,
                itp_local,
                sticky,
                node_port,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn services_and_pods_reachable_and_deletions_leave_nothing(
        nodes in 1usize..4,
        namespaces in 1usize..4,
        pods in proptest::collection::vec(pod_gen(), 1..8),
        svcs in proptest::collection::vec(svc_gen(), 0..5),
        victim in 0usize..100,
    ) {
        let c = cfg();
        let mut store = Store::default();
        store.replace(build(nodes, namespaces, &pods, &svcs));
        let a = alloc::reconcile(&mut store, &c);
        prop_assert!(a.pending.is_empty(), "{:?}", a.pending);
        check_cluster(&store, &c)?;

        // Delete one pod or Service: none of its rules may stay.
        let candidates: Vec<ObjectKey> = store.iter().map(Object::key).filter(|k| matches!(k.kind, Kind::Pod | Kind::Service)).collect();
        let key = candidates[victim % candidates.len()].clone();
        let before = compile_all(&store, &c);
        prop_assert!(owned_rules(&before, &key) > 0, "{key} had rules");
        store.apply(Event::Delete(key.clone()));
        let after = compile_all(&store, &c);
        prop_assert_eq!(owned_rules(&after, &key), 0, "{} left rules behind", key);
        check_cluster(&store, &c)?;
    }
}
