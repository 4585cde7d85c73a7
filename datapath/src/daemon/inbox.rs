//! Messages from the control thread to one poll thread: the ports it is
//! handed and the ports it must give back.
//!
//! The poll thread reads one atomic per loop ([`Inbox::pending`]) and takes
//! the lock only when it is set, the way it reads the published rule set;
//! the eventfd is in the set it sleeps on in `poll(2)`, so a port added to
//! an idle switch is picked up at once rather than after the 100 ms sleep.

use super::config::PortConfig;
use crate::port::NetPort;
use crate::sys::EventFd;
use flowtable::PortNo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the control thread asks of a poll thread.
pub enum ToPmd {
    /// Poll this port, opened for this thread's queue: activate it (fill
    /// ring, XSKMAP) and add it to the thread's ports.
    Attach {
        /// Its configuration.
        cfg: PortConfig,
        /// The open port.
        port: Box<dyn NetPort>,
    },
    /// Stop polling port `no` and give it back to be closed. With
    /// `forget` the port was deleted: its slot and counters go too, and
    /// output to its number is a `drop_port_down`; without, its
    /// interface went away and the slot stays, down, for its return.
    Detach {
        /// The port.
        no: PortNo,
        /// Deleted (not merely gone).
        forget: bool,
    },
}

impl std::fmt::Debug for ToPmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToPmd::Attach { cfg, port } => {
                write!(f, "Attach({} {} {})", cfg.no, cfg.name, port.mode())
            }
            ToPmd::Detach { no, forget } => write!(f, "Detach({no}, forget={forget})"),
        }
    }
}

/// One poll thread's inbox.
#[derive(Debug)]
pub struct Inbox {
    pending: AtomicBool,
    msgs: Mutex<Vec<ToPmd>>,
    wake: Option<EventFd>,
}

impl Inbox {
    /// An empty inbox with its eventfd (none if the kernel refuses one:
    /// then a sleeping thread sees messages after its sleep, 100 ms at
    /// most).
    pub fn new() -> Inbox {
        Inbox {
            pending: AtomicBool::new(false),
            msgs: Mutex::new(Vec::new()),
            wake: EventFd::new().ok(),
        }
    }

    /// Queues a message and wakes the thread.
    pub fn send(&self, m: ToPmd) {
        self.msgs.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        self.pending.store(true, Ordering::Release);
        if let Some(w) = &self.wake {
            w.signal();
        }
    }

    /// Whether messages wait: one relaxed load.
    #[inline]
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes the waiting messages, in the order they were sent.
    pub fn take(&self, out: &mut Vec<ToPmd>) {
        let mut m = self.msgs.lock().unwrap_or_else(|e| e.into_inner());
        self.pending.store(false, Ordering::Relaxed);
        if let Some(w) = &self.wake {
            w.clear();
        }
        out.append(&mut m);
    }

    /// The descriptor to sleep on, if there is one.
    pub fn poll_fd(&self) -> Option<i32> {
        self.wake.as_ref().map(EventFd::raw)
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

/// A port a poll thread gives back to the control thread to close: closing
/// an AF_XDP socket waits for the kernel (`synchronize_net`), and the last
/// queue of an interface closes the program's link, so it is done off the
/// packet path.
pub struct Released(pub Box<dyn NetPort>);

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Released({})", self.0.name())
    }
}
