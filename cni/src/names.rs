//! Names and MACs derived from the attachment, so that DEL and GC find what
//! ADD made without any state file: the host veth of container `C` with
//! interface `I` is always `oxv` + 12 hex digits of a hash of `(C, I)` (15
//! characters, the kernel's limit), and the same name is the oxvsd port.
//!
//! A state file would be one more thing a crash can leave half-written; a
//! name computed from the runtime's own key cannot disagree with it.

#![forbid(unsafe_code)]

use std::net::IpAddr;

/// The prefix of every host veth (and port) this plugin creates.
pub const HOST_PREFIX: &str = "oxv";

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's
/// `DefaultHasher`), which a name that must be found again by a later
/// binary requires.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        // A NUL byte between parts, which no container id or interface
        // name contains, keeps ("ab", "c") and ("a", "bc") apart.
        let sep: &[u8] = if i > 0 { &[0] } else { &[] };
        for &b in sep.iter().chain(p.as_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The host-side veth (and oxvsd port) name of an attachment.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let h = fnv1a(&[container_id, ifname]) & 0xffff_ffff_ffff;
    format!("{HOST_PREFIX}{h:012x}")
}

/// Whether `name` has the shape of a name [`host_ifname`] makes.
pub fn is_host_ifname(name: &str) -> bool {
    name.len() == HOST_PREFIX.len() + 12
        && name.starts_with(HOST_PREFIX)
        && name[HOST_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The container-side MAC: `0a:58:` and the first IPv4 address, as
/// OVN-Kubernetes does, so a MAC seen in a capture names its pod's address;
/// without an IPv4 address, `0a:58:` and hash bits. Locally administered,
/// unicast.
pub fn container_mac(container_id: &str, ifname: &str, ips: &[IpAddr]) -> [u8; 6] {
    match ips.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(_) => None,
    }) {
        Some([a, b, c, d]) => [0x0a, 0x58, a, b, c, d],
        None => {
            let h = fnv1a(&[container_id, ifname, "mac"]).to_be_bytes();
            [0x0a, 0x58, h[0], h[1], h[2], h[3]]
        }
    }
}

/// The host-side MAC: `02:` and hash bits (locally administered, unicast,
/// never equal to a container MAC, whose first byte is `0a`).
pub fn host_mac(container_id: &str, ifname: &str) -> [u8; 6] {
    let h = fnv1a(&[container_id, ifname, "host"]).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_recognised() {
        let a = host_ifname("4f1c0e5d9a", "eth0");
        assert_eq!(a, host_ifname("4f1c0e5d9a", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(is_host_ifname(&a));
        assert_ne!(a, host_ifname("4f1c0e5d9a", "eth1"));
        assert_ne!(a, host_ifname("4f1c0e5d9b", "eth0"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
        assert!(!is_host_ifname("oxv12345678901g"));
        assert!(!is_host_ifname("eth0"));
        // Pinned: a later build must find what this one made.
        assert_eq!(host_ifname("c1", "eth0"), "oxv02b3bfe94942");
    }

    #[test]
    fn macs_are_local_unicast_and_distinct() {
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        assert_eq!(
            container_mac("c", "eth0", &[ip]),
            [0x0a, 0x58, 10, 244, 1, 5]
        );
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let m = container_mac("c", "eth0", &[v6]);
        assert_eq!(m[..2], [0x0a, 0x58]);
        let h = host_mac("c", "eth0");
        assert_eq!(h[0] & 0x03, 0x02);
        assert_ne!(h, m);
    }
}
