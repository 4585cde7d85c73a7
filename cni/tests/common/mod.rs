//! What the plugin's tests share: running the real `oxvs-cni` binary the way
//! a runtime does (`CNI_*` variables, configuration on stdin, answer on
//! stdout), network namespaces that are removed when dropped, and
//! [`FakeSwitch`], a control socket that answers the port commands as oxvsd
//! does, so that the plugin's own behaviour is tested without a datapath.

#![allow(dead_code)] // Each test file uses a different part.

pub mod fake_switch;

#[allow(unused_imports)] // Not every test binary uses it.
pub use fake_switch::FakeSwitch;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The plugin's answer: exit status and stdout as JSON (`Null` if empty).
pub struct Answer {
    pub ok: bool,
    pub json: serde_json::Value,
    pub stderr: String,
}

impl Answer {
    /// The error object's code (0 if the answer is not one).
    pub fn code(&self) -> u64 {
        self.json.get("code").and_then(|c| c.as_u64()).unwrap_or(0)
    }
}

pub fn is_root() -> bool {
    // The effective uid, without unsafe: /proc/self/status's Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Says the test is skipped without root; written
/// `if !root_or_skip() { return; }`.
pub fn root_or_skip() -> bool {
    if !is_root() {
        let t = std::thread::current();
        eprintln!(
            "skipped {}: needs root for network namespaces",
            t.name().unwrap_or("test")
        );
        return false;
    }
    true
}

pub fn plugin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxvs-cni"))
}

/// Runs the plugin with exactly the `CNI_*` variables in `vars` (others
/// removed), `stdin` as the configuration, inside network namespace `ns`
/// when given (as a runtime in that namespace would).
pub fn invoke(ns: Option<&str>, vars: &[(&str, &str)], stdin: &str) -> Answer {
    let bin = plugin_binary();
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    for k in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run oxvs-cni");
    {
        use std::io::Write;
        let mut w = child.stdin.take().unwrap();
        let _ = w.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("oxvs-cni finishes");
    let text = String::from_utf8_lossy(&out.stdout);
    Answer {
        ok: out.status.success(),
        json: if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout {text:?}: {e}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
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

/// Network namespaces named `PREFIX-...` and a scratch directory, removed
/// (with everything in them) when dropped, even after a failed assertion.
pub struct Sandbox {
    pub prefix: String,
    pub dir: PathBuf,
    names: Vec<String>,
}

impl Sandbox {
    pub fn new(tag: &str) -> Sandbox {
        let prefix = format!("oxcni{tag}{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Sandbox {
            prefix,
            dir,
            names: Vec::new(),
        }
    }

    /// Creates namespace `PREFIX-short` and returns its full name.
    pub fn netns(&mut self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        ok(&["ip", "netns", "add", &name]);
        self.names.push(name.clone());
        name
    }

    /// Removes namespace `name` now (as a runtime does when a pod ends).
    pub fn remove_netns(&mut self, name: &str) {
        ok(&["ip", "netns", "del", name]);
        self.names.retain(|n| n != name);
    }

    pub fn netns_path(name: &str) -> String {
        format!("/run/netns/{name}")
    }

    /// The interface names in namespace `ns`.
    pub fn links(ns: &str) -> Vec<String> {
        ok(&["ip", "-n", ns, "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// host-local's store for network `name` under this sandbox.
    pub fn ipam_dir(&self, network: &str) -> PathBuf {
        self.dir.join("ipam").join(network)
    }

    /// The addresses host-local has handed out for `network`.
    pub fn allocations(&self, network: &str) -> Vec<String> {
        let Ok(d) = std::fs::read_dir(self.ipam_dir(network)) else {
            return Vec::new();
        };
        let mut v: Vec<String> = d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        v.sort();
        v
    }

    /// A network configuration for `network` with host-local in this
    /// sandbox's store, oxvsd's socket at `socket`.
    pub fn conf(&self, network: &str, version: &str, socket: &Path, subnet: &str) -> String {
        let gw = subnet.replace(".0/24", ".1");
        serde_json::json!({
            "cniVersion": version,
            "name": network,
            "type": "oxvs",
            "socket": socket,
            "mtu": 1450,
            "ipam": {
                "type": "host-local",
                "subnet": subnet,
                "gateway": gw,
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.dir.join("ipam"),
            }
        })
        .to_string()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.names) {
            let _ = Command::new("ip").args(["netns", "del", &n]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `CNI_*` variables of one attachment.
pub fn vars<'a>(
    command: &'a str,
    container: &'a str,
    netns: &'a str,
    ifname: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/usr/lib/cni:/opt/cni/bin"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
    ];
    if !netns.is_empty() {
        v.push(("CNI_NETNS", netns));
    }
    v
}

/// A binary of the workspace that this test package does not build
/// (`oxvsd`, `oxvs-ctl`), next to the test executable's directory; built
/// with cargo when missing, so `cargo test -p cni` runs on its own.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(bin);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", package, "--bin", bin])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {bin} failed"
        );
    }
    path
}

/// oxvsd running in namespace `ns` with an empty rule set and no
/// configured port, its control socket and log in `dir`; killed (by PID,
/// the child's own) when dropped.
pub struct Oxvsd {
    pub socket: PathBuf,
    pub log: PathBuf,
    child: std::process::Child,
}

impl Oxvsd {
    pub fn start(ns: &str, dir: &Path, extra: &str) -> Oxvsd {
        let bin = workspace_binary("datapath", "oxvsd");
        let socket = dir.join("oxvsd.sock");
        let log = dir.join("oxvsd.log");
        std::fs::write(dir.join("node.flows"), "").unwrap();
        std::fs::write(
            dir.join("node.toml"),
            format!(
                "[switch]\nflows = \"node.flows\"\nlog = \"info\"\nsocket = \"{}\"\nstate = \"{}\"\n{extra}",
                socket.display(),
                dir.join("rules").display()
            ),
        )
        .unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&bin)
            .arg("--config")
            .arg(dir.join("node.toml"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start oxvsd");
        let sw = Oxvsd { socket, log, child };
        let t = std::time::Instant::now();
        while sw
            .call(ctl::proto::Command::ListPorts { json: true })
            .is_err()
        {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "oxvsd never answered on its socket:\n{}",
                sw.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        sw
    }

    pub fn call(&self, cmd: ctl::proto::Command) -> Result<String, ctl::client::ClientError> {
        ctl::client::call(&self.socket, cmd)
    }

    pub fn add_flow(&self, flow: &str) {
        self.call(ctl::proto::Command::AddFlow {
            flow: flow.to_string(),
            bundle: false,
        })
        .unwrap_or_else(|e| panic!("add-flow {flow}: {e}"));
    }

    pub fn ports(&self) -> Vec<ctl::proto::PortInfo> {
        let text = self
            .call(ctl::proto::Command::ListPorts { json: true })
            .expect("list-ports");
        serde_json::from_str(&text).expect("list-ports JSON")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Oxvsd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = std::time::Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if t.elapsed() > std::time::Duration::from_secs(3) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

/// Pings `to` from namespace `ns`; how many of `count` came back.
pub fn ping(ns: &str, to: &str, count: u32) -> u32 {
    let out = run(&[
        "ip",
        "netns",
        "exec",
        ns,
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
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `bytes` bytes over TCP from namespace `from` to `ip`:5201 in
/// namespace `to`; returns how many the receiver counted. The sender
/// starts once the receiver says it listens: a connection attempt before
/// that would be refused.
pub fn tcp_transfer(from: &str, to: &str, ip: &str, bytes: usize) -> usize {
    use std::io::{BufRead, BufReader, Read};
    let mut server = Command::new("ip")
        .args(["netns", "exec", to, "python3", "-c"])
        .arg(format!(
            "import socket\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{ip}',5201)); s.listen(1); s.settimeout(20)\n\
             print('listening', flush=True)\n\
             c,_=s.accept(); c.settimeout(20); n=0\n\
             while True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d)\n\
             print(n)"
        ))
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
    ok(&[
        "ip",
        "netns",
        "exec",
        from,
        "python3",
        "-c",
        &format!(
            "import socket; s=socket.create_connection(('{ip}',5201), timeout=20); \
             s.sendall(b'x'*{bytes}); s.close()"
        ),
    ]);
    let mut text = String::new();
    out.read_to_string(&mut text).expect("server's count");
    server.wait().expect("server ends");
    text.trim().parse().unwrap_or(0)
}
