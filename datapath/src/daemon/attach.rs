//! The control thread's side of ports: it opens every queue of every port
//! for the poll thread that will own it and hands it over, and takes
//! ports back to close them.
//!
//! Poll thread `q` owns queue `q` of every port. For each (port, thread)
//! the attacher knows whether the thread holds an open port; once a second
//! ([`Attacher::tick`]), and at once after a port is added, it opens what
//! is missing where the interface exists, on the thread's UMEM
//! ([`open::open_port`](super::open::open_port) with the thread's
//! [`UmemShared`]), and sends it through the thread's [`Inbox`]. The
//! thread only activates it (fills its fill ring, enters the XSKMAP), so
//! adding a port never stops the traffic of the others. An interface that
//! vanished or came back with another index is detached from every thread
//! and opened again when it is back, as configured ports always were; one
//! that does not exist yet is waited for.
//!
//! Deleting a port detaches it from every thread with `forget`; each
//! thread drains it and gives it back ([`Released`]); dropping it here
//! closes the socket, and the last queue of an interface closes the BPF
//! link, which detaches the XDP program. Frames still in its fill ring
//! return to the thread's pool as orphans.

use super::config::PortConfig;
use super::inbox::{Inbox, ToPmd};
use crate::afxdp::fastpath::FastPathMaps;
use crate::afxdp::umem::UmemShared;
use crate::afxdp::FastAttach;
use crate::port::NetPort;
use flowtable::PortNo;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Opens queue `q` of a port for the poll thread with UMEM `umem`, with
/// the XDP fast path where the switch runs one.
pub type Opener = Arc<
    dyn Fn(
            &PortConfig,
            u32,
            Option<&Arc<UmemShared>>,
            Option<FastAttach<'_>>,
        ) -> Result<Box<dyn NetPort>, String>
        + Send
        + Sync,
>;

/// One poll thread as the attacher sees it.
pub struct ThreadHandle {
    /// Its inbox.
    pub inbox: Arc<Inbox>,
    /// Its UMEM, if it has one.
    pub umem: Option<Arc<UmemShared>>,
}

struct Entry {
    cfg: PortConfig,
    /// The interface index the open queues were opened on.
    ifindex: Option<u32>,
    /// Which threads hold an open port (sent and not given back).
    on: Vec<bool>,
    /// The MTU was set on this interface index.
    mtu_set: Option<u32>,
    /// How the lowest thread holding it has it attached (`afxdp native
    /// copy`, ...), known as soon as it is opened.
    mode: Option<String>,
    /// The last failure was logged; quiet until something changes.
    quiet: bool,
    /// With `fast_path = "auto"`, that the port runs without the fast path
    /// because only generic XDP attaches was logged.
    said_generic: bool,
}

/// What a sync did, for replies that wait on the poll threads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Handed {
    /// (port, thread) pairs sent an open port.
    pub attached: Vec<(PortNo, usize)>,
    /// (port, thread) pairs told to give a deleted port back.
    pub forgotten: Vec<(PortNo, usize)>,
}

/// The ports the poll threads hold, kept in step with the registry.
pub struct Attacher {
    open: Opener,
    threads: Vec<ThreadHandle>,
    ports: BTreeMap<PortNo, Entry>,
    fast: Option<Arc<FastPathMaps>>,
    /// Whether generic attachments run the fast path too (`"on"`) or only
    /// native ones (`"auto"`).
    fast_generic: bool,
}

impl Attacher {
    /// An attacher for these poll threads (index = queue), holding nothing;
    /// with `fast`, AF_XDP ports run the XDP fast path over those maps:
    /// every one with `fast_generic` (`fast_path = "on"`), else those
    /// attached in native mode (`"auto"`).
    pub fn new(
        open: Opener,
        threads: Vec<ThreadHandle>,
        fast: Option<Arc<FastPathMaps>>,
        fast_generic: bool,
    ) -> Attacher {
        Attacher {
            open,
            threads,
            ports: BTreeMap::new(),
            fast,
            fast_generic,
        }
    }

    /// The interfaces some poll thread holds open: (port, ifindex, how the
    /// lowest thread has it attached, uplink).
    pub fn open_interfaces(&self) -> Vec<(PortNo, u32, String, bool)> {
        self.ports
            .iter()
            .filter(|(_, e)| e.on.iter().any(|&o| o))
            .filter_map(|(no, e)| Some((*no, e.ifindex?, e.mode.clone()?, e.cfg.uplink)))
            .collect()
    }

    /// Makes the ports those of `want` (ports with an interface): new
    /// ones are opened where their interface exists, deleted or changed
    /// ones are detached from every thread.
    pub fn sync(&mut self, want: &[PortConfig]) -> Handed {
        let mut done = Handed::default();
        let keep: BTreeMap<PortNo, &PortConfig> = want.iter().map(|p| (p.no, p)).collect();
        let gone: Vec<PortNo> = self
            .ports
            .iter()
            .filter(|(no, e)| keep.get(no).is_none_or(|c| **c != e.cfg))
            .map(|(no, _)| *no)
            .collect();
        for no in gone {
            let Some(e) = self.ports.remove(&no) else {
                continue;
            };
            for (t, th) in self.threads.iter().enumerate() {
                // Every thread, holding it or not: a thread keeps the slot
                // (and counters) of a port whose interface went away.
                th.inbox.send(ToPmd::Detach { no, forget: true });
                if e.on[t] {
                    done.forgotten.push((no, t));
                }
            }
            tracing::info!(port = %e.cfg.name, no, "port deleted");
        }
        let n = self.threads.len();
        let mut fresh = Vec::new();
        for p in want {
            if let std::collections::btree_map::Entry::Vacant(v) = self.ports.entry(p.no) {
                v.insert(Entry {
                    cfg: p.clone(),
                    ifindex: None,
                    on: vec![false; n],
                    mtu_set: None,
                    mode: None,
                    quiet: false,
                    said_generic: false,
                });
                fresh.push(p.no);
            }
        }
        for no in fresh {
            self.open_missing(no, &mut done);
        }
        done
    }

    /// The once-a-second check: detaches ports whose interface vanished or
    /// changed index, opens what is missing where the interface exists.
    pub fn tick(&mut self) {
        let nos: Vec<PortNo> = self.ports.keys().copied().collect();
        let mut done = Handed::default();
        for no in nos {
            self.open_missing(no, &mut done);
        }
    }

    /// A thread gave port `no` back (after a detach, or because it could
    /// not activate it): it no longer holds it.
    pub fn released(&mut self, no: PortNo, thread: usize, failed: bool) {
        if let (Some(e), true) = (self.ports.get_mut(&no), failed) {
            if let Some(on) = e.on.get_mut(thread) {
                *on = false;
            }
            if !e.on.iter().any(|&o| o) {
                e.mode = None;
            }
        }
    }

    /// How each port that some thread holds is attached.
    pub fn modes(&self) -> BTreeMap<PortNo, String> {
        self.ports
            .iter()
            .filter_map(|(no, e)| Some((*no, e.mode.clone()?)))
            .collect()
    }

    /// Whether port `no` is held by thread `thread`.
    pub fn holds(&self, no: PortNo, thread: usize) -> bool {
        self.ports
            .get(&no)
            .is_some_and(|e| e.on.get(thread).copied().unwrap_or(false))
    }

    fn open_missing(&mut self, no: PortNo, done: &mut Handed) {
        let Some(e) = self.ports.get_mut(&no) else {
            return;
        };
        let now = crate::sys::if_index(&e.cfg.name);
        if now != e.ifindex && e.on.iter().any(|&o| o) {
            tracing::warn!(port = %e.cfg.name, "interface gone; port down");
            for (t, th) in self.threads.iter().enumerate() {
                if e.on[t] {
                    th.inbox.send(ToPmd::Detach { no, forget: false });
                    e.on[t] = false;
                }
            }
            e.mode = None;
            e.quiet = false;
        }
        e.ifindex = now;
        let Some(idx) = now else {
            if !e.quiet {
                tracing::warn!(port = %e.cfg.name, "no such interface; waiting for it");
                e.quiet = true;
            }
            return;
        };
        if e.on.iter().all(|&o| o) {
            return;
        }
        if let (Some(mtu), false) = (e.cfg.mtu, e.mtu_set == Some(idx)) {
            match crate::sys::set_mtu(&e.cfg.name, mtu) {
                Ok(()) => e.mtu_set = Some(idx),
                Err(err) => {
                    tracing::warn!(port = %e.cfg.name, mtu, error = %err, "cannot set the MTU")
                }
            }
        }
        let fast = self.fast.as_deref().map(|maps| FastAttach {
            maps,
            generic: self.fast_generic,
            of_port: e.cfg.no,
        });
        for (t, th) in self.threads.iter().enumerate() {
            if e.on[t] {
                continue;
            }
            match (self.open)(&e.cfg, t as u32, th.umem.as_ref(), fast) {
                Ok(port) => {
                    if e.mode.is_none() {
                        let mode = port.mode();
                        if fast.is_some()
                            && mode.starts_with("afxdp generic")
                            && !mode.contains("fastpath")
                            && !e.said_generic
                        {
                            tracing::info!(
                                port = %e.cfg.name,
                                %mode,
                                "fast path off for this port: its XDP program attaches in generic \
                                 mode only (fast_path = \"on\" runs it there too)"
                            );
                            e.said_generic = true;
                        }
                        e.mode = Some(mode);
                    }
                    th.inbox.send(ToPmd::Attach {
                        cfg: e.cfg.clone(),
                        port,
                    });
                    e.on[t] = true;
                    done.attached.push((no, t));
                }
                Err(err) => {
                    if !e.quiet {
                        tracing::warn!(
                            port = %e.cfg.name, thread = t, error = %err, "cannot open port; will retry"
                        );
                    }
                }
            }
        }
        e.quiet = !e.on.iter().all(|&o| o);
    }
}
