//! OpenFlow port numbers and the set of ports a bridge has.
//!
//! Rules name ports by number; a rule that outputs to a port the bridge does
//! not have is refused when it is added rather than failing per packet.

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
}

impl PortTable {
    /// Adds or replaces a port.
    pub fn add(&mut self, no: PortNo, name: &str) {
        self.insert(no, name, None);
    }

    fn insert(&mut self, no: PortNo, name: &str, tunnel: Option<crate::tunnel::Tunnel>) {
        self.held.remove(&no);
        self.ports.insert(
            no,
            PortInfo {
                no,
                name: name.to_string(),
                up: true,
                tunnel,
            },
        );
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

    /// The tunnel port whose local address is `local`: where a packet
    /// decapsulated from a Geneve packet to `local` enters the bridge.
    pub fn tunnel_for_local(&self, local: std::net::IpAddr) -> Option<PortNo> {
        self.ports
            .values()
            .find(|p| p.tunnel.as_ref().is_some_and(|t| t.local == local))
            .map(|p| p.no)
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
        if self.ports.remove(&no).is_none() {
            return false;
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
