//! What the namespace tests share: root detection, command helpers, and
//! [`Lab`], a lab of network namespaces (scripts/oxvs-lab) with oxvsd
//! instances in its nodes. Dropping a `Lab` kills its switches and takes the
//! lab down, so a failed assertion leaves nothing behind.
//!
//! The helpers are split by concern: the lab's namespaces and the traffic
//! between them (`lab.rs`), oxvsd in a lab node (`switch.rs`), processes
//! started in a namespace (`spawn.rs`) and Open vSwitch as a peer
//! (`ovs.rs`); everything is re-exported here, so tests name it
//! `common::...` wherever it lives.

#![allow(dead_code)] // Each test file uses a different part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

mod lab;
mod ovs;
mod spawn;
mod switch;

// As with dead code, a test binary that uses none of a file's items would
// find its re-export unused.
#[allow(unused_imports)]
pub use lab::{set_mtu, Stream};
#[allow(unused_imports)]
pub use ovs::{find_tool, first_allowed_cpu, ovs_installed, Ovs, OVS_SCHEMA, OVS_TOOLS};
#[allow(unused_imports)]
pub use spawn::Spawned;
#[allow(unused_imports)]
pub use switch::ctl_binary;

/// One lab at a time: each runs busy-polling switches, and two cores are
/// shared by the switches, the pods and the test itself.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

pub use datapath::afxdp::sys::is_root;

/// The prologue of every namespace test: without root, says on stderr that
/// the test (named by its thread, as the test harness names it) is skipped
/// and why, and returns `None` so that the test returns and passes; as
/// root, returns the [`serial`] guard to hold for the rest of the test.
/// Written `let Some(_serial) = root_serial() else { return };`.
pub fn root_serial() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !is_root() {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("test");
        eprintln!("skipped {test}: needs root for network namespaces");
        return None;
    }
    Some(serial())
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn run(cmd: &[&str]) -> std::process::Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub fn ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks that tshark dissects every frame of the capture `pcap` without a
/// malformed packet, an error-level expert note or a bad IP/UDP checksum.
pub fn assert_clean_dissection(pcap: &str) {
    let verbose = ok(&[
        "tshark",
        "-r",
        pcap,
        "-V",
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ]);
    for bad in ["Malformed", "Expert Info (Error", "[incorrect"] {
        assert!(!verbose.contains(bad), "tshark reports {bad:?}:\n{verbose}");
    }
}

/// A lab and the switches running in it; dropping it stops both.
pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    switches: BTreeMap<String, Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.switches) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let script = repo().join("scripts/oxvs-lab");
        let _ = Command::new(script)
            .args(["down", "--name", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
