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
//! `Template::src_port` of the inner flow's hash (`encap::ip_flow_hash`,
//! the fields `encap::inner_flow_hash` reads from the frame the slow path
//! wraps), taken after the entry's rewrites as the slow path takes it.

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

/// The inner flow hash of the packets of `fk` once `e`'s address and port
/// rewrites are applied: what `Template::push` computes from the frame it
/// wraps. Fragments never reach here (the program punts them).
fn inner_hash(fk: &FpKey, e: &FpEntry) -> u32 {
    let v6 = fk.dl_type == [0x86, 0xdd];
    let pick = |flags: u32, new: [u8; 16], old: [u8; 16]| {
        if e.actions & flags != 0 {
            new
        } else {
            old
        }
    };
    let src = pick(act::IP4_SRC | act::IP6_SRC, e.nw_src, fk.nw_src);
    let dst = pick(act::IP4_DST | act::IP6_DST, e.nw_dst, fk.nw_dst);
    let port = |flag: u32, new: [u8; 2], old: [u8; 2]| {
        u16::from_be_bytes(if e.actions & flag != 0 { new } else { old })
    };
    let ports = (
        port(act::TP_SRC, e.tp_src, fk.tp_src),
        port(act::TP_DST, e.tp_dst, fk.tp_dst),
    );
    encap::ip_flow_hash(v6, src, dst, fk.nw_proto, ports)
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
            e.tun_sport = tpl.src_port(inner_hash(&fk, &e)).to_be_bytes();
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

#[cfg(test)]
mod tests {
    //! What `offload` accepts and refuses, without the kernel (the golden
    //! tests in `fastpath::tests` run the accepted entries in it).
    use super::*;
    use flowtable::extract;
    use std::net::Ipv4Addr;

    struct NoTunnels;
    impl OffloadEnv for NoTunnels {
        fn tunnel(&self, _: PortNo, _: [u8; 16]) -> Option<OffloadTunnel<'_>> {
            None
        }
    }

    struct OneTunnel(Template);
    impl OffloadEnv for OneTunnel {
        fn tunnel(&self, port: PortNo, _: [u8; 16]) -> Option<OffloadTunnel<'_>> {
            (port == 100).then_some(OffloadTunnel {
                slot: 1,
                tpl: &self.0,
                uplink: 10,
                mtu: 1500,
            })
        }
    }

    /// Ethernet + IPv4 + TCP (ACK) or UDP, or IPv6 + UDP.
    fn frame(v6: bool, tcp_flags: Option<u8>) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let l4: Vec<u8> = match tcp_flags {
            Some(fl) => {
                let mut t = vec![0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, fl, 1, 0];
                t.extend_from_slice(&[0, 0, 0, 0]);
                t
            }
            None => vec![0x13, 0x88, 0, 53, 0, 8, 0, 0],
        };
        let proto = if tcp_flags.is_some() { 6 } else { 17 };
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, l4.len() as u8, proto, 64]);
            f.extend_from_slice(&[0xfd; 32]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 20 + l4.len() as u8, 0, 1, 0x40, 0]);
            f.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        f.extend_from_slice(&l4);
        f
    }

    fn key(f: &[u8]) -> FlowKey {
        let mut k = FlowKey::default();
        extract(f, 1, &mut k).unwrap();
        k
    }

    #[test]
    fn forwarding_shapes_are_accepted() {
        let k = key(&frame(false, Some(0x10)));
        let (fk, e) = offload(
            &k,
            &[
                DpAction::SetEthDst([2, 0, 0, 0, 0, 9]),
                DpAction::SetIpv4Dst([10, 0, 0, 9]),
                DpAction::SetTpDst(8080),
                DpAction::SetTtl(63),
                DpAction::Output(2),
            ],
            &NoTunnels,
        )
        .unwrap();
        assert_eq!(fk.in_port, 1);
        assert_eq!(
            e.actions,
            act::ETH_DST | act::IP4_DST | act::TP_DST | act::TTL
        );
        assert_eq!((e.out_port, e.max_len), (2, u16::MAX));
        assert_eq!(&e.nw_dst[..4], &[10, 0, 0, 9]);
        assert_eq!(e.tp_dst, 8080u16.to_be_bytes());
    }

    #[test]
    fn what_the_program_cannot_do_is_refused() {
        let k4 = key(&frame(false, None));
        let k6 = key(&frame(true, None));
        let refused = |k: &FlowKey, a: &[DpAction]| offload(k, a, &NoTunnels).is_none();
        assert!(refused(&k4, &[]));
        assert!(refused(&k4, &[DpAction::Output(2), DpAction::Output(3)]));
        assert!(refused(&k4, &[DpAction::SetEthDst([0; 6])]), "no output");
        assert!(refused(&k4, &[DpAction::Output(0xfff8)]), "reserved port");
        assert!(refused(
            &k4,
            &[DpAction::Drop(flowtable::DropReason::BadRewrite)]
        ));
        assert!(refused(
            &k6,
            &[DpAction::SetIpv4Src([1; 4]), DpAction::Output(2)]
        ));
        assert!(refused(
            &k4,
            &[DpAction::SetIpv6Src([1; 16]), DpAction::Output(2)]
        ));
        assert!(
            refused(&k4, &[DpAction::SetVlanTci(5), DpAction::Output(2)]),
            "no tag"
        );
        let push = DpAction::PushVlan {
            tpid: 0x8100,
            tci: 1,
        };
        assert!(
            refused(&k4, &[push.clone(), push, DpAction::Output(2)]),
            "double tag"
        );
        assert!(refused(
            &k4,
            &[
                DpAction::TunnelMetadata { slot: 0, value: 1 },
                DpAction::TunnelPush {
                    port: 100,
                    vni: 1,
                    dst: [0; 16]
                }
            ]
        ));
        assert!(refused(
            &k4,
            &[DpAction::TunnelPush {
                port: 100,
                vni: 1,
                dst: [0; 16]
            }]
        ));
        // Keys the program never builds.
        let syn = key(&frame(false, Some(0x02)));
        assert!(refused(&syn, &[DpAction::Output(2)]));
        let mut recirc = k4;
        recirc.set(Field::RecircId, 2);
        assert!(refused(&recirc, &[DpAction::Output(2)]));
        let mut reg = k4;
        reg.set(Field::Reg3, 1);
        assert!(refused(&reg, &[DpAction::Output(2)]));
    }

    #[test]
    fn geneve_push_takes_the_template_and_the_mtu() {
        let cfg = encap::TunnelConfig::new(
            [2; 6],
            [4; 6],
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv4Addr::new(192, 0, 2, 2).into(),
        );
        let env = OneTunnel(Template::new(&cfg).unwrap());
        let f = frame(false, Some(0x18));
        let k = key(&f);
        let push = DpAction::TunnelPush {
            port: 100,
            vni: 0x12_3456,
            dst: [0; 16],
        };
        let (_, e) = offload(&k, std::slice::from_ref(&push), &env).unwrap();
        assert_eq!(e.actions, act::GENEVE_PUSH);
        assert_eq!((e.out_port, e.tun_slot), (10, 1));
        assert_eq!(e.tun_id, [0x12, 0x34, 0x56, 0]);
        let slow = env.0.src_port(encap::inner_flow_hash(&f));
        assert_eq!(e.tun_sport, slow.to_be_bytes());
        // encap::mtu::fits: 1500 - 36 for the frame that is pushed.
        assert_eq!(e.max_len, 1464);
        let pop_push = [DpAction::PopVlan, push.clone()];
        let mut tagged = frame(false, Some(0x10));
        tagged.splice(12..12, [0x81, 0, 0, 5]);
        let (_, e) = offload(&key(&tagged), &pop_push, &env).unwrap();
        assert_eq!(e.max_len, 1468, "the tag popped first does not count");
        // An IPv4 UDP checksum or an IPv6 underlay needs a sum over the payload.
        let mut c = cfg;
        c.ipv4_udp_checksum = true;
        let env = OneTunnel(Template::new(&c).unwrap());
        assert!(offload(&k, &[push], &env).is_none());
    }
}
