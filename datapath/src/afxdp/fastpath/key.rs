//! The fast-path key of a flow key: the bridge between the switch's
//! `FlowKey` and what the XDP program builds from a packet.
//!
//! [`FpKey::from_flow_key`] is defined only for first-pass keys of packets
//! the program parses itself (IPv4 or IPv6 with TCP, UDP, ICMP or ICMPv6,
//! no fragment, no metadata, registers or conntrack state, no IPv6 tunnel
//! or tunnel options); for those it is injective on every field
//! `flowtable::extract` and the decap fill in, so an entry keyed by it
//! matches exactly the packets whose `FlowKey` equals the original.

use super::layout::FpKey;
use flowtable::{Field, FlowKey};

impl FpKey {
    /// The key the program builds for packets whose flow key is `k`, or
    /// `None` when the program never offloads such packets.
    pub fn from_flow_key(k: &FlowKey) -> Option<FpKey> {
        let zero = [
            Field::RecircId,
            Field::TunIpv6Src,
            Field::TunIpv6Dst,
            Field::TunMetadata0,
            Field::TunMetadata1,
            Field::Metadata,
            Field::CtState,
            Field::CtZone,
            Field::CtMark,
            Field::CtLabel,
            Field::NwFrag,
            Field::ArpSha,
            Field::ArpTha,
        ];
        if zero.iter().any(|&f| k.get(f) != 0) {
            return None;
        }
        let regs = [
            Field::Reg0,
            Field::Reg1,
            Field::Reg2,
            Field::Reg3,
            Field::Reg4,
            Field::Reg5,
            Field::Reg6,
            Field::Reg7,
            Field::Reg8,
            Field::Reg9,
            Field::Reg10,
            Field::Reg11,
            Field::Reg12,
            Field::Reg13,
            Field::Reg14,
            Field::Reg15,
        ];
        if regs.iter().any(|&f| k.get(f) != 0) {
            return None;
        }
        let dl_type = k.get(Field::DlType) as u16;
        let proto = k.get(Field::NwProto) as u8;
        if !matches!(proto, 1 | 6 | 17 | 58) {
            return None;
        }
        let tun_id = k.get(Field::TunId);
        if tun_id >= 1 << 24 {
            return None;
        }
        let mut out = FpKey {
            in_port: k.get(Field::InPort) as u32,
            tun_id: ((tun_id as u32) << 8).to_be_bytes(),
            tun_src: (k.get(Field::TunSrc) as u32).to_be_bytes(),
            tun_dst: (k.get(Field::TunDst) as u32).to_be_bytes(),
            dl_dst: mac(k.get(Field::DlDst)),
            dl_src: mac(k.get(Field::DlSrc)),
            vlan_tci: (k.get(Field::VlanTci) as u16).to_be_bytes(),
            dl_type: dl_type.to_be_bytes(),
            nw_proto: proto,
            nw_tos: k.get(Field::NwTos) as u8,
            nw_ttl: k.get(Field::NwTtl) as u8,
            tp_src: (k.get(Field::TpSrc) as u16).to_be_bytes(),
            tp_dst: (k.get(Field::TpDst) as u16).to_be_bytes(),
            tcp_flags: (k.get(Field::TcpFlags) as u16).to_be_bytes(),
            icmp_id: k.echo_id().to_be_bytes(),
            ipv6_label: (k.get(Field::Ipv6Label) as u32).to_be_bytes(),
            ..FpKey::default()
        };
        match dl_type {
            0x0800 => {
                out.nw_src[..4].copy_from_slice(&(k.get(Field::NwSrc) as u32).to_be_bytes());
                out.nw_dst[..4].copy_from_slice(&(k.get(Field::NwDst) as u32).to_be_bytes());
            }
            0x86dd => {
                out.nw_src = k.get(Field::Ipv6Src).to_be_bytes();
                out.nw_dst = k.get(Field::Ipv6Dst).to_be_bytes();
                // Neighbour discovery is left to the slow path.
                if proto == 58 && (133..=137).contains(&(k.get(Field::TpSrc) as u8)) {
                    return None;
                }
            }
            _ => return None,
        }
        // Only echo requests and replies carry an identifier (as `extract`
        // and the program fill it).
        let icmp_type = k.get(Field::TpSrc);
        let echo = match proto {
            1 => matches!(icmp_type, 0 | 8),
            58 => matches!(icmp_type, 128 | 129),
            _ => false,
        };
        if !echo && k.echo_id() != 0 {
            return None;
        }
        // SYN, FIN and RST never take the fast path.
        if proto == 6 && k.get(Field::TcpFlags) & 0x7 != 0 {
            return None;
        }
        Some(out)
    }
}

fn mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}
