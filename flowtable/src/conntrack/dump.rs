//! Listing the connection table, for `oxvs-ctl dump-conntrack` (OVS's
//! `ovs-appctl dpctl/dump-conntrack`). Each shard is locked in turn while
//! its entries are copied out, so a dump never stops more than one shard
//! at a time; entries that expired but were not yet removed are left out.

use super::offload::F_OFFLOADED;
use super::table::{F_DNAT, F_SNAT};
use super::types::{proto, Tuple};
use super::{ConnTrack, Family, SHARDS};
use std::fmt::Write;

/// One connection as a dump shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// Zone.
    pub zone: u16,
    /// IP protocol.
    pub proto: u8,
    /// The original direction: source, source port, destination, port.
    pub orig: (std::net::IpAddr, u16, std::net::IpAddr, u16),
    /// The reply direction, as replies carry it (after NAT).
    pub reply: (std::net::IpAddr, u16, std::net::IpAddr, u16),
    /// `ct_mark`.
    pub mark: u32,
    /// `ct_label`.
    pub label: u128,
    /// Source or destination NAT.
    pub snat: bool,
    /// Destination NAT.
    pub dnat: bool,
    /// Milliseconds until the entry expires.
    pub expires_in_ms: u64,
    /// The XDP fast path carries its packets (the Linux conntrack's
    /// `[OFFLOAD]`).
    pub offloaded: bool,
}

impl CtEntry {
    /// The `dpctl/dump-conntrack` line:
    /// `tcp,orig=(src=..,dst=..,sport=..,dport=..),reply=(..),zone=5,mark=0x7`.
    pub fn line(&self) -> String {
        let name = match self.proto {
            proto::TCP => "tcp".to_string(),
            proto::UDP => "udp".to_string(),
            proto::ICMP => "icmp".to_string(),
            proto::ICMPV6 => "icmpv6".to_string(),
            p => format!("proto={p}"),
        };
        let echo = matches!(self.proto, proto::ICMP | proto::ICMPV6);
        let dir = |t: &(std::net::IpAddr, u16, std::net::IpAddr, u16)| {
            if echo {
                format!("src={},dst={},id={}", t.0, t.2, t.1)
            } else {
                format!("src={},dst={},sport={},dport={}", t.0, t.2, t.1, t.3)
            }
        };
        let mut s = format!(
            "{name},orig=({}),reply=({})",
            dir(&self.orig),
            dir(&self.reply)
        );
        if self.zone != 0 {
            let _ = write!(s, ",zone={}", self.zone);
        }
        if self.mark != 0 {
            let _ = write!(s, ",mark={:#x}", self.mark);
        }
        if self.label != 0 {
            let _ = write!(s, ",labels={:#x}", self.label);
        }
        let _ = write!(s, ",timeout={}", self.expires_in_ms / 1000);
        if self.offloaded {
            s.push_str(",offloaded");
        }
        s
    }
}

fn ends<A: super::types::CtAddr>(t: &Tuple<A>) -> (std::net::IpAddr, u16, std::net::IpAddr, u16) {
    (t.src.to_ip(), t.sport, t.dst.to_ip(), t.dport)
}

impl ConnTrack {
    /// The live connections (of `zone` only, if given), at most `max`.
    pub fn dump(&self, zone: Option<u16>, now_ms: u64, max: usize) -> Vec<CtEntry> {
        let mut out = Vec::new();
        for s in 0..SHARDS {
            let mut g = self.lock(s);
            self.dump_family::<[u8; 4]>(&mut g, zone, now_ms, max, &mut out);
            self.dump_family::<[u8; 16]>(&mut g, zone, now_ms, max, &mut out);
            if out.len() >= max {
                break;
            }
        }
        out
    }

    fn dump_family<A: Family>(
        &self,
        g: &mut super::Shard,
        zone: Option<u16>,
        now: u64,
        max: usize,
        out: &mut Vec<CtEntry>,
    ) {
        let t = A::table(g);
        for (c, label) in t.live() {
            if out.len() >= max {
                return;
            }
            if zone.is_some_and(|z| z != c.zone) || c.expires <= now {
                continue;
            }
            out.push(CtEntry {
                zone: c.zone,
                proto: c.proto,
                orig: ends(&c.orig),
                reply: ends(&c.reply()),
                mark: c.mark,
                label,
                snat: c.flags & F_SNAT != 0,
                dnat: c.flags & F_DNAT != 0,
                expires_in_ms: c.expires - now,
                offloaded: c.flags & F_OFFLOADED != 0,
            });
        }
    }
}
