//! The system calls AF_XDP needs, each wrapped once: sockets and socket
//! options with the kernel's C structs, shared mappings, wake-ups, interface
//! names and network namespaces.
//!
//! Everything above this file works with [`OwnedFd`], [`Mmap`] and
//! `io::Result`; the raw pointers and `errno` stay here. The kernel ABI
//! structs are spelled out as `#[repr(C)]` copies of `<linux/if_xdp.h>`
//! (kernel 6.x layout) rather than taken from `libc`, whose copies lag the
//! kernel (`xdp_umem_reg` gained `tx_metadata_len` in 6.8: the kernel reads
//! what used to be padding, so it must be zero, and here it is a field).
//!
//! Invariants: an [`Mmap`] owns its mapping and unmaps it exactly once; no
//! wrapper keeps a pointer it was given beyond the call.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// `SOL_XDP`, the socket option level of AF_XDP sockets.
pub const SOL_XDP: i32 = 283;
/// Socket option: ring offsets for mmap.
pub const XDP_MMAP_OFFSETS: i32 = 1;
/// Socket option: RX ring size.
pub const XDP_RX_RING: i32 = 2;
/// Socket option: TX ring size.
pub const XDP_TX_RING: i32 = 3;
/// Socket option: register a UMEM.
pub const XDP_UMEM_REG: i32 = 4;
/// Socket option: fill ring size.
pub const XDP_UMEM_FILL_RING: i32 = 5;
/// Socket option: completion ring size.
pub const XDP_UMEM_COMPLETION_RING: i32 = 6;
/// Socket option: drop counters.
pub const XDP_STATISTICS: i32 = 7;
/// Socket option: bound mode (zero-copy or not).
pub const XDP_OPTIONS: i32 = 8;
/// `xdp_options.flags`: the socket is bound in zero-copy mode.
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// Bind flag: share the UMEM of `sxdp_shared_umem_fd`.
pub const XDP_SHARED_UMEM: u16 = 1 << 0;
/// Bind flag: force copy mode.
pub const XDP_COPY: u16 = 1 << 1;
/// Bind flag: force zero-copy mode.
pub const XDP_ZEROCOPY: u16 = 1 << 2;
/// Bind flag: the kernel sets `XDP_RING_NEED_WAKEUP` when it needs a kick.
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// Ring flag: the kernel is asleep and wants a `sendto`/`poll`.
pub const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

/// mmap offset of the RX ring.
pub const XDP_PGOFF_RX_RING: i64 = 0;
/// mmap offset of the TX ring.
pub const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
/// mmap offset of the fill ring.
pub const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
/// mmap offset of the completion ring.
pub const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

/// `struct xdp_desc`: one RX or TX descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDesc {
    /// Offset of the packet's first byte in the UMEM.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Options (multi-buffer continuation bit); always 0 here.
    pub options: u32,
}

/// `struct xdp_ring_offset`: where a ring's fields sit in its mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpRingOffset {
    /// Producer index (u32).
    pub producer: u64,
    /// Consumer index (u32).
    pub consumer: u64,
    /// Descriptor array.
    pub desc: u64,
    /// Flags word (u32).
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpMmapOffsets {
    /// RX ring.
    pub rx: XdpRingOffset,
    /// TX ring.
    pub tx: XdpRingOffset,
    /// Fill ring.
    pub fr: XdpRingOffset,
    /// Completion ring.
    pub cr: XdpRingOffset,
}

/// `struct xdp_umem_reg` (kernel >= 6.8 layout; older kernels read the
/// first 28 bytes and ignore the rest).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpUmemReg {
    /// Start of the region.
    pub addr: u64,
    /// Length of the region.
    pub len: u64,
    /// Frame (chunk) size.
    pub chunk_size: u32,
    /// Extra headroom the kernel leaves before received packets, on top of
    /// its own `XDP_PACKET_HEADROOM` (256).
    pub headroom: u32,
    /// Flags (unaligned chunks); 0.
    pub flags: u32,
    /// TX metadata length; 0.
    pub tx_metadata_len: u32,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockaddrXdp {
    /// `AF_XDP`.
    pub family: u16,
    /// Bind flags.
    pub flags: u16,
    /// Interface index.
    pub ifindex: u32,
    /// Queue.
    pub queue_id: u32,
    /// The socket whose UMEM to share, with `XDP_SHARED_UMEM`.
    pub shared_umem_fd: u32,
}

/// `struct xdp_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpOptions {
    /// `XDP_OPTIONS_ZEROCOPY` when bound zero-copy.
    pub flags: u32,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Received packets dropped for other reasons (no frame, too long).
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Received packets dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty.
    pub tx_ring_empty_descs: u64,
}

mod sealed {
    pub trait Sealed {}
}

/// Kernel ABI plain data: structs of integers, valid for any bytes, so the
/// kernel may write them. Sealed: only the types below.
pub trait Pod: Copy + Default + sealed::Sealed {}

macro_rules! pod {
    ($($t:ty),*) => { $(impl sealed::Sealed for $t {} impl Pod for $t {})* };
}
pod!(
    u32,
    u64,
    XdpDesc,
    XdpRingOffset,
    XdpMmapOffsets,
    XdpUmemReg,
    XdpOptions,
    XdpStatistics
);

/// The error of the last failed call.
fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Turns a `-1` return into the `errno` error.
fn check(ret: i64) -> io::Result<i64> {
    if ret < 0 {
        Err(last_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor the kernel just returned.
pub fn own_fd(fd: i64) -> io::Result<OwnedFd> {
    let fd = check(fd)? as RawFd;
    // SAFETY: `fd` was just returned by a successful system call that
    // creates a descriptor, so it is open and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Nanoseconds of CLOCK_MONOTONIC: the clock of `bpf_ktime_get_ns()`, so
/// the time an XDP program stamped can be compared with now.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists, and on failure `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether the effective user is root (the tests that need the kernel skip
/// otherwise).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A new AF_XDP socket.
pub fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    own_fd(fd as i64)
}

/// `setsockopt(fd, level, name, &val)` for a plain-data value.
pub fn setsockopt<T: Pod>(fd: BorrowedFd<'_>, level: i32, name: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live, initialised `T` of the size passed;
    // the kernel only reads it during the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(r as i64).map(|_| ())
}

/// `getsockopt(fd, level, name)` into a plain-data value.
pub fn getsockopt<T: Pod>(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<T> {
    let mut val = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is writable for `len` bytes and `len` is a valid
    // in/out length; the kernel writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            val.as_mut_ptr().cast(),
            &mut len,
        )
    };
    check(r as i64)?;
    // SAFETY: `val` started zeroed and the kernel wrote at most its size;
    // `T: Pod` is a struct of integers, valid for any bytes.
    Ok(unsafe { val.assume_init() })
}

/// Binds an AF_XDP socket.
pub fn bind_xdp(fd: BorrowedFd<'_>, addr: &SockaddrXdp) -> io::Result<()> {
    // SAFETY: `addr` is a live sockaddr_xdp of the size passed, read only
    // during the call.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const SockaddrXdp).cast(),
            size_of::<SockaddrXdp>() as libc::socklen_t,
        )
    };
    check(r as i64).map(|_| ())
}

/// Asks the kernel to process the TX ring (`sendto` with no data).
pub fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with null buffer and address is valid for
    // AF_XDP; the kernel reads nothing from user memory.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    check(r as i64).map(|_| ())
}

/// Asks the driver to process the fill ring (`recvfrom` with no buffer).
pub fn wake_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length receive with null buffer and address is valid
    // for AF_XDP; the kernel writes nothing to user memory.
    let r = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    check(r as i64).map(|_| ())
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(last_error())
    } else {
        Ok(i)
    }
}

/// Moves the calling thread into the network namespace `/run/netns/<name>`
/// (as made by `ip netns add`). Other threads are not affected.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: `f` is an open namespace file for the duration of the call;
    // setns changes only this thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    check(r as i64).map(|_| ())
}

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mmap is an owned region like a Box<[u8]>; it has no thread
// affinity, and every access through it goes through `&self`/`&mut self`
// or through the ring and UMEM protocols built on top, which synchronise
// with atomics.
unsafe impl Send for Mmap {}
// SAFETY: as above; shared access only reads the pointer and length.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// `len` bytes of zeroed, page-aligned anonymous memory, faulted in
    /// up front.
    pub fn anonymous(len: usize) -> io::Result<Mmap> {
        Mmap::map(
            None,
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            0,
        )
    }

    /// A shared mapping of `len` bytes of `fd` at `offset` (a ring).
    pub fn shared(fd: BorrowedFd<'_>, len: usize, offset: i64) -> io::Result<Mmap> {
        Mmap::map(
            Some(fd.as_raw_fd()),
            len,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            offset,
        )
    }

    fn map(fd: Option<RawFd>, len: usize, flags: i32, offset: i64) -> io::Result<Mmap> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping at an address of the kernel's choosing
        // cannot overlap any existing Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.unwrap_or(-1),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Mmap { ptr, len })
    }

    /// First byte.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: zero-length maps are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and
        // still owns; nothing borrows it once the owner is dropped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes_match_the_kernel_headers() {
        assert_eq!(size_of::<XdpDesc>(), 16);
        assert_eq!(size_of::<XdpRingOffset>(), 32);
        assert_eq!(size_of::<XdpMmapOffsets>(), 128);
        assert_eq!(size_of::<XdpUmemReg>(), 32);
        assert_eq!(size_of::<SockaddrXdp>(), 16);
        assert_eq!(size_of::<XdpStatistics>(), 48);
    }

    #[test]
    fn anonymous_mapping_is_zeroed_and_writable() {
        let m = Mmap::anonymous(8192).expect("mmap");
        assert_eq!(m.len(), 8192);
        assert_eq!(m.as_ptr() as usize % 4096, 0, "page aligned");
        // SAFETY: the mapping is 8192 bytes, live, and only this test uses it.
        let s = unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), m.len()) };
        assert!(s.iter().all(|&b| b == 0));
        s[8191] = 7;
        assert_eq!(s[8191], 7);
    }

    #[test]
    fn unknown_interface_is_an_error() {
        assert!(if_index("oxvs-no-such0").is_err());
        assert!(if_index("bad\0name").is_err());
        assert!(if_index("lo").is_ok());
    }
}
