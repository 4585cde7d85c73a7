//! The fast-path program on real veths: a UDP flow between two "pods"
//! (namespaces `oxt-fp-<pid>-<role>`, addresses in 10.244.0.0/16) crosses
//! the switch namespace by `bpf_redirect_map` through the DEVMAP alone, with
//! the entry's MAC rewrite applied, and the entry's counters and the
//! program's hit counter show it. A flow without an entry goes to the
//! kernel of the switch namespace (the miss action, with no socket bound)
//! and does not arrive. Nothing outside the namespaces is touched; they are
//! deleted by a guard even when the test panics.
//!
//! The receiving pod's veth has GRO on: a frame redirected into a veth is
//! dropped unless its peer has NAPI (`shared/notes/kubernetes-and-xdp-on-
//! this-machine.md`). The sending pod has transmit checksum offload off, as
//! the switch's ports need anyway.
//!
//! Needs root, `ip` and `ethtool`; skips without root. Run under
//! `flock /tmp/oxvs-lab.lock` when other labs may run.

use datapath::afxdp::bpf::{create_xskmap, link_xdp, XDP_FLAGS_DRV_MODE};
use datapath::afxdp::fastpath::{offload, FastPathMaps, FpCounter, OffloadEnv, OffloadTunnel};
use datapath::afxdp::sys::{if_index, is_root};
use datapath::afxdp::{enter_netns, ProgramKind, XdpAction};
use flowtable::{extract, DpAction, FlowKey, PortNo};
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

const MAC_H1: [u8; 6] = [0x02, 0x0f, 0, 0, 0, 1];
const MAC_H2: [u8; 6] = [0x02, 0x0f, 0, 0, 0, 2];
const MAC_P1: [u8; 6] = [0x02, 0x0f, 0, 0, 1, 1];
const MAC_P2: [u8; 6] = [0x02, 0x0f, 0, 0, 1, 2];
/// What h1 believes h2's MAC is; the entry rewrites it to the real one.
const MAC_GW: [u8; 6] = [0x02, 0x0f, 0, 0, 0, 0x99];
const IP_H1: [u8; 4] = [10, 244, 77, 1];
const IP_H2: [u8; 4] = [10, 244, 77, 2];

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct NoTunnels;
impl OffloadEnv for NoTunnels {
    fn tunnel(&self, _: PortNo, _: [u8; 16]) -> Option<OffloadTunnel<'_>> {
        None
    }
}

/// The frame h1's kernel sends for a datagram from port `sport` to h2:53.
fn frame(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_H1, MAC_GW)
        .ipv4(IP_H1, IP_H2, 64)
        .udp(sport, 5353)
        .write(&mut f, payload)
        .unwrap();
    f
}

#[test]
fn a_flow_crosses_the_switch_inside_xdp() {
    if !is_root() {
        eprintln!("skipping a_flow_crosses_the_switch_inside_xdp: needs root");
        return;
    }
    let p = format!("oxt-fp-{}", std::process::id());
    let (sw, h1, h2) = (format!("{p}-sw"), format!("{p}-h1"), format!("{p}-h2"));
    let mut guard = Netns(Vec::new());
    for ns in [&sw, &h1, &h2] {
        run(&["ip", "netns", "add", ns]);
        guard.0.push(ns.clone());
    }
    for (h, port, mh, mp) in [(&h1, "p1", MAC_H1, MAC_P1), (&h2, "p2", MAC_H2, MAC_P2)] {
        run(&[
            "ip",
            "-n",
            &sw,
            "link",
            "add",
            port,
            "address",
            &mac(mp),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            &mac(mh),
            "netns",
            h,
        ]);
        run(&["ip", "-n", &sw, "link", "set", port, "up"]);
        run(&["ip", "-n", h, "link", "set", "eth0", "up"]);
        run(&[
            "ip", "netns", "exec", h, "ethtool", "-K", "eth0", "tx", "off",
        ]);
    }
    run(&[
        "ip", "netns", "exec", &h2, "ethtool", "-K", "eth0", "gro", "on",
    ]);
    run(&[
        "ip",
        "-n",
        &h1,
        "addr",
        "add",
        "10.244.77.1/24",
        "dev",
        "eth0",
    ]);
    run(&[
        "ip",
        "-n",
        &h2,
        "addr",
        "add",
        "10.244.77.2/24",
        "dev",
        "eth0",
    ]);
    run(&[
        "ip",
        "-n",
        &h1,
        "neigh",
        "replace",
        "10.244.77.2",
        "lladdr",
        &mac(MAC_GW),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);

    // h2 listens.
    let (ready_tx, ready_rx) = mpsc::channel();
    let h2n = h2.clone();
    let receiver = std::thread::spawn(move || {
        enter_netns(&h2n).unwrap();
        let s = UdpSocket::bind("10.244.77.2:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            got.push((from.port(), buf[..n].to_vec()));
        }
        got
    });
    ready_rx.recv().unwrap();

    // The switch: program on p1, p2 as output 2, one entry for the flow
    // from port 40001.
    let (sw_tx, sw_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let swn = sw.clone();
    let switch = std::thread::spawn(move || {
        enter_netns(&swn).unwrap();
        let maps = FastPathMaps::create(64).unwrap();
        let xsk = create_xskmap(4).unwrap();
        let prog = maps
            .load(ProgramKind::All, xsk.as_fd(), XdpAction::Pass, 1)
            .unwrap_or_else(|e| panic!("{}\n{}", e.err, e.log));
        let (p1, p2) = (if_index("p1").unwrap(), if_index("p2").unwrap());
        maps.set_output(2, p2).unwrap();
        let mut key = FlowKey::default();
        extract(&frame(40001, b"x"), 1, &mut key).unwrap();
        let acts = [
            DpAction::SetEthSrc(MAC_P2),
            DpAction::SetEthDst(MAC_H2),
            DpAction::Output(2),
        ];
        let (fk, e) = offload(&key, &acts, &NoTunnels).expect("offloadable");
        maps.insert(&fk, &e).unwrap();
        let _link = link_xdp(prog.as_fd(), p1, XDP_FLAGS_DRV_MODE).expect("native attach");
        sw_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        (maps.get(&fk).unwrap().unwrap(), maps.counters().unwrap())
    });
    sw_rx.recv().unwrap();

    // h1 sends ten datagrams on the offloaded flow and ten on another.
    let h1n = h1.clone();
    std::thread::spawn(move || {
        enter_netns(&h1n).unwrap();
        let on = UdpSocket::bind("10.244.77.1:40001").unwrap();
        let off = UdpSocket::bind("10.244.77.1:40002").unwrap();
        for i in 0..10u8 {
            on.send_to(&[i; 100], "10.244.77.2:5353").unwrap();
            off.send_to(&[i; 100], "10.244.77.2:5353").unwrap();
        }
    })
    .join()
    .unwrap();
    let got = receiver.join().unwrap();
    done_tx.send(()).unwrap();
    let (entry, counters) = switch.join().unwrap();

    let from_on: Vec<_> = got.iter().filter(|(p, _)| *p == 40001).collect();
    assert_eq!(
        from_on.len(),
        10,
        "every offloaded datagram arrived: {got:?}"
    );
    assert!(from_on
        .iter()
        .enumerate()
        .all(|(i, (_, d))| d == &vec![i as u8; 100]));
    assert!(
        got.iter().all(|(p, _)| *p == 40001),
        "the flow without an entry went to the switch's kernel, not to h2"
    );
    assert_eq!(entry.packets, 10);
    assert_eq!(entry.bytes, 10 * frame(40001, &[0; 100]).len() as u64);
    assert_eq!(counters[FpCounter::Hit as usize], 10);
    assert_eq!(counters[FpCounter::Miss as usize], 10);
    drop(guard);
}

/// `fast_path = "auto"` (`FastAttach { generic: false }`) puts the fast-path
/// program on an interface only where it attaches natively; where only
/// generic mode attaches (a veth whose peer's MTU is too large for native
/// XDP) the plain redirect runs, while `"on"` (`generic: true`) runs the
/// fast path there too. A later port of the same interface must want what
/// is attached.
#[test]
fn auto_runs_the_program_where_native_xdp_attaches() {
    use datapath::afxdp::attach::attach;
    use datapath::afxdp::{AttachMode, AttachPref, FastAttach, XskError};
    use std::sync::Arc;
    if !is_root() {
        eprintln!("skipping auto_runs_the_program_where_native_xdp_attaches: needs root");
        return;
    }
    let sw = format!("oxt-fpa-{}-sw", std::process::id());
    let _guard = Netns(vec![sw.clone()]);
    run(&["ip", "netns", "add", &sw]);
    for (a, b) in [("a1", "b1"), ("a2", "b2")] {
        run(&[
            "ip", "-n", &sw, "link", "add", a, "type", "veth", "peer", "name", b,
        ]);
    }
    // Native XDP on a veth refuses a peer MTU this large (ERANGE): only
    // generic attaches on a2.
    run(&["ip", "-n", &sw, "link", "set", "b2", "mtu", "9000"]);
    for dev in ["a1", "b1", "a2", "b2"] {
        run(&["ip", "-n", &sw, "link", "set", dev, "up"]);
    }
    let swn = sw.clone();
    std::thread::spawn(move || {
        enter_netns(&swn).unwrap();
        let idx = |n: &str| if_index(n).unwrap();
        let maps = FastPathMaps::create(64).unwrap();
        let auto = FastAttach {
            maps: &maps,
            generic: false,
            of_port: 1,
        };
        let on = FastAttach {
            maps: &maps,
            generic: true,
            of_port: 1,
        };
        let all = ProgramKind::All;

        let a1 = attach("a1", idx("a1"), all, AttachPref::Auto, Some(auto)).unwrap();
        assert_eq!(a1.mode(), AttachMode::Native);
        assert!(a1.is_fast_path(), "native with auto runs the fast path");
        // Another queue of a1 under "on" wants the same program there.
        let again = attach("a1", idx("a1"), all, AttachPref::Auto, Some(on)).unwrap();
        assert!(Arc::ptr_eq(&a1, &again));
        let e = attach("a1", idx("a1"), all, AttachPref::Auto, None).err();
        assert!(matches!(e, Some(XskError::ProgramMismatch { .. })), "{e:?}");

        let a2 = attach("a2", idx("a2"), all, AttachPref::Auto, Some(auto)).unwrap();
        assert_eq!(a2.mode(), AttachMode::Generic);
        assert!(
            !a2.is_fast_path(),
            "generic with auto runs the plain redirect"
        );
        let e = attach("a2", idx("a2"), all, AttachPref::Auto, Some(on)).err();
        assert!(matches!(e, Some(XskError::ProgramMismatch { .. })), "{e:?}");
        let same = attach("a2", idx("a2"), all, AttachPref::Auto, None).unwrap();
        assert!(Arc::ptr_eq(&a2, &same));
        drop((a2, same));

        let a2 = attach("a2", idx("a2"), all, AttachPref::Auto, Some(on)).unwrap();
        assert_eq!(a2.mode(), AttachMode::Generic);
        assert!(a2.is_fast_path(), "generic with on runs the fast path");
    })
    .join()
    .unwrap();
}
