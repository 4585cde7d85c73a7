//! Which megaflow actions the fast path can take, and the entry that takes
//! them: a pure function of the packet's flow key and the datapath actions.
//!
//! [`offload`] accepts the shape translation produces for forwarding:
//! absolute rewrites (translation commits them lazily as `set` actions
//! before the output), at most a VLAN pop followed by a push, and exactly
//! one output (a port or a Geneve push) as the last action. It refuses,
//! returning `None`, whatever the program cannot do or would do
//! differently from `datapath::exec`: several outputs, conntrack,
//! tunnel metadata (Geneve options), drops, rejects, logs, reserved
//! ports, a rewrite `exec` would refuse (an IPv4 address on an IPv6
//! packet, a port on ICMP, a TCI without a tag), an IPv6 underlay or a
//! template with a UDP checksum, and any key [`FpKey::from_flow_key`]
//! refuses.
//!
//! The entry's Geneve source port is the slow path's, computed here:
//! `Template::src_port(FlowKey::hash())`, the same calls the pipeline makes
//! for the first pass of this exact key.

#![deny(unsafe_code)]

use super::layout::{act, FpEntry, FpKey, GENEVE4_LEN};
use encap::mtu::{encap_overhead, Underlay};
use encap::Template;
use flowtable::port::is_reserved;
use flowtable::{DpAction, Field, FlowKey, PortNo};

/// A remote's template as the fast path holds it.
pub struct OffloadTunnel<'a> {
    /// Its slot in the tunnel map.
    pub slot: u32,
    /// The slow path's template for the remote.
    pub tpl: &'a Template,
    /// The uplink port the encapsulated packet leaves by.
    pub uplink: PortNo,
    /// The uplink's IP MTU.
    pub mtu: u16,
}

/// What `offload` needs to know beyond the key and the actions.
pub trait OffloadEnv {
    /// The template for Geneve pushes through tunnel port `port` to
    /// `remote` (IPv4 as `::ffff:a.b.c.d`), if the fast path holds one.
    fn tunnel(&self, port: PortNo, remote: [u8; 16]) -> Option<OffloadTunnel<'_>>;
}

/// The fast-path key and entry that do for the packets of flow key `key`
/// what `actions` do, or `None` when the fast path cannot.
pub fn offload(
    key: &FlowKey,
    actions: &[DpAction],
    env: &dyn OffloadEnv,
) -> Option<(FpKey, FpEntry)> {
    let fk = FpKey::from_flow_key(key)?;
    let (last, rewrites) = actions.split_last()?;
    let v4 = fk.dl_type == [0x08, 0x00];
    let l4_ports = matches!(fk.nw_proto, 6 | 17);
    let mut tagged = fk.vlan_tci != [0, 0];
    let mut e = FpEntry {
        max_len: u16::MAX,
        ..FpEntry::default()
    };
    for a in rewrites {
        match *a {
            DpAction::SetEthSrc(m) => {
                e.actions |= act::ETH_SRC;
                e.eth_src = m;
            }
            DpAction::SetEthDst(m) => {
                e.actions |= act::ETH_DST;
                e.eth_dst = m;
            }
            DpAction::SetIpv4Src(ip) if v4 => {
                e.actions |= act::IP4_SRC;
                e.nw_src = [0; 16];
                e.nw_src[..4].copy_from_slice(&ip);
            }
            DpAction::SetIpv4Dst(ip) if v4 => {
                e.actions |= act::IP4_DST;
                e.nw_dst = [0; 16];
                e.nw_dst[..4].copy_from_slice(&ip);
            }
            DpAction::SetIpv6Src(ip) if !v4 => {
                e.actions |= act::IP6_SRC;
                e.nw_src = ip;
            }
            DpAction::SetIpv6Dst(ip) if !v4 => {
                e.actions |= act::IP6_DST;
                e.nw_dst = ip;
            }
            DpAction::SetTos(t) => {
                e.actions |= act::TOS;
                e.nw_tos = t;
            }
            DpAction::SetTtl(t) => {
                e.actions |= act::TTL;
                e.nw_ttl = t;
            }
            DpAction::SetTpSrc(p) if l4_ports => {
                e.actions |= act::TP_SRC;
                e.tp_src = p.to_be_bytes();
            }
            DpAction::SetTpDst(p) if l4_ports => {
                e.actions |= act::TP_DST;
                e.tp_dst = p.to_be_bytes();
            }
            // `exec` leaves an untagged packet alone.
            DpAction::PopVlan if !tagged => {}
            DpAction::PopVlan if e.actions & (act::VLAN_PUSH | act::VLAN_POP) == 0 => {
                // A TCI set on the tag being removed is moot.
                e.actions &= !act::VLAN_SET;
                e.actions |= act::VLAN_POP;
                tagged = false;
            }
            // A push onto a tag would make a double tag, which the key cannot say.
            DpAction::PushVlan { tpid, tci } if !tagged && e.actions & act::VLAN_PUSH == 0 => {
                e.actions |= act::VLAN_PUSH;
                e.vlan_tpid = tpid.to_be_bytes();
                e.vlan_tci = tci.to_be_bytes();
                tagged = true;
            }
            DpAction::SetVlanTci(tci) if tagged => {
                if e.actions & act::VLAN_PUSH == 0 {
                    e.actions |= act::VLAN_SET;
                }
                e.vlan_tci = tci.to_be_bytes();
            }
            _ => return None,
        }
    }
    match *last {
        DpAction::Output(p) if !is_reserved(p) => {
            e.out_port = p;
        }
        DpAction::TunnelPush { port, vni, dst } if key.get(Field::TunDst) == 0 => {
            let t = env.tunnel(port, dst)?;
            let tpl = t.tpl;
            if tpl.is_ipv6() || tpl.udp_checksum() || tpl.bytes().len() != GENEVE4_LEN {
                return None;
            }
            e.actions |= act::GENEVE_PUSH;
            e.out_port = t.uplink;
            e.tun_slot = t.slot;
            e.tun_id = ((vni & 0x00ff_ffff) << 8).to_be_bytes();
            e.tun_sport = tpl.src_port(key.hash()).to_be_bytes();
            // `encap::mtu::fits` at push time, for the frame as it arrived:
            // a tag pushed adds 4 bytes, one popped removes 4.
            let fits = usize::from(t.mtu).checked_sub(encap_overhead(Underlay::Ipv4, 0))?;
            let delta: isize = match (
                e.actions & act::VLAN_POP != 0,
                e.actions & act::VLAN_PUSH != 0,
            ) {
                (true, false) => -4,
                (false, true) => 4,
                _ => 0,
            };
            let arriving = (fits as isize - delta).clamp(0, u16::MAX as isize);
            e.max_len = arriving as u16;
        }
        _ => return None,
    }
    Some((fk, e))
}
