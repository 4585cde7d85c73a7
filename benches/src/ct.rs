//! The conntrack benches' traffic: SYNs of ever new connections to one
//! virtual IP, translated to a range of backends, with expiry as time moves.
//! Shared by `benches/conntrack.rs` and the `ct_churn` example (the same loop
//! under callgrind).

use flowtable::conntrack::{tcp_flags::SYN, ConnTrack, CtPacket, NatRange, NatSpec, TcpInfo};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

/// Client address number `i` (11.0.0.0 + i: only ever handed to an
/// in-memory table).
pub fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))
}

/// The Service address every SYN goes to.
pub fn vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))
}

/// The SYN of connection `i`: 16 source ports per client address.
pub fn syn(i: u32) -> CtPacket {
    let t = TcpInfo {
        flags: SYN,
        seq: i,
        ack: 0,
        window: 65535,
        wscale: Some(7),
        payload_len: 0,
    };
    CtPacket::tcp(client(i >> 4), 1024 + (i & 15) as u16, vip(), 80, t)
}

/// DNAT to 256 backends on port 8080.
pub fn dnat() -> NatSpec {
    NatSpec::Dst(NatRange::addr_ports(
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0)),
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 255)),
        8080,
        8080,
    ))
}

/// New connection `i` committed with `nat`. Time moves 1 ms every `per_ms`
/// SYNs and each SYN_SENT entry lives 30 s, so the table settles near
/// 30 000 × `per_ms` entries, expired 2 × `per_ms` at a time.
#[inline]
pub fn churn_step(ct: &ConnTrack, nat: &NatSpec, per_ms: u32, i: u32) {
    let now = (i / per_ms) as u64;
    if i % per_ms == 0 {
        ct.expire(now, 2 * per_ms as usize);
    }
    black_box(ct.process(&syn(i), 0, now, true, Some(nat)));
}
