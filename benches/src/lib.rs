//! Helpers of the benches: a loopback transmit side that hands packets back
//! as the next batch, packet builders, and the naive baselines (a std
//! `HashMap` exact-match table, a linear megaflow list, a sorted-vector rule
//! list) that the benches measure in the same run as the real structures.

use datapath::buf::{Batch, FramePool, PacketDesc};
use datapath::pipeline::TxPorts;
use flowtable::{DropReason, FlowKey, FlowMask, PortNo};

pub mod baseline;
pub mod ct;
pub mod pktgen;

/// A transmit side that keeps what was sent, so a bench can feed the same
/// frames back in as the next batch without copying bytes.
#[derive(Default)]
pub struct Loopback {
    /// What was sent, in order.
    pub out: Batch,
}

impl TxPorts for Loopback {
    #[inline]
    fn send(
        &mut self,
        _port: PortNo,
        pkt: PacketDesc,
        _pool: &mut FramePool,
    ) -> Result<(), DropReason> {
        if self.out.push(pkt) {
            Ok(())
        } else {
            Err(DropReason::TxFull)
        }
    }
}

/// A TCP packet from 10.244.1.2 to `dst`, with a source port, 64 bytes.
pub fn tcp64(dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 2], dst, 64)
        .tcp(sport, 80, 1, 64240)
        .write(&mut out, &[0u8; 10])
        .expect("builds");
    out
}

/// A masked key and its mask, as the linear baseline stores megaflows.
pub type MaskedEntry = (FlowKey, FlowMask, usize);
