//! Getting a port: entering the namespace, pinning the thread, opening the
//! AF_XDP socket on a UMEM pool; and the interface facts read around a run
//! (its MAC, its kernel counters).
//!
//! Everything runs in the calling thread: `enter_netns` moves only this
//! thread, so the port, the counters (read from `/proc/thread-self/net/dev`,
//! which follows the thread's namespace where `/proc/net` and `/sys/class/net`
//! follow the process's) and the `ip` commands spawned from here all see the
//! same namespace. The interface's MAC comes from the datapath's netlink
//! wrapper, asked from this thread.

use super::args::Common;
use datapath::afxdp::enter_netns;
use datapath::buf::FramePool;
use datapath::port::xsk::{ModePref, ProgramKind, Rings, XskPort};
use datapath::port::NetPort;

/// Enters `--netns` (if given) and pins the thread to `--core` (if given).
/// A pin that fails is reported and not fatal.
pub fn enter(c: &Common) -> Result<(), String> {
    if let Some(ns) = &c.netns {
        enter_netns(ns).map_err(|e| format!("cannot enter network namespace {ns}: {e}"))?;
    }
    if let Some(core) = c.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            eprintln!("oxvs-pktgen: could not pin to core {core}; running unpinned");
        }
    }
    Ok(())
}

/// A UMEM pool of `frames` frames and a port on `--dev` queue `--queue`
/// taking every frame of the queue (`ProgramKind::All`).
pub fn open(c: &Common, frames: usize, rings: Rings) -> Result<(FramePool, XskPort), String> {
    let mut pool = FramePool::new_umem(frames).map_err(|e| e.to_string())?;
    let pref = ModePref {
        attach: c.xdp,
        ..ModePref::default()
    };
    let port = XskPort::open_with_rings(&c.dev, c.queue, &mut pool, ProgramKind::All, pref, rings)
        .map_err(|e| e.to_string())?;
    Ok((pool, port))
}

/// The line every mode prints once its port is open; tests and scripts
/// wait for it before starting the other side.
pub fn announce(mode: &str, c: &Common, port: &XskPort, what: std::fmt::Arguments<'_>) {
    eprintln!(
        "oxvs-pktgen {mode}: ready on {} queue {} ({}), {what}",
        c.dev,
        c.queue,
        port.mode()
    );
}

/// The MAC address of `dev` in the calling thread's namespace (netlink
/// sockets belong to the namespace of the thread that opens them).
pub fn if_mac(dev: &str) -> Result<[u8; 6], String> {
    let idx = datapath::sys::if_index(dev)
        .ok_or_else(|| format!("no interface {dev} in this namespace"))?;
    let link = datapath::sys::netlink::Netlink::open()
        .and_then(|mut nl| nl.link(idx))
        .map_err(|e| format!("cannot read the MAC of {dev}: {e} (use --src-mac)"))?;
    Ok(link.mac)
}

/// An interface's kernel counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Receive drops.
    pub rx_dropped: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Transmit drops (on a veth: frames its peer could not take).
    pub tx_dropped: u64,
}

impl IfCounters {
    /// `self - before`, counter by counter.
    pub fn since(&self, before: &IfCounters) -> IfCounters {
        IfCounters {
            rx_packets: self.rx_packets.wrapping_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.wrapping_sub(before.rx_dropped),
            tx_packets: self.tx_packets.wrapping_sub(before.tx_packets),
            tx_dropped: self.tx_dropped.wrapping_sub(before.tx_dropped),
        }
    }
}

/// `dev`'s counters in the calling thread's namespace, or `None` if they
/// cannot be read.
pub fn if_counters(dev: &str) -> Option<IfCounters> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    parse_net_dev(&text, dev)
}

/// Finds `dev` in the text of `/proc/net/dev`: `name: rx_bytes rx_packets
/// rx_errs rx_drop fifo frame compressed multicast tx_bytes tx_packets
/// tx_errs tx_drop ...`.
fn parse_net_dev(text: &str, dev: &str) -> Option<IfCounters> {
    let line = text
        .lines()
        .find_map(|l| l.split_once(':').filter(|(name, _)| name.trim() == dev))?
        .1;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() >= 12).then(|| IfCounters {
        rx_packets: v[1],
        rx_dropped: v[3],
        tx_packets: v[9],
        tx_dropped: v[11],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_parse() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 1280 20 0 3 0 0 0 0 2560 40 0 5 0 0 0 0
";
        assert_eq!(
            parse_net_dev(text, "eth0"),
            Some(IfCounters {
                rx_packets: 20,
                rx_dropped: 3,
                tx_packets: 40,
                tx_dropped: 5
            })
        );
        assert_eq!(parse_net_dev(text, "eth1"), None);
        assert!(if_counters("lo").is_some());
    }
}
