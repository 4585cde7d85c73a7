//! Processes started in a lab namespace with `oxvs-lab spawn`, found again
//! by PID and start time, and ended by PID. Kept apart because both the
//! service tests' servers and the Open vSwitch daemons are such processes.

use super::{ok, repo, run, Lab};
use std::time::{Duration, Instant};

/// A process started in a lab namespace with `oxvs-lab spawn`: its PID and
/// the start time the script recorded, so that it is never confused with a
/// later process that reuses the PID. Dropping it does nothing; the lab's
/// `oxvs-lab down` stops whatever is still running.
pub struct Spawned {
    pub lab: String,
    pub name: String,
    pub pid: u32,
    start: String,
}

impl Lab {
    /// Starts `cmd` in the background in the lab namespace `ns` (`n2`,
    /// `n1-p1`), recorded as `name`, with its output in
    /// [`Spawned::log`]. Dropping the lab stops it if the test did not.
    pub fn spawn(&self, ns: &str, name: &str, cmd: &[&str]) -> Spawned {
        let script = repo().join("scripts/oxvs-lab");
        let mut args = vec![
            script.to_str().unwrap(),
            "spawn",
            "--name",
            &self.name,
            ns,
            name,
        ];
        args.extend_from_slice(cmd);
        let pid: u32 = ok(&args)
            .trim()
            .parse()
            .expect("oxvs-lab spawn prints a PID");
        let record = format!("/run/oxvs-lab/{}/{name}.id", self.name);
        let start = std::fs::read_to_string(&record)
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        Spawned {
            lab: self.name.clone(),
            name: name.to_string(),
            pid,
            start,
        }
    }
}

impl Spawned {
    /// What the process wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(format!("/run/oxvs-lab/{}/{}.log", self.lab, self.name))
            .unwrap_or_default()
    }

    /// Whether the process still runs: the PID exists, has the recorded
    /// start time (field 22 of /proc/PID/stat) and is not a zombie (a
    /// zombie has no network namespace left).
    pub fn running(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // The command name (field 2) may hold spaces and parentheses, so
        // count fields after the last ')': field 3 comes first there.
        let start = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(19));
        start.is_some()
            && start == Some(self.start.as_str())
            && std::fs::read_link(format!("/proc/{}/ns/net", self.pid)).is_ok()
    }

    /// Waits up to `limit` until the process's log contains `text` (it is
    /// ready: listening, started); panics with the log if it exits or the
    /// time runs out, `what` saying what was waited for.
    pub fn wait_log(&self, text: &str, limit: Duration, what: &str) {
        let t = Instant::now();
        while !self.log().contains(text) {
            assert!(
                self.running() && t.elapsed() < limit,
                "{what}: {:?} never appeared in {}'s log:\n{}",
                text,
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the process to exit by itself; returns
    /// whether it did.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        let t = Instant::now();
        while self.running() {
            if t.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`; returns
    /// whether SIGTERM (or an earlier exit) was enough.
    pub fn stop(&self, grace: Duration) -> bool {
        if !self.running() {
            return true;
        }
        let _ = run(&["kill", "-TERM", &self.pid.to_string()]);
        if self.wait_exit(grace) {
            return true;
        }
        if self.running() {
            let _ = run(&["kill", "-KILL", &self.pid.to_string()]);
            self.wait_exit(Duration::from_secs(2));
        }
        false
    }
}
