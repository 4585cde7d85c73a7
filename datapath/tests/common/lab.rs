//! Bringing a lab's namespaces up (scripts/oxvs-lab) and adding hosts to
//! them, and the traffic tests send between them: pings, a TCP transfer,
//! a capture of Geneve frames on the underlay. Kept apart from the switch
//! and Open vSwitch helpers because every lab test needs these whatever
//! switch it runs.

use super::{ok, repo, run, Lab, Spawned};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

    /// Pings `to` from pod namespace `from` (`n1-p1`); returns how many
    /// replies came back.
    pub fn ping(&self, from: &str, to: &str, count: u32) -> u32 {
        Self::replies(self.spawn_ping(from, to, count, "0.1"))
    }

    /// Starts `count` pings from pod namespace `from` to `to`, one every
    /// `interval` seconds, in the background; `replies` waits for them.
    pub fn spawn_ping(&self, from: &str, to: &str, count: u32, interval: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(from), "ping", "-q", "-W", "1"])
            .args(["-c", &count.to_string(), "-i", interval, to])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ping")
    }

    /// How many replies a `spawn_ping` got, once it has ended.
    pub fn replies(ping: Child) -> u32 {
        let out = ping.wait_with_output().expect("ping ends");
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
        self.tcp_stream(from, to, to_ip, Stream::Bytes(bytes))
    }

    /// Sends `stream` over TCP from pod `from` to `to_ip`:5201 where pod
    /// `to` listens; returns what the receiver counted, its SHA-256 and
    /// the sender's SHA-256. The sender starts once the receiver says it
    /// listens: a connection attempt before that would be refused.
    pub fn tcp_stream(
        &self,
        from: &str,
        to: &str,
        to_ip: &str,
        stream: Stream,
    ) -> (usize, String, String) {
        let mut server = Command::new("ip")
            .args(["netns", "exec", &self.ns(to), "python3", "-c"])
            .arg(
                "import socket,hashlib\n\
                 s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('0.0.0.0',5201)); s.listen(1); s.settimeout(20)\n\
                 print('listening', flush=True)\n\
                 c,_=s.accept(); c.settimeout(20); h=hashlib.sha256(); n=0\n\
                 while True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d); h.update(d)\n\
                 print(n, h.hexdigest())",
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("server");
        let mut out = BufReader::new(server.stdout.take().expect("server's stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("server's first line");
        assert_eq!(
            line.trim(),
            "listening",
            "the receiver in {to} did not start"
        );
        let send = match stream {
            Stream::Bytes(n) => format!("data=os.urandom({n}); s.sendall(data); h.update(data)"),
            Stream::Paced { secs } => format!(
                "end=time.time()+{secs}\n\
                 while time.time()<end:\n    \
                 d=os.urandom(65536); s.sendall(d); h.update(d); time.sleep(0.001)"
            ),
        };
        let client = format!(
            "import socket,hashlib,os,time\n\
             s=socket.create_connection(('{to_ip}',5201), timeout=20); h=hashlib.sha256()\n\
             {send}\n\
             s.close(); print(h.hexdigest())"
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
        let mut text = String::new();
        out.read_to_string(&mut text).expect("server's count");
        server.wait().expect("server ends");
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

    /// Starts tcpdump on the underlay bridge's port toward node 1 (both
    /// directions of node 1's Geneve traffic, as in [`Lab::capture_pings`]),
    /// writing the first `snaplen` bytes of each UDP 6081 frame to `file`
    /// packet by packet, and returns once it listens. Stop it with
    /// [`Spawned::stop`]; the lab stops it if the test fails first.
    pub fn capture_underlay(&self, file: &Path, snaplen: u32) -> Spawned {
        let f = file.to_str().expect("utf-8 path");
        let s = snaplen.to_string();
        let cap = self.spawn(
            "ul",
            "underlay-capture",
            &[
                "tcpdump", "-i", "n1", "-n", "-U", "-Z", "root", "-s", &s, "-w", f, "udp", "port",
                "6081",
            ],
        );
        cap.wait_log("listening on", Duration::from_secs(10), "tcpdump");
        cap
    }

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

/// What [`Lab::tcp_stream`] sends.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// This many random bytes, as fast as TCP takes them.
    Bytes(usize),
    /// 64 KiB writes with a millisecond between them for `secs` seconds.
    Paced { secs: f64 },
}
