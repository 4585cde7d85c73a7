//! A port under `oxvs-ctl capture` is taken out of the fast path.
//!
//! The capture copies what the poll threads receive and send on the port,
//! and a packet an entry forwards inside XDP never reaches them. So while a
//! capture runs, the entries that take packets in on the port or send them
//! out of it are removed (their last counters folded into their rules
//! first), and offers for such flows are counted and dropped, not
//! remembered as refused: once the capture ends the poll threads' next
//! offers put the entries back. For an uplink, "in on the port" means the
//! Geneve arrivals the program pops there (their key's input is the tunnel
//! port the uplink's arrivals enter on).

use super::FastPath;
use crate::afxdp::sys::monotonic_ns;
use flowtable::PortNo;

impl FastPath {
    /// Starts (`Some(port)`) or ends (`None`) withholding `port`'s entries;
    /// on a start, removes every entry it has before returning.
    pub fn set_capture(&mut self, port: Option<PortNo>, now_ms: u64) {
        self.stats.captured = port;
        if port.is_none() {
            return;
        }
        let mono = monotonic_ns();
        let mut entries = std::mem::take(&mut self.entries);
        entries.retain(|fk, o| {
            if !self.is_captured(fk.in_port) && self.stats.captured != Some(o.out_port) {
                return true;
            }
            let used = self.fold(fk, o, now_ms, mono);
            self.conns_ok(o, used, now_ms);
            match self.maps.remove(fk) {
                Ok(_) => self.stats.capture_flushed += 1,
                Err(e) => {
                    self.stats.errors += 1;
                    tracing::warn!(error = %e, "fast path: cannot remove an entry");
                }
            }
            self.forget(o);
            false
        });
        self.entries = entries;
        self.count();
    }

    /// Whether packets entering as `in_port` arrive on the captured port:
    /// they entered on it, or they are Geneve arrivals popped on it (an
    /// uplink whose arrivals enter tunnel port `in_port`).
    pub(super) fn is_captured(&self, in_port: PortNo) -> bool {
        let Some(cap) = self.stats.captured else {
            return false;
        };
        in_port == cap
            || self
                .ifaces
                .values()
                .any(|p| p.of_port == cap && p.tun_port != 0 && p.tun_port == in_port)
    }
}
