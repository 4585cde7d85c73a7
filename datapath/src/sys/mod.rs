//! The few plain system calls the daemon makes outside the port modules:
//! waiting on file descriptors, resolving interface names (through the
//! AF_XDP module's wrapper), asking a driver how many queues it has, and
//! asking the kernel for routes and neighbours ([`netlink`]). Safe wrappers, so that the rest of the crate
//! stays free of `unsafe`.
#![allow(unsafe_code)] // FFI to poll(2), ioctl(2) and netlink, wrapped safely here.

pub mod netlink;

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns how
/// many are ready (0 on timeout or when interrupted by a signal).
pub fn poll_readable(fds: &[i32], timeout_ms: i32) -> std::io::Result<usize> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid, exclusively borrowed array of `pfds.len()`
    // pollfd structs that outlives the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// The interface index of `name`, or `None` if there is no such interface
/// in this network namespace.
pub fn if_index(name: &str) -> Option<u32> {
    crate::afxdp::sys::if_index(name).ok()
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `ETHTOOL_GCHANNELS`.
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// How many queues of `name` an AF_XDP socket can bind: a socket needs both
/// a receive and a transmit queue of its number. Asked with the ethtool
/// ioctl rather than read from sysfs, because sysfs shows the namespace it
/// was mounted in, not the caller's. `None` if the driver does not say
/// (then only binding tells).
pub fn queue_count(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return None;
    }
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: zeroed ifreq is a valid value (names and unions of integers
    // and pointers).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = std::ptr::addr_of_mut!(ch).cast();
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `ifr` names the interface and points at `ch`, a complete
    // ethtool_channels that outlives the call; the kernel writes only
    // inside it.
    let r = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, std::ptr::addr_of_mut!(ifr)) };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    if r < 0 {
        return None;
    }
    let rx = ch.rx_count + ch.combined_count;
    let tx = ch.tx_count + ch.combined_count;
    Some(rx.min(tx))
}

/// Sets the MTU of interface `name` (`SIOCSIFMTU`).
pub fn set_mtu(name: &str, mtu: u32) -> std::io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: zeroed ifreq is a valid value (names and unions of integers
    // and pointers).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ifr` is a complete ifreq naming the interface, valid for
    // the call; the kernel only reads it.
    let r = unsafe { libc::ioctl(fd, libc::SIOCSIFMTU, std::ptr::addr_of_mut!(ifr)) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(err);
    }
    Ok(())
}

/// An eventfd: one thread signals, another wakes from `poll(2)` on it. The
/// control thread uses one per poll thread to say that messages wait.
#[derive(Debug)]
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    /// A non-blocking eventfd with counter 0.
    pub fn new() -> std::io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd(2) takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable.
    pub fn signal(&self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN)
        // leaves it readable, which is all a signal needs.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), std::ptr::addr_of!(one).cast(), 8) };
    }

    /// Makes the fd unreadable again.
    pub fn clear(&self) {
        use std::os::fd::AsRawFd;
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; non-blocking.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), std::ptr::addr_of_mut!(n).cast(), 8) };
    }

    /// The descriptor, for `poll(2)`.
    pub fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_nonsense_does_not() {
        assert!(if_index("lo").is_some());
        assert_eq!(if_index("no-such-if0"), None);
        assert_eq!(if_index("bad\0name"), None);
    }

    #[test]
    fn loopback_does_not_report_channels_and_nonsense_has_none() {
        // `lo` has no ethtool channel operation; the answer is "unknown".
        assert_eq!(queue_count("lo"), None);
        assert_eq!(queue_count("no-such-if0"), None);
    }

    #[test]
    fn poll_times_out_on_nothing() {
        assert_eq!(poll_readable(&[], 1).unwrap(), 0);
    }
}
