//! Why an AF_XDP port could not be opened. Each variant's doc comment is
//! its message; every system call failure says which call, on what, and the
//! errno, and a refused program carries the verifier's log.

use std::fmt;
use std::io;

/// Why an AF_XDP port could not be opened.
#[derive(Debug)]
pub enum XskError {
    /// the frame pool is heap memory; AF_XDP ports need a pool made with `FramePool::new_umem`
    PoolNotUmem,
    /// cannot map {len} bytes of UMEM: {err}
    Umem {
        /// Bytes asked for.
        len: usize,
        /// The error.
        err: io::Error,
    },
    /// no interface {ifname} in this network namespace: {err}
    NoSuchInterface {
        /// The name asked for.
        ifname: String,
        /// The error.
        err: io::Error,
    },
    /// queue {queue} of {ifname} is beyond the {max} queues an XSKMAP here holds
    QueueOutOfRange {
        /// Interface.
        ifname: String,
        /// Queue asked for.
        queue: u32,
        /// Slots in the map.
        max: u32,
    },
    /// {op} for {ifname}: {err}
    Sys {
        /// The call that failed, e.g. `setsockopt(XDP_UMEM_REG)`.
        op: &'static str,
        /// Interface.
        ifname: String,
        /// The error.
        err: io::Error,
    },
    /// the kernel refused XDP program {name}: {err}; verifier log:\n{log}
    ProgramLoad {
        /// Program name.
        name: &'static str,
        /// The error.
        err: io::Error,
        /// What the verifier said.
        log: String,
    },
    /// cannot attach XDP to {ifname}: {attempts} (another XDP program attached, e.g. by `ip link set dev IF xdp ...`, gives EBUSY)
    Attach {
        /// Interface.
        ifname: String,
        /// Each mode tried, with its error, e.g. `native: Numerical result out of range (os error 34)`.
        attempts: String,
    },
    /// {ifname} already runs the {have:?} XDP program for another port; cannot also run {want:?}
    ProgramMismatch {
        /// Interface.
        ifname: String,
        /// Program attached.
        have: super::ProgramKind,
        /// Program asked for.
        want: super::ProgramKind,
    },
    /// {ifname} has XDP attached in {have} mode by another port; {want} mode was asked for
    AttachModeMismatch {
        /// Interface.
        ifname: String,
        /// Mode attached.
        have: &'static str,
        /// Mode asked for.
        want: &'static str,
    },
    /// cannot bind an AF_XDP socket to {ifname} queue {queue}: {attempts}
    Bind {
        /// Interface.
        ifname: String,
        /// Queue.
        queue: u32,
        /// Each mode tried, with its error, e.g. `zerocopy: Operation not supported (os error 95)`.
        attempts: String,
    },
    /// {ifname} queue {queue} was bound in {got} mode, but {want} was asked for (sockets sharing a UMEM inherit the mode of its first socket)
    BindModeMismatch {
        /// Interface.
        ifname: String,
        /// Queue.
        queue: u32,
        /// What the kernel gave.
        got: &'static str,
        /// What was asked for.
        want: &'static str,
    },
    /// the ring sizes ({size}) must be a power of two from 64 to 32768
    RingSize {
        /// Size asked for.
        size: u32,
    },
}

impl fmt::Display for XskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XskError::PoolNotUmem => write!(
                f,
                "the frame pool is heap memory; AF_XDP ports need a pool made with `FramePool::new_umem`"
            ),
            XskError::Umem { len, err } => write!(f, "cannot map {len} bytes of UMEM: {err}"),
            XskError::NoSuchInterface { ifname, err } => {
                write!(f, "no interface {ifname} in this network namespace: {err}")
            }
            XskError::QueueOutOfRange { ifname, queue, max } => write!(
                f,
                "queue {queue} of {ifname} is beyond the {max} queues an XSKMAP here holds"
            ),
            XskError::Sys { op, ifname, err } => write!(f, "{op} for {ifname}: {err}"),
            XskError::ProgramLoad { name, err, log } => write!(
                f,
                "the kernel refused XDP program {name}: {err}; verifier log:\n{log}"
            ),
            XskError::Attach { ifname, attempts } => write!(
                f,
                "cannot attach XDP to {ifname}: {attempts} (another XDP program attached, \
                 e.g. by `ip link set dev IF xdp ...`, gives EBUSY)"
            ),
            XskError::ProgramMismatch { ifname, have, want } => write!(
                f,
                "{ifname} already runs the {have:?} XDP program for another port; cannot also run {want:?}"
            ),
            XskError::AttachModeMismatch { ifname, have, want } => write!(
                f,
                "{ifname} has XDP attached in {have} mode by another port; {want} mode was asked for"
            ),
            XskError::Bind { ifname, queue, attempts } => write!(
                f,
                "cannot bind an AF_XDP socket to {ifname} queue {queue}: {attempts}"
            ),
            XskError::BindModeMismatch { ifname, queue, got, want } => write!(
                f,
                "{ifname} queue {queue} was bound in {got} mode, but {want} was asked for \
                 (sockets sharing a UMEM inherit the mode of its first socket)"
            ),
            XskError::RingSize { size } => write!(
                f,
                "the ring sizes ({size}) must be a power of two from 64 to 32768"
            ),
        }
    }
}

impl std::error::Error for XskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            XskError::Umem { err, .. }
            | XskError::NoSuchInterface { err, .. }
            | XskError::Sys { err, .. }
            | XskError::ProgramLoad { err, .. } => Some(err),
            _ => None,
        }
    }
}
