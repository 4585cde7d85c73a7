//! A real container runtime: containerd (Debian's, started with its own
//! root, state and socket and stopped by PID) runs busybox containers with
//! `ctr run --cni` through oxvs-cni and a real oxvsd. This is the short
//! version of `scripts/cni-churn`, which does the work and the checks: two
//! long-lived containers ping each other and pass TCP, a churn of
//! containers comes and goes while they ping without loss, `ctr` runs DEL,
//! and afterwards no veth, port, address, cached result, task or container
//! is left. The script removes everything it added (namespaces, the
//! conflist in /etc/cni/net.d, /opt/cni/bin/oxvs, /var/lib/cni state) even
//! when a check fails. Root only, and skipped (saying why) without
//! containerd; run it under `flock /tmp/oxvs-lab.lock`.

mod common;

use common::{root_or_skip, workspace_binary};
use std::path::Path;
use std::process::Command;

#[test]
fn containerd_runs_containers_through_oxvs_cni() {
    if !root_or_skip() {
        return;
    }
    for tool in ["containerd", "ctr", "runc", "busybox", "nsenter"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("skipped: needs {tool} (apt-get install containerd runc busybox-static)");
            return;
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(repo.join("scripts/cni-churn"))
        .args(["--containers", "12", "--parallel", "3"])
        .env("OXVSD", workspace_binary("datapath", "oxvsd"))
        .env("OXVS_CTL", workspace_binary("ctl", "oxvs-ctl"))
        .env("OXVS_CNI", env!("CARGO_BIN_EXE_oxvs-cni"))
        .output()
        .expect("run scripts/cni-churn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cni-churn failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "ping both ways and 1 MB over TCP between l1 and l2: ok",
        "12 containers in",
        "nothing left",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    eprintln!("{stdout}");
}
