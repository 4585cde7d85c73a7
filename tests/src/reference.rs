//! A naive reference switch: rules in a plain list, each lookup a linear scan
//! for the highest-priority match, actions interpreted directly on a packet
//! description, output bytes serialised by etherparse.
//!
//! It shares no code with the classifier, the translation, the caches or the
//! executor, only the `Match` and `Action` value types. The property test runs
//! the same rules and packets through both and demands identical output.
//! It covers the stateless subset: output (to a port or to the port number
//! in a register), set_field on dl_dst/nw_dst/tp_dst
//! and registers, load, resubmit, goto_table, dec_ttl and drop.

use crate::{Pkt, L4};
use flowtable::field::Field;
use flowtable::{Action, FlowKey, Match, PortNo};

/// One rule of the reference.
#[derive(Clone, Debug)]
pub struct RefRule {
    /// Table.
    pub table: u8,
    /// Priority (unique within a table in the tests, so no ties).
    pub priority: u16,
    /// Match.
    pub m: Match,
    /// Actions.
    pub actions: Vec<Action>,
}

/// The key a packet description stands for, built field by field from the
/// description (not by parsing bytes).
pub fn key_of(p: &Pkt, in_port: PortNo) -> FlowKey {
    let mut k = FlowKey::default();
    k.set(Field::InPort, in_port as u128);
    k.set(
        Field::DlSrc,
        u64::from_be_bytes([
            0,
            0,
            p.src_mac[0],
            p.src_mac[1],
            p.src_mac[2],
            p.src_mac[3],
            p.src_mac[4],
            p.src_mac[5],
        ]) as u128,
    );
    k.set(
        Field::DlDst,
        u64::from_be_bytes([
            0,
            0,
            p.dst_mac[0],
            p.dst_mac[1],
            p.dst_mac[2],
            p.dst_mac[3],
            p.dst_mac[4],
            p.dst_mac[5],
        ]) as u128,
    );
    k.set(Field::DlType, 0x0800);
    if let Some(v) = p.vlan {
        k.set(Field::VlanTci, 0x1000 | v as u128);
    }
    k.set(Field::NwSrc, u32::from_be_bytes(p.src_ip) as u128);
    k.set(Field::NwDst, u32::from_be_bytes(p.dst_ip) as u128);
    k.set(Field::NwTtl, p.ttl as u128);
    match p.l4 {
        L4::Tcp(s, d) => {
            k.set(Field::NwProto, 6);
            k.set(Field::TpSrc, s as u128);
            k.set(Field::TpDst, d as u128);
            k.set(Field::TcpFlags, 0x002);
        }
        L4::Udp(s, d) => {
            k.set(Field::NwProto, 17);
            k.set(Field::TpSrc, s as u128);
            k.set(Field::TpDst, d as u128);
        }
        L4::IcmpEcho(_, _) => {
            k.set(Field::NwProto, 1);
            k.set(Field::TpSrc, 8);
        }
    }
    k
}

struct Eval<'a> {
    rules: &'a [RefRule],
    in_port: PortNo,
    key: FlowKey,
    pkt: Pkt,
    out: Vec<(PortNo, Pkt)>,
    exit: bool,
    depth: u32,
}

/// Where the packet goes and what it looks like there.
pub fn evaluate(rules: &[RefRule], pkt: &Pkt, in_port: PortNo) -> Vec<(PortNo, Pkt)> {
    let mut e = Eval {
        rules,
        in_port,
        key: key_of(pkt, in_port),
        pkt: *pkt,
        out: Vec::new(),
        exit: false,
        depth: 0,
    };
    e.table(0);
    e.out
}

impl Eval<'_> {
    fn table(&mut self, t: u8) {
        let best = self
            .rules
            .iter()
            .filter(|r| r.table == t && r.m.matches(&self.key))
            .max_by_key(|r| r.priority);
        if let Some(r) = best {
            for a in &r.actions {
                if self.exit {
                    return;
                }
                self.action(a, t);
            }
        }
    }

    fn action(&mut self, a: &Action, t: u8) {
        match a {
            Action::Output(p) => {
                if *p != self.in_port {
                    self.out.push((*p, self.pkt));
                }
            }
            Action::OutputField(sf) => {
                let p = ((self.key.get(sf.field) & sf.mask()) >> sf.ofs) as PortNo;
                if p != self.in_port {
                    self.out.push((p, self.pkt));
                }
            }
            Action::Drop => {}
            Action::Resubmit {
                in_port: None,
                table,
            } => {
                if self.depth < 64 {
                    self.depth += 1;
                    self.table(table.unwrap_or(t));
                    self.depth -= 1;
                }
            }
            Action::GotoTable(n) => self.table(*n),
            Action::DecTtl => {
                if self.pkt.ttl <= 1 {
                    self.exit = true;
                } else {
                    self.pkt.ttl -= 1;
                    self.key.set(Field::NwTtl, self.pkt.ttl as u128);
                }
            }
            Action::SetField { field, value, mask } => self.write(*field, *value, *mask),
            Action::Load { dst, value } => self.write(dst.field, value << dst.ofs, dst.mask()),
            other => panic!("reference does not model {other:?}"),
        }
    }

    fn write(&mut self, f: Field, v: u128, mask: u128) {
        self.key.set_masked(f, v, mask);
        let now = self.key.get(f);
        match f {
            Field::DlDst => {
                let b = (now as u64).to_be_bytes();
                self.pkt.dst_mac.copy_from_slice(&b[2..8]);
            }
            Field::NwDst => self.pkt.dst_ip = (now as u32).to_be_bytes(),
            Field::TpDst => match &mut self.pkt.l4 {
                L4::Tcp(_, d) | L4::Udp(_, d) => *d = now as u16,
                L4::IcmpEcho(..) => {}
            },
            f if Field::reg(0) == Some(f) || Field::reg(1) == Some(f) => {}
            other => panic!("reference does not model writes to {other}"),
        }
    }
}
