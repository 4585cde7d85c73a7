//! What the namespace tests share: root detection, command helpers, and
//! [`Lab`], a lab of network namespaces (scripts/oxvs-lab) with oxvsd
//! instances in its nodes. Dropping a `Lab` kills its switches and takes the
//! lab down, so a failed assertion leaves nothing behind.

#![allow(dead_code)] // Each test file uses a different part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

impl Lab {
    /// One node with `pods` pods.
    pub fn up(tag: &str, pods: u32) -> Lab {
        Lab::up_with(tag, 1, pods, 1)
    }

    /// One node with `pods` pods and `queues` queues per veth.
    pub fn up_with_queues(tag: &str, pods: u32, queues: u32) -> Lab {
        Lab::up_with(tag, 1, pods, queues)
    }

    /// `nodes` nodes of `pods` pods, `queues` queues per veth.
    pub fn up_with(tag: &str, nodes: u32, pods: u32, queues: u32) -> Lab {
        let name = format!("ox{tag}{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lab = Lab {
            name,
            dir,
            switches: BTreeMap::new(),
        };
        let script = repo().join("scripts/oxvs-lab");
        ok(&[
            script.to_str().unwrap(),
            "up",
            "--nodes",
            &nodes.to_string(),
            "--pods",
            &pods.to_string(),
            "--queues",
            &queues.to_string(),
            "--name",
            &lab.name,
        ]);
        lab
    }

    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.name)
    }

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

    /// Pings `to` from pod namespace `from` (`n1-p1`); returns how many
    /// replies came back.
    pub fn ping(&self, from: &str, to: &str, count: u32) -> u32 {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.ns(from),
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.1",
            "-W",
            "1",
            "-q",
            to,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(", ")
            .find_map(|p| {
                p.strip_suffix(" received")
                    .or_else(|| p.strip_suffix(" packets received"))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends `bytes` over TCP from pod `from` to `to_ip`:5201 where pod `to`
    /// listens; returns what the receiver counted, its SHA-256 and the
    /// sender's SHA-256.
    pub fn tcp_transfer(
        &self,
        from: &str,
        to: &str,
        to_ip: &str,
        bytes: usize,
    ) -> (usize, String, String) {
        let server = Command::new("ip")
            .args(["netns", "exec", &self.ns(to), "python3", "-c"])
            .arg(
                "import socket,hashlib\n\
                 s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('0.0.0.0',5201)); s.listen(1); s.settimeout(20)\n\
                 c,_=s.accept(); c.settimeout(20); h=hashlib.sha256(); n=0\n\
                 while True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d); h.update(d)\n\
                 print(n, h.hexdigest())",
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("server");
        std::thread::sleep(Duration::from_millis(400));
        let client = format!(
            "import socket,hashlib,os\n\
             data=os.urandom({bytes}); s=socket.create_connection(('{to_ip}',5201), timeout=20)\n\
             s.sendall(data); s.close(); print(hashlib.sha256(data).hexdigest())"
        );
        let sent = ok(&[
            "ip",
            "netns",
            "exec",
            &self.ns(from),
            "python3",
            "-c",
            &client,
        ]);
        let got = server.wait_with_output().expect("server ends");
        let text = String::from_utf8_lossy(&got.stdout);
        let mut it = text.split_whitespace();
        let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (
            n,
            it.next().unwrap_or("").to_string(),
            sent.trim().to_string(),
        )
    }

    /// Captures `count` Geneve frames with tshark on the underlay bridge's port
    /// toward node 1 (LAB-ul has no XDP program, so it sees the frames on the
    /// wire both ways), pinging `to` from pod `from` until tshark has them or
    /// its 20 s are up. tshark says nothing once it really captures (its
    /// "Capturing on" comes before it starts dumpcap), and a fixed pause is
    /// too short on a loaded machine, so the pings go on until the count is
    /// reached. Returns whether tshark succeeded and what it said.
    pub fn capture_pings(&self, file: &Path, count: u32, from: &str, to: &str) -> (bool, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns("ul"), "tshark", "-q", "-i", "n1"])
            .args(["-f", "udp port 6081", "-c", &count.to_string()])
            .args(["-a", "duration:20", "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark (apt-get install tshark)");
        let t = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(25) {
            self.ping(from, to, 1);
            std::thread::sleep(Duration::from_millis(200));
        }
        match child.wait_with_output() {
            Ok(out) => (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            Err(e) => (false, e.to_string()),
        }
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

impl Lab {
    /// Runs `cmd` in the lab namespace `ns` (`n1`, `n1-p2`, `ext`) and
    /// returns its output, whatever its exit status.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> std::process::Output {
        let full = self.ns(ns);
        let mut args = vec!["ip", "netns", "exec", &full];
        args.extend_from_slice(cmd);
        run(&args)
    }

    /// Adds namespace `LAB-short` (removed with the lab, as every `LAB-`
    /// namespace is) with interface `eth0` at `addr` (CIDR), whose peer
    /// `peer` joins the underlay bridge: a host on the underlay network
    /// that is neither a node nor a pod, such as an external client. Its
    /// transmit checksum offload is off for the reason the pods' is.
    pub fn add_underlay_host(&self, short: &str, peer: &str, addr: &str, mtu: u32) {
        let ns = self.ns(short);
        let ul = self.ns("ul");
        ok(&["ip", "netns", "add", &ns]);
        ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ok(&[
            "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns",
            &ul,
        ]);
        ok(&[
            "ip", "netns", "exec", &ns, "ethtool", "-K", "eth0", "tx", "off",
        ]);
        set_mtu(&ns, mtu);
        ok(&["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        ok(&["ip", "-n", &ul, "link", "set", peer, "addrgenmode", "none"]);
        ok(&["ip", "-n", &ul, "link", "set", peer, "master", "br0", "up"]);
    }
}

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

/// Sets the MTU of `eth0` in namespace `ns` (its full name).
pub fn set_mtu(ns: &str, mtu: u32) {
    ok(&[
        "ip",
        "-n",
        ns,
        "link",
        "set",
        "eth0",
        "mtu",
        &mtu.to_string(),
    ]);
}

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
        let mut cmd = ovs.env();
        cmd.extend([
            "ovsdb-server".to_string(),
            ovs.path("db/conf.db"),
            format!("--remote=punix:{}", ovs.path("run/db.sock")),
            format!("--pidfile={}", ovs.path("run/ovsdb-server.pid")),
            format!("--unixctl={}", ovs.path("run/ovsdb-server.ctl")),
            format!("--log-file={}", ovs.path("log/ovsdb-server.log")),
            "--no-chdir".to_string(),
        ]);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let name = format!("ovsdb-server-{node}");
        ovs.daemons.push(lab.spawn(node, &name, &args));
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
        let mut cmd = ovs.env();
        cmd.extend([
            "ovs-vswitchd".to_string(),
            format!("unix:{}", ovs.path("run/db.sock")),
            format!("--pidfile={}", ovs.path("run/ovs-vswitchd.pid")),
            format!("--unixctl={}", ovs.path("run/ovs-vswitchd.ctl")),
            format!("--log-file={}", ovs.path("log/ovs-vswitchd.log")),
            "--no-chdir".to_string(),
        ]);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let name = format!("ovs-vswitchd-{node}");
        ovs.daemons.push(lab.spawn(node, &name, &args));
        ovs.wait_socket("run/ovs-vswitchd.ctl", 1);
        ovs
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
