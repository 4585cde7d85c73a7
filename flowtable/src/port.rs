//! OpenFlow port numbers and the set of ports a bridge has.
//!
//! Rules name ports by number; a rule that outputs to a port the bridge does
//! not have is refused when it is added rather than failing per packet.

use crate::drop::DropReason;
use std::collections::BTreeMap;

/// An OpenFlow port number (32 bits, as in OpenFlow 1.1+).
pub type PortNo = u32;

/// Reserved port numbers, mapped from OpenFlow 1.0's 16-bit values the way
/// OVS maps them, so that `in_port=65534` and `LOCAL` mean the same.
pub mod reserved {
    use super::PortNo;
    /// Send the packet back out of the port it came in on.
    pub const IN_PORT: PortNo = 0xfff8;
    /// Submit the packet to the first table (only valid in packet-out).
    pub const TABLE: PortNo = 0xfff9;
    /// Process as a MAC-learning L2 switch.
    pub const NORMAL: PortNo = 0xfffa;
    /// All ports except the input port.
    pub const FLOOD: PortNo = 0xfffb;
    /// All ports except the input port.
    pub const ALL: PortNo = 0xfffc;
    /// To the controller.
    pub const CONTROLLER: PortNo = 0xfffd;
    /// The bridge's own internal port.
    pub const LOCAL: PortNo = 0xfffe;
    /// No port.
    pub const NONE: PortNo = 0xffff;
    /// Names accepted in flow syntax, as `ovs-ofctl` spells them.
    pub const NAMES: [(&str, PortNo); 8] = [
        ("IN_PORT", IN_PORT),
        ("TABLE", TABLE),
        ("NORMAL", NORMAL),
        ("FLOOD", FLOOD),
        ("ALL", ALL),
        ("CONTROLLER", CONTROLLER),
        ("LOCAL", LOCAL),
        ("NONE", NONE),
    ];
}

/// Whether `p` is one of the reserved numbers above.
pub fn is_reserved(p: PortNo) -> bool {
    (reserved::IN_PORT..=reserved::NONE).contains(&p)
}

/// One port of a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// OpenFlow port number.
    pub no: PortNo,
    /// Interface name.
    pub name: String,
    /// Whether it is up (a down port is skipped by flooding).
    pub up: bool,
    /// Set for a tunnel port (output encapsulates).
    pub tunnel: Option<crate::tunnel::Tunnel>,
}

/// The bridge's ports by number.
///
/// A port deleted while rules still name it leaves its number *held*: the
/// number is no port any more (flooding skips it, output to it is a
/// `drop_port_down`), but rules naming it stay valid, are still accepted
/// and restore from a state file, and the number is not given to another
/// port until they are gone.
#[derive(Clone, Debug, Default)]
pub struct PortTable {
    ports: BTreeMap<PortNo, PortInfo>,
    held: std::collections::BTreeSet<PortNo>,
    /// The tunnel ports, in port order: what a received Geneve packet is
    /// matched against (a node has one or a few of them, and hundreds of
    /// pod ports that decap should not walk past).
    tunnels: Vec<(PortNo, crate::tunnel::Tunnel)>,
}

impl PortTable {
    /// Adds or replaces a port.
    pub fn add(&mut self, no: PortNo, name: &str) {
        self.insert(no, name, None);
    }

    fn insert(&mut self, no: PortNo, name: &str, tunnel: Option<crate::tunnel::Tunnel>) {
        self.held.remove(&no);
        let was_tunnel = self.ports.get(&no).is_some_and(|p| p.tunnel.is_some());
        let is_tunnel = tunnel.is_some();
        self.ports.insert(
            no,
            PortInfo {
                no,
                name: name.to_string(),
                up: true,
                tunnel,
            },
        );
        if was_tunnel || is_tunnel {
            self.index_tunnels();
        }
    }

    fn index_tunnels(&mut self) {
        self.tunnels = self
            .ports
            .values()
            .filter_map(|p| p.tunnel.clone().map(|t| (p.no, t)))
            .collect();
    }

    /// Adds (or replaces) a tunnel port. It has no interface of its own:
    /// it is up from the start, and its packets leave and arrive through
    /// the uplink.
    pub fn add_tunnel(&mut self, no: PortNo, name: &str, t: crate::tunnel::Tunnel) {
        self.insert(no, name, Some(t));
    }

    /// The tunnel settings of port `no`, if it is a tunnel port.
    #[inline]
    pub fn tunnel(&self, no: PortNo) -> Option<&crate::tunnel::Tunnel> {
        self.ports.get(&no).and_then(|p| p.tunnel.as_ref())
    }

    /// The tunnel port where a Geneve packet from `remote` to `local`
    /// with VNI `vni` enters the bridge, chosen as Open vSwitch's
    /// `tnl_find` does: among the ports with that local address, one whose
    /// fixed `key` is `vni` before one whose key is `flow` (which takes any
    /// VNI into `tun_id`), and for each, one whose fixed `remote_ip` is
    /// `remote` before one whose remote is `flow`. A port with a fixed key
    /// receives that VNI only, one with a fixed remote that remote only.
    ///
    /// Errors: [`DropReason::GeneveNotOurs`] when no tunnel port has the
    /// address, [`DropReason::GeneveVni`] when some have it but none takes
    /// this VNI, [`DropReason::GeneveRemote`] when some take the VNI but
    /// none this remote.
    pub fn tunnel_for_rx(
        &self,
        local: std::net::IpAddr,
        remote: std::net::IpAddr,
        vni: u32,
    ) -> Result<PortNo, DropReason> {
        // Rank: 0 = fixed key and remote ... 3 = flow key and remote.
        let mut best: Option<(u8, PortNo)> = None;
        let mut ours = false;
        let mut vni_taken = false;
        for (no, t) in &self.tunnels {
            if t.local != local {
                continue;
            }
            ours = true;
            let key_rank = match t.key {
                Some(k) if k == vni => 0,
                Some(_) => continue,
                None => 2,
            };
            vni_taken = true;
            let remote_rank = match t.remote {
                Some(r) if r == remote => 0,
                Some(_) => continue,
                None => 1,
            };
            let rank = key_rank + remote_rank;
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, *no));
            }
        }
        match best {
            Some((_, no)) => Ok(no),
            None if vni_taken => Err(DropReason::GeneveRemote),
            None if ours => Err(DropReason::GeneveVni),
            None => Err(DropReason::GeneveNotOurs),
        }
    }

    /// Whether port `no` exists.
    pub fn contains(&self, no: PortNo) -> bool {
        self.ports.contains_key(&no)
    }

    /// Whether rules may name `no`: a port, or the held number of a
    /// deleted one.
    pub fn known(&self, no: PortNo) -> bool {
        self.contains(no) || self.held.contains(&no)
    }

    /// Removes port `no`, keeping its number held (see [`PortTable`]).
    /// False if there was no such port.
    pub fn hold(&mut self, no: PortNo) -> bool {
        let Some(p) = self.ports.remove(&no) else {
            return false;
        };
        if p.tunnel.is_some() {
            self.index_tunnels();
        }
        self.held.insert(no);
        true
    }

    /// Holds `no` without a port (a state file restoring a deleted port's
    /// number).
    pub fn hold_number(&mut self, no: PortNo) {
        if !self.ports.contains_key(&no) {
            self.held.insert(no);
        }
    }

    /// Frees a held number.
    pub fn release(&mut self, no: PortNo) {
        self.held.remove(&no);
    }

    /// The held numbers, in order.
    pub fn held(&self) -> impl Iterator<Item = PortNo> + '_ {
        self.held.iter().copied()
    }

    /// Looks a port up by name.
    pub fn by_name(&self, name: &str) -> Option<PortNo> {
        self.ports.values().find(|p| p.name == name).map(|p| p.no)
    }

    /// The port's name, if it exists.
    pub fn name(&self, no: PortNo) -> Option<&str> {
        self.ports.get(&no).map(|p| p.name.as_str())
    }

    /// Marks a port up or down.
    pub fn set_up(&mut self, no: PortNo, up: bool) {
        if let Some(p) = self.ports.get_mut(&no) {
            p.up = up;
        }
    }

    /// Every port in number order.
    pub fn iter(&self) -> impl Iterator<Item = &PortInfo> {
        self.ports.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::Tunnel;

    fn tunnel(local: &str, key: Option<u32>) -> Tunnel {
        Tunnel {
            local: local.parse().unwrap(),
            remote: None,
            key,
        }
    }

    #[test]
    fn tunnel_for_rx_honours_fixed_keys() {
        let a: std::net::IpAddr = "192.168.77.1".parse().unwrap();
        let b: std::net::IpAddr = "192.168.77.9".parse().unwrap();
        let r: std::net::IpAddr = "192.168.77.2".parse().unwrap();
        let mut ports = PortTable::default();
        ports.add_tunnel(100, "gnv0", tunnel("192.168.77.1", Some(42)));
        assert_eq!(ports.tunnel_for_rx(a, r, 42), Ok(100));
        assert_eq!(ports.tunnel_for_rx(a, r, 43), Err(DropReason::GeneveVni));
        assert_eq!(
            ports.tunnel_for_rx(b, r, 42),
            Err(DropReason::GeneveNotOurs)
        );
        // A flow port beside it takes every other VNI; the fixed one keeps
        // its own whichever number it has.
        ports.add_tunnel(90, "gnv1", tunnel("192.168.77.1", None));
        assert_eq!(ports.tunnel_for_rx(a, r, 42), Ok(100));
        assert_eq!(ports.tunnel_for_rx(a, r, 43), Ok(90));
        assert_eq!(ports.tunnel_for_rx(a, r, 0xff_ffff), Ok(90));
    }

    #[test]
    fn tunnel_for_rx_honours_fixed_remotes_as_ovs_tnl_find_does() {
        let local: std::net::IpAddr = "192.168.77.1".parse().unwrap();
        let n2: std::net::IpAddr = "192.168.77.2".parse().unwrap();
        let n3: std::net::IpAddr = "192.168.77.3".parse().unwrap();
        let with =
            |key: Option<u32>, remote: Option<std::net::IpAddr>| Tunnel { local, remote, key };
        let mut ports = PortTable::default();
        // Only node 2, VNI 42.
        ports.add_tunnel(100, "to-n2", with(Some(42), Some(n2)));
        assert_eq!(ports.tunnel_for_rx(local, n2, 42), Ok(100));
        assert_eq!(
            ports.tunnel_for_rx(local, n3, 42),
            Err(DropReason::GeneveRemote)
        );
        assert_eq!(
            ports.tunnel_for_rx(local, n2, 7),
            Err(DropReason::GeneveVni)
        );
        // A flow-remote port with the same key takes the other remotes; the
        // fixed one keeps its own.
        ports.add_tunnel(90, "any", with(Some(42), None));
        assert_eq!(ports.tunnel_for_rx(local, n2, 42), Ok(100));
        assert_eq!(ports.tunnel_for_rx(local, n3, 42), Ok(90));
        // An exact key ranks before an exact remote: a flow-key port fixed
        // to node 3 does not take VNI 42 from the fixed-key port.
        ports.add_tunnel(80, "n3-any-key", with(None, Some(n3)));
        assert_eq!(ports.tunnel_for_rx(local, n3, 42), Ok(90));
        assert_eq!(ports.tunnel_for_rx(local, n3, 5), Ok(80));
        assert_eq!(
            ports.tunnel_for_rx(local, n2, 5),
            Err(DropReason::GeneveRemote)
        );
        // Deleting a port takes it out of the receive choice: node 3's VNI
        // 42 falls to its flow-key port.
        assert!(ports.hold(90));
        assert_eq!(ports.tunnel_for_rx(local, n3, 42), Ok(80));
        // Replacing a tunnel port by a plain one does too.
        ports.add(100, "to-n2");
        assert_eq!(
            ports.tunnel_for_rx(local, n2, 42),
            Err(DropReason::GeneveRemote)
        );
    }
}
