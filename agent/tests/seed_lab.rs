//! The seed's walkthrough as a lab test: `scripts/demo --seed` (three lab
//! nodes running oxvsd, oxvs-agent's node roles and controller, oxvs-cni
//! called by scripts/oxvs-kubelet; the guestbook, the LoadBalancer, the
//! namespaces deleted, then the label firewall and a NetworkPolicy) must exit
//! 0 with every step verified and none failed. It builds the release binaries it runs (cargo, as the demo
//! does) and needs root for network namespaces: without root it is skipped,
//! saying so. The demo cleans its lab up whether it passes or fails.

mod common;

use common::is_root;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn seed_walkthrough_verifies_every_step() {
    if !is_root() {
        eprintln!(
            "skipped seed_walkthrough_verifies_every_step: scripts/demo --seed needs root \
             (network namespaces and oxvsd's AF_XDP ports)"
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/demo"))
        .arg("--seed")
        .current_dir(&root)
        .output()
        .expect("run scripts/demo --seed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("--> FAILED"))
        .collect();
    let verified = stdout
        .lines()
        .filter(|l| l.starts_with("--> verified:"))
        .count();
    assert!(
        out.status.success() && failed.is_empty(),
        "scripts/demo --seed: {}; failed steps: {failed:#?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("demo-seed: every step verified") && verified >= 20,
        "only {verified} steps verified:\n{stdout}"
    );
    for step in [
        "have distinct /24s of the pod block",
        "reaches all 3 of its pods",
        "UDP through the frontend ClusterIP answers",
        "is answered by another frontend once",
        "EXTERNAL-IP is <pending>",
        "got an external IP from the pool",
        "SNAT: the pods saw a node IP",
        "no pod port on any node's switch",
        "no rule of a namespace, pod or Service left",
        "saved allocations hold no address",
        "the second frontend labelled: frontend-0 -> frontend-1 stops",
        "frontend -> backend keeps answering",
        "answers again",
        "toolbox -> redis master still blocked",
        "policy rules gone too",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("--> verified:") && l.contains(step)),
            "no verified step {step:?}:\n{stdout}"
        );
    }
}
