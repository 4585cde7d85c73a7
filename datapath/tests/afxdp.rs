//! AF_XDP ports against real veth pairs, each test in network namespaces of
//! its own (`oxt-xsk-<pid>-<test>-<role>`, addresses in 10.244.0.0/16),
//! deleted by a guard even when the test panics. Nothing outside those
//! namespaces is touched.
//!
//! The switch side runs in a thread that entered the switch namespace
//! (`setns` affects only that thread); the hosts are threads in their own
//! namespaces talking through ordinary UDP sockets, so what the port
//! receives and sends is checked against a real kernel stack: bytes,
//! checksums, ARP, the uplink filter. After each port is dropped,
//! `ip -d link show` must show no XDP program and every frame must be back
//! in the pool.
//!
//! Needs root (skips with a message otherwise), `ip` (iproute2), `ping`
//! (iputils-ping) and `ethtool`: host-side veths need transmit checksum
//! offload off, or their frames carry partial checksums that AF_XDP does
//! not fix up and the receiving stack drops.

use datapath::afxdp::sys::is_root;
use datapath::afxdp::{enter_netns, AttachPref, ProgramKind, XdpAction, XskError};
use datapath::buf::{Batch, FramePool};
use datapath::port::xsk::{BindPref, ModePref, XskPort};
use datapath::port::NetPort;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FRAMES: usize = 4096;
const MAC_A1: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 1];
const MAC_B1: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 1];
const MAC_A2: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 2];
const MAC_B2: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 2];

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn root(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: AF_XDP needs root (CAP_NET_ADMIN, CAP_BPF)");
        return false;
    }
    let ok = Command::new("sh")
        .args(["-c", "command -v ethtool"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{test} needs ethtool (Debian package `ethtool`) to turn off tx checksum offload"
    );
    true
}

/// Runs a command, panicking with its output if it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces of one test; deleted on drop (veths die with them).
struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    fn new(test: &str) -> Lab {
        Lab {
            prefix: format!("oxt-xsk-{}-{test}", std::process::id()),
            made: Vec::new(),
        }
    }

    fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        run(&["ip", "netns", "add", &name]);
        self.made.push(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth and its peer, each (namespace, name, MAC), both up.
    fn veth(
        &self,
        (ns_a, a, mac_a): (&str, &str, [u8; 6]),
        (ns_b, b, mac_b): (&str, &str, [u8; 6]),
        queues: u32,
    ) {
        let q = queues.to_string();
        run(&[
            "ip",
            "-n",
            ns_a,
            "link",
            "add",
            a,
            "address",
            &mac(mac_a),
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "address",
            &mac(mac_b),
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "netns",
            ns_b,
        ]);
        run(&["ip", "-n", ns_a, "link", "set", a, "up"]);
        run(&["ip", "-n", ns_b, "link", "set", b, "up"]);
    }

    /// Gives host interface `dev` an address, transmit checksums in
    /// software, and optionally a static neighbour.
    fn host(&self, ns: &str, dev: &str, addr: &str, neigh: Option<(&str, [u8; 6])>) {
        run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        run(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"]);
        if let Some((ip, m)) = neigh {
            run(&[
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                ip,
                "lladdr",
                &mac(m),
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Whether an XDP program is attached to `dev` in `ns`.
fn xdp_attached(ns: &str, dev: &str) -> bool {
    run(&["ip", "-n", ns, "-d", "link", "show", "dev", dev]).contains("prog/xdp")
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
        f()
    })
}

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Ethernet + IPv4 + UDP with correct checksums.
fn udp_frame(
    src: ([u8; 6], [u8; 4], u16),
    dst: ([u8; 6], [u8; 4], u16),
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1, dst.1, 64)
        .udp(src.2, dst.2);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("build frame");
    v
}

fn sum16(bytes: &[u8], mut acc: u32) -> u32 {
    for c in bytes.chunks(2) {
        acc += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The UDP destination port and payload of an Ethernet/IPv4/UDP frame whose
/// IPv4 and UDP checksums verify; None for anything else.
fn udp_of(frame: &[u8]) -> Option<(u16, Vec<u8>)> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let ihl = (frame[14] & 0x0f) as usize * 4;
    let ip = &frame[14..14 + ihl];
    assert_eq!(fold(sum16(ip, 0)), 0xffff, "IPv4 header checksum");
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let udp = &frame[14 + ihl..14 + total];
    let mut pseudo = sum16(&ip[12..20], 17);
    pseudo += udp.len() as u32;
    if udp[6..8] != [0, 0] {
        assert_eq!(
            fold(sum16(udp, pseudo)),
            0xffff,
            "UDP checksum of {frame:02x?}"
        );
    }
    Some((u16::from_be_bytes([udp[2], udp[3]]), udp[8..].to_vec()))
}

/// Receives on `port` until `n` frames pass `keep` or `limit` passes;
/// returns the kept frames (all frames are freed).
fn receive(
    port: &mut XskPort,
    pool: &mut FramePool,
    n: usize,
    limit: Duration,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut batch = Batch::default();
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        port.rx_burst(pool, &mut batch);
        for d in batch.as_slice() {
            let bytes = pool.data(d).to_vec();
            pool.free(*d);
            if keep(&bytes) {
                got.push(bytes);
            }
        }
        port.flush(pool);
        if batch.len == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

/// Flushes until every transmitted frame is back: the pool's free frames
/// plus those in the fill ring make the whole pool.
fn settle(ports: &mut [&mut XskPort], pool: &mut FramePool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for p in ports.iter_mut() {
            p.flush(pool);
        }
        let lent: usize = ports.iter().map(|p| p.frames_lent()).sum();
        if pool.n_free() + lent == FRAMES && ports.iter().all(|p| p.frames_lent() == 1024) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "frames not back: {} free, {lent} lent",
            pool.n_free()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Receives and transmits through one port, in every mode veth offers, and
/// reopens the queue right after each close.
#[test]
fn rx_and_tx_through_a_veth() {
    if !root("rx_and_tx_through_a_veth") {
        return;
    }
    let mut lab = Lab::new("rxtx");
    let (sw, h1) = (lab.ns("sw"), lab.ns("h1"));
    lab.veth((&sw, "a1", MAC_A1), (&h1, "b1", MAC_B1), 1);
    lab.host(&h1, "b1", "10.244.1.2/24", Some(("10.244.1.1", MAC_A1)));

    let host = ([10, 244, 1, 2], 5000);
    let me = ([10, 244, 1, 1], 7000);
    let modes = [
        (AttachPref::Auto, "afxdp native copy"),
        (AttachPref::Generic, "afxdp generic copy"),
        (AttachPref::Native, "afxdp native copy"),
    ];
    for (attach, expect_mode) in modes {
        let pref = ModePref {
            attach,
            bind: BindPref::Auto,
        };
        let (opened_tx, opened) = mpsc::channel();
        let sw_ns = sw.clone();
        let switch = in_ns(&sw, move || {
            let mut pool = FramePool::new_umem(FRAMES).expect("UMEM");
            let mut port = XskPort::open("a1", 0, &mut pool, ProgramKind::All, pref)
                .unwrap_or_else(|e| panic!("open a1 ({attach:?}): {e}"));
            assert!(xdp_attached(&sw_ns, "a1"));
            opened_tx.send(port.mode()).expect("main thread");

            let rx = receive(&mut port, &mut pool, 8, Duration::from_secs(10), |f| {
                udp_of(f).is_some_and(|(dport, _)| dport == me.1)
            });
            let payloads: Vec<Vec<u8>> = rx.iter().map(|f| udp_of(f).expect("UDP").1).collect();
            let want: Vec<Vec<u8>> = (0..8)
                .map(|i| format!("to the switch {i}").into_bytes())
                .collect();
            assert_eq!(payloads, want, "received frames");
            assert_eq!(
                &rx[0][0..12],
                &[MAC_A1, MAC_B1].concat()[..],
                "MAC addresses"
            );

            // 100 frames in one flush: more than one kick's worth (copy mode
            // sends 32 per sendto).
            for i in 0..100 {
                let f = udp_frame(
                    (MAC_A1, me.0, me.1),
                    (MAC_B1, host.0, host.1),
                    format!("to the host {i}").as_bytes(),
                );
                let d = pool.alloc_from(&f).expect("frame");
                port.send(&mut pool, d).expect("send");
            }
            settle(&mut [&mut port], &mut pool);
            let s = port.stats();
            assert_eq!(
                (s.tx_packets, s.tx_dropped, s.rx_dropped),
                (100, 0, 0),
                "{s:?}"
            );
            assert!(s.rx_packets >= 8, "{s:?}");
            drop(port);
            assert!(
                !xdp_attached(&sw_ns, "a1"),
                "XDP program left on a1 after the port closed"
            );
            pool.reclaim();
            assert_eq!(pool.n_free(), FRAMES, "every frame back in the pool");
        });
        let Ok(mode) = opened.recv_timeout(Duration::from_secs(10)) else {
            join(switch);
            panic!("the switch thread did not open the port");
        };
        assert_eq!(mode, expect_mode);
        let hostside = in_ns(&h1, move || {
            let s = UdpSocket::bind(SocketAddr::from(host)).expect("bind host socket");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            for i in 0..8 {
                s.send_to(
                    format!("to the switch {i}").as_bytes(),
                    SocketAddr::from(me),
                )
                .expect("send to switch");
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < 100 {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        assert_eq!(from, SocketAddr::from(me));
                        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    Err(e) => panic!("host received {} of 100 frames: {e}", got.len()),
                }
            }
            got
        });
        let got = join(hostside);
        join(switch);
        let want: Vec<String> = (0..100).map(|i| format!("to the host {i}")).collect();
        assert_eq!(got, want, "frames the host received ({attach:?})");
    }
}

/// The uplink program gives the port Geneve and nothing else: ARP, ICMP
/// and other UDP reach the switch namespace's own stack.
#[test]
fn uplink_takes_only_geneve() {
    if !root("uplink_takes_only_geneve") {
        return;
    }
    let mut lab = Lab::new("uplink");
    let (sw, h1) = (lab.ns("sw"), lab.ns("h1"));
    lab.veth((&sw, "a1", MAC_A1), (&h1, "b1", MAC_B1), 1);
    run(&["ip", "-n", &sw, "addr", "add", "10.244.2.1/24", "dev", "a1"]);
    lab.host(&h1, "b1", "10.244.2.2/24", None);

    let (ready_tx, ready) = mpsc::channel();
    let (done_tx, done) = mpsc::channel::<()>();
    let sw_ns = sw.clone();
    let switch = in_ns(&sw, move || {
        let mut pool = FramePool::new_umem(FRAMES).expect("UMEM");
        let mut port = XskPort::open("a1", 0, &mut pool, ProgramKind::Uplink, ModePref::default())
            .unwrap_or_else(|e| panic!("open a1: {e}"));
        // With this socket in slot 0, the program's verdicts on test frames.
        let geneve = udp_frame(
            (MAC_B1, [10, 244, 2, 2], 40000),
            (MAC_A1, [10, 244, 2, 1], 6081),
            b"x",
        );
        let dns = udp_frame(
            (MAC_B1, [10, 244, 2, 2], 40000),
            (MAC_A1, [10, 244, 2, 1], 53),
            b"x",
        );
        assert_eq!(
            port.xdp_verdict(&geneve).expect("test run"),
            XdpAction::Redirect
        );
        assert_eq!(port.xdp_verdict(&dns).expect("test run"), XdpAction::Pass);
        ready_tx.send(()).expect("main thread");

        let rx = receive(&mut port, &mut pool, 5, Duration::from_secs(10), |f| {
            udp_of(f).is_some()
        });
        // Anything else that arrived would be in the next bursts: look once
        // more after the host finished.
        done.recv_timeout(Duration::from_secs(10))
            .expect("host done");
        let late = receive(
            &mut port,
            &mut pool,
            usize::MAX,
            Duration::from_millis(300),
            |_| true,
        );
        let ports: Vec<u16> = rx.iter().map(|f| udp_of(f).expect("UDP").0).collect();
        assert_eq!(
            ports,
            vec![6081; 5],
            "the port got exactly the Geneve datagrams"
        );
        assert!(
            late.is_empty(),
            "unexpected frames at the port: {late:02x?}"
        );
        drop(port);
        assert!(!xdp_attached(&sw_ns, "a1"));
        pool.reclaim();
        assert_eq!(pool.n_free(), FRAMES);
    });
    ready.recv_timeout(Duration::from_secs(10)).ok();
    let h1_ns = h1.clone();
    let hostside = in_ns(&h1, move || {
        // ARP and ICMP are passed to the switch namespace's kernel, which
        // answers.
        run(&[
            "ip",
            "netns",
            "exec",
            &h1_ns,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "10.244.2.1",
        ]);
        let s = UdpSocket::bind("10.244.2.2:0").expect("bind");
        for i in 0..5 {
            s.send_to(format!("geneve {i}").as_bytes(), "10.244.2.1:6081")
                .expect("send");
            s.send_to(format!("dns {i}").as_bytes(), "10.244.2.1:53")
                .expect("send");
        }
    });
    join(hostside);
    done_tx.send(()).ok();
    join(switch);
}

/// Two ports of one poll thread share one UMEM and bridge two hosts by
/// moving descriptors: no copy in user space.
#[test]
fn shared_umem_bridges_two_hosts() {
    if !root("shared_umem_bridges_two_hosts") {
        return;
    }
    let mut lab = Lab::new("bridge");
    let (sw, h1, h2) = (lab.ns("sw"), lab.ns("h1"), lab.ns("h2"));
    lab.veth((&sw, "a1", MAC_A1), (&h1, "b1", MAC_B1), 1);
    lab.veth((&sw, "a2", MAC_A2), (&h2, "b2", MAC_B2), 1);
    lab.host(&h1, "b1", "10.244.3.1/24", Some(("10.244.3.2", MAC_B2)));
    lab.host(&h2, "b2", "10.244.3.2/24", Some(("10.244.3.1", MAC_B1)));

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = mpsc::channel();
    let stop_sw = stop.clone();
    let sw_ns = sw.clone();
    let switch = in_ns(&sw, move || {
        let mut pool = FramePool::new_umem(FRAMES).expect("UMEM");
        let mut p1 = XskPort::open("a1", 0, &mut pool, ProgramKind::All, ModePref::default())
            .unwrap_or_else(|e| panic!("open a1: {e}"));
        let mut p2 = XskPort::open("a2", 0, &mut pool, ProgramKind::All, ModePref::default())
            .unwrap_or_else(|e| panic!("open a2: {e}"));
        assert!(
            !p1.shares_umem() && p2.shares_umem(),
            "the second socket shares the first's UMEM"
        );
        assert_eq!(p1.mode(), p2.mode());
        ready_tx.send(()).expect("main thread");
        let mut forwarded = 0u64;
        let mut relay = |from: &mut XskPort, to: &mut XskPort, pool: &mut FramePool| {
            let mut batch = Batch::default();
            from.rx_burst(pool, &mut batch);
            for &d in batch.as_slice() {
                match to.send(pool, d) {
                    Ok(()) => forwarded += 1,
                    Err(_) => pool.free(d),
                }
            }
        };
        while !stop_sw.load(Ordering::Relaxed) {
            relay(&mut p1, &mut p2, &mut pool);
            relay(&mut p2, &mut p1, &mut pool);
            p1.flush(&mut pool);
            p2.flush(&mut pool);
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(forwarded >= 40, "forwarded {forwarded}");
        settle(&mut [&mut p1, &mut p2], &mut pool);
        drop(p1);
        drop(p2);
        assert!(!xdp_attached(&sw_ns, "a1") && !xdp_attached(&sw_ns, "a2"));
        pool.reclaim();
        assert_eq!(pool.n_free(), FRAMES);
    });
    ready.recv_timeout(Duration::from_secs(10)).ok();
    // The client starts only once the echo socket is bound: a datagram
    // sent before that meets a closed port in h2, and UDP has no retry.
    let (bound_tx, bound) = mpsc::channel();
    let echo = in_ns(&h2, move || {
        let s = UdpSocket::bind("10.244.3.2:6000").expect("bind");
        bound_tx.send(()).expect("main thread");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        for i in 0..20 {
            let (n, from) = s
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("h2 got {i} of 20: {e}"));
            s.send_to(&buf[..n], from).expect("echo");
        }
    });
    bound
        .recv_timeout(Duration::from_secs(10))
        .expect("echo socket bound");
    let client = in_ns(&h1, || {
        let s = UdpSocket::bind("10.244.3.1:5000").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        for i in 0..20 {
            let msg = format!("across the bridge {i}");
            s.send_to(msg.as_bytes(), "10.244.3.2:6000").expect("send");
            let (n, _) = s
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("echo {i}: {e}"));
            assert_eq!(&buf[..n], msg.as_bytes());
        }
    });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        join(client);
        join(echo);
    }));
    stop.store(true, Ordering::Relaxed);
    join(switch);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// Several queues share one attachment; what cannot work fails with an
/// error that says why, and leaves nothing attached.
#[test]
fn queues_share_the_program_and_errors_say_why() {
    if !root("queues_share_the_program_and_errors_say_why") {
        return;
    }
    let mut lab = Lab::new("queues");
    let (sw, h1) = (lab.ns("sw"), lab.ns("h1"));
    lab.veth((&sw, "a1", MAC_A1), (&h1, "b1", MAC_B1), 2);
    let sw_ns = sw.clone();
    join(in_ns(&sw, move || {
        let mut heap = FramePool::new(64);
        let e = XskPort::open("a1", 0, &mut heap, ProgramKind::All, ModePref::default()).err();
        assert!(matches!(e, Some(XskError::PoolNotUmem)), "{e:?}");

        let mut pool = FramePool::new_umem(FRAMES).expect("UMEM");
        let e = XskPort::open("nope0", 0, &mut pool, ProgramKind::All, ModePref::default()).err();
        assert!(matches!(e, Some(XskError::NoSuchInterface { .. })), "{e:?}");

        // veth has no zero-copy: the error names the mode and errno.
        let zc = ModePref {
            attach: AttachPref::Native,
            bind: BindPref::ZeroCopy,
        };
        let e = XskPort::open("a1", 0, &mut pool, ProgramKind::All, zc).err();
        let msg = e.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(e, Some(XskError::Bind { .. })) && msg.contains("zerocopy: "),
            "{msg}"
        );
        assert!(
            !xdp_attached(&sw_ns, "a1"),
            "a failed open left XDP attached"
        );

        let q0 = XskPort::open("a1", 0, &mut pool, ProgramKind::All, ModePref::default())
            .expect("queue 0");
        let q1 = XskPort::open("a1", 1, &mut pool, ProgramKind::All, ModePref::default())
            .expect("queue 1");
        let e = XskPort::open("a1", 1, &mut pool, ProgramKind::Uplink, ModePref::default()).err();
        assert!(matches!(e, Some(XskError::ProgramMismatch { .. })), "{e:?}");
        let generic = ModePref {
            attach: AttachPref::Generic,
            bind: BindPref::Auto,
        };
        let e = XskPort::open("a1", 1, &mut pool, ProgramKind::All, generic).err();
        assert!(
            matches!(e, Some(XskError::AttachModeMismatch { .. })),
            "{e:?}"
        );
        let e = XskPort::open("a1", 1, &mut pool, ProgramKind::All, ModePref::default()).err();
        let msg = e.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            msg.contains("Device or resource busy"),
            "a taken queue: {msg}"
        );
        // Frames queued for transmission and never flushed belong to the
        // port; closing it hands them back with its fill frames.
        let mut q0 = q0;
        for _ in 0..10 {
            let f = udp_frame(
                (MAC_A1, [10, 244, 4, 1], 1),
                (MAC_B1, [10, 244, 4, 2], 2),
                b"never sent",
            );
            let d = pool.alloc_from(&f).expect("frame");
            q0.send(&mut pool, d).expect("send");
        }
        assert_eq!(q0.frames_lent(), 1024 + 10);
        drop(q0);
        pool.reclaim();
        assert_eq!(
            pool.n_free() + q1.frames_lent(),
            FRAMES,
            "nothing lost with queue 0"
        );
        assert!(
            xdp_attached(&sw_ns, "a1"),
            "queue 1 still needs the program"
        );
        drop(q1);
        assert!(!xdp_attached(&sw_ns, "a1"));
        pool.reclaim();
        assert_eq!(pool.n_free(), FRAMES);
    }));
}
