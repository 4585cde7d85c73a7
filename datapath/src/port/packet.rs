//! The AF_PACKET port: one raw packet socket per interface, the fallback
//! where AF_XDP cannot attach.
//!
//! What it costs: the kernel copies every received frame out of its skb into
//! a frame of the pool (`recvmmsg`, straight to [`HEADROOM`] in the frame) and
//! every transmitted frame out of the pool into a new skb (`sendmmsg`); there
//! is no zero-copy mode. Both directions are batched, up to [`BATCH`] frames
//! per system call, so what a packet costs is the copy and the skb, not a
//! system call.
//!
//! How the socket is set up, and why:
//! * It is created with protocol 0, which receives nothing, and only then
//!   bound to the interface with `ETH_P_ALL`, so no frame of another
//!   interface is ever queued on it.
//! * `PACKET_IGNORE_OUTGOING`: it does not see frames leaving the interface.
//!   The kernel never loops a packet socket's own frames back to it; this
//!   also hides what the host stack or another socket sends out, so the port
//!   receives only what arrives from the wire.
//! * Promiscuous mode is a `PACKET_MR_PROMISC` membership, which the kernel
//!   drops when the socket closes, even after `kill -9`; setting `IFF_PROMISC`
//!   directly would outlive a crash.
//! * `PACKET_AUXDATA`: packet sockets see a frame with its outer 802.1Q or
//!   802.1ad tag out of the bytes, in skb metadata (a VLAN device or a NIC
//!   puts it there; the receive path moves an in-band tag there before any
//!   packet socket looks), and the kernel reports the tag only in this
//!   control message. [`NetPort::rx_burst`] puts the tag back in
//!   front of the EtherType, moving the 12 address bytes 4 bytes into the
//!   headroom, so the pipeline sees the frame as it was on the wire, as it
//!   does from AF_XDP. Only the outer tag is taken out; inner tags stay.
//! * A 4 MiB receive buffer (best effort): it is the only queue between the
//!   wire and the poll thread, and the default holds under 100 full frames.
//!
//! Frames: there is no fill ring. `rx_burst` takes up to a batch of frames
//! from the pool for the one call and gives back those the kernel did not
//! fill, so between calls the port holds only frames queued for
//! transmission, and `flush` frees those once the kernel has copied them.
//! A queue the kernel would not take (its send buffer full) waits for the
//! next `flush`.
//!
//! Counters: frames the kernel could not queue because the receive buffer
//! was full (read from `PACKET_STATISTICS` when [`NetPort::stats`] is asked)
//! and frames longer than a pool frame holds count as `rx_dropped`; frames
//! the kernel refused to send count as `tx_dropped`.
//!
//! Checksums: a frame sent by a local stack with checksum offload carries a
//! partial checksum, and this port, like AF_XDP, cannot pass that mark on, so
//! pod-side veths need `ethtool -K eth0 tx off` (`scripts/oxvs-lab` does it).
//!
//! `unsafe` is allowed in this module because the socket, its options and
//! the batched calls are reached only through `libc`; every block says what
//! keeps it sound.
#![allow(unsafe_code)]

use crate::buf::{Batch, FramePool, PacketDesc, BATCH, HEADROOM};
use crate::port::NetPort;
use crate::stats::PortStats;
use flowtable::DropReason;
use std::cell::Cell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::{fmt, io, mem, ptr};

/// Frames a port holds for transmission between two flushes.
pub const TX_QUEUE_DEPTH: usize = 1024;
/// The receive buffer asked for.
const RCVBUF_BYTES: libc::c_int = 4 << 20;
/// An 802.1Q or 802.1ad tag: TPID and TCI.
const VLAN_TAG_LEN: usize = 4;
/// Destination and source MAC addresses.
const ETH_ADDRS_LEN: usize = 12;
/// The shortest frame the kernel hands out or accepts.
const ETH_HEADER_LEN: usize = 14;
/// The TPID to assume when the kernel does not report one.
const ETH_P_8021Q: u16 = 0x8100;
/// How often a send interrupted by a signal is retried in one flush.
const EINTR_RETRIES: usize = 4;

// SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
const AUX_SPACE: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::tpacket_auxdata>() as u32) } as usize;

/// Room for one `PACKET_AUXDATA` control message, aligned like a `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct AuxBuf([u8; AUX_SPACE]);

/// Why a port could not be opened. The `Display` text is
/// `af_packet port IFNAME: ` followed by the variant's description.
#[derive(Debug)]
pub enum PacketPortError {
    /// The interface name is empty, longer than 15 bytes or contains a NUL byte.
    BadName {
        /// The name given.
        ifname: String,
    },
    /// There is no interface of that name in this network namespace.
    NoSuchInterface {
        /// The name given.
        ifname: String,
    },
    /// The AF_PACKET socket could not be created (it needs CAP_NET_RAW).
    Socket {
        /// The interface.
        ifname: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// A socket option could not be set.
    SetOption {
        /// The interface.
        ifname: String,
        /// The option, e.g. `PACKET_IGNORE_OUTGOING` (needs Linux 4.20).
        option: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
    /// The socket could not be bound to the interface.
    Bind {
        /// The interface.
        ifname: String,
        /// What the kernel said.
        source: io::Error,
    },
}

impl PacketPortError {
    /// The variant's description (its doc comment).
    fn describe(&self) -> String {
        use PacketPortError::*;
        match self {
            BadName { .. } => {
                "the interface name is empty, longer than 15 bytes or contains a NUL byte".into()
            }
            NoSuchInterface { .. } => {
                "there is no interface of that name in this network namespace".into()
            }
            Socket { .. } => {
                "the AF_PACKET socket could not be created (it needs CAP_NET_RAW)".into()
            }
            SetOption { option, .. } => format!("a socket option could not be set ({option})"),
            Bind { .. } => "the socket could not be bound to the interface".into(),
        }
    }
}

impl fmt::Display for PacketPortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PacketPortError::*;
        match self {
            BadName { ifname } => write!(f, "af_packet port {ifname:?}: {}", self.describe()),
            NoSuchInterface { ifname } => write!(f, "af_packet port {ifname}: {}", self.describe()),
            Socket { ifname, source }
            | SetOption { ifname, source, .. }
            | Bind { ifname, source } => {
                write!(f, "af_packet port {ifname}: {}: {source}", self.describe())
            }
        }
    }
}

impl std::error::Error for PacketPortError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PacketPortError::Socket { source, .. }
            | PacketPortError::SetOption { source, .. }
            | PacketPortError::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A port on one interface through an AF_PACKET socket.
pub struct PacketPort {
    name: String,
    ifindex: u32,
    fd: OwnedFd,
    txq: VecDeque<PacketDesc>,
    stats: PortStats,
    /// Receive-buffer drops reported by the kernel so far (it resets its
    /// counter on each read, and [`NetPort::stats`] takes `&self`).
    kernel_drops: Cell<u64>,
    /// False for a transmit-only socket ([`PacketPort::open_tx_only`]).
    receive: bool,
}

impl PacketPort {
    /// Opens a non-blocking packet socket on `ifname`, in the calling
    /// thread's network namespace.
    pub fn open(ifname: &str) -> Result<PacketPort, PacketPortError> {
        PacketPort::open_with(ifname, true)
    }

    /// Opens a packet socket on `ifname` that only transmits: a poll thread
    /// that has no queue of its own on an interface (it has fewer queues
    /// than there are poll threads) sends through one of these, while the
    /// thread that owns the queue receives. It never receives, so a frame
    /// is never seen twice, and it leaves the interface's promiscuity alone.
    pub fn open_tx_only(ifname: &str) -> Result<PacketPort, PacketPortError> {
        PacketPort::open_with(ifname, false)
    }

    fn open_with(ifname: &str, receive: bool) -> Result<PacketPort, PacketPortError> {
        let name = ifname.to_string();
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
            return Err(PacketPortError::BadName { ifname: name });
        }
        let Some(ifindex) = crate::sys::if_index(ifname) else {
            return Err(PacketPortError::NoSuchInterface { ifname: name });
        };
        let flags = libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: socket(2) takes no pointers. Protocol 0 receives nothing
        // until bind names the interface and the protocol.
        let raw = unsafe { libc::socket(libc::AF_PACKET, flags, 0) };
        if raw < 0 {
            let source = io::Error::last_os_error();
            return Err(PacketPortError::Socket {
                ifname: name,
                source,
            });
        }
        // SAFETY: `raw` is a descriptor just created and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let option_err = |option: &'static str| {
            let ifname = name.clone();
            move |source| PacketPortError::SetOption {
                ifname,
                option,
                source,
            }
        };
        let one: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(option_err("PACKET_IGNORE_OUTGOING"))?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)
            .map_err(option_err("PACKET_AUXDATA"))?;
        // SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN;
        // without it SO_RCVBUF gets what rmem_max allows. A small buffer is
        // not an error: the kernel counts what it drops.
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF_BYTES).is_err() {
            let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF_BYTES);
        }
        // Protocol 0 in bind receives nothing, which is what a
        // transmit-only socket wants.
        let protocol = if receive { libc::ETH_P_ALL as u16 } else { 0 };
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: protocol.to_be(),
            sll_ifindex: ifindex as libc::c_int,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a complete sockaddr_ll and its size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                ptr::addr_of!(addr).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            let source = io::Error::last_os_error();
            return Err(PacketPortError::Bind {
                ifname: name,
                source,
            });
        }
        let promisc = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        if receive {
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &promisc)
                .map_err(option_err("PACKET_ADD_MEMBERSHIP promiscuous"))?;
        }
        Ok(PacketPort {
            receive,
            name,
            ifindex,
            fd,
            txq: VecDeque::with_capacity(TX_QUEUE_DEPTH),
            stats: PortStats::default(),
            kernel_drops: Cell::new(0),
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames queued and not yet handed to the kernel.
    pub fn tx_pending(&self) -> usize {
        self.txq.len()
    }

    /// Returns every queued frame to the pool unsent (counted as
    /// `tx_dropped`); for shutting a port down.
    pub fn discard_queued(&mut self, pool: &mut FramePool) {
        for d in self.txq.drain(..) {
            self.stats.tx_dropped += 1;
            pool.free(d);
        }
    }
}

/// setsockopt(2) with a value of type `T`.
fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live `T` and its exact size is passed;
    // the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(value).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An all-zero `mmsghdr` array: null pointers and zero lengths.
fn zeroed_mmsghdrs() -> [libc::mmsghdr; BATCH] {
    // SAFETY: mmsghdr is a C struct of integers and raw pointers, for which
    // all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: ptr::null_mut(),
    iov_len: 0,
};

/// The outer VLAN tag the kernel took out of a received frame, as
/// (TPID, TCI), from the `PACKET_AUXDATA` control message of `msg`.
fn stripped_vlan_tag(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `msg` was filled in by recvmmsg: msg_control points at one of
    // our AuxBufs and msg_controllen is what the kernel wrote into it, and
    // CMSG_FIRSTHDR returns null or a header inside that range.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` is non-null and points at a whole cmsghdr inside the
        // control buffer (CMSG_FIRSTHDR/CMSG_NXTHDR check that).
        let hdr = unsafe { ptr::read_unaligned(c) };
        let aux_len = mem::size_of::<libc::tpacket_auxdata>();
        if hdr.cmsg_level == libc::SOL_PACKET
            && hdr.cmsg_type == libc::PACKET_AUXDATA
            && hdr.cmsg_len as usize >= mem::size_of::<libc::cmsghdr>() + aux_len
        {
            // SAFETY: cmsg_len says the kernel wrote a whole tpacket_auxdata
            // after the header; read_unaligned needs no alignment.
            let aux: libc::tpacket_auxdata =
                unsafe { ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                ETH_P_8021Q
            };
            return Some((tpid, aux.tp_vlan_tci));
        }
        // SAFETY: `msg` and `c` are as above; CMSG_NXTHDR returns null at
        // the end of the control buffer.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    None
}

/// Puts a VLAN tag back between the MAC addresses and the EtherType of a
/// frame received at [`HEADROOM`], growing it into the headroom.
fn insert_vlan_tag(pool: &mut FramePool, d: &mut PacketDesc, tpid: u16, tci: u16) {
    let off = d.off as usize;
    let frame = pool.frame_mut(d);
    frame.copy_within(off..off + ETH_ADDRS_LEN, off - VLAN_TAG_LEN);
    let tag = off - VLAN_TAG_LEN + ETH_ADDRS_LEN;
    frame[tag..tag + 2].copy_from_slice(&tpid.to_be_bytes());
    frame[tag + 2..tag + 4].copy_from_slice(&tci.to_be_bytes());
    d.off -= VLAN_TAG_LEN as u16;
    d.len += VLAN_TAG_LEN as u16;
}

impl NetPort for PacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn mode(&self) -> String {
        if self.receive {
            "af_packet".to_string()
        } else {
            "af_packet tx-only".to_string()
        }
    }

    fn rx_burst(&mut self, pool: &mut FramePool, batch: &mut Batch) {
        batch.len = 0;
        if !self.receive {
            return;
        }
        let mut descs = [PacketDesc::default(); BATCH];
        let mut iov = [EMPTY_IOVEC; BATCH];
        let mut aux = [AuxBuf([0; AUX_SPACE]); BATCH];
        let mut hdrs = zeroed_mmsghdrs();
        let mut n_frames = 0;
        while n_frames < BATCH {
            let Some(d) = pool.alloc() else { break };
            let room = &mut pool.frame_mut(&d)[HEADROOM..];
            iov[n_frames] = libc::iovec {
                iov_base: room.as_mut_ptr().cast(),
                iov_len: room.len(),
            };
            descs[n_frames] = d;
            n_frames += 1;
        }
        if n_frames == 0 {
            // No frame to receive into: frames wait in the socket buffer,
            // and what overflows it the kernel counts as dropped.
            return;
        }
        for i in 0..n_frames {
            let m = &mut hdrs[i].msg_hdr;
            m.msg_iov = ptr::addr_of_mut!(iov[i]);
            m.msg_iovlen = 1;
            m.msg_control = aux[i].0.as_mut_ptr().cast();
            m.msg_controllen = AUX_SPACE as _;
        }
        // SAFETY: the first `n_frames` headers each name one iovec and one
        // AuxBuf on this stack frame, alive until the call returns. Each
        // iovec covers the bytes after the headroom of a distinct frame the
        // pool handed us, so the kernel's writes never overlap, and `pool` is
        // borrowed exclusively by this function, so nothing reads those bytes
        // while the kernel writes them. No timeout pointer is passed.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n_frames as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        // Errors: EAGAIN when idle; a pending socket error (ENETDOWN when
        // the interface went down) is reported once and then cleared.
        let received = if r > 0 { r as usize } else { 0 };
        for (h, d) in hdrs.iter().zip(descs.iter_mut()).take(received) {
            let len = h.msg_len as usize;
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len < ETH_HEADER_LEN {
                self.stats.rx_dropped += 1;
                pool.free(*d);
                continue;
            }
            d.len = len as u16;
            if let Some((tpid, tci)) = stripped_vlan_tag(&h.msg_hdr) {
                insert_vlan_tag(pool, d, tpid, tci);
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += d.len as u64;
            batch.push(*d);
        }
        for d in &descs[received..n_frames] {
            pool.free(*d);
        }
    }

    fn send(&mut self, _pool: &mut FramePool, pkt: PacketDesc) -> Result<(), DropReason> {
        if self.txq.len() >= TX_QUEUE_DEPTH {
            self.stats.tx_dropped += 1;
            return Err(DropReason::TxFull);
        }
        self.txq.push_back(pkt);
        Ok(())
    }

    fn flush(&mut self, pool: &mut FramePool) {
        let mut interrupted = 0;
        while !self.txq.is_empty() {
            let n = self.txq.len().min(BATCH);
            let mut iov = [EMPTY_IOVEC; BATCH];
            let mut hdrs = zeroed_mmsghdrs();
            for (i, d) in self.txq.iter().take(n).enumerate() {
                let bytes = pool.data(d);
                iov[i] = libc::iovec {
                    iov_base: bytes.as_ptr().cast_mut().cast(),
                    iov_len: bytes.len(),
                };
            }
            for i in 0..n {
                hdrs[i].msg_hdr.msg_iov = ptr::addr_of_mut!(iov[i]);
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first `n` headers each name one iovec on this stack
            // frame covering a queued packet's bytes in the pool; sendmmsg
            // only reads through them (the `*mut` is the C signature), and
            // `pool` stays borrowed until the call returns. No address is
            // given: the socket is bound to the interface.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                // The kernel has copied these; their frames are free again.
                for d in self.txq.drain(..r as usize) {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += d.len as u64;
                    pool.free(d);
                }
                continue;
            }
            if r == 0 {
                break;
            }
            match io::Error::last_os_error().raw_os_error() {
                // The send buffer is full: keep the frames for the next flush.
                Some(libc::EAGAIN) => break,
                Some(libc::EINTR) if interrupted < EINTR_RETRIES => interrupted += 1,
                // The first frame was refused (too long for the MTU, the
                // interface down or gone, the peer dropping it: ENOBUFS):
                // drop it and go on with the rest.
                _ => {
                    if let Some(d) = self.txq.pop_front() {
                        self.stats.tx_dropped += 1;
                        pool.free(d);
                    }
                }
            }
        }
    }

    fn poll_fd(&self) -> Option<i32> {
        // A transmit-only socket never becomes readable.
        self.receive.then(|| self.fd.as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and `len` is the size of `st`; the
        // kernel writes at most `len` bytes and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                ptr::addr_of_mut!(st).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.kernel_drops
                .set(self.kernel_drops.get() + st.tp_drops as u64);
        }
        let mut s = self.stats;
        s.rx_dropped += self.kernel_drops.get();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_goes_back_between_the_addresses_and_the_ethertype() {
        let mut pool = FramePool::new(1);
        let untagged = [
            1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16, 0x08, 0x00, 0x45, 0x00,
        ];
        let mut d = pool.alloc_from(&untagged).unwrap();
        insert_vlan_tag(&mut pool, &mut d, 0x88a8, 0xa00a);
        assert_eq!(d.off as usize, HEADROOM - VLAN_TAG_LEN);
        assert_eq!(
            pool.data(&d),
            [
                1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16, 0x88, 0xa8, 0xa0, 0x0a, 0x08, 0x00, 0x45,
                0x00
            ]
        );
    }
}
