//! A real container runtime: containerd (Debian's, started with its own
//! root, state and socket and stopped by PID) runs busybox containers with
//! `ctr run --cni` through oxvs-cni and a real oxvsd. The scripts do the
//! work and the checks; these tests run their short versions:
//!
//! - `scripts/cni-churn`, one node: two long-lived containers ping each
//!   other and pass TCP, a churn of containers comes and goes while they
//!   ping without loss, `ctr` runs DEL, and afterwards no veth, port,
//!   address, cached result, task or container is left;
//! - `scripts/cni-two-nodes`: a containerd and an oxvsd on each of two
//!   nodes joined by Geneve, containers on both ping and pass TCP across
//!   the overlay (and on one node), and nothing is left after DEL.
//!
//! The scripts remove everything they added (namespaces, CNI
//! configuration, /var/lib/cni state) even when a check fails. Root only,
//! and skipped (saying why) without containerd; run them under
//! `flock /tmp/oxvs-lab.lock`.

mod common;

use common::{root_or_skip, workspace_binary};
use std::path::Path;
use std::process::Command;

/// Whether the runtime's tools are here; says why not on stderr.
fn runtime_or_skip() -> bool {
    if !root_or_skip() {
        return false;
    }
    for tool in ["containerd", "ctr", "runc", "busybox", "nsenter", "unshare"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("skipped: needs {tool} (apt-get install containerd runc busybox-static)");
            return false;
        }
    }
    true
}

/// One script at a time: each runs a switch, containerd and containers on
/// the two shared cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `scripts/NAME ARGS` with the binaries of this build; its stdout,
/// after checking that it succeeded and printed each of `lines`.
fn script(name: &str, args: &[&str], lines: &[&str]) -> String {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(repo.join("scripts").join(name))
        .args(args)
        .env("OXVSD", workspace_binary("datapath", "oxvsd"))
        .env("OXVS_CTL", workspace_binary("ctl", "oxvs-ctl"))
        .env("OXVS_CNI", env!("CARGO_BIN_EXE_oxvs-cni"))
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    for line in lines {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    eprintln!("{stdout}");
    stdout
}

#[test]
fn containerd_runs_containers_through_oxvs_cni() {
    if !runtime_or_skip() {
        return;
    }
    script(
        "cni-churn",
        &["--containers", "12", "--parallel", "3"],
        &[
            "ping both ways and 1 MB over TCP between l1 and l2: ok",
            "12 containers in",
            "nothing left",
        ],
    );
}

#[test]
fn containers_on_two_nodes_talk_through_geneve() {
    if !runtime_or_skip() {
        return;
    }
    script(
        "cni-two-nodes",
        &[],
        &[
            "ping a1 <-> a2 across the Geneve overlay, a1 <-> a3 on node 1: ok",
            "1 MB over TCP a1 <- a2 across the overlay and a1 <- a3 on node 1: ok",
            "nothing left",
        ],
    );
}
