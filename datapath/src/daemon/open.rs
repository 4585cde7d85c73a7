//! Choosing how a port attaches: AF_XDP when the kernel allows it, AF_PACKET
//! otherwise, with a log line saying why the fallback was taken.

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

/// Opens a port the way its configuration asks.
pub fn open_port(cfg: &PortConfig, pool: &mut FramePool) -> Result<Box<dyn NetPort>, String> {
    match cfg.kind {
        PortKind::AfPacket => open_packet(cfg),
        PortKind::Afxdp => open_xdp(cfg, pool),
        PortKind::Auto => open_xdp(cfg, pool).or_else(|why| {
            tracing::warn!(port = %cfg.name, reason = %why, "AF_XDP unavailable; falling back to AF_PACKET");
            open_packet(cfg)
        }),
    }
}

fn open_packet(cfg: &PortConfig) -> Result<Box<dyn NetPort>, String> {
    PacketPort::open(&cfg.name)
        .map(|p| Box::new(p) as Box<dyn NetPort>)
        .map_err(|e| e.to_string())
}

fn open_xdp(cfg: &PortConfig, pool: &mut FramePool) -> Result<Box<dyn NetPort>, String> {
    // An uplink carries the node's own traffic too: only Geneve is taken.
    let program = if cfg.uplink {
        ProgramKind::Uplink
    } else {
        ProgramKind::All
    };
    XskPort::open_with_rings(&cfg.name, 0, pool, program, ModePref::default(), RINGS)
        .map(|p| Box::new(p) as Box<dyn NetPort>)
        .map_err(|e| e.to_string())
}

/// The opener `oxvsd` uses.
pub fn opener() -> Opener {
    Box::new(open_port)
}
