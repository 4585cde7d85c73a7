//! The few plain system calls the daemon makes outside the port modules:
//! waiting on file descriptors, and resolving interface names (through the
//! AF_XDP module's wrapper). Safe wrappers, so that the rest of the crate
//! stays free of `unsafe`.
#![allow(unsafe_code)] // FFI to poll(2), wrapped safely here.

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
    fn poll_times_out_on_nothing() {
        assert_eq!(poll_readable(&[], 1).unwrap(), 0);
    }
}
