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
use agent::compile::{compile, compile_explained, node_ips, NodeView};
use agent::object::{Kind, ObjectKey};
use agent::rules::RuleSet;
use agent::sim::{Outcome, Sim};
use agent::store::{Event, Store};
use agent::sync::{plan, Installed};
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

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("compile node0 (10k pods, 2k services, 1k policies)", |b| {
        b.iter(|| compile(view(&heavy)).unwrap())
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
