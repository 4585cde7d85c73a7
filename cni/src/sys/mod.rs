//! The plugin's only contact with the kernel ABI: network namespaces
//! (`setns(2)`), sockets opened inside one, the ethtool ioctl that turns off
//! transmit checksum offload, and `NETLINK_ROUTE` requests ([`netlink`]).
//!
//! The plugin never runs `ip` or `ethtool`: it is exec'd once per pod, so a
//! fork and exec per step would dominate its run time, and parsing another
//! tool's text output is fragile. Instead a socket is opened *inside* the
//! container's namespace (enter it, `socket(2)`, come back): a socket stays
//! bound to the namespace it was created in, so every later request on it
//! acts there while the thread itself stays in the host namespace.
//!
//! This is the one module of the crate that may use `unsafe`; every block has
//! a `SAFETY` note and the wrappers it exports are safe.

#![allow(unsafe_code)] // FFI to setns(2), socket(2) and ioctl(2), wrapped safely here.

pub mod netlink;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// An open network namespace (`/proc/PID/ns/net`, `/run/netns/NAME`).
pub struct Netns {
    file: File,
}

impl Netns {
    /// Opens the namespace at `path`.
    pub fn open(path: &Path) -> io::Result<Netns> {
        Ok(Netns {
            file: File::open(path)?,
        })
    }

    /// The calling thread's namespace.
    pub fn current() -> io::Result<Netns> {
        Netns::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// The descriptor, for `IFLA_NET_NS_FD`.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Whether `self` and `other` are the same namespace (same inode).
    pub fn same_as(&self, other: &Netns) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    fn enter(&self) -> io::Result<()> {
        // SAFETY: setns(2) takes a descriptor we own (open for the call's
        // duration) and a flag; it changes only this thread's namespace.
        let r = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Opens a socket inside `ns` (or here, when `None`). The thread enters the
/// namespace only for the `socket(2)` call. Failing to come back would leave
/// every later step acting in the container, so that aborts the process: it
/// is a kernel refusing to re-enter a namespace we were just in.
pub fn socket_in(ns: Option<&Netns>, domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    let Some(ns) = ns else {
        return socket(domain, ty, proto);
    };
    let home = Netns::current()?;
    ns.enter()?;
    let s = socket(domain, ty, proto);
    if let Err(e) = home.enter() {
        eprintln!("oxvs-cni: cannot return to the host network namespace: {e}");
        std::process::abort();
    }
    s
}

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just created and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sets a receive timeout on `fd`, so that a kernel that never answers
/// cannot hang a pod's creation.
pub fn set_recv_timeout(fd: &OwnedFd, secs: i64) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a complete timeval and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ETHTOOL_GTXCSUM` / `ETHTOOL_STXCSUM` (linux/ethtool.h).
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
/// `ETHTOOL_SGRO`.
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: an all-zero ifreq is a valid value (a name array and a union
    // of integers and pointers).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

fn ethtool_value(sock: &OwnedFd, name: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut v = EthtoolValue { cmd, data };
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_data = std::ptr::addr_of_mut!(v).cast();
    // SAFETY: `ifr` names the interface and points at `v`, a complete
    // ethtool_value that outlives the call; the kernel reads and writes only
    // inside it.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCETHTOOL,
            std::ptr::addr_of_mut!(ifr),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data)
}

/// Turns transmit checksum offload of `name` on or off (what `ethtool -K
/// NAME tx off` does), through a datagram socket `sock` of the interface's
/// namespace. With it off the kernel also drops TSO, whose segments need it.
pub fn set_tx_checksum(sock: &OwnedFd, name: &str, on: bool) -> io::Result<()> {
    ethtool_value(sock, name, ETHTOOL_STXCSUM, u32::from(on)).map(|_| ())
}

/// Whether transmit checksum offload of `name` is on.
pub fn tx_checksum(sock: &OwnedFd, name: &str) -> io::Result<bool> {
    ethtool_value(sock, name, ETHTOOL_GTXCSUM, 0).map(|d| d != 0)
}

/// Turns generic receive offload of `name` on or off (`ethtool -K NAME gro
/// on`). On a veth it also gives the device a NAPI instance, which a frame
/// redirected into it by an XDP program on its peer needs to be received
/// (oxvsd's fast path); without one the kernel drops such frames.
pub fn set_gro(sock: &OwnedFd, name: &str, on: bool) -> io::Result<()> {
    ethtool_value(sock, name, ETHTOOL_SGRO, u32::from(on)).map(|_| ())
}

/// An `AF_INET` datagram socket in `ns`, the handle ethtool ioctls need.
pub fn ioctl_socket_in(ns: Option<&Netns>) -> io::Result<OwnedFd> {
    socket_in(ns, libc::AF_INET, libc::SOCK_DGRAM, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_tx_checksum_setting_to_break() {
        let s = ioctl_socket_in(None).unwrap();
        // Whatever lo answers, a missing interface is an error and a bad
        // name is refused before the kernel sees it.
        assert!(tx_checksum(&s, "no-such-if0").is_err());
        assert!(tx_checksum(&s, "bad\0name").is_err());
        assert!(Netns::current()
            .unwrap()
            .same_as(&Netns::current().unwrap()));
    }
}
