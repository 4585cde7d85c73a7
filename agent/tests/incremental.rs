//! The incremental compiler against the full one: after any sequence of
//! changes (labels, pods, endpoints, Services, namespaces, policies), fed
//! as the store events a manifest reload would make, the incrementally
//! kept rules equal a full compile of the same store, and the difference
//! it reports is exactly what comparing the full compiles would send.

use agent::alloc;
use agent::app::offline_ports;
use agent::compile::incremental::Incremental;
use agent::compile::{compile, NodeView};
use agent::object::{Kind, Object};
use agent::rules::RuleSet;
use agent::store::{Event, Store};
use agent::sync::plan_between;
use agent::synth::{config, store, Shape};
use proptest::prelude::*;

const SMALL: Shape = Shape {
    nodes: 3,
    namespaces: 4,
    pods_per_ns: 6,
    svcs_per_ns: 2,
    endpoints_per_svc: 3,
};

fn base() -> Store {
    let cfg = config();
    let mut st = store(SMALL, &cfg);
    agent::policy::synth::add(&mut st, 30);
    st
}

/// One change to `next` (a copy of the store), chosen by `op` and `a`, `b`.
fn change(next: &mut Store, pool: &[Object], op: u8, a: usize, b: usize) {
    let pick = |kind: Kind, next: &Store| -> Option<Object> {
        let v: Vec<&Object> = next.of_kind(kind).collect();
        (!v.is_empty()).then(|| v[a % v.len()].clone())
    };
    match op % 9 {
        // A pod's label (the seed's secgroup, a tier, an app).
        0 | 1 => {
            if let Some(mut o) = pick(Kind::Pod, next) {
                let l = o.meta_mut().labels.get_or_insert_with(Default::default);
                match b % 4 {
                    0 => l.insert("tier".into(), ["web", "api", "db"][b % 3].into()),
                    1 => l.insert("secgroup".into(), "web".into()),
                    2 => l.remove("tier"),
                    _ => l.insert("app".into(), format!("app{}", b % 7)),
                };
                next.apply(Event::Apply(o));
            }
        }
        // A pod goes, or a new one comes (the controller gives it an address).
        2 => {
            if b % 2 == 0 {
                if let Some(o) = pick(Kind::Pod, next) {
                    next.apply(Event::Delete(o.key()));
                }
            } else if let Some(mut o) = pick(Kind::Pod, next) {
                let m = o.meta_mut();
                m.name = Some(format!("new{b}"));
                m.annotations = None;
                if let Object::Pod(p) = &mut o {
                    p.status = None;
                    if let Some(s) = p.spec.as_mut() {
                        s.node_name = Some(format!("node{}", b % SMALL.nodes));
                    }
                }
                next.apply(Event::Apply(o));
            }
        }
        // An endpoint removed from a slice, or its readiness flipped.
        3 => {
            if let Some(Object::EndpointSlice(mut s)) = pick(Kind::EndpointSlice, next) {
                if let Some(eps) = s.endpoints.as_mut().filter(|e| !e.is_empty()) {
                    let i = b % eps.len();
                    if b % 2 == 0 {
                        eps.remove(i);
                    } else if let Some(c) = eps[i].conditions.as_mut() {
                        c.ready = Some(!c.ready.unwrap_or(true));
                    }
                }
                next.apply(Event::Apply(Object::EndpointSlice(s)));
            }
        }
        // A Service goes, or a slice does.
        4 => {
            let kind = if b % 2 == 0 {
                Kind::Service
            } else {
                Kind::EndpointSlice
            };
            if let Some(o) = pick(kind, next) {
                next.apply(Event::Delete(o.key()));
            }
        }
        // A namespace's labels.
        5 => {
            if let Some(mut o) = pick(Kind::Namespace, next) {
                let l = o.meta_mut().labels.get_or_insert_with(Default::default);
                l.insert("team".into(), format!("team{}", b % 3));
                next.apply(Event::Apply(o));
            }
        }
        // A policy goes, or comes back from the pool.
        6 | 7 => {
            let o = &pool[a % pool.len()];
            if b % 2 == 0 {
                next.apply(Event::Delete(o.key()));
            } else {
                next.apply(Event::Apply(o.clone()));
            }
        }
        // A Service comes back (from the original objects).
        _ => {
            let orig = store(SMALL, &config());
            let v: Vec<&Object> = orig.of_kind(Kind::Service).collect();
            next.apply(Event::Apply(v[a % v.len()].clone()));
        }
    }
}

fn full(st: &Store, node: &str) -> RuleSet {
    let cfg = config();
    let ports = offline_ports(&base(), node);
    compile(NodeView {
        store: st,
        config: &cfg,
        node,
        ports: &ports,
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn incremental_equals_full(
        node in 0..SMALL.nodes,
        steps in prop::collection::vec(
            prop::collection::vec((0u8..9, 0usize..1000, 0usize..1000), 1..4),
            1..8,
        ),
    ) {
        let cfg = config();
        let node = format!("node{node}");
        let mut st = base();
        // The ports stay those of the first store: a changed port map is
        // a context change (a full compile), tested apart.
        let ports = offline_ports(&st, &node);
        let pool: Vec<Object> = st
            .iter()
            .filter(|o| {
                matches!(
                    o.kind(),
                    Kind::NetworkPolicy | Kind::AdminNetworkPolicy | Kind::BaselineAdminNetworkPolicy
                )
            })
            .cloned()
            .collect();
        let mut inc = Incremental::default();
        macro_rules! view {
            ($st:expr) => {
                NodeView { store: $st, config: &cfg, node: &node, ports: &ports }
            };
        }
        let up = inc.update(view!(&st), &[]).unwrap();
        prop_assert!(up.full);
        prop_assert_eq!(inc.rules(), &full(&st, &node));
        for batch in steps {
            let before = inc.rules().clone();
            let mut next = st.clone();
            for (op, a, b) in batch {
                change(&mut next, &pool, op, a, b);
            }
            alloc::reconcile(&mut next, &cfg);
            let events = st.replace(next.iter().cloned().collect());
            let up = inc.update(view!(&st), &events).unwrap();
            prop_assert!(!up.full);
            let want = full(&st, &node);
            prop_assert_eq!(inc.rules(), &want);
            let (fast, slow) = (up.plan(), plan_between(&before, &want));
            prop_assert_eq!(fast, slow);
        }
    }
}

/// A label change on the shape touches the policy fragment and the
/// Services of one namespace only, and an endpoint change one Service.
#[test]
fn partial_updates_stay_partial() {
    let cfg = config();
    let mut st = base();
    let node = "node0";
    let ports = offline_ports(&st, node);
    macro_rules! view {
        ($st:expr) => {
            NodeView {
                store: $st,
                config: &cfg,
                node,
                ports: &ports,
            }
        };
    }
    let mut inc = Incremental::default();
    inc.update(view!(&st), &[]).unwrap();
    let mut o = st
        .get(&agent::object::ObjectKey::new(Kind::Pod, "ns1", "pod0"))
        .unwrap()
        .clone();
    o.meta_mut()
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "db".into());
    let all = st
        .iter()
        .map(|x| {
            if x.key() == o.key() {
                o.clone()
            } else {
                x.clone()
            }
        })
        .collect();
    let events = st.replace(all);
    assert_eq!(events.len(), 1);
    let up = inc.update(view!(&st), &events).unwrap();
    assert!(!up.full);
    assert_eq!(inc.counts, (1, 1));
    assert_eq!(inc.rules(), &full(&st, node));
}
