//! Policy figures for BENCHMARKS.md: the issue's synthetic cluster (100
//! nodes, 10 000 pods, 2 000 Services) with 1 000 policies of mixed
//! selectors (`agent::policy::synth`: 990 NetworkPolicies of eight shapes,
//! 9 AdminNetworkPolicies, the BaselineAdminNetworkPolicy).
//!
//! Printed once: rules per node with and without the policies, the
//! conjunction memberships, a label change's compile + diff time (what
//! `oxvs-agent run` does per change). Measured by criterion: the full
//! compile of node0, and the per-packet cost of the classifier walk (every
//! pass of `flowtable::translate`, the upcall path) for a new pod-to-pod
//! connection through node0's rules with and without the policies.
//!
//! `cargo bench -p agent --bench policy`

use agent::app::offline_ports;
use agent::compile::incremental::Incremental;
use agent::compile::{compile, compile_explained, node_ips, NodeView};
use agent::object::Object;
use agent::object::{Kind, ObjectKey};
use agent::rules::RuleSet;
use agent::sim::{Outcome, Sim};
use agent::store::{Event, Store};
use agent::sync::{plan, plan_between, Installed};
use agent::synth::{config, store, Shape};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

const NODE: &str = "node0";

fn policy_flows(r: &RuleSet) -> usize {
    r.flows().filter(|f| (50..=62).contains(&f.table)).count()
}

/// `rules` as oxvsd's `dump-flows` would print them.
fn dump(r: &RuleSet) -> String {
    let mut s = String::new();
    for f in r.flows() {
        let sep = if f.m.is_empty() { "" } else { "," };
        s += &format!(
            " cookie={:#x}, duration=1s, table={}, n_packets=0, n_bytes=0, idle_age=1, priority={}{sep}{} actions={}\n",
            f.cookie, f.table, f.priority, f.m, f.actions
        );
    }
    s
}

fn nv<'a>(
    store: &'a Store,
    config: &'a agent::config::Config,
    ports: &'a agent::compile::PortMap,
) -> NodeView<'a> {
    NodeView {
        store,
        config,
        node: NODE,
        ports,
    }
}

fn pod_ip(st: &Store, ns: &str, name: &str) -> std::net::Ipv4Addr {
    agent::alloc::pod_ip(st.pod(ns, name).expect("pod")).expect("address")
}

fn packet(st: &Store, ports: &agent::compile::PortMap, dst: (&str, &str), dport: u16) -> String {
    let src = pod_ip(st, "ns0", "pod0");
    let of = ports[&("ns0".to_string(), "pod0".to_string())].ofport;
    format!(
        "in_port={of},tcp,dl_src={},dl_dst=0a:58:0a:00:00:01,nw_src={src},nw_dst={},tp_src=40000,tp_dst={dport},nw_ttl=64",
        agent::net::mac_for(src),
        pod_ip(st, dst.0, dst.1)
    )
}

fn figures(c: &mut Criterion) {
    let cfg = config();
    let plain = store(Shape::ISSUE, &cfg);
    let mut heavy = plain.clone();
    let t = Instant::now();
    agent::policy::synth::add(&mut heavy, 1000);
    let made = t.elapsed();
    let ports = offline_ports(&plain, NODE);
    let view = |st| NodeView {
        store: st,
        config: &cfg,
        node: NODE,
        ports: &ports,
    };
    let t = Instant::now();
    let r0 = compile(view(&plain)).unwrap();
    let t_plain = t.elapsed();
    let t = Instant::now();
    let (r1, ex) = compile_explained(view(&heavy)).unwrap();
    let t_heavy = t.elapsed();
    let n_np = heavy.network_policies().count();
    let n_anp = heavy.admin_network_policies().count();
    let clause = r1
        .flows()
        .filter(|f| {
            agent::cookie::category(f.cookie) == agent::cookie::Category::PolicyClause as u16
        })
        .count();
    eprintln!(
        "policies: {n_np} NetworkPolicies, {n_anp} AdminNetworkPolicies, 1 baseline (made in {made:.2?})\n\
         node0 ({} local pods of {}): {} flows without policies (compile {t_plain:.2?}), {} with (compile {t_heavy:.2?})\n\
         policy tables 50-62: {} flows ({} clause flows carrying {} conjunction actions, {} conjunctions)",
        ports.len(),
        heavy.pods().count(),
        r0.flow_count(),
        r1.flow_count(),
        policy_flows(&r1),
        clause,
        ex.conj_actions,
        ex.conj.len(),
    );
    // Rules per node on every node, and the spread.
    let mut per_node: Vec<usize> = Vec::new();
    for n in node_ips(&heavy, &cfg).keys().take(10) {
        let p = offline_ports(&heavy, n);
        let r = compile(NodeView {
            store: &heavy,
            config: &cfg,
            node: n,
            ports: &p,
        })
        .unwrap();
        per_node.push(policy_flows(&r));
    }
    eprintln!("policy flows on the first 10 nodes: {per_node:?}");

    // A label change, as `run` handles it: recompile, compare with what
    // the switch has (its dump parsed), the difference.
    let installed = Installed::parse(&dump(&r1), "", "").unwrap();
    let mut times = Vec::new();
    let mut last = (0, 0);
    for round in 0..7 {
        let mut st = heavy.clone();
        let key = ObjectKey::new(Kind::Pod, "ns2", "pod0"); // on node0
        let mut o = st.get(&key).unwrap().clone();
        let tier = ["db", "api", "web"][round % 3];
        o.meta_mut()
            .labels
            .get_or_insert_with(Default::default)
            .insert("tier".into(), tier.into());
        st.apply(Event::Apply(o));
        let t = Instant::now();
        let r = compile(NodeView {
            store: &st,
            config: &cfg,
            node: NODE,
            ports: &ports,
        })
        .unwrap();
        let p = plan(&r, &installed).unwrap();
        times.push(t.elapsed());
        last = (p.added, p.removed);
    }
    times.sort();
    let t = Instant::now();
    let _ = Installed::parse(&dump(&r1), "", "").unwrap();
    let t_parse = t.elapsed();
    eprintln!(
        "label change on a node0 pod: compile + diff p50 {:.2?}, max {:.2?} (7 rounds; last diff +{} -{} flows); \
         parsing the switch's dump of {} flows {t_parse:.2?}",
        times[times.len() / 2],
        times[times.len() - 1],
        last.0,
        last.1,
        r1.flow_count()
    );

    // The same change through each step of the new path, on one store
    // that keeps changing (as a running agent's does):
    // (a) full compile + in-memory diff against the last applied set;
    // (c) the incremental compiler, whose changed keys are the diff.
    let label_key = ObjectKey::new(Kind::Pod, "ns2", "pod0");
    let relabel = |st: &mut Store, round: usize| -> Vec<Event> {
        let mut o = st.get(&label_key).unwrap().clone();
        o.meta_mut()
            .labels
            .get_or_insert_with(Default::default)
            .insert("tier".into(), ["db", "api", "web"][round % 3].into());
        let ev = Event::Apply(o);
        st.apply(ev.clone());
        vec![ev]
    };
    let mut st = heavy.clone();
    let mut last = r1.clone();
    let mut t_a = Vec::new();
    for round in 0..15 {
        relabel(&mut st, round);
        let t = Instant::now();
        let r = compile(nv(&st, &cfg, &ports)).unwrap();
        let p = plan_between(&last, &r);
        t_a.push(t.elapsed());
        std::hint::black_box(p);
        last = r;
    }
    let mut inc = Incremental::default();
    let t = Instant::now();
    inc.update(nv(&st, &cfg, &ports), &[]).unwrap();
    let t_first = t.elapsed();
    let mut t_c = Vec::new();
    let mut size = (0, 0);
    for round in 0..201 {
        let events = relabel(&mut st, round);
        let t = Instant::now();
        let up = inc.update(nv(&st, &cfg, &ports), &events).unwrap();
        let p = up.plan();
        t_c.push(t.elapsed());
        size = (p.added, p.removed);
    }
    assert_eq!(inc.rules(), &compile(nv(&st, &cfg, &ports)).unwrap());
    // One endpoint of ns0/svc3 going not-ready and back.
    let slice = ObjectKey::new(Kind::EndpointSlice, "ns0", "svc3-1");
    let mut t_e = Vec::new();
    let mut esize = (0, 0);
    for round in 0..201 {
        let Some(Object::EndpointSlice(mut s)) = st.get(&slice).cloned() else {
            panic!("no slice")
        };
        let e = &mut s.endpoints.as_mut().unwrap()[0];
        e.conditions.get_or_insert_with(Default::default).ready = Some(round % 2 == 1);
        let ev = Event::Apply(Object::EndpointSlice(s));
        st.apply(ev.clone());
        let t = Instant::now();
        let up = inc.update(nv(&st, &cfg, &ports), &[ev]).unwrap();
        let p = up.plan();
        t_e.push(t.elapsed());
        esize = (p.added, p.removed);
    }
    assert_eq!(inc.rules(), &compile(nv(&st, &cfg, &ports)).unwrap());
    let pct = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    eprintln!(
        "label change, (a) full compile + in-memory diff: p50 {:.2?}, p99/max {:.2?} (15 rounds)\n\
         label change, (c) incremental compile, diff from the changed keys: p50 {:.2?}, p99 {:.2?} (201 rounds; +{} -{} flows; first, full update {t_first:.2?})\n\
         endpoint ready/not ready, (c): p50 {:.2?}, p99 {:.2?} (201 rounds; +{} -{} flows)",
        pct(&mut t_a, 0.5),
        pct(&mut t_a, 1.0),
        pct(&mut t_c, 0.5),
        pct(&mut t_c, 0.99),
        size.0,
        size.1,
        pct(&mut t_e, 0.5),
        pct(&mut t_e, 0.99),
        esize.0,
        esize.1,
    );

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("compile node0 (10k pods, 2k services, 1k policies)", |b| {
        b.iter(|| compile(view(&heavy)).unwrap())
    });
    let mut round = 0;
    g.bench_function("label change: incremental compile + diff", |b| {
        b.iter(|| {
            round += 1;
            let events = relabel(&mut st, round);
            inc.update(nv(&st, &cfg, &ports), &events).unwrap().plan()
        })
    });
    g.finish();

    let node_ip = node_ips(&plain, &cfg)[NODE];
    let mut s0 = Sim::new(&r0, &cfg, &ports, node_ip).unwrap();
    let mut s1 = Sim::new(&r1, &cfg, &ports, node_ip).unwrap();
    // ns0/pod0 (tier web) to ns2/pod2 (tier api) on 8080: allowed; its
    // egress and ingress clauses are consulted on node0 and node2.
    let allowed =
        ctl::ofp::parse_packet(&packet(&heavy, &ports, ("ns2", "pod2"), 8080), &()).unwrap();
    let o0 = s0.send(&allowed);
    let o1 = s1.send(&allowed);
    assert!(matches!(o0, Outcome::Tunnel { .. }), "{o0:?}");
    assert!(matches!(o1, Outcome::Tunnel { .. }), "{o1:?}");
    // To ns1/pod0 (local, a np0 default-deny namespace... ) on 9999.
    let local =
        ctl::ofp::parse_packet(&packet(&heavy, &ports, ("ns1", "pod0"), 9999), &()).unwrap();
    eprintln!(
        "ns0/pod0 -> ns1/pod0 tcp/9999: plain {:?}, with policies {:?}",
        s0.send(&local),
        s1.send(&local)
    );
    let mut g = c.benchmark_group("packet");
    g.bench_function("new pod-to-pod connection, empty policy tables", |b| {
        b.iter(|| s0.send(&allowed))
    });
    g.bench_function("new pod-to-pod connection, 1k policies", |b| {
        b.iter(|| s1.send(&allowed))
    });
    g.bench_function("new local connection, empty policy tables", |b| {
        b.iter(|| s0.send(&local))
    });
    g.bench_function("new local connection, 1k policies", |b| {
        b.iter(|| s1.send(&local))
    });
    g.finish();
}

criterion_group!(benches, figures);
criterion_main!(benches);
