//! Policy behaviours beyond the truth tables: established connections when
//! a rule starts denying, the size of the compiled rules (conjunctions,
//! never a cross product), deny logging, a policy's flows by cookie and
//! conjunction id, the overlay path, and a label change turned into a
//! small difference for the switch.

use agent::compile::policy::policy_flows;
use agent::compile::{compile, compile_explained, NodeView};
use agent::manifest;
use agent::object::{Kind, Object, ObjectKey};
use agent::sync::{plan, Installed};
use agent::trace::{Lab, Probe, DEFAULT_CONFIG};
use std::path::Path;

fn pod(ns: &str, name: &str, labels: &str, ip: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{namespace: {ns}, name: {name}, labels: {{{labels}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
         status: {{podIP: {ip}}}\n---\n"
    )
}

fn ns(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{team: {name}}}}}\n---\n")
}

fn nodes() -> String {
    let mut s = String::new();
    for (n, ip) in [("node1", "192.168.77.1"), ("node2", "192.168.77.2")] {
        s += &format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\nstatus: {{addresses: [{{type: InternalIP, address: {ip}}}]}}\n---\n"
        );
    }
    s
}

/// Two namespaces of `n` pods each, a on node1 and b on node2.
fn cluster(n: usize) -> String {
    let mut s = nodes() + &ns("a") + &ns("b");
    for i in 0..n {
        s += &pod(
            "a",
            &format!("p{i}"),
            "app: web",
            &format!("10.244.1.{}", 10 + i),
            "node1",
        );
        s += &pod(
            "b",
            &format!("p{i}"),
            "app: db",
            &format!("10.244.2.{}", 10 + i),
            "node2",
        );
    }
    s
}

const DENY_B: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
metadata: {namespace: b, name: deny, annotations: {oxvs.io/policy-log: \"true\"}}\n\
spec: {podSelector: {}, policyTypes: [Ingress]}\n---\n";

const ALLOW_A_TO_B: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: b, name: from-a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: a}}}]
    ports: [{port: http}, {port: 9000, endPort: 9100}]
---
"#;

fn lab(text: &str) -> Lab {
    let objects = manifest::parse(text, Path::new("test.yaml")).unwrap();
    Lab::from_objects(
        agent::config::Config::parse(DEFAULT_CONFIG).unwrap(),
        objects,
    )
    .unwrap()
}

fn probe(from: &str, to: &str, port: u16) -> Probe {
    Probe {
        from: from.into(),
        to: to.into(),
        proto: "tcp".into(),
        port,
    }
}

#[test]
fn established_connections_outlive_a_new_deny() {
    let before = lab(&cluster(2));
    let p = probe("a/p0", "b/p0", 8080);
    assert!(before.trace(&p).unwrap().allowed());
    let after = lab(&(cluster(2) + DENY_B));
    // A new connection is denied at b/p0's node, by the policy...
    let a = after.trace(&p).unwrap();
    assert!(!a.allowed());
    assert_eq!(a.ingress.node, "node2");
    assert_eq!(a.ingress.policy.as_deref(), Some("NetworkPolicy/b/deny"));
    // ...but a packet of a connection conntrack already holds (and its
    // replies) pass: only ct_state=+new is judged, as in OVS and Antrea.
    let est = after.trace_with(&p, true).unwrap();
    assert!(est.allowed(), "{est:?}");
    assert!(est.ingress.reason.contains("established"), "{est:?}");
    let reply = after
        .trace_with(&probe("b/p0", "a/p0", 40000), true)
        .unwrap();
    assert!(reply.allowed(), "{reply:?}");
}

#[test]
fn rules_grow_with_pods_plus_policies_not_their_product() {
    let count = |n: usize| {
        let l = lab(&(cluster(n) + DENY_B + ALLOW_A_TO_B));
        let ports = agent::app::offline_ports(&l.store, "node2");
        let r = compile(NodeView {
            store: &l.store,
            config: &l.config,
            node: "node2",
            ports: &ports,
        })
        .unwrap();
        r.flows().filter(|f| (50..=62).contains(&f.table)).count()
    };
    let (small, big) = (count(10), count(40));
    // node2 hosts the n subjects; the peers are the n pods of a: clause 1
    // n flows, clause 2 n flows, isolation n flows, ports and defaults a few.
    assert!(big < 4 * 40 + 30, "{big} flows for 40 + 40 pods");
    assert!(
        big - small <= 3 * 30 + 4,
        "{small} -> {big}: linear in the pods"
    );
    // And it still decides right.
    let l = lab(&(cluster(3) + DENY_B + ALLOW_A_TO_B));
    assert!(l.trace(&probe("a/p1", "b/p2", 8080)).unwrap().allowed());
    assert!(l.trace(&probe("a/p1", "b/p2", 9050)).unwrap().allowed());
    assert!(!l.trace(&probe("a/p1", "b/p2", 9101)).unwrap().allowed());
    assert!(!l.trace(&probe("b/p1", "b/p2", 8080)).unwrap().allowed());
}

#[test]
fn denials_are_logged_by_policy_name_and_flows_are_found_by_policy() {
    let l = lab(&(cluster(2) + DENY_B + ALLOW_A_TO_B));
    let ports = agent::app::offline_ports(&l.store, "node2");
    let (rules, explain) = compile_explained(NodeView {
        store: &l.store,
        config: &l.config,
        node: "node2",
        ports: &ports,
    })
    .unwrap();
    let text = rules.text();
    assert!(text.contains("actions=log(name=b/deny),drop"), "{text}");
    let key = ObjectKey::new(Kind::NetworkPolicy, "b", "from-a");
    let mine = policy_flows(&rules, &explain, &key).text();
    assert!(mine.contains("conj_id="), "{mine}");
    assert!(mine.contains("conjunction("), "{mine}");
    assert!(mine.contains("nw_src=10.244.1.10"), "{mine}");
    // The named port resolved on the destination pods: 8080.
    assert!(mine.contains("tp_dst=8080"), "{mine}");
    // The switch's parser takes all of it (Sim loads the text).
    assert!(l.trace(&probe("a/p0", "b/p1", 8080)).unwrap().allowed());
}

#[test]
fn anp_pass_hands_over_to_network_policy_then_baseline() {
    let anp = r#"apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: pass-a}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: b}}}
  ingress:
  - {name: pass-from-a, action: Pass, from: [{namespaces: {matchLabels: {team: a}}}]}
---
"#;
    let banp = r#"apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {name: deny-a, action: Deny, from: [{namespaces: {matchLabels: {team: a}}}]}
---
"#;
    // Pass, no NetworkPolicy: the baseline denies.
    let l = lab(&(cluster(1) + anp + banp));
    let a = l.trace(&probe("a/p0", "b/p0", 8080)).unwrap();
    assert!(!a.allowed(), "{a:?}");
    assert_eq!(
        a.ingress.policy.as_deref(),
        Some("BaselineAdminNetworkPolicy/default")
    );
    assert!(a.ingress.path[0].contains("Pass"), "{a:?}");
    // Pass, and a NetworkPolicy selects b/p0: it decides, the baseline is not consulted.
    let l = lab(&(cluster(1) + anp + banp + ALLOW_A_TO_B));
    let a = l.trace(&probe("a/p0", "b/p0", 8080)).unwrap();
    assert!(a.allowed(), "{a:?}");
    assert_eq!(a.ingress.policy.as_deref(), Some("NetworkPolicy/b/from-a"));
}

#[test]
fn a_label_change_is_a_small_difference_in_one_bundle() {
    let base = cluster(5) + ALLOW_A_TO_B + DENY_B;
    let l = lab(&base);
    let ports = agent::app::offline_ports(&l.store, "node2");
    let view = |store| NodeView {
        store,
        config: &l.config,
        node: "node2",
        ports: &ports,
    };
    let before = compile(view(&l.store)).unwrap();
    let dump: String = before
        .flows()
        .map(|f| {
            let sep = if f.m.is_empty() { "" } else { "," };
            format!(
                " cookie={:#x}, duration=1s, table={}, n_packets=0, n_bytes=0, idle_age=1, priority={}{sep}{} actions={}\n",
                f.cookie, f.table, f.priority, f.m, f.actions
            )
        })
        .collect();
    let installed = Installed::parse(&dump, "", "").unwrap();
    assert!(plan(&before, &installed).unwrap().is_empty());
    // a/p3 loses team a's... rather: namespace a's pods stay, but pod a/p3
    // is relabelled out of nothing the policy uses; b/p4 stops being a
    // subject (app: db → app: cache).
    let mut store = l.store.clone();
    let k = ObjectKey::new(Kind::Pod, "b", "p4");
    let mut o = store.get(&k).unwrap().clone();
    if let Object::Pod(p) = &mut o {
        p.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("app".into(), "cache".into());
    }
    store.apply(agent::store::Event::Apply(o));
    let after = compile(view(&store)).unwrap();
    let p = plan(&after, &installed).unwrap();
    assert!(!p.is_empty());
    // Only b/p4's clause flows change: its nw_dst clause goes (one flow).
    assert!(p.added + p.removed <= 3, "+{} -{}", p.added, p.removed);
    assert!(p.bundle.contains("nw_dst=10.244.2.14"), "{}", p.bundle);
}

/// A pod of namespace `ns` without an address (the controller gives it one
/// from the namespace's subnet).
fn unaddressed(ns: &str, name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{namespace: {ns}, name: {name}, labels: {{app: x}}}}\n\
         spec: {{nodeName: {node}}}\n---\n"
    )
}

fn peer_matches(l: &Lab, node: &str) -> Vec<String> {
    let ports = agent::app::offline_ports(&l.store, node);
    let r = compile(NodeView {
        store: &l.store,
        config: &l.config,
        node,
        ports: &ports,
    })
    .unwrap();
    r.flows()
        .filter(|f| f.table == 61 && f.m.contains("nw_src="))
        .map(|f| f.m.clone())
        .collect()
}

/// A namespace-only peer is matched by the namespace's subnet when the
/// subnet holds exactly the namespace's pods; one pod elsewhere (an address it
/// brought) and it is matched pod by pod again. Verdicts are the same.
#[test]
fn a_namespace_peer_is_its_subnet_when_that_means_the_same() {
    let mut text = nodes() + &ns("a") + &ns("b");
    for i in 0..6 {
        text += &unaddressed("a", &format!("p{i}"), "node1");
        text += &unaddressed("b", &format!("p{i}"), "node2");
    }
    let policy = ALLOW_A_TO_B.replace("app: db", "app: x");
    let l = lab(&(text.clone() + &policy));
    let m = peer_matches(&l, "node2");
    // One prefix, the namespace's /24, instead of a flow per pod.
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].ends_with(".0/24"), "{m:?}");
    assert!(l.trace(&probe("a/p0", "b/p0", 9000)).unwrap().allowed());
    assert!(!l.trace(&probe("b/p1", "b/p0", 9000)).unwrap().allowed());

    // A pod of `a` with an address outside a's subnet: pod by pod.
    let l = lab(&(text + &pod("a", "odd", "app: x", "10.244.200.7", "node1") + &policy));
    let m = peer_matches(&l, "node2");
    assert!(
        m.iter().any(|m| m.ends_with("nw_src=10.244.200.7")),
        "{m:?}"
    );
    assert!(!m.iter().any(|m| m.contains('/')), "{m:?}");
    assert!(l.trace(&probe("a/odd", "b/p0", 9000)).unwrap().allowed());
    assert!(l.trace(&probe("a/p3", "b/p0", 9000)).unwrap().allowed());
}
