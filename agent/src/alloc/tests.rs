//! The controller's allocations: kept, unique, in range, freed with their
//! objects, and the same after a restart.

use super::*;
use crate::object::Object;
use k8s_openapi::api::core::v1::{
    Namespace, Node, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

fn cfg(pool: &str) -> Config {
    Config::parse(&format!(
        "[cluster]\npod_cidr = \"10.244.0.0/16\"\nnamespace_prefix = 28\nexternal_pool = [{pool}]\n"
    ))
    .unwrap()
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

fn ns(name: &str) -> Object {
    Object::Namespace(Namespace {
        metadata: meta(None, name),
        ..Default::default()
    })
}

fn node(name: &str) -> Object {
    Object::Node(Node {
        metadata: meta(None, name),
        ..Default::default()
    })
}

fn pod(ns: &str, name: &str) -> Object {
    Object::Pod(Pod {
        metadata: meta(Some(ns), name),
        spec: Some(PodSpec::default()),
        status: None,
    })
}

fn svc(ns: &str, name: &str, ty: &str) -> Object {
    Object::Service(Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some(ty.into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    })
}

fn store(objs: Vec<Object>) -> Store {
    let mut s = Store::default();
    s.replace(objs);
    s
}

/// Every allocation in the store is unique and in its range.
fn check_invariants(s: &Store, c: &Config) {
    let mut subnets = BTreeSet::new();
    let mut pool = BTreeSet::new();
    for n in s.namespaces() {
        if let Some(sub) = annotation(&n.metadata, SUBNET) {
            let sub: Cidr = sub.parse().unwrap();
            assert!(
                c.pod_cidr.covers(&sub) && !c.service_cidr.covers(&sub),
                "{sub}"
            );
            assert!(subnets.insert(sub), "subnet {sub} twice");
        }
        if let Some(ip) = annotation(&n.metadata, SNAT_IP) {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert!(c.external_pool.contains(ip));
            assert!(pool.insert(ip), "pool address {ip} twice");
        }
    }
    let mut pods = BTreeSet::new();
    for p in s.pods() {
        let ns = p.metadata.namespace.as_deref().unwrap();
        if let Some(ip) = pod_ip(p) {
            let sub =
                namespace_subnet(s, ns).expect("a pod with an address has a namespace subnet");
            assert!(usable(&sub, ip), "{ip} not usable in {sub}");
            assert!(pods.insert(ip), "pod address {ip} twice");
        }
    }
    let mut cips = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for v in s.services() {
        let ip = cluster_ip(v).expect("every Service gets a ClusterIP");
        assert!(c.service_cidr.contains(ip));
        assert!(cips.insert(ip), "ClusterIP {ip} twice");
        if let Some(ip) = ingress_ip(v) {
            assert!(c.external_pool.contains(ip));
            assert!(pool.insert(ip), "pool address {ip} twice");
        }
        for p in v.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
            if let Some(np) = p.node_port {
                assert!((30000..=32767).contains(&np));
                assert!(node_ports.insert(np), "NodePort {np} twice");
            }
        }
    }
}

#[test]
fn seed_walkthrough() {
    let c = cfg("\"172.30.0.0/29\"");
    let mut s = store(vec![
        node("n1"),
        ns("development"),
        ns("production"),
        pod("development", "a"),
        svc("production", "hello", "LoadBalancer"),
    ]);
    let a = reconcile(&mut s, &c);
    assert!(a.pending.is_empty(), "{:?}", a.pending);
    check_invariants(&s, &c);
    assert_eq!(
        namespace_subnet(&s, "development").unwrap().to_string(),
        "10.244.0.0/28"
    );
    let p = s.pod("development", "a").unwrap();
    assert_eq!(pod_ip(p).unwrap().to_string(), "10.244.0.2");
    assert_eq!(pod_node(p), Some("n1"));
    // Everything survives a restart through the saved state...
    let saved = saved_state(&s);
    let mut again = store(vec![
        node("n1"),
        ns("production"),
        ns("development"),
        pod("development", "a"),
        svc("production", "hello", "LoadBalancer"),
    ]);
    restore(&mut again, &saved);
    assert!(
        reconcile(&mut again, &c).patches.is_empty(),
        "nothing left to allocate"
    );
    assert_eq!(again, s);
    // ...and an earlier-sorting namespace created later does not move them.
    let mut more = again.clone();
    more.apply(crate::store::Event::Apply(ns("aaa")));
    reconcile(&mut more, &c);
    assert_eq!(
        namespace_subnet(&more, "development"),
        namespace_subnet(&s, "development")
    );
    assert_eq!(
        namespace_subnet(&more, "aaa").unwrap().to_string(),
        "10.244.0.32/28"
    );
}

#[test]
fn pending_while_the_pool_is_empty_then_allocated() {
    let c = cfg("");
    let mut s = store(vec![ns("p"), svc("p", "lb", "LoadBalancer")]);
    let a = reconcile(&mut s, &c);
    assert!(ingress_ip(s.services().next().unwrap()).is_none());
    assert!(
        a.pending.iter().any(|p| p.contains("<pending>")),
        "{:?}",
        a.pending
    );
    // The namespace's SNAT IP and the LoadBalancer IP share the pool.
    let c = cfg("\"172.30.0.8-172.30.0.9\"");
    reconcile(&mut s, &c);
    assert_eq!(
        ingress_ip(s.services().next().unwrap())
            .unwrap()
            .to_string(),
        "172.30.0.9"
    );
    check_invariants(&s, &c);
}

#[test]
fn reported_and_annotated_addresses_are_kept() {
    let c = cfg("");
    let mut p = pod("d", "reported");
    if let Object::Pod(p) = &mut p {
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            pod_ip: Some("10.244.0.9".into()),
            ..Default::default()
        });
    }
    let mut n = ns("d");
    n.meta_mut().annotations = Some([(SUBNET.to_string(), "10.244.0.0/28".to_string())].into());
    let mut s = store(vec![n, p, pod("d", "new")]);
    reconcile(&mut s, &c);
    assert_eq!(
        pod_ip(s.pod("d", "reported").unwrap()).unwrap().to_string(),
        "10.244.0.9"
    );
    assert_eq!(
        pod_ip(s.pod("d", "new").unwrap()).unwrap().to_string(),
        "10.244.0.2"
    );
    check_invariants(&s, &c);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random clusters, changed at random (objects created and deleted, a
    /// restart through the saved state in between): every allocation
    /// stays unique and in range, and an object's address is freed with it.
    #[test]
    fn allocations_unique_and_in_range(
        namespaces in 1usize..6,
        pods in proptest::collection::vec((0usize..6, 0usize..40), 0..60),
        services in proptest::collection::vec((0usize..6, 0usize..3), 0..20),
        deletions in proptest::collection::vec(0usize..200, 0..20),
        pool in 0u32..6,
    ) {
        let c = cfg(&if pool == 0 { String::new() } else { format!("\"172.30.0.1-172.30.0.{pool}\"") });
        let mut objs = vec![node("n1"), node("n2")];
        for i in 0..namespaces { objs.push(ns(&format!("ns{i}"))); }
        for (n, i) in &pods { objs.push(pod(&format!("ns{}", n % namespaces), &format!("p{i}"))); }
        for (i, (n, t)) in services.iter().enumerate() {
            objs.push(svc(&format!("ns{}", n % namespaces), &format!("s{i}"), ["ClusterIP", "NodePort", "LoadBalancer"][*t]));
        }
        let mut s = store(objs);
        reconcile(&mut s, &c);
        check_invariants(&s, &c);
        // Delete some objects, restart from the saved state, allocate again.
        let keys: Vec<ObjectKey> = s.iter().map(Object::key).collect();
        let mut gone = Vec::new();
        for d in &deletions {
            let k = keys[d % keys.len()].clone();
            if k.kind == Kind::Node || !s.apply(crate::store::Event::Delete(k.clone())) { continue; }
            if k.kind == Kind::Namespace {
                // The namespace controller deletes what the namespace held.
                let held: Vec<ObjectKey> = s.iter().map(Object::key).filter(|o| o.namespace == k.name).collect();
                for h in held { s.apply(crate::store::Event::Delete(h)); }
            }
            gone.push(k);
        }
        let saved = saved_state(&s);
        let mut restarted = Store::default();
        restarted.replace(s.iter().cloned().map(|mut o| { strip(&mut o); o }).collect());
        restore(&mut restarted, &saved);
        prop_assert_eq!(&restarted, &s, "the saved state restores every allocation");
        for (n, i) in &pods { restarted.apply(crate::store::Event::Apply(pod(&format!("ns{}", n % namespaces), &format!("q{i}")))); }
        reconcile(&mut restarted, &c);
        check_invariants(&restarted, &c);
        // Deleted objects stay deleted across the restart (their addresses
        // were free for the new pods above, and stayed unique).
        for k in &gone { prop_assert!(restarted.get(k).is_none()); }
    }
}

/// An object as its manifest has it: no allocation on it.
fn strip(o: &mut Object) {
    if let Some(a) = &mut o.meta_mut().annotations {
        a.retain(|k, _| !k.starts_with("oxvs.io/"));
        if a.is_empty() {
            o.meta_mut().annotations = None;
        }
    }
    match o {
        Object::Pod(p) => {
            if let Some(s) = &mut p.spec {
                s.node_name = None;
            }
        }
        Object::Service(s) => {
            s.status = None;
            if let Some(sp) = &mut s.spec {
                sp.cluster_ip = None;
                sp.cluster_ips = None;
                for p in sp.ports.iter_mut().flatten() {
                    p.node_port = None;
                }
            }
        }
        _ => {}
    }
}
