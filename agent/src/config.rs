//! The cluster configuration: one TOML file (or the same keys in a
//! ConfigMap) with the seed's model — the pod block, the Service range at
//! its end, the external pool for LoadBalancer and SNAT addresses, the
//! overlay — plus how each node's switch is wired (gateway and tunnel port
//! numbers), which is the same on every node.
//!
//! ```toml
//! [cluster]
//! pod_cidr = "10.244.0.0/16"
//! # service_cidr = "10.244.240.0/20"   # default: the last /20 of pod_cidr
//! external_pool = ["172.30.0.0/24"]     # LoadBalancer IPs and SNAT IPs
//! namespace_prefix = 24
//! vni = 42
//! mtu = 1450
//! node_port_range = "30000-32767"
//!
//! [switch]
//! gateway_port = 2          # the switch end of the node kernel's veth
//! tunnel_port = 100         # the Geneve port (remote_ip = "flow", key = "flow")
//! gateway_mac = "0a:58:a9:fe:00:01"   # the kernel end's MAC
//! snat_ports = "61000-61999"
//!
//! [nodes.node1]             # underlay IPs, when Node objects lack InternalIP
//! ip = "192.168.77.1"
//! ```

use crate::net::{Cidr, Pool};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// The configuration, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The pod block.
    pub pod_cidr: Cidr,
    /// The Service range (ClusterIPs).
    pub service_cidr: Cidr,
    /// LoadBalancer and SNAT addresses.
    pub external_pool: Pool,
    /// Each namespace's subnet length.
    pub namespace_prefix: u8,
    /// The Geneve VNI of the overlay.
    pub vni: u32,
    /// The pods' MTU (the underlay's less the encapsulation).
    pub mtu: u32,
    /// NodePorts: first and last.
    pub node_ports: (u16, u16),
    /// The switch end of the gateway veth.
    pub gateway_port: u32,
    /// The Geneve tunnel port.
    pub tunnel_port: u32,
    /// The node kernel's gateway MAC.
    pub gateway_mac: String,
    /// The SNAT port range on the node IP (NodePort clients, masquerade).
    pub snat_ports: (u16, u16),
    /// Underlay IPs of nodes, by name (Node objects' InternalIP wins).
    pub node_ips: BTreeMap<String, Ipv4Addr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cluster: ClusterSection,
    #[serde(default)]
    switch: SwitchSection,
    #[serde(default)]
    nodes: BTreeMap<String, NodeSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    pod_cidr: String,
    service_cidr: Option<String>,
    #[serde(default)]
    external_pool: Vec<String>,
    namespace_prefix: Option<u8>,
    vni: Option<u32>,
    mtu: Option<u32>,
    node_port_range: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SwitchSection {
    gateway_port: Option<u32>,
    tunnel_port: Option<u32>,
    gateway_mac: Option<String>,
    snat_ports: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    ip: Ipv4Addr,
}

fn range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{what}: {s:?} is not a port range (A-B)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a > b || a == 0 {
        return Err(bad());
    }
    Ok((a, b))
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let c = f.cluster;
        let pod_cidr: Cidr = c
            .pod_cidr
            .parse()
            .map_err(|e| format!("cluster.pod_cidr: {e}"))?;
        let service_cidr = match c.service_cidr {
            Some(s) => s
                .parse()
                .map_err(|e| format!("cluster.service_cidr: {e}"))?,
            None => pod_cidr.last_subnet(20),
        };
        let mut pool = Pool::default();
        for item in &c.external_pool {
            pool.parse_item(item)
                .map_err(|e| format!("cluster.external_pool: {e}"))?;
        }
        let namespace_prefix = c.namespace_prefix.unwrap_or(24);
        if namespace_prefix <= pod_cidr.len || namespace_prefix > 30 {
            return Err(format!(
                "cluster.namespace_prefix: /{namespace_prefix} does not fit in {pod_cidr} (longer than the block, at most /30)"
            ));
        }
        let s = f.switch;
        let gateway_mac = s.gateway_mac.unwrap_or_else(|| "0a:58:a9:fe:00:01".into());
        if gateway_mac.split(':').count() != 6
            || gateway_mac
                .split(':')
                .any(|b| u8::from_str_radix(b, 16).is_err() || b.len() != 2)
        {
            return Err(format!(
                "switch.gateway_mac: {gateway_mac:?} is not a MAC address"
            ));
        }
        Ok(Config {
            pod_cidr,
            service_cidr,
            external_pool: pool,
            namespace_prefix,
            vni: c.vni.unwrap_or(42),
            mtu: c.mtu.unwrap_or(1450),
            node_ports: range(
                c.node_port_range.as_deref().unwrap_or("30000-32767"),
                "cluster.node_port_range",
            )?,
            gateway_port: s.gateway_port.unwrap_or(2),
            tunnel_port: s.tunnel_port.unwrap_or(100),
            gateway_mac,
            snat_ports: range(
                s.snat_ports.as_deref().unwrap_or("61000-61999"),
                "switch.snat_ports",
            )?,
            node_ips: f.nodes.into_iter().map(|(k, v)| (k, v.ip)).collect(),
        })
    }

    /// The subnets namespaces may get: the pod block's, less any that
    /// overlaps the Service range.
    pub fn namespace_subnets(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.pod_cidr
            .subnets(self.namespace_prefix)
            .filter(|s| !self.service_cidr.covers(s) && !s.covers(&self.service_cidr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let c = Config::parse(
            "[cluster]\npod_cidr = \"10.244.0.0/16\"\nexternal_pool = [\"172.30.0.0/24\"]\n",
        )
        .unwrap();
        assert_eq!(c.service_cidr.to_string(), "10.244.240.0/20");
        assert_eq!(c.namespace_subnets().count(), 240);
        assert_eq!(c.external_pool.len(), 254);
        assert_eq!(c.node_ports, (30000, 32767));
        let e = Config::parse("[cluster]\npod_cidr = \"10.244.0.0/16\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse("[cluster]\npod_cidr = \"10.244.0.0/33\"\n").unwrap_err();
        assert!(e.starts_with("cluster.pod_cidr"), "{e}");
    }
}
