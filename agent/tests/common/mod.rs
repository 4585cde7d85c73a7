//! Shared by the agent's integration tests: the small cluster fixture,
//! compiled for a node and loaded into the real classifier.

#![allow(dead_code)]

use agent::app::{offline_ports, Cluster};
use agent::compile::{compile, node_ips, NodeView, PortMap};
use agent::rules::RuleSet;
use agent::sim::Sim;
use std::path::{Path, PathBuf};

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small")
}

/// The small cluster, allocated, with no saved state.
pub fn small() -> Cluster {
    let dir = fixture();
    Cluster::load(
        &dir.join("cluster.toml"),
        &dir,
        Path::new("/nonexistent/state.json"),
    )
    .expect("fixture loads")
}

/// One node's rules, ports and simulator.
pub struct Node {
    pub rules: RuleSet,
    pub ports: PortMap,
    pub sim: Sim,
}

pub fn node(c: &Cluster, name: &str) -> Node {
    let ports = offline_ports(&c.store, name);
    let rules = compile(NodeView {
        store: &c.store,
        config: &c.config,
        node: name,
        ports: &ports,
    })
    .expect("compiles");
    let ip = node_ips(&c.store, &c.config)[name];
    let sim = Sim::new(&rules, &c.config, &ports, ip).expect("the switch's parser takes the rules");
    Node { rules, ports, sim }
}

/// Whether the tests run as root (the lab tests need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
