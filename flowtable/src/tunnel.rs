//! Tunnel ports as the rules see them: a port whose output encapsulates
//! (Geneve) and whose input is what the uplink decapsulated.
//!
//! As in Open vSwitch, a tunnel port has a local address (this node's VTEP)
//! and either a fixed remote address and key or `flow`, in which case the
//! rules choose them per packet with `set_field:...->tun_dst` /
//! `tun_ipv6_dst` and `set_field:...->tun_id`. Received packets carry the
//! outer addresses, the VNI and mapped Geneve options in the key's `tun_*`
//! fields, with `in_port` the tunnel port.
//!
//! The TLV map ([`TlvMap`], OVS's `add-tlv-map`) says which Geneve option
//! (class, type, length) is carried in `tun_metadata0` and `tun_metadata1`.
//! Building and parsing the bytes is the `encap` crate's job; this module
//! only holds the settings translation needs, so flowtable stays free of
//! wire formats.

use std::net::IpAddr;

/// How many `tun_metadataN` fields the key has.
pub const TUN_METADATA_SLOTS: usize = 2;

/// A tunnel port's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// This node's VTEP address: the outer source on encap; decap accepts
    /// packets whose outer destination is this address.
    pub local: IpAddr,
    /// `remote_ip`: a fixed remote VTEP, or `None` for `flow`.
    pub remote: Option<IpAddr>,
    /// `key`: a fixed VNI, or `None` for `flow` (from `tun_id`).
    pub key: Option<u32>,
}

/// One Geneve option mapped to a `tun_metadataN` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlvSlot {
    /// Option class.
    pub class: u16,
    /// Option type (the high bit is the critical bit).
    pub ty: u8,
    /// Data length in bytes: 4 or 8 (the field holds 64 bits).
    pub len: u8,
}

/// Which option each `tun_metadataN` carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlvMap {
    /// Slot N is `tun_metadataN`.
    pub slots: [Option<TlvSlot>; TUN_METADATA_SLOTS],
}

impl TlvMap {
    /// The slot that carries option (`class`, `ty`), if any.
    pub fn slot_of(&self, class: u16, ty: u8) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.is_some_and(|s| s.class == class && s.ty == ty))
    }
}

/// What a decapsulated packet's outer headers put in its flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelKey {
    /// VNI (`tun_id`).
    pub id: u64,
    /// Outer source (`tun_src` or `tun_ipv6_src`).
    pub src: IpAddr,
    /// Outer destination (`tun_dst` or `tun_ipv6_dst`).
    pub dst: IpAddr,
    /// `tun_metadata0..1`, zero when the option was absent.
    pub md: [u64; TUN_METADATA_SLOTS],
}

impl Default for TunnelKey {
    fn default() -> Self {
        TunnelKey {
            id: 0,
            src: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            md: [0; TUN_METADATA_SLOTS],
        }
    }
}

impl TunnelKey {
    /// Writes the tunnel fields into `key` (after `extract`, which zeroes
    /// them). Per packet on decap, so it writes the key's words directly
    /// rather than field by field.
    #[inline]
    pub fn write(&self, key: &mut crate::FlowKey) {
        use crate::key::word;
        key.w[word::TUN_ID] = self.id;
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                key.w[word::TUN_IP] = u32::from(s) as u64 | (u32::from(d) as u64) << 32;
            }
            (s, d) => {
                let (s, d) = (v6(s), v6(d));
                key.w[word::TUN_IPV6_SRC] = (s >> 64) as u64;
                key.w[word::TUN_IPV6_SRC + 1] = s as u64;
                key.w[word::TUN_IPV6_DST] = (d >> 64) as u64;
                key.w[word::TUN_IPV6_DST + 1] = d as u64;
            }
        }
        key.w[word::TUN_METADATA0] = self.md[0];
        key.w[word::TUN_METADATA1] = self.md[1];
    }
}

fn v6(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// How to reach one remote VTEP, as the control thread learned it from the
/// kernel's routes and neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelRoute {
    /// The uplink port the packets leave on.
    pub port: crate::PortNo,
    /// The uplink's MAC (outer source).
    pub src_mac: [u8; 6],
    /// The next hop's MAC (outer destination).
    pub dst_mac: [u8; 6],
    /// The uplink's MTU.
    pub mtu: u16,
}

/// Resolved remotes. A remote that is missing here has no route or no
/// neighbour yet; packets to it are dropped and counted while the control
/// thread asks the kernel.
#[derive(Clone, Debug, Default)]
pub struct TunnelRoutes {
    routes: std::collections::BTreeMap<IpAddr, TunnelRoute>,
    version: u64,
}

impl TunnelRoutes {
    /// The route to `remote`.
    #[inline]
    pub fn get(&self, remote: &IpAddr) -> Option<&TunnelRoute> {
        self.routes.get(remote)
    }

    /// Sets (or with `None` removes) the route to `remote`; the version
    /// changes only if the route did.
    pub fn set(&mut self, remote: IpAddr, route: Option<TunnelRoute>) {
        let old = match route {
            Some(r) => self.routes.insert(remote, r),
            None => self.routes.remove(&remote),
        };
        if old != route {
            self.version += 1;
        }
    }

    /// Every remote with its route.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &TunnelRoute)> {
        self.routes.iter()
    }

    /// Changes whenever a route changes.
    pub fn version(&self) -> u64 {
        self.version
    }
}
