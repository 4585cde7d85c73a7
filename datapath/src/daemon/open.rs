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
use crate::port::xsk_own::{OwnUmemPort, OWN_FRAMES};
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

/// Ring sizes of ports added at run time (`add-port`: pods), each on a
/// UMEM of its own ([`OwnUmemPort`]). Every frame a fill ring holds is
/// UMEM, pinned, whether the port is busy or idle, so 512 pod ports with
/// the configured ports' 4096-frame rings would pin 8 GiB per poll thread;
/// with these a pod port holds 64 frames. A pod's bursts are smaller than
/// an uplink's, and the thread refills the ring on every loop while it
/// spins.
pub const RUNTIME_RINGS: Rings = Rings {
    size: 256,
    fill: 64,
};

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
        PortKind::Afxdp => open_xdp(cfg, queue, umem, fast),
        PortKind::Auto => open_xdp(cfg, queue, umem, fast).or_else(|why| {
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
        let own = FramePool::new_umem(OWN_FRAMES).map_err(|e| e.to_string())?;
        let shared = own.umem_shared().ok_or("no UMEM")?.clone();
        let p = XskPort::open_detached_with(
            &cfg.name,
            queue,
            &shared,
            program,
            ModePref::default(),
            RUNTIME_RINGS,
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

/// The opener `oxvsd` uses.
pub fn opener() -> Opener {
    std::sync::Arc::new(open_port)
}
