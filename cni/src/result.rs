//! The ADD success result (CNI spec 1.1.0 §5 "ADD Success") and the
//! abbreviated result an IPAM plugin returns (§5 "Delegated plugins").
//!
//! The same types read a `prevResult` back for CHECK, so what ADD wrote is
//! exactly what CHECK compares against. Addresses stay in CIDR text form
//! (`10.244.1.5/24`) and are parsed where they are used, into [`Cidr`].

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An interface created by the attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Its MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for the container's interface, empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address given to an interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR, e.g. `10.244.1.5/24`.
    pub address: String,
    /// The subnet's gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces` (absent in IPAM results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop; when absent, the gateway of the address of the same family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// The ADD result, and the abbreviated IPAM result (no `interfaces`, no
/// `interface` in `ips`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// The version of the request.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Interfaces created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings, passed through from IPAM or the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<serde_json::Value>,
}

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Formats a MAC as the result and `attached-mac` show it.
pub fn mac_text(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_result_of_host_local_parses() {
        // What Debian's host-local 1.1.1 prints for cniVersion 1.0.0.
        let text = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.2/24","gateway":"10.244.1.1"}],
            "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
        let r: CniResult = serde_json::from_str(text).unwrap();
        assert_eq!(r.ips[0].gateway.as_deref(), Some("10.244.1.1"));
        assert_eq!(r.routes[0].gw, None);
        assert!(r.interfaces.is_empty());
        let c = Cidr::parse(&r.ips[0].address).unwrap();
        assert_eq!(c.prefix, 24);
        assert_eq!(c.to_string(), "10.244.1.2/24");
        assert!(Cidr::parse("10.0.0.1/33").is_none());
        assert!(Cidr::parse("fd00::1/64").is_some());
    }

    #[test]
    fn add_result_omits_what_is_empty() {
        let r = CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: mac_text([0x0a, 0x58, 10, 244, 1, 2]),
                mtu: Some(1450),
                sandbox: "/run/netns/x".into(),
            }],
            ips: vec![IpConfig {
                address: "10.244.1.2/24".into(),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![],
            dns: None,
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["interfaces"][0]["mac"], "0a:58:0a:f4:01:02");
        assert_eq!(v["ips"][0]["interface"], 0);
        assert!(v.get("routes").is_none() && v.get("dns").is_none());
        assert!(v["ips"][0].get("gateway").is_none());
    }
}
