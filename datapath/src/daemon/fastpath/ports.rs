//! Which interfaces the fast path knows: the DEVMAP of outputs and the
//! map of uplinks running the program, kept in step with the ports the
//! poll threads hold. (A pod port's program has its OpenFlow number built
//! in when it is attached, `afxdp::attach`.)

use super::FastPath;
use crate::afxdp::fastpath::{FpPort, PORT_SLOTS};
use flowtable::PortNo;
use std::collections::BTreeMap;

impl FastPath {
    /// Brings the port and output maps in step with the interfaces the
    /// poll threads hold: (port, ifindex, attachment mode, uplink). Every
    /// natively attached AF_XDP port is an output (a driver-mode redirect
    /// needs a target that can take XDP frames); every uplink running the
    /// fast-path program is told its OpenFlow number, tunnel port and VTEP.
    pub fn set_interfaces(&mut self, open: &[(PortNo, u32, String, bool)]) {
        let mut outputs = BTreeMap::new();
        let mut ifaces = BTreeMap::new();
        for (no, ifindex, mode, uplink) in open {
            if mode.starts_with("afxdp native") && self.takes_redirects(*no, *ifindex) {
                outputs.insert(*no, *ifindex);
            }
            if *uplink && mode.contains("fastpath") {
                let (tun_port, vtep) = self.uplink_tunnel.unwrap_or((0, [0; 4]));
                ifaces.insert(
                    *ifindex,
                    FpPort {
                        of_port: *no,
                        tun_port,
                        vtep,
                        pad0: 0,
                    },
                );
            }
        }
        if outputs.len() > PORT_SLOTS as usize || ifaces.len() > PORT_SLOTS as usize {
            tracing::warn!("fast path: more ports than its maps hold; the rest stay slow");
        }
        for (no, _) in self
            .outputs
            .iter()
            .filter(|(no, _)| !outputs.contains_key(no))
        {
            let _ = self.maps.remove_output(*no);
        }
        for (no, idx) in &outputs {
            if self.outputs.get(no) != Some(idx) {
                if let Err(e) = self.maps.set_output(*no, *idx) {
                    self.stats.errors += 1;
                    tracing::warn!(port = no, error = %e, "fast path: cannot add the output");
                }
            }
        }
        for idx in self.ifaces.keys().filter(|i| !ifaces.contains_key(i)) {
            let _ = self.maps.remove_port(*idx);
        }
        for (idx, p) in &ifaces {
            if self.ifaces.get(idx) != Some(p) {
                if let Err(e) = self.maps.set_port(*idx, p) {
                    self.stats.errors += 1;
                    tracing::warn!(ifindex = idx, error = %e, "fast path: cannot add the port");
                }
            }
        }
        if outputs != self.outputs {
            // A key refused for want of its output may be taken now.
            self.refused.clear();
        }
        self.outputs = outputs;
        self.ifaces = ifaces;
    }

    /// Whether interface `ifindex` (port `no`) takes frames redirected to it
    /// by XDP (`NETDEV_XDP_ACT_NDO_XMIT`). A pod's veth has it only while the
    /// pod's side has NAPI (GRO on, or an XDP program): without it every
    /// redirected frame would be dropped, counted only as a drop of the
    /// ingress interface. Said once per port and interface in the log.
    fn takes_redirects(&mut self, no: PortNo, ifindex: u32) -> bool {
        use crate::sys::netlink::{Netlink, XDP_ACT_NDO_XMIT};
        if self.netlink.is_none() {
            self.netlink = Netlink::open_generic().ok();
        }
        let Some(nl) = self.netlink.as_mut() else {
            return false;
        };
        let ok = match nl.xdp_features(ifindex) {
            Ok(f) => f & XDP_ACT_NDO_XMIT != 0,
            Err(_) => false,
        };
        let said = self.no_redirect.contains(&(no, ifindex));
        if !ok && !said {
            tracing::warn!(
                port = no,
                ifindex,
                "fast path: this interface cannot take redirected frames (a veth whose peer has \
                 neither GRO nor an XDP program: `ethtool -K eth0 gro on` in the pod); \
                 packets to it stay on the slow path"
            );
            self.no_redirect.insert((no, ifindex));
        } else if ok && said {
            tracing::info!(
                port = no,
                ifindex,
                "fast path: the interface takes redirected frames now"
            );
            self.no_redirect.remove(&(no, ifindex));
        }
        ok
    }
}
