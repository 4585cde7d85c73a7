//! oxvsd switching real traffic between real pods: a lab of network
//! namespaces (scripts/oxvs-lab), oxvsd in the node namespace, ping and a TCP
//! transfer between two pods, with explicit flows and with `normal`; a port
//! deleted and re-created under traffic; a clean stop on SIGTERM.
//!
//! Needs root; as anyone else the tests say why and pass without running.
//! Every namespace and process is removed by a guard, even when a check fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One lab at a time: each runs a busy-polling switch, and two cores are
/// shared by the switch, the pods and the test itself.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &[&str]) -> std::process::Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab and the switch running in it; dropping it stops both.
struct Lab {
    name: String,
    dir: PathBuf,
    switch: Option<Child>,
}

impl Lab {
    fn up(tag: &str, pods: u32) -> Lab {
        Lab::up_with_queues(tag, pods, 1)
    }

    fn up_with_queues(tag: &str, pods: u32, queues: u32) -> Lab {
        let name = format!("ox{tag}{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lab = Lab {
            name,
            dir,
            switch: None,
        };
        let script = repo().join("scripts/oxvs-lab");
        ok(&[
            script.to_str().unwrap(),
            "up",
            "--nodes",
            "1",
            "--pods",
            &pods.to_string(),
            "--queues",
            &queues.to_string(),
            "--name",
            &lab.name,
        ]);
        lab
    }

    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.name)
    }

    /// Starts oxvsd in the node namespace with these flows and ports, and
    /// waits until it says every port is up.
    fn start_switch(&mut self, flows: &str, ports: &[(&str, u32)], kind: &str) {
        self.start_switch_with(flows, ports, kind, "", 1);
    }

    /// [`Lab::start_switch`] with more `[switch]` settings and `threads`
    /// poll threads, each of which logs every port up.
    fn start_switch_with(
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
        std::fs::write(self.dir.join("node.flows"), flows).unwrap();
        std::fs::write(self.dir.join("node.toml"), cfg).unwrap();
        let log = std::fs::File::create(self.dir.join("oxvsd.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("n1"),
                env!("CARGO_BIN_EXE_oxvsd"),
                "--config",
            ])
            .arg(self.dir.join("node.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start oxvsd");
        self.switch = Some(child);
        self.wait_log(
            |l| l.matches("port up").count() >= ports.len() * threads,
            "every port up",
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("oxvsd.log")).unwrap_or_default()
    }

    fn wait_log(&self, done: impl Fn(&str) -> bool, what: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if done(&self.log()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("oxvsd never logged {what}:\n{}", self.log());
    }

    fn ping(&self, from: &str, to: &str, count: u32) -> u32 {
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
    /// listens; returns what the receiver counted and its SHA-256.
    fn tcp_transfer(
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
                 c,_=s.accept(); h=hashlib.sha256(); n=0\n\
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

    /// Whether an XDP program is attached to a node-side interface.
    fn xdp_attached(&self, ifname: &str) -> bool {
        ok(&["ip", "-n", &self.ns("n1"), "-d", "link", "show", ifname]).contains("xdp")
    }

    /// SIGTERM, then the exit status within 5 s.
    fn stop_switch(&mut self) -> std::process::ExitStatus {
        let mut child = self.switch.take().expect("switch running");
        ok(&["kill", "-TERM", &child.id().to_string()]);
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "oxvsd did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.switch.take() {
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

const EXPLICIT: &str = "in_port=1,actions=output:2\nin_port=2,actions=output:1\n";

fn two_pods(tag: &str, kind: &str, flows: &str) {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let _serial = serial();
    let mut lab = Lab::up(tag, 2);
    lab.start_switch(flows, &[("v1p1", 1), ("v1p2", 2)], kind);
    assert_eq!(
        lab.ping("n1-p1", "10.244.1.3", 10),
        10,
        "ping p1 -> p2\n{}",
        lab.log()
    );
    assert_eq!(lab.ping("n1-p2", "10.244.1.2", 10), 10, "ping p2 -> p1");
    let (n, got, sent) = lab.tcp_transfer("n1-p1", "n1-p2", "10.244.1.3", 4 << 20);
    assert_eq!(n, 4 << 20, "bytes received\n{}", lab.log());
    assert_eq!(got, sent, "payload digest");
    if kind != "af_packet" {
        assert!(
            lab.log().contains("mode=afxdp"),
            "ports attached with AF_XDP:\n{}",
            lab.log()
        );
    }
    let status = lab.stop_switch();
    assert!(
        status.success(),
        "oxvsd exit status {status}\n{}",
        lab.log()
    );
    assert!(lab.log().contains("poll thread stopped"), "{}", lab.log());
    assert!(
        !lab.xdp_attached("v1p1") && !lab.xdp_attached("v1p2"),
        "XDP program left after SIGTERM"
    );
}

#[test]
fn af_packet_explicit_flows() {
    two_pods("pe", "af_packet", EXPLICIT);
}

#[test]
fn af_packet_normal() {
    two_pods("pn", "af_packet", "actions=normal\n");
}

#[test]
fn afxdp_explicit_flows() {
    two_pods("xe", "afxdp", EXPLICIT);
}

#[test]
fn afxdp_normal() {
    two_pods("xn", "afxdp", "actions=normal\n");
}

/// Two poll threads on veths with two queues: each thread owns one queue of
/// each port, and flows spread over both.
#[test]
fn two_poll_threads_share_the_work() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let _serial = serial();
    let mut lab = Lab::up_with_queues("mq", 2, 2);
    lab.start_switch_with(
        EXPLICIT,
        &[("v1p1", 1), ("v1p2", 2)],
        "afxdp",
        "poll_cores = [0, 1]\n",
        2,
    );
    let log = lab.log();
    for t in 0..2 {
        assert_eq!(
            log.matches(&format!("thread={t} mode=afxdp")).count(),
            2,
            "thread {t} has an AF_XDP queue on both ports:\n{log}"
        );
    }
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 5), 5, "ping\n{}", lab.log());
    // Sixteen connections: the pod's kernel picks a transmit queue (and so
    // the switch's receive queue) by flow hash, so the chance that every
    // one lands on the same queue is 2^-15.
    for _ in 0..16 {
        let (n, got, sent) = lab.tcp_transfer("n1-p1", "n1-p2", "10.244.1.3", 64 << 10);
        assert_eq!(n, 64 << 10, "bytes received\n{}", lab.log());
        assert_eq!(got, sent, "payload digest");
    }
    assert!(lab.stop_switch().success(), "{}", lab.log());
    let log = lab.log();
    for t in 0..2 {
        let rx = log
            .lines()
            .find(|l| l.contains("poll thread stopped") && l.contains(&format!("thread={t} ")))
            .and_then(|l| l.split("rx=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse::<u64>().ok());
        assert!(
            rx.is_some_and(|n| n > 0),
            "thread {t} received packets:\n{log}"
        );
    }
}

#[test]
fn sigkill_leaves_no_xdp_program() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let _serial = serial();
    let mut lab = Lab::up("k", 2);
    lab.start_switch(EXPLICIT, &[("v1p1", 1), ("v1p2", 2)], "afxdp");
    assert!(lab.xdp_attached("v1p1"), "program attached while running");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 3), 3);
    let mut child = lab.switch.take().expect("running");
    ok(&["kill", "-KILL", &child.id().to_string()]);
    let _ = child.wait();
    // The program was attached through a BPF link: the kernel detaches it
    // when the last descriptor of the killed process closes.
    let t = Instant::now();
    while lab.xdp_attached("v1p1") || lab.xdp_attached("v1p2") {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "XDP program still attached after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And a new switch attaches again at once.
    lab.start_switch(EXPLICIT, &[("v1p1", 1), ("v1p2", 2)], "afxdp");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 3), 3, "{}", lab.log());
}

#[test]
fn port_deleted_and_recreated_under_traffic() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let _serial = serial();
    let mut lab = Lab::up("d", 2);
    lab.start_switch(EXPLICIT, &[("v1p1", 1), ("v1p2", 2)], "auto");
    assert_eq!(lab.ping("n1-p1", "10.244.1.3", 5), 5);
    // Pod 2's veth disappears (and with it the switch's port 2) while pod 1
    // keeps sending; then it comes back with the same names and addresses.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("n1-p1"),
            "ping",
            "-c",
            "40",
            "-i",
            "0.1",
            "-q",
            "10.244.1.3",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    ok(&["ip", "-n", &lab.ns("n1"), "link", "del", "v1p2"]);
    lab.wait_log(|l| l.contains("interface gone; port down"), "port down");
    let (node, pod) = (lab.ns("n1"), lab.ns("n1-p2"));
    ok(&[
        "ip",
        "-n",
        &pod,
        "link",
        "add",
        "eth0",
        "address",
        "02:00:00:01:00:02",
        "type",
        "veth",
        "peer",
        "name",
        "v1p2",
        "netns",
        &node,
    ]);
    ok(&[
        "ip", "netns", "exec", &pod, "ethtool", "-K", "eth0", "tx", "off",
    ]);
    ok(&[
        "ip",
        "-n",
        &pod,
        "addr",
        "add",
        "10.244.1.3/24",
        "dev",
        "eth0",
    ]);
    ok(&["ip", "-n", &pod, "link", "set", "eth0", "up"]);
    ok(&["ip", "-n", &node, "link", "set", "v1p2", "up"]);
    lab.wait_log(|l| l.matches("port up").count() >= 3, "port 2 up again");
    let _ = pinger.wait_with_output();
    assert_eq!(
        lab.ping("n1-p1", "10.244.1.3", 5),
        5,
        "traffic after the port returned\n{}",
        lab.log()
    );
    assert!(lab.stop_switch().success());
}
