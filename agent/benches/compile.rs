//! Full compile of one node's rules for the issue's synthetic cluster
//! (100 nodes, 10 000 pods, 2 000 Services, 20 000 endpoints), and the
//! figures BENCHMARKS.md quotes: rules per node against what kube-proxy's
//! iptables mode would write for the same cluster, and memory (peak RSS).
//!
//! `cargo bench -p agent --bench compile`

use agent::app::offline_ports;
use agent::compile::{compile, NodeView};
use agent::cookie::{category, Category};
use agent::synth::{config, store, Shape};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Instant;

/// Peak and current resident set size from /proc (Linux), in MiB.
fn rss() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

fn figures(c: &mut Criterion) {
    let cfg = config();
    let (_, rss0) = rss();
    let t = Instant::now();
    let st = store(Shape::ISSUE, &cfg);
    let build = t.elapsed();
    let (_, rss1) = rss();
    let ports = offline_ports(&st, "node0");
    let t = Instant::now();
    let rules = compile(NodeView {
        store: &st,
        config: &cfg,
        node: "node0",
        ports: &ports,
    })
    .unwrap();
    let once = t.elapsed();
    let text = rules.text();
    let (hwm, rss2) = rss();
    let svc_flows = rules
        .flows()
        .filter(|f| {
            let k = category(f.cookie);
            k == Category::Service as u16 || k == Category::Endpoint as u16
        })
        .count();
    let ipt = agent::iptables::count(&st, "node0");
    eprintln!(
        "synthetic cluster: {} objects, built and allocated in {:.2?} (RSS {rss0:.0} -> {rss1:.0} MiB)\n\
         node0: {} flows ({} for Services and endpoints), {} groups, {} bytes of flow text; \
         first compile {once:.2?}; RSS after {rss2:.0} MiB, peak {hwm:.0} MiB\n\
         kube-proxy iptables on node0 for the same Services: {} rules in {} service/endpoint chains",
        st.len(),
        build,
        rules.flow_count(),
        svc_flows,
        rules.group_count(),
        text.len(),
        ipt.rules,
        ipt.chains,
    );
    let mut g = c.benchmark_group("agent");
    g.sample_size(10);
    g.bench_function(
        "compile node0 (100 nodes, 10k pods, 2k services, 20k endpoints)",
        |b| {
            b.iter(|| {
                compile(NodeView {
                    store: &st,
                    config: &cfg,
                    node: "node0",
                    ports: &ports,
                })
                .unwrap()
            })
        },
    );
    g.bench_function("compile + text node0", |b| {
        b.iter(|| {
            compile(NodeView {
                store: &st,
                config: &cfg,
                node: "node0",
                ports: &ports,
            })
            .unwrap()
            .text()
        })
    });
    g.finish();
}

criterion_group!(benches, figures);
criterion_main!(benches);
