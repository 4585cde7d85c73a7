//! oxvsd in a lab node: starting it from a configuration and flows,
//! reading and waiting on its log, driving it with the real `oxvs-ctl`, and
//! stopping it. Kept apart from the namespace helpers because only the tests
//! of oxvsd itself need it; the switches it starts stay in the [`Lab`]'s
//! care, so dropping the lab still ends them.

use super::{ok, run, Lab};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

impl Lab {
    /// Starts oxvsd in node n1 with these flows and ports, and waits until
    /// it says every port is up.
    pub fn start_switch(&mut self, flows: &str, ports: &[(&str, u32)], kind: &str) {
        self.start_switch_with(flows, ports, kind, "", 1);
    }

    /// [`Lab::start_switch`] with more `[switch]` settings and `threads`
    /// poll threads, each of which logs every port up.
    pub fn start_switch_with(
        &mut self,
        flows: &str,
        ports: &[(&str, u32)],
        kind: &str,
        switch: &str,
        threads: usize,
    ) {
        let mut cfg = format!("[switch]\nflows = \"node.flows\"\nlog = \"info\"\n{switch}");
        for (name, no) in ports {
            cfg.push_str(&format!(
                "[[port]]\nname = \"{name}\"\nno = {no}\nkind = \"{kind}\"\n"
            ));
        }
        self.start_switch_on("n1", &cfg, flows, ports.len() * threads);
    }

    /// Starts oxvsd in `node` with this whole configuration (whose
    /// `[switch]` must say `flows = "node.flows"`) and flows, and waits
    /// until it has logged `ports_up` ports up.
    pub fn start_switch_on(&mut self, node: &str, toml: &str, flows: &str, ports_up: usize) {
        let d = self.dir.join(node);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("node.flows"), flows).unwrap();
        std::fs::write(d.join("node.toml"), toml).unwrap();
        let log = std::fs::File::create(d.join("oxvsd.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(node),
                env!("CARGO_BIN_EXE_oxvsd"),
                "--config",
            ])
            .arg(d.join("node.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start oxvsd");
        self.switches.insert(node.to_string(), child);
        self.wait_log_of(
            node,
            |l| l.matches("port up").count() >= ports_up,
            "every port up",
        );
    }

    /// Runs the real `oxvs-ctl` binary inside `node`'s namespace against
    /// the control socket `sock`.
    pub fn oxvs_ctl(&self, node: &str, sock: &Path, args: &[&str]) -> std::process::Output {
        let bin = ctl_binary();
        let ns = self.ns(node);
        let mut cmd = vec![
            "ip",
            "netns",
            "exec",
            &ns,
            bin.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ];
        cmd.extend_from_slice(args);
        run(&cmd)
    }

    /// n1's switch log.
    pub fn log(&self) -> String {
        self.log_of("n1")
    }

    pub fn log_of(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(node).join("oxvsd.log")).unwrap_or_default()
    }

    /// Waits (at most 10 s) until n1's log satisfies `done`.
    pub fn wait_log(&self, done: impl Fn(&str) -> bool, what: &str) {
        self.wait_log_of("n1", done, what)
    }

    pub fn wait_log_of(&self, node: &str, done: impl Fn(&str) -> bool, what: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if done(&self.log_of(node)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "oxvsd in {node} never logged {what}:\n{}",
            self.log_of(node)
        );
    }

    /// Whether an XDP program is attached to an interface of node n1.
    pub fn xdp_attached(&self, ifname: &str) -> bool {
        ok(&["ip", "-n", &self.ns("n1"), "-d", "link", "show", ifname]).contains("xdp")
    }

    /// Takes the switch of `node` out of the lab's care (the caller ends it).
    pub fn take_switch(&mut self, node: &str) -> Option<Child> {
        self.switches.remove(node)
    }

    /// SIGTERM to n1's switch, then its exit status within 5 s.
    pub fn stop_switch(&mut self) -> std::process::ExitStatus {
        self.stop_switch_on("n1")
    }

    pub fn stop_switch_on(&mut self, node: &str) -> std::process::ExitStatus {
        let mut child = self.switches.remove(node).expect("switch running");
        ok(&["kill", "-TERM", &child.id().to_string()]);
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "oxvsd in {node} did not stop on SIGTERM:\n{}",
                self.log_of(node)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `oxvs-ctl` binary cargo built beside the test.
pub fn ctl_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("oxvs-ctl");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p ctl)",
        bin.display()
    );
    bin
}
