//! Asking the kernel where a tunnel packet goes: the route to a remote VTEP
//! (`RTM_GETROUTE`, as `ip route get` does), the link-layer address of the
//! next hop (`RTM_GETNEIGH`), and the egress interface's own MAC and MTU
//! (`RTM_GETLINK`).
//!
//! The switch never keeps next-hop MACs in its configuration: the node's
//! kernel already routes and resolves neighbours on the underlay, so the
//! switch reads its answers and follows them when they change. When the
//! kernel has no usable neighbour entry yet, [`Netlink::next_hop`] asks it to
//! resolve one (`RTM_NEWNEIGH` with `NTF_USE`, as `ip neigh replace ... use`
//! does) and reports the hop as unresolved; the caller asks again later.
//!
//! Messages are built and parsed in safe code over byte buffers; only the
//! socket calls are `unsafe`. This is control-thread code, never on the
//! packet path.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const NTF_USE: u8 = 0x01;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_XDP_ACT_NDO_XMIT`: the interface takes frames redirected to it
/// by XDP. A veth has it only while its peer has NAPI (GRO on, or an XDP
/// program of its own); without it a redirect into the veth is dropped.
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;
/// Neighbour states whose address can be used: REACHABLE, STALE, DELAY,
/// PROBE, NOARP, PERMANENT (STALE and later still carry the last address;
/// the kernel re-confirms it on its own traffic).
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// Where packets to a remote address leave this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    /// The egress interface's MAC (the outer source MAC).
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the outer destination MAC), if resolved.
    pub dst_mac: Option<[u8; 6]>,
    /// The address the route prefers as source, if it names one.
    pub src_ip: Option<IpAddr>,
    /// The gateway, or the destination itself when it is on-link.
    pub via: IpAddr,
    /// The egress interface's MTU.
    pub mtu: u32,
}

/// Facts about one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its MAC (all zero for interfaces without one).
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
}

/// A route lookup's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Egress interface.
    pub ifindex: u32,
    /// Gateway, if the destination is not on-link.
    pub gateway: Option<IpAddr>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
}

/// A `NETLINK_ROUTE` socket of the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    /// The generic netlink family id of "netdev", once asked.
    netdev_family: Option<u16>,
}

impl Netlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Netlink> {
        Netlink::open_protocol(libc::NETLINK_ROUTE)
    }

    /// Opens a generic netlink socket (for [`Netlink::xdp_features`]).
    pub fn open_generic() -> io::Result<Netlink> {
        Netlink::open_protocol(libc::NETLINK_GENERIC)
    }

    fn open_protocol(protocol: i32) -> io::Result<Netlink> {
        // SAFETY: socket(2) takes no pointers.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A kernel that never answers must not hang the control thread.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a complete timeval and its size is passed.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink {
            fd,
            seq: 0,
            netdev_family: None,
        })
    }

    /// The route to `dst`, as `ip route get DST` reports it.
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Route> {
        let mut m = Msg::new(RTM_GETROUTE, NLM_F_REQUEST);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol,
        // scope, type, flags (u32).
        m.put(&[family(dst), prefix_len(dst), 0, 0, 0, 0, 0, 0]);
        m.put(&0u32.to_ne_bytes());
        m.attr(RTA_DST, &ip_bytes(dst));
        let mut route = None;
        self.call(&mut m, |ty, body| {
            if ty != RTM_NEWROUTE || body.len() < 12 {
                return;
            }
            let mut r = Route {
                ifindex: 0,
                gateway: None,
                prefsrc: None,
            };
            for (t, v) in attrs(&body[12..]) {
                match t {
                    RTA_OIF if v.len() == 4 => {
                        r.ifindex = u32::from_ne_bytes([v[0], v[1], v[2], v[3]])
                    }
                    RTA_GATEWAY => r.gateway = parse_ip(v),
                    RTA_PREFSRC => r.prefsrc = parse_ip(v),
                    _ => {}
                }
            }
            route = Some(r);
        })?;
        route.ok_or_else(|| io::Error::other("the kernel answered without a route"))
    }

    /// The usable link-layer address of `ip` on `ifindex`, if the kernel has
    /// one.
    pub fn neigh_get(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<[u8; 6]>> {
        let mut m = Msg::new(RTM_GETNEIGH, NLM_F_REQUEST);
        m.put_ndmsg(family(ip), ifindex, 0, 0);
        m.attr(NDA_DST, &ip_bytes(ip));
        let mut mac = None;
        let r = self.call(&mut m, |ty, body| {
            if ty != RTM_NEWNEIGH || body.len() < 12 {
                return;
            }
            let state = u16::from_ne_bytes([body[8], body[9]]);
            if state & NUD_VALID == 0 {
                return;
            }
            for (t, v) in attrs(&body[12..]) {
                if t == NDA_LLADDR && v.len() == 6 {
                    mac = Some([v[0], v[1], v[2], v[3], v[4], v[5]]);
                }
            }
        });
        match r {
            Ok(()) => Ok(mac),
            // No entry at all.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the kernel to resolve `ip` on `ifindex` (it sends ARP or
    /// neighbour solicitations itself; the answer lands in its table).
    pub fn neigh_resolve(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        // State NONE: the entry is created empty and NTF_USE starts
        // resolution, as if a packet were waiting for it.
        m.put_ndmsg(family(ip), ifindex, 0, NTF_USE);
        m.attr(NDA_DST, &ip_bytes(ip));
        self.call(&mut m, |_, _| {})
    }

    /// The MAC and MTU of interface `ifindex`.
    pub fn link(&mut self, ifindex: u32) -> io::Result<LinkInfo> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST);
        // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
        m.put(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.put(&(ifindex as i32).to_ne_bytes());
        m.put(&[0; 8]);
        let mut info = None;
        self.call(&mut m, |ty, body| {
            if ty != RTM_NEWLINK || body.len() < 16 {
                return;
            }
            let mut l = LinkInfo {
                mac: [0; 6],
                mtu: 0,
            };
            for (t, v) in attrs(&body[16..]) {
                match t {
                    IFLA_ADDRESS if v.len() == 6 => l.mac.copy_from_slice(v),
                    IFLA_MTU if v.len() == 4 => {
                        l.mtu = u32::from_ne_bytes([v[0], v[1], v[2], v[3]])
                    }
                    _ => {}
                }
            }
            info = Some(l);
        })?;
        info.ok_or_else(|| io::Error::other("the kernel answered without the link"))
    }

    /// Route, egress link and neighbour for `dst`; starts resolution when
    /// the neighbour is unknown (then `dst_mac` is `None`).
    pub fn next_hop(&mut self, dst: IpAddr) -> io::Result<NextHop> {
        let r = self.route_get(dst)?;
        let via = r.gateway.unwrap_or(dst);
        let link = self.link(r.ifindex)?;
        let mut dst_mac = self.neigh_get(r.ifindex, via)?;
        if dst_mac.is_none() {
            self.neigh_resolve(r.ifindex, via)?;
            dst_mac = self.neigh_get(r.ifindex, via)?;
        }
        Ok(NextHop {
            ifindex: r.ifindex,
            src_mac: link.mac,
            dst_mac,
            src_ip: r.prefsrc,
            via,
            mtu: link.mtu,
        })
    }

    /// The XDP features of interface `ifindex` (`NETDEV_A_DEV_XDP_FEATURES`
    /// of the generic netlink family "netdev", as `ynl` shows them; bits
    /// `NETDEV_XDP_ACT_*`). Needs a socket from [`Netlink::open_generic`].
    pub fn xdp_features(&mut self, ifindex: u32) -> io::Result<u64> {
        let family = match self.netdev_family {
            Some(f) => f,
            None => {
                let mut m = Msg::new(GENL_ID_CTRL, NLM_F_REQUEST);
                m.put(&[CTRL_CMD_GETFAMILY, 1, 0, 0]);
                m.attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0");
                let mut id = None;
                self.call(&mut m, |_, body| {
                    let a = body.get(4..).unwrap_or_default();
                    for (ty, v) in attrs(a) {
                        if ty == CTRL_ATTR_FAMILY_ID && v.len() >= 2 {
                            id = Some(u16::from_ne_bytes([v[0], v[1]]));
                        }
                    }
                })?;
                let id = id.ok_or_else(|| io::Error::other("no netdev netlink family"))?;
                self.netdev_family = Some(id);
                id
            }
        };
        let mut m = Msg::new(family, NLM_F_REQUEST);
        m.put(&[NETDEV_CMD_DEV_GET, 1, 0, 0]);
        m.attr(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes());
        let mut features = None;
        self.call(&mut m, |_, body| {
            let a = body.get(4..).unwrap_or_default();
            for (ty, v) in attrs(a) {
                if ty == NETDEV_A_DEV_XDP_FEATURES && v.len() >= 8 {
                    let b: [u8; 8] = v[..8].try_into().expect("8 bytes");
                    features = Some(u64::from_ne_bytes(b));
                }
            }
        })?;
        features.ok_or_else(|| io::Error::other("no XDP features in the answer"))
    }

    /// Sends one request and feeds each answer's (type, body) to `each`
    /// until the kernel says it is done; an error answer becomes `Err`.
    fn call(&mut self, m: &mut Msg, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = m.finish(seq);
        // SAFETY: `bytes` is a valid buffer of the given length for the
        // duration of the call; a null address sends to the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        let want_ack = m.flags & NLM_F_ACK != 0;
        loop {
            // SAFETY: `buf` is writable for its whole length during the call.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            let mut done = false;
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
                    NLMSG_DONE => done = true,
                    _ => {
                        each(ty, body);
                        // A plain GET answers with one message and no DONE.
                        if !want_ack {
                            done = true;
                        }
                    }
                }
            }
            if done {
                return Ok(());
            }
        }
    }
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

    /// struct ndmsg: family, pad, pad (u16), ifindex (i32), state (u16),
    /// flags, type.
    fn put_ndmsg(&mut self, family: u8, ifindex: u32, state: u16, flags: u8) {
        self.put(&[family, 0, 0, 0]);
        self.put(&(ifindex as i32).to_ne_bytes());
        self.put(&state.to_ne_bytes());
        self.put(&[flags, 0]);
    }

    fn attr(&mut self, ty: u16, v: &[u8]) {
        let len = 4 + v.len();
        self.put(&(len as u16).to_ne_bytes());
        self.put(&ty.to_ne_bytes());
        self.put(v);
        self.buf.resize(align(self.buf.len()), 0);
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

fn prefix_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
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
    fn attributes_parse_and_stop_at_garbage() {
        let mut m = Msg::new(RTM_GETROUTE, NLM_F_REQUEST);
        m.attr(RTA_DST, &[10, 0, 0, 1]);
        m.attr(RTA_OIF, &7u32.to_ne_bytes());
        let body = m.buf[16..].to_vec();
        let got: Vec<_> = attrs(&body).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (RTA_DST, &[10u8, 0, 0, 1][..]));
        // A length running past the end ends the walk instead of panicking.
        let bad = [200u8, 0, 1, 0, 1, 2, 3, 4];
        assert_eq!(attrs(&bad).count(), 0);
        assert_eq!(attrs(&[1, 0]).count(), 0);
    }

    #[test]
    fn loopback_routes_and_links_in_this_namespace() {
        let mut nl = Netlink::open().expect("netlink socket");
        let r = nl
            .route_get("127.0.0.1".parse().unwrap())
            .expect("route to 127.0.0.1");
        let lo = crate::sys::if_index("lo").expect("lo");
        assert_eq!(r.ifindex, lo);
        let l = nl.link(lo).expect("lo link");
        assert_eq!(l.mac, [0; 6]);
        assert!(l.mtu >= 1500);
    }

    #[test]
    fn xdp_features_of_loopback_and_a_bad_index() {
        let mut nl = Netlink::open_generic().expect("generic netlink socket");
        let lo = crate::sys::if_index("lo").expect("lo");
        let f = nl.xdp_features(lo).expect("lo's XDP features");
        assert_eq!(f & XDP_ACT_NDO_XMIT, 0, "lo takes no redirected frames");
        assert!(nl.xdp_features(0x7fff_fff0).is_err(), "no such interface");
    }
}
