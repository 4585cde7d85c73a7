//! Choosing how a port attaches: AF_XDP when the kernel allows it, AF_PACKET
//! otherwise, with a log line saying why the fallback was taken.
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
use crate::buf::FramePool;
use crate::port::packet::PacketPort;
use crate::port::xsk::{ModePref, ProgramKind, Rings, XskPort};

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
use crate::port::NetPort;

/// Opens queue `queue` of a port the way its configuration asks.
pub fn open_port(
    cfg: &PortConfig,
    queue: u32,
    pool: &mut FramePool,
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
        PortKind::Afxdp => open_xdp(cfg, queue, pool),
        PortKind::Auto => open_xdp(cfg, queue, pool).or_else(|why| {
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
    pool: &mut FramePool,
) -> Result<Box<dyn NetPort>, String> {
    // An uplink carries the node's own traffic too: only Geneve is taken.
    let program = if cfg.uplink {
        ProgramKind::Uplink
    } else {
        ProgramKind::All
    };
    XskPort::open_with_rings(&cfg.name, queue, pool, program, ModePref::default(), RINGS)
        .map(|p| Box::new(p) as Box<dyn NetPort>)
        .map_err(|e| e.to_string())
}

/// The opener `oxvsd` uses.
pub fn opener() -> Opener {
    std::sync::Arc::new(open_port)
}
