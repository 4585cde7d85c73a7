//! `scripts/oxvs-lab` end to end: the topology `up` builds (namespaces,
//! interfaces, addresses, MACs, offloads, the gateway entry, the underlay),
//! and that `down` removes all of it: after a clean run, after a crash
//! (a process killed, a namespace deleted by hand), with half a lab, and with
//! no lab at all, without touching what is not the lab's.
//!
//! Every test uses its own lab name (`oxt<pid><tag>`) and a guard that runs
//! `down` even when an assertion fails. They need root, iproute2, ethtool and
//! iputils-ping; without root they print why and pass.

use datapath::afxdp::sys::is_root;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: oxvs-lab needs root (network namespaces and veths)");
            return;
        }
    };
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/oxvs-lab")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command and returns its stdout, failing the test if it fails.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`, its stdout.
fn ip(args: &[&str]) -> String {
    run_ok(Command::new("ip").args(args))
}

/// Every network namespace name.
fn namespaces() -> BTreeSet<String> {
    ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whether a process runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to two seconds for a process to be gone.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

/// A lab name; dropping it runs `oxvs-lab down`.
struct Lab {
    name: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let lab = Lab {
            name: format!("oxt{}{tag}", std::process::id()),
        };
        // A previous run of this PID that crashed must not make `up` fail.
        lab.run("down", &[]);
        lab
    }

    /// `oxvs-lab CMD --name LAB ARGS`.
    fn run(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new(script())
            .arg(cmd)
            .args(["--name", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/oxvs-lab")
    }

    /// Like [`Lab::run`], failing the test on a non-zero exit; the stdout.
    fn ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.run(cmd, args);
        assert!(
            out.status.success(),
            "oxvs-lab {cmd} {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lab's namespace `LAB-short`.
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.name)
    }

    /// The lab's namespaces that exist.
    fn namespaces(&self) -> BTreeSet<String> {
        let prefix = format!("{}-", self.name);
        namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    fn state_dir(&self) -> PathBuf {
        Path::new("/run/oxvs-lab").join(&self.name)
    }

    /// Starts `cmd` through `oxvs-lab spawn` and returns its PID.
    fn spawn(&self, ns: &str, name: &str, cmd: &[&str]) -> u32 {
        let mut args = vec![ns, name];
        args.extend_from_slice(cmd);
        let out = self.ok("spawn", &args);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("spawn printed {out:?}"))
    }

    /// Asserts that nothing of the lab is left.
    fn assert_gone(&self) {
        assert_eq!(self.namespaces(), BTreeSet::new(), "namespaces left");
        assert!(!self.state_dir().exists(), "state directory left");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.run("down", &[]);
        if !out.status.success() {
            eprintln!("oxvs-lab down in the guard failed: {}", text(&out));
        }
    }
}

/// A child process of the test, killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which of `names` exist as interfaces in the root namespace.
fn root_interfaces(names: &[&str]) -> BTreeSet<String> {
    let links = ip(&["-o", "link", "show"]);
    names
        .iter()
        .filter(|n| {
            links.lines().any(|l| {
                let name = l.split(": ").nth(1).unwrap_or("");
                name.split('@').next() == Some(**n)
            })
        })
        .map(|n| n.to_string())
        .collect()
}

/// The network namespace a process is in, as "net:[inode]".
fn netns_of_pid(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .expect("read the process's netns")
        .to_string_lossy()
        .into_owned()
}

fn netns_of_name(ns: &str) -> String {
    let ino = std::fs::metadata(format!("/run/netns/{ns}"))
        .expect("stat the namespace")
        .ino();
    format!("net:[{ino}]")
}

#[test]
fn up_builds_the_topology_and_down_removes_it() {
    require_root!();
    let watched = ["v1p1", "v1p2", "v2p1", "v2p2", "ul0"];
    let root_before = root_interfaces(&watched);
    let lab = Lab::new("a");
    let out = lab.ok("up", &["--nodes", "2", "--pods", "2"]);
    assert!(out.contains("is up"), "{out}");

    let want: BTreeSet<String> = ["ul", "n1", "n2", "n1-p1", "n1-p2", "n2-p1", "n2-p2"]
        .iter()
        .map(|s| lab.ns(s))
        .collect();
    assert_eq!(lab.namespaces(), want);
    for ns in &want {
        let lo = ip(&["-n", ns, "-o", "link", "show", "lo"]);
        assert!(lo.contains(",UP"), "lo is down in {ns}: {lo}");
    }

    // A second `up` refuses and leaves the lab alone.
    let again = lab.run("up", &[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        text(&again)
    );
    assert_eq!(lab.namespaces(), want);

    for n in 1..=2 {
        let node = lab.ns(&format!("n{n}"));
        let ul0 = ip(&["-n", &node, "-o", "-4", "addr", "show", "dev", "ul0"]);
        assert!(ul0.contains(&format!("inet 192.168.77.{n}/24")), "{ul0}");
        for p in 1..=2 {
            let pod = lab.ns(&format!("n{n}-p{p}"));
            let eth0 = ip(&["-n", &pod, "-o", "link", "show", "dev", "eth0"]);
            assert!(eth0.contains(",UP,LOWER_UP"), "{eth0}");
            assert!(
                eth0.contains(&format!("link/ether 02:00:00:{n:02x}:00:{p:02x} ")),
                "{eth0}"
            );
            let addr = ip(&["-n", &pod, "-o", "-4", "addr", "show", "dev", "eth0"]);
            assert!(
                addr.contains(&format!("inet 10.244.{n}.{}/24", p + 1)),
                "{addr}"
            );
            let route = ip(&["-n", &pod, "route", "show", "default"]);
            assert!(
                route.contains(&format!("default via 10.244.{n}.1 dev eth0")),
                "{route}"
            );
            let gw = format!("10.244.{n}.1");
            let neigh = ip(&["-n", &pod, "neigh", "show", &gw, "dev", "eth0"]);
            assert!(
                neigh.contains(&format!("lladdr 0a:00:00:00:{n:02x}:fe PERMANENT")),
                "{neigh}"
            );
            let features = lab.ok("exec", &[&pod, "ethtool", "-k", "eth0"]);
            for line in ["tx-checksumming: off", "tx-tcp-segmentation: off"] {
                assert!(
                    features.lines().any(|l| l.trim().starts_with(line)),
                    "{pod}: no {line:?} in\n{features}"
                );
            }

            let port = format!("v{n}p{p}");
            let link = ip(&["-n", &node, "-o", "link", "show", "dev", &port]);
            assert!(link.contains(",UP,LOWER_UP"), "{link}");
            let addrs = ip(&["-n", &node, "-o", "addr", "show", "dev", &port]);
            assert_eq!(addrs.trim(), "", "{port} must have no address");
        }
    }

    // The underlay carries traffic between the nodes.
    let ping = lab.run(
        "exec",
        &["n1", "ping", "-c", "1", "-W", "5", "192.168.77.2"],
    );
    assert!(
        ping.status.success(),
        "ping over the underlay: {}",
        text(&ping)
    );

    // spawn: runs in the namespace, output in the log, listed by status.
    let shell = ["sh", "-c", "echo hello from the lab; exec sleep 1000"];
    let pid = lab.spawn("n1-p1", "hello", &shell);
    assert_eq!(netns_of_pid(pid), netns_of_name(&lab.ns("n1-p1")));
    let status = lab.ok("status", &[]);
    assert!(status.contains(&format!("hello pid {pid}")), "{status}");
    assert!(status.contains("02:00:00:02:00:02"), "{status}");
    let log = lab.state_dir().join("hello.log");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("hello from the lab")
    {
        assert!(Instant::now() < deadline, "no output in {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = lab.ok("down", &[]);
    assert!(out.contains("stopping hello"), "{out}");
    assert!(gone(pid), "spawned process {pid} survived down");
    lab.assert_gone();
    assert_eq!(
        root_interfaces(&watched),
        root_before,
        "root namespace changed"
    );
}

#[test]
fn down_cleans_up_after_a_crash_and_spares_what_is_not_the_labs() {
    require_root!();
    let lab = Lab::new("b");
    lab.ok("up", &["--nodes", "2", "--pods", "1"]);
    let victim = lab.spawn("n1-p1", "victim", &["sleep", "1000"]);
    let survivor = lab.spawn("n2", "survivor", &["sleep", "1000"]);

    // The crash: a process killed, a namespace deleted by hand (the
    // process in it keeps it alive, nameless).
    run_ok(Command::new("sh").args(["-c", &format!("kill -9 {victim}")]));
    ip(&["netns", "del", &lab.ns("n2")]);

    // A recorded PID that is not a process of the lab (as after PID reuse)
    // must not be signalled.
    let impostor = Reaped(
        Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("start sleep"),
    );
    let impostor_pid = impostor.0.id();
    std::fs::write(
        lab.state_dir().join("impostor.pid"),
        format!("{impostor_pid}\n"),
    )
    .unwrap();

    // A namespace that shares the prefix without the dash belongs to
    // another lab.
    let neighbour = format!("{}x-n1", lab.name);
    ip(&["netns", "add", &neighbour]);
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _neighbour = DelNs(neighbour.clone());

    let out = lab.ok("down", &[]);
    assert!(out.contains("stopping survivor"), "{out}");
    assert!(!out.contains("impostor"), "{out}");
    assert!(
        gone(survivor),
        "process {survivor} in the deleted namespace survived"
    );
    assert!(!alive(victim));
    lab.assert_gone();
    assert!(
        alive(impostor_pid),
        "down killed a process that is not the lab's"
    );
    assert!(
        namespaces().contains(&neighbour),
        "down removed another lab's namespace"
    );

    // Nothing left: down is still fine.
    let out = lab.ok("down", &[]);
    assert!(out.contains("is down"), "{out}");
}

#[test]
fn down_removes_half_a_lab_and_status_reports_none() {
    require_root!();
    let lab = Lab::new("c");
    let status = lab.ok("status", &[]);
    assert!(status.contains("does not exist"), "{status}");
    // As if `up` died after two namespaces, before writing any state.
    ip(&["netns", "add", &lab.ns("n1")]);
    ip(&["netns", "add", &lab.ns("n1-p1")]);
    let status = lab.ok("status", &[]);
    assert!(status.contains(&lab.ns("n1-p1")), "{status}");
    let up = lab.run("up", &[]);
    assert!(!up.status.success(), "up over half a lab: {}", text(&up));
    assert_eq!(
        lab.namespaces().len(),
        2,
        "a refused up must not remove anything"
    );
    lab.ok("down", &[]);
    lab.assert_gone();
}

#[test]
fn the_guard_takes_the_lab_down_when_a_test_fails() {
    require_root!();
    let name = format!("oxt{}d", std::process::id());
    let failed = std::panic::catch_unwind(|| {
        let lab = Lab::new("d");
        lab.ok("up", &["--nodes", "1", "--pods", "1"]);
        panic!("an assertion fails with the lab up");
    });
    assert!(failed.is_err());
    let prefix = format!("{name}-");
    assert!(
        !namespaces().iter().any(|n| n.starts_with(&prefix)),
        "the guard left namespaces"
    );
    assert!(!Path::new("/run/oxvs-lab").join(&name).exists());
}
