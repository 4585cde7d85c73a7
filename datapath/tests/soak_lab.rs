//! The short version of `scripts/soak`, in the default test run: under a
//! minute of the same churn (traffic across and within nodes, rule changes
//! through the control socket with replace-flows, a port deleted and
//! re-created, conntrack filled to its limit and flushed) and the same
//! asserts at the end (RSS after warm-up, per-port accounting, no stale
//! cache entry by `revalidate --check`, no leaked fd, thread, UMEM frame
//! or XDP program). The 30-minute figures in BENCHMARKS.md come from the
//! same script.
//!
//! The binaries are this workspace's debug builds, so the rates are lower
//! than the script's defaults (which are for release builds): what is
//! asserted is that nothing leaks and every packet is accounted for, not
//! how fast.

mod common;

use std::process::Command;

#[test]
fn a_short_soak_leaks_nothing_and_accounts_for_every_packet() {
    let Some(_serial) = common::root_serial() else {
        return;
    };
    for tool in ["iperf3", "bpftool"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the soak needs {tool} (Debian package {tool}; scripts/test installs it)"
        );
    }
    let repo = common::repo();
    // oxvsd comes with this test; oxvs-ctl and oxvs-pktgen live in other
    // packages of the workspace, built here (a no-op when up to date).
    let build = Command::new(env!("CARGO"))
        .current_dir(&repo)
        .args([
            "build",
            "--quiet",
            "-p",
            "ctl",
            "--bin",
            "oxvs-ctl",
            "-p",
            "oxvs-benches",
            "--bin",
            "oxvs-pktgen",
        ])
        .status()
        .expect("cargo build");
    assert!(build.success(), "building oxvs-ctl and oxvs-pktgen failed");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_oxvsd"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let json = std::env::temp_dir().join(format!("oxvs-soak-{}.json", std::process::id()));
    let out = Command::new(repo.join("scripts/soak"))
        .args([
            "--seconds",
            "50",
            "--bin",
            bin.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--changes-per-s",
            "300",
            "--pps",
            "5000",
            "--ct-max",
            "5000",
            "--ct-pps",
            "10000",
            "--replace-every",
            "15",
            "--port-every",
            "20",
            "--ct-every",
            "15",
            "--check-every",
            "20",
        ])
        .output()
        .expect("scripts/soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the soak failed:\n{stderr}\n--- figures ---\n{stdout}"
    );
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("soak figures"))
            .expect("soak figures are JSON");
    let _ = std::fs::remove_file(&json);
    // What the run must have exercised for its asserts to mean anything.
    assert!(
        figures["rules_n1"]["changes"].as_u64().unwrap_or(0) > 1000,
        "{figures}"
    );
    assert!(
        figures["rules_n1"]["replaces"].as_u64().unwrap_or(0) >= 2,
        "{figures}"
    );
    assert!(
        figures["port_churns"].as_u64().unwrap_or(0) >= 2,
        "{figures}"
    );
    assert!(
        figures["ct_fills"].as_array().is_some_and(|f| f.len() >= 2),
        "{figures}"
    );
    assert!(
        figures["traffic"]["rx-cross"]["packets"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{figures}"
    );
}
