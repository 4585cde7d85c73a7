//! The policy truth tables (tests/fixtures/netpol: the upstream e2e suite,
//! Cyclonus and network-policy-api conformance, 200 cases): every step's
//! manifests compiled once, every cell of every matrix (all pods × all pods
//! × every probed protocol and port) and every single upstream and
//! hand-derived probe sent through the compiled rules with the switch's
//! classifier (`agent::trace`, egress at the source node, ingress at the
//! destination node; pods spread over two nodes so both the same-node and
//! the Geneve path are judged). Zero mismatches are required.

use agent::trace::{Lab, Probe};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/netpol")
}

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.join("expect.json").is_file() {
            out.push(p);
        } else if p.is_dir() {
            cases(&p, out);
        }
    }
}

#[test]
fn truth_tables() {
    let mut all = Vec::new();
    cases(&root(), &mut all);
    let filter = std::env::var("NETPOL_CASE").unwrap_or_default();
    let (mut n_cases, mut n_steps, mut cells, mut singles) = (0, 0, 0usize, 0usize);
    let mut bad: Vec<String> = Vec::new();
    let (mut t_compile, mut t_trace) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for case in &all {
        let name = case.strip_prefix(root()).unwrap().display().to_string();
        if !name.contains(&filter) {
            continue;
        }
        n_cases += 1;
        let exp: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expect.json")).unwrap())
                .unwrap();
        for step in exp["steps"].as_array().unwrap() {
            n_steps += 1;
            let manifests = case.join(step["manifests"].as_str().unwrap());
            let t0 = std::time::Instant::now();
            let lab = Lab::load(None, manifests.parent().unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            t_compile += t0.elapsed();
            let t1 = std::time::Instant::now();
            let pods: Vec<&str> = step["pods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            let sname = step["name"].as_str().unwrap_or("");
            let mut check = |from: &str, to: &str, proto: &str, port: u16, want: bool| {
                let p = Probe {
                    from: from.into(),
                    to: to.into(),
                    proto: proto.into(),
                    port,
                };
                let a = lab.trace(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
                if a.allowed() != want {
                    bad.push(format!(
                        "{name} | {sname} | {proto}/{port} {from} -> {to}: want {}, got {} (egress {:?} {:?}; ingress {:?} {:?}; {})",
                        if want { "allow" } else { "deny" },
                        a.verdict,
                        a.egress.policy, a.egress.reason,
                        a.ingress.policy, a.ingress.reason,
                        a.outcome
                    ));
                }
            };
            for pr in step["probes"].as_array().unwrap() {
                let proto = pr["protocol"].as_str().unwrap();
                let port = pr["port"].as_u64().unwrap() as u16;
                for (i, row) in pr["matrix"].as_array().unwrap().iter().enumerate() {
                    for (j, c) in row.as_str().unwrap().chars().enumerate() {
                        cells += 1;
                        check(pods[i], pods[j], proto, port, c == '1');
                    }
                }
            }
            for key in ["upstream_probes", "spot_probes"] {
                for up in step[key].as_array().into_iter().flatten() {
                    singles += 1;
                    check(
                        up["from"].as_str().unwrap(),
                        up["to"].as_str().unwrap(),
                        up["protocol"].as_str().unwrap(),
                        up["port"].as_u64().unwrap() as u16,
                        up["expect"].as_bool().unwrap(),
                    );
                }
            }
            t_trace += t1.elapsed();
        }
    }
    for b in bad.iter().take(60) {
        eprintln!("MISMATCH {b}");
    }
    eprintln!(
        "netpol truth tables: {n_cases} cases, {n_steps} steps, {cells} matrix cells + {singles} single probes, {} mismatches",
        bad.len()
    );
    eprintln!("  load+compile {t_compile:?}, traces {t_trace:?}");
    assert!(n_cases > 0, "no case matched NETPOL_CASE={filter:?}");
    assert!(bad.is_empty(), "{} mismatches", bad.len());
}
