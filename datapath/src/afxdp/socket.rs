//! One AF_XDP socket: its fd, its four rings mapped into user space, the
//! UMEM registration or sharing, bind, wake-ups and the kernel's counters.
//!
//! Every socket gets its own fill and completion rings, also when it shares
//! another socket's UMEM: sockets of one poll thread bind different
//! interfaces or queues, and the kernel (>= 5.10) then wants a fill and a
//! completion ring per socket. Frames given to a socket's fill ring come
//! back on that socket's RX ring; frames sent on its TX ring come back on
//! its completion ring.
//!
//! Teardown order is what makes close synchronous: the ring mappings hold
//! references to the socket's file, so they are unmapped first (fields drop
//! in declaration order), and only then is the fd closed; the kernel then
//! unbinds the socket (waiting for in-flight receives, `synchronize_net`)
//! before `close` returns. Before any of that the socket leaves its UMEM's
//! list of sockets others may share with.

use super::ring::{Consumer, Producer};
use super::sys::{
    self, Mmap, SockaddrXdp, XdpDesc, XdpMmapOffsets, XdpOptions, XdpStatistics, SOL_XDP,
    XDP_MMAP_OFFSETS, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY, XDP_PGOFF_RX_RING, XDP_PGOFF_TX_RING,
    XDP_RX_RING, XDP_SHARED_UMEM, XDP_STATISTICS, XDP_TX_RING, XDP_UMEM_COMPLETION_RING,
    XDP_UMEM_FILL_RING, XDP_UMEM_PGOFF_COMPLETION_RING, XDP_UMEM_PGOFF_FILL_RING, XDP_UMEM_REG,
};
use super::umem::{Umem, UmemShared};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A failed step: which call, and the errno.
#[derive(Debug)]
pub struct SysError {
    /// The call, e.g. `setsockopt(XDP_RX_RING)`.
    pub op: &'static str,
    /// The error.
    pub err: io::Error,
}

fn ctx(op: &'static str) -> impl FnOnce(io::Error) -> SysError {
    move |err| SysError { op, err }
}

/// An AF_XDP socket with its rings.
pub struct XskSocket {
    /// Frames for the kernel to receive into (UMEM offsets).
    pub fill: Producer<u64>,
    /// Frames the kernel finished transmitting.
    pub comp: Consumer<u64>,
    /// Received packets.
    pub rx: Consumer<XdpDesc>,
    /// Packets to transmit.
    pub tx: Producer<XdpDesc>,
    listed_in: Option<Arc<UmemShared>>,
    fd: OwnedFd,
}

impl XskSocket {
    /// A socket with all four rings of `size` slots, mapped, not yet bound.
    pub fn new(size: u32) -> Result<XskSocket, SysError> {
        let fd = sys::xdp_socket().map_err(ctx("socket(AF_XDP)"))?;
        let f = fd.as_fd();
        let set = |opt, op| sys::setsockopt(f, SOL_XDP, opt, &size).map_err(ctx(op));
        set(XDP_UMEM_FILL_RING, "setsockopt(XDP_UMEM_FILL_RING)")?;
        set(
            XDP_UMEM_COMPLETION_RING,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        set(XDP_RX_RING, "setsockopt(XDP_RX_RING)")?;
        set(XDP_TX_RING, "setsockopt(XDP_TX_RING)")?;
        let off: XdpMmapOffsets = sys::getsockopt(f, SOL_XDP, XDP_MMAP_OFFSETS)
            .map_err(ctx("getsockopt(XDP_MMAP_OFFSETS)"))?;
        let map = |desc_off: u64, elem: usize, pgoff: i64, op| {
            let len = desc_off as usize + size as usize * elem;
            Mmap::shared(f, len, pgoff).map(Arc::new).map_err(ctx(op))
        };
        let fill_map = map(off.fr.desc, 8, XDP_UMEM_PGOFF_FILL_RING, "mmap(fill ring)")?;
        let comp_map = map(
            off.cr.desc,
            8,
            XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap(completion ring)",
        )?;
        let rx_map = map(
            off.rx.desc,
            size_of::<XdpDesc>(),
            XDP_PGOFF_RX_RING,
            "mmap(RX ring)",
        )?;
        let tx_map = map(
            off.tx.desc,
            size_of::<XdpDesc>(),
            XDP_PGOFF_TX_RING,
            "mmap(TX ring)",
        )?;
        // SAFETY: each ring gets exactly one user-space half, here, and the
        // kernel is the other half of all four and follows the protocol.
        let (fill, comp, rx, tx) = unsafe {
            (
                Producer::new(fill_map, &off.fr, size),
                Consumer::new(comp_map, &off.cr, size),
                Consumer::new(rx_map, &off.rx, size),
                Producer::new(tx_map, &off.tx, size),
            )
        };
        let layout = || ctx("ring layout");
        Ok(XskSocket {
            fill: fill.map_err(layout())?,
            comp: comp.map_err(layout())?,
            rx: rx.map_err(layout())?,
            tx: tx.map_err(layout())?,
            listed_in: None,
            fd,
        })
    }

    /// Registers `umem` as this socket's own UMEM.
    pub fn register_umem(&self, umem: &Umem) -> Result<(), SysError> {
        self.register(&umem.shared().registration())
    }

    /// Registers the UMEM described by `reg` (a live region: see
    /// [`UmemShared::registration`]) as this socket's own.
    pub fn register(&self, reg: &super::sys::XdpUmemReg) -> Result<(), SysError> {
        sys::setsockopt(self.fd.as_fd(), SOL_XDP, XDP_UMEM_REG, reg)
            .map_err(ctx("setsockopt(XDP_UMEM_REG)"))
    }

    /// Binds to `ifindex`/`queue` with `flags`; with `shared`, shares that
    /// socket's UMEM (the flags must then be empty: the kernel takes the
    /// copy/zero-copy and need-wakeup modes from the UMEM's first socket).
    pub fn bind(
        &self,
        ifindex: u32,
        queue: u32,
        flags: u16,
        shared: Option<RawFd>,
    ) -> io::Result<()> {
        let addr = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: flags | if shared.is_some() { XDP_SHARED_UMEM } else { 0 },
            ifindex,
            queue_id: queue,
            shared_umem_fd: shared.unwrap_or(0) as u32,
        };
        sys::bind_xdp(self.fd.as_fd(), &addr)
    }

    /// Lists this (bound) socket in `umem`'s sockets, so later sockets can
    /// share the UMEM through it; it is unlisted before it closes.
    pub fn list_in(&mut self, umem: Arc<UmemShared>) {
        umem.add_socket(self.fd.as_raw_fd());
        self.listed_in = Some(umem);
    }

    /// Whether the kernel bound this socket in zero-copy mode.
    pub fn is_zerocopy(&self) -> Result<bool, SysError> {
        let o: XdpOptions = sys::getsockopt(self.fd.as_fd(), SOL_XDP, XDP_OPTIONS)
            .map_err(ctx("getsockopt(XDP_OPTIONS)"))?;
        Ok(o.flags & XDP_OPTIONS_ZEROCOPY != 0)
    }

    /// The kernel's drop counters for this socket.
    pub fn statistics(&self) -> io::Result<XdpStatistics> {
        sys::getsockopt(self.fd.as_fd(), SOL_XDP, XDP_STATISTICS)
    }

    /// Asks the kernel to transmit what the TX ring holds.
    pub fn kick_tx(&self) -> io::Result<()> {
        sys::kick_tx(self.fd.as_fd())
    }

    /// Asks the driver to look at the fill ring again.
    pub fn wake_rx(&self) -> io::Result<()> {
        sys::wake_rx(self.fd.as_fd())
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for XskSocket {
    fn drop(&mut self) {
        // Unlist before the fields drop: the rings unmap, then the fd closes.
        if let Some(u) = &self.listed_in {
            u.remove_socket(self.fd.as_raw_fd());
        }
    }
}
