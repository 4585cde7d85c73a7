//! Golden rule sets: the small cluster compiled for each node, and the
//! `get` tables, compared with the committed files in tests/golden/.
//! `OXVS_BLESS=1 cargo test -p agent --test golden` rewrites them; the diff
//! is then reviewed like code.

mod common;

use agent::app::offline_ports;
use agent::compile::{compile, NodeView};
use agent::show;
use std::path::Path;

fn check(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("OXVS_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (OXVS_BLESS=1 writes it)", path.display()));
    if want != got {
        let first = want.lines().zip(got.lines()).position(|(a, b)| a != b);
        panic!(
            "{name} differs from the golden file (first different line {:?}; OXVS_BLESS=1 rewrites it)\n--- want\n{}\n--- got\n{}",
            first.map(|i| i + 1),
            first.and_then(|i| want.lines().nth(i)).unwrap_or("<end>"),
            first.and_then(|i| got.lines().nth(i)).unwrap_or("<end>"),
        );
    }
}

#[test]
fn node_rule_sets() {
    let c = common::small();
    for node in ["node1", "node2"] {
        let ports = offline_ports(&c.store, node);
        let rules = compile(NodeView {
            store: &c.store,
            config: &c.config,
            node,
            ports: &ports,
        })
        .unwrap();
        check(&format!("{node}.flows"), &rules.text());
    }
}

#[test]
fn get_tables() {
    let c = common::small();
    let mut out = String::new();
    for wide in [false, true] {
        out += &show::namespaces(&c.store, wide);
        out += &show::pods(&c.store, wide);
        out += &show::services(&c.store, wide);
    }
    check("get.txt", &out);
}

#[test]
fn compiling_is_deterministic() {
    let a = common::small();
    let b = common::small();
    let ports = offline_ports(&a.store, "node1");
    let ra = compile(NodeView {
        store: &a.store,
        config: &a.config,
        node: "node1",
        ports: &ports,
    })
    .unwrap();
    let rb = compile(NodeView {
        store: &b.store,
        config: &b.config,
        node: "node1",
        ports: &ports,
    })
    .unwrap();
    assert_eq!(ra.text(), rb.text());
}
