//! The AF_PACKET port against a real kernel: a veth pair inside a network
//! namespace of its own, the port on one end and a plain raw socket (written
//! here with `libc`, independent of the code under test) on the other.
//!
//! Each test makes its own namespace (`oxpp<pid><tag>`), so tests run in
//! parallel and never touch the root namespace; a guard deletes it, and with
//! it the veths, even when an assertion fails. The calling thread enters the
//! namespace only while sockets are opened: a socket stays bound to its
//! interface wherever the thread goes afterwards.
//!
//! The tests need root (namespaces, raw sockets) and iproute2; without root
//! they print why and pass.

use datapath::afxdp::sys::is_root;
use datapath::buf::{Batch, FramePool, BATCH};
use datapath::port::packet::{PacketPort, PacketPortError, TX_QUEUE_DEPTH};
use datapath::port::NetPort;
use flowtable::DropReason;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};
use std::{io, mem, ptr};

/// The EtherType of every test frame (IEEE local experimental).
const TEST_ETHERTYPE: u16 = 0x88b5;
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const BROADCAST: [u8; 6] = [0xff; 6];

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: needs root for network namespaces and raw sockets");
            return;
        }
    };
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace holding a veth pair `a`-`b`, both up, without IPv6
/// link-local addresses (so the kernel sends nothing of its own on them).
/// Dropping it deletes the namespace and thus the veths.
struct VethNs {
    ns: String,
    a: String,
    b: String,
}

impl VethNs {
    fn new(tag: &str) -> VethNs {
        let pid = std::process::id();
        let v = VethNs {
            ns: format!("oxpp{pid}{tag}"),
            a: format!("pa{pid}"),
            b: format!("pb{pid}"),
        };
        let _ = Command::new("ip").args(["netns", "del", &v.ns]).output();
        ip(&["netns", "add", &v.ns]);
        // From here on the guard exists, so a failure below still cleans up.
        v.ip(&["link", "add", &v.a, "type", "veth", "peer", "name", &v.b]);
        for dev in [&v.a, &v.b] {
            v.ip(&["link", "set", dev, "addrgenmode", "none"]);
            v.ip(&["link", "set", dev, "up"]);
        }
        v
    }

    /// `ip -n NS ARGS`.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Adds a VLAN device on `b` and brings it up; the error is `ip`'s
    /// message (kernels without 802.1Q support have no VLAN devices).
    fn add_vlan(&self, name: &str, extra: &[&str]) -> Result<(), String> {
        let mut args = vec!["-n", &self.ns, "link", "add", "link", &self.b, "name", name];
        args.extend_from_slice(&["type", "vlan"]);
        args.extend_from_slice(extra);
        let out = Command::new("ip").args(&args).output().expect("run ip");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        self.ip(&["link", "set", name, "addrgenmode", "none"]);
        self.ip(&["link", "set", name, "up"]);
        Ok(())
    }

    /// Runs `f` with the calling thread inside the namespace.
    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _inside = NsEnter::new(&self.ns);
        f()
    }
}

impl Drop for VethNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Moves the calling thread into a named network namespace and back on drop.
struct NsEnter {
    home: File,
}

impl NsEnter {
    fn new(ns: &str) -> NsEnter {
        let home = File::open("/proc/thread-self/ns/net").expect("open own netns");
        let target = File::open(format!("/run/netns/{ns}")).expect("open target netns");
        setns(&target);
        NsEnter { home }
    }
}

impl Drop for NsEnter {
    fn drop(&mut self) {
        setns(&self.home);
    }
}

fn setns(ns: &File) {
    // SAFETY: setns(2) on a descriptor of a network namespace we hold open;
    // it affects only the calling thread.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
}

/// The port on `a` and the test's socket on `b`.
fn open_pair(lab: &VethNs) -> (PacketPort, RawSock) {
    (PacketPort::open(&lab.a).unwrap(), RawSock::open(&lab.b))
}

/// Waits up to `timeout` for `fd` to become readable.
fn wait_readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, count 1.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    r > 0
}

/// The test's own end: a raw packet socket bound to one interface, not
/// seeing its own transmissions.
struct RawSock {
    fd: OwnedFd,
}

impl RawSock {
    fn open(ifname: &str) -> RawSock {
        let c = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: NUL-terminated string alive across the call.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {ifname}");
        // SAFETY: socket(2) takes no pointers.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                ptr::addr_of!(one).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "PACKET_IGNORE_OUTGOING");
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
            sll_ifindex: ifindex as i32,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: a complete sockaddr_ll and its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                ptr::addr_of!(addr).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "bind: {}", io::Error::last_os_error());
        RawSock { fd }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is live for the call and its length is passed.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            r,
            frame.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
    }

    /// The next test frame received within `timeout` (other frames are
    /// skipped), or `None`.
    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 9000];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(self.fd.as_raw_fd(), left) {
                return None;
            }
            // SAFETY: `buf` is live and writable for its whole length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 && is_test_frame(&buf[..n as usize]) {
                return Some(buf[..n as usize].to_vec());
            }
        }
    }
}

/// A test frame: broadcast, our source, `tags` (TPID, TCI) after the
/// addresses, then the test EtherType, then a payload derived from `seq`,
/// `len` bytes in all.
fn frame(seq: u32, len: usize, tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&SRC_MAC);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    let mut i = 0u32;
    while f.len() < len {
        f.push((seq.wrapping_mul(31).wrapping_add(i * 7)) as u8);
        i += 1;
    }
    f.truncate(len.max(14));
    f
}

/// Whether a frame is one of ours: the test EtherType after any tags.
fn is_test_frame(f: &[u8]) -> bool {
    let mut at = 12;
    while f.len() >= at + 2 {
        match u16::from_be_bytes([f[at], f[at + 1]]) {
            0x8100 | 0x88a8 => at += 4,
            t => return t == TEST_ETHERTYPE,
        }
    }
    false
}

/// Receives from the port until `want` test frames arrived or 5 s passed;
/// returns them and the largest batch seen.
fn receive(port: &mut PacketPort, pool: &mut FramePool, want: usize) -> (Vec<Vec<u8>>, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut batch = Batch::default();
    let mut largest = 0;
    while got.len() < want && Instant::now() < deadline {
        port.rx_burst(pool, &mut batch);
        largest = largest.max(batch.len);
        for d in batch.as_slice() {
            let bytes = pool.data(d);
            if is_test_frame(bytes) {
                got.push(bytes.to_vec());
            } else {
                eprintln!("ignoring a frame that is not the test's: {bytes:02x?}");
            }
            pool.free(*d);
        }
        if batch.len == 0 {
            wait_readable(port.poll_fd().unwrap(), Duration::from_millis(100));
        }
    }
    (got, largest)
}

const SIZES: [usize; 7] = [60, 64, 15, 128, 1000, 1514, 333];

#[test]
fn receives_frames_byte_exact_in_batches() {
    require_root!();
    let lab = VethNs::new("rx");
    let (mut port, peer) = lab.enter(|| open_pair(&lab));
    assert_eq!(port.name(), lab.a);
    assert_eq!(port.mode(), "af_packet");
    assert!(port.poll_fd().is_some());
    let mut pool = FramePool::new(256);

    let sent: Vec<Vec<u8>> = (0..100)
        .map(|i| frame(i, SIZES[i as usize % SIZES.len()], &[]))
        .collect();
    for f in &sent {
        peer.send(f);
    }
    let (got, largest) = receive(&mut port, &mut pool, sent.len());
    assert_eq!(got.len(), sent.len(), "frames received");
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }
    assert!(largest > 1 && largest <= BATCH, "largest batch {largest}");
    let st = port.stats();
    assert_eq!(st.rx_packets, 100);
    assert_eq!(
        st.rx_bytes,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(st.rx_dropped, 0);
    assert_eq!(pool.n_free(), 256, "every frame back in the pool");

    // Nothing that leaves the interface comes back to the port: neither
    // its own frames (the kernel never loops a packet socket's frames back
    // to it) nor another sender's (PACKET_IGNORE_OUTGOING).
    let other = lab.enter(|| RawSock::open(&lab.a));
    for i in 0..5 {
        let d = pool.alloc_from(&frame(1000 + i, 100, &[])).unwrap();
        port.send(&mut pool, d).unwrap();
    }
    port.flush(&mut pool);
    other.send(&frame(2000, 100, &[]));
    for i in 0..5 {
        let want = frame(1000 + i, 100, &[]);
        assert_eq!(peer.recv(Duration::from_secs(2)), Some(want));
    }
    assert_eq!(
        peer.recv(Duration::from_secs(2)),
        Some(frame(2000, 100, &[]))
    );
    let echo = receive_for(&mut port, &mut pool, Duration::from_millis(300));
    assert!(echo.is_empty(), "outgoing frames came back: {echo:02x?}");
    assert_eq!(pool.n_free(), 256);
}

/// Everything the port receives within `window`.
fn receive_for(port: &mut PacketPort, pool: &mut FramePool, window: Duration) -> Vec<Vec<u8>> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    let mut batch = Batch::default();
    while Instant::now() < end {
        port.rx_burst(pool, &mut batch);
        for d in batch.as_slice() {
            got.push(pool.data(d).to_vec());
            pool.free(*d);
        }
        wait_readable(port.poll_fd().unwrap(), Duration::from_millis(20));
    }
    got
}

#[test]
fn transmits_queued_frames_and_returns_them_to_the_pool() {
    require_root!();
    let lab = VethNs::new("tx");
    let (mut port, peer) = lab.enter(|| open_pair(&lab));
    let mut pool = FramePool::new(2 * TX_QUEUE_DEPTH);
    let total = pool.n_free();

    // 70 frames: three sendmmsg calls. Frame 40 is longer than the MTU
    // allows; the kernel refuses it and the rest still go.
    let mut sent = Vec::new();
    for i in 0..70u32 {
        let len = if i == 40 {
            1600
        } else {
            SIZES[i as usize % SIZES.len()]
        };
        let f = frame(i, len, &[]);
        let d = pool.alloc_from(&f).unwrap();
        port.send(&mut pool, d).unwrap();
        if i != 40 {
            sent.push(f);
        }
    }
    assert_eq!(port.tx_pending(), 70);
    port.flush(&mut pool);
    assert_eq!(port.tx_pending(), 0);
    assert_eq!(pool.n_free(), total, "sent frames return to the pool");
    for (i, want) in sent.iter().enumerate() {
        let got = peer.recv(Duration::from_secs(2));
        assert_eq!(got.as_ref(), Some(want), "frame {i} at the peer");
    }
    let st = port.stats();
    assert_eq!(st.tx_packets, 69);
    assert_eq!(
        st.tx_bytes,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(st.tx_dropped, 1, "the frame longer than the MTU");

    // A full queue refuses more and the caller keeps the frame.
    for i in 0..TX_QUEUE_DEPTH as u32 {
        let d = pool.alloc_from(&frame(i, 64, &[])).unwrap();
        port.send(&mut pool, d).unwrap();
    }
    let extra = pool.alloc_from(&frame(9999, 64, &[])).unwrap();
    assert_eq!(port.send(&mut pool, extra), Err(DropReason::TxFull));
    pool.free(extra);
    port.discard_queued(&mut pool);
    assert_eq!(pool.n_free(), total);
    assert_eq!(port.stats().tx_dropped, 1 + 1 + TX_QUEUE_DEPTH as u64);
}

#[test]
fn vlan_tags_in_the_bytes_are_stripped_by_the_kernel_and_put_back() {
    require_root!();
    let lab = VethNs::new("vb");
    let (mut port, peer, observer) = lab.enter(|| {
        (
            PacketPort::open(&lab.a).unwrap(),
            RawSock::open(&lab.b),
            RawSock::open(&lab.a),
        )
    });
    let mut pool = FramePool::new(64);
    let cases = [
        // VID 100, PCP 1.
        frame(3, 100, &[(0x8100, 0x2064)]),
        // A priority tag (VID 0, PCP 3): only the auxdata flag tells it from
        // no tag at all.
        frame(4, 80, &[(0x8100, 0x6000)]),
        // Q-in-Q: only the outer tag is taken out, and put back.
        frame(5, 120, &[(0x88a8, 7), (0x8100, 8)]),
    ];
    for f in &cases {
        peer.send(f);
    }
    // What a plain packet socket sees: the outer tag is gone from the bytes.
    let stripped = [
        frame(3, 96, &[]),
        frame(4, 76, &[]),
        frame(5, 116, &[(0x8100, 8)]),
    ];
    for want in &stripped {
        assert_eq!(observer.recv(Duration::from_secs(2)).as_ref(), Some(want));
    }
    // What the port delivers: the frame as it was on the wire.
    let (got, _) = receive(&mut port, &mut pool, cases.len());
    assert_eq!(got, cases);
    assert_eq!(
        port.stats().rx_bytes,
        cases.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(pool.n_free(), 64);
}

#[test]
fn vlan_device_tags_are_put_back() {
    require_root!();
    let lab = VethNs::new("vd");
    let pid = std::process::id();
    let (q10, ad20) = (format!("q10-{pid}"), format!("ad20-{pid}"));
    // VID 10, with skb priority 0 sent as PCP 5; VID 20 with an 802.1ad TPID.
    if let Err(e) = lab.add_vlan(&q10, &["id", "10", "egress-qos-map", "0:5"]) {
        eprintln!("skipping: no VLAN devices in this kernel (CONFIG_VLAN_8021Q): {e}");
        return;
    }
    lab.add_vlan(&ad20, &["protocol", "802.1ad", "id", "20"])
        .unwrap();
    let (mut port, peer10, peer20) = lab.enter(|| {
        (
            PacketPort::open(&lab.a).unwrap(),
            RawSock::open(&q10),
            RawSock::open(&ad20),
        )
    });
    let mut pool = FramePool::new(64);

    // The VLAN device hands the tag to the veth as skb metadata.
    peer10.send(&frame(1, 100, &[]));
    peer20.send(&frame(2, 100, &[]));
    let (got, _) = receive(&mut port, &mut pool, 2);
    assert_eq!(
        got,
        [
            frame(1, 104, &[(0x8100, 0xa00a)]),
            frame(2, 104, &[(0x88a8, 20)])
        ]
    );

    // A tagged frame the port sends reaches the VLAN device untagged.
    let d = pool.alloc_from(&frame(6, 104, &[(0x8100, 10)])).unwrap();
    port.send(&mut pool, d).unwrap();
    port.flush(&mut pool);
    assert_eq!(
        peer10.recv(Duration::from_secs(2)),
        Some(frame(6, 100, &[]))
    );
    assert_eq!(pool.n_free(), 64);
}

#[test]
fn an_empty_pool_leaves_frames_in_the_socket() {
    require_root!();
    let lab = VethNs::new("ep");
    let (mut port, peer) = lab.enter(|| open_pair(&lab));
    let mut pool = FramePool::new(4);
    let held: Vec<_> = (0..4).map(|_| pool.alloc().unwrap()).collect();
    let sent: Vec<Vec<u8>> = (0..10).map(|i| frame(i, 200, &[])).collect();
    for f in &sent {
        peer.send(f);
    }
    assert!(wait_readable(
        port.poll_fd().unwrap(),
        Duration::from_secs(2)
    ));
    let mut batch = Batch::default();
    port.rx_burst(&mut pool, &mut batch);
    assert_eq!(batch.len, 0, "nothing to receive into");
    for d in held {
        pool.free(d);
    }
    let (got, largest) = receive(&mut port, &mut pool, sent.len());
    assert_eq!(got, sent);
    assert!(largest <= 4);
    assert_eq!(port.stats().rx_dropped, 0);
    assert_eq!(pool.n_free(), 4);
}

#[test]
fn open_reports_bad_names_and_missing_interfaces() {
    for bad in ["", "a-name-of-16-byt", "nul\0inside"] {
        assert!(
            matches!(PacketPort::open(bad), Err(PacketPortError::BadName { .. })),
            "{bad:?}"
        );
    }
    let err = PacketPort::open("oxvs-no-such0").err().unwrap();
    assert!(matches!(err, PacketPortError::NoSuchInterface { .. }));
    assert_eq!(
        err.to_string(),
        "af_packet port oxvs-no-such0: there is no interface of that name in this network namespace"
    );
}
