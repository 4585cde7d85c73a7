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
            if self.retire(fk, o, now_ms, mono) {
                self.stats.capture_flushed += 1;
            }
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

#[cfg(test)]
mod tests {
    //! Against real kernel maps (root; skipped otherwise), without a
    //! program: the entries a capture removes and the offers it refuses.
    use super::*;
    use crate::afxdp::fastpath::FastPathMaps;
    use flowtable::{extract, Bridge, FlowKey};
    use std::sync::Arc;

    /// A UDP datagram's flow key, entering on `port`.
    fn udp(port: u32, sport: u16) -> FlowKey {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        let mut k = FlowKey::default();
        extract(&f, port, &mut k).unwrap();
        k
    }

    #[test]
    fn a_captured_port_has_no_entries_in_or_out_until_the_capture_ends() {
        if !crate::afxdp::sys::is_root() {
            eprintln!("skipping: BPF maps need root");
            return;
        }
        let mut br = Bridge::default();
        for no in 1..=3 {
            br.add_port(no, &format!("p{no}"));
            br.set_port_up(no, true);
        }
        let rules = "in_port=1,actions=output:2\nin_port=2,actions=output:1\n\
                     in_port=3,actions=output:1\n";
        crate::daemon::load_flows(&mut br, rules).unwrap();
        let maps = Arc::new(FastPathMaps::create(64).unwrap());
        let mut f = FastPath::new(maps, 64, &br, None);
        for no in 1..=3 {
            f.outputs.insert(no, 1);
        }
        // Into port 2, out of port 2, and between 3 and 1.
        let keys = [udp(1, 1000), udp(2, 1001), udp(3, 1002)];
        f.offer(&br, &keys, 0);
        assert_eq!(f.len(), 3);
        f.set_capture(Some(2), 0);
        assert_eq!((f.len(), f.stats.capture_flushed), (1, 2));
        assert!(f.entries.keys().all(|k| k.in_port == 3));
        // Offered again while the capture runs: refused, not remembered.
        f.offer(&br, &keys, 0);
        assert_eq!((f.len(), f.stats.capture_refused), (1, 2));
        assert_eq!(f.stats.refused, 0);
        f.set_capture(None, 0);
        f.offer(&br, &keys, 0);
        assert_eq!(f.len(), 3, "back once the capture ended");
    }
}
