//! The rewrites of a hit, emitted after the lookup with r6 = the entry,
//! r7 = the frame, r8 = `data_end`, r9 = the L3 header.
//!
//! Checksums are updated incrementally exactly as `datapath::exec` does
//! (RFC 1624 eqn. 3, `wire::checksum::update_bytes`): the complement of
//! the old checksum plus the complement of each old 16-bit word plus each
//! new one, folded and complemented. The program adds 16-bit words as the
//! little-endian host loads them, byte-swapped relative to the wire; the
//! ones'-complement sum commutes with swapping the bytes of every word
//! (RFC 1071 §2(B)), so the stored result is the same bytes. A UDP
//! checksum of zero means none and is left alone; a computed zero is sent
//! as 0xffff (RFC 768).
//!
//! Every block checks its flag, the packet's family where it matters, and
//! the bounds it touches: the entry is data, so a wrong one must not make
//! the program touch memory outside the packet (the verifier insists) and
//! does nothing worse than a wrong rewrite of a packet it was offloaded for.

use super::layout::{act, off::*, GENEVE4_LEN};
use super::program::{Gen, KEY, S_CSUM_KIND, S_INNER, S_L4, S_L4CSUM, S_LEN, S_MAPKEY};
use crate::afxdp::asm::{helper, op, reg::*, wire16, Label};
use crate::afxdp::program::XdpAction;

/// Emits the actions and the redirect to the output port.
pub(super) fn emit(g: &mut Gen) {
    let done = g.a.label();
    eth(g, act::ETH_DST, 0, E_ETH_DST);
    eth(g, act::ETH_SRC, 6, E_ETH_SRC);
    // The common entries (an output, with or without new MACs) are done
    // here: skipping the rest keeps a hit's code to a few cache lines,
    // which matters when they are cold (BENCHMARKS.md, "The fast path's
    // cold cost"). A Geneve arrival still needs its pop.
    let more = g.a.label();
    g.a.ldx(op::W, R1, R6, E_ACTIONS);
    g.a.alu_imm(
        op::AND,
        R1,
        (act::ALL & !(act::ETH_SRC | act::ETH_DST)) as i32,
    );
    g.a.jmp_imm(op::JNE, R1, 0, more);
    g.a.ldx(op::DW, R1, FP, S_INNER);
    g.a.jmp_imm(op::JEQ, R1, 0, done);
    g.a.bind(more);
    ip4_addr(g, act::IP4_SRC, 12, E_NW_SRC);
    ip4_addr(g, act::IP4_DST, 16, E_NW_DST);
    ip6_addr(g, act::IP6_SRC, 8, E_NW_SRC);
    ip6_addr(g, act::IP6_DST, 24, E_NW_DST);
    port(g, act::TP_SRC, 0, E_TP_SRC);
    port(g, act::TP_DST, 2, E_TP_DST);
    ttl(g);
    tos(g);
    pop_geneve(g);
    vlan(g);
    push_geneve(g);
    // The target was chosen by the lookup (`program::parse_frame`).
    g.a.bind(done);
    g.a.ret(XdpAction::Redirect.code());
}

/// Starts a block run only when `flag` is set; returns its end.
fn when(g: &mut Gen, flag: u32) -> Label {
    let skip = g.a.label();
    g.a.ldx(op::W, R1, R6, E_ACTIONS);
    g.a.alu_imm(op::AND, R1, flag as i32);
    g.a.jmp_imm(op::JEQ, R1, 0, skip);
    skip
}

/// Skips to `skip` unless the key's ethertype is `et`.
fn family(g: &mut Gen, et: u16, skip: Label) {
    g.a.ldx(op::H, R1, FP, KEY + K_DL_TYPE);
    g.a.jmp_imm(op::JNE, R1, wire16(et), skip);
}

fn eth(g: &mut Gen, flag: u32, at: i16, from: i16) {
    let skip = when(g, flag);
    let a = &mut g.a;
    a.ldx(op::W, R1, R6, from);
    a.stx(op::W, R7, at, R1);
    a.ldx(op::H, R1, R6, from + 4);
    a.stx(op::H, R7, at + 4, R1);
    a.bind(skip);
}

/// r3 += the RFC 1624 terms of replacing the 32-bit word `old` by `new`
/// (host loads of wire bytes); clobbers `old`, `new` and r4.
fn delta32(g: &mut Gen, old: u8, new: u8) {
    let a = &mut g.a;
    a.alu_imm(op::XOR, old, -1);
    a.mov(R4, old);
    a.alu_imm(op::AND, R4, 0xffff);
    a.alu_reg(op::ADD, R3, R4);
    a.alu_imm(op::RSH, old, 16);
    a.alu_imm(op::AND, old, 0xffff);
    a.alu_reg(op::ADD, R3, old);
    a.mov(R4, new);
    a.alu_imm(op::AND, R4, 0xffff);
    a.alu_reg(op::ADD, R3, R4);
    a.alu_imm(op::RSH, new, 16);
    a.alu_reg(op::ADD, R3, new);
}

/// Applies the terms in r3 to the checksum at `ptr + at`; clobbers r4, r5.
fn apply(g: &mut Gen, ptr: u8, at: i16) {
    g.a.ldx(op::H, R4, ptr, at);
    g.a.alu_imm(op::XOR, R4, 0xffff);
    g.a.alu_reg(op::ADD, R4, R3);
    g.fold(R4, R5);
    g.a.alu_imm(op::XOR, R4, 0xffff);
    g.a.stx(op::H, ptr, at, R4);
}

/// Applies the terms in r3 to the L4 checksum the parser recorded, if the
/// rewritten field is in its pseudo-header; clobbers r1, r2, r4, r5.
fn apply_l4(g: &mut Gen) {
    let err = g.err;
    let a = &mut g.a;
    let (skip, go, store) = (a.label(), a.label(), a.label());
    a.ldx(op::DW, R1, FP, S_CSUM_KIND);
    a.jmp_imm(op::JEQ, R1, 0, skip);
    a.ldx(op::DW, R2, FP, S_L4CSUM);
    g.need(R2, 2, err);
    let a = &mut g.a;
    a.ldx(op::H, R4, R2, 0);
    a.jmp_imm(op::JNE, R1, 2, go);
    a.jmp_imm(op::JEQ, R4, 0, skip);
    a.bind(go);
    a.alu_imm(op::XOR, R4, 0xffff);
    a.alu_reg(op::ADD, R4, R3);
    g.fold(R4, R5);
    let a = &mut g.a;
    a.alu_imm(op::XOR, R4, 0xffff);
    a.jmp_imm(op::JNE, R1, 2, store);
    a.jmp_imm(op::JNE, R4, 0, store);
    a.mov_imm(R4, 0xffff);
    a.bind(store);
    a.stx(op::H, R2, 0, R4);
    a.bind(skip);
}

fn ip4_addr(g: &mut Gen, flag: u32, at: i16, from: i16) {
    let skip = when(g, flag);
    family(g, 0x0800, skip);
    g.need(R9, 20, g.err);
    let a = &mut g.a;
    a.ldx(op::W, R1, R9, at);
    a.ldx(op::W, R2, R6, from);
    a.stx(op::W, R9, at, R2);
    a.mov_imm(R3, 0);
    delta32(g, R1, R2);
    apply(g, R9, 10);
    apply_l4(g);
    g.a.bind(skip);
}

fn ip6_addr(g: &mut Gen, flag: u32, at: i16, from: i16) {
    let skip = when(g, flag);
    family(g, 0x86dd, skip);
    g.need(R9, 40, g.err);
    g.a.mov_imm(R3, 0);
    for i in 0..4 {
        let a = &mut g.a;
        a.ldx(op::W, R1, R9, at + 4 * i);
        a.ldx(op::W, R2, R6, from + 4 * i);
        a.stx(op::W, R9, at + 4 * i, R2);
        delta32(g, R1, R2);
    }
    apply_l4(g);
    g.a.bind(skip);
}

/// TCP/UDP port at `l4 + at`.
fn port(g: &mut Gen, flag: u32, at: i16, from: i16) {
    let skip = when(g, flag);
    let err = g.err;
    let a = &mut g.a;
    let ok = a.label();
    a.ldx(op::B, R1, FP, KEY + K_PROTO);
    a.jmp_imm(op::JEQ, R1, 6, ok);
    a.jmp_imm(op::JNE, R1, 17, skip);
    a.bind(ok);
    a.ldx(op::DW, R2, FP, S_L4);
    g.need(R2, 8, err);
    let a = &mut g.a;
    a.ldx(op::H, R1, R2, at);
    a.ldx(op::H, R4, R6, from);
    a.stx(op::H, R2, at, R4);
    a.mov(R3, R1);
    a.alu_imm(op::XOR, R3, 0xffff);
    a.alu_reg(op::ADD, R3, R4);
    apply_l4(g);
    g.a.bind(skip);
}

fn ttl(g: &mut Gen) {
    let skip = when(g, act::TTL);
    let v6 = g.a.label();
    family(g, 0x0800, v6);
    g.need(R9, 20, g.err);
    let a = &mut g.a;
    // The TTL shares a checksummed word with the protocol; on the host the
    // TTL is its low byte.
    a.ldx(op::H, R1, R9, 8);
    a.mov(R2, R1);
    a.alu_imm(op::AND, R2, 0xff00);
    a.ldx(op::B, R4, R6, E_TTL);
    a.alu_reg(op::OR, R2, R4);
    a.stx(op::H, R9, 8, R2);
    a.mov(R3, R1);
    a.alu_imm(op::XOR, R3, 0xffff);
    a.alu_reg(op::ADD, R3, R2);
    apply(g, R9, 10);
    g.a.ja(skip);
    g.a.bind(v6);
    family(g, 0x86dd, skip);
    g.need(R9, 40, g.err);
    g.a.ldx(op::B, R4, R6, E_TTL);
    g.a.stx(op::B, R9, 7, R4);
    g.a.bind(skip);
}

fn tos(g: &mut Gen) {
    let skip = when(g, act::TOS);
    let v6 = g.a.label();
    family(g, 0x0800, v6);
    g.need(R9, 20, g.err);
    let a = &mut g.a;
    // Version/IHL and TOS form one word; TOS is its high byte on the host.
    a.ldx(op::H, R1, R9, 0);
    a.mov(R2, R1);
    a.alu_imm(op::AND, R2, 0x00ff);
    a.ldx(op::B, R4, R6, E_TOS);
    a.alu_imm(op::LSH, R4, 8);
    a.alu_reg(op::OR, R2, R4);
    a.stx(op::H, R9, 0, R2);
    a.mov(R3, R1);
    a.alu_imm(op::XOR, R3, 0xffff);
    a.alu_reg(op::ADD, R3, R2);
    apply(g, R9, 10);
    g.a.ja(skip);
    g.a.bind(v6);
    family(g, 0x86dd, skip);
    g.need(R9, 40, g.err);
    let a = &mut g.a;
    // RFC 8200 §3: the traffic class is the low nibble of byte 0 and the
    // high nibble of byte 1.
    a.ldx(op::B, R4, R6, E_TOS);
    a.ldx(op::B, R1, R9, 0);
    a.alu_imm(op::AND, R1, 0xf0);
    a.mov(R2, R4);
    a.alu_imm(op::RSH, R2, 4);
    a.alu_reg(op::OR, R1, R2);
    a.stx(op::B, R9, 0, R1);
    a.ldx(op::B, R1, R9, 1);
    a.alu_imm(op::AND, R1, 0x0f);
    a.alu_imm(op::LSH, R4, 4);
    a.alu_imm(op::AND, R4, 0xf0);
    a.alu_reg(op::OR, R1, R4);
    a.stx(op::B, R9, 1, R1);
    a.bind(skip);
}

/// A Geneve arrival leaves its outer headers here; from now on only r7/r8
/// point into the packet.
fn pop_geneve(g: &mut Gen) {
    let a = &mut g.a;
    let skip = a.label();
    a.ldx(op::DW, R2, FP, S_INNER);
    a.jmp_imm(op::JEQ, R2, 0, skip);
    g.adjust_head();
    g.a.bind(skip);
}

fn vlan(g: &mut Gen) {
    let err = g.err;
    // Pop: move the addresses 4 bytes up over the tag, drop 4 bytes.
    let skip = when(g, act::VLAN_POP);
    g.a.ldx(op::H, R1, FP, KEY + K_VLAN_TCI);
    g.a.jmp_imm(op::JEQ, R1, 0, skip);
    g.need(R7, 18, err);
    let a = &mut g.a;
    a.ldx(op::DW, R1, R7, 0);
    a.ldx(op::W, R2, R7, 8);
    a.stx(op::DW, R7, 4, R1);
    a.stx(op::W, R7, 12, R2);
    a.mov_imm(R2, 4);
    g.adjust_head();
    add_len(g, -4);
    g.a.bind(skip);

    // Push: 4 bytes of headroom, addresses down, then the tag.
    let skip = when(g, act::VLAN_PUSH);
    g.a.mov_imm(R2, -4);
    g.adjust_head();
    g.need(R7, 18, err);
    let a = &mut g.a;
    a.ldx(op::DW, R1, R7, 4);
    a.ldx(op::W, R2, R7, 12);
    a.stx(op::DW, R7, 0, R1);
    a.stx(op::W, R7, 8, R2);
    a.ldx(op::H, R1, R6, E_VLAN_TPID);
    a.stx(op::H, R7, 12, R1);
    a.ldx(op::H, R1, R6, E_VLAN_TCI);
    a.stx(op::H, R7, 14, R1);
    add_len(g, 4);
    g.a.bind(skip);

    // Set the TCI of the outer tag.
    let skip = when(g, act::VLAN_SET);
    g.need(R7, 18, err);
    let a = &mut g.a;
    let tagged = a.label();
    a.ldx(op::H, R1, R7, 12);
    a.jmp_imm(op::JEQ, R1, wire16(0x8100), tagged);
    a.jmp_imm(op::JNE, R1, wire16(0x88a8), skip);
    a.bind(tagged);
    a.ldx(op::H, R1, R6, E_VLAN_TCI);
    a.stx(op::H, R7, 14, R1);
    a.bind(skip);
}

fn add_len(g: &mut Gen, by: i32) {
    g.a.ldx(op::DW, R1, FP, S_LEN);
    g.a.alu_imm(op::ADD, R1, by);
    g.a.stx(op::DW, FP, S_LEN, R1);
}

/// Geneve over IPv4 from the remote's template (as `encap::Template::push`
/// with no options): total length, identification and header checksum,
/// UDP source port and length, VNI. The UDP checksum stays zero (RFC 8926
/// §3.3 allows it over IPv4; templates that want one are not offloaded).
fn push_geneve(g: &mut Gen) {
    let err = g.err;
    let skip = when(g, act::GENEVE_PUSH);
    let a = &mut g.a;
    a.ldx(op::W, R1, R6, E_TUN_SLOT);
    a.stx(op::W, FP, S_MAPKEY, R1);
    a.ld_map_fd(R1, g.maps.tunnels);
    a.mov(R2, FP);
    a.alu_imm(op::ADD, R2, S_MAPKEY as i32);
    a.call(helper::MAP_LOOKUP_ELEM);
    a.jmp_imm(op::JEQ, R0, 0, err);
    a.mov(R9, R0);
    a.mov_imm(R2, -(GENEVE4_LEN as i32));
    g.adjust_head();
    g.need(R7, GENEVE4_LEN as i32, err);
    let a = &mut g.a;
    for i in 0..6 {
        a.ldx(op::DW, R1, R9, 8 * i);
        a.stx(op::DW, R7, 8 * i, R1);
    }
    a.ldx(op::H, R1, R9, 48);
    a.stx(op::H, R7, 48, R1);
    a.ldx(op::DW, R1, FP, S_LEN);
    // IPv4 total length: IP, UDP and Geneve headers plus the inner frame.
    a.mov(R2, R1);
    a.alu_imm(op::ADD, R2, GENEVE4_LEN as i32 - 14);
    a.mov(R3, R2);
    a.bswap(R3, 16);
    a.stx(op::H, R7, 14 + 2, R3);
    // Identification: any value will do with DF set (RFC 6864 §4.1); the
    // entry's packet count varies it.
    a.ldx(op::DW, R4, R6, E_PACKETS);
    a.alu_imm(op::AND, R4, 0xffff);
    a.mov(R5, R4);
    a.bswap(R5, 16);
    a.stx(op::H, R7, 14 + 4, R5);
    a.ldx(op::W, R3, R9, T_IP_PARTIAL);
    a.alu_reg(op::ADD, R3, R2);
    a.alu_reg(op::ADD, R3, R4);
    g.fold(R3, R5);
    let a = &mut g.a;
    a.alu_imm(op::XOR, R3, 0xffff);
    a.bswap(R3, 16);
    a.stx(op::H, R7, 14 + 10, R3);
    // UDP length: UDP and Geneve headers plus the inner frame.
    a.alu_imm(op::ADD, R1, 16);
    a.bswap(R1, 16);
    a.stx(op::H, R7, 34 + 4, R1);
    a.ldx(op::H, R1, R6, E_TUN_SPORT);
    a.stx(op::H, R7, 34, R1);
    a.ldx(op::W, R1, R6, E_TUN_ID);
    a.stx(op::W, R7, 42 + 4, R1);
    a.bind(skip);
}
