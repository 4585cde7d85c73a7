//! Open vSwitch as a peer in a lab: whether it is installed, and [`Ovs`],
//! a private ovsdb-server and ovs-vswitchd (userspace datapath) in one lab
//! node. Kept apart because only the interoperability and service tests
//! run it, and it is most of what these helpers hold.

use super::{ok, run, Lab, Spawned};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the Debian package puts the Open vSwitch database schema.
pub const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// The Open vSwitch programs [`Ovs`] runs.
pub const OVS_TOOLS: [&str; 6] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
];

/// Where `tool` is on PATH (or in the sbin directories a root shell has).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
    {
        let candidate = Path::new(dir).join(tool);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// Whether Open vSwitch (its programs and schema) is installed.
pub fn ovs_installed() -> bool {
    OVS_TOOLS.into_iter().all(|t| find_tool(t).is_some()) && Path::new(OVS_SCHEMA).is_file()
}

/// The first CPU this process may run on (a CI container may not have
/// CPU 0), where an OVS PMD thread goes.
pub fn first_allowed_cpu() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| {
            let first = list.trim().split([',', '-']).next()?;
            first.parse().ok()
        })
        .filter(|&cpu| cpu < 64)
        .unwrap_or(0)
}

/// A private Open vSwitch (userspace datapath) in one lab node, as in
/// interop_lab.rs but for any node and several at once: its own
/// ovsdb-server and ovs-vswitchd with run, db, log and etc directories in
/// `LAB-DIR/ovs-NODE`, started with `oxvs-lab spawn` (as `ovsdb-server-NODE`
/// and `ovs-vswitchd-NODE`) so that the lab's teardown stops them even if
/// this guard could not. Dropping it (or [`Ovs::stop`]) deletes its bridges
/// first, so that ovs-vswitchd detaches its XDP programs; declare it after
/// the lab so that it drops first.
pub struct Ovs {
    pub node: String,
    dir: PathBuf,
    daemons: Vec<Spawned>,
    bridges: Vec<String>,
}

impl Ovs {
    /// Creates the database and starts both daemons: one PMD thread on the
    /// first allowed core that sleeps when idle, one handler, one
    /// revalidator (the machine is small and shared).
    pub fn start(lab: &Lab, node: &str) -> Ovs {
        let dir = lab.dir.join(format!("ovs-{node}"));
        for d in ["run", "db", "log", "etc"] {
            std::fs::create_dir_all(dir.join(d)).expect("OVS directories");
        }
        let db = dir.join("db/conf.db");
        ok(&["ovsdb-tool", "create", db.to_str().unwrap(), OVS_SCHEMA]);
        let mut ovs = Ovs {
            node: node.to_string(),
            dir,
            daemons: Vec::new(),
            bridges: Vec::new(),
        };
        let (db, sock) = (ovs.path("db/conf.db"), ovs.path("run/db.sock"));
        ovs.start_daemon(lab, "ovsdb-server", &[db, format!("--remote=punix:{sock}")]);
        ovs.wait_socket("run/db.sock", 0);
        ovs.vsctl(&["--no-wait", "init"]);
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!(
                "other_config:pmd-cpu-mask={:#x}",
                1u64 << first_allowed_cpu()
            ),
            "other_config:pmd-maxsleep=100",
            "other_config:n-handler-threads=1",
            "other_config:n-revalidator-threads=1",
        ]);
        ovs.start_daemon(lab, "ovs-vswitchd", &[format!("unix:{sock}")]);
        ovs.wait_socket("run/ovs-vswitchd.ctl", 1);
        ovs
    }

    /// Starts `prog` (an OVS daemon) in the node with `args` and its own
    /// pidfile, control socket and log file under this instance's
    /// directories, as `PROG-NODE` in the lab.
    fn start_daemon(&mut self, lab: &Lab, prog: &str, args: &[String]) {
        let mut cmd = self.env();
        cmd.push(prog.to_string());
        cmd.extend_from_slice(args);
        cmd.extend([
            format!("--pidfile={}", self.path(&format!("run/{prog}.pid"))),
            format!("--unixctl={}", self.path(&format!("run/{prog}.ctl"))),
            format!("--log-file={}", self.path(&format!("log/{prog}.log"))),
            "--no-chdir".to_string(),
        ]);
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let name = format!("{prog}-{}", self.node);
        self.daemons.push(lab.spawn(&self.node, &name, &argv));
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_str().unwrap().to_string()
    }

    /// `env OVS_RUNDIR=... ` in front of a daemon's command line, so that
    /// nothing it writes lands in the system's /var/run/openvswitch.
    fn env(&self) -> Vec<String> {
        let mut v = vec!["env".to_string()];
        for (var, d) in [
            ("OVS_RUNDIR", "run"),
            ("OVS_DBDIR", "db"),
            ("OVS_LOGDIR", "log"),
            ("OVS_SYSCONFDIR", "etc"),
        ] {
            v.push(format!("{var}={}", self.path(d)));
        }
        v
    }

    fn wait_socket(&self, rel: &str, daemon: usize) {
        let d = &self.daemons[daemon];
        let t = Instant::now();
        while !self.dir.join(rel).exists() {
            assert!(
                d.running() && t.elapsed() < Duration::from_secs(10),
                "{} did not open {rel}:\n{}",
                d.name,
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn vsctl_cmd(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "ovs-vsctl".to_string(),
            format!("--db=unix:{}", self.path("run/db.sock")),
            "--timeout=20".to_string(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    pub fn vsctl(&self, args: &[&str]) -> String {
        let cmd = self.vsctl_cmd(args);
        ok(&cmd.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn appctl_text(&self, args: &[&str]) -> String {
        let ctl = self.path("run/ovs-vswitchd.ctl");
        let mut cmd = vec!["ovs-appctl", "-t", &ctl, "--timeout=10"];
        cmd.extend_from_slice(args);
        let out = run(&cmd);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `ovs-vsctl add-br NAME -- set bridge NAME datapath_type=netdev ...`.
    pub fn add_bridge(&mut self, name: &str, settings: &[&str]) {
        // Recorded first: a half-made bridge is deleted too.
        self.bridges.push(name.to_string());
        let mut args = vec![
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ];
        args.extend_from_slice(settings);
        self.vsctl(&args);
    }

    /// Adds a port and checks that OVS opened it (an ofport, no error).
    pub fn add_port(&self, bridge: &str, port: &str, settings: &[&str]) {
        let mut args = vec!["add-port", bridge, port, "--", "set", "interface", port];
        args.extend_from_slice(settings);
        self.vsctl(&args);
        let ofport = self.vsctl(&["get", "interface", port, "ofport"]);
        let error = self.vsctl(&["get", "interface", port, "error"]);
        assert!(
            ofport.trim().parse::<i32>().is_ok_and(|n| n > 0) && error.trim() == "[]",
            "OVS did not open {port} ({settings:?}): ofport {} error {}\n{}",
            ofport.trim(),
            error.trim(),
            self.log_tail(20)
        );
    }

    /// An AF_XDP port (native mode), as OpenFlow port `no`.
    pub fn add_afxdp_port(&self, bridge: &str, port: &str, no: u32) {
        let request = format!("ofport_request={no}");
        self.add_port(
            bridge,
            port,
            &["type=afxdp", "options:xdp-mode=native", &request],
        );
    }

    /// Port `gnv0`, OpenFlow port 100: Geneve with the remote address and
    /// the VNI taken from the flows (`tun_dst`, `tun_id`), as oxvs's
    /// `remote_ip = "flow"` port.
    pub fn add_geneve_flow_port(&self, bridge: &str) {
        self.add_port(
            bridge,
            "gnv0",
            &[
                "type=geneve",
                "options:remote_ip=flow",
                "options:key=flow",
                "ofport_request=100",
            ],
        );
    }

    /// Loads a flow file written for oxvs into `bridge` with OpenFlow 1.5:
    /// its `group_id=` lines through `add-groups` first (ovs-ofctl keeps
    /// groups out of flow files), then the rest through `add-flows`.
    pub fn add_flow_file(&self, bridge: &str, text: &str) {
        let (groups, flows): (Vec<&str>, Vec<&str>) = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .partition(|l| l.trim_start().starts_with("group_id="));
        let mgmt = format!("unix:{}", self.path(&format!("run/{bridge}.mgmt")));
        for (what, lines) in [("add-groups", groups), ("add-flows", flows)] {
            let file = self.dir.join(format!("{bridge}.{what}"));
            std::fs::write(&file, lines.join("\n") + "\n").unwrap();
            ok(&[
                "ovs-ofctl",
                "-O",
                "OpenFlow15",
                what,
                &mgmt,
                file.to_str().unwrap(),
            ]);
        }
    }

    /// `ovs-ofctl dump-flows BRIDGE FILTER` (OpenFlow 1.5).
    pub fn dump_flows(&self, bridge: &str, filter: &str) -> String {
        let mgmt = format!("unix:{}", self.path(&format!("run/{bridge}.mgmt")));
        ok(&["ovs-ofctl", "-O", "OpenFlow15", "dump-flows", &mgmt, filter])
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log =
            std::fs::read_to_string(self.dir.join("log/ovs-vswitchd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What OVS knows about `bridge`, for a failed check's message.
    pub fn diag(&self, bridge: &str) -> String {
        let mgmt = format!("unix:{}", self.path(&format!("run/{bridge}.mgmt")));
        let flows = run(&["ovs-ofctl", "-O", "OpenFlow15", "dump-flows", &mgmt]);
        format!(
            "--- OVS in {}: ovs-vswitchd.log (tail)\n{}\n--- {bridge} flows\n{}\
             --- conntrack\n{}",
            self.node,
            self.log_tail(20),
            String::from_utf8_lossy(&flows.stdout),
            self.appctl_text(&["dpctl/dump-conntrack"]),
        )
    }

    /// Deletes the bridges, asks both daemons to exit and waits for them; a
    /// daemon still running after 3 s gets SIGTERM, then SIGKILL. Returns
    /// whether both exited when asked. Never panics: it also runs while a
    /// failed check unwinds.
    pub fn stop(&mut self) -> bool {
        let vswitchd_up = self.daemons.get(1).is_some_and(Spawned::running);
        for br in std::mem::take(&mut self.bridges).iter().rev() {
            if vswitchd_up {
                let cmd = self.vsctl_cmd(&["--if-exists", "del-br", br]);
                let _ = run(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        if vswitchd_up {
            let _ = self.appctl_text(&["exit", "--cleanup"]);
        }
        let mut clean = true;
        for d in std::mem::take(&mut self.daemons).iter().rev() {
            if d.name.starts_with("ovsdb-server") && d.running() {
                let ctl = self.path("run/ovsdb-server.ctl");
                let _ = run(&["ovs-appctl", "-t", &ctl, "--timeout=5", "exit"]);
            }
            clean &= d.wait_exit(Duration::from_secs(3)) || d.stop(Duration::from_secs(2));
        }
        clean
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.stop();
    }
}
