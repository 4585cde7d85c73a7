//! One XDP attachment per interface: the XSKMAP, the program and the BPF
//! link that keeps it on the interface, shared by every port (queue) of
//! that interface and detached when the last of them is dropped.
//!
//! The ports of one interface may live on different poll threads, so the
//! attachment is an `Arc` found through a process-wide registry of weak
//! references keyed by (network namespace, ifindex): ifindexes repeat
//! across namespaces, and the tests run ports in several namespaces at
//! once. The registry lock is held while an attachment is created, so two
//! ports opening queues of one interface at the same time attach once.
//!
//! Only the link holds the program on the interface. Dropping the last
//! `Arc` closes it and the kernel detaches the program at once; a killed
//! process's link is closed by the kernel the same way.

use super::bpf::{self, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use super::fastpath::FastPathMaps;
use super::program::{ProgramKind, XdpAction};
use super::{retry_busy, XskError};
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Slots in each XSKMAP: the highest queue number a port can bind, plus one.
pub const MAP_ENTRIES: u32 = 256;

/// Where the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// On the socket buffer, after the driver (`XDP_FLAGS_SKB_MODE`); works
    /// on any interface, slower.
    Generic,
}

impl AttachMode {
    /// `native` or `generic`.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// Which attach modes to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachPref {
    /// Native, then generic if the driver refuses (veth refuses native with
    /// ERANGE when its peer's MTU is large).
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

impl AttachPref {
    fn modes(self) -> &'static [AttachMode] {
        match self {
            AttachPref::Auto => &[AttachMode::Native, AttachMode::Generic],
            AttachPref::Native => &[AttachMode::Native],
            AttachPref::Generic => &[AttachMode::Generic],
        }
    }
}

/// The XDP fast path as an interface's program: over which maps, and in
/// which attach modes.
#[derive(Clone, Copy)]
pub struct FastAttach<'a> {
    /// The switch's fast-path maps.
    pub maps: &'a FastPathMaps,
    /// Whether a generic attachment runs it too (`fast_path = "on"`).
    /// Without it (`"auto"`) only a native attachment does and a generic
    /// one runs the plain redirect: in generic mode the program runs after
    /// the kernel has built the socket buffer, so most of what it would
    /// save is already spent, and no generic port can be an output.
    pub generic: bool,
    /// The interface's OpenFlow port number, built into a pod port's
    /// program.
    pub of_port: u32,
}

impl<'a> FastAttach<'a> {
    /// The maps of the fast-path program an attachment in `mode` runs, or
    /// `None` for the plain redirect.
    pub fn for_mode(fast: Option<Self>, mode: AttachMode) -> Option<&'a FastPathMaps> {
        let f = fast?;
        (mode == AttachMode::Native || f.generic).then_some(f.maps)
    }
}

/// A program attached to an interface, with its map.
pub struct XdpAttachment {
    // Declared first so it closes first: the program leaves the interface
    // before its map and program fds go.
    _link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    key: (u64, u64, u32),
    kind: ProgramKind,
    mode: AttachMode,
    /// The fast-path program (misses to the XSKMAP) rather than the plain
    /// redirect.
    fast: bool,
}

static REGISTRY: Mutex<Vec<Weak<XdpAttachment>>> = Mutex::new(Vec::new());

/// (device, inode) of the calling thread's network namespace.
fn netns_id() -> io::Result<(u64, u64)> {
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino()))
}

/// The attachment of `kind` on `ifindex` in the calling thread's namespace:
/// the existing one, or a new one attached in the first mode of `pref` the
/// interface accepts. With `fast`, the program is the XDP fast path over
/// its maps (its misses go to the same XSKMAP) in the modes it names, else
/// the plain redirect.
pub fn attach(
    ifname: &str,
    ifindex: u32,
    kind: ProgramKind,
    pref: AttachPref,
    fast: Option<FastAttach<'_>>,
) -> Result<Arc<XdpAttachment>, XskError> {
    let sys = |op, err| XskError::Sys {
        op,
        ifname: ifname.to_string(),
        err,
    };
    let ns = netns_id().map_err(|e| sys("stat(/proc/thread-self/ns/net)", e))?;
    let key = (ns.0, ns.1, ifindex);
    let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    reg.retain(|w| w.strong_count() > 0);
    if let Some(a) = reg.iter().filter_map(Weak::upgrade).find(|a| a.key == key) {
        if a.kind != kind || a.fast != FastAttach::for_mode(fast, a.mode).is_some() {
            return Err(XskError::ProgramMismatch {
                ifname: ifname.to_string(),
                have: a.kind,
                want: kind,
            });
        }
        if !pref.modes().contains(&a.mode) {
            return Err(XskError::AttachModeMismatch {
                ifname: ifname.to_string(),
                have: a.mode.name(),
                want: pref.modes()[0].name(),
            });
        }
        return Ok(a);
    }

    let map = bpf::create_xskmap(MAP_ENTRIES).map_err(|e| sys("bpf(BPF_MAP_CREATE, XSKMAP)", e))?;
    let fast_port = fast.map_or(0, |f| f.of_port);
    // Loaded for the first mode tried, and again only if the next mode
    // wants the other program (`fast_path = "auto"`: native runs the fast
    // path, generic the plain redirect).
    let mut loaded: Option<(bool, OwnedFd)> = None;
    let mut attempts = String::new();
    for &mode in pref.modes() {
        let maps = FastAttach::for_mode(fast, mode);
        let prog = match loaded.take() {
            Some((f, prog)) if f == maps.is_some() => prog,
            _ => {
                let r = match maps {
                    Some(m) => m.load(kind, map.as_fd(), XdpAction::Pass, fast_port),
                    None => bpf::load_program(kind, map.as_fd(), XdpAction::Pass),
                };
                r.map_err(|e| XskError::ProgramLoad {
                    name: kind.name(),
                    err: e.err,
                    log: e.log,
                })?
            }
        };
        let flags = match mode {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => XDP_FLAGS_SKB_MODE,
        };
        match retry_busy(|| bpf::link_xdp(prog.as_fd(), ifindex, flags)) {
            Ok(link) => {
                let a = Arc::new(XdpAttachment {
                    _link: link,
                    prog,
                    map,
                    key,
                    kind,
                    mode,
                    fast: maps.is_some(),
                });
                reg.push(Arc::downgrade(&a));
                return Ok(a);
            }
            Err(e) => {
                let sep = if attempts.is_empty() { "" } else { "; " };
                let _ = write!(attempts, "{sep}{}: {e}", mode.name());
                loaded = Some((maps.is_some(), prog));
            }
        }
    }
    Err(XskError::Attach {
        ifname: ifname.to_string(),
        attempts,
    })
}

impl XdpAttachment {
    /// Sends queue `queue`'s frames to socket `sock`.
    pub fn insert(&self, queue: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        bpf::xskmap_set(self.map.as_fd(), queue, sock)
    }

    /// Stops sending queue `queue`'s frames to any socket (they go to the
    /// kernel).
    pub fn remove(&self, queue: u32) -> io::Result<()> {
        bpf::xskmap_clear(self.map.as_fd(), queue)
    }

    /// What the program does with `frame`, run as if received on queue 0.
    pub fn verdict(&self, frame: &[u8]) -> io::Result<XdpAction> {
        bpf::test_run(self.prog.as_fd(), frame)
    }

    /// Where the program runs.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Which program.
    pub fn kind(&self) -> ProgramKind {
        self.kind
    }

    /// Whether the program is the XDP fast path.
    pub fn is_fast_path(&self) -> bool {
        self.fast
    }
}
