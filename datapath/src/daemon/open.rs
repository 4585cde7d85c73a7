//! Choosing how a port attaches: AF_XDP when the kernel allows it, AF_PACKET
//! otherwise, with a log line saying why the fallback was taken.
//!
//! Ports are opened on the control thread (`daemon::attach`), for a poll
//! thread's UMEM, and handed to that thread, which only activates them:
//! loading a program and binding a socket take milliseconds (and EBUSY
//! retries up to half a second), which a poll thread must not spend while
//! its other ports carry traffic.
//!
//! Poll thread `q` opens queue `q` of every port: it receives what the
//! driver steers to that queue and transmits on its own queue, so no two
//! threads ever share a ring. An interface with fewer queues than there are
//! threads is still reachable from every thread: the threads beyond its
//! queue count get a transmit-only AF_PACKET socket on it (the kernel copies
//! those frames; the port's mode says `af_packet tx-only`), and an
//! AF_PACKET port receives on thread 0 only, so no frame is seen twice.

use super::config::{PortConfig, PortKind};
use super::pmd::Opener;
use crate::afxdp::umem::UmemShared;
use crate::afxdp::FastAttach;
use crate::buf::FramePool;
use crate::port::packet::PacketPort;
use crate::port::xsk::{ModePref, ProgramKind, Rings, XskPort};
use crate::port::xsk_own::OwnUmemPort;
use std::sync::Arc;

/// Ring sizes of oxvsd's AF_XDP ports. The fill ring is kept full: a TCP
/// burst that arrives while the poll thread is asleep or preempted lands in
/// those frames instead of being dropped by the kernel (with 1024 frames,
/// iperf3 through a veth lost thousands of frames per run to an empty fill
/// ring).
pub const RINGS: Rings = Rings {
    size: 4096,
    fill: 4096,
};

/// Frames a poll thread's pool needs per AF_XDP port: a full fill ring plus
/// a full transmit ring.
pub const FRAMES_PER_PORT: usize = 2 * 4096;

/// How the AF_XDP queues of ports added at run time (`add-port`: pods) are
/// sized, each on a UMEM of its own ([`OwnUmemPort`]). Every frame of that
/// UMEM is pinned whether the port is busy or idle, and it is paid per pod:
/// 512 pod ports with the configured ports' 4096-frame rings would pin
/// 8 GiB per poll thread. So a runtime port's fill ring is smaller
/// (`[switch] runtime_fill`, default [`DEFAULT_RUNTIME_FILL`]), and its
/// UMEM holds [`RUNTIME_TX_FRAMES`] more for packets in flight to transmit.
///
/// A fill ring smaller than the bursts the port takes loses frames in the
/// kernel whenever the poll thread is asleep, preempted or busy with
/// other ports for longer than the ring lasts (`dump-ports`:
/// `fill_ring_empty`). With 64 frames, a TCP stream between two pods on
/// the poll threads met an empty fill ring for a third of its frames; with
/// 1024, for about one in a thousand (BENCHMARKS.md, "Runtime ports' fill
/// ring").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeSizing {
    /// Frames the port keeps in its fill ring.
    pub fill: u32,
}

/// Frames a runtime port keeps in its fill ring when `[switch]
/// runtime_fill` is not set. Chosen on the figures in BENCHMARKS.md
/// ("Runtime ports' fill ring"): the smallest size measured at which TCP
/// between two runtime ports ran as fast as between configured ports, at
/// 5 MiB of UMEM per pod (with [`RUNTIME_TX_FRAMES`]).
pub const DEFAULT_RUNTIME_FILL: u32 = 1024;

/// The range `[switch] runtime_fill` accepts: at least two batches, at most
/// the configured ports' ring.
pub const RUNTIME_FILL_RANGE: std::ops::RangeInclusive<u32> = 64..=4096;

/// Frames of a runtime port's UMEM beyond its fill ring: packets copied in
/// to transmit, held until the kernel completes them (on a veth, once the
/// pod has taken them). A veth's receive ring holds 256 frames; with 64,
/// no packet went without a frame in the runs of BENCHMARKS.md, but a pod
/// that several others send to at once needs more.
pub const RUNTIME_TX_FRAMES: usize = 256;

impl Default for RuntimeSizing {
    fn default() -> Self {
        RuntimeSizing {
            fill: DEFAULT_RUNTIME_FILL,
        }
    }
}

impl RuntimeSizing {
    /// The sizing `[switch]` asks for.
    pub fn from_config(sw: &super::config::SwitchConfig) -> RuntimeSizing {
        RuntimeSizing {
            fill: sw.runtime_fill.unwrap_or(DEFAULT_RUNTIME_FILL),
        }
    }

    /// The socket's rings: each at least as large as the fill ring, so
    /// that the RX ring can hold every frame the fill ring lends (and no
    /// smaller than 256 slots, which cost a few KiB).
    pub fn rings(self) -> Rings {
        Rings {
            size: self.fill.next_power_of_two().max(256),
            fill: self.fill,
        }
    }

    /// Frames in the port's own UMEM: the fill ring and
    /// [`RUNTIME_TX_FRAMES`].
    pub fn own_frames(self) -> usize {
        self.fill as usize + RUNTIME_TX_FRAMES
    }

    /// Bytes of pinned UMEM per runtime port queue.
    pub fn umem_bytes(self) -> usize {
        self.own_frames() * crate::buf::FRAME_SIZE
    }
}

/// Frames a poll thread's pool sets aside per runtime port: none for its
/// rings (it has its own UMEM), a few for the packets copied out of it
/// that wait in a batch.
pub const FRAMES_PER_RUNTIME_PORT: usize = 4;

/// Runtime ports a switch is sized for when `[switch] runtime_ports` is not
/// set.
pub const DEFAULT_RUNTIME_PORTS: usize = 64;

/// Frames in each poll thread's pool: the configured ports' rings, room for
/// `runtime_ports` ports added at run time, and the spare frames of
/// batches and copies.
pub fn pool_frames(configured: usize, runtime_ports: usize) -> usize {
    configured * FRAMES_PER_PORT + runtime_ports * FRAMES_PER_RUNTIME_PORT + super::SPARE_FRAMES
}
use crate::port::NetPort;

/// Opens queue `queue` of a port the way its configuration asks, for the
/// poll thread whose UMEM is `umem` (`None`: the thread has no UMEM, so
/// AF_XDP cannot open). The port receives nothing until the thread
/// activates it ([`NetPort::activate`]).
pub fn open_port(
    cfg: &PortConfig,
    queue: u32,
    umem: Option<&Arc<UmemShared>>,
    fast: Option<FastAttach<'_>>,
    runtime: RuntimeSizing,
) -> Result<Box<dyn NetPort>, String> {
    if queue > 0 {
        if cfg.kind == PortKind::AfPacket {
            return open_packet(cfg, false);
        }
        if let Some(n) = crate::sys::queue_count(&cfg.name) {
            if queue >= n {
                tracing::info!(
                    port = %cfg.name, queues = n, thread = queue,
                    "fewer queues than poll threads; this thread transmits through AF_PACKET"
                );
                return open_packet(cfg, false);
            }
        }
    }
    match cfg.kind {
        PortKind::Geneve => Err(format!("{} is a tunnel port: it has no interface", cfg.name)),
        PortKind::AfPacket => open_packet(cfg, true),
        PortKind::Afxdp => open_xdp(cfg, queue, umem, fast, runtime),
        PortKind::Auto => open_xdp(cfg, queue, umem, fast, runtime).or_else(|why| {
            tracing::warn!(port = %cfg.name, queue, reason = %why, "AF_XDP unavailable; falling back to AF_PACKET");
            open_packet(cfg, queue == 0)
        }),
    }
}

fn open_packet(cfg: &PortConfig, receive: bool) -> Result<Box<dyn NetPort>, String> {
    let p = if receive {
        PacketPort::open(&cfg.name)
    } else {
        PacketPort::open_tx_only(&cfg.name)
    };
    p.map(|p| Box::new(p) as Box<dyn NetPort>)
        .map_err(|e| e.to_string())
}

fn open_xdp(
    cfg: &PortConfig,
    queue: u32,
    umem: Option<&Arc<UmemShared>>,
    fast: Option<FastAttach<'_>>,
    runtime: RuntimeSizing,
) -> Result<Box<dyn NetPort>, String> {
    let umem = umem.ok_or("this poll thread has no UMEM");
    // An uplink carries the node's own traffic too: only Geneve is taken.
    let program = if cfg.uplink {
        ProgramKind::Uplink
    } else {
        ProgramKind::All
    };
    if cfg.runtime {
        // A pod port has a small UMEM of its own: sharing the thread's
        // would cost the kernel a head per frame of it, per port.
        let own = FramePool::new_umem(runtime.own_frames()).map_err(|e| e.to_string())?;
        let shared = own.umem_shared().ok_or("no UMEM")?.clone();
        let p = XskPort::open_detached_with(
            &cfg.name,
            queue,
            &shared,
            program,
            ModePref::default(),
            runtime.rings(),
            fast,
        )
        .map_err(|e| e.to_string())?;
        return Ok(Box::new(OwnUmemPort::new(p, own)));
    }
    XskPort::open_detached_with(
        &cfg.name,
        queue,
        umem?,
        program,
        ModePref::default(),
        RINGS,
        fast,
    )
    .map(|p| Box::new(p) as Box<dyn NetPort>)
    .map_err(|e| e.to_string())
}

/// The opener `oxvsd` uses, sizing runtime ports as `runtime` says.
pub fn opener(runtime: RuntimeSizing) -> Opener {
    std::sync::Arc::new(move |cfg, queue, umem, fast| open_port(cfg, queue, umem, fast, runtime))
}
