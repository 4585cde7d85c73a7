//! The AF_XDP port: one socket on one queue of one interface, receiving
//! into and transmitting from the poll thread's UMEM.
//!
//! [`XskPort::open`] negotiates what the interface allows: the XDP program
//! native, else generic; the socket zero-copy, else copy (veth is
//! copy-only: EOPNOTSUPP); sharing the pool's UMEM with the thread's other
//! sockets (`XDP_SHARED_UMEM`), else registering it itself; retrying
//! EBUSY a few times 50 ms apart (a queue just closed is released by the
//! kernel a little later). [`NetPort::mode`] says what was obtained, e.g.
//! `afxdp native copy`.
//!
//! Frame ownership is exact and checked: the port keeps a bit per UMEM
//! frame for the frames it lent to the kernel (in its fill ring, or handed
//! to its TX ring), sets it when a frame goes in and clears it when the
//! frame comes back on RX or completion. A descriptor from the kernel that
//! names a frame the port did not lend is counted and ignored, never handed
//! on, so a frame can be neither used twice nor freed twice. When the port
//! is dropped its socket closes first (the kernel then no longer touches
//! its frames), and the frames still marked go back to the pool through
//! [`FramePool::reclaim`]: in copy mode at once, in zero-copy mode never
//! (the driver's teardown is deferred and may still write them; they are
//! counted as retired instead).
//!
//! Generic mode reports every frame of a veth on queue 0 (the notes in
//! `shared/notes/afxdp-on-this-kernel.md`): open queue 0 there.
//!
//! On the packet path: `rx_burst` reads up to [`BATCH`] descriptors with
//! one acquire load; `send` writes a descriptor into the TX ring without
//! publishing it; `flush` publishes, kicks the kernel with `sendto` only
//! when the ring asks (`XDP_USE_NEED_WAKEUP`; copy mode always asks),
//! reaps completions into the pool and tops the fill ring up. No
//! allocation, lock or system call per packet.

use super::NetPort;
use crate::afxdp::attach::{self, MAP_ENTRIES};
use crate::afxdp::socket::{SysError, XskSocket};
use crate::afxdp::sys::{self, XdpDesc, XDP_COPY, XDP_USE_NEED_WAKEUP, XDP_ZEROCOPY};
use crate::afxdp::umem::UmemShared;
use crate::afxdp::{retry_busy, XdpAttachment};
use crate::buf::{Batch, FramePool, PacketDesc, BATCH};
use crate::stats::PortStats;
use flowtable::DropReason;
use std::fmt::Write as _;
use std::sync::Arc;

pub use crate::afxdp::{AttachMode, AttachPref, ProgramKind, XdpAction, XskError};

/// Copy or zero-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindPref {
    /// Zero-copy if the driver supports it (and the program runs native),
    /// else copy.
    #[default]
    Auto,
    /// Zero-copy only.
    ZeroCopy,
    /// Copy only.
    Copy,
}

/// The modes to try; the defaults take the best the interface offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModePref {
    /// Where the XDP program runs.
    pub attach: AttachPref,
    /// How the socket binds.
    pub bind: BindPref,
}

/// Ring geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rings {
    /// Slots in each of the four rings (a power of two).
    pub size: u32,
    /// Frames the port keeps in its fill ring (at most `size`). The pool
    /// must hold this many per port plus what is in flight to transmit.
    pub fill: u32,
}

impl Default for Rings {
    fn default() -> Self {
        Rings {
            size: 2048,
            fill: 1024,
        }
    }
}

/// Completion entries reaped per ring read in `flush`.
const REAP: u32 = 256;
/// Most `sendto` kicks in one `flush` (copy mode sends 32 frames per kick).
const MAX_KICKS: u32 = 64;

/// An AF_XDP port.
pub struct XskPort {
    name: String,
    queue: u32,
    attach: AttachMode,
    zerocopy: bool,
    shares_umem: bool,
    // Fields drop in order: the socket closes (so the kernel lets go of
    // its frames), then the attachment may detach, then `lent` hands the
    // frames back.
    sock: XskSocket,
    xdp: Arc<XdpAttachment>,
    umem_id: u64,
    fill_target: u32,
    /// Frames in the fill ring or taken from it by the kernel.
    fill_held: u32,
    /// Descriptors written to the TX ring but not yet published.
    tx_queued: u32,
    /// The socket is in the XSKMAP (frames are redirected to it).
    in_map: bool,
    stats: PortStats,
    lent: Lent,
}

/// The frames a port lent to the kernel: one bit per UMEM frame.
struct Lent {
    bits: Vec<u64>,
    umem: Arc<UmemShared>,
    zerocopy: bool,
    /// Descriptors from the kernel naming frames not lent (never expected).
    bogus: u64,
}

impl Lent {
    #[inline]
    fn give(&mut self, frame: u32) {
        self.bits[frame as usize / 64] |= 1 << (frame % 64);
    }

    /// Clears `frame`'s bit; false if it was not lent (or out of range).
    #[inline]
    fn take(&mut self, frame: u32) -> bool {
        let Some(w) = self.bits.get_mut(frame as usize / 64) else {
            self.bogus += 1;
            return false;
        };
        let m = 1u64 << (frame % 64);
        if *w & m == 0 {
            self.bogus += 1;
            return false;
        }
        *w &= !m;
        true
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let frames = self.bits.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| (i * 64 + b) as u32)
        });
        if self.zerocopy {
            self.umem.retire(frames.count() as u64);
        } else {
            self.umem.orphan(frames);
        }
    }
}

impl XskPort {
    /// Opens queue `queue` of interface `ifname` with the default ring
    /// sizes. `pool` must be a UMEM pool ([`FramePool::new_umem`]) and must
    /// be the pool passed to every later call on this port.
    pub fn open(
        ifname: &str,
        queue: u32,
        pool: &mut FramePool,
        program: ProgramKind,
        pref: ModePref,
    ) -> Result<XskPort, XskError> {
        XskPort::open_with_rings(ifname, queue, pool, program, pref, Rings::default())
    }

    /// [`XskPort::open`] with explicit ring sizes.
    pub fn open_with_rings(
        ifname: &str,
        queue: u32,
        pool: &mut FramePool,
        program: ProgramKind,
        pref: ModePref,
        rings: Rings,
    ) -> Result<XskPort, XskError> {
        let umem = pool.umem_shared().ok_or(XskError::PoolNotUmem)?.clone();
        pool.reclaim();
        let mut port = XskPort::open_detached(ifname, queue, &umem, program, pref, rings)?;
        port.activate(pool)?;
        Ok(port)
    }

    /// Opens the port on the UMEM `umem` without touching its pool: the
    /// program attached, the socket bound, but its fill ring empty and the
    /// socket not yet in the XSKMAP, so no frame reaches it (the program
    /// passes them to the kernel meanwhile). This is the slow part of an
    /// open (program load, bind, EBUSY retries); the control thread does it
    /// so that a poll thread only runs [`XskPort::activate`], which takes
    /// microseconds, and its other ports never stop.
    pub fn open_detached(
        ifname: &str,
        queue: u32,
        umem: &Arc<UmemShared>,
        program: ProgramKind,
        pref: ModePref,
        rings: Rings,
    ) -> Result<XskPort, XskError> {
        XskPort::open_detached_with(ifname, queue, umem, program, pref, rings, None)
    }

    /// [`XskPort::open_detached`] with the XDP fast path as the interface's
    /// program in the modes `fast` names (its misses reach this socket as
    /// before).
    pub fn open_detached_with(
        ifname: &str,
        queue: u32,
        umem: &Arc<UmemShared>,
        program: ProgramKind,
        pref: ModePref,
        rings: Rings,
        fast: Option<crate::afxdp::FastAttach<'_>>,
    ) -> Result<XskPort, XskError> {
        if !rings.size.is_power_of_two() || !(64..=32768).contains(&rings.size) {
            return Err(XskError::RingSize { size: rings.size });
        }
        if queue >= MAP_ENTRIES {
            return Err(XskError::QueueOutOfRange {
                ifname: ifname.to_string(),
                queue,
                max: MAP_ENTRIES,
            });
        }
        let ifindex = sys::if_index(ifname).map_err(|err| XskError::NoSuchInterface {
            ifname: ifname.to_string(),
            err,
        })?;
        let sys_err = |e: SysError| XskError::Sys {
            op: e.op,
            ifname: ifname.to_string(),
            err: e.err,
        };

        let xdp = attach::attach(ifname, ifindex, program, pref.attach, fast)?;
        let mut sock = XskSocket::new(rings.size).map_err(sys_err)?;
        let at = Target {
            ifname,
            ifindex,
            queue,
        };
        let shares_umem = bind(&sock, umem, &at, pref, xdp.mode())?;
        sock.list_in(umem.clone());
        let zerocopy = sock.is_zerocopy().map_err(sys_err)?;
        let want = match pref.bind {
            BindPref::ZeroCopy if !zerocopy => Some("zerocopy"),
            BindPref::Copy if zerocopy => Some("copy"),
            _ => None,
        };
        if let Some(want) = want {
            return Err(XskError::BindModeMismatch {
                ifname: ifname.to_string(),
                queue,
                got: if zerocopy { "zerocopy" } else { "copy" },
                want,
            });
        }
        Ok(XskPort {
            name: ifname.to_string(),
            queue,
            attach: xdp.mode(),
            zerocopy,
            shares_umem,
            sock,
            xdp,
            umem_id: umem.id(),
            fill_target: rings.fill.min(rings.size),
            fill_held: 0,
            tx_queued: 0,
            in_map: false,
            stats: PortStats::default(),
            lent: Lent {
                bits: vec![0; umem.frames().div_ceil(64)],
                umem: umem.clone(),
                zerocopy,
                bogus: 0,
            },
        })
    }

    /// Makes a port opened with [`XskPort::open_detached`] receive: fills
    /// its fill ring from `pool` (which must be the pool of the UMEM it was
    /// opened on), then puts its socket in the interface's XSKMAP.
    pub fn activate(&mut self, pool: &mut FramePool) -> Result<(), XskError> {
        self.check_pool(pool);
        self.refill(pool);
        if !self.in_map {
            self.xdp
                .insert(self.queue, self.sock.fd())
                .map_err(|err| XskError::Sys {
                    op: "bpf(BPF_MAP_UPDATE_ELEM, XSKMAP)",
                    ifname: self.name.clone(),
                    err,
                })?;
            self.in_map = true;
        }
        Ok(())
    }

    /// Stops the port before it is closed elsewhere: takes its socket out
    /// of the XSKMAP (frames for it go to the kernel from now on), sends
    /// what its TX ring holds, and returns to `pool` what its RX and
    /// completion rings hold. What stays in its fill ring comes back to the
    /// pool when the socket closes (the orphans of [`FramePool::reclaim`]).
    pub fn deactivate(&mut self, pool: &mut FramePool) {
        self.check_pool(pool);
        if self.in_map {
            let _ = self.xdp.remove(self.queue);
            self.in_map = false;
        }
        self.push_tx();
        let shift = pool.frame_size().trailing_zeros();
        loop {
            let n = self.sock.rx.peek(REAP);
            if n == 0 {
                break;
            }
            for i in 0..n {
                let frame = (self.sock.rx.read(i).addr >> shift) as u32;
                if self.lent.take(frame) {
                    pool.returned(frame);
                    self.fill_held = self.fill_held.saturating_sub(1);
                    self.stats.rx_dropped += 1;
                    pool.free(PacketDesc {
                        frame,
                        ..PacketDesc::default()
                    });
                }
            }
            self.sock.rx.release(n);
        }
        self.reap(pool);
    }

    /// What the interface's XDP program does with `frame`, run as if it
    /// arrived on queue 0 (so with this port's socket in the map when the
    /// port is on queue 0): a diagnostic for `show` and for tests.
    pub fn xdp_verdict(&self, frame: &[u8]) -> std::io::Result<XdpAction> {
        self.xdp.verdict(frame)
    }

    /// The queue.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the socket shares the UMEM registered by another socket of
    /// the pool (`XDP_SHARED_UMEM`) rather than registering it itself.
    pub fn shares_umem(&self) -> bool {
        self.shares_umem
    }

    /// Frames this port has lent to the kernel right now.
    pub fn frames_lent(&self) -> usize {
        self.lent.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    #[inline]
    fn check_pool(&self, pool: &FramePool) {
        debug_assert_eq!(
            pool.umem_shared().map(|u| u.id()),
            Some(self.umem_id),
            "port {} used with another pool",
            self.name
        );
    }

    /// Gives the kernel frames to receive into, up to the fill target.
    fn refill(&mut self, pool: &mut FramePool) {
        let want = self.fill_target.saturating_sub(self.fill_held);
        let want = want.min(pool.n_free() as u32);
        if want == 0 {
            return;
        }
        let n = self.sock.fill.reserve(want);
        let fs = pool.frame_size() as u64;
        let mut written = 0;
        while written < n {
            let Some(d) = pool.alloc() else { break };
            pool.lend(d.frame);
            self.lent.give(d.frame);
            self.sock.fill.write(written, d.frame as u64 * fs);
            written += 1;
        }
        self.sock.fill.submit(written);
        self.fill_held += written;
        if self.sock.fill.needs_wakeup() {
            // Zero-copy drivers sleep when the fill ring runs dry; copy mode
            // never sets the flag.
            let _ = self.sock.wake_rx();
        }
    }

    /// Publishes queued descriptors and kicks the kernel if it asks.
    fn push_tx(&mut self) {
        self.sock.tx.submit(self.tx_queued);
        self.tx_queued = 0;
        let mut left = self.sock.tx.outstanding();
        if left == 0 {
            return;
        }
        // Order the producer store before the flags load, against a driver
        // that sets the flag and then re-checks the ring.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..MAX_KICKS {
            if !self.sock.tx.needs_wakeup() {
                return;
            }
            // EAGAIN/EBUSY/ENOBUFS: the kernel sent part or none; the rest
            // stays in the ring for the next flush.
            let _ = self.sock.kick_tx();
            let now = self.sock.tx.outstanding();
            if now == 0 || now == left {
                return;
            }
            left = now;
        }
    }

    /// Takes transmitted frames back into the pool.
    fn reap(&mut self, pool: &mut FramePool) {
        let shift = pool.frame_size().trailing_zeros();
        loop {
            let n = self.sock.comp.peek(REAP);
            if n == 0 {
                return;
            }
            for i in 0..n {
                let frame = (self.sock.comp.read(i) >> shift) as u32;
                if self.lent.take(frame) {
                    pool.returned(frame);
                    pool.free(PacketDesc {
                        frame,
                        ..PacketDesc::default()
                    });
                }
            }
            self.sock.comp.release(n);
        }
    }
}

/// Where a socket binds.
struct Target<'a> {
    ifname: &'a str,
    ifindex: u32,
    queue: u32,
}

/// Binds `sock`: sharing the pool's UMEM through a bound socket when there
/// is one, else registering it here and trying the bind modes of `pref`.
/// Returns whether the UMEM is shared.
fn bind(
    sock: &XskSocket,
    umem: &UmemShared,
    at: &Target<'_>,
    pref: ModePref,
    attach: AttachMode,
) -> Result<bool, XskError> {
    let Target {
        ifname,
        ifindex,
        queue,
    } = *at;
    let mut attempts = String::new();
    let mut note = |what: &str, e: &std::io::Error| {
        let sep = if attempts.is_empty() { "" } else { "; " };
        let _ = write!(attempts, "{sep}{what}: {e}");
    };
    let shared = umem.with_bound_socket(|owner| {
        owner.map(|fd| retry_busy(|| sock.bind(ifindex, queue, 0, Some(fd))))
    });
    match shared {
        Some(Ok(())) => return Ok(true),
        // Sharing is an optimisation (one registration, one DMA mapping):
        // if the kernel refuses it, e.g. a zero-copy UMEM and a copy-only
        // interface, this socket registers the same memory itself.
        Some(Err(e)) => note("shared UMEM", &e),
        None => {}
    }
    sock.register(&umem.registration())
        .map_err(|e| XskError::Sys {
            op: e.op,
            ifname: ifname.to_string(),
            err: e.err,
        })?;
    let zc_first = attach == AttachMode::Native;
    let modes: &[(&str, u16)] = match pref.bind {
        BindPref::Auto if zc_first => &[("zerocopy", XDP_ZEROCOPY), ("copy", XDP_COPY)],
        BindPref::Auto | BindPref::Copy => &[("copy", XDP_COPY)],
        BindPref::ZeroCopy => &[("zerocopy", XDP_ZEROCOPY)],
    };
    for &(name, flags) in modes {
        match retry_busy(|| sock.bind(ifindex, queue, flags | XDP_USE_NEED_WAKEUP, None)) {
            Ok(()) => return Ok(false),
            Err(e) => note(name, &e),
        }
    }
    Err(XskError::Bind {
        ifname: ifname.to_string(),
        queue,
        attempts,
    })
}

impl NetPort for XskPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn mode(&self) -> String {
        let copy = if self.zerocopy { "zerocopy" } else { "copy" };
        let fast = if self.xdp.is_fast_path() {
            " fastpath"
        } else {
            ""
        };
        format!("afxdp {} {copy}{fast}", self.attach.name())
    }

    fn rx_burst(&mut self, pool: &mut FramePool, batch: &mut Batch) {
        self.check_pool(pool);
        batch.len = 0;
        let n = self.sock.rx.peek(BATCH as u32);
        if n == 0 {
            return;
        }
        let fs = pool.frame_size() as u64;
        let shift = fs.trailing_zeros();
        for i in 0..n {
            let XdpDesc { addr, len, .. } = self.sock.rx.read(i);
            let frame = (addr >> shift) as u32;
            if !self.lent.take(frame) {
                continue;
            }
            pool.returned(frame);
            self.fill_held = self.fill_held.saturating_sub(1);
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += len as u64;
            batch.push(PacketDesc {
                frame,
                off: (addr & (fs - 1)) as u16,
                len: len as u16,
            });
        }
        self.sock.rx.release(n);
    }

    fn send(&mut self, pool: &mut FramePool, pkt: PacketDesc) -> Result<(), DropReason> {
        self.check_pool(pool);
        // The kernel silently discards an invalid descriptor without
        // completing it, which would lose the frame: refuse those here.
        if (pkt.len as usize) < 14
            || pkt.off as usize + pkt.len as usize > pool.frame_size()
            || pkt.frame as usize >= pool.n_frames()
        {
            self.stats.tx_dropped += 1;
            return Err(DropReason::MalformedEthernet);
        }
        if self.sock.tx.reserve(self.tx_queued + 1) <= self.tx_queued {
            self.stats.tx_dropped += 1;
            return Err(DropReason::TxFull);
        }
        let addr = pkt.frame as u64 * pool.frame_size() as u64 + pkt.off as u64;
        pool.lend(pkt.frame);
        self.lent.give(pkt.frame);
        self.sock.tx.write(
            self.tx_queued,
            XdpDesc {
                addr,
                len: pkt.len as u32,
                options: 0,
            },
        );
        self.tx_queued += 1;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += pkt.len as u64;
        Ok(())
    }

    fn flush(&mut self, pool: &mut FramePool) {
        self.check_pool(pool);
        self.push_tx();
        self.reap(pool);
        pool.reclaim();
        self.refill(pool);
    }

    fn activate(&mut self, pool: &mut FramePool) -> Result<(), String> {
        XskPort::activate(self, pool).map_err(|e| e.to_string())
    }

    fn deactivate(&mut self, pool: &mut FramePool) {
        XskPort::deactivate(self, pool);
    }

    fn poll_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        Some(self.sock.fd().as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        let mut s = self.stats;
        s.rx_dropped += self.lent.bogus;
        if let Ok(k) = self.sock.statistics() {
            s.rx_dropped += k.rx_dropped + k.rx_ring_full + k.rx_invalid_descs;
            s.tx_dropped += k.tx_invalid_descs;
            s.xsk_rx_dropped = k.rx_dropped;
            s.xsk_rx_ring_full = k.rx_ring_full;
            s.xsk_rx_fill_ring_empty = k.rx_fill_ring_empty_descs;
        }
        s
    }
}

impl Drop for XskPort {
    fn drop(&mut self) {
        // Frames stop coming to this socket before it closes; the rest of
        // the teardown is the fields' order (see the struct).
        if self.in_map {
            let _ = self.xdp.remove(self.queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_pools_move_to_poll_threads() {
        fn send<T: Send>() {}
        send::<XskPort>();
        send::<FramePool>();
    }

    #[test]
    fn heap_pools_and_bad_rings_are_refused_before_any_system_call() {
        let mut heap = FramePool::new(8);
        let e = XskPort::open("lo", 0, &mut heap, ProgramKind::All, ModePref::default());
        assert!(matches!(e, Err(XskError::PoolNotUmem)));
        let mut pool = FramePool::new_umem(8).expect("UMEM");
        let rings = Rings {
            size: 100,
            fill: 10,
        };
        let e = XskPort::open_with_rings(
            "lo",
            0,
            &mut pool,
            ProgramKind::All,
            ModePref::default(),
            rings,
        );
        assert!(matches!(e, Err(XskError::RingSize { size: 100 })));
        let e = XskPort::open(
            "lo",
            MAP_ENTRIES,
            &mut pool,
            ProgramKind::All,
            ModePref::default(),
        );
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "queue 256 of lo is beyond the 256 queues an XSKMAP here holds"
        );
    }
}
