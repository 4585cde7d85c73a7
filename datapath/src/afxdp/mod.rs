//! AF_XDP from first principles: raw `bpf(2)` and socket system calls
//! through `libc`, no libbpf or libxdp, no C toolchain.
//!
//! This is the one module of the workspace allowed `unsafe`, because AF_XDP
//! is memory shared with the kernel: the UMEM the kernel writes packets
//! into, four rings per socket whose indices the kernel moves, and system
//! calls that take C structs by pointer. Every `unsafe` block sits in a
//! small wrapper with a `// SAFETY:` comment naming the invariant it relies
//! on, and everything this module exports is a safe API; the rest of the
//! crate (`port::xsk` included) keeps `#![deny(unsafe_code)]`.
//!
//! * [`sys`]: the system calls and kernel ABI structs, mappings.
//! * [`ring`]: producer and consumer halves of a ring, with acquire/release
//!   ordering, unit-tested over rings in anonymous memory.
//! * [`umem`]: the mapped frame memory behind an AF_XDP
//!   [`FramePool`](crate::buf::FramePool).
//! * [`socket`]: one socket, its rings, bind.
//! * [`program`]: the XDP programs, assembled from eBPF instructions.
//! * [`bpf`]: maps, program load (with the verifier log), BPF links, test
//!   runs.
//! * [`attach`]: one attachment per interface, shared by its queues'
//!   ports, detached when the last one goes.
//!
//! Why our own code instead of a crate: the crates that wrap libxdp build C
//! at compile time, pin libbpf versions and, on this kernel, fall back to
//! modes that leave programs attached after a crash (see
//! `shared/notes/afxdp-on-this-kernel.md`); the kernel interface itself is
//! small and stable.

#![allow(unsafe_code)]

pub(crate) mod asm;
pub mod attach;
pub mod bpf;
mod error;
pub mod fastpath;
pub mod program;
pub mod ring;
pub mod socket;
pub mod sys;
pub mod umem;

pub use attach::{AttachMode, AttachPref, FastAttach, XdpAttachment};
pub use error::XskError;
pub use program::{ProgramKind, XdpAction};
pub use sys::enter_netns;
pub use umem::Umem;

use std::io;
use std::time::Duration;

/// How often an operation refused with EBUSY is retried.
const BUSY_RETRIES: u32 = 10;
/// Pause between those retries.
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// Runs `f`, retrying up to [`BUSY_RETRIES`] times, [`BUSY_PAUSE`] apart,
/// while it fails with EBUSY: rebinding a queue or re-attaching a program
/// right after the previous owner closed fails so until the kernel's
/// deferred teardown has run.
pub fn retry_busy<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..BUSY_RETRIES {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(BUSY_PAUSE),
            r => return r,
        }
    }
    f()
}
