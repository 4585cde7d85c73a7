//! The policy truth tables with real traffic: `scripts/netpol-lab` brings
//! up two lab nodes (oxvsd, oxvs-agent's node roles and controller,
//! oxvs-cni called by scripts/oxvs-kubelet), applies each step of a sample
//! of tests/fixtures/netpol (e2e, Cyclonus and network-policy-api cases:
//! ingress, egress, namespace selectors, ipBlock with except, named ports,
//! endPort, several policies, label changes, ANP Deny and Pass, BANP) with
//! `oxvs-agent apply -f`, waits until every switch's policy tables are the
//! compiled ones, and probes every TCP and UDP cell of the step's matrix
//! with real connections between the pods. Every observed verdict must
//! equal both the fixture's and `oxvs-agent trace --probes`'s; the script
//! prints each cell where they differ (case, step, protocol and port, the
//! pair, the three verdicts) and exits non-zero. It builds the release
//! binaries it runs and needs root: without root it is skipped, saying so.
//! The lab is taken down whether it passes or fails.

mod common;

use common::is_root;
use std::path::PathBuf;
use std::process::Command;

/// The numbers of the summary line `netpol-lab: N cases, N steps, N probes
/// with real traffic, N mismatches, N s`.
fn summary(stdout: &str) -> Option<[u64; 4]> {
    let line = stdout.lines().find(|l| l.starts_with("netpol-lab: "))?;
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect();
    Some([*n.first()?, *n.get(1)?, *n.get(2)?, *n.get(3)?])
}

#[test]
fn sampled_truth_tables_hold_with_real_traffic() {
    if !is_root() {
        eprintln!(
            "skipped sampled_truth_tables_hold_with_real_traffic: scripts/netpol-lab needs root \
             (network namespaces and oxvsd's AF_XDP ports)"
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/netpol-lab"))
        .current_dir(&root)
        .output()
        .expect("run scripts/netpol-lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mismatches: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("MISMATCH "))
        .collect();
    assert!(
        out.status.success() && mismatches.is_empty(),
        "scripts/netpol-lab: {}; {} mismatches:\n{}\n\n{stdout}\n{stderr}",
        out.status,
        mismatches.len(),
        mismatches.join("\n")
    );
    let [cases, steps, probes, bad] =
        summary(&stdout).unwrap_or_else(|| panic!("no summary line:\n{stdout}\n{stderr}"));
    assert_eq!(bad, 0, "{stdout}");
    // The whole sample ran: 17 cases, 29 steps, every TCP and UDP cell but
    // the diagonal.
    assert!(
        cases >= 17 && steps >= 29 && probes >= 7_000,
        "only {cases} cases, {steps} steps, {probes} probes:\n{stdout}"
    );
    // The per-step lines and the figures, for `--nocapture`.
    eprintln!("{stdout}");
}
