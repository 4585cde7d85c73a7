//! The `bpf(2)` commands the switch uses: create an XSKMAP, put a socket in
//! it, load an XDP program (with the verifier's log when it refuses),
//! attach it through a BPF link, and run it on a test packet.
//!
//! Each command gets its own `#[repr(C)]` attribute struct matching its arm
//! of `union bpf_attr`, passed with its own size: the kernel zero-fills the
//! rest of the union, so no struct here needs the union's full, growing
//! size.
//!
//! Why a link rather than netlink's `IFLA_XDP`: a link is a file
//! descriptor, and the kernel detaches the program when the last reference
//! to it closes, including when the process is killed. A netlink-attached
//! program stays on the interface after a crash and black-holes its
//! traffic.

use super::program::{assemble, Insn, ProgramKind, XdpAction};
use super::sys::own_fd;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_MAP_DELETE_ELEM: i64 = 3;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_TEST_RUN: i64 = 10;
const BPF_LINK_CREATE: i64 = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_MAP_TYPE_HASH`.
pub(crate) const MAP_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY`.
pub(crate) const MAP_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub(crate) const MAP_PERCPU_ARRAY: u32 = 6;
/// `BPF_MAP_TYPE_DEVMAP_HASH`.
pub(crate) const MAP_DEVMAP_HASH: u32 = 25;

const BPF_PROG_TYPE_XDP: u32 = 6;
/// Attach type `BPF_XDP`.
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run on the socket buffer.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run in the driver.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Bytes of verifier log kept when a load fails.
const LOG_SIZE: usize = 64 * 1024;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<T>(cmd: i64, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, initialised attribute struct of the size
    // passed; every pointer inside it (set by the callers below) refers to
    // memory that outlives this call and has the length stated beside it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    let l = b.len().min(15);
    n[..l].copy_from_slice(&b[..l]);
    n
}

/// An XSKMAP with `entries` slots (one per queue).
pub fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut a = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name16("oxvs_xsks"),
        ..Default::default()
    };
    own_fd(bpf(BPF_MAP_CREATE, &mut a)?)
}

/// Puts socket `sock` in slot `queue` of `map`.
pub fn xskmap_set(map: BorrowedFd<'_>, queue: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
    let key = queue;
    let value = sock.as_raw_fd() as u32;
    let mut a = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Empties slot `queue` of `map`.
pub fn xskmap_clear(map: BorrowedFd<'_>, queue: u32) -> io::Result<()> {
    let key = queue;
    let mut a = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
}

/// A map of `map_type` with the given key and value sizes.
pub(crate) fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut a = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    own_fd(bpf(BPF_MAP_CREATE, &mut a)?)
}

/// Creates or replaces (`flags` 0, `BPF_ANY`) the element `key` of `map`.
/// The lengths must be the map's key and value sizes.
pub(crate) fn map_update(
    map: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> io::Result<()> {
    let mut a = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Reads element `key` of `map` into `value` (the map's value size, or
/// that times the possible CPUs for a per-CPU map); false if absent.
pub(crate) fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut a = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes element `key` of `map`; false if it was absent.
pub(crate) fn map_delete(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<bool> {
    let mut a = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut a) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why a program did not load: the errno and the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    /// The system call's error.
    pub err: io::Error,
    /// The verifier log (empty if the kernel gave none).
    pub log: String,
}

/// Loads program `kind` over `map`, returning `miss` on an empty slot.
pub fn load_program(
    kind: ProgramKind,
    map: BorrowedFd<'_>,
    miss: XdpAction,
) -> Result<OwnedFd, LoadError> {
    let insns = assemble(kind, map.as_raw_fd(), miss);
    load_insns(&insns, kind.name())
}

pub(crate) fn load_insns(insns: &[Insn], name: &str) -> Result<OwnedFd, LoadError> {
    let license = c"Apache-2.0";
    let attr = |log: &mut Vec<u8>| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name16(name),
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    // First without a log (cheaper); on failure again with one, as libbpf
    // does, so the error carries what the verifier said.
    let mut none = Vec::new();
    let first = match bpf(BPF_PROG_LOAD, &mut attr(&mut none)) {
        Ok(fd) => {
            return own_fd(fd).map_err(|err| LoadError {
                err,
                log: String::new(),
            })
        }
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_SIZE];
    let mut a = attr(&mut log);
    let err = match bpf(BPF_PROG_LOAD, &mut a) {
        // Loaded with a log after all (a transient failure): keep it.
        Ok(fd) => {
            return own_fd(fd).map_err(|err| LoadError {
                err,
                log: String::new(),
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => first,
        Err(e) => e,
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    Err(LoadError {
        err,
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

/// Attaches `prog` to interface `ifindex` in the mode of `flags`
/// ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]); the program stays
/// attached while the returned link is open.
pub fn link_xdp(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    own_fd(bpf(BPF_LINK_CREATE, &mut a)?)
}

/// Runs `prog` once on `packet` (at least 14 bytes, at most a page less
/// the kernel's head- and tailroom) and returns its verdict. The context is
/// the loopback device's queue 0 of the calling thread's namespace, so the
/// program looks up slot 0 of its map.
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8]) -> io::Result<XdpAction> {
    let mut a = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(XdpAction::from_code(a.retval))
}

/// `struct xdp_md` as a test run's context.
#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs `prog` once on `packet` as received on queue 0 of interface
/// `ifindex` (of the calling thread's namespace) and returns its verdict
/// and the frame as the program left it (grown or shrunk by headroom
/// adjustments).
#[cfg(test)]
pub(crate) fn test_run_on(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ifindex: u32,
) -> io::Result<(XdpAction, Vec<u8>)> {
    let mut ctx = XdpMd {
        data_end: packet.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut out = vec![0u8; packet.len() + 256];
    let mut a = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_size_out: out.len() as u32,
        data_out: out.as_mut_ptr() as u64,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: &mut ctx as *mut XdpMd as u64,
        repeat: 1,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    out.truncate(a.data_size_out as usize);
    Ok((XdpAction::from_code(a.retval), out))
}

#[cfg(test)]
mod tests {
    //! These load real programs: they need root (CAP_BPF, CAP_NET_ADMIN)
    //! and skip with a message otherwise. They touch no interface.
    use super::*;
    use crate::afxdp::sys::is_root;
    use std::os::fd::AsFd;

    fn root(test: &str) -> bool {
        if !is_root() {
            eprintln!("skipping {test}: loading XDP programs needs root");
        }
        is_root()
    }

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        p.extend_from_slice(&ethertype.to_be_bytes());
        p
    }

    /// Ethernet + IPv4 (with `opts` option bytes) + L4 header to `dport`.
    fn ipv4(proto: u8, dport: u16, opts: usize, frag: u16) -> Vec<u8> {
        let mut p = eth(0x0800);
        let ihl = (20 + opts) / 4;
        p.extend_from_slice(&[0x40 | ihl as u8, 0, 0, 60, 0, 1]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0, 10, 244, 0, 1, 10, 244, 0, 2]);
        p.extend(std::iter::repeat_n(1u8, opts));
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 24, 0, 0]);
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn ipv6(next: u8, dport: u16) -> Vec<u8> {
        let mut p = eth(0x86dd);
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 24, next, 64]);
        p.extend_from_slice(&[0xfd; 32]);
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 24, 0, 0]);
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn load(kind: ProgramKind, miss: XdpAction) -> (OwnedFd, OwnedFd) {
        let map = create_xskmap(4).expect("create XSKMAP");
        let prog = load_program(kind, map.as_fd(), miss)
            .unwrap_or_else(|e| panic!("load {kind:?}: {}\n{}", e.err, e.log));
        (map, prog)
    }

    #[test]
    fn minimal_program_passes_when_the_slot_is_empty() {
        if !root("minimal_program_passes_when_the_slot_is_empty") {
            return;
        }
        let (_map, prog) = load(ProgramKind::All, XdpAction::Pass);
        for p in [ipv4(6, 80, 0, 0), eth(0x0806), ipv4(17, 6081, 0, 0)] {
            assert_eq!(
                test_run(prog.as_fd(), &p).expect("test run"),
                XdpAction::Pass
            );
        }
    }

    /// With the production miss action (PASS) an empty map makes every
    /// verdict PASS; assembling the same program with DROP as the miss
    /// action shows which frames reach `bpf_redirect_map` (DROP) and which
    /// the filter itself passes (PASS). With a socket in the slot the
    /// former become REDIRECT: `tests/afxdp.rs` checks that on a real
    /// interface.
    #[test]
    fn uplink_program_sends_only_geneve_to_the_map() {
        if !root("uplink_program_sends_only_geneve_to_the_map") {
            return;
        }
        let (_m1, prod) = load(ProgramKind::Uplink, XdpAction::Pass);
        let (_m2, probe) = load(ProgramKind::Uplink, XdpAction::Drop);
        let geneve = [
            ipv4(17, 6081, 0, 0),
            ipv4(17, 6081, 8, 0),
            ipv4(17, 6081, 40, 0x4000), // DF set: not a fragment
            ipv6(17, 6081),
        ];
        let other = [
            ipv4(6, 80, 0, 0),         // TCP
            ipv4(6, 6081, 0, 0),       // TCP to 6081
            ipv4(17, 53, 0, 0),        // DNS
            ipv4(17, 6081, 0, 0x2000), // first fragment (MF)
            ipv4(17, 6081, 0, 0x0010), // later fragment
            ipv6(17, 53),
            ipv6(6, 6081),
            ipv6(0, 6081), // hop-by-hop header first
            eth(0x0806),   // ARP
            eth(0x8100),   // 802.1Q
        ];
        for p in &geneve {
            assert_eq!(test_run(prod.as_fd(), p).expect("run"), XdpAction::Pass);
            assert_eq!(
                test_run(probe.as_fd(), p).expect("run"),
                XdpAction::Drop,
                "{p:02x?}"
            );
        }
        for p in &other {
            assert_eq!(
                test_run(probe.as_fd(), p).expect("run"),
                XdpAction::Pass,
                "{p:02x?}"
            );
        }
    }

    #[test]
    fn truncated_frames_pass() {
        if !root("truncated_frames_pass") {
            return;
        }
        let (_m, probe) = load(ProgramKind::Uplink, XdpAction::Drop);
        let v4 = ipv4(17, 6081, 0, 0);
        let v4_opts = ipv4(17, 6081, 40, 0);
        let v6 = ipv6(17, 6081);
        // Every cut from the bare Ethernet header (the kernel's minimum for a
        // test run) to one byte short of the whole UDP header passes; the
        // whole header reaches the map.
        for (p, full) in [
            (&v4, 14 + 20 + 8),
            (&v4_opts, 14 + 60 + 8),
            (&v6, 14 + 40 + 8),
        ] {
            for len in 14..full {
                assert_eq!(
                    test_run(probe.as_fd(), &p[..len]).expect("run"),
                    XdpAction::Pass,
                    "cut at {len}"
                );
            }
            assert_eq!(
                test_run(probe.as_fd(), &p[..full]).expect("run"),
                XdpAction::Drop
            );
        }
        // A header length below 20 is malformed, not a shorter header.
        let mut bad = v4.clone();
        bad[14] = 0x44;
        assert_eq!(test_run(probe.as_fd(), &bad).expect("run"), XdpAction::Pass);
    }

    #[test]
    fn verifier_refusal_carries_the_log() {
        if !root("verifier_refusal_carries_the_log") {
            return;
        }
        // Read r2 before anything wrote it.
        let bad = [
            Insn::raw(0xbf, 0x20, 0, 0), // r0 = r2
            Insn::raw(0x95, 0, 0, 0),    // exit
        ];
        let e = load_insns(&bad, "oxvs_bad").expect_err("the verifier refuses");
        assert_eq!(e.err.raw_os_error(), Some(libc::EACCES), "{}", e.err);
        assert!(e.log.contains("R2 !read_ok"), "log: {}", e.log);
    }
}
