//! The fast-path XDP program, generated with the in-tree assembler: the
//! entry, the uplink's Geneve classification and pop checks, the header
//! parser that builds the [`FpKey`](super::FpKey), the lookup, and the
//! punt and count exits. The rewrites an entry asks for are in
//! [`super::actions`].
//!
//! Register plan, kept through the whole program so the packet pointers
//! survive helper calls (r1-r5 are clobbered by every call, r6-r9 are not):
//!
//! | reg | before the lookup | after the lookup |
//! |---|---|---|
//! | r6 | the context | the entry |
//! | r7 | start of the (inner) Ethernet frame | same, reloaded after each headroom change |
//! | r8 | `data_end` | same |
//! | r9 | uplink port config, then the L3 header | the L3 header, then the tunnel template |
//!
//! The context, lengths, the L4 header and its checksum pointer live in
//! stack slots (`S_*`); the key is built in place on the stack.
//!
//! Everything the program cannot take goes where today's program sends it
//! (the AF_XDP socket of the queue, or the kernel for an uplink's
//! non-Geneve traffic) before a single byte is changed, counted under a
//! [`FpCounter`]. The parser is deliberately narrower than
//! `flowtable::extract`: whatever it accepts, extract parses to the same
//! fields, and whatever it doubts (options, extension headers, trailing
//! bytes after the IP packet, lengths that disagree) it punts.

use super::layout::{off::*, FpCounter, GENEVE4_LEN};
use crate::afxdp::asm::{helper, md, op, reg::*, wire16, wire32, Asm, Insn, Label};
use crate::afxdp::program::{ProgramKind, XdpAction};

/// Stack slots, relative to the frame pointer.
pub(super) const KEY: i16 = -80;
pub(super) const S_CTX: i16 = -88;
/// Bytes of outer headers to pop (0, or 50 for a Geneve arrival).
pub(super) const S_INNER: i16 = -96;
/// Length of the (inner) frame, updated by VLAN push and pop.
pub(super) const S_LEN: i16 = -104;
/// 0: no L4 checksum over the addresses; 1: TCP or ICMPv6; 2: UDP (zero
/// means none).
pub(super) const S_CSUM_KIND: i16 = -112;
/// Pointer to the L4 checksum (to the L4 header when there is none).
pub(super) const S_L4CSUM: i16 = -120;
/// Pointer to the L4 header.
pub(super) const S_L4: i16 = -128;
/// A 4-byte key for the small maps.
pub(super) const S_MAPKEY: i16 = -132;
/// The counter to bump.
pub(super) const S_REASON: i16 = -136;

/// The maps a fast-path program refers to, as raw descriptors (the
/// program holds its own references once loaded).
#[derive(Clone, Copy, Debug)]
pub struct ProgramMaps {
    /// The XSKMAP of the interface's queues (the miss path).
    pub xsk: i32,
    /// Entries: `FpKey` -> `FpEntry`.
    pub entries: i32,
    /// DEVMAP_HASH: OpenFlow port -> ifindex.
    pub devmap: i32,
    /// Tunnel templates: slot -> `FpTunnel`.
    pub tunnels: i32,
    /// Interfaces: ifindex -> `FpPort`.
    pub ports: i32,
    /// Per-CPU counters indexed by `FpCounter`.
    pub stats: i32,
}

pub(super) struct Gen {
    pub a: Asm,
    pub maps: ProgramMaps,
    punts: Vec<(FpCounter, Label)>,
    pub err: Label,
}

impl Gen {
    /// The exit that counts `c` and sends the untouched frame to the slow path.
    pub fn punt(&mut self, c: FpCounter) -> Label {
        if let Some(&(_, l)) = self.punts.iter().find(|(k, _)| *k == c) {
            return l;
        }
        let l = self.a.label();
        self.punts.push((c, l));
        l
    }

    /// Adds one to counter `c` (clobbers r0-r5).
    pub fn count(&mut self, c: FpCounter) {
        self.a.st(op::W, FP, S_REASON, c as i32);
        self.count_reason();
    }

    fn count_reason(&mut self) {
        let a = &mut self.a;
        let skip = a.label();
        a.ld_map_fd(R1, self.maps.stats);
        a.mov(R2, FP);
        a.alu_imm(op::ADD, R2, S_REASON as i32);
        a.call(helper::MAP_LOOKUP_ELEM);
        a.jmp_imm(op::JEQ, R0, 0, skip);
        a.ldx(op::DW, R1, R0, 0);
        a.alu_imm(op::ADD, R1, 1);
        a.stx(op::DW, R0, 0, R1);
        a.bind(skip);
    }

    /// `if reg + n > data_end goto to` (reg a packet pointer).
    pub fn need(&mut self, reg: u8, n: i32, to: Label) {
        self.a.mov(R5, reg);
        self.a.alu_imm(op::ADD, R5, n);
        self.a.jmp_reg(op::JGT, R5, R8, to);
    }

    /// Loads the context into `dst`.
    pub fn ctx(&mut self, dst: u8) {
        self.a.ldx(op::DW, dst, FP, S_CTX);
    }

    /// r7, r8 = the frame after a headroom change.
    pub fn reload(&mut self) {
        self.ctx(R1);
        self.a.ldx(op::W, R7, R1, md::DATA);
        self.a.ldx(op::W, R8, R1, md::DATA_END);
    }

    /// `bpf_xdp_adjust_head(ctx, r2)`; a failure drops the packet.
    pub fn adjust_head(&mut self) {
        self.ctx(R1);
        self.a.call(helper::XDP_ADJUST_HEAD);
        self.a.jmp_imm(op::JNE, R0, 0, self.err);
        self.reload();
    }

    /// `r{acc} = fold(r{acc})` twice, with `tmp` as scratch: any sum below
    /// 2^32 to 16 bits, end-around carries added back (RFC 1071).
    pub fn fold(&mut self, acc: u8, tmp: u8) {
        for _ in 0..2 {
            self.a.mov(tmp, acc);
            self.a.alu_imm(op::RSH, tmp, 16);
            self.a.alu_imm(op::AND, acc, 0xffff);
            self.a.alu_reg(op::ADD, acc, tmp);
        }
    }
}

/// Assembles the fast-path program for an interface of `kind` over `maps`;
/// `miss` is the verdict of the AF_XDP redirect when the queue has no
/// socket (`Pass` in production, `Drop` in tests to see the slow path).
///
/// A pod port's program (`ProgramKind::All`) has the interface's OpenFlow
/// number `of_port` built in as a constant: each interface runs its own copy
/// of the program anyway (its XSKMAP is built in too), and the ports map
/// lookup it saves was a hash lookup per packet, touching lines that are
/// cold when packets are rare (BENCHMARKS.md, "The fast path's cold cost").
/// An uplink's program ignores `of_port` and reads its tunnel port and VTEP
/// from the ports map, which the switch fills once a second.
pub fn assemble(kind: ProgramKind, maps: ProgramMaps, miss: XdpAction, of_port: u32) -> Vec<Insn> {
    let mut a = Asm::default();
    let err = a.label();
    let mut g = Gen {
        a,
        maps,
        punts: Vec::new(),
        err,
    };
    let parse = g.a.label();
    entry(&mut g, kind, of_port, parse);
    g.a.bind(parse);
    parse_frame(&mut g);
    super::actions::emit(&mut g);

    // The exits.
    let to_xsk = g.a.label();
    for (c, l) in std::mem::take(&mut g.punts) {
        g.a.bind(l);
        g.a.st(op::W, FP, S_REASON, c as i32);
        g.a.ja(to_xsk);
    }
    g.a.bind(to_xsk);
    g.count_reason();
    g.ctx(R1);
    g.a.redirect_queue(R1, maps.xsk, miss.code());
    let err = g.err;
    g.a.bind(err);
    g.count(FpCounter::Error);
    g.a.ret(XdpAction::Drop.code());
    g.a.finish()
}

/// Saves the context, zeroes the key, loads the frame; a pod port's key
/// gets its OpenFlow number, an uplink looks its config up, classifies
/// Geneve and checks it for the pop.
fn entry(g: &mut Gen, kind: ProgramKind, of_port: u32, parse: Label) {
    let a = &mut g.a;
    a.mov(R6, R1);
    a.stx(op::DW, FP, S_CTX, R6);
    for i in 0..10 {
        a.st(op::DW, FP, KEY + 8 * i, 0);
    }
    a.st(op::DW, FP, S_INNER, 0);
    a.ldx(op::W, R7, R6, md::DATA);
    a.ldx(op::W, R8, R6, md::DATA_END);
    match kind {
        ProgramKind::All => {
            a.st(op::W, FP, KEY + K_IN_PORT, of_port as i32);
            a.ja(parse);
        }
        ProgramKind::Uplink => {
            a.ldx(op::W, R1, R6, md::INGRESS_IFINDEX);
            a.stx(op::W, FP, S_MAPKEY, R1);
            a.ld_map_fd(R1, g.maps.ports);
            a.mov(R2, FP);
            a.alu_imm(op::ADD, R2, S_MAPKEY as i32);
            a.call(helper::MAP_LOOKUP_ELEM);
            g.a.mov(R9, R0);
            uplink(g, parse);
        }
    }
}

/// Today's uplink filter (UDP to 6081 over untagged IPv4 or IPv6 goes to
/// the switch, the rest to the kernel), then, for IPv4 Geneve to our VTEP
/// without options, the checks `encap::decap` makes, and the tunnel fields
/// of the key. r9 is the port config or NULL.
fn uplink(g: &mut Gen, parse: Label) {
    const ETH: i16 = 14;
    let geneve = g.punt(FpCounter::PuntGeneve);
    let a = &mut g.a;
    let (pass, ipv4, ipv6, geneve4) = (a.label(), a.label(), a.label(), a.label());
    a.mov(R4, R7);
    a.alu_imm(op::ADD, R4, ETH as i32);
    a.jmp_reg(op::JGT, R4, R8, pass);
    a.ldx(op::H, R5, R7, 12);
    a.jmp_imm(op::JEQ, R5, wire16(0x0800), ipv4);
    a.jmp_imm(op::JEQ, R5, wire16(0x86dd), ipv6);
    a.ja(pass);

    a.bind(ipv4);
    a.mov(R4, R7);
    a.alu_imm(op::ADD, R4, ETH as i32 + 20);
    a.jmp_reg(op::JGT, R4, R8, pass);
    a.ldx(op::B, R5, R7, ETH + 9);
    a.jmp_imm(op::JNE, R5, 17, pass);
    a.ldx(op::H, R5, R7, ETH + 6);
    a.alu_imm(op::AND, R5, wire16(0x3fff));
    a.jmp_imm(op::JNE, R5, 0, pass);
    a.ldx(op::B, R5, R7, ETH);
    a.alu_imm(op::AND, R5, 0x0f);
    a.alu_imm(op::LSH, R5, 2);
    a.jmp_imm(op::JLT, R5, 20, pass);
    a.mov(R4, R7);
    a.alu_reg(op::ADD, R4, R5);
    a.alu_imm(op::ADD, R4, ETH as i32);
    a.mov(R5, R4);
    a.alu_imm(op::ADD, R5, 8);
    a.jmp_reg(op::JGT, R5, R8, pass);
    a.ldx(op::H, R5, R4, 2);
    a.jmp_imm(op::JEQ, R5, wire16(6081), geneve4);
    a.ja(pass);

    // IPv6 underlay: to the slow path, as today.
    a.bind(ipv6);
    a.mov(R4, R7);
    a.alu_imm(op::ADD, R4, ETH as i32 + 40 + 8);
    a.jmp_reg(op::JGT, R4, R8, pass);
    a.ldx(op::B, R5, R7, ETH + 6);
    a.jmp_imm(op::JNE, R5, 17, pass);
    a.ldx(op::H, R5, R7, ETH + 40 + 2);
    a.jmp_imm(op::JEQ, R5, wire16(6081), geneve);

    a.bind(pass);
    a.ret(XdpAction::Pass.code());

    // Geneve over IPv4: pop only what decap would accept and the key can
    // say: a 20-byte outer header with a valid checksum to our VTEP, exact
    // lengths, no UDP checksum (verifying one means summing the payload),
    // version 0 without options, O and C bits clear, Ethernet inside.
    a.bind(geneve4);
    a.jmp_imm(op::JEQ, R9, 0, geneve);
    a.ldx(op::W, R1, R9, P_TUN_PORT);
    a.jmp_imm(op::JEQ, R1, 0, geneve);
    a.stx(op::W, FP, KEY + K_IN_PORT, R1);
    g.need(R7, GENEVE4_LEN as i32 + 14, geneve);
    let a = &mut g.a;
    a.ldx(op::B, R1, R7, ETH);
    a.jmp_imm(op::JNE, R1, 0x45, geneve);
    a.ldx(op::W, R1, R7, ETH + 16);
    a.ldx(op::W, R2, R9, P_VTEP);
    a.jmp_reg(op::JNE, R1, R2, geneve);
    // RFC 1122 §3.2.1.2: verify the header checksum of what we terminate.
    a.mov_imm(R1, 0);
    for i in 0..10 {
        a.ldx(op::H, R2, R7, ETH + 2 * i);
        a.alu_reg(op::ADD, R1, R2);
    }
    g.fold(R1, R2);
    let a = &mut g.a;
    a.jmp_imm(op::JNE, R1, 0xffff, geneve);
    a.ldx(op::H, R1, R7, ETH + 2);
    a.bswap(R1, 16);
    a.jmp_imm(op::JGT, R1, 0x3fff, geneve);
    a.mov(R2, R7);
    a.alu_imm(op::ADD, R2, ETH as i32);
    a.alu_reg(op::ADD, R2, R1);
    a.jmp_reg(op::JGT, R2, R8, geneve);
    a.jmp_reg(op::JLT, R2, R8, geneve);
    a.ldx(op::H, R2, R7, ETH + 20 + 4);
    a.bswap(R2, 16);
    a.alu_imm(op::ADD, R2, 20);
    a.jmp_reg(op::JNE, R2, R1, geneve);
    a.ldx(op::H, R1, R7, ETH + 20 + 6);
    a.jmp_imm(op::JNE, R1, 0, geneve);
    a.ldx(op::H, R1, R7, ETH + 28);
    a.jmp_imm(op::JNE, R1, 0, geneve);
    a.ldx(op::H, R1, R7, ETH + 28 + 2);
    a.jmp_imm(op::JNE, R1, wire16(0x6558), geneve);
    a.ldx(op::W, R1, R7, ETH + 28 + 4);
    a.alu_imm(op::AND, R1, wire32(0xffff_ff00) as i32);
    a.stx(op::W, FP, KEY + K_TUN_ID, R1);
    a.ldx(op::W, R1, R7, ETH + 12);
    a.stx(op::W, FP, KEY + K_TUN_SRC, R1);
    a.ldx(op::W, R1, R7, ETH + 16);
    a.stx(op::W, FP, KEY + K_TUN_DST, R1);
    a.st(op::DW, FP, S_INNER, GENEVE4_LEN as i32);
    a.alu_imm(op::ADD, R7, GENEVE4_LEN as i32);
    a.ja(parse);
}

/// Ethernet (one tag), IPv4 without options or IPv6 without extension
/// headers, then TCP, UDP, ICMP or ICMPv6; the key on the stack; the
/// lookup. Falls through to the actions with r6 = entry.
fn parse_frame(g: &mut Gen) {
    let unparsed = g.punt(FpCounter::PuntUnparsed);
    let frag = g.punt(FpCounter::PuntFragment);
    let opts = g.punt(FpCounter::PuntIpOptions);
    let tcp_flags = g.punt(FpCounter::PuntTcpFlags);
    let miss = g.punt(FpCounter::Miss);
    let too_big = g.punt(FpCounter::PuntTooBig);
    let no_out = g.punt(FpCounter::PuntNoOutput);

    g.need(R7, 14, unparsed);
    let a = &mut g.a;
    let (vlan, l3, ip4, ip6, l4) = (a.label(), a.label(), a.label(), a.label(), a.label());
    a.ldx(op::DW, R1, R7, 0);
    a.stx(op::DW, FP, KEY + K_DL_DST, R1);
    a.ldx(op::W, R1, R7, 8);
    a.stx(op::W, FP, KEY + K_DL_DST + 8, R1);
    a.ldx(op::H, R2, R7, 12);
    a.mov_imm(R3, 14);
    a.jmp_imm(op::JEQ, R2, wire16(0x8100), vlan);
    a.jmp_imm(op::JEQ, R2, wire16(0x88a8), vlan);
    a.ja(l3);
    a.bind(vlan);
    g.need(R7, 18, unparsed);
    let a = &mut g.a;
    a.ldx(op::H, R1, R7, 14);
    a.alu_imm(op::OR, R1, wire16(0x1000));
    a.stx(op::H, FP, KEY + K_VLAN_TCI, R1);
    a.ldx(op::H, R2, R7, 16);
    a.mov_imm(R3, 18);
    a.bind(l3);
    a.stx(op::H, FP, KEY + K_DL_TYPE, R2);
    a.mov(R9, R7);
    a.alu_reg(op::ADD, R9, R3);
    a.jmp_imm(op::JEQ, R2, wire16(0x0800), ip4);
    a.jmp_imm(op::JEQ, R2, wire16(0x86dd), ip6);
    a.ja(unparsed);

    // IPv4: r3 = L3 offset in the frame.
    a.bind(ip4);
    g.need(R9, 20, unparsed);
    let a = &mut g.a;
    a.ldx(op::B, R1, R9, 0);
    a.jmp_imm(op::JNE, R1, 0x45, opts);
    a.ldx(op::H, R1, R9, 6);
    a.alu_imm(op::AND, R1, wire16(0x3fff)); // MF and the fragment offset
    a.jmp_imm(op::JNE, R1, 0, frag);
    a.ldx(op::H, R1, R9, 2);
    a.bswap(R1, 16);
    exact_end(a, R1, unparsed);
    a.jmp_imm(op::JLT, R1, 20, unparsed);
    a.alu_reg(op::ADD, R1, R3);
    a.stx(op::DW, FP, S_LEN, R1);
    a.ldx(op::W, R1, R9, 12);
    a.stx(op::W, FP, KEY + K_NW_SRC, R1);
    a.ldx(op::W, R1, R9, 16);
    a.stx(op::W, FP, KEY + K_NW_DST, R1);
    a.ldx(op::B, R1, R9, 1);
    a.stx(op::B, FP, KEY + K_TOS, R1);
    a.ldx(op::B, R1, R9, 8);
    a.stx(op::B, FP, KEY + K_TTL, R1);
    a.ldx(op::B, R1, R9, 9);
    a.stx(op::B, FP, KEY + K_PROTO, R1);
    a.mov(R4, R9);
    a.alu_imm(op::ADD, R4, 20);
    a.ja(l4);

    // IPv6.
    a.bind(ip6);
    g.need(R9, 40, unparsed);
    let a = &mut g.a;
    a.ldx(op::B, R1, R9, 0);
    a.alu_imm(op::RSH, R1, 4);
    a.jmp_imm(op::JNE, R1, 6, unparsed);
    a.ldx(op::H, R1, R9, 4);
    a.bswap(R1, 16);
    a.alu_imm(op::ADD, R1, 40);
    exact_end(a, R1, unparsed);
    a.alu_reg(op::ADD, R1, R3);
    a.stx(op::DW, FP, S_LEN, R1);
    for i in 0..2 {
        a.ldx(op::DW, R1, R9, 8 + 8 * i);
        a.stx(op::DW, FP, KEY + K_NW_SRC + 8 * i, R1);
        a.ldx(op::DW, R1, R9, 24 + 8 * i);
        a.stx(op::DW, FP, KEY + K_NW_DST + 8 * i, R1);
    }
    // RFC 8200 §3: the traffic class straddles the first two bytes.
    a.ldx(op::B, R1, R9, 0);
    a.alu_imm(op::AND, R1, 0x0f);
    a.alu_imm(op::LSH, R1, 4);
    a.ldx(op::B, R2, R9, 1);
    a.alu_imm(op::RSH, R2, 4);
    a.alu_reg(op::OR, R1, R2);
    a.stx(op::B, FP, KEY + K_TOS, R1);
    a.ldx(op::W, R1, R9, 0);
    a.alu_imm(op::AND, R1, wire32(0x000f_ffff) as i32);
    a.stx(op::W, FP, KEY + K_LABEL, R1);
    a.ldx(op::B, R1, R9, 7);
    a.stx(op::B, FP, KEY + K_TTL, R1);
    a.ldx(op::B, R1, R9, 6);
    a.stx(op::B, FP, KEY + K_PROTO, R1);
    a.jmp_imm(op::JEQ, R1, 44, frag);
    // Hop-by-hop, routing, destination options, AH, mobility, HIP, shim6.
    for ext in [0, 43, 60, 51, 135, 139, 140] {
        a.jmp_imm(op::JEQ, R1, ext, opts);
    }
    a.mov(R4, R9);
    a.alu_imm(op::ADD, R4, 40);

    // L4 at r4, protocol in r1.
    a.bind(l4);
    a.stx(op::DW, FP, S_L4, R4);
    let (tcp, udp, icmp, icmp6, lookup) = (a.label(), a.label(), a.label(), a.label(), a.label());
    a.jmp_imm(op::JEQ, R1, 6, tcp);
    a.jmp_imm(op::JEQ, R1, 17, udp);
    a.jmp_imm(op::JEQ, R1, 1, icmp);
    a.jmp_imm(op::JEQ, R1, 58, icmp6);
    a.ja(unparsed);

    a.bind(tcp);
    g.need(R4, 20, unparsed);
    let a = &mut g.a;
    a.ldx(op::B, R2, R4, 12);
    a.alu_imm(op::RSH, R2, 4);
    a.jmp_imm(op::JLT, R2, 5, unparsed);
    a.alu_imm(op::LSH, R2, 2);
    a.mov(R5, R4);
    a.alu_reg(op::ADD, R5, R2);
    a.jmp_reg(op::JGT, R5, R8, unparsed);
    a.ldx(op::H, R2, R4, 12);
    a.alu_imm(op::AND, R2, wire16(0x0fff));
    a.stx(op::H, FP, KEY + K_TCP_FLAGS, R2);
    // FIN, SYN, RST: connection setup and teardown stay with the slow path
    // (conntrack sees them; the first packets of a flow install entries).
    a.alu_imm(op::AND, R2, wire16(0x0007));
    a.jmp_imm(op::JNE, R2, 0, tcp_flags);
    ports(a);
    csum_at(a, 16, 1);
    a.ja(lookup);

    a.bind(udp);
    g.need(R4, 8, unparsed);
    let a = &mut g.a;
    a.ldx(op::H, R2, R4, 4);
    a.bswap(R2, 16);
    a.jmp_imm(op::JLT, R2, 8, unparsed);
    a.jmp_imm(op::JGT, R2, 0x3fff, unparsed);
    a.mov(R5, R4);
    a.alu_reg(op::ADD, R5, R2);
    a.jmp_reg(op::JGT, R5, R8, unparsed);
    ports(a);
    csum_at(a, 6, 2);
    a.ja(lookup);

    // ICMP type and code go into tp_src and tp_dst (OVS convention), an
    // echo's identifier into icmp_id.
    a.bind(icmp);
    g.need(R4, 8, unparsed);
    let a = &mut g.a;
    type_code(a);
    echo_id(a, 8, 0);
    csum_at(a, 0, 0);
    a.ja(lookup);

    a.bind(icmp6);
    g.need(R4, 8, unparsed);
    let a = &mut g.a;
    // Neighbour discovery (133-137) carries link-layer addresses the key
    // has no room for.
    a.ldx(op::B, R2, R4, 0);
    let not_nd = a.label();
    a.jmp_imm(op::JLT, R2, 133, not_nd);
    a.jmp_imm(op::JLE, R2, 137, unparsed);
    a.bind(not_nd);
    type_code(a);
    echo_id(a, 128, 129);
    csum_at(a, 2, 1);

    a.bind(lookup);
    a.ld_map_fd(R1, g.maps.entries);
    a.mov(R2, FP);
    a.alu_imm(op::ADD, R2, KEY as i32);
    a.call(helper::MAP_LOOKUP_ELEM);
    a.jmp_imm(op::JEQ, R0, 0, miss);
    a.mov(R6, R0);
    a.ldx(op::DW, R1, FP, S_LEN);
    a.ldx(op::H, R2, R6, E_MAX_LEN);
    a.jmp_reg(op::JGT, R1, R2, too_big);
    // The redirect is chosen here, before any byte changes, and the
    // actions end by returning XDP_REDIRECT: the helper only records the
    // target (no helper the actions call touches that record), so one
    // DEVMAP lookup both checks that the output is there and picks it.
    // Flags 0: an output gone returns XDP_ABORTED, and the frame is punted.
    a.ld_map_fd(R1, g.maps.devmap);
    a.ldx(op::W, R2, R6, E_OUT_PORT);
    a.mov_imm(R3, 0);
    a.call(helper::REDIRECT_MAP);
    a.jmp_imm(op::JNE, R0, XdpAction::Redirect.code() as i32, no_out);
    a.call(helper::KTIME_GET_NS);
    a.stx(op::DW, R6, E_USED_NS, R0);
    a.mov_imm(R1, 1);
    a.atomic_add64(R6, E_PACKETS, R1);
    a.ldx(op::DW, R1, FP, S_LEN);
    a.atomic_add64(R6, E_BYTES, R1);
    g.count(FpCounter::Hit);
}

/// The IP packet of length `len` (in `len`, from r9) must end exactly at
/// `data_end`: no truncation, no trailing bytes (which the slow path would
/// forward and the lengths here would not count).
fn exact_end(a: &mut Asm, len: u8, to: Label) {
    a.jmp_imm(op::JGT, len, 0x3fff, to);
    a.mov(R2, R9);
    a.alu_reg(op::ADD, R2, len);
    a.jmp_reg(op::JGT, R2, R8, to);
    a.jmp_reg(op::JLT, R2, R8, to);
}

/// Both TCP/UDP ports into the key, wire order.
fn ports(a: &mut Asm) {
    a.ldx(op::W, R2, R4, 0);
    a.stx(op::W, FP, KEY + K_TP_SRC, R2);
}

/// ICMP type and code, each as the low byte of a big-endian u16.
fn type_code(a: &mut Asm) {
    a.ldx(op::B, R2, R4, 0);
    a.alu_imm(op::LSH, R2, 8);
    a.stx(op::H, FP, KEY + K_TP_SRC, R2);
    a.ldx(op::B, R2, R4, 1);
    a.alu_imm(op::LSH, R2, 8);
    a.stx(op::H, FP, KEY + K_TP_DST, R2);
}

/// The identifier of an echo request (type `req`) or reply (`rep`), RFC
/// 792 and RFC 4443 §4, wire order; the 8 bytes at r4 are checked.
fn echo_id(a: &mut Asm, req: i32, rep: i32) {
    let (id, done) = (a.label(), a.label());
    a.ldx(op::B, R2, R4, 0);
    a.jmp_imm(op::JEQ, R2, req, id);
    a.jmp_imm(op::JNE, R2, rep, done);
    a.bind(id);
    a.ldx(op::H, R2, R4, 4);
    a.stx(op::H, FP, KEY + K_ICMP_ID, R2);
    a.bind(done);
}

/// Records the L4 checksum at `r4 + at` and its kind.
fn csum_at(a: &mut Asm, at: i32, kind: i32) {
    a.mov(R2, R4);
    a.alu_imm(op::ADD, R2, at);
    a.stx(op::DW, FP, S_L4CSUM, R2);
    a.mov_imm(R2, kind);
    a.stx(op::DW, FP, S_CSUM_KIND, R2);
}
