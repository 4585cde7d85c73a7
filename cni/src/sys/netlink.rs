//! `NETLINK_ROUTE` requests, hand-written: the veth pair created with its
//! peer already in the container's namespace (`RTM_NEWLINK` with
//! `IFLA_LINKINFO`/`VETH_INFO_PEER` and `IFLA_NET_NS_FD`), links brought up,
//! looked up, listed and deleted, addresses (`RTM_NEWADDR`, `RTM_GETADDR`)
//! and routes (`RTM_NEWROUTE`).
//!
//! Creating the peer directly in the target namespace (rather than creating
//! both ends here and moving one) means the container-side name never
//! exists in the host namespace, so two pods' `eth0`s cannot collide there,
//! and there is no half-moved state to undo.
//!
//! Messages are built and parsed in safe code over byte buffers; the socket
//! is read and written as a file, so this file needs no `unsafe` at all.

use super::Netns;
use crate::result::Cidr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 1;

/// One interface as `RTM_GETLINK` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index in its namespace.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its MAC (zero if it has none).
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
}

/// A veth pair to create: `host` here, `peer` in `peer_ns`.
pub struct VethSpec<'a> {
    /// The host-side name.
    pub host: &'a str,
    /// The host-side MAC.
    pub host_mac: [u8; 6],
    /// The container-side name (`CNI_IFNAME`).
    pub peer: &'a str,
    /// The container-side MAC.
    pub peer_mac: [u8; 6],
    /// Both ends' MTU.
    pub mtu: u32,
    /// The container's namespace.
    pub peer_ns: &'a Netns,
}

/// A `NETLINK_ROUTE` socket bound to one namespace.
pub struct Netlink {
    sock: File,
    seq: u32,
}

impl Netlink {
    /// A socket acting in `ns` (here when `None`).
    pub fn open_in(ns: Option<&Netns>) -> io::Result<Netlink> {
        let fd = super::socket_in(ns, libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        super::set_recv_timeout(&fd, 5)?;
        Ok(Netlink {
            sock: File::from(fd),
            seq: 0,
        })
    }

    /// Creates the pair, both ends down: a veth cannot be opened before its
    /// peer is linked to it, which happens only after both are registered
    /// (asking for `IFF_UP` here fails with `ENOTCONN`). Fails with `EEXIST`
    /// if either name is taken (in its namespace).
    pub fn create_veth(&mut self, v: &VethSpec) -> io::Result<()> {
        let mut m = Msg::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        m.ifinfomsg(0, 0, 0);
        m.attr(IFLA_IFNAME, &cstr(v.host));
        m.attr(IFLA_ADDRESS, &v.host_mac);
        m.attr(IFLA_MTU, &v.mtu.to_ne_bytes());
        let info = m.nest(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"veth");
        let data = m.nest(IFLA_INFO_DATA);
        let peer = m.nest(VETH_INFO_PEER);
        m.ifinfomsg(0, 0, 0);
        m.attr(IFLA_IFNAME, &cstr(v.peer));
        m.attr(IFLA_ADDRESS, &v.peer_mac);
        m.attr(IFLA_MTU, &v.mtu.to_ne_bytes());
        m.attr(IFLA_NET_NS_FD, &(v.peer_ns.raw_fd() as u32).to_ne_bytes());
        m.end_nest(peer);
        m.end_nest(data);
        m.end_nest(info);
        self.call(&mut m, |_, _| {})
    }

    /// Brings `name` up.
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.ifinfomsg(0, IFF_UP, IFF_UP);
        m.attr(IFLA_IFNAME, &cstr(name));
        self.call(&mut m, |_, _| {})
    }

    /// Deletes `name` (a veth takes its peer with it); `false` if there was
    /// no such interface.
    pub fn del_link(&mut self, name: &str) -> io::Result<bool> {
        let mut m = Msg::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK);
        m.ifinfomsg(0, 0, 0);
        m.attr(IFLA_IFNAME, &cstr(name));
        match self.call(&mut m, |_, _| {}) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The interface called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST);
        m.ifinfomsg(0, 0, 0);
        m.attr(IFLA_IFNAME, &cstr(name));
        let mut found = None;
        match self.call(&mut m, |ty, body| {
            if ty == RTM_NEWLINK {
                found = parse_link(body);
            }
        }) {
            Ok(()) => Ok(found),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every interface of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
        m.ifinfomsg(0, 0, 0);
        let mut out = Vec::new();
        self.call(&mut m, |ty, body| {
            if ty == RTM_NEWLINK {
                out.extend(parse_link(body));
            }
        })?;
        Ok(out)
    }

    /// Adds `addr` to interface `index` (IPv6 without duplicate address
    /// detection: the address is ours by IPAM, and waiting for DAD would
    /// delay the pod's first packet by a second or more).
    pub fn add_addr(&mut self, index: u32, addr: Cidr) -> io::Result<()> {
        let mut m = Msg::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        m.put(&[family(addr.addr), addr.prefix, 0, RT_SCOPE_UNIVERSE]);
        m.put(&index.to_ne_bytes());
        let bytes = ip_bytes(addr.addr);
        m.attr(IFA_LOCAL, &bytes);
        m.attr(IFA_ADDRESS, &bytes);
        if addr.addr.is_ipv6() {
            m.attr(IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
        }
        self.call(&mut m, |_, _| {})
    }

    /// The addresses of interface `index`.
    pub fn addrs(&mut self, index: u32) -> io::Result<Vec<Cidr>> {
        let mut m = Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
        m.put(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.put(&0u32.to_ne_bytes());
        let mut out = Vec::new();
        self.call(&mut m, |ty, body| {
            if ty != RTM_NEWADDR || body.len() < 8 {
                return;
            }
            let prefix = body[1];
            let idx = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
            if idx != index {
                return;
            }
            let (mut local, mut address) = (None, None);
            for (t, v) in attrs(&body[8..]) {
                match t {
                    IFA_LOCAL => local = parse_ip(v),
                    IFA_ADDRESS => address = parse_ip(v),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(address) {
                out.push(Cidr { addr, prefix });
            }
        })?;
        Ok(out)
    }

    /// Adds a route to `dst` out of interface `index`, through `gw` when
    /// given (else on-link).
    pub fn add_route(&mut self, index: u32, dst: Cidr, gw: Option<IpAddr>) -> io::Result<()> {
        let mut m = Msg::new(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        let scope = if gw.is_some() {
            RT_SCOPE_UNIVERSE
        } else {
            RT_SCOPE_LINK
        };
        m.put(&[
            family(dst.addr),
            dst.prefix,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            scope,
            RTN_UNICAST,
        ]);
        m.put(&0u32.to_ne_bytes());
        if dst.prefix > 0 {
            m.attr(RTA_DST, &ip_bytes(dst.addr));
        }
        if let Some(gw) = gw {
            m.attr(RTA_GATEWAY, &ip_bytes(gw));
        }
        m.attr(RTA_OIF, &index.to_ne_bytes());
        self.call(&mut m, |_, _| {})
    }

    /// Sends one request and feeds each answer's (type, body) to `each`
    /// until the kernel is done: the acknowledgement, the end of a dump, or
    /// the single answer of a plain GET. An error answer becomes `Err`.
    fn call(&mut self, m: &mut Msg, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = m.flags & NLM_F_DUMP == NLM_F_DUMP;
        let acked = m.flags & NLM_F_ACK != 0;
        self.sock.write_all(m.finish(seq))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.sock.read(&mut buf)?;
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                let mseq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("malformed netlink answer"));
                }
                let body = &rest[16..len];
                rest = &rest[align(len).min(rest.len())..];
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EIO);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(());
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => {
                        each(ty, body);
                        if !dump && !acked {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

fn parse_link(body: &[u8]) -> Option<Link> {
    if body.len() < 16 {
        return None;
    }
    let index = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
    let mut l = Link {
        index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: flags & IFF_UP != 0,
    };
    for (t, v) in attrs(&body[16..]) {
        match t {
            IFLA_IFNAME => {
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                l.name = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            IFLA_ADDRESS if v.len() == 6 => l.mac.copy_from_slice(v),
            IFLA_MTU if v.len() == 4 => l.mtu = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
            _ => {}
        }
    }
    Some(l)
}

/// A request being built.
struct Msg {
    buf: Vec<u8>,
    flags: u16,
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        Msg { buf, flags }
    }

    fn put(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
    fn ifinfomsg(&mut self, index: i32, flags: u32, change: u32) {
        self.put(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.put(&index.to_ne_bytes());
        self.put(&flags.to_ne_bytes());
        self.put(&change.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, v: &[u8]) {
        let len = 4 + v.len();
        self.put(&(len as u16).to_ne_bytes());
        self.put(&ty.to_ne_bytes());
        self.put(v);
        self.buf.resize(align(self.buf.len()), 0);
    }

    /// Opens a nested attribute; returns where its header is, for
    /// [`Msg::end_nest`] to write the length once the contents are in.
    fn nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.put(&[0, 0]);
        self.put(&ty.to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The (type, value) attributes in `b`; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = &b[4..len];
        b = &b[align(len).min(b.len())..];
        Some((ty, v))
    })
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn parse_ip(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_whole_length() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST);
        m.ifinfomsg(0, 0, 0);
        let outer = m.nest(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"veth");
        let inner = m.nest(IFLA_INFO_DATA);
        m.attr(IFLA_MTU, &1450u32.to_ne_bytes());
        m.end_nest(inner);
        m.end_nest(outer);
        let body = m.buf[32..].to_vec();
        let top: Vec<_> = attrs(&body).collect();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].0, IFLA_LINKINFO);
        let inside: Vec<_> = attrs(top[0].1).collect();
        assert_eq!(inside[0], (IFLA_INFO_KIND, &b"veth"[..]));
        assert_eq!(inside[1].0, IFLA_INFO_DATA);
        let mtu: Vec<_> = attrs(inside[1].1).collect();
        assert_eq!(mtu[0], (IFLA_MTU, &1450u32.to_ne_bytes()[..]));
        // A length running past the end ends the walk instead of panicking.
        assert_eq!(attrs(&[200u8, 0, 1, 0, 1, 2, 3, 4]).count(), 0);
    }

    #[test]
    fn loopback_is_found_and_nonsense_is_not() {
        let mut nl = Netlink::open_in(None).expect("netlink socket");
        let lo = nl.link("lo").unwrap().expect("lo exists");
        assert_eq!(lo.mac, [0; 6]);
        assert!(nl.link("no-such-if0").unwrap().is_none());
        assert!(nl.links().unwrap().iter().any(|l| l.name == "lo"));
    }
}
