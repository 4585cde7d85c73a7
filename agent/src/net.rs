//! IPv4 prefixes and address pools, the little arithmetic the model needs:
//! a pod block cut into per-namespace subnets, the Service range at the end
//! of it, and an external pool given as prefixes or ranges.
//!
//! Pure values with `FromStr` and `Display`, so that configuration, objects
//! (annotations) and flow text all spell an address the same way.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix such as `10.244.0.0/16`; the address is kept masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub len: u8,
}

impl Cidr {
    /// The prefix of `len` bits containing `addr`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Cidr {
        let len = len.min(32);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        }
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        mask(self.len)
    }

    /// How many addresses the prefix holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// The first address.
    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    /// The last address.
    pub fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.first()
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// The `i`th address (`nth(1)` is a subnet's gateway).
    pub fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.first().wrapping_add(i))
    }

    /// The subnets of length `len` inside, in address order.
    pub fn subnets(&self, len: u8) -> impl Iterator<Item = Cidr> + '_ {
        let len = len.max(self.len).min(32);
        let step = 1u64 << (32 - u32::from(len));
        let n = self.size() / step;
        (0..n).map(move |i| {
            Cidr::new(
                Ipv4Addr::from((u64::from(self.first()) + i * step) as u32),
                len,
            )
        })
    }

    /// The last subnet of length `len` (the seed's Service range is the last
    /// /20 of the pod block).
    pub fn last_subnet(&self, len: u8) -> Cidr {
        let len = len.max(self.len).min(32);
        Cidr::new(Ipv4Addr::from(self.last()), len)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a prefix (expected A.B.C.D/N)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{l:?} is not a prefix length (0-32)"))?;
        Ok(Cidr::new(addr, len))
    }
}

/// A set of addresses given as prefixes and `A-B` ranges, in the order
/// written: the order allocation hands them out in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    /// Inclusive ranges of addresses, as numbers.
    pub ranges: Vec<(u32, u32)>,
}

impl Pool {
    /// Parses `172.30.0.0/24`, `172.30.0.10-172.30.0.50` or a single address.
    pub fn parse_item(&mut self, s: &str) -> Result<(), String> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("{b:?} is not an IPv4 address"))?;
            if u32::from(a) > u32::from(b) {
                return Err(format!("range {s:?} ends before it starts"));
            }
            self.ranges.push((a.into(), b.into()));
        } else if s.contains('/') {
            let c: Cidr = s.parse()?;
            // The network and broadcast addresses of a prefix are left out
            // (a /31 or /32 has none), as an IPAM pool would.
            if c.len <= 30 {
                self.ranges.push((c.first() + 1, c.last() - 1));
            } else {
                self.ranges.push((c.first(), c.last()));
            }
        } else {
            let a: Ipv4Addr = s
                .parse()
                .map_err(|_| format!("{s:?} is not an IPv4 address"))?;
            self.ranges.push((a.into(), a.into()));
        }
        Ok(())
    }

    /// Whether `ip` belongs to the pool.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&v))
    }

    /// Every address, in allocation order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ranges
            .iter()
            .flat_map(|(a, b)| (*a..=*b).map(Ipv4Addr::from))
    }

    /// How many addresses.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum()
    }

    /// Whether the pool has no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// An address as a hexadecimal register value (`0x0af40103`).
pub fn hex(ip: Ipv4Addr) -> String {
    format!("{:#010x}", u32::from(ip))
}

/// The MAC a pod or gateway address gets, as OVN-Kubernetes derives it:
/// `0a:58` and the four bytes of the address. The CNI sets the pod's MAC
/// the same way, so no MAC needs to be published anywhere.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let b: Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(b.last_subnet(20).to_string(), "10.244.240.0/20");
        assert_eq!(b.subnets(24).count(), 256);
        assert_eq!(b.subnets(24).nth(3).unwrap().to_string(), "10.244.3.0/24");
        assert!(b.covers(&"10.244.3.0/24".parse().unwrap()));
        assert_eq!(
            "10.244.3.7/24".parse::<Cidr>().unwrap().to_string(),
            "10.244.3.0/24"
        );
        assert!("10.244.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn pools() {
        let mut p = Pool::default();
        p.parse_item("172.30.0.0/30").unwrap();
        p.parse_item("172.30.1.5-172.30.1.6").unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p.iter().next().unwrap().to_string(), "172.30.0.1");
        assert_eq!(p.iter().last().unwrap().to_string(), "172.30.1.6");
        assert!(p.contains("172.30.0.2".parse().unwrap()));
        assert!(
            !p.contains("172.30.0.3".parse().unwrap()),
            "broadcast left out"
        );
        assert!(p.parse_item("1.1.1.2-1.1.1.1").is_err());
        assert_eq!(mac_for("10.244.3.5".parse().unwrap()), "0a:58:0a:f4:03:05");
    }
}
