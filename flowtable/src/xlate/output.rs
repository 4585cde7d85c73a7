//! The output side of translation: `output` and the reserved ports,
//! `flood`, `normal`, groups and their buckets, output to tunnel ports, and
//! the commit that writes pending rewrites out before each output.
//!
//! It is kept apart from the table walk in `xlate.rs` because it is where
//! the walk becomes datapath actions: everything here either emits an
//! output or decides, from the bridge's ports, MAC table and groups, where
//! the packet goes. The same rule as for the walk holds: every key bit a
//! decision reads joins the megaflow mask.

use super::Ctx;
use crate::action::{Action, DpAction, GroupType, SubField};
use crate::drop::DropReason;
use crate::field::{dl_type, Field, Prereq, VLAN_PRESENT};
use crate::group::HashField;
use crate::key::{hash_masked, FlowMask};
use crate::mac::Learn;
use crate::port::{reserved, PortNo};

impl Ctx<'_> {
    pub(super) fn output(&mut self, p: PortNo) {
        match p {
            reserved::IN_PORT => {
                let p = self.flow.get(Field::InPort) as PortNo;
                self.emit_output(p);
            }
            reserved::NORMAL => self.normal(),
            reserved::FLOOD | reserved::ALL => self.flood(),
            reserved::NONE | reserved::CONTROLLER | reserved::TABLE => {
                self.note(|| format!("output to reserved port {p:#x}: not supported, ignored"));
            }
            _ => {
                if p == self.flow.get(Field::InPort) as PortNo {
                    self.note(|| format!("output:{p} is the input port, skipped"));
                    self.drop_reason(DropReason::OutputToInPort);
                    return;
                }
                self.emit_output(p);
            }
        }
    }

    /// `output:FIELD[...]`: the port number is read from the flow, so the
    /// bits read join the megaflow's mask (through `read_sub`), and every
    /// packet the megaflow covers goes to the same port.
    pub(super) fn output_field(&mut self, src: SubField) {
        let v = self.read_sub(src);
        // OVS reads the value as an OpenFlow 1.0 port number (reserved ports
        // at 0xfff8 and up); anything wider names no port.
        match u16::try_from(v) {
            Ok(p) => self.output(PortNo::from(p)),
            Err(_) => {
                self.note(|| format!("output:{v:#x} from {}: not a port number", src.field));
                self.drop_reason(DropReason::PortDown);
            }
        }
    }

    pub(super) fn flood(&mut self) {
        let in_port = self.flow.get(Field::InPort) as PortNo;
        let br = self.br;
        for port in br.ports.iter().filter(|p| p.up && p.no != in_port) {
            self.emit_output(port.no);
        }
    }

    pub(super) fn normal(&mut self) {
        for f in [Field::DlSrc, Field::DlDst, Field::VlanTci] {
            self.wc.set_field(f);
        }
        let in_port = self.flow.get(Field::InPort) as PortNo;
        let vlan = (self.flow.get(Field::VlanTci) as u16) & 0x0fff;
        let src = mac(self.flow.get(Field::DlSrc));
        let dst = mac(self.flow.get(Field::DlDst));
        if src[0] & 1 == 0 {
            self.learned.push(Learn {
                vlan,
                mac: src,
                port: in_port,
            });
        }
        if dst[0] & 1 != 0 {
            self.note(|| "normal: multicast or broadcast destination, flooding".into());
            return self.flood();
        }
        match self.br.macs.lookup(vlan, &dst) {
            Some(p) if p == in_port => {
                self.note(|| format!("normal: destination learned on input port {p}, dropping"));
                self.drop_reason(DropReason::OutputToInPort);
            }
            Some(p) => {
                self.note(|| format!("normal: destination learned on port {p}"));
                self.emit_output(p);
            }
            None => {
                self.note(|| "normal: destination unknown, flooding".into());
                self.flood();
            }
        }
    }

    pub(super) fn group(&mut self, id: u32) {
        let Some(g) = self.br.groups.get(id).cloned() else {
            self.note(|| format!("group {id} does not exist"));
            return;
        };
        match g.kind() {
            GroupType::Indirect => {
                if let Some(b) = g.spec.buckets.first() {
                    self.actions(&b.actions, 0);
                }
            }
            GroupType::Select => {
                let h = match &g.spec.hash_fields {
                    Some(fields) => self.select_hash_fields(fields),
                    None => self.select_hash(),
                };
                match g.select(h) {
                    Some(b) => {
                        let i = g
                            .spec
                            .buckets
                            .iter()
                            .position(|x| std::ptr::eq(x, b))
                            .unwrap_or(0);
                        self.note(|| format!("group {id} (select): bucket {i}"));
                        self.bucket(&b.actions);
                    }
                    None => self.note(|| format!("group {id} (select): no live bucket")),
                }
            }
            GroupType::All => {
                for b in &g.spec.buckets {
                    self.bucket(&b.actions);
                }
            }
        }
    }

    /// Runs a bucket on what is logically its own copy of the packet: the
    /// flow is restored afterwards, and any packet field the bucket rewrote
    /// is marked dirty so the next output writes the original value back.
    fn bucket(&mut self, actions: &[Action]) {
        let saved_flow = self.flow;
        let saved_written = std::mem::take(&mut self.written);
        self.actions(actions, 0);
        let touched = std::mem::replace(&mut self.written, saved_written);
        self.written.union(&touched);
        self.flow = saved_flow;
        for f in Field::all().filter(|f| f.is_packet_field()) {
            if touched.get(f) != 0 {
                // Writing the original back copies the packet's value.
                self.wc.set_field(f);
                self.dirty.set_field(f);
            }
        }
    }

    /// The flow hash a select group chooses by: addresses and ports for IP,
    /// MACs otherwise. The hashed fields join the megaflow mask.
    fn select_hash(&mut self) -> u32 {
        let mut m = FlowMask::default();
        if self.has(Prereq::Ip) {
            let v4 = self.has(Prereq::Ipv4);
            let (s, d) = if v4 {
                (Field::NwSrc, Field::NwDst)
            } else {
                (Field::Ipv6Src, Field::Ipv6Dst)
            };
            m.set_field(s);
            m.set_field(d);
            m.set_field(Field::NwProto);
            if self.has(Prereq::L4) {
                m.set_field(Field::TpSrc);
                m.set_field(Field::TpDst);
            }
        } else {
            m.set_field(Field::DlSrc);
            m.set_field(Field::DlDst);
        }
        self.wc.union(&m);
        let words: Vec<u8> = m.nonzero_words().map(|w| w as u8).collect();
        hash_masked(&self.flow, &m, &words)
    }

    /// The hash of `selection_method=hash,fields(...)`: only the named
    /// fields, under their masks, and only those whose prerequisites (and
    /// implied protocol) the packet has; exactly those bits join the mask.
    fn select_hash_fields(&mut self, fields: &[HashField]) -> u32 {
        let mut m = FlowMask::default();
        for hf in fields {
            let proto_ok = |cx: &mut Self, p: u8| {
                cx.wc.set_field(Field::NwProto);
                cx.flow.get(Field::NwProto) as u8 == p
            };
            if self.has(hf.field.prereq()) && hf.proto.is_none_or(|p| proto_ok(self, p)) {
                m.set_bits(hf.field, hf.mask);
            }
        }
        self.wc.union(&m);
        let words: Vec<u8> = m.nonzero_words().map(|w| w as u8).collect();
        hash_masked(&self.flow, &m, &words)
    }

    pub(super) fn emit_output(&mut self, p: PortNo) {
        if !self.br.ports.contains(p) {
            self.note(|| format!("output:{p}: no such port"));
            self.drop_reason(DropReason::PortDown);
            return;
        }
        if self.br.ports.tunnel(p).is_some() {
            return self.tunnel_push(p);
        }
        self.commit();
        self.out.push(DpAction::Output(p));
    }

    /// Output to a tunnel port: the VNI and remote come from the port or,
    /// for `flow`, from the key (and so join the megaflow's mask).
    fn tunnel_push(&mut self, p: PortNo) {
        let Some(t) = self.br.ports.tunnel(p).cloned() else {
            return;
        };
        let vni = match t.key {
            Some(k) => k,
            None => {
                self.wc.set_field(Field::TunId);
                self.flow.get(Field::TunId) as u32 & 0x00ff_ffff
            }
        };
        let dst = match t.remote {
            Some(ip) => ip,
            None => {
                self.wc.set_field(Field::TunDst);
                let v4 = self.flow.get(Field::TunDst) as u32;
                if v4 != 0 {
                    std::net::IpAddr::V4(v4.into())
                } else {
                    self.wc.set_field(Field::TunIpv6Dst);
                    std::net::IpAddr::V6(self.flow.get(Field::TunIpv6Dst).into())
                }
            }
        };
        if dst.is_unspecified() || dst.is_ipv4() != t.local.is_ipv4() {
            self.note(|| {
                format!("output to tunnel port {p}: no usable remote (tun_dst/tun_ipv6_dst {dst})")
            });
            self.drop_reason(DropReason::PortDown);
            return;
        }
        self.commit();
        let md = [Field::TunMetadata0, Field::TunMetadata1];
        for (slot, f) in md.into_iter().enumerate() {
            if self.br.tlv.slots[slot].is_none() {
                continue;
            }
            self.wc.set_field(f);
            let value = self.flow.get(f) as u64;
            // A zero field means "no option": the key has no presence bit.
            if value != 0 {
                self.out.push(DpAction::TunnelMetadata {
                    slot: slot as u8,
                    value,
                });
            }
        }
        let dst = match dst {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        self.note(|| format!("output to tunnel port {p}: vni {vni}"));
        self.out.push(DpAction::TunnelPush { port: p, vni, dst });
    }

    /// Writes out dirty packet fields as absolute set actions.
    pub(super) fn commit(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let f = self.flow;
        let d = self.dirty;
        let dirty = |x: Field| d.get(x) != 0;
        if dirty(Field::DlSrc) {
            self.out.push(DpAction::SetEthSrc(mac(f.get(Field::DlSrc))));
        }
        if dirty(Field::DlDst) {
            self.out.push(DpAction::SetEthDst(mac(f.get(Field::DlDst))));
        }
        if dirty(Field::VlanTci) {
            let old = self.committed.get(Field::VlanTci) as u16;
            let new = f.get(Field::VlanTci) as u16;
            match (old & VLAN_PRESENT != 0, new & VLAN_PRESENT != 0) {
                (true, false) => self.out.push(DpAction::PopVlan),
                (false, true) => self.out.push(DpAction::PushVlan {
                    tpid: 0x8100,
                    tci: new & !VLAN_PRESENT,
                }),
                (true, true) => self.out.push(DpAction::SetVlanTci(new & !VLAN_PRESENT)),
                (false, false) => {}
            }
        }
        let dl = f.get(Field::DlType) as u16;
        if dl == dl_type::IPV4 {
            if dirty(Field::NwSrc) {
                self.out.push(DpAction::SetIpv4Src(
                    (f.get(Field::NwSrc) as u32).to_be_bytes(),
                ));
            }
            if dirty(Field::NwDst) {
                self.out.push(DpAction::SetIpv4Dst(
                    (f.get(Field::NwDst) as u32).to_be_bytes(),
                ));
            }
        }
        // ARP's fields live in the IPv4 words (arp_op in nw_proto,
        // arp_spa/arp_tpa in nw_src/nw_dst) and the two ARP words; an ARP
        // responder rewrites several, so they are written out together.
        if dl == dl_type::ARP
            && [
                Field::NwProto,
                Field::NwSrc,
                Field::NwDst,
                Field::ArpSha,
                Field::ArpTha,
            ]
            .into_iter()
            .any(dirty)
        {
            self.out.push(DpAction::SetArp {
                op: f.get(Field::NwProto) as u16,
                sha: mac(f.get(Field::ArpSha)),
                spa: (f.get(Field::NwSrc) as u32).to_be_bytes(),
                tha: mac(f.get(Field::ArpTha)),
                tpa: (f.get(Field::NwDst) as u32).to_be_bytes(),
            });
        }
        if dl == dl_type::IPV6 {
            if dirty(Field::Ipv6Src) {
                self.out
                    .push(DpAction::SetIpv6Src(f.get(Field::Ipv6Src).to_be_bytes()));
            }
            if dirty(Field::Ipv6Dst) {
                self.out
                    .push(DpAction::SetIpv6Dst(f.get(Field::Ipv6Dst).to_be_bytes()));
            }
        }
        if dl == dl_type::IPV4 || dl == dl_type::IPV6 {
            if dirty(Field::NwTos) {
                self.out.push(DpAction::SetTos(f.get(Field::NwTos) as u8));
            }
            if dirty(Field::NwTtl) {
                self.out.push(DpAction::SetTtl(f.get(Field::NwTtl) as u8));
            }
            let proto = f.get(Field::NwProto) as u8;
            if proto == 6 || proto == 17 {
                if dirty(Field::TpSrc) {
                    self.out
                        .push(DpAction::SetTpSrc(f.get(Field::TpSrc) as u16));
                }
                if dirty(Field::TpDst) {
                    self.out
                        .push(DpAction::SetTpDst(f.get(Field::TpDst) as u16));
                }
            }
        }
        self.committed = f;
        self.dirty = FlowMask::default();
    }
}

fn mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}
